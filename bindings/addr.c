// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/addr.h"
#include "../core/err.h"
#include "../core/ip.h"
#include "../core/link.h"
#include "../core/netns.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <stdlib.h>

/* The fields each option table may have (also core.contract). */
static const char *const add_fields[] = { "ns", "dev", "addr", "replace",
					  "nodad", NULL };
static const char *const delete_fields[] = { "ns", "dev", "addr", NULL };

static void check_args(lua_State *L, const char **dev, const char **cidr)
{
	struct zm_cidr c;

	*dev = zm_opt_string(L, 1, "dev", true);
	if (!zm_link_name_valid(*dev))
		zm_field_error(L, 1, "dev",
			       lua_pushfstring(L, "invalid interface name '%s'",
					       *dev));
	*cidr = zm_opt_string(L, 1, "addr", true);
	if (zm_cidr_parse(*cidr, &c))
		zm_field_error(L, 1, "addr", zm_err_text());
	zm_check_ns_field(L, 1, "ns");
}

/* add{ns, dev, addr = "10.1.1.1/24", replace, nodad} */
static int l_add(lua_State *L)
{
	struct zm_addr_opts opts;
	const char *dev, *cidr;
	struct zm_ns *ns;
	bool owned;
	int err;

	zm_check_fields(L, 1, add_fields);
	check_args(L, &dev, &cidr);
	opts.replace = zm_opt_bool(L, 1, "replace", 0);
	opts.nodad = zm_opt_bool(L, 1, "nodad", 0);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_addr_add(ns, dev, cidr, &opts);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static int l_delete(lua_State *L)
{
	const char *dev, *cidr;
	struct zm_ns *ns;
	bool owned;
	int err;

	zm_check_fields(L, 1, delete_fields);
	check_args(L, &dev, &cidr);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_addr_delete(ns, dev, cidr);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

/* dump([ns [, dev]]) -> { {dev=, addr=, family=4|6, scope=, index=}, … } */
static int l_dump(lua_State *L)
{
	struct zm_addr_info *v;
	const char *dev = luaL_optstring(L, 2, NULL);
	struct zm_ns *ns;
	bool owned;
	size_t n, i;
	int err;

	if (dev && !zm_link_name_valid(dev))
		luaL_argerror(L, 2, lua_pushfstring(L, "invalid interface name '%s'",
						    dev));
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_addr_dump(ns, dev, &v, &n);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_createtable(L, 0, 6);
		lua_pushstring(L, v[i].dev);
		lua_setfield(L, -2, "dev");
		lua_pushinteger(L, v[i].index);
		lua_setfield(L, -2, "index");
		lua_pushstring(L, v[i].cidr);
		lua_setfield(L, -2, "addr");
		lua_pushinteger(L, v[i].family == AF_INET6 ? 6 : 4);
		lua_setfield(L, -2, "family");
		lua_pushstring(L, v[i].scope);
		lua_setfield(L, -2, "scope");
		lua_pushboolean(L, (v[i].flags & IFA_F_TENTATIVE) != 0);
		lua_setfield(L, -2, "tentative");
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	free(v);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "add", l_add },
	{ "delete", l_delete },
	{ "dump", l_dump },
	{ NULL, NULL },
};

static const struct zm_contract contract[] = {
	{ "addr.add", add_fields },
	{ "addr.delete", delete_fields },
	{ NULL, NULL },
};

void zm_open_addr(lua_State *L)
{
	zm_contract_add(L, contract);
	luaL_newlib(L, funcs);
}
