// SPDX-License-Identifier: MIT
/*
 * core.nft: a ruleset description (a plain Lua table; its format and its
 * one validator are in lua/zmesh/firewall.lua) converted into libnftnl
 * objects and committed as one transaction; the table read back into the
 * same shape.
 *
 *   core.nft.apply(ns, desc)                -> true | nil, err, ename
 *   core.nft.check(desc)                    -> true (raises as apply would)
 *   core.nft.dump(ns [, {family, table}])   -> desc | nil, err, ename
 *   core.nft.delete(ns [, {family, table}]) -> true | nil, err, ename
 *   core.nft.names, numbers, defaults, limits: the vocabulary (defined
 *                                           here only; firewall.lua uses it)
 *
 * This file only converts. What it cannot express raises, naming the field
 * by its path ("chains[2].rules[1].match.tcp_dport: ..."); what only the
 * kernel knows (a nat chain on the forward hook, masquerade in a filter
 * chain, jump loops, a chain or set value given twice) comes back as the
 * kernel's refusal. tests/fixtures/nft/cases.lua proves that firewall.validate
 * and this file accept and refuse the same descriptions.
 *
 * A dump decodes each kernel rule into a description rule and checks it
 * by encoding that again here: a rule that does not come out as the same
 * expressions is not one Zero-Mesh writes, and reads as { unknown = "…" },
 * which never equals a valid description. Handles and counters go apart,
 * into dump.live, so that a comparison of descriptions ignores them.
 */
#include "common.h"
#include "../core/ip.h"
#include "../core/link.h"
#include "../core/netns.h"
#include "../core/nft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

/* ---- the vocabulary: one place for every name, default and limit ---- */

struct name {
	const char *name;
	uint32_t value;
};

static const struct name families[] = {
	{ "inet", NFPROTO_INET }, { "ip", NFPROTO_IPV4 },
	{ "ip6", NFPROTO_IPV6 }, { NULL, 0 },
};
static const struct name chain_types[] = {
	{ "filter", 0 }, { "nat", 1 }, { NULL, 0 },
};
static const struct name hooks[] = {
	{ "prerouting", NF_INET_PRE_ROUTING }, { "input", NF_INET_LOCAL_IN },
	{ "forward", NF_INET_FORWARD }, { "output", NF_INET_LOCAL_OUT },
	{ "postrouting", NF_INET_POST_ROUTING }, { NULL, 0 },
};
/* In bit order, which is also the order nft lists them in. */
static const struct name ct_states[] = {
	{ "invalid", 1 << 0 }, { "established", 1 << 1 },
	{ "related", 1 << 2 }, { "new", 1 << 3 }, { "untracked", 1 << 6 },
	{ NULL, 0 },
};
static const struct name l4protos[] = {
	{ "icmp", IPPROTO_ICMP }, { "tcp", IPPROTO_TCP },
	{ "udp", IPPROTO_UDP }, { "icmpv6", IPPROTO_ICMPV6 }, { NULL, 0 },
};
static const struct name icmp_types[] = {
	{ "echo-reply", 0 }, { "destination-unreachable", 3 },
	{ "redirect", 5 }, { "echo-request", 8 },
	{ "router-advertisement", 9 }, { "router-solicitation", 10 },
	{ "time-exceeded", 11 }, { "parameter-problem", 12 }, { NULL, 0 },
};
static const struct name icmpv6_types[] = {
	{ "destination-unreachable", 1 }, { "packet-too-big", 2 },
	{ "time-exceeded", 3 }, { "parameter-problem", 4 },
	{ "echo-request", 128 }, { "echo-reply", 129 },
	{ "mld-listener-query", 130 }, { "mld-listener-report", 131 },
	{ "mld-listener-done", 132 }, { "nd-router-solicit", 133 },
	{ "nd-router-advert", 134 }, { "nd-neighbor-solicit", 135 },
	{ "nd-neighbor-advert", 136 }, { "nd-redirect", 137 },
	{ "mld2-listener-report", 143 }, { NULL, 0 },
};
/* reject is no kernel verdict: it has an expression of its own. */
#define VERDICT_REJECT 0x100
static const struct name verdicts[] = {
	{ "accept", NF_ACCEPT }, { "drop", NF_DROP },
	{ "reject", VERDICT_REJECT }, { "return", (uint32_t)NFT_RETURN },
	{ NULL, 0 },
};
static const struct name policies[] = {
	{ "accept", NF_ACCEPT }, { "drop", NF_DROP }, { NULL, 0 },
};
/*
 * tcp_mss: what the MSS option of TCP SYNs is set to. "pmtu": the MSS the
 * route's MTU allows (nft's "tcp flags syn tcp option maxseg size set rt
 * mtu", iptables' --clamp-mss-to-pmtu).
 */
static const struct name tcp_mss_values[] = {
	{ "pmtu", 1 }, { NULL, 0 },
};

/* Match keys, in the order a rule tests them. */
enum key {
	K_IIFNAME, K_OIFNAME, K_CT_STATE, K_IP_SADDR, K_IP_DADDR, K_IP6_SADDR,
	K_IP6_DADDR, K_L4PROTO, K_TCP_SPORT, K_TCP_DPORT, K_UDP_SPORT,
	K_UDP_DPORT, K_ICMP_TYPE, K_ICMPV6_TYPE, K_COUNT
};
static const char *const match_keys[K_COUNT + 1] = {
	"iifname", "oifname", "ct_state", "ip_saddr", "ip_daddr", "ip6_saddr",
	"ip6_daddr", "l4proto", "tcp_sport", "tcp_dport", "udp_sport",
	"udp_dport", "icmp_type", "icmpv6_type", NULL,
};

/* The option fields every table of a description may have (core.contract). */
static const char *const ruleset_fields[] = { "family", "table", "chains",
					      NULL };
static const char *const chain_fields[] = { "name", "type", "hook",
					    "priority", "policy", "rules",
					    NULL };
static const char *const rule_fields[] = { "match", "counter", "verdict",
					   "jump", "goto", "masquerade",
					   "snat", "dnat", "tcp_mss",
					   "comment", NULL };
static const char *const masq_fields[] = { "fully_random", NULL };
static const char *const nat_fields[] = { "to", "fully_random", NULL };
static const char *const table_fields[] = { "family", "table", NULL };
/* The actions of a rule; at most one. */
static const char *const actions[] = { "verdict", "jump", "goto",
				       "masquerade", "snat", "dnat",
				       "tcp_mss", NULL };

#define DEFAULT_FAMILY "inet"
#define DEFAULT_TABLE "zmesh"
#define DEFAULT_POLICY "accept"
#define SET_MAX 256		/* values in one set match */
#define COMMENT_MAX 128
#define IFNAME_MAX 15

/* nft's standard priorities: filter 0, dstnat -100, srcnat 100. */
static int32_t default_priority(bool nat, uint32_t hook)
{
	if (!nat)
		return 0;
	return hook == NF_INET_PRE_ROUTING || hook == NF_INET_LOCAL_OUT ?
		-100 : 100;
}

static const struct name *lookup(const struct name *names, const char *s)
{
	for (; names->name; names++)
		if (!strcmp(names->name, s))
			return names;
	return NULL;
}

static const char *name_of(const struct name *names, uint32_t value)
{
	for (; names->name; names++)
		if (names->value == value)
			return names->name;
	return NULL;
}

/* ---- conversion state ---- */

#define BOX_MT "zmesh.nft.batch"
#define MAX_SETS 8		/* anonymous sets of one rule, at most */

/*
 * What a conversion is building, in a userdata: a raise half-way frees it
 * with the userdata (__gc), so nothing leaks.
 */
struct box {
	struct zm_nft_batch *b;
	struct nftnl_rule *r;	/* the rule being built */
};

struct conv {
	lua_State *L;
	int arg;		/* the description's argument index */
	char path[192];		/* of the table being read */
	uint8_t family;
	const char *table;
	struct box *box;
	uint32_t set_id;
	/* Per rule: */
	int err;		/* -ENOMEM while emitting */
	uint8_t nfproto;	/* dependency already tested, 0 if none */
	int l4;			/* the same, -1 if none */
	struct nftnl_set *sets[MAX_SETS];	/* the rule's, in the batch */
	size_t nsets;
	struct nftnl_rule *last;	/* the rule last put in the batch */
	char label[300];
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
	/* The same paths as firewall.validate's: "ruleset" for the top. */
	return luaL_argerror(cv->L, cv->arg,
			     lua_pushfstring(cv->L, "%s%s%s: %s",
					     cv->path[0] || key ? cv->path :
					     "ruleset",
					     key && cv->path[0] ? "." : "",
					     key ? key : "", msg));
}

/* Append ".key" or "[i]" to the path; returns the old length. */
static size_t path_push(struct conv *cv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t path_push(struct conv *cv, const char *fmt, ...)
{
	size_t len = strlen(cv->path);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cv->path + len, sizeof(cv->path) - len, fmt, ap);
	va_end(ap);
	return len;
}

/* Raise unless the table at idx has only string keys from allowed. */
static void conv_fields(struct conv *cv, int idx, const char *const *allowed)
{
	const char *const *a;

	if (lua_type(cv->L, idx) != LUA_TTABLE)
		conv_fail(cv, NULL, "table expected, got %s",
			  luaL_typename(cv->L, idx));
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
	size_t n, count = 0;

	if (lua_type(cv->L, idx) != LUA_TTABLE)
		conv_fail(cv, key, "a list expected, got %s",
			  luaL_typename(cv->L, idx));
	n = (size_t)lua_rawlen(cv->L, idx);
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

static uint32_t conv_enum(struct conv *cv, int idx, const char *key,
			  const struct name *names)
{
	const struct name *n;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "string expected, got %s",
			  luaL_typename(cv->L, idx));
	n = lookup(names, lua_tostring(cv->L, idx));
	if (!n)
		conv_fail(cv, key, "unknown value '%s'",
			  lua_tostring(cv->L, idx));
	return n->value;
}

static bool conv_bool(struct conv *cv, int idx, const char *key)
{
	if (!lua_isnil(cv->L, idx) && lua_type(cv->L, idx) != LUA_TBOOLEAN)
		conv_fail(cv, key, "boolean expected");
	return lua_toboolean(cv->L, idx);
}

/* A name of 1..255 bytes without NUL. */
static const char *conv_name(struct conv *cv, int idx, const char *key,
			     const char *what)
{
	size_t len;
	const char *s = lua_type(cv->L, idx) == LUA_TSTRING ?
		lua_tolstring(cv->L, idx, &len) : NULL;

	if (!s || !len || len > ZM_NFT_NAME_MAX || strlen(s) != len)
		conv_fail(cv, key, "%s name (1..%d characters) expected", what,
			  ZM_NFT_NAME_MAX);
	return s;
}

/* An integer 0..hi, or a name from names (when not NULL). */
static uint32_t conv_number(struct conv *cv, int idx, const char *key,
			    const struct name *names, uint32_t hi)
{
	lua_Integer v;
	int isint;

	if (names && lua_type(cv->L, idx) == LUA_TSTRING)
		return conv_enum(cv, idx, key, names);
	v = lua_tointegerx(cv->L, idx, &isint);
	if (lua_type(cv->L, idx) != LUA_TNUMBER || !isint)
		conv_fail(cv, key, "%s expected, got %s",
			  names ? "integer or name" : "integer",
			  luaL_typename(cv->L, idx));
	if (v < 0 || v > (lua_Integer)hi)
		conv_fail(cv, key, "%lld out of range 0..%u", (long long)v, hi);
	return (uint32_t)v;
}

/* ---- matches, read ---- */

struct vals {
	uint32_t lo, hi;	/* a value (lo == hi) or a range */
	uint32_t set[SET_MAX];
	size_t nset;		/* a set, when > 1 */
};

struct ifname {
	char name[IFNAME_MAX + 1];
	bool neg, wildcard;
};

struct addr {
	uint8_t a[16];
	unsigned int plen;
	bool neg;
};

struct match {
	uint32_t has;		/* 1 << key */
	struct ifname ifname[2];
	uint32_t ct;
	struct addr addr[4];	/* K_IP_SADDR.. K_IP6_DADDR */
	uint32_t l4proto;
	struct vals v[6];	/* K_TCP_SPORT.. K_ICMPV6_TYPE */
};

#define HAS(m, k) ((m)->has & (1u << (k)))

/* A value, a list of values (a set) or, for ports, "lo-hi". */
static void read_vals(struct conv *cv, int idx, const char *key,
		      struct vals *v, const struct name *names, uint32_t hi,
		      bool range_ok)
{
	lua_State *L = cv->L;
	size_t n, i;

	if (lua_type(L, idx) == LUA_TSTRING && range_ok) {
		const char *s = lua_tostring(L, idx);
		unsigned long lo, up;
		char *end;

		lo = strtoul(s, &end, 10);
		if (end == s || *s < '0' || *s > '9' || *end != '-' ||
		    end[1] < '0' || end[1] > '9')
			conv_fail(cv, key, "'%s' is not a number or range lo-hi",
				  s);
		up = strtoul(end + 1, &end, 10);
		if (*end || lo > hi || up > hi || lo >= up)
			conv_fail(cv, key,
				  "'%s' is not a range lo-hi within 0..%u", s,
				  hi);
		v->lo = (uint32_t)lo;
		v->hi = (uint32_t)up;
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE) {
		v->lo = v->hi = conv_number(cv, idx, key, names, hi);
		return;
	}
	n = conv_array(cv, idx, key);
	if (n == 0 || n > SET_MAX)
		conv_fail(cv, key, "a set needs 1..%d values", SET_MAX);
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		v->set[i] = conv_number(cv, lua_gettop(L), key, names, hi);
		lua_pop(L, 1);
	}
	/* One value is a plain compare, as nft makes it. */
	if (n == 1)
		v->lo = v->hi = v->set[0];
	else
		v->nset = n;
}

static void read_ct_state(struct conv *cv, int idx, uint32_t *mask)
{
	lua_State *L = cv->L;
	uint32_t bit;
	size_t n, i;

	if (lua_type(L, idx) == LUA_TSTRING) {
		*mask = conv_enum(cv, idx, "ct_state", ct_states);
		return;
	}
	n = conv_array(cv, idx, "ct_state");
	if (n == 0)
		conv_fail(cv, "ct_state", "empty list");
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		bit = conv_enum(cv, lua_gettop(L), "ct_state", ct_states);
		lua_pop(L, 1);
		if (*mask & bit)
			conv_fail(cv, "ct_state", "state listed twice");
		*mask |= bit;
	}
}

/* "name", "prefix*", with "!" in front for "not". */
static void read_ifname(struct conv *cv, int idx, const char *key,
			struct ifname *m)
{
	const char *s, *all;
	size_t len;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "interface name expected, got %s",
			  luaL_typename(cv->L, idx));
	s = all = lua_tostring(cv->L, idx);
	if (*s == '!') {
		m->neg = true;
		s++;
	}
	len = strlen(s);
	if (len > 1 && s[len - 1] == '*') {
		m->wildcard = true;
		len--;
	}
	if (len == 0 || len > IFNAME_MAX || memchr(s, '*', len))
		conv_fail(cv, key, "invalid interface name '%s'", all);
	memcpy(m->name, s, len);
	m->name[len] = '\0';
	if (!zm_link_name_valid(m->name))
		conv_fail(cv, key, "invalid interface name '%s'", all);
}

/* "addr" or "addr/len", family by key, "!" in front for "not". */
static void read_addr(struct conv *cv, int idx, const char *key, bool v6,
		      struct addr *m)
{
	unsigned int alen = v6 ? 16 : 4, i;
	struct zm_cidr c;
	const char *s;

	if (lua_type(cv->L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "address or prefix expected, got %s",
			  luaL_typename(cv->L, idx));
	s = lua_tostring(cv->L, idx);
	if (*s == '!') {
		m->neg = true;
		s++;
	}
	if (zm_cidr_parse(s, &c) || c.family != (v6 ? AF_INET6 : AF_INET))
		conv_fail(cv, key, "'%s' is not an IPv%d address or prefix", s,
			  v6 ? 6 : 4);
	if (c.prefix == 0)
		conv_fail(cv, key, "'%s' matches everything", s);
	for (i = 0; i < alen; i++) {
		unsigned int bits = c.prefix > i * 8 ? c.prefix - i * 8 : 0;
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));

		if (c.addr[i] & ~mask)
			conv_fail(cv, key, "'%s' has host bits set", s);
	}
	memcpy(m->a, c.addr, alen);
	m->plen = c.prefix;
}

/* The combinations one rule cannot express. */
static void match_sense(struct conv *cv, const struct match *m)
{
	bool ip = HAS(m, K_IP_SADDR) || HAS(m, K_IP_DADDR) ||
		  HAS(m, K_ICMP_TYPE);
	bool ip6 = HAS(m, K_IP6_SADDR) || HAS(m, K_IP6_DADDR) ||
		   HAS(m, K_ICMPV6_TYPE);
	bool tcp = HAS(m, K_TCP_SPORT) || HAS(m, K_TCP_DPORT);
	bool udp = HAS(m, K_UDP_SPORT) || HAS(m, K_UDP_DPORT);
	int l4 = tcp + udp + !!HAS(m, K_ICMP_TYPE) + !!HAS(m, K_ICMPV6_TYPE);
	uint32_t want = tcp ? IPPROTO_TCP : udp ? IPPROTO_UDP :
			HAS(m, K_ICMP_TYPE) ? IPPROTO_ICMP : IPPROTO_ICMPV6;

	if (ip && ip6)
		conv_fail(cv, NULL, "IPv4 and IPv6 matches in one rule");
	if (ip && cv->family == NFPROTO_IPV6)
		conv_fail(cv, NULL, "IPv4 match in an ip6 table");
	if (ip6 && cv->family == NFPROTO_IPV4)
		conv_fail(cv, NULL, "IPv6 match in an ip table");
	if (l4 > 1)
		conv_fail(cv, NULL, "matches on two layer 4 protocols");
	if (l4 && HAS(m, K_L4PROTO) && m->l4proto != want)
		conv_fail(cv, "l4proto", "contradicts the port or type match");
}

static void read_match(struct conv *cv, int idx, struct match *m)
{
	lua_State *L = cv->L;
	size_t plen = path_push(cv, ".match");
	unsigned int k;

	conv_fields(cv, idx, match_keys);
	for (k = 0; k < K_COUNT; k++) {
		const char *key = match_keys[k];
		int v;

		if (lua_getfield(L, idx, key) == LUA_TNIL) {
			lua_pop(L, 1);
			continue;
		}
		v = lua_gettop(L);
		m->has |= 1u << k;
		if (k <= K_OIFNAME)
			read_ifname(cv, v, key, &m->ifname[k]);
		else if (k == K_CT_STATE)
			read_ct_state(cv, v, &m->ct);
		else if (k <= K_IP6_DADDR)
			read_addr(cv, v, key, k >= K_IP6_SADDR,
				  &m->addr[k - K_IP_SADDR]);
		else if (k == K_L4PROTO)
			m->l4proto = conv_number(cv, v, key, l4protos, 255);
		else if (k <= K_UDP_DPORT)
			read_vals(cv, v, key, &m->v[k - K_TCP_SPORT], NULL,
				  65535, true);
		else
			read_vals(cv, v, key, &m->v[k - K_TCP_SPORT],
				  k == K_ICMP_TYPE ? icmp_types : icmpv6_types,
				  255, false);
		lua_pop(L, 1);
	}
	match_sense(cv, m);
	cv->path[plen] = '\0';
}

/* ---- matches, emitted as nft(8) emits them ---- */

/* nftables' own datatype ids, so that nft(8) prints set members by name. */
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_ICMP_TYPE 14
#define NFT_TYPE_ICMPV6_TYPE 29
#define ANON_SET_NAME "__set%d"

static struct nftnl_expr *e_new(struct conv *cv, const char *name)
{
	struct nftnl_expr *x = cv->err ? NULL : nftnl_expr_alloc(name);

	if (!x && !cv->err)
		cv->err = -ENOMEM;
	return x;
}

static void e_add(struct conv *cv, struct nftnl_expr *x)
{
	if (x)
		nftnl_rule_add_expr(cv->box->r, x);
}

static void e_meta(struct conv *cv, uint32_t key)
{
	struct nftnl_expr *x = e_new(cv, "meta");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_DREG, NFT_REG_1);
	}
	e_add(cv, x);
}

static void e_cmp(struct conv *cv, uint32_t op, const void *data,
		  uint32_t len)
{
	struct nftnl_expr *x = e_new(cv, "cmp");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(x, NFTNL_EXPR_CMP_DATA, data, len);
	}
	e_add(cv, x);
}

static void e_payload(struct conv *cv, uint32_t base, uint32_t off,
		      uint32_t len)
{
	struct nftnl_expr *x = e_new(cv, "payload");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_OFFSET, off);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_LEN, len);
	}
	e_add(cv, x);
}

/* reg1 = reg1 & mask (xor 0), over len bytes. */
static void e_mask(struct conv *cv, const void *mask, uint32_t len)
{
	static const uint8_t zero[16];
	struct nftnl_expr *x = e_new(cv, "bitwise");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_LEN, len);
		nftnl_expr_set(x, NFTNL_EXPR_BITWISE_MASK, mask, len);
		nftnl_expr_set(x, NFTNL_EXPR_BITWISE_XOR, zero, len);
	}
	e_add(cv, x);
}

static void e_cmp_u8(struct conv *cv, uint8_t v)
{
	e_cmp(cv, NFT_CMP_EQ, &v, 1);
}

static void need_nfproto(struct conv *cv, uint8_t nfproto)
{
	if (cv->family != NFPROTO_INET || cv->nfproto == nfproto)
		return;
	e_meta(cv, NFT_META_NFPROTO);
	e_cmp_u8(cv, nfproto);
	cv->nfproto = nfproto;
}

static void need_l4proto(struct conv *cv, uint8_t proto)
{
	if (cv->l4 == proto)
		return;
	e_meta(cv, NFT_META_L4PROTO);
	e_cmp_u8(cv, proto);
	cv->l4 = proto;
}

static void emit_ifname(struct conv *cv, uint32_t key, const struct ifname *m)
{
	char name[IFNAME_MAX + 1] = { 0 };
	size_t len = strlen(m->name);

	memcpy(name, m->name, len);
	e_meta(cv, key);
	e_cmp(cv, m->neg ? NFT_CMP_NEQ : NFT_CMP_EQ, name,
	      m->wildcard ? (uint32_t)len : sizeof(name));
}

static void emit_ct_state(struct conv *cv, uint32_t mask)
{
	struct nftnl_expr *x = e_new(cv, "ct");
	uint32_t zero = 0;

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
		nftnl_expr_set_u32(x, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	}
	e_add(cv, x);
	e_mask(cv, &mask, sizeof(mask));
	e_cmp(cv, NFT_CMP_NEQ, &zero, sizeof(zero));
}

/*
 * An address or prefix, as nft does it: whole bytes are compared directly,
 * a prefix that ends inside a byte is masked first.
 */
static void emit_addr(struct conv *cv, bool v6, uint32_t off,
		      const struct addr *m)
{
	uint32_t alen = v6 ? 16 : 4, op = m->neg ? NFT_CMP_NEQ : NFT_CMP_EQ;
	uint8_t mask[16] = { 0 };
	unsigned int i;

	need_nfproto(cv, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	if (m->plen % 8 == 0) {
		e_payload(cv, NFT_PAYLOAD_NETWORK_HEADER, off, m->plen / 8);
		e_cmp(cv, op, m->a, m->plen / 8);
		return;
	}
	for (i = 0; i < alen; i++) {
		unsigned int bits = m->plen > i * 8 ? m->plen - i * 8 : 0;

		mask[i] = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
	}
	e_payload(cv, NFT_PAYLOAD_NETWORK_HEADER, off, alen);
	e_mask(cv, mask, alen);
	e_cmp(cv, op, m->a, alen);
}

static void put_be(uint8_t *p, uint32_t v, uint32_t len)
{
	if (len == 2)
		*p++ = (uint8_t)(v >> 8);
	*p = (uint8_t)v;
}

/* An anonymous constant set of the values, in the batch before its rule. */
static void emit_set(struct conv *cv, const struct vals *v, uint32_t type,
		     uint32_t len)
{
	struct nftnl_set *s = cv->err ? NULL : nftnl_set_alloc();
	struct nftnl_expr *x;
	uint32_t id = ++cv->set_id;
	size_t i;

	if (!s || cv->nsets == MAX_SETS) {
		nftnl_set_free(s);
		cv->err = cv->err ? cv->err : -ENOMEM;
		return;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, cv->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, ANON_SET_NAME);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, cv->family);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS,
			  NFT_SET_ANONYMOUS | NFT_SET_CONSTANT);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, len);
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, (uint32_t)v->nset);
	for (i = 0; i < v->nset; i++) {
		struct nftnl_set_elem *el = nftnl_set_elem_alloc();
		uint8_t key[2];

		if (!el) {
			nftnl_set_free(s);
			cv->err = -ENOMEM;
			return;
		}
		put_be(key, v->set[i], len);
		nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, len);
		nftnl_set_elem_add(s, el);
	}
	snprintf(cv->label + strlen(cv->label),
		 sizeof(cv->label) - strlen(cv->label), " (its set)");
	cv->sets[cv->nsets++] = s;
	cv->err = zm_nft_batch_add(cv->box->b, ZM_NFT_SET, s, cv->label);
	cv->label[strlen(cv->label) - strlen(" (its set)")] = '\0';
	x = e_new(cv, "lookup");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(x, NFTNL_EXPR_LOOKUP_SET, ANON_SET_NAME);
		nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SET_ID, id);
	}
	e_add(cv, x);
}

/* Values of len (1 or 2) bytes, network order: value, range or set. */
static void emit_vals(struct conv *cv, const struct vals *v, uint32_t type,
		      uint32_t len)
{
	uint8_t lo[2], hi[2];

	if (v->nset) {
		emit_set(cv, v, type, len);
		return;
	}
	put_be(lo, v->lo, len);
	put_be(hi, v->hi, len);
	if (v->lo == v->hi) {
		e_cmp(cv, NFT_CMP_EQ, lo, len);
		return;
	}
	e_cmp(cv, NFT_CMP_GTE, lo, len);
	e_cmp(cv, NFT_CMP_LTE, hi, len);
}

static bool single(const struct vals *v)
{
	return !v->nset && v->lo == v->hi;
}

/*
 * Source and destination port; two plain values are one 4-byte compare,
 * the way nft merges adjacent header fields.
 */
static void emit_ports(struct conv *cv, const struct match *m,
		       enum key sport)
{
	const struct vals *s = &m->v[sport - K_TCP_SPORT], *d = s + 1;
	bool has_s = HAS(m, sport), has_d = HAS(m, sport + 1);

	if (has_s && has_d && single(s) && single(d)) {
		uint8_t both[4];

		put_be(both, s->lo, 2);
		put_be(both + 2, d->lo, 2);
		e_payload(cv, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 4);
		e_cmp(cv, NFT_CMP_EQ, both, 4);
		return;
	}
	if (has_s) {
		e_payload(cv, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
		emit_vals(cv, s, NFT_TYPE_INET_SERVICE, 2);
	}
	if (has_d) {
		e_payload(cv, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
		emit_vals(cv, d, NFT_TYPE_INET_SERVICE, 2);
	}
}

static void emit_icmp(struct conv *cv, const struct match *m, bool v6)
{
	need_nfproto(cv, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	need_l4proto(cv, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
	e_payload(cv, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
	emit_vals(cv, &m->v[(v6 ? K_ICMPV6_TYPE : K_ICMP_TYPE) - K_TCP_SPORT],
		  v6 ? NFT_TYPE_ICMPV6_TYPE : NFT_TYPE_ICMP_TYPE, 1);
}

static void emit_match(struct conv *cv, const struct match *m)
{
	static const uint32_t addr_off[] = { 12, 16, 8, 24 };
	int k;

	if (HAS(m, K_IIFNAME))
		emit_ifname(cv, NFT_META_IIFNAME, &m->ifname[0]);
	if (HAS(m, K_OIFNAME))
		emit_ifname(cv, NFT_META_OIFNAME, &m->ifname[1]);
	if (HAS(m, K_CT_STATE))
		emit_ct_state(cv, m->ct);
	for (k = K_IP_SADDR; k <= K_IP6_DADDR; k++)
		if (HAS(m, k))
			emit_addr(cv, k >= K_IP6_SADDR,
				  addr_off[k - K_IP_SADDR],
				  &m->addr[k - K_IP_SADDR]);
	if (HAS(m, K_ICMP_TYPE)) {
		emit_icmp(cv, m, false);
	} else if (HAS(m, K_ICMPV6_TYPE)) {
		emit_icmp(cv, m, true);
	} else if (HAS(m, K_TCP_SPORT) || HAS(m, K_TCP_DPORT)) {
		need_l4proto(cv, IPPROTO_TCP);
		emit_ports(cv, m, K_TCP_SPORT);
	} else if (HAS(m, K_UDP_SPORT) || HAS(m, K_UDP_DPORT)) {
		need_l4proto(cv, IPPROTO_UDP);
		emit_ports(cv, m, K_UDP_SPORT);
	} else if (HAS(m, K_L4PROTO)) {
		need_l4proto(cv, (uint8_t)m->l4proto);
	}
}

/* ---- actions ---- */

enum act { A_NONE, A_VERDICT, A_JUMP, A_GOTO, A_MASQ, A_SNAT, A_DNAT,
	   A_MSS };

struct action {
	enum act kind;
	uint32_t verdict;
	const char *target;
	bool fully_random;
	struct zm_cidr to;
};

/* "192.0.2.1" or { to = "192.0.2.1", fully_random = true } */
static void read_nat(struct conv *cv, int idx, const char *key,
		     struct action *a)
{
	lua_State *L = cv->L;
	const char *s;

	if (lua_type(L, idx) == LUA_TTABLE) {
		size_t plen = path_push(cv, ".%s", key);

		conv_fields(cv, idx, nat_fields);
		lua_getfield(L, idx, "fully_random");
		a->fully_random = conv_bool(cv, -1, "fully_random");
		cv->path[plen] = '\0';
		lua_getfield(L, idx, "to");
		lua_replace(L, idx);
		lua_pop(L, 1);
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		conv_fail(cv, key, "address or { to = address } expected");
	s = lua_tostring(L, idx);
	if (zm_ip_parse(s, &a->to))
		conv_fail(cv, key, "'%s' is not an address", s);
	if ((a->to.family == AF_INET6 && cv->family == NFPROTO_IPV4) ||
	    (a->to.family == AF_INET && cv->family == NFPROTO_IPV6))
		conv_fail(cv, key, "'%s' does not fit the table's family", s);
}

static void read_action(struct conv *cv, int idx, struct action *a)
{
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
		a->kind = (enum act)(i + 1);
		switch (a->kind) {
		case A_VERDICT:
			if (lua_type(L, v) != LUA_TSTRING ||
			    !lookup(verdicts, lua_tostring(L, v)))
				conv_fail(cv, "verdict", "unknown verdict '%s' "
					  "(accept, drop, reject, return)",
					  lua_type(L, v) == LUA_TSTRING ?
					  lua_tostring(L, v) :
					  luaL_typename(L, v));
			a->verdict = lookup(verdicts,
					    lua_tostring(L, v))->value;
			break;
		case A_JUMP:
		case A_GOTO:
			a->target = conv_name(cv, v, actions[i], "chain");
			break;
		case A_MASQ:
			if (lua_type(L, v) == LUA_TTABLE) {
				size_t plen = path_push(cv, ".masquerade");

				conv_fields(cv, v, masq_fields);
				lua_getfield(L, v, "fully_random");
				a->fully_random = conv_bool(cv, -1,
							    "fully_random");
				lua_pop(L, 1);
				cv->path[plen] = '\0';
			} else if (lua_type(L, v) != LUA_TBOOLEAN ||
				   !lua_toboolean(L, v)) {
				conv_fail(cv, "masquerade",
					  "true or { fully_random = … } expected");
			}
			break;
		case A_MSS:
			conv_enum(cv, v, "tcp_mss", tcp_mss_values);
			break;
		default:
			read_nat(cv, v, actions[i], a);
			break;
		}
		/* A jump target's string stays in the description meanwhile. */
		lua_pop(L, 1);
	}
}

static void e_verdict(struct conv *cv, uint32_t code, const char *chain)
{
	struct nftnl_expr *x = e_new(cv, "immediate");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_VERDICT, code);
		if (chain)
			nftnl_expr_set_str(x, NFTNL_EXPR_IMM_CHAIN, chain);
	}
	e_add(cv, x);
}

/* The code nft gives "reject" in each family: port unreachable. */
static void reject_code(uint8_t family, uint32_t *type, uint8_t *code)
{
	*type = family == NFPROTO_INET ? NFT_REJECT_ICMPX_UNREACH :
					 NFT_REJECT_ICMP_UNREACH;
	/* ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH, or ICMPX's. */
	*code = family == NFPROTO_IPV4 ? 3 : family == NFPROTO_IPV6 ? 4 :
		NFT_REJECT_ICMPX_PORT_UNREACH;
}

/*
 * tcp_mss "pmtu", as nft emits "tcp flags syn tcp option maxseg size set
 * rt mtu": on TCP SYNs, the MSS option set to what the route's MTU allows.
 */
static void emit_mss(struct conv *cv)
{
	static const uint8_t syn = 0x02, zero;
	struct nftnl_expr *x;

	need_l4proto(cv, IPPROTO_TCP);
	e_payload(cv, NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1);
	e_mask(cv, &syn, 1);
	e_cmp(cv, NFT_CMP_NEQ, &zero, 1);
	x = e_new(cv, "rt");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_RT_KEY, NFT_RT_TCPMSS);
		nftnl_expr_set_u32(x, NFTNL_EXPR_RT_DREG, NFT_REG_1);
	}
	e_add(cv, x);
	x = e_new(cv, "byteorder");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_BYTEORDER_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BYTEORDER_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BYTEORDER_OP,
				   NFT_BYTEORDER_HTON);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BYTEORDER_LEN, 2);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BYTEORDER_SIZE, 2);
	}
	e_add(cv, x);
	x = e_new(cv, "exthdr");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_EXTHDR_SREG, NFT_REG_1);
		nftnl_expr_set_u8(x, NFTNL_EXPR_EXTHDR_TYPE, 2); /* maxseg */
		nftnl_expr_set_u32(x, NFTNL_EXPR_EXTHDR_OFFSET, 2);
		nftnl_expr_set_u32(x, NFTNL_EXPR_EXTHDR_LEN, 2);
		nftnl_expr_set_u32(x, NFTNL_EXPR_EXTHDR_OP,
				   NFT_EXTHDR_OP_TCPOPT);
	}
	e_add(cv, x);
}

static void emit_action(struct conv *cv, const struct action *a)
{
	uint32_t flags = a->fully_random ? NF_NAT_RANGE_PROTO_RANDOM_FULLY : 0;
	struct nftnl_expr *x;
	uint32_t type;
	uint8_t code;

	switch (a->kind) {
	case A_NONE:
		break;
	case A_VERDICT:
		if (a->verdict != VERDICT_REJECT) {
			e_verdict(cv, a->verdict, NULL);
			break;
		}
		x = e_new(cv, "reject");
		reject_code(cv->family, &type, &code);
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_REJECT_TYPE, type);
			nftnl_expr_set_u8(x, NFTNL_EXPR_REJECT_CODE, code);
		}
		e_add(cv, x);
		break;
	case A_JUMP:
	case A_GOTO:
		e_verdict(cv, a->kind == A_JUMP ? (uint32_t)NFT_JUMP :
						  (uint32_t)NFT_GOTO,
			  a->target);
		break;
	case A_MASQ:
		x = e_new(cv, "masq");
		if (x && flags)
			nftnl_expr_set_u32(x, NFTNL_EXPR_MASQ_FLAGS, flags);
		e_add(cv, x);
		break;
	case A_MSS:
		emit_mss(cv);
		break;
	default:
		x = e_new(cv, "immediate");
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
			nftnl_expr_set(x, NFTNL_EXPR_IMM_DATA, a->to.addr,
				       zm_ip_len(a->to.family));
		}
		e_add(cv, x);
		x = e_new(cv, "nat");
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_TYPE,
					   a->kind == A_SNAT ? NFT_NAT_SNAT :
							       NFT_NAT_DNAT);
			nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_FAMILY,
					   a->to.family == AF_INET6 ?
					   NFPROTO_IPV6 : NFPROTO_IPV4);
			nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_REG_ADDR_MIN,
					   NFT_REG_1);
			if (flags)
				nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_FLAGS,
						   flags);
		}
		e_add(cv, x);
		break;
	}
}

static int set_comment(struct nftnl_rule *r, const char *comment)
{
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
	int err = 0;

	if (!ud)
		return -ENOMEM;
	if (!nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment))
		err = -EINVAL;
	else if (nftnl_rule_set_data(r, NFTNL_RULE_USERDATA,
				     nftnl_udata_buf_data(ud),
				     nftnl_udata_buf_len(ud)) < 0)
		err = -ENOMEM;
	nftnl_udata_buf_free(ud);
	return err;
}

/* ---- rules, chains, the ruleset ---- */

/*
 * The rule at idx of chain CHAIN into the batch (its sets first). Reads
 * everything first (raising on a mistake), then builds: nothing to free
 * on a raise but what the box holds.
 */
static void conv_rule(struct conv *cv, int idx, const char *chain)
{
	lua_State *L = cv->L;
	struct match m = { 0 };
	struct action a = { 0 };
	const char *comment = NULL;
	bool counter;
	size_t len;

	conv_fields(cv, idx, rule_fields);
	if (lua_getfield(L, idx, "match") != LUA_TNIL)
		read_match(cv, lua_gettop(L), &m);
	lua_getfield(L, idx, "counter");
	counter = conv_bool(cv, -1, "counter");
	lua_pop(L, 2);
	read_action(cv, idx, &a);
	if (a.kind == A_MSS) {
		/* It rewrites TCP: a match on another protocol contradicts it. */
		if ((HAS(&m, K_L4PROTO) && m.l4proto != IPPROTO_TCP) ||
		    HAS(&m, K_UDP_SPORT) || HAS(&m, K_UDP_DPORT) ||
		    HAS(&m, K_ICMP_TYPE) || HAS(&m, K_ICMPV6_TYPE))
			conv_fail(cv, "tcp_mss", "rewrites TCP SYNs; the "
				  "match is on another protocol");
	}
	if (!m.has && !counter && a.kind == A_NONE)
		conv_fail(cv, NULL, "empty rule: give a match, a counter or "
			  "an action");
	if (lua_getfield(L, idx, "comment") != LUA_TNIL) {
		comment = lua_type(L, -1) == LUA_TSTRING ?
			lua_tolstring(L, -1, &len) : NULL;
		/* What nft(8) can print back: no quotes, no newlines. */
		if (!comment || !len || len > COMMENT_MAX ||
		    strlen(comment) != len || strpbrk(comment, "\"\n"))
			conv_fail(cv, "comment", "1..%d characters without "
				  "quotes or newlines", COMMENT_MAX);
	}
	/* The comment string stays anchored in the description. */
	lua_pop(L, 1);

	cv->nfproto = 0;
	cv->l4 = -1;
	cv->nsets = 0;
	cv->box->r = nftnl_rule_alloc();
	if (!cv->box->r) {
		cv->err = -ENOMEM;
		return;
	}
	nftnl_rule_set_str(cv->box->r, NFTNL_RULE_TABLE, cv->table);
	nftnl_rule_set_str(cv->box->r, NFTNL_RULE_CHAIN, chain);
	emit_match(cv, &m);
	if (counter)
		e_add(cv, e_new(cv, "counter"));
	emit_action(cv, &a);
	if (!cv->err && comment)
		cv->err = set_comment(cv->box->r, comment);
	cv->last = cv->box->r;
	cv->box->r = NULL;
	if (!cv->err)
		cv->err = zm_nft_batch_add(cv->box->b, ZM_NFT_RULE, cv->last,
					   cv->label);
	else
		nftnl_rule_free(cv->last);
}

/* Name and base-chain fields into the batch; rules come later. */
static void conv_chain(struct conv *cv, int idx, const char **name)
{
	lua_State *L = cv->L;
	struct nftnl_chain *c;
	uint32_t hook = 0, policy = NF_ACCEPT;
	lua_Integer prio = 0;
	int has_type, has_hook, has_prio, has_policy, isint;
	bool nat = false;

	conv_fields(cv, idx, chain_fields);
	lua_getfield(L, idx, "name");
	*name = conv_name(cv, -1, "name", "chain");
	lua_pop(L, 1);
	has_type = lua_getfield(L, idx, "type") != LUA_TNIL;
	has_hook = lua_getfield(L, idx, "hook") != LUA_TNIL;
	has_prio = lua_getfield(L, idx, "priority") != LUA_TNIL;
	has_policy = lua_getfield(L, idx, "policy") != LUA_TNIL;
	if ((has_type || has_hook || has_prio || has_policy) &&
	    (!has_type || !has_hook))
		conv_fail(cv, has_type ? "hook" : "type", "a base chain needs "
			  "type and hook (a regular chain has neither)");
	if (has_type) {
		nat = conv_enum(cv, -4, "type", chain_types) == 1;
		hook = conv_enum(cv, -3, "hook", hooks);
		prio = default_priority(nat, hook);
	}
	if (has_prio) {
		prio = lua_tointegerx(L, -2, &isint);
		if (lua_type(L, -2) != LUA_TNUMBER || !isint ||
		    prio < INT32_MIN || prio > INT32_MAX)
			conv_fail(cv, "priority", "32-bit integer expected");
	}
	if (has_policy) {
		if (lua_type(L, -1) != LUA_TSTRING ||
		    !lookup(policies, lua_tostring(L, -1)))
			conv_fail(cv, "policy", "'accept' or 'drop' expected");
		policy = lookup(policies, lua_tostring(L, -1))->value;
	}
	c = nftnl_chain_alloc();
	if (!c) {
		cv->err = -ENOMEM;
		lua_pop(L, 4);
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, cv->table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, *name);
	if (has_type) {
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, (int32_t)prio);
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE,
				    nat ? "nat" : "filter");
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, policy);
	}
	lua_pop(L, 4);
	snprintf(cv->label, sizeof(cv->label), "chain '%s'", *name);
	cv->err = zm_nft_batch_add(cv->box->b, ZM_NFT_CHAIN, c, cv->label);
}

static int box_gc(lua_State *L)
{
	struct box *box = luaL_checkudata(L, 1, BOX_MT);

	zm_nft_batch_free(box->b);
	if (box->r)
		nftnl_rule_free(box->r);
	box->b = NULL;
	box->r = NULL;
	return 0;
}

/* A box with an empty batch for TABLE of FAMILY, on the stack. */
static void new_box(struct conv *cv)
{
	cv->box = lua_newuserdatauv(cv->L, sizeof(*cv->box), 0);
	memset(cv->box, 0, sizeof(*cv->box));
	luaL_setmetatable(cv->L, BOX_MT);
	if (zm_nft_batch_new(cv->family, cv->table, &cv->box->b))
		cv->err = -ENOMEM;
}

/* The description at cv->arg into a batch in a box (left on the stack). */
static void conv_ruleset(struct conv *cv)
{
	lua_State *L = cv->L;
	size_t n, i, j, nrules;
	const char *name;
	int chains;

	conv_fields(cv, cv->arg, ruleset_fields);
	if (lua_getfield(L, cv->arg, "family") == LUA_TNIL)
		cv->family = NFPROTO_INET;
	else
		cv->family = (uint8_t)conv_enum(cv, -1, "family", families);
	if (lua_getfield(L, cv->arg, "table") == LUA_TNIL)
		cv->table = DEFAULT_TABLE;
	else
		cv->table = conv_name(cv, -1, "table", "table");
	lua_pop(L, 2);
	new_box(cv);
	lua_getfield(L, cv->arg, "chains");
	chains = lua_gettop(L);
	n = lua_isnil(L, chains) ? 0 : conv_array(cv, chains, "chains");
	/* Every chain first: rules may jump to chains defined later. */
	for (i = 0; i < n && !cv->err; i++) {
		snprintf(cv->path, sizeof(cv->path), "chains[%zu]", i + 1);
		lua_rawgeti(L, chains, (lua_Integer)i + 1);
		conv_chain(cv, lua_gettop(L), &name);
		lua_pop(L, 1);
	}
	for (i = 0; i < n && !cv->err; i++) {
		snprintf(cv->path, sizeof(cv->path), "chains[%zu]", i + 1);
		lua_rawgeti(L, chains, (lua_Integer)i + 1);
		lua_getfield(L, -1, "name");
		name = lua_tostring(L, -1);
		nrules = lua_getfield(L, -2, "rules") == LUA_TNIL ? 0 :
			 conv_array(cv, lua_gettop(L), "rules");
		for (j = 0; j < nrules && !cv->err; j++) {
			snprintf(cv->path, sizeof(cv->path),
				 "chains[%zu].rules[%zu]", i + 1, j + 1);
			snprintf(cv->label, sizeof(cv->label),
				 "chain '%s' rule %zu", name, j + 1);
			lua_rawgeti(L, -1, (lua_Integer)j + 1);
			conv_rule(cv, lua_gettop(L), name);
			lua_pop(L, 1);
		}
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
	cv->path[0] = '\0';
}

static void check_ns_arg(lua_State *L)
{
	if (!lua_isnoneornil(L, 1) && lua_type(L, 1) != LUA_TSTRING &&
	    !luaL_testudata(L, 1, ZM_NETNS_MT))
		luaL_argerror(L, 1, "namespace name or handle expected");
}

/* check(desc): true, or raises as apply would; converts, sends nothing. */
static int l_check(lua_State *L)
{
	struct conv cv = { .L = L, .arg = 1 };

	conv_ruleset(&cv);
	return zm_push_result(L, cv.err);
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
	err = cv.err;
	if (!err)
		err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err) {
		err = zm_nft_commit(ns, cv.box->b);
		zm_ns_release(ns, owned);
	}
	return zm_push_result(L, err);
}

/* The optional {family, table} of dump and delete, checked. */
static void opt_table(lua_State *L, int idx, uint8_t *family,
		      const char **table)
{
	const struct name *n;
	const char *s;

	*family = NFPROTO_INET;
	*table = DEFAULT_TABLE;
	if (lua_isnoneornil(L, idx))
		return;
	zm_check_fields(L, idx, table_fields);
	s = zm_opt_string(L, idx, "family", false);
	n = s ? lookup(families, s) : NULL;
	if (s && !n)
		zm_field_error(L, idx, "family",
			       lua_pushfstring(L, "unknown family '%s'", s));
	if (n)
		*family = (uint8_t)n->value;
	s = zm_opt_string(L, idx, "table", false);
	if (s && (!*s || strlen(s) > ZM_NFT_NAME_MAX))
		zm_field_error(L, idx, "table", "invalid table name");
	if (s)
		*table = s;
}

/* delete(ns [, {family, table}]) */
static int l_delete(lua_State *L)
{
	const char *table;
	uint8_t family;
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

/* ---- reading back: kernel rules into description rules ---- */

#define MAX_EXPRS 64

struct dec {
	lua_State *L;
	uint8_t family;
	struct nftnl_set_list *sets;
	struct nftnl_expr *x[MAX_EXPRS];
	size_t n, i;
	int nfproto;		/* meta nfproto seen, 0 if none */
	int l4;			/* meta l4proto seen, -1 if none */
	bool l4_used;
	int rule, match;	/* stack indexes of the tables being made */
};

static const char *xname(const struct dec *d, size_t i)
{
	return i < d->n ? nftnl_expr_get_str(d->x[i], NFTNL_EXPR_NAME) : "";
}

static bool is(const struct dec *d, size_t i, const char *name)
{
	return !strcmp(xname(d, i), name);
}

static const uint8_t *data(const struct dec *d, size_t i, uint16_t attr,
			   uint32_t *len)
{
	const void *p = nftnl_expr_get(d->x[i], attr, len);

	if (!p)
		*len = 0;
	return p;
}

static uint32_t be(const uint8_t *p, uint32_t len)
{
	return len == 2 ? (uint32_t)(p[0] << 8 | p[1]) : p[0];
}

/* RFC 5952, as zmesh.ip writes it: the longest run of zeroes (first). */
static void format_v6(const uint8_t *a, char *out, size_t size)
{
	int best = -1, blen = 0, i, j, len;
	size_t o = 0;

	for (i = 0; i < 8; i = j + 1) {
		for (j = i; j < 8 && !a[2 * j] && !a[2 * j + 1]; j++)
			;
		if (j - i > blen && j - i >= 2) {
			best = i;
			blen = j - i;
		}
	}
	for (i = 0; i < 8; i++) {
		if (i == best) {
			o += (size_t)snprintf(out + o, size - o, "::");
			i += blen - 1;
			continue;
		}
		len = snprintf(out + o, size - o, "%s%x",
			       o && out[o - 1] != ':' ? ":" : "",
			       a[2 * i] << 8 | a[2 * i + 1]);
		o += (size_t)len;
	}
}

static void push_addr(lua_State *L, bool v6, const uint8_t *a,
		      unsigned int plen, bool neg)
{
	char text[INET6_ADDRSTRLEN];

	if (v6)
		format_v6(a, text, sizeof(text));
	else
		inet_ntop(AF_INET, a, text, sizeof(text));
	if (plen == (v6 ? 128u : 32u))
		lua_pushfstring(L, "%s%s", neg ? "!" : "", text);
	else
		lua_pushfstring(L, "%s%s/%d", neg ? "!" : "", text, (int)plen);
}

/* A value by name when it has one (names may be NULL). */
static void push_value(lua_State *L, const struct name *names, uint32_t v)
{
	const char *s = names ? name_of(names, v) : NULL;

	if (s)
		lua_pushstring(L, s);
	else
		lua_pushinteger(L, v);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The values of the anonymous set a lookup names, sorted; false if none. */
static bool push_set(struct dec *d, size_t i, const struct name *names)
{
	const char *setname = nftnl_expr_get_str(d->x[i],
						 NFTNL_EXPR_LOOKUP_SET);
	struct nftnl_set *s = setname ?
		nftnl_set_list_lookup_byname(d->sets, setname) : NULL;
	struct nftnl_set_elems_iter *it;
	struct nftnl_set_elem *el;
	uint32_t v[SET_MAX], len;
	size_t n = 0, k;

	if (!s || !(nftnl_set_get_u32(s, NFTNL_SET_FLAGS) & NFT_SET_ANONYMOUS))
		return false;
	it = nftnl_set_elems_iter_create(s);
	if (!it)
		return false;
	while ((el = nftnl_set_elems_iter_next(it)) && n < SET_MAX) {
		const uint8_t *key = nftnl_set_elem_get(el, NFTNL_SET_ELEM_KEY,
							&len);

		if (key && (len == 1 || len == 2))
			v[n++] = be(key, len);
	}
	nftnl_set_elems_iter_destroy(it);
	qsort(v, n, sizeof(*v), cmp_u32);
	lua_createtable(d->L, (int)n, 0);
	for (k = 0; k < n; k++) {
		push_value(d->L, names, v[k]);
		lua_rawseti(d->L, -2, (lua_Integer)k + 1);
	}
	return true;
}

static void set_match(struct dec *d, const char *key)
{
	lua_setfield(d->L, d->match, key);
}

/*
 * The value(s) compared after a transport payload load at expression i:
 * a value, a range, or a set. Returns the expressions it took, 0 if none.
 */
static size_t take_vals(struct dec *d, size_t i, uint32_t len,
			const struct name *names)
{
	uint32_t l1, l2;
	const uint8_t *a = is(d, i, "cmp") ?
		data(d, i, NFTNL_EXPR_CMP_DATA, &l1) : NULL;
	const uint8_t *b = is(d, i + 1, "cmp") ?
		data(d, i + 1, NFTNL_EXPR_CMP_DATA, &l2) : NULL;

	if (is(d, i, "lookup"))
		return push_set(d, i, names) ? 1 : 0;
	if (!a || l1 != len)
		return 0;
	if (nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_CMP_OP) == NFT_CMP_GTE &&
	    b && l2 == len) {
		lua_pushfstring(d->L, "%d-%d", (int)be(a, len),
				(int)be(b, len));
		return 2;
	}
	push_value(d->L, names, be(a, len));
	return 1;
}

/* A transport header match at i; the expressions taken, 0 if not ours. */
static size_t take_transport(struct dec *d, size_t i)
{
	static const char *const keys[] = { "tcp_sport", "tcp_dport",
					     "udp_sport", "udp_dport" };
	uint32_t off = nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_OFFSET);
	uint32_t len = nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_LEN), l;
	const uint8_t *p;
	int base;
	size_t took;

	d->l4_used = true;
	if (d->l4 == IPPROTO_ICMP || d->l4 == IPPROTO_ICMPV6) {
		took = off == 0 && len == 1 ?
			take_vals(d, i + 1, 1, d->l4 == IPPROTO_ICMP ?
				  icmp_types : icmpv6_types) : 0;
		if (took)
			set_match(d, d->l4 == IPPROTO_ICMP ? "icmp_type" :
							    "icmpv6_type");
		return took ? took + 1 : 0;
	}
	if (d->l4 != IPPROTO_TCP && d->l4 != IPPROTO_UDP)
		return 0;
	base = d->l4 == IPPROTO_TCP ? 0 : 2;
	if (off == 0 && len == 4) {
		p = is(d, i + 1, "cmp") ?
			data(d, i + 1, NFTNL_EXPR_CMP_DATA, &l) : NULL;
		if (!p || l != 4)
			return 0;
		lua_pushinteger(d->L, be(p, 2));
		set_match(d, keys[base]);
		lua_pushinteger(d->L, be(p + 2, 2));
		set_match(d, keys[base + 1]);
		return 2;
	}
	if ((off != 0 && off != 2) || len != 2)
		return 0;
	took = take_vals(d, i + 1, 2, NULL);
	if (took)
		set_match(d, keys[base + off / 2]);
	return took ? took + 1 : 0;
}

/* A network header match at i: an address or prefix. */
static size_t take_network(struct dec *d, size_t i)
{
	static const char *const keys[] = { "ip_saddr", "ip_daddr",
					    "ip6_saddr", "ip6_daddr" };
	uint32_t off = nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_OFFSET);
	uint32_t len = nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_LEN);
	int fam = d->family == NFPROTO_INET ? d->nfproto : d->family;
	bool v6 = fam == NFPROTO_IPV6;
	uint32_t saddr = v6 ? 8 : 12, daddr = v6 ? 24 : 16;
	uint8_t addr[16] = { 0 };
	const uint8_t *p, *mask;
	uint32_t l, ml, plen = len * 8, k;
	size_t at = i + 1;

	if ((fam != NFPROTO_IPV4 && !v6) || (off != saddr && off != daddr))
		return 0;
	if (is(d, at, "bitwise")) {
		mask = data(d, at, NFTNL_EXPR_BITWISE_MASK, &ml);
		for (plen = 0, k = 0; k < ml * 8; k++)
			plen += (mask[k / 8] >> (7 - k % 8)) & 1;
		at++;
	}
	p = is(d, at, "cmp") ? data(d, at, NFTNL_EXPR_CMP_DATA, &l) : NULL;
	if (!p || l > 16 || !plen)
		return 0;
	memcpy(addr, p, l);
	push_addr(d->L, v6, addr, plen,
		  nftnl_expr_get_u32(d->x[at], NFTNL_EXPR_CMP_OP) ==
		  NFT_CMP_NEQ);
	set_match(d, keys[(v6 ? 2 : 0) + (off == daddr)]);
	return at - i + 1;
}

/* meta at i: an interface name, or a dependency (nfproto, l4proto). */
static size_t take_meta(struct dec *d, size_t i)
{
	uint32_t key = nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_META_KEY), l;
	const uint8_t *p = is(d, i + 1, "cmp") ?
		data(d, i + 1, NFTNL_EXPR_CMP_DATA, &l) : NULL;
	bool neq = p && nftnl_expr_get_u32(d->x[i + 1], NFTNL_EXPR_CMP_OP) ==
			 NFT_CMP_NEQ;
	char name[IFNAME_MAX + 1] = { 0 };

	if (!p)
		return 0;
	if (key == NFT_META_NFPROTO && l == 1 && !d->nfproto) {
		d->nfproto = p[0];
	} else if (key == NFT_META_L4PROTO && l == 1 && d->l4 < 0) {
		d->l4 = p[0];
	} else if ((key == NFT_META_IIFNAME || key == NFT_META_OIFNAME) &&
		   l >= 1 && l <= sizeof(name)) {
		memcpy(name, p, l < sizeof(name) ? l : sizeof(name) - 1);
		lua_pushfstring(d->L, "%s%s%s", neq ? "!" : "", name,
				l < sizeof(name) ? "*" : "");
		set_match(d, key == NFT_META_IIFNAME ? "iifname" : "oifname");
	} else {
		return 0;
	}
	return 2;
}

/* ct state, masked, compared with 0. */
static size_t take_ct(struct dec *d, size_t i)
{
	uint32_t l, mask = 0, k, n = 0;
	const uint8_t *p = is(d, i + 1, "bitwise") ?
		data(d, i + 1, NFTNL_EXPR_BITWISE_MASK, &l) : NULL;

	if (nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_CT_KEY) != NFT_CT_STATE ||
	    !p || l != 4 || !is(d, i + 2, "cmp"))
		return 0;
	memcpy(&mask, p, 4);
	lua_newtable(d->L);
	for (k = 0; ct_states[k].name; k++)
		if (mask & ct_states[k].value) {
			lua_pushstring(d->L, ct_states[k].name);
			lua_rawseti(d->L, -2, ++n);
		}
	set_match(d, "ct_state");
	return 3;
}

static void set_rule(struct dec *d, const char *key)
{
	lua_setfield(d->L, d->rule, key);
}

/* An action at i; the expressions taken, 0 if not ours. */
static size_t take_action(struct dec *d, size_t i)
{
	lua_State *L = d->L;
	const struct nftnl_expr *x = d->x[i];
	uint32_t code, flags, l;
	const uint8_t *p;
	const char *s;

	if (is(d, i, "counter")) {
		lua_pushboolean(L, 1);
		set_rule(d, "counter");
		return 1;
	}
	if (is(d, i, "reject")) {
		lua_pushliteral(L, "reject");
		set_rule(d, "verdict");
		return 1;
	}
	if (is(d, i, "masq")) {
		flags = nftnl_expr_get_u32(x, NFTNL_EXPR_MASQ_FLAGS);
		if (flags) {
			lua_createtable(L, 0, 1);
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "fully_random");
		} else {
			lua_pushboolean(L, 1);
		}
		set_rule(d, "masquerade");
		return 1;
	}
	if (!is(d, i, "immediate"))
		return 0;
	if (nftnl_expr_get_u32(x, NFTNL_EXPR_IMM_DREG) == NFT_REG_VERDICT) {
		code = nftnl_expr_get_u32(x, NFTNL_EXPR_IMM_VERDICT);
		s = nftnl_expr_get_str(x, NFTNL_EXPR_IMM_CHAIN);
		if (s && (code == (uint32_t)NFT_JUMP ||
			  code == (uint32_t)NFT_GOTO)) {
			lua_pushstring(L, s);
			set_rule(d, code == (uint32_t)NFT_JUMP ? "jump" :
								 "goto");
			return 1;
		}
		if (!name_of(verdicts, code) || code == VERDICT_REJECT)
			return 0;
		lua_pushstring(L, name_of(verdicts, code));
		set_rule(d, "verdict");
		return 1;
	}
	p = data(d, i, NFTNL_EXPR_IMM_DATA, &l);
	if (!is(d, i + 1, "nat") || (l != 4 && l != 16))
		return 0;
	lua_createtable(L, 0, 2);
	push_addr(L, l == 16, p, l * 8, false);
	lua_setfield(L, -2, "to");
	if (nftnl_expr_get_u32(d->x[i + 1], NFTNL_EXPR_NAT_FLAGS) &
	    NF_NAT_RANGE_PROTO_RANDOM_FULLY) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "fully_random");
	}
	set_rule(d, nftnl_expr_get_u32(d->x[i + 1], NFTNL_EXPR_NAT_TYPE) ==
		 NFT_NAT_SNAT ? "snat" : "dnat");
	return 2;
}

/*
 * tcp_mss "pmtu" at i (the SYN test, rt tcpmss, byteorder, the exthdr
 * write), as emit_mss writes it; the expressions taken, 0 if not ours.
 */
static size_t take_mss(struct dec *d, size_t i)
{
	uint32_t l;
	const uint8_t *mask, *cmp;

	if (d->l4 != IPPROTO_TCP ||
	    nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_OFFSET) != 13 ||
	    nftnl_expr_get_u32(d->x[i], NFTNL_EXPR_PAYLOAD_LEN) != 1 ||
	    !is(d, i + 1, "bitwise") || !is(d, i + 2, "cmp") ||
	    !is(d, i + 3, "rt") || !is(d, i + 4, "byteorder") ||
	    !is(d, i + 5, "exthdr"))
		return 0;
	mask = data(d, i + 1, NFTNL_EXPR_BITWISE_MASK, &l);
	if (!mask || l != 1 || mask[0] != 0x02)
		return 0;
	cmp = data(d, i + 2, NFTNL_EXPR_CMP_DATA, &l);
	if (!cmp || l != 1 || cmp[0] ||
	    nftnl_expr_get_u32(d->x[i + 2], NFTNL_EXPR_CMP_OP) != NFT_CMP_NEQ ||
	    nftnl_expr_get_u32(d->x[i + 3], NFTNL_EXPR_RT_KEY) !=
	    NFT_RT_TCPMSS)
		return 0;
	/* The rest is checked by the round trip (rule_text). */
	d->l4_used = true;
	lua_pushstring(d->L, name_of(tcp_mss_values, 1));
	set_rule(d, "tcp_mss");
	return 6;
}

static int udata_cb(const struct nftnl_udata *attr, void *arg)
{
	const char **comment = arg;
	const char *s = nftnl_udata_get(attr);
	uint8_t len = nftnl_udata_len(attr);

	if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && len > 0 &&
	    s[len - 1] == '\0')
		*comment = s;
	return 0;
}

static const char *rule_comment(const struct nftnl_rule *r)
{
	const char *comment = NULL;
	uint32_t len;
	const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);

	if (ud)
		nftnl_udata_parse(ud, len, udata_cb, &comment);
	return comment;
}

/*
 * The rule as a description table on the stack; false (and the stack as it
 * was) when some expression is not one this file writes.
 */
static bool decode(struct dec *d, struct nftnl_rule *r)
{
	lua_State *L = d->L;
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
	struct nftnl_expr *x;
	int top = lua_gettop(L);
	size_t took;

	d->n = 0;
	while (it && (x = nftnl_expr_iter_next(it)) && d->n < MAX_EXPRS)
		d->x[d->n++] = x;
	if (it)
		nftnl_expr_iter_destroy(it);
	if (!it || x || nftnl_rule_is_set(r, NFTNL_RULE_COMPAT_PROTO))
		return false;
	d->nfproto = 0;
	d->l4 = -1;
	d->l4_used = false;
	lua_newtable(L);
	d->rule = lua_gettop(L);
	lua_newtable(L);
	d->match = lua_gettop(L);
	for (d->i = 0; d->i < d->n; d->i += took) {
		const char *name = xname(d, d->i);

		took = !strcmp(name, "meta") ? take_meta(d, d->i) :
		       !strcmp(name, "ct") ? take_ct(d, d->i) :
		       !strcmp(name, "payload") ?
		       (nftnl_expr_get_u32(d->x[d->i],
					   NFTNL_EXPR_PAYLOAD_BASE) ==
			NFT_PAYLOAD_NETWORK_HEADER ? take_network(d, d->i) :
			nftnl_expr_get_u32(d->x[d->i],
					   NFTNL_EXPR_PAYLOAD_OFFSET) == 13 ?
			take_mss(d, d->i) : take_transport(d, d->i)) :
		       take_action(d, d->i);
		if (!took) {
			lua_settop(L, top);
			return false;
		}
	}
	if (d->l4 >= 0 && !d->l4_used) {
		push_value(L, l4protos, (uint32_t)d->l4);
		set_match(d, "l4proto");
	}
	lua_pushnil(L);
	if (lua_next(L, d->match)) {
		lua_pop(L, 2);
		lua_setfield(L, d->rule, "match");
	} else {
		lua_pop(L, 1);
	}
	if (rule_comment(r)) {
		lua_pushstring(L, rule_comment(r));
		set_rule(d, "comment");
	}
	return true;
}

/* ---- the round trip: a decoded rule must encode to the same thing ---- */

/* The elements of a set, for comparing: type, length, flags, sorted keys. */
static void set_text(const struct nftnl_set *s, luaL_Buffer *b)
{
	struct nftnl_set_elems_iter *it = nftnl_set_elems_iter_create(s);
	struct nftnl_set_elem *el;
	uint32_t v[SET_MAX], len;
	size_t n = 0, k;
	char tmp[64];

	while (it && (el = nftnl_set_elems_iter_next(it)) && n < SET_MAX) {
		const uint8_t *key = nftnl_set_elem_get(el, NFTNL_SET_ELEM_KEY,
							&len);

		v[n++] = key && len <= 2 ? be(key, len) : 0xffffffff;
	}
	if (it)
		nftnl_set_elems_iter_destroy(it);
	qsort(v, n, sizeof(*v), cmp_u32);
	snprintf(tmp, sizeof(tmp), "set type %u len %u flags 0x%x {",
		 nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE),
		 nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN),
		 nftnl_set_get_u32(s, NFTNL_SET_FLAGS));
	luaL_addstring(b, tmp);
	for (k = 0; k < n; k++) {
		snprintf(tmp, sizeof(tmp), " %u", v[k]);
		luaL_addstring(b, tmp);
	}
	luaL_addstring(b, " }");
}

/*
 * The rule's expressions as text, counter values left out, a lookup by
 * its set's elements (SETS: the kernel's by name, or ENCODED: by id).
 */
static void rule_text(lua_State *L, struct nftnl_rule *r,
		      struct nftnl_set_list *sets, struct conv *encoded)
{
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
	struct nftnl_expr *x;
	const struct nftnl_set *s;
	luaL_Buffer b;
	char tmp[512];
	size_t k;

	luaL_buffinit(L, &b);
	while (it && (x = nftnl_expr_iter_next(it))) {
		const char *name = nftnl_expr_get_str(x, NFTNL_EXPR_NAME);

		if (luaL_bufflen(&b))
			luaL_addstring(&b, "; ");
		if (!strcmp(name, "counter")) {
			luaL_addstring(&b, "counter");
			continue;
		}
		if (!strcmp(name, "lookup")) {
			s = NULL;
			if (encoded)
				for (k = 0; k < encoded->nsets; k++)
					if (nftnl_set_get_u32(encoded->sets[k],
							      NFTNL_SET_ID) ==
					    nftnl_expr_get_u32(x,
						NFTNL_EXPR_LOOKUP_SET_ID))
						s = encoded->sets[k];
			if (!encoded)
				s = nftnl_set_list_lookup_byname(sets,
					nftnl_expr_get_str(x,
						NFTNL_EXPR_LOOKUP_SET));
			snprintf(tmp, sizeof(tmp), "lookup reg %u ",
				 nftnl_expr_get_u32(x, NFTNL_EXPR_LOOKUP_SREG));
			luaL_addstring(&b, tmp);
			if (s)
				set_text(s, &b);
			continue;
		}
		if (!strcmp(name, "nat")) {
			/* The kernel adds what a lone address implies. */
			snprintf(tmp, sizeof(tmp), "nat type %u family %u reg "
				 "%u flags 0x%x",
				 nftnl_expr_get_u32(x, NFTNL_EXPR_NAT_TYPE),
				 nftnl_expr_get_u32(x, NFTNL_EXPR_NAT_FAMILY),
				 nftnl_expr_get_u32(x,
					NFTNL_EXPR_NAT_REG_ADDR_MIN),
				 nftnl_expr_get_u32(x, NFTNL_EXPR_NAT_FLAGS) &
				 ~(uint32_t)NF_NAT_RANGE_MAP_IPS);
			luaL_addstring(&b, tmp);
			continue;
		}
		luaL_addstring(&b, name);
		luaL_addchar(&b, ' ');
		nftnl_expr_snprintf(tmp, sizeof(tmp), x, NFTNL_OUTPUT_DEFAULT,
				    0);
		luaL_addstring(&b, tmp);
	}
	if (it)
		nftnl_expr_iter_destroy(it);
	luaL_pushresult(&b);
}

/* Under lua_pcall: encode the rule table (1) with the conv (2). */
static int encode_rule(lua_State *L)
{
	struct conv *cv = lua_touserdata(L, 2);

	cv->L = L;
	cv->arg = 1;
	new_box(cv);
	snprintf(cv->path, sizeof(cv->path), "rule");
	if (!cv->err)
		conv_rule(cv, 1, "c");
	return 1;	/* the box: it keeps the encoded rule alive */
}

/*
 * The kernel's rule R as a description rule on the stack, or as
 * { unknown = "…" } when it is not one this file would have written.
 */
static void push_rule(struct dec *d, struct nftnl_rule *r)
{
	lua_State *L = d->L;
	struct conv cv = { .family = d->family, .table = "t" };
	const char *comment;
	bool same = false;

	if (decode(d, r)) {
		lua_pushcfunction(L, encode_rule);
		lua_pushvalue(L, -2);
		lua_pushlightuserdata(L, &cv);
		if (lua_pcall(L, 2, 1, 0) == LUA_OK && !cv.err && cv.last) {
			rule_text(L, r, d->sets, NULL);
			rule_text(L, cv.last, NULL, &cv);
			same = lua_rawequal(L, -1, -2);
			lua_pop(L, 2);
		}
		lua_pop(L, 1);	/* the box, or the error */
		if (same)
			return;
		lua_pop(L, 1);
	}
	lua_createtable(L, 0, 1);
	rule_text(L, r, d->sets, NULL);
	comment = rule_comment(r);
	if (comment) {
		lua_pushfstring(L, "%s; comment \"%s\"", lua_tostring(L, -1),
				comment);
		lua_remove(L, -2);
	}
	lua_setfield(L, -2, "unknown");
}

static void set_int(lua_State *L, const char *key, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, key);
}

/*
 * Chain C: the description at desc_idx's end, its handles and counters
 * (live) at live_idx's.
 */
static void push_chain(struct dec *d, struct nftnl_chain *c, int desc_idx,
		       int live_idx)
{
	lua_State *L = d->L;
	struct nftnl_rule_iter *it = nftnl_rule_iter_create(c);
	struct nftnl_rule *r;
	uint32_t flags;
	const char *s;
	int n = 0;

	lua_createtable(L, 0, 6);
	lua_pushstring(L, nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
	lua_setfield(L, -2, "name");
	if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) {
		uint32_t hook = nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM);

		s = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);
		lua_pushstring(L, s ? s : "");
		lua_setfield(L, -2, "type");
		push_value(L, hooks, hook);
		lua_setfield(L, -2, "hook");
		set_int(L, "priority",
			nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO));
		lua_pushstring(L, nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) ==
			       NF_DROP ? "drop" : "accept");
		lua_setfield(L, -2, "policy");
	}
	/* Flags (offload…) or a device: not a chain Zero-Mesh makes. */
	flags = nftnl_chain_get_u32(c, NFTNL_CHAIN_FLAGS) & ~NFT_CHAIN_BASE;
	if (flags || nftnl_chain_is_set(c, NFTNL_CHAIN_DEV)) {
		lua_pushfstring(L, "chain flags %d%s", (int)flags,
				nftnl_chain_is_set(c, NFTNL_CHAIN_DEV) ?
				" with a device" : "");
		lua_setfield(L, -2, "unknown");
	}
	lua_newtable(L);
	lua_createtable(L, 0, 2);
	set_int(L, "handle", (lua_Integer)nftnl_chain_get_u64(c,
						NFTNL_CHAIN_HANDLE));
	lua_newtable(L);
	while (it && (r = nftnl_rule_iter_next(it))) {
		struct nftnl_expr_iter *xi = nftnl_expr_iter_create(r);
		struct nftnl_expr *x;

		push_rule(d, r);
		lua_rawseti(L, -4, ++n);
		lua_createtable(L, 0, 3);
		set_int(L, "handle",
			(lua_Integer)nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE));
		while (xi && (x = nftnl_expr_iter_next(xi)))
			if (!strcmp(nftnl_expr_get_str(x, NFTNL_EXPR_NAME),
				    "counter")) {
				set_int(L, "packets", (lua_Integer)
					nftnl_expr_get_u64(x,
						NFTNL_EXPR_CTR_PACKETS));
				set_int(L, "bytes", (lua_Integer)
					nftnl_expr_get_u64(x,
						NFTNL_EXPR_CTR_BYTES));
				break;
			}
		if (xi)
			nftnl_expr_iter_destroy(xi);
		lua_rawseti(L, -2, n);
	}
	if (it)
		nftnl_rule_iter_destroy(it);
	lua_setfield(L, -2, "rules");
	lua_rawseti(L, live_idx, (lua_Integer)lua_rawlen(L, live_idx) + 1);
	/* A chain without rules has none in the description either. */
	if (n)
		lua_setfield(L, -2, "rules");
	else
		lua_pop(L, 1);
	lua_rawseti(L, desc_idx, (lua_Integer)lua_rawlen(L, desc_idx) + 1);
}

/* Named sets: not in any description Zero-Mesh writes. */
static void push_unknown(lua_State *L, const struct zm_nft_dump *d)
{
	struct nftnl_set_list_iter *it = nftnl_set_list_iter_create(d->sets);
	struct nftnl_set *s;
	uint32_t flags = nftnl_table_get_u32(d->table, NFTNL_TABLE_FLAGS);
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	if (flags) {
		lua_pushfstring(L, "table flags %d%s", (int)flags,
				flags & NFT_TABLE_F_DORMANT ? " (dormant)" :
							      "");
		luaL_addvalue(&b);
	}
	while (it && (s = nftnl_set_list_iter_next(it))) {
		if (nftnl_set_get_u32(s, NFTNL_SET_FLAGS) & NFT_SET_ANONYMOUS)
			continue;
		lua_pushfstring(L, "%sset %s", luaL_bufflen(&b) ? "; " : "",
				nftnl_set_get_str(s, NFTNL_SET_NAME));
		luaL_addvalue(&b);
	}
	if (it)
		nftnl_set_list_iter_destroy(it);
	luaL_pushresult(&b);
	if (lua_rawlen(L, -1))
		lua_setfield(L, -2, "unknown");
	else
		lua_pop(L, 1);
}

/* dump(ns [, {family, table}]) */
static int l_dump(lua_State *L)
{
	struct zm_nft_dump *d = NULL;
	struct nftnl_chain_list_iter *it;
	struct nftnl_chain *c;
	struct dec dec = { .L = L };
	const char *table;
	struct zm_ns *ns;
	bool owned;
	int err, top;

	check_ns_arg(L);
	opt_table(L, 2, &dec.family, &table);
	err = zm_arg_ns(L, 1, &ns, &owned);
	if (!err)
		err = zm_nft_dump(ns, dec.family, table, &d);
	zm_ns_release(ns, owned);
	if (err)
		return zm_push_error(L, err);
	dec.sets = d->sets;
	lua_createtable(L, 0, 5);
	top = lua_gettop(L);
	lua_pushstring(L, name_of(families, dec.family));
	lua_setfield(L, top, "family");
	lua_pushstring(L, table);
	lua_setfield(L, top, "table");
	push_unknown(L, d);
	lua_newtable(L);		/* top + 1: chains */
	lua_createtable(L, 0, 3);	/* top + 2: live */
	set_int(L, "handle",
		(lua_Integer)nftnl_table_get_u64(d->table, NFTNL_TABLE_HANDLE));
	set_int(L, "generation", d->generation);
	lua_newtable(L);		/* top + 3: live.chains */
	it = nftnl_chain_list_iter_create(d->chains);
	while (it && (c = nftnl_chain_list_iter_next(it)))
		push_chain(&dec, c, top + 1, top + 3);
	if (it)
		nftnl_chain_list_iter_destroy(it);
	zm_nft_dump_free(d);
	lua_setfield(L, top + 2, "chains");
	lua_setfield(L, top, "live");
	lua_setfield(L, top, "chains");
	return 1;
}

/* ---- the vocabulary for Lua ---- */

static void push_list(lua_State *L, const char *key, const struct name *names)
{
	int i;

	lua_newtable(L);
	for (i = 0; names[i].name; i++) {
		lua_pushstring(L, names[i].name);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, key);
}

static void push_numbers(lua_State *L, const char *key,
			 const struct name *names)
{
	lua_newtable(L);
	for (; names->name; names++) {
		lua_pushinteger(L, names->value);
		lua_setfield(L, -2, names->name);
	}
	lua_setfield(L, -2, key);
}

static void push_strv(lua_State *L, const char *key, const char *const *v)
{
	int i;

	lua_newtable(L);
	for (i = 0; v[i]; i++) {
		lua_pushstring(L, v[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, key);
}

static void push_vocabulary(lua_State *L)
{
	const struct name *t, *h;

	lua_newtable(L);
	push_list(L, "family", families);
	push_list(L, "chain_type", chain_types);
	push_list(L, "hook", hooks);
	push_list(L, "ct_state", ct_states);
	push_list(L, "l4proto", l4protos);
	push_list(L, "icmp_type", icmp_types);
	push_list(L, "icmpv6_type", icmpv6_types);
	push_strv(L, "match", match_keys);
	push_list(L, "verdict", verdicts);
	push_list(L, "tcp_mss", tcp_mss_values);
	lua_setfield(L, -2, "names");

	lua_newtable(L);
	push_numbers(L, "l4proto", l4protos);
	push_numbers(L, "icmp_type", icmp_types);
	push_numbers(L, "icmpv6_type", icmpv6_types);
	lua_setfield(L, -2, "numbers");

	lua_newtable(L);
	lua_pushliteral(L, DEFAULT_FAMILY);
	lua_setfield(L, -2, "family");
	lua_pushliteral(L, DEFAULT_TABLE);
	lua_setfield(L, -2, "table");
	lua_pushliteral(L, DEFAULT_POLICY);
	lua_setfield(L, -2, "policy");
	lua_newtable(L);
	for (t = chain_types; t->name; t++) {
		lua_newtable(L);
		for (h = hooks; h->name; h++)
			set_int(L, h->name, default_priority(t->value == 1,
							     h->value));
		lua_setfield(L, -2, t->name);
	}
	lua_setfield(L, -2, "priority");
	lua_setfield(L, -2, "defaults");

	lua_newtable(L);
	set_int(L, "set", SET_MAX);
	set_int(L, "comment", COMMENT_MAX);
	set_int(L, "name", ZM_NFT_NAME_MAX);
	set_int(L, "ifname", IFNAME_MAX);
	lua_setfield(L, -2, "limits");
}

static const luaL_Reg funcs[] = {
	{ "apply", l_apply },
	{ "check", l_check },
	{ "dump", l_dump },
	{ "delete", l_delete },
	{ NULL, NULL },
};

static const struct zm_contract contract[] = {
	{ "nft.apply", ruleset_fields },
	{ "nft.check", ruleset_fields },
	{ "nft.apply chains[]", chain_fields },
	{ "nft.apply rules[]", rule_fields },
	{ "nft.apply match", match_keys },
	{ "nft.apply masquerade", masq_fields },
	{ "nft.apply snat/dnat", nat_fields },
	{ "nft.dump", table_fields },
	{ "nft.delete", table_fields },
	{ NULL, NULL },
};

void zm_open_nft(lua_State *L)
{
	if (luaL_newmetatable(L, BOX_MT)) {
		lua_pushcfunction(L, box_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	zm_contract_add(L, contract);
	luaL_newlib(L, funcs);
	push_vocabulary(L);
}
