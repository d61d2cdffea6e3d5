// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/fs.h"
#include "../core/netns.h"

#include <unistd.h>

#define ZM_LOCK_MT "zmesh.lock"

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

/* remove(path): a file; nil, "ENOENT: …" when there is none. */
static int l_remove(lua_State *L)
{
	return zm_push_result(L, zm_fs_remove(luaL_checkstring(L, 1)));
}

/*
 * stat(path) -> {type = "file"|"dir"|"socket"|"symlink"|"other", size,
 * ino, mtime_ns}
 */
static int l_stat(lua_State *L)
{
	static const char *const types[] = { "", "file", "dir", "socket",
					     "symlink", "other" };
	struct zm_fs_info info;
	int err = zm_fs_stat(luaL_checkstring(L, 1), &info);

	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, 0, 4);
	lua_pushstring(L, types[info.type]);
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, (lua_Integer)info.size);
	lua_setfield(L, -2, "size");
	lua_pushinteger(L, (lua_Integer)info.ino);
	lua_setfield(L, -2, "ino");
	lua_pushinteger(L, (lua_Integer)info.mtime_ns);
	lua_setfield(L, -2, "mtime_ns");
	return 1;
}

/* lock(path [, timeout_ms = 0]) -> handle (close() or <close> releases) */
static int l_lock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, 0);
	int *ud, fd;

	luaL_argcheck(L, timeout >= 0 && timeout <= 3600000, 2,
		      "timeout must be 0..3600000 ms");
	ud = lua_newuserdatauv(L, sizeof(*ud), 0);
	*ud = -1;
	luaL_setmetatable(L, ZM_LOCK_MT);
	fd = zm_fs_lock(path, (unsigned int)timeout);
	if (fd < 0)
		return zm_push_error(L, fd);
	*ud = fd;
	return 1;
}

/* Both __gc and __close: idempotent. */
static int lock_close(lua_State *L)
{
	int *ud = luaL_checkudata(L, 1, ZM_LOCK_MT);

	if (*ud >= 0)
		close(*ud);
	*ud = -1;
	return 0;
}

static int lock_tostring(lua_State *L)
{
	int *ud = luaL_checkudata(L, 1, ZM_LOCK_MT);

	lua_pushstring(L, *ud >= 0 ? "zmesh.lock (held)" : "zmesh.lock (released)");
	return 1;
}

static const luaL_Reg lock_methods[] = {
	{ "close", lock_close },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "remove", l_remove },
	{ "stat", l_stat },
	{ "lock", l_lock },
	{ "readlink", l_readlink },
	{ "mkdir", l_mkdir },
	{ "write", l_write },
	{ "list", l_list },
	{ NULL, NULL },
};

void zm_open_fs(lua_State *L)
{
	if (luaL_newmetatable(L, ZM_LOCK_MT)) {
		luaL_newlib(L, lock_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, lock_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, lock_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, lock_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
}
