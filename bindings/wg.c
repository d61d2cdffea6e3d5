// SPDX-License-Identifier: MIT
#include "common.h"
#include "key.h"
#include "../core/err.h"
#include "../core/key.h"
#include "../core/link.h"
#include "../core/netns.h"
#include "../core/wg.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define DEVBOX_MT "zmesh.wg.device"

/*
 * The device under construction lives in a userdata whose __gc frees it,
 * so a raise half-way through converting a peer list leaks nothing.
 */
static struct zm_wg_device **new_devbox(lua_State *L)
{
	struct zm_wg_device **box = lua_newuserdatauv(L, sizeof(*box), 0);

	*box = NULL;
	luaL_setmetatable(L, DEVBOX_MT);
	*box = calloc(1, sizeof(**box));
	if (!*box)
		luaL_error(L, "out of memory");
	return box;
}

static int devbox_gc(lua_State *L)
{
	struct zm_wg_device **box = luaL_checkudata(L, 1, DEVBOX_MT);

	zm_wg_device_free(*box);
	*box = NULL;
	return 0;
}

static const char *check_ifname(lua_State *L, int idx)
{
	const char *name = zm_opt_string(L, idx, "name", true);

	if (!zm_link_name_valid(name))
		zm_field_error(L, idx, "name",
			       lua_pushfstring(L, "invalid interface name '%s'",
					       name));
	return name;
}

/* A key field: privkey userdata (copied), or false for "none". */
static int opt_key(lua_State *L, int idx, const char *field,
		   struct zm_key **out)
{
	int t = lua_getfield(L, idx, field);
	int err;

	*out = NULL;
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
		lua_pop(L, 1);
		return 1;
	}
	if (!luaL_testudata(L, -1, ZM_PRIVKEY_MT))
		zm_field_error(L, idx, field,
			       "private key (core.key) or false expected");
	err = zm_key_copy(zm_check_privkey(L, lua_gettop(L)), out);
	lua_pop(L, 1);
	if (err)
		luaL_error(L, "out of memory");
	return 1;
}

/* Errors inside peers[i] name the peer and field, as argument #1. */
/* The fields each option table may have (also core.contract). */
static const char *const peer_fields[] = {
	"public_key", "preshared_key", "endpoint", "persistent_keepalive",
	"allowed_ips", "replace_allowed_ips", "remove", "update_only", NULL
};
static const char *const set_fields[] = { "ns", "name", "private_key",
					  "listen_port", "fwmark",
					  "replace_peers", "peers", NULL };
static const char *const get_fields[] = { "ns", "name", NULL };
static const char *const create_fields[] = { "name", "birth_ns", "ns", "mtu",
					     "backend", "program", "log",
					     "timeout_ms", NULL };
static const char *const delete_fields[] = { "ns", "name", "birth_ns", NULL };
static const char *const strays_fields[] = { "birth_ns", "name", NULL };

static int peer_error(lua_State *L, size_t i, const char *field,
		      const char *why)
{
	return luaL_argerror(L, 1, lua_pushfstring(L, "peers[%d].%s: %s",
						   (int)i + 1, field, why));
}

static void check_peer_fields(lua_State *L, int idx, size_t i)
{
	const char *const *f;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		for (f = peer_fields; *f; f++)
			if (lua_type(L, -1) == LUA_TSTRING &&
			    !strcmp(*f, lua_tostring(L, -1)))
				break;
		if (!*f)
			peer_error(L, i, luaL_tolstring(L, -1, NULL),
				   "unknown field");
	}
}

/* Field of the peer table at idx: type checked; pushed, or nil → 0. */
static int peer_field(lua_State *L, int idx, size_t i, const char *field,
		      int type)
{
	int t = lua_getfield(L, idx, field);

	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != type)
		peer_error(L, i, field,
			   lua_pushfstring(L, "%s expected, got %s",
					   lua_typename(L, type),
					   luaL_typename(L, -1)));
	return 1;
}

static bool peer_flag(lua_State *L, int idx, size_t i, const char *field)
{
	bool v = false;

	if (peer_field(L, idx, i, field, LUA_TBOOLEAN)) {
		v = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	return v;
}

static void peer_allowedips(lua_State *L, int idx, size_t i,
			    struct zm_wg_peer *p)
{
	const char *text;
	size_t n, k;

	if (!peer_field(L, idx, i, "allowed_ips", LUA_TTABLE))
		return;
	n = lua_rawlen(L, -1);
	if (n) {
		p->allowedips = calloc(n, sizeof(*p->allowedips));
		if (!p->allowedips)
			luaL_error(L, "out of memory");
	}
	for (k = 0; k < n; k++) {
		lua_rawgeti(L, -1, (lua_Integer)k + 1);
		text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (!text || zm_wg_parse_allowedip(text, &p->allowedips[k]))
			peer_error(L, i, "allowed_ips",
				   lua_pushfstring(L, "entry %d: '%s' is not a prefix",
						   (int)k + 1,
						   text ? text : luaL_typename(L, -1)));
		lua_pop(L, 1);
		p->n_allowedips = k + 1;
	}
	lua_pop(L, 1);
}

/* Convert the peer table at idx (peers[i]) into p; raises on mistakes. */
static void convert_peer(lua_State *L, int idx, size_t i, struct zm_wg_peer *p)
{
	const char *text;
	lua_Integer ka;
	int isnum, err;

	check_peer_fields(L, idx, i);
	if (!peer_field(L, idx, i, "public_key", LUA_TSTRING))
		peer_error(L, i, "public_key", "required");
	text = lua_tostring(L, -1);
	if (zm_key_decode(text, p->public_key))
		peer_error(L, i, "public_key",
			   lua_pushfstring(L, "malformed public key '%s'", text));
	lua_pop(L, 1);
	if (peer_flag(L, idx, i, "remove"))
		p->flags |= ZM_WGPEER_REMOVE_ME;
	if (peer_flag(L, idx, i, "update_only"))
		p->flags |= ZM_WGPEER_UPDATE_ONLY;
	if (peer_flag(L, idx, i, "replace_allowed_ips"))
		p->flags |= ZM_WGPEER_REPLACE_ALLOWEDIPS;
	if (lua_getfield(L, idx, "preshared_key") != LUA_TNIL) {
		if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
			p->flags |= ZM_WGPEER_HAS_PRESHARED_KEY;
		} else if (luaL_testudata(L, -1, ZM_PRIVKEY_MT)) {
			err = zm_key_copy(zm_check_privkey(L, lua_gettop(L)),
					  &p->preshared_key);
			if (err)
				luaL_error(L, "out of memory");
			p->flags |= ZM_WGPEER_HAS_PRESHARED_KEY;
		} else {
			peer_error(L, i, "preshared_key",
				   "key (core.key) or false expected");
		}
	}
	lua_pop(L, 1);
	if (peer_field(L, idx, i, "endpoint", LUA_TSTRING)) {
		if (zm_wg_parse_endpoint(lua_tostring(L, -1), p))
			peer_error(L, i, "endpoint", zm_err_text());
		p->flags |= ZM_WGPEER_HAS_ENDPOINT;
		lua_pop(L, 1);
	}
	if (peer_field(L, idx, i, "persistent_keepalive", LUA_TNUMBER)) {
		ka = lua_tointegerx(L, -1, &isnum);
		if (!isnum || ka < 0 || ka > 65535)
			peer_error(L, i, "persistent_keepalive",
				   "integer 0..65535 expected");
		p->persistent_keepalive = (uint16_t)ka;
		p->flags |= ZM_WGPEER_HAS_KEEPALIVE;
		lua_pop(L, 1);
	}
	peer_allowedips(L, idx, i, p);
}

/*
 * set{ns, name, private_key, listen_port, fwmark, replace_peers, peers={…}}
 * Absent fields stay as they are on the device.
 */
static int l_set(lua_State *L)
{
	struct zm_wg_device **box, *dev;
	struct zm_ns *ns;
	bool owned;
	size_t n, i;
	int err, top;

	zm_check_fields(L, 1, set_fields);
	zm_check_ns_field(L, 1, "ns");
	box = new_devbox(L);
	top = lua_gettop(L);
	dev = *box;
	snprintf(dev->name, sizeof(dev->name), "%s", check_ifname(L, 1));
	if (opt_key(L, 1, "private_key", &dev->private_key))
		dev->flags |= ZM_WG_HAS_PRIVATE_KEY;
	lua_getfield(L, 1, "listen_port");
	if (!lua_isnil(L, -1)) {
		dev->listen_port = (uint16_t)zm_opt_int(L, 1, "listen_port", 0,
							0, 65535);
		dev->flags |= ZM_WG_HAS_LISTEN_PORT;
	}
	lua_getfield(L, 1, "fwmark");
	if (!lua_isnil(L, -1)) {
		dev->fwmark = (uint32_t)zm_opt_int(L, 1, "fwmark", 0, 0,
						   0xffffffffLL);
		dev->flags |= ZM_WG_HAS_FWMARK;
	}
	if (zm_opt_bool(L, 1, "replace_peers", 0))
		dev->flags |= ZM_WG_REPLACE_PEERS;
	lua_settop(L, top);
	if (lua_getfield(L, 1, "peers") != LUA_TNIL) {
		if (!lua_istable(L, -1))
			zm_field_error(L, 1, "peers", "array of peers expected");
		n = lua_rawlen(L, -1);
		if (n) {
			dev->peers = calloc(n, sizeof(*dev->peers));
			if (!dev->peers)
				return luaL_error(L, "out of memory");
		}
		for (i = 0; i < n; i++) {
			if (lua_rawgeti(L, top + 1, (lua_Integer)i + 1) !=
			    LUA_TTABLE)
				zm_field_error(L, 1, "peers",
					       lua_pushfstring(L, "entry %d is not a table",
							       (int)i + 1));
			dev->n_peers = i + 1;
			convert_peer(L, lua_gettop(L), i, &dev->peers[i]);
			lua_pop(L, 1);
		}
	}
	lua_settop(L, top);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_wg_set(ns, dev);
	zm_ns_release(ns, owned);
	zm_wg_device_free(dev);
	*box = NULL;
	return zm_push_result(L, err);
}

static void set_int(lua_State *L, const char *key, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, key);
}

static void push_peer(lua_State *L, const struct zm_wg_peer *p)
{
	char text[96], b64[ZM_KEY_B64_LEN + 1];
	size_t i;

	lua_createtable(L, 0, 9);
	zm_key_encode(p->public_key, b64);
	lua_pushstring(L, b64);
	lua_setfield(L, -2, "public_key");
	if (p->flags & ZM_WGPEER_HAS_ENDPOINT) {
		zm_wg_format_endpoint(p, text, sizeof(text));
		lua_pushstring(L, text);
		lua_setfield(L, -2, "endpoint");
	}
	set_int(L, "persistent_keepalive", p->persistent_keepalive);
	set_int(L, "last_handshake", p->last_handshake_sec);
	set_int(L, "last_handshake_nsec", p->last_handshake_nsec);
	set_int(L, "rx_bytes", (lua_Integer)p->rx_bytes);
	set_int(L, "tx_bytes", (lua_Integer)p->tx_bytes);
	lua_pushboolean(L, (p->flags & ZM_WGPEER_HAS_PRESHARED_KEY) != 0);
	lua_setfield(L, -2, "has_preshared_key");
	lua_createtable(L, (int)p->n_allowedips, 0);
	for (i = 0; i < p->n_allowedips; i++) {
		zm_wg_format_allowedip(&p->allowedips[i], text, sizeof(text));
		lua_pushstring(L, text);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "allowed_ips");
}

/* get{ns, name} → device table (never the private key). */
static int l_get(lua_State *L)
{
	static const char *const backends[] = { "auto", "kernel", "userspace" };
	struct zm_wg_device **box, *dev;
	char b64[ZM_KEY_B64_LEN + 1];
	const char *name;
	struct zm_ns *ns;
	bool owned;
	size_t i;
	int err;

	zm_check_fields(L, 1, get_fields);
	name = check_ifname(L, 1);
	zm_check_ns_field(L, 1, "ns");
	/* Boxed: a raise while pushing (out of memory) must not leak it. */
	box = new_devbox(L);
	zm_wg_device_free(*box);
	*box = NULL;
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_wg_get(ns, name, box);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	dev = *box;
	lua_createtable(L, 0, 7);
	lua_pushstring(L, dev->name);
	lua_setfield(L, -2, "name");
	if (dev->has_public_key) {
		zm_key_encode(dev->public_key, b64);
		lua_pushstring(L, b64);
		lua_setfield(L, -2, "public_key");
	}
	set_int(L, "listen_port", dev->listen_port);
	set_int(L, "fwmark", dev->fwmark);
	lua_pushstring(L, backends[dev->backend]);
	lua_setfield(L, -2, "backend");
	lua_createtable(L, (int)dev->n_peers, 0);
	for (i = 0; i < dev->n_peers; i++) {
		push_peer(L, &dev->peers[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "peers");
	/* The private key it read goes now, not at the next collection. */
	zm_wg_device_free(dev);
	*box = NULL;
	return 1;
}

static enum zm_wg_backend check_backend(lua_State *L, int idx)
{
	const char *b = zm_opt_string(L, idx, "backend", false);

	if (!b || !strcmp(b, "auto"))
		return ZM_WG_AUTO;
	if (!strcmp(b, "kernel"))
		return ZM_WG_KERNEL;
	if (!strcmp(b, "userspace"))
		return ZM_WG_USERSPACE;
	zm_field_error(L, idx, "backend",
		       lua_pushfstring(L, "'%s' is not auto, kernel or userspace",
				       b));
	return ZM_WG_AUTO;
}

/* create{name, birth_ns, ns, mtu, backend, program, log, timeout_ms} */
static int l_create(lua_State *L)
{
	struct zm_wg_create c = { 0 };
	bool birth_owned = false, target_owned = false;
	pid_t pid = 0;
	int err;

	zm_check_fields(L, 1, create_fields);
	c.name = check_ifname(L, 1);
	c.mtu = (unsigned int)zm_opt_int(L, 1, "mtu", 0, 576, 65535);
	c.backend = check_backend(L, 1);
	c.program = zm_opt_string(L, 1, "program", false);
	c.log_path = zm_opt_string(L, 1, "log", false);
	c.timeout_ms = (unsigned int)zm_opt_int(L, 1, "timeout_ms", 0, 0, 600000);
	zm_check_ns_field(L, 1, "birth_ns");
	zm_check_ns_field(L, 1, "ns");
	err = zm_opt_ns(L, 1, "birth_ns", &c.birth, &birth_owned);
	if (!err)
		err = zm_opt_ns(L, 1, "ns", &c.target, &target_owned);
	if (!err)
		err = zm_wg_create(&c, &pid);
	zm_ns_release(c.target, target_owned);
	zm_ns_release(c.birth, birth_owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, 0, 2);
	lua_pushstring(L, pid ? "userspace" : "kernel");
	lua_setfield(L, -2, "backend");
	if (pid)
		set_int(L, "pid", pid);
	return 1;
}

/* delete{ns, name, birth_ns}: birth_ns also ends daemons still starting there. */
static int l_delete(lua_State *L)
{
	struct zm_ns *ns = NULL, *birth = NULL;
	bool owned = false, birth_owned = false;
	const char *name;
	int err;

	zm_check_fields(L, 1, delete_fields);
	name = check_ifname(L, 1);
	zm_check_ns_field(L, 1, "ns");
	zm_check_ns_field(L, 1, "birth_ns");
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	lua_getfield(L, 1, "birth_ns");
	if (!err && !lua_isnil(L, -1))
		err = zm_opt_ns(L, 1, "birth_ns", &birth, &birth_owned);
	lua_pop(L, 1);
	if (!err)
		err = zm_wg_delete(ns, birth, name);
	zm_ns_release(birth, birth_owned);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

/* strays{birth_ns, name} → pids of daemons for name started there, not serving. */
static int l_strays(lua_State *L)
{
	struct zm_ns *birth;
	const char *name;
	pid_t *pids;
	size_t n, i;
	bool owned;
	int err;

	zm_check_fields(L, 1, strays_fields);
	name = check_ifname(L, 1);
	err = zm_opt_ns(L, 1, "birth_ns", &birth, &owned);
	if (!err)
		err = zm_wg_strays(birth, name, &pids, &n);
	zm_ns_release(birth, owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_pushinteger(L, pids[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	free(pids);
	return 1;
}

/* pid(name) → the userspace daemon's pid, or nil, err when none answers. */
static int l_pid(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	int pid;

	if (!zm_link_name_valid(name))
		luaL_argerror(L, 1, lua_pushfstring(L, "invalid interface name '%s'",
						    name));
	pid = zm_wg_userspace_pid(name);
	if (pid < 0)
		return zm_push_error(L, pid);
	lua_pushinteger(L, pid);
	return 1;
}

static int l_kernel_available(lua_State *L)
{
	lua_pushboolean(L, zm_wg_kernel_available() == 1);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "create", l_create },
	{ "set", l_set },
	{ "get", l_get },
	{ "delete", l_delete },
	{ "strays", l_strays },
	{ "pid", l_pid },
	{ "kernel_available", l_kernel_available },
	{ NULL, NULL },
};

static const struct zm_contract contract[] = {
	{ "wg.set", set_fields },
	{ "wg.set peers[]", peer_fields },
	{ "wg.get", get_fields },
	{ "wg.create", create_fields },
	{ "wg.delete", delete_fields },
	{ "wg.strays", strays_fields },
	{ NULL, NULL },
};

void zm_open_wg(lua_State *L)
{
	if (luaL_newmetatable(L, DEVBOX_MT)) {
		lua_pushcfunction(L, devbox_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	zm_contract_add(L, contract);
	luaL_newlib(L, funcs);
}
