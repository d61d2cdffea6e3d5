// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/link.h"
#include "../core/netns.h"

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000	/* linux/if.h; clashes with net/if.h */
#endif

#include <stdlib.h>
#include <string.h>

/* The fields each option table may have (also core.contract). */
static const char *const veth_fields[] = { "ns", "name", "peer", "peer_ns",
					   "mtu", NULL };
static const char *const bridge_fields[] = { "ns", "name", "mtu", NULL };
static const char *const macvlan_fields[] = { "ns", "name", "parent",
					      "parent_ns", "mode", "mtu",
					      NULL };
static const char *const set_fields[] = { "ns", "name", "up", "mtu", "master",
					  "netns", "rename", NULL };
static const char *const delete_fields[] = { "ns", "name", NULL };

static const char *opt_ifname(lua_State *L, int idx, const char *key,
			      bool required)
{
	const char *name = zm_opt_string(L, idx, key, required);

	if (name && !zm_link_name_valid(name))
		zm_field_error(L, idx, key,
			       lua_pushfstring(L, "invalid interface name '%s'",
					       name));
	return name;
}

static unsigned int opt_mtu(lua_State *L, int idx)
{
	return (unsigned int)zm_opt_int(L, idx, "mtu", 0, 68, 65535);
}

static int l_veth(lua_State *L)
{
	struct zm_link_new l = { .kind = "veth" };
	struct zm_ns *ns, *peer_ns;
	bool owned, peer_owned;
	int err;

	zm_check_fields(L, 1, veth_fields);
	l.name = opt_ifname(L, 1, "name", true);
	l.peer = opt_ifname(L, 1, "peer", true);
	l.mtu = opt_mtu(L, 1);
	zm_check_ns_field(L, 1, "peer_ns");
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (err)
		return zm_push_error(L, err);
	lua_getfield(L, 1, "peer_ns");
	if (lua_isnil(L, -1)) {
		peer_ns = ns;
		peer_owned = false;
	} else {
		err = zm_opt_ns(L, 1, "peer_ns", &peer_ns, &peer_owned);
	}
	lua_pop(L, 1);
	l.peer_ns = peer_ns;
	if (!err)
		err = zm_link_add(ns, &l);
	zm_ns_release(peer_ns, peer_owned);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static int l_bridge(lua_State *L)
{
	struct zm_link_new l = { .kind = "bridge" };
	struct zm_ns *ns;
	bool owned;
	int err;

	zm_check_fields(L, 1, bridge_fields);
	l.name = opt_ifname(L, 1, "name", true);
	l.mtu = opt_mtu(L, 1);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_link_add(ns, &l);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

/* A macvlan on PARENT (in parent_ns), made there and born into ns. */
static int l_macvlan(lua_State *L)
{
	static const char *const modes[] = { "private", "vepa", "bridge",
					     "passthru", "source", NULL };
	struct zm_link_new l = { .kind = "macvlan" };
	struct zm_ns *ns, *parent_ns = NULL;
	bool owned, parent_owned = false;
	const char *mode;
	int err, i;

	zm_check_fields(L, 1, macvlan_fields);
	l.name = opt_ifname(L, 1, "name", true);
	l.parent = opt_ifname(L, 1, "parent", true);
	mode = zm_opt_string(L, 1, "mode", false);
	for (i = 0; mode && modes[i] && strcmp(modes[i], mode); i++)
		;
	if (mode && !modes[i])
		zm_field_error(L, 1, "mode",
			       lua_pushfstring(L, "unknown macvlan mode '%s'",
					       mode));
	/* MACVLAN_MODE_* are the bits in this order; bridge by default. */
	l.macvlan_mode = 1u << (mode ? i : 2);
	l.mtu = opt_mtu(L, 1);
	zm_check_ns_field(L, 1, "parent_ns");
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_opt_ns(L, 1, "parent_ns", &parent_ns, &parent_owned);
	l.netns = ns;
	if (!err)
		err = zm_link_add(parent_ns, &l);
	zm_ns_release(parent_ns, parent_owned);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

/* set{ns, name, up, mtu, master (name or false), netns, rename} */
static int l_set(lua_State *L)
{
	struct zm_link_change c = { 0 };
	struct zm_ns *ns, *target = NULL;
	bool owned, target_owned = false;
	const char *name;
	int err, t;

	zm_check_fields(L, 1, set_fields);
	name = opt_ifname(L, 1, "name", true);
	lua_getfield(L, 1, "up");
	if (!lua_isnil(L, -1)) {
		c.has |= ZM_LINK_SET_UP;
		c.up = zm_opt_bool(L, 1, "up", 0);
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "mtu");
	if (!lua_isnil(L, -1)) {
		c.has |= ZM_LINK_SET_MTU;
		c.mtu = opt_mtu(L, 1);
	}
	lua_pop(L, 1);
	t = lua_getfield(L, 1, "master");
	lua_pop(L, 1);
	if (t == LUA_TBOOLEAN) {
		if (zm_opt_bool(L, 1, "master", 0))
			zm_field_error(L, 1, "master",
				       "link name or false expected");
		c.has |= ZM_LINK_SET_MASTER;
	} else if (t != LUA_TNIL) {
		c.has |= ZM_LINK_SET_MASTER;
		c.master = opt_ifname(L, 1, "master", false);
	}
	c.name = opt_ifname(L, 1, "rename", false);
	if (c.name)
		c.has |= ZM_LINK_SET_NAME;
	zm_check_ns_field(L, 1, "netns");
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (err)
		return zm_push_error(L, err);
	t = lua_getfield(L, 1, "netns");
	lua_pop(L, 1);
	if (t != LUA_TNIL) {
		err = zm_opt_ns(L, 1, "netns", &target, &target_owned);
		c.has |= ZM_LINK_SET_NETNS;
		c.netns = target;
	}
	if (!err)
		err = zm_link_set(ns, name, &c);
	zm_ns_release(target, target_owned);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static int l_delete(lua_State *L)
{
	struct zm_ns *ns;
	bool owned;
	const char *name;
	int err;

	zm_check_fields(L, 1, delete_fields);
	name = opt_ifname(L, 1, "name", true);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_link_delete(ns, name);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static void push_info(lua_State *L, const struct zm_link_info *i)
{
	lua_createtable(L, 0, 12);
	lua_pushstring(L, i->name);
	lua_setfield(L, -2, "name");
	lua_pushinteger(L, i->index);
	lua_setfield(L, -2, "index");
	if (i->kind[0]) {
		lua_pushstring(L, i->kind);
		lua_setfield(L, -2, "kind");
	}
	lua_pushinteger(L, i->mtu);
	lua_setfield(L, -2, "mtu");
	lua_pushboolean(L, (i->flags & IFF_UP) != 0);
	lua_setfield(L, -2, "up");
	lua_pushboolean(L, (i->flags & IFF_LOWER_UP) != 0);
	lua_setfield(L, -2, "carrier");
	lua_pushstring(L, i->operstate);
	lua_setfield(L, -2, "operstate");
	if (i->mac[0]) {
		lua_pushstring(L, i->mac);
		lua_setfield(L, -2, "mac");
	}
	if (i->master) {
		lua_pushinteger(L, i->master);
		lua_setfield(L, -2, "master_index");
	}
	if (i->link) {
		lua_pushinteger(L, i->link);
		lua_setfield(L, -2, "link_index");
	}
	if (i->link_netnsid >= 0) {
		lua_pushinteger(L, i->link_netnsid);
		lua_setfield(L, -2, "link_netnsid");
	}
}

/* get(ns, name) -> table | nil, err, ename */
static int l_get(lua_State *L)
{
	struct zm_link_info info;
	struct zm_ns *ns;
	bool owned;
	const char *name = luaL_checkstring(L, 2);
	int err;

	if (!zm_link_name_valid(name))
		luaL_argerror(L, 2, lua_pushfstring(L, "invalid interface name '%s'",
						    name));
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_link_get(ns, name, &info);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	push_info(L, &info);
	return 1;
}

/* dump([ns]) -> array of link tables, with master names resolved. */
static int l_dump(lua_State *L)
{
	struct zm_link_info *v;
	struct zm_ns *ns;
	bool owned;
	size_t n, i, j;
	int err;

	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_link_dump(ns, &v, &n);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		push_info(L, &v[i]);
		for (j = 0; v[i].master && j < n; j++)
			if (v[j].index == v[i].master) {
				lua_pushstring(L, v[j].name);
				lua_setfield(L, -2, "master");
			}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	free(v);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "veth", l_veth },
	{ "bridge", l_bridge },
	{ "macvlan", l_macvlan },
	{ "set", l_set },
	{ "delete", l_delete },
	{ "get", l_get },
	{ "dump", l_dump },
	{ NULL, NULL },
};

static const struct zm_contract contract[] = {
	{ "link.veth", veth_fields },
	{ "link.bridge", bridge_fields },
	{ "link.macvlan", macvlan_fields },
	{ "link.set", set_fields },
	{ "link.delete", delete_fields },
	{ NULL, NULL },
};

void zm_open_link(lua_State *L)
{
	zm_contract_add(L, contract);
	luaL_newlib(L, funcs);
}
