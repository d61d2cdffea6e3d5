/* SPDX-License-Identifier: MIT */
/*
 * Shared conversion helpers for the zmesh.core bindings. The bindings only
 * convert: a caller's mistake raises (naming the argument), a system failure
 * returns nil, "ENAME: message", "ENAME".
 */
#ifndef ZM_BINDINGS_COMMON_H
#define ZM_BINDINGS_COMMON_H

#include <lua.h>
#include <lauxlib.h>
#include <stdbool.h>

struct zm_ns;

#define ZM_NETNS_MT "zmesh.netns"

/* Push nil, "ENAME: text", "ENAME" for -err (or err); returns 3. */
int zm_push_error(lua_State *L, int err);
/* Push true, or the error triple when err != 0. */
int zm_push_result(lua_State *L, int err);

/* Push an array of N strings. */
void zm_push_strv(lua_State *L, char **v, size_t n);

/* Raise unless the table at idx has only keys from the NULL-ended list. */
void zm_check_fields(lua_State *L, int idx, const char *const *allowed);

/* Field getters on an option table: raise when present with a wrong type. */
const char *zm_opt_string(lua_State *L, int idx, const char *key,
			  bool required);
lua_Integer zm_opt_int(lua_State *L, int idx, const char *key,
		       lua_Integer dflt, lua_Integer min, lua_Integer max);
int zm_opt_bool(lua_State *L, int idx, const char *key, int dflt);
/* Raise "bad argument #idx to 'f' (field 'key': why)". */
int zm_field_error(lua_State *L, int idx, const char *key, const char *why);

/*
 * A namespace argument: nil (the caller's own), a name, or a netns handle.
 * Checks the type (raising), then opens; on failure returns -errno and the
 * caller pushes the error. *owned is set when the caller must close it.
 */
int zm_arg_ns(lua_State *L, int idx, struct zm_ns **ns, bool *owned);
/*
 * Raise now if field KEY is not nil, a valid name or an open handle. Check
 * every namespace field before opening any: a raise after an open leaks it.
 */
void zm_check_ns_field(lua_State *L, int idx, const char *key);
/* The same as zm_arg_ns for a field of an option table. */
int zm_opt_ns(lua_State *L, int idx, const char *key, struct zm_ns **ns,
	      bool *owned);
void zm_ns_release(struct zm_ns *ns, bool owned);

/*
 * core.contract: the option fields each function accepts, as data, from
 * the very arrays zm_check_fields() checks, so that a Lua fake core can
 * check the same lists. Each area registers its own (NULL-name ended).
 */
struct zm_contract {
	const char *name;		/* "link.veth", "wg.set peers[]" */
	const char *const *fields;	/* NULL-ended */
};
void zm_contract_add(lua_State *L, const struct zm_contract *c);
/* Push the table of everything registered so far. */
void zm_push_contract(lua_State *L);

/* Area openers, each pushes its sub-table. */
void zm_open_netns(lua_State *L);
void zm_open_link(lua_State *L);
void zm_open_addr(lua_State *L);
void zm_open_route(lua_State *L);
void zm_open_sysctl(lua_State *L);
void zm_open_key(lua_State *L);
void zm_open_wg(lua_State *L);
void zm_open_fs(lua_State *L);
void zm_open_nft(lua_State *L);
void zm_open_http(lua_State *L);
void zm_open_probe(lua_State *L);
void zm_open_nats(lua_State *L);

int luaopen_zmesh_core(lua_State *L);

#endif
