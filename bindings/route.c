// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/err.h"
#include "../core/ip.h"
#include "../core/link.h"
#include "../core/netns.h"
#include "../core/route.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* The fields each option table may have (also core.contract). */
static const char *const add_fields[] = { "ns", "family", "dst", "via", "dev",
					  "metric", "table", "replace", NULL };
static const char *const delete_fields[] = { "ns", "family", "dst", "via",
					     "dev", "metric", "table", NULL };
static const char *const dump_fields[] = { "family", "table", NULL };

static void check_spec(lua_State *L, struct zm_route_spec *s)
{
	struct zm_cidr c;

	memset(s, 0, sizeof(*s));
	switch (zm_opt_int(L, 1, "family", 0, 0, 6)) {
	case 0:
		break;
	case 4:
		s->family = AF_INET;
		break;
	case 6:
		s->family = AF_INET6;
		break;
	default:
		zm_field_error(L, 1, "family", "4 or 6 expected");
	}
	s->dst = zm_opt_string(L, 1, "dst", true);
	if (!strcmp(s->dst, "default")) {
		if (!s->family)
			zm_field_error(L, 1, "family",
				       "a default route needs family 4 or 6");
	} else if (zm_cidr_parse(s->dst, &c)) {
		zm_field_error(L, 1, "dst", zm_err_text());
	} else if (s->family && c.family != s->family) {
		zm_field_error(L, 1, "dst",
			       lua_pushfstring(L, "'%s' is not an IPv%d prefix",
					       s->dst,
					       s->family == AF_INET ? 4 : 6));
	}
	s->via = zm_opt_string(L, 1, "via", false);
	if (s->via && zm_ip_parse(s->via, &c))
		zm_field_error(L, 1, "via", zm_err_text());
	s->dev = zm_opt_string(L, 1, "dev", false);
	if (s->dev && !zm_link_name_valid(s->dev))
		zm_field_error(L, 1, "dev",
			       lua_pushfstring(L, "invalid interface name '%s'",
					       s->dev));
	if (!s->via && !s->dev)
		luaL_argerror(L, 1, "a route needs field 'via' or 'dev'");
	s->metric = (unsigned int)zm_opt_int(L, 1, "metric", 0, 0, 0xffffffffLL);
	s->table = (unsigned int)zm_opt_int(L, 1, "table", 0, 0, 0xffffffffLL);
	zm_check_ns_field(L, 1, "ns");
}

/*
 * add{ns, family = 4|6, dst = "default"|"10.0.0.0/8"|…, via, dev, metric,
 * table, replace}: family is needed for "default", else taken from dst.
 */
static int l_add(lua_State *L)
{
	struct zm_route_spec s;
	struct zm_ns *ns;
	bool owned;
	int err;

	zm_check_fields(L, 1, add_fields);
	check_spec(L, &s);
	s.replace = zm_opt_bool(L, 1, "replace", 0);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_route_add(ns, &s);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static int l_delete(lua_State *L)
{
	struct zm_route_spec s;
	struct zm_ns *ns;
	bool owned;
	int err;

	zm_check_fields(L, 1, delete_fields);
	check_spec(L, &s);
	err = zm_opt_ns(L, 1, "ns", &ns, &owned);
	if (!err)
		err = zm_route_delete(ns, &s);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static void set_str(lua_State *L, const char *key, const char *val)
{
	if (!val[0])
		return;
	lua_pushstring(L, val);
	lua_setfield(L, -2, key);
}

/* dump([ns [, {family = 4|6, table = n}]]) */
static int l_dump(lua_State *L)
{
	struct zm_route_info *v;
	struct zm_ns *ns;
	int family = AF_UNSPEC, err;
	unsigned int table = 0;
	bool owned;
	size_t n, i;

	if (!lua_isnoneornil(L, 2)) {
		lua_Integer fam;

		zm_check_fields(L, 2, dump_fields);
		fam = zm_opt_int(L, 2, "family", 0, 0, 6);
		if (fam != 0 && fam != 4 && fam != 6)
			zm_field_error(L, 2, "family", "4 or 6 expected");
		family = fam == 4 ? AF_INET : fam == 6 ? AF_INET6 : AF_UNSPEC;
		table = (unsigned int)zm_opt_int(L, 2, "table", 0, 0,
						 0xffffffffLL);
	}
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_route_dump(ns, family, table, &v, &n);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_createtable(L, 0, 8);
		set_str(L, "dst", v[i].dst);
		set_str(L, "via", v[i].via);
		set_str(L, "dev", v[i].dev);
		set_str(L, "protocol", v[i].protocol);
		set_str(L, "scope", v[i].scope);
		lua_pushinteger(L, v[i].family == AF_INET6 ? 6 : 4);
		lua_setfield(L, -2, "family");
		lua_pushinteger(L, v[i].metric);
		lua_setfield(L, -2, "metric");
		lua_pushinteger(L, v[i].table);
		lua_setfield(L, -2, "table");
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
	{ "route.add", add_fields },
	{ "route.delete", delete_fields },
	{ "route.dump", dump_fields },
	{ NULL, NULL },
};

void zm_open_route(lua_State *L)
{
	zm_contract_add(L, contract);
	luaL_newlib(L, funcs);
}
