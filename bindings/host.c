// SPDX-License-Identifier: MIT
/*
 * The zmesh host: Lua 5.4 with zmesh.core linked in. Everything it does is
 * in lua/zmesh/cli.lua; this only finds the Lua tree and runs it.
 */
#include "common.h"

#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ZM_LUADIR
#define ZM_LUADIR "/usr/local/share/zmesh/lua"
#endif

/*
 * The Lua tree: ../lua beside build/zmesh in a source tree, then
 * ../share/zmesh/lua beside an installed bin/zmesh (wherever PREFIX put
 * it), then the PREFIX compiled in.
 */
static void lua_dir(char *buf, size_t len)
{
	static const char *const beside[] = { "../lua", "../share/zmesh/lua" };
	char exe[PATH_MAX - 64], probe[PATH_MAX];
	struct stat st;
	ssize_t n;
	char *slash;
	size_t i;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			for (i = 0; i < sizeof(beside) / sizeof(*beside); i++) {
				snprintf(probe, sizeof(probe), "%s/%s/zmesh/cli.lua",
					 exe, beside[i]);
				if (!stat(probe, &st)) {
					snprintf(buf, len, "%s/%s", exe, beside[i]);
					return;
				}
			}
		}
	}
	snprintf(buf, len, "%s", ZM_LUADIR);
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

static int run(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = lua_touserdata(L, 2);
	char dir[PATH_MAX];
	int i;

	luaL_openlibs(L);
	luaL_requiref(L, "zmesh.core", luaopen_zmesh_core, 0);
	lua_pop(L, 1);
	/* A fresh require (after package.loaded is cleared) finds it again
	 * here, never a second copy as zmesh/core.so. */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, luaopen_zmesh_core);
	lua_setfield(L, -2, "zmesh.core");
	lua_pop(L, 1);

	lua_dir(dir, sizeof(dir));
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir,
			lua_tostring(L, -1));
	lua_setfield(L, -3, "path");
	lua_pop(L, 2);

	lua_getglobal(L, "require");
	lua_pushliteral(L, "zmesh.cli");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "main");
	lua_createtable(L, argc, 0);
	for (i = 1; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_call(L, 1, 1);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	int status, code;

	if (!L) {
		fputs("zmesh: cannot create a Lua state\n", stderr);
		return 1;
	}
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, run);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	status = lua_pcall(L, 2, 1, 1);
	if (status != LUA_OK) {
		fprintf(stderr, "zmesh: %s\n", lua_tostring(L, -1));
		code = 1;
	} else {
		code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
	}
	lua_close(L);
	return code;
}
