// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/fs.h"
#include "../core/netns.h"

#include <stdlib.h>

static const char *check_name(lua_State *L, int idx)
{
	const char *name = luaL_checkstring(L, idx);

	if (!zm_netns_name_valid(name))
		luaL_argerror(L, idx,
			      lua_pushfstring(L, "invalid namespace name '%s'",
					      name));
	return name;
}

static int l_create(lua_State *L)
{
	return zm_push_result(L, zm_netns_create(check_name(L, 1)));
}

/* delete(name [, grace_ms]) */
static int l_delete(lua_State *L)
{
	const char *name = check_name(L, 1);
	lua_Integer grace = luaL_optinteger(L, 2, 1000);

	luaL_argcheck(L, grace >= 0 && grace <= 60000, 2,
		      "grace must be 0..60000 ms");
	return zm_push_result(L, zm_netns_delete(name, (unsigned int)grace));
}

static int l_exists(lua_State *L)
{
	int ret = zm_netns_exists(check_name(L, 1));

	if (ret < 0)
		return zm_push_error(L, ret);
	lua_pushboolean(L, ret);
	return 1;
}

static int l_list(lua_State *L)
{
	char **names;
	size_t n;
	int err = zm_netns_list(&names, &n);

	if (err)
		return zm_push_error(L, err);
	zm_push_strv(L, names, n);
	zm_strv_free(names, n);
	return 1;
}

static int l_pids(lua_State *L)
{
	pid_t *pids;
	size_t n, i;
	int err = zm_netns_pids(check_name(L, 1), &pids, &n);

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

/* open([name]) -> handle; nil or no name is the caller's own namespace. */
static int l_open(lua_State *L)
{
	const char *name = lua_isnoneornil(L, 1) ? NULL : check_name(L, 1);
	struct zm_ns **ud = lua_newuserdatauv(L, sizeof(*ud), 0);
	int err;

	*ud = NULL;
	luaL_setmetatable(L, ZM_NETNS_MT);
	err = zm_ns_open(name, ud);
	if (err)
		return zm_push_error(L, err);
	return 1;
}

static struct zm_ns **check_handle(lua_State *L)
{
	return luaL_checkudata(L, 1, ZM_NETNS_MT);
}

/* Both __gc and __close: idempotent. */
static int h_close(lua_State *L)
{
	struct zm_ns **ud = check_handle(L);

	zm_ns_close(*ud);
	*ud = NULL;
	return 0;
}

static int h_name(lua_State *L)
{
	struct zm_ns **ud = check_handle(L);

	luaL_argcheck(L, *ud, 1, "namespace handle is closed");
	if ((*ud)->name[0])
		lua_pushstring(L, (*ud)->name);
	else
		lua_pushnil(L);
	return 1;
}

static int h_tostring(lua_State *L)
{
	struct zm_ns **ud = check_handle(L);

	if (!*ud)
		lua_pushliteral(L, "zmesh.netns (closed)");
	else
		lua_pushfstring(L, "zmesh.netns (%s)", zm_ns_label(*ud));
	return 1;
}

static const luaL_Reg handle_methods[] = {
	{ "close", h_close },
	{ "name", h_name },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "create", l_create },
	{ "delete", l_delete },
	{ "exists", l_exists },
	{ "list", l_list },
	{ "pids", l_pids },
	{ "open", l_open },
	{ NULL, NULL },
};

void zm_open_netns(lua_State *L)
{
	if (luaL_newmetatable(L, ZM_NETNS_MT)) {
		luaL_newlib(L, handle_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, h_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, h_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, h_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
}
