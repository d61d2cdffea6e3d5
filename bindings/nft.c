// SPDX-License-Identifier: MIT
#include "common.h"

static const luaL_Reg funcs[] = {
	{ NULL, NULL },
};

void zm_open_nft(lua_State *L)
{
	luaL_newlib(L, funcs);
}
