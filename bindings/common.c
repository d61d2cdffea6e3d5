// SPDX-License-Identifier: MIT
#include "common.h"
#include "../core/err.h"
#include "../core/netns.h"

#include <errno.h>
#include <string.h>

int zm_push_error(lua_State *L, int err)
{
	char buf[16];
	const char *name, *text;

	if (err < 0)
		err = -err;
	name = zm_errno_name(err, buf, sizeof(buf));
	text = zm_err_text();
	lua_pushnil(L);
	if (text[0])
		lua_pushfstring(L, "%s: %s: %s", name, text, strerror(err));
	else
		lua_pushfstring(L, "%s: %s", name, strerror(err));
	lua_pushstring(L, name);
	return 3;
}

int zm_push_result(lua_State *L, int err)
{
	if (err)
		return zm_push_error(L, err);
	lua_pushboolean(L, 1);
	return 1;
}

void zm_push_strv(lua_State *L, char **v, size_t n)
{
	size_t i;

	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_pushstring(L, v[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

int zm_field_error(lua_State *L, int idx, const char *key, const char *why)
{
	return luaL_argerror(L, idx,
			     lua_pushfstring(L, "field '%s': %s", key, why));
}

void zm_check_fields(lua_State *L, int idx, const char *const *allowed)
{
	const char *const *a;

	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *key;

		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_argerror(L, idx, "option keys must be strings");
		key = lua_tostring(L, -1);
		for (a = allowed; *a; a++)
			if (!strcmp(*a, key))
				break;
		if (!*a)
			luaL_argerror(L, idx,
				      lua_pushfstring(L, "unknown field '%s'",
						      key));
	}
}

const char *zm_opt_string(lua_State *L, int idx, const char *key,
			  bool required)
{
	const char *s;
	int t = lua_getfield(L, idx, key);

	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		if (required)
			zm_field_error(L, idx, key, "required string missing");
		return NULL;
	}
	if (t != LUA_TSTRING)
		zm_field_error(L, idx, key,
			       lua_pushfstring(L, "string expected, got %s",
					       luaL_typename(L, -1)));
	/* The option table keeps the string alive for the call. */
	s = lua_tostring(L, -1);
	lua_pop(L, 1);
	return s;
}

lua_Integer zm_opt_int(lua_State *L, int idx, const char *key,
		       lua_Integer dflt, lua_Integer min, lua_Integer max)
{
	lua_Integer v;
	int isnum, t = lua_getfield(L, idx, key);

	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return dflt;
	}
	v = lua_tointegerx(L, -1, &isnum);
	if (t != LUA_TNUMBER || !isnum)
		zm_field_error(L, idx, key, "integer expected");
	if (v < min || v > max)
		zm_field_error(L, idx, key,
			       lua_pushfstring(L, "%I out of range %I..%I", v,
					       min, max));
	lua_pop(L, 1);
	return v;
}

int zm_opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
	int v, t = lua_getfield(L, idx, key);

	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return dflt;
	}
	if (t != LUA_TBOOLEAN)
		zm_field_error(L, idx, key, "boolean expected");
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

static int open_ns_at(lua_State *L, int idx, const char *what,
		      struct zm_ns **ns, bool *owned)
{
	struct zm_ns **ud;
	const char *name;

	*ns = NULL;
	*owned = false;
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
	case LUA_TNONE:
		*owned = true;
		return zm_ns_open(NULL, ns);
	case LUA_TSTRING:
		name = lua_tostring(L, idx);
		if (!zm_netns_name_valid(name))
			luaL_argerror(L, idx,
				      lua_pushfstring(L, "%s: invalid namespace name '%s'",
						      what, name));
		*owned = true;
		return zm_ns_open(name, ns);
	default:
		ud = luaL_testudata(L, idx, ZM_NETNS_MT);
		if (!ud)
			luaL_argerror(L, idx,
				      lua_pushfstring(L, "%s: namespace name or handle expected",
						      what));
		if (!*ud)
			luaL_argerror(L, idx,
				      lua_pushfstring(L, "%s: namespace handle is closed",
						      what));
		*ns = *ud;
		return 0;
	}
}

int zm_arg_ns(lua_State *L, int idx, struct zm_ns **ns, bool *owned)
{
	return open_ns_at(L, idx, "ns", ns, owned);
}

void zm_check_ns_field(lua_State *L, int idx, const char *key)
{
	lua_getfield(L, idx, key);
	if (lua_type(L, -1) == LUA_TSTRING &&
	    !zm_netns_name_valid(lua_tostring(L, -1)))
		zm_field_error(L, idx, key,
			       lua_pushfstring(L, "invalid namespace name '%s'",
					       lua_tostring(L, -1)));
	if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
		struct zm_ns **ud = luaL_testudata(L, -1, ZM_NETNS_MT);

		if (!ud)
			zm_field_error(L, idx, key,
				       "namespace name or handle expected");
		if (!*ud)
			zm_field_error(L, idx, key, "namespace handle is closed");
	}
	lua_pop(L, 1);
}

int zm_opt_ns(lua_State *L, int idx, const char *key, struct zm_ns **ns,
	      bool *owned)
{
	int err, top = lua_gettop(L);

	zm_check_ns_field(L, idx, key);
	lua_getfield(L, idx, key);
	err = open_ns_at(L, top + 1, key, ns, owned);
	lua_settop(L, top);
	return err;
}

void zm_ns_release(struct zm_ns *ns, bool owned)
{
	if (owned)
		zm_ns_close(ns);
}

/* The registry table behind core.contract; made on first use. */
static const char contract_key = 'c';

static void contract_table(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &contract_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &contract_key);
}

void zm_contract_add(lua_State *L, const struct zm_contract *c)
{
	contract_table(L);
	for (; c->name; c++) {
		lua_newtable(L);
		for (size_t i = 0; c->fields[i]; i++) {
			lua_pushstring(L, c->fields[i]);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		lua_setfield(L, -2, c->name);
	}
	lua_pop(L, 1);
}

void zm_push_contract(lua_State *L)
{
	contract_table(L);
}
