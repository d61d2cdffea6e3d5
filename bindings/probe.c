// SPDX-License-Identifier: MIT
/*
 * core.probe: ICMP echo probes through the tunnels (core/probe.h).
 *
 *   local p = core.probe.open(ns, "100.64.1.1")   -- nil, err on failure
 *   p:fd()                                        -- for a loop to watch
 *   p:send("100.64.1.2", id, seq [, data])        -- true | nil, err
 *   p:recv()   -- { {reply = bool, from = "…", id =, seq =, data = "…"}, … }
 *   p:wait(ms)                                    -- true when one arrived
 *   p:close()                                     -- also __gc, __close
 */
#include "common.h"
#include "../core/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#define PROBE_MT "zmesh.probe"
#define RECV_BATCH 64

static int *check_probe(lua_State *L)
{
	int *fd = luaL_checkudata(L, 1, PROBE_MT);

	luaL_argcheck(L, *fd >= 0, 1, "probe is closed");
	return fd;
}

static void check_addr(lua_State *L, int idx, struct in_addr *out)
{
	const char *s = luaL_checkstring(L, idx);

	if (inet_pton(AF_INET, s, out) != 1)
		luaL_argerror(L, idx, lua_pushfstring(L, "'%s' is not an IPv4 address", s));
}

/* open(ns, src) */
static int l_open(lua_State *L)
{
	struct in_addr src;
	struct zm_ns *ns;
	bool owned;
	int *ud, err;

	check_addr(L, 2, &src);
	ud = lua_newuserdatauv(L, sizeof(*ud), 0);
	*ud = -1;
	luaL_setmetatable(L, PROBE_MT);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err) {
		err = zm_probe_open(ns, &src);
		if (err >= 0) {
			*ud = err;
			err = 0;
		}
	}
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	return 1;
}

static int p_fd(lua_State *L)
{
	lua_pushinteger(L, *check_probe(L));
	return 1;
}

/* send(dst, id, seq [, data]) */
static int p_send(lua_State *L)
{
	int fd = *check_probe(L);
	struct in_addr dst;
	lua_Integer id, seq;
	size_t len = 0;
	const char *data;

	check_addr(L, 2, &dst);
	id = luaL_checkinteger(L, 3);
	seq = luaL_checkinteger(L, 4);
	luaL_argcheck(L, id >= 0 && id <= 0xffff, 3, "id must be 0..65535");
	luaL_argcheck(L, seq >= 0 && seq <= 0xffff, 4, "seq must be 0..65535");
	data = luaL_optlstring(L, 5, "", &len);
	luaL_argcheck(L, len <= ZM_PROBE_DATA_MAX, 5, "data too long");
	return zm_push_result(L, zm_probe_send(fd, &dst, (uint16_t)id, (uint16_t)seq,
					       data, len));
}

/* recv() → every message waiting (echo replies and requests) */
static int p_recv(lua_State *L)
{
	int fd = *check_probe(L);
	struct zm_probe_msg msgs[RECV_BATCH];
	char from[INET_ADDRSTRLEN];
	size_t n, i, total = 0;
	int err;

	lua_newtable(L);
	do {
		err = zm_probe_recv(fd, msgs, RECV_BATCH, &n);
		if (err)
			return zm_push_error(L, err);
		for (i = 0; i < n; i++) {
			inet_ntop(AF_INET, &msgs[i].from, from, sizeof(from));
			lua_createtable(L, 0, 5);
			lua_pushboolean(L, msgs[i].reply);
			lua_setfield(L, -2, "reply");
			lua_pushstring(L, from);
			lua_setfield(L, -2, "from");
			lua_pushinteger(L, msgs[i].id);
			lua_setfield(L, -2, "id");
			lua_pushinteger(L, msgs[i].seq);
			lua_setfield(L, -2, "seq");
			lua_pushlstring(L, (const char *)msgs[i].data, msgs[i].len);
			lua_setfield(L, -2, "data");
			lua_rawseti(L, -2, (lua_Integer)++total);
		}
	} while (n == RECV_BATCH);
	return 1;
}

/* wait(ms) → true when something arrived, false at the timeout */
static int p_wait(lua_State *L)
{
	int fd = *check_probe(L);
	lua_Integer ms = luaL_checkinteger(L, 2);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n;

	luaL_argcheck(L, ms >= 0 && ms <= 60000, 2, "ms must be 0..60000");
	do {
		n = poll(&pfd, 1, (int)ms);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return zm_push_error(L, -errno);
	lua_pushboolean(L, n > 0);
	return 1;
}

/* Both __gc and __close: idempotent. */
static int p_close(lua_State *L)
{
	int *fd = luaL_checkudata(L, 1, PROBE_MT);

	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return 0;
}

static const luaL_Reg methods[] = {
	{ "fd", p_fd },
	{ "send", p_send },
	{ "recv", p_recv },
	{ "wait", p_wait },
	{ "close", p_close },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "open", l_open },
	{ NULL, NULL },
};

void zm_open_probe(lua_State *L)
{
	if (luaL_newmetatable(L, PROBE_MT)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, p_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, p_close);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
}
