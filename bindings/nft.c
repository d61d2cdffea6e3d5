// SPDX-License-Identifier: MIT
/*
 * core.nft: a ruleset description (a plain Lua table, see
 * lua/zmesh/firewall.lua) converted to struct zm_nft_ruleset and applied in
 * one transaction; the table read back with its counters.
 *
 *   core.nft.apply(ns, desc)          -> true | nil, err, ename
 *   core.nft.check(desc)              -> true (raises like apply would)
 *   core.nft.dump(ns [, {family, table}])  -> table | nil, err, ename
 *   core.nft.delete(ns [, {family, table}])-> true | nil, err, ename
 *   core.nft.names                    -> the vocabulary, lists of names
 *
 * Every mistake in desc raises, naming the field by its path
 * ("chains[2].rules[1].match.tcp_dport: ..."), before anything is opened.
 * The C structures live in userdata anchored for the call, so a raise
 * half-way leaks nothing.
 */
#include "common.h"
#include "../core/link.h"
#include "../core/netns.h"
#include "../core/nft.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>

#define DEFAULT_TABLE "zmesh"
#define DEFAULT_FAMILY "inet"

static const char *const verdicts[] = { "accept", "drop", "reject", "return",
					NULL };

struct conv {
	lua_State *L;
	int arg;		/* the description's argument index */
	int anchor;		/* stack index of the userdata anchor table */
	int nanchor;
	char path[160];		/* of the table being read */
	struct zm_nft_ruleset rs;
};

static int conv_fail(struct conv *cv, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int conv_fail(struct conv *cv, const char *key, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return luaL_argerror(cv->L, cv->arg,
			     lua_pushfstring(cv->L, "%s%s%s: %s", cv->path,
					     key && cv->path[0] ? "." : "",
					     key ? key : "", msg));
}

/* Memory for the call: a userdata kept alive by the anchor table. */
static void *conv_alloc(struct conv *cv, size_t size)
{
	void *p = lua_newuserdatauv(cv->L, size ? size : 1, 0);

	memset(p, 0, size ? size : 1);
	lua_rawseti(cv->L, cv->anchor, ++cv->nanchor);
	return p;
}

/* Raise unless the table at idx has only string keys from allowed. */
static void conv_fields(struct conv *cv, int idx, const char *const *allowed)
{
	const char *const *a;

	lua_pushnil(cv->L);
	while (lua_next(cv->L, idx)) {
		lua_pop(cv->L, 1);
		if (lua_type(cv->L, -1) != LUA_TSTRING)
			conv_fail(cv, NULL, "unexpected key of type %s",
				  luaL_typename(cv->L, -1));
		for (a = allowed; *a; a++)
			if (!strcmp(*a, lua_tostring(cv->L, -1)))
				break;
		if (!*a)
			conv_fail(cv, NULL, "unknown field '%s'",
				  lua_tostring(cv->L, -1));
	}
}

/* The length of the sequence at idx; raise on any other key. */
static size_t conv_array(struct conv *cv, int idx, const char *key)
{
	size_t n = (size_t)lua_rawlen(cv->L, idx), count = 0;

	lua_pushnil(cv->L);
	while (lua_next(cv->L, idx)) {
		lua_Integer i;
		int isint;

		lua_pop(cv->L, 1);
		i = lua_tointegerx(cv->L, -1, &isint);
		if (lua_type(cv->L, -1) != LUA_TNUMBER || !isint || i < 1 ||
		    (size_t)i > n)
			conv_fail(cv, key, "a list expected (keys 1..n)");
		count++;
	}
	if (count != n)
		conv_fail(cv, key, "a list expected (keys 1..n)");
	return n;
}

static int conv_enum(struct conv *cv, int idx, const char *key,
		     const struct zm_nft_name *names, uint32_t *value)
{
	const char *s;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		return conv_fail(cv, key, "string expected, got %s",
				 luaL_typename(cv->L, idx));
	s = lua_tostring(cv->L, idx);
	if (zm_nft_name_lookup(names, s, value))
		return conv_fail(cv, key, "unknown value '%s'", s);
	return 0;
}

/* An integer lo..hi, or a name from names (when not NULL). */
static uint32_t conv_number(struct conv *cv, int idx, const char *key,
			    const struct zm_nft_name *names, uint32_t hi)
{
	lua_Integer v;
	uint32_t named;
	int isint;

	if (names && lua_type(cv->L, idx) == LUA_TSTRING) {
		conv_enum(cv, idx, key, names, &named);
		return named;
	}
	v = lua_tointegerx(cv->L, idx, &isint);
	if (lua_type(cv->L, idx) != LUA_TNUMBER || !isint)
		conv_fail(cv, key, "%s expected, got %s",
			  names ? "integer or name" : "integer",
			  luaL_typename(cv->L, idx));
	if (v < 0 || v > (lua_Integer)hi)
		conv_fail(cv, key, "%lld out of range 0..%u", (long long)v, hi);
	return (uint32_t)v;
}

/* A value, a list of values (a set) or, for ports, "lo-hi". */
static void conv_values(struct conv *cv, int idx, const char *key,
			struct zm_nft_match *m,
			const struct zm_nft_name *names, uint32_t hi,
			bool range_ok)
{
	lua_State *L = cv->L;
	uint32_t *set;
	size_t n, i, j;

	if (lua_type(L, idx) == LUA_TSTRING && range_ok) {
		const char *s = lua_tostring(L, idx);
		unsigned long lo, up;
		char *end;

		lo = strtoul(s, &end, 10);
		if (end == s || *end != '-' || !end[1])
			conv_fail(cv, key, "'%s' is not a number or range lo-hi",
				  s);
		up = strtoul(end + 1, &end, 10);
		if (*end || lo > hi || up > hi || lo >= up)
			conv_fail(cv, key, "'%s' is not a range lo-hi within 0..%u",
				  s, hi);
		m->lo = (uint32_t)lo;
		m->hi = (uint32_t)up;
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE) {
		m->lo = m->hi = conv_number(cv, idx, key, names, hi);
		return;
	}
	n = conv_array(cv, idx, key);
	if (n == 0 || n > ZM_NFT_SET_MAX)
		conv_fail(cv, key, "a set needs 1..%d values", ZM_NFT_SET_MAX);
	set = conv_alloc(cv, n * sizeof(*set));
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		set[i] = conv_number(cv, lua_gettop(L), key, names, hi);
		lua_pop(L, 1);
		for (j = 0; j < i; j++)
			if (set[j] == set[i])
				conv_fail(cv, key, "value %u twice in the set",
					  set[i]);
	}
	if (n == 1) {
		m->lo = m->hi = set[0];
		return;
	}
	m->set = set;
	m->nset = n;
}

static void conv_ct_state(struct conv *cv, int idx, struct zm_nft_match *m)
{
	lua_State *L = cv->L;
	uint32_t bit;
	size_t n, i;

	if (lua_type(L, idx) == LUA_TSTRING) {
		conv_enum(cv, idx, "ct_state", zm_nft_ct_states, &m->lo);
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE)
		conv_fail(cv, "ct_state", "state name or list expected, got %s",
			  luaL_typename(L, idx));
	n = conv_array(cv, idx, "ct_state");
	if (n == 0)
		conv_fail(cv, "ct_state", "empty list");
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		conv_enum(cv, lua_gettop(L), "ct_state", zm_nft_ct_states, &bit);
		lua_pop(L, 1);
		if (m->lo & bit)
			conv_fail(cv, "ct_state", "state listed twice");
		m->lo |= bit;
	}
}

/* "name", "prefix*", with "!" in front for "not". */
static void conv_ifname(struct conv *cv, int idx, const char *key,
			struct zm_nft_match *m)
{
	const char *s;
	size_t len;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "interface name expected, got %s",
			  luaL_typename(cv->L, idx));
	s = lua_tostring(cv->L, idx);
	if (*s == '!') {
		m->neg = true;
		s++;
	}
	len = strlen(s);
	if (len > 1 && s[len - 1] == '*') {
		m->wildcard = true;
		len--;
	}
	if (len == 0 || len >= ZM_NFT_IFNAMSIZ || memchr(s, '*', len))
		conv_fail(cv, key, "invalid interface name '%s'",
			  lua_tostring(cv->L, idx));
	memcpy(m->name, s, len);
	m->name[len] = '\0';
	if (!m->wildcard && !zm_link_name_valid(m->name))
		conv_fail(cv, key, "invalid interface name '%s'",
			  lua_tostring(cv->L, idx));
}

/* "addr" or "addr/len", family by key, "!" in front for "not". */
static void conv_addr(struct conv *cv, int idx, const char *key, int v6,
		      struct zm_nft_match *m)
{
	unsigned int alen = v6 ? 16 : 4, i;
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	const char *s;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "address or prefix expected, got %s",
			  luaL_typename(cv->L, idx));
	s = lua_tostring(cv->L, idx);
	if (*s == '!') {
		m->neg = true;
		s++;
	}
	if (strlen(s) >= sizeof(buf))
		conv_fail(cv, key, "'%s' is not an IPv%d address or prefix", s,
			  v6 ? 6 : 4);
	strcpy(buf, s);
	m->plen = alen * 8;
	slash = strchr(buf, '/');
	if (slash) {
		char *end;
		unsigned long plen;

		*slash = '\0';
		plen = strtoul(slash + 1, &end, 10);
		if (!slash[1] || *end || plen < 1 || plen > alen * 8)
			conv_fail(cv, key, "'%s' has an invalid prefix length "
				  "(1..%u)", s, alen * 8);
		m->plen = (unsigned int)plen;
	}
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, m->addr) != 1)
		conv_fail(cv, key, "'%s' is not an IPv%d address or prefix", s,
			  v6 ? 6 : 4);
	for (i = 0; i < alen; i++) {
		unsigned int bits = m->plen > i * 8 ? m->plen - i * 8 : 0;
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));

		if (m->addr[i] & ~mask)
			conv_fail(cv, key, "'%s' has host bits set", s);
	}
}

static bool has(const struct zm_nft_rule *r, enum zm_nft_key k)
{
	return r->has & (1u << k);
}

/* The combinations one rule cannot express. */
static void conv_match_sense(struct conv *cv, struct zm_nft_rule *r)
{
	bool ip = has(r, ZM_NFT_IP_SADDR) || has(r, ZM_NFT_IP_DADDR) ||
		  has(r, ZM_NFT_ICMP_TYPE);
	bool ip6 = has(r, ZM_NFT_IP6_SADDR) || has(r, ZM_NFT_IP6_DADDR) ||
		   has(r, ZM_NFT_ICMPV6_TYPE);
	bool tcp = has(r, ZM_NFT_TCP_SPORT) || has(r, ZM_NFT_TCP_DPORT);
	bool udp = has(r, ZM_NFT_UDP_SPORT) || has(r, ZM_NFT_UDP_DPORT);
	int l4 = tcp + udp + has(r, ZM_NFT_ICMP_TYPE) +
		 has(r, ZM_NFT_ICMPV6_TYPE);
	uint32_t want = tcp ? 6 : udp ? 17 : has(r, ZM_NFT_ICMP_TYPE) ? 1 : 58;

	if (ip && ip6)
		conv_fail(cv, NULL, "IPv4 and IPv6 matches in one rule");
	if (ip && cv->rs.family == ZM_NFT_IP6)
		conv_fail(cv, NULL, "IPv4 match in an ip6 table");
	if (ip6 && cv->rs.family == ZM_NFT_IP)
		conv_fail(cv, NULL, "IPv6 match in an ip table");
	if (l4 > 1)
		conv_fail(cv, NULL, "matches on two layer 4 protocols");
	if (l4 && has(r, ZM_NFT_L4PROTO) && r->m[ZM_NFT_L4PROTO].lo != want)
		conv_fail(cv, "l4proto", "contradicts the port or type match");
}

static void conv_match(struct conv *cv, int idx, struct zm_nft_rule *r)
{
	lua_State *L = cv->L;
	size_t plen = strlen(cv->path);
	unsigned int k;

	if (lua_type(L, idx) != LUA_TTABLE)
		conv_fail(cv, "match", "table expected, got %s",
			  luaL_typename(L, idx));
	snprintf(cv->path + plen, sizeof(cv->path) - plen, ".match");
	conv_fields(cv, idx, (const char *const *)zm_nft_key_names);
	for (k = 0; k < ZM_NFT_KEY_COUNT; k++) {
		const char *key = zm_nft_key_names[k];
		struct zm_nft_match *m = &r->m[k];
		int v;

		if (lua_getfield(L, idx, key) == LUA_TNIL) {
			lua_pop(L, 1);
			continue;
		}
		v = lua_gettop(L);
		r->has |= 1u << k;
		switch (k) {
		case ZM_NFT_IIFNAME:
		case ZM_NFT_OIFNAME:
			conv_ifname(cv, v, key, m);
			break;
		case ZM_NFT_CT_STATE:
			conv_ct_state(cv, v, m);
			break;
		case ZM_NFT_IP_SADDR:
		case ZM_NFT_IP_DADDR:
			conv_addr(cv, v, key, 0, m);
			break;
		case ZM_NFT_IP6_SADDR:
		case ZM_NFT_IP6_DADDR:
			conv_addr(cv, v, key, 1, m);
			break;
		case ZM_NFT_L4PROTO:
			m->lo = m->hi = conv_number(cv, v, key, zm_nft_l4protos,
						    255);
			break;
		case ZM_NFT_ICMP_TYPE:
			conv_values(cv, v, key, m, zm_nft_icmp_types, 255,
				    false);
			break;
		case ZM_NFT_ICMPV6_TYPE:
			conv_values(cv, v, key, m, zm_nft_icmpv6_types, 255,
				    false);
			break;
		default:	/* ports */
			conv_values(cv, v, key, m, NULL, 65535, true);
			break;
		}
		lua_pop(L, 1);
	}
	conv_match_sense(cv, r);
	cv->path[plen] = '\0';
}

/* "192.0.2.1" or { to = "192.0.2.1", fully_random = true } */
static void conv_nat(struct conv *cv, int idx, const char *key,
		     struct zm_nft_rule *r)
{
	static const char *const fields[] = { "to", "fully_random", NULL };
	lua_State *L = cv->L;
	const char *s;
	int t;

	if (lua_type(L, idx) == LUA_TTABLE) {
		size_t plen = strlen(cv->path);

		snprintf(cv->path + plen, sizeof(cv->path) - plen, ".%s", key);
		conv_fields(cv, idx, fields);
		cv->path[plen] = '\0';
		t = lua_getfield(L, idx, "fully_random");
		if (t != LUA_TNIL && t != LUA_TBOOLEAN)
			conv_fail(cv, key, "fully_random: boolean expected");
		r->fully_random = lua_toboolean(L, -1);
		lua_pop(L, 1);
		lua_getfield(L, idx, "to");
		lua_replace(L, idx);
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "address or { to = address } expected");
	s = lua_tostring(L, idx);
	if (inet_pton(AF_INET, s, r->nat_addr) == 1)
		r->nat_family = 4;
	else if (inet_pton(AF_INET6, s, r->nat_addr) == 1)
		r->nat_family = 6;
	else
		conv_fail(cv, key, "'%s' is not an address", s);
	if ((r->nat_family == 6 && cv->rs.family == ZM_NFT_IP) ||
	    (r->nat_family == 4 && cv->rs.family == ZM_NFT_IP6))
		conv_fail(cv, key, "'%s' does not fit the table's family", s);
}

static void conv_masquerade(struct conv *cv, int idx, struct zm_nft_rule *r)
{
	static const char *const fields[] = { "fully_random", NULL };
	lua_State *L = cv->L;
	size_t plen = strlen(cv->path);
	int t;

	r->action = ZM_NFT_MASQUERADE;
	if (lua_type(L, idx) == LUA_TBOOLEAN && lua_toboolean(L, idx))
		return;
	if (lua_type(L, idx) != LUA_TTABLE)
		conv_fail(cv, "masquerade", "true or { fully_random = … } expected");
	snprintf(cv->path + plen, sizeof(cv->path) - plen, ".masquerade");
	conv_fields(cv, idx, fields);
	t = lua_getfield(L, idx, "fully_random");
	if (t != LUA_TNIL && t != LUA_TBOOLEAN)
		conv_fail(cv, "fully_random", "boolean expected");
	r->fully_random = lua_toboolean(L, -1);
	lua_pop(L, 1);
	cv->path[plen] = '\0';
}

static const struct zm_nft_chain *find_chain(struct conv *cv, const char *name)
{
	size_t i;

	for (i = 0; i < cv->rs.nchains; i++)
		if (cv->rs.chains[i].name && !strcmp(cv->rs.chains[i].name, name))
			return &cv->rs.chains[i];
	return NULL;
}

static void conv_action(struct conv *cv, int idx, struct zm_nft_rule *r)
{
	static const char *const actions[] = { "verdict", "jump", "goto",
					       "masquerade", "snat", "dnat",
					       NULL };
	lua_State *L = cv->L;
	const char *found = NULL;
	int i, v;

	for (i = 0; actions[i]; i++) {
		if (lua_getfield(L, idx, actions[i]) == LUA_TNIL) {
			lua_pop(L, 1);
			continue;
		}
		if (found)
			conv_fail(cv, actions[i], "a rule has one action, "
				  "it already has '%s'", found);
		found = actions[i];
		v = lua_gettop(L);
		if (i == 0) {
			const char *s = luaL_typename(L, v);
			int j;

			if (lua_type(L, v) == LUA_TSTRING)
				s = lua_tostring(L, v);
			for (j = 0; verdicts[j] && strcmp(verdicts[j], s); j++)
				;
			if (!verdicts[j] || lua_type(L, v) != LUA_TSTRING)
				conv_fail(cv, "verdict", "unknown verdict '%s' "
					  "(accept, drop, reject, return)", s);
			r->action = j == 0 ? ZM_NFT_ACCEPT : j == 1 ? ZM_NFT_DROP :
				    j == 2 ? ZM_NFT_REJECT : ZM_NFT_RETURN;
		} else if (i <= 2) {
			const struct zm_nft_chain *c;

			if (lua_type(L, v) != LUA_TSTRING)
				conv_fail(cv, actions[i], "chain name expected");
			r->target = lua_tostring(L, v);
			c = find_chain(cv, r->target);
			if (!c)
				conv_fail(cv, actions[i], "no chain '%s' in this "
					  "table", r->target);
			if (c->base)
				conv_fail(cv, actions[i], "'%s' is a base chain; "
					  "only regular chains are targets",
					  r->target);
			r->action = i == 1 ? ZM_NFT_JUMP : ZM_NFT_GOTO;
		} else if (i == 3) {
			conv_masquerade(cv, v, r);
		} else {
			r->action = i == 4 ? ZM_NFT_SNAT : ZM_NFT_DNAT;
			conv_nat(cv, v, actions[i], r);
		}
		lua_pop(L, 1);
	}
}

static void conv_rule(struct conv *cv, int idx, struct zm_nft_rule *r)
{
	static const char *const fields[] = { "match", "counter", "verdict",
					      "jump", "goto", "masquerade",
					      "snat", "dnat", "comment", NULL };
	lua_State *L = cv->L;
	size_t len;
	int t;

	if (lua_type(L, idx) != LUA_TTABLE)
		conv_fail(cv, NULL, "rule table expected, got %s",
			  luaL_typename(L, idx));
	conv_fields(cv, idx, fields);
	if (lua_getfield(L, idx, "match") != LUA_TNIL)
		conv_match(cv, lua_gettop(L), r);
	lua_pop(L, 1);
	t = lua_getfield(L, idx, "counter");
	if (t != LUA_TNIL && t != LUA_TBOOLEAN)
		conv_fail(cv, "counter", "boolean expected");
	r->counter = lua_toboolean(L, -1);
	lua_pop(L, 1);
	conv_action(cv, idx, r);
	if (!r->has && !r->counter && r->action == ZM_NFT_NONE)
		conv_fail(cv, NULL, "empty rule: give a match, a counter or "
			  "an action");
	t = lua_getfield(L, idx, "comment");
	if (t != LUA_TNIL) {
		if (t != LUA_TSTRING)
			conv_fail(cv, "comment", "string expected");
		r->comment = lua_tolstring(L, -1, &len);
		if (len == 0 || len > ZM_NFT_COMMENT_MAX ||
		    strlen(r->comment) != len)
			conv_fail(cv, "comment", "1..%d characters, no NUL",
				  ZM_NFT_COMMENT_MAX);
	}
	lua_pop(L, 1);
}

/* Name and base-chain fields; rules come later, once all names are known. */
static void conv_chain_head(struct conv *cv, int idx, struct zm_nft_chain *c)
{
	static const char *const fields[] = { "name", "type", "hook",
					      "priority", "policy", "rules",
					      NULL };
	lua_State *L = cv->L;
	uint32_t v;
	int has_type, has_hook, has_prio, has_policy;

	if (lua_type(L, idx) != LUA_TTABLE)
		conv_fail(cv, NULL, "chain table expected, got %s",
			  luaL_typename(L, idx));
	conv_fields(cv, idx, fields);
	if (lua_getfield(L, idx, "name") != LUA_TSTRING ||
	    lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > ZM_NFT_NAME_MAX ||
	    strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
		conv_fail(cv, "name", "chain name (1..%d characters) expected",
			  ZM_NFT_NAME_MAX);
	c->name = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (find_chain(cv, c->name) != c)
		conv_fail(cv, "name", "chain '%s' defined twice", c->name);
	has_type = lua_getfield(L, idx, "type") != LUA_TNIL;
	has_hook = lua_getfield(L, idx, "hook") != LUA_TNIL;
	has_prio = lua_getfield(L, idx, "priority") != LUA_TNIL;
	has_policy = lua_getfield(L, idx, "policy") != LUA_TNIL;
	lua_pop(L, 4);
	if (!has_type && !has_hook && !has_prio && !has_policy)
		return;
	if (!has_type || !has_hook)
		conv_fail(cv, has_type ? "hook" : "type", "a base chain needs "
			  "type and hook (a regular chain has neither)");
	c->base = true;
	lua_getfield(L, idx, "type");
	conv_enum(cv, lua_gettop(L), "type", zm_nft_chain_types, &v);
	c->type = (enum zm_nft_chain_type)v;
	lua_getfield(L, idx, "hook");
	conv_enum(cv, lua_gettop(L), "hook", zm_nft_hooks, &c->hook);
	lua_pop(L, 2);
	/* nft's names: filter 0, dstnat -100, srcnat 100. */
	c->priority = c->type == ZM_NFT_FILTER ? 0 :
		      (c->hook == NF_INET_PRE_ROUTING ||
		       c->hook == NF_INET_LOCAL_OUT) ? -100 : 100;
	if (has_prio) {
		lua_Integer prio;
		int isint;

		lua_getfield(L, idx, "priority");
		prio = lua_tointegerx(L, -1, &isint);
		if (lua_type(L, -1) != LUA_TNUMBER || !isint ||
		    prio < INT32_MIN || prio > INT32_MAX)
			conv_fail(cv, "priority", "32-bit integer expected");
		c->priority = (int32_t)prio;
		lua_pop(L, 1);
	}
	if (has_policy) {
		lua_getfield(L, idx, "policy");
		if (lua_type(L, -1) != LUA_TSTRING ||
		    (strcmp(lua_tostring(L, -1), "accept") &&
		     strcmp(lua_tostring(L, -1), "drop")))
			conv_fail(cv, "policy", "'accept' or 'drop' expected");
		c->drop = !strcmp(lua_tostring(L, -1), "drop");
		lua_pop(L, 1);
	}
}

static void conv_rules(struct conv *cv, int idx, struct zm_nft_chain *c)
{
	lua_State *L = cv->L;
	size_t plen = strlen(cv->path), n, i;
	struct zm_nft_rule *rules;
	int t;

	t = lua_getfield(L, idx, "rules");
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (t != LUA_TTABLE)
		conv_fail(cv, "rules", "list of rules expected");
	n = conv_array(cv, lua_gettop(L), "rules");
	rules = conv_alloc(cv, n * sizeof(*rules));
	for (i = 0; i < n; i++) {
		snprintf(cv->path + plen, sizeof(cv->path) - plen,
			 ".rules[%zu]", i + 1);
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		conv_rule(cv, lua_gettop(L), &rules[i]);
		lua_pop(L, 1);
	}
	cv->path[plen] = '\0';
	lua_pop(L, 1);
	c->rules = rules;
	c->nrules = n;
}

static void conv_ruleset(struct conv *cv)
{
	static const char *const fields[] = { "family", "table", "chains",
					      NULL };
	lua_State *L = cv->L;
	struct zm_nft_chain *chains;
	uint32_t family;
	size_t n, i;
	int t;

	luaL_checktype(L, cv->arg, LUA_TTABLE);
	lua_newtable(L);
	cv->anchor = lua_gettop(L);
	conv_fields(cv, cv->arg, fields);
	t = lua_getfield(L, cv->arg, "family");
	if (t == LUA_TNIL)
		lua_pushliteral(L, DEFAULT_FAMILY);
	conv_enum(cv, lua_gettop(L), "family", zm_nft_families, &family);
	cv->rs.family = (enum zm_nft_family)family;
	lua_settop(L, cv->anchor);
	t = lua_getfield(L, cv->arg, "table");
	if (t == LUA_TNIL)
		cv->rs.table = DEFAULT_TABLE;
	else if (t != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
		 lua_rawlen(L, -1) > ZM_NFT_NAME_MAX ||
		 strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
		conv_fail(cv, "table", "table name (1..%d characters) expected",
			  ZM_NFT_NAME_MAX);
	else
		cv->rs.table = lua_tostring(L, -1);
	lua_settop(L, cv->anchor);
	t = lua_getfield(L, cv->arg, "chains");
	if (t == LUA_TNIL) {
		lua_settop(L, cv->anchor);
		return;
	}
	if (t != LUA_TTABLE)
		conv_fail(cv, "chains", "list of chains expected");
	n = conv_array(cv, lua_gettop(L), "chains");
	chains = conv_alloc(cv, n * sizeof(*chains));
	cv->rs.chains = chains;
	/* Heads first: jump targets may come later in the list. */
	for (i = 0; i < n; i++) {
		snprintf(cv->path, sizeof(cv->path), "chains[%zu]", i + 1);
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		cv->rs.nchains = i + 1;
		conv_chain_head(cv, lua_gettop(L), &chains[i]);
		lua_pop(L, 1);
	}
	for (i = 0; i < n; i++) {
		snprintf(cv->path, sizeof(cv->path), "chains[%zu]", i + 1);
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		conv_rules(cv, lua_gettop(L), &chains[i]);
		lua_pop(L, 1);
	}
	cv->path[0] = '\0';
	lua_settop(L, cv->anchor);
}

static void check_ns_arg(lua_State *L)
{
	if (!lua_isnoneornil(L, 1) && lua_type(L, 1) != LUA_TSTRING &&
	    !luaL_testudata(L, 1, ZM_NETNS_MT))
		luaL_argerror(L, 1, "namespace name or handle expected");
}

/* check(desc): true, or raises as apply would. */
static int l_check(lua_State *L)
{
	struct conv cv = { .L = L, .arg = 1 };

	conv_ruleset(&cv);
	lua_pushboolean(L, 1);
	return 1;
}

/* apply(ns, desc) */
static int l_apply(lua_State *L)
{
	struct conv cv = { .L = L, .arg = 2 };
	struct zm_ns *ns;
	bool owned;
	int err;

	check_ns_arg(L);
	conv_ruleset(&cv);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_nft_apply(ns, &cv.rs);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

/* The optional {family, table} of dump and delete, checked. */
static void opt_table(lua_State *L, int idx, enum zm_nft_family *family,
		      const char **table)
{
	static const char *const fields[] = { "family", "table", NULL };
	const char *s;
	uint32_t v;

	*family = ZM_NFT_INET;
	*table = DEFAULT_TABLE;
	if (lua_isnoneornil(L, idx))
		return;
	zm_check_fields(L, idx, fields);
	s = zm_opt_string(L, idx, "family", false);
	if (s && zm_nft_name_lookup(zm_nft_families, s, &v))
		zm_field_error(L, idx, "family",
			       lua_pushfstring(L, "unknown family '%s'", s));
	if (s)
		*family = (enum zm_nft_family)v;
	s = zm_opt_string(L, idx, "table", false);
	if (s && (!*s || strlen(s) > ZM_NFT_NAME_MAX))
		zm_field_error(L, idx, "table", "invalid table name");
	if (s)
		*table = s;
}

/* delete(ns [, {family, table}]) */
static int l_delete(lua_State *L)
{
	enum zm_nft_family family;
	const char *table;
	struct zm_ns *ns;
	bool owned;
	int err;

	check_ns_arg(L);
	opt_table(L, 2, &family, &table);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_nft_delete(ns, family, table);
	zm_ns_release(ns, owned);
	return zm_push_result(L, err);
}

static void set_u64(lua_State *L, const char *key, uint64_t v)
{
	lua_pushinteger(L, (lua_Integer)v);
	lua_setfield(L, -2, key);
}

static void push_rule(lua_State *L, const struct zm_nft_dump_rule *r)
{
	lua_createtable(L, 0, 5);
	set_u64(L, "handle", r->handle);
	set_u64(L, "exprs", r->nexprs);
	if (r->comment) {
		lua_pushstring(L, r->comment);
		lua_setfield(L, -2, "comment");
	}
	if (r->has_counter) {
		set_u64(L, "packets", r->packets);
		set_u64(L, "bytes", r->bytes);
	}
}

static void push_chain(lua_State *L, const struct zm_nft_dump_chain *c)
{
	const char *hook;
	size_t i;

	lua_createtable(L, 0, 7);
	lua_pushstring(L, c->name);
	lua_setfield(L, -2, "name");
	set_u64(L, "handle", c->handle);
	if (c->base) {
		lua_pushstring(L, c->type);
		lua_setfield(L, -2, "type");
		hook = zm_nft_name_of(zm_nft_hooks, c->hook);
		if (hook)
			lua_pushstring(L, hook);
		else
			lua_pushinteger(L, c->hook);
		lua_setfield(L, -2, "hook");
		lua_pushinteger(L, c->priority);
		lua_setfield(L, -2, "priority");
		lua_pushstring(L, c->drop ? "drop" : "accept");
		lua_setfield(L, -2, "policy");
	}
	lua_createtable(L, (int)c->nrules, 0);
	for (i = 0; i < c->nrules; i++) {
		push_rule(L, &c->rules[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "rules");
}

/* dump(ns [, {family, table}]) */
static int l_dump(lua_State *L)
{
	enum zm_nft_family family;
	struct zm_nft_dump *d = NULL;
	const char *table;
	struct zm_ns *ns;
	bool owned;
	size_t i;
	int err;

	check_ns_arg(L);
	opt_table(L, 2, &family, &table);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_nft_dump(ns, family, table, &d);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	lua_createtable(L, 0, 5);
	lua_pushstring(L, zm_nft_name_of(zm_nft_families, d->family));
	lua_setfield(L, -2, "family");
	lua_pushstring(L, d->table);
	lua_setfield(L, -2, "table");
	set_u64(L, "handle", d->handle);
	set_u64(L, "generation", d->generation);
	lua_createtable(L, (int)d->nchains, 0);
	for (i = 0; i < d->nchains; i++) {
		push_chain(L, &d->chains[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "chains");
	zm_nft_dump_free(d);
	return 1;
}

static void push_names(lua_State *L, const char *key,
		       const struct zm_nft_name *names)
{
	int i;

	lua_newtable(L);
	for (i = 0; names[i].name; i++) {
		lua_pushstring(L, names[i].name);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, key);
}

static void push_vocabulary(lua_State *L)
{
	int i;

	lua_newtable(L);
	push_names(L, "family", zm_nft_families);
	push_names(L, "chain_type", zm_nft_chain_types);
	push_names(L, "hook", zm_nft_hooks);
	push_names(L, "ct_state", zm_nft_ct_states);
	push_names(L, "l4proto", zm_nft_l4protos);
	push_names(L, "icmp_type", zm_nft_icmp_types);
	push_names(L, "icmpv6_type", zm_nft_icmpv6_types);
	lua_newtable(L);
	for (i = 0; i < ZM_NFT_KEY_COUNT; i++) {
		lua_pushstring(L, zm_nft_key_names[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "match");
	lua_newtable(L);
	for (i = 0; verdicts[i]; i++) {
		lua_pushstring(L, verdicts[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "verdict");
}

static const luaL_Reg funcs[] = {
	{ "apply", l_apply },
	{ "check", l_check },
	{ "dump", l_dump },
	{ "delete", l_delete },
	{ NULL, NULL },
};

void zm_open_nft(lua_State *L)
{
	luaL_newlib(L, funcs);
	push_vocabulary(L);
	lua_setfield(L, -2, "names");
}
