// SPDX-License-Identifier: MIT
/* The zmesh.core module: one sub-table per core area. */
#include "common.h"

#ifndef ZM_VERSION
#define ZM_VERSION "0.0.0-dev"
#endif

struct area {
	const char *name;
	void (*open)(lua_State *L);
};

static const struct area areas[] = {
	{ "netns", zm_open_netns },
	{ "link", zm_open_link },
	{ "addr", zm_open_addr },
	{ "route", zm_open_route },
	{ "sysctl", zm_open_sysctl },
	{ "key", zm_open_key },
	{ "wg", zm_open_wg },
	{ "fs", zm_open_fs },
	{ "nft", zm_open_nft },
	{ "http", zm_open_http },
	{ "probe", zm_open_probe },
	{ "nats", zm_open_nats },
	{ NULL, NULL },
};

int luaopen_zmesh_core(lua_State *L)
{
	const struct area *a;

	lua_newtable(L);
	for (a = areas; a->name; a++) {
		a->open(L);
		lua_setfield(L, -2, a->name);
	}
	lua_pushliteral(L, ZM_VERSION);
	lua_setfield(L, -2, "version");
	zm_push_contract(L);
	lua_setfield(L, -2, "contract");
	return 1;
}
