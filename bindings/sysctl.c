// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/netns.h"
#include "../core/sysctl.h"

static const char *check_key(lua_State *L, int idx)
{
	const char *key = luaL_checkstring(L, idx);

	if (!zm_sysctl_key_valid(key))
		luaL_argerror(L, idx,
			      lua_pushfstring(L, "'%s' is not a net.* sysctl key",
					      key));
	return key;
}

/* get(ns, key) -> string */
static int l_get(lua_State *L)
{
	const char *key = check_key(L, 2);
	char buf[4096];
	struct zm_ns *ns;
	bool owned;
	int err;

	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_sysctl_get(ns, key, buf, sizeof(buf));
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	lua_pushstring(L, buf);
	return 1;
}

/* set(ns, key, value): value a string or an integer. */
static int l_set(lua_State *L)
{
	const char *key = check_key(L, 2);
	const char *value;
	struct zm_ns *ns;
	bool owned;
	int err;

	if (lua_type(L, 3) != LUA_TSTRING && !lua_isinteger(L, 3))
		luaL_typeerror(L, 3, "string or integer");
	value = lua_tostring(L, 3);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_sysctl_set(ns, key, value);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static const luaL_Reg funcs[] = {
	{ "get", l_get },
	{ "set", l_set },
	{ NULL, NULL },
};

void zm_open_sysctl(lua_State *L)
{
	luaL_newlib(L, funcs);
}
