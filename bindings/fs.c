// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/fs.h"
#include "../core/netns.h"

static mode_t check_mode(lua_State *L, int idx, lua_Integer dflt)
{
	lua_Integer mode = luaL_optinteger(L, idx, dflt);

	luaL_argcheck(L, mode >= 0 && mode <= 07777, idx, "mode must be 0..07777");
	return (mode_t)mode;
}

/* mkdir(path [, mode = 0755]) */
static int l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	return zm_push_result(L, zm_fs_mkdir_p(path, check_mode(L, 2, 0755)));
}

/* write(path, data [, mode = 0600]): atomic replace. */
static int l_write(lua_State *L)
{
	size_t len;
	const char *path = luaL_checkstring(L, 1);
	const char *data = luaL_checklstring(L, 2, &len);

	return zm_push_result(L, zm_fs_write_atomic(path, data, len,
						    check_mode(L, 3, 0600)));
}

/* list(dir) -> sorted names */
static int l_list(lua_State *L)
{
	char **names;
	size_t n;
	int err = zm_fs_list(luaL_checkstring(L, 1), &names, &n);

	if (err)
		return zm_push_error(L, err);
	zm_push_strv(L, names, n);
	zm_strv_free(names, n);
	return 1;
}

/* readlink(path) -> target */
static int l_readlink(lua_State *L)
{
	char buf[4096];
	int err = zm_fs_readlink(luaL_checkstring(L, 1), buf, sizeof(buf));

	if (err)
		return zm_push_error(L, err);
	lua_pushstring(L, buf);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "readlink", l_readlink },
	{ "mkdir", l_mkdir },
	{ "write", l_write },
	{ "list", l_list },
	{ NULL, NULL },
};

void zm_open_fs(lua_State *L)
{
	luaL_newlib(L, funcs);
}
