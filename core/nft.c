// SPDX-License-Identifier: MIT
/*
 * nftables through libnftnl + libmnl: the atomic replace of one table (see
 * nft.h). A ruleset becomes one batch of messages, each rule emitted the
 * way nft(8) emits it; the batch goes out in one sendmsg and every ack is
 * read back and mapped to the chain or rule it answers. The vocabulary is
 * in nft_names.c, the socket in nft_nl.c, the read side in nft_dump.c.
 */
#include "nft.h"
#include "nl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

static const char *family_name(enum zm_nft_family f)
{
	return zm_nft_name_of(zm_nft_families, f);
}

/* ---- the batch ---- */

/* Room kept free for one message: rules and element chunks stay below. */
#define MSG_ROOM 65536
/* Set elements per NEWSETELEM message. */
#define ELEMS_PER_MSG 64

enum msg_kind { MSG_TABLE, MSG_DELTABLE, MSG_CHAIN, MSG_SET, MSG_ELEMS,
		MSG_RULE };

struct msg_label {
	enum msg_kind kind;
	size_t off;		/* of the message in the batch buffer */
	int chain, rule;	/* indexes into the ruleset, or -1 */
};

struct batch {
	char *buf;
	size_t len, cap;
	struct msg_label *msgs;	/* msgs[i] has sequence seq0 + 1 + i */
	size_t nmsgs, msgcap;
	uint32_t seq0;
	uint32_t set_id;
	const struct zm_nft_ruleset *rs;
	int chain, rule;	/* being emitted, for labels */
};

/* The free tail of the buffer, at least MSG_ROOM bytes; NULL on ENOMEM. */
static char *batch_room(struct batch *b)
{
	if (b->cap - b->len < MSG_ROOM) {
		size_t cap = b->cap ? b->cap * 2 : 4 * MSG_ROOM;
		char *nb;

		while (cap - b->len < MSG_ROOM)
			cap *= 2;
		nb = realloc(b->buf, cap);
		if (!nb)
			return NULL;
		/* libnftnl writes attributes without zeroing padding. */
		memset(nb + b->cap, 0, cap - b->cap);
		b->buf = nb;
		b->cap = cap;
	}
	return b->buf + b->len;
}

static uint32_t batch_next_seq(const struct batch *b)
{
	return b->seq0 + 1 + (uint32_t)b->nmsgs;
}

/* Account for the message just built at the tail, labelled KIND. */
static int batch_push(struct batch *b, struct nlmsghdr *nlh,
		      enum msg_kind kind)
{
	if (b->nmsgs == b->msgcap) {
		size_t cap = b->msgcap ? b->msgcap * 2 : 64;
		struct msg_label *nm = realloc(b->msgs, cap * sizeof(*nm));

		if (!nm)
			return -ENOMEM;
		b->msgs = nm;
		b->msgcap = cap;
	}
	b->msgs[b->nmsgs].kind = kind;
	b->msgs[b->nmsgs].off = b->len;
	b->msgs[b->nmsgs].chain = b->chain;
	b->msgs[b->nmsgs].rule = b->rule;
	b->nmsgs++;
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	return 0;
}

static struct nlmsghdr *batch_hdr(struct batch *b, uint16_t type,
				  uint16_t flags)
{
	char *tail = batch_room(b);

	if (!tail)
		return NULL;
	return nftnl_nlmsg_build_hdr(tail, type, zm_nft_nfproto(b->rs->family),
				     flags | NLM_F_ACK, batch_next_seq(b));
}

static int batch_table(struct batch *b, const char *name, uint16_t type,
		       uint16_t flags, enum msg_kind kind)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;
	int err = -ENOMEM;

	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY,
			    zm_nft_nfproto(b->rs->family));
	nlh = batch_hdr(b, type, flags);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		err = batch_push(b, nlh, kind);
	}
	nftnl_table_free(t);
	return err;
}

static int batch_chain(struct batch *b, const struct zm_nft_chain *c)
{
	struct nftnl_chain *ch = nftnl_chain_alloc();
	struct nlmsghdr *nlh;
	int err = -ENOMEM;

	if (!ch)
		return -ENOMEM;
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, b->rs->table);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, c->name);
	if (c->base) {
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, c->hook);
		nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, c->priority);
		nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE,
				    zm_nft_name_of(zm_nft_chain_types,
						   c->type));
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY,
				    c->drop ? NF_DROP : NF_ACCEPT);
	}
	nlh = batch_hdr(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, ch);
		err = batch_push(b, nlh, MSG_CHAIN);
	}
	nftnl_chain_free(ch);
	return err;
}

/* ---- rules ---- */

/* nftables' own datatype ids, so that nft(8) prints set members by name. */
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_ICMP_TYPE 14
#define NFT_TYPE_ICMPV6_TYPE 29

#define ANON_SET_NAME "__set%d"

struct emit {
	struct batch *b;
	struct nftnl_rule *r;
	int err;
	uint8_t nfproto;	/* dependency already tested, 0 if none */
	uint8_t l4proto;
	bool l4_done;
};

static void e_add(struct emit *e, struct nftnl_expr *x)
{
	if (!x) {
		if (!e->err)
			e->err = -ENOMEM;
		return;
	}
	nftnl_rule_add_expr(e->r, x);
}

static struct nftnl_expr *e_new(struct emit *e, const char *name)
{
	return e->err ? NULL : nftnl_expr_alloc(name);
}

static void e_meta(struct emit *e, uint32_t key)
{
	struct nftnl_expr *x = e_new(e, "meta");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_DREG, NFT_REG_1);
	}
	e_add(e, x);
}

static void e_cmp(struct emit *e, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *x = e_new(e, "cmp");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set_data(x, NFTNL_EXPR_CMP_DATA, data, len);
	}
	e_add(e, x);
}

static void e_payload(struct emit *e, uint32_t base, uint32_t off,
		      uint32_t len)
{
	struct nftnl_expr *x = e_new(e, "payload");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_OFFSET, off);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_LEN, len);
	}
	e_add(e, x);
}

/* reg1 = reg1 & mask (xor 0), over len bytes. */
static void e_mask(struct emit *e, const void *mask, uint32_t len)
{
	static const uint8_t zero[16];
	struct nftnl_expr *x = e_new(e, "bitwise");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_LEN, len);
		nftnl_expr_set_data(x, NFTNL_EXPR_BITWISE_MASK, mask, len);
		nftnl_expr_set_data(x, NFTNL_EXPR_BITWISE_XOR, zero, len);
	}
	e_add(e, x);
}

static void e_cmp_u8(struct emit *e, uint8_t v)
{
	e_cmp(e, NFT_CMP_EQ, &v, 1);
}

static void need_nfproto(struct emit *e, uint8_t nfproto)
{
	if (e->b->rs->family != ZM_NFT_INET || e->nfproto == nfproto)
		return;
	e_meta(e, NFT_META_NFPROTO);
	e_cmp_u8(e, nfproto);
	e->nfproto = nfproto;
}

static void need_l4proto(struct emit *e, uint8_t proto)
{
	if (e->l4_done && e->l4proto == proto)
		return;
	e_meta(e, NFT_META_L4PROTO);
	e_cmp_u8(e, proto);
	e->l4proto = proto;
	e->l4_done = true;
}

static void emit_ifname(struct emit *e, uint32_t key,
			const struct zm_nft_match *m)
{
	char name[ZM_NFT_IFNAMSIZ] = { 0 };
	size_t len = strnlen(m->name, sizeof(name) - 1);

	memcpy(name, m->name, len);
	e_meta(e, key);
	e_cmp(e, m->neg ? NFT_CMP_NEQ : NFT_CMP_EQ, name,
	      m->wildcard ? (uint32_t)len : sizeof(name));
}

static void emit_ct_state(struct emit *e, const struct zm_nft_match *m)
{
	uint32_t mask = m->lo, zero = 0;
	struct nftnl_expr *x = e_new(e, "ct");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
		nftnl_expr_set_u32(x, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	}
	e_add(e, x);
	e_mask(e, &mask, sizeof(mask));
	e_cmp(e, NFT_CMP_NEQ, &zero, sizeof(zero));
}

/*
 * An address or prefix, as nft does it: whole bytes are compared directly,
 * a prefix that ends inside a byte is masked first.
 */
static void emit_addr(struct emit *e, int v6, uint32_t off,
		      const struct zm_nft_match *m)
{
	uint32_t alen = v6 ? 16 : 4, op = m->neg ? NFT_CMP_NEQ : NFT_CMP_EQ;
	uint8_t mask[16] = { 0 }, addr[16];
	unsigned int i;

	need_nfproto(e, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	if (m->plen % 8 == 0) {
		e_payload(e, NFT_PAYLOAD_NETWORK_HEADER, off, m->plen / 8);
		e_cmp(e, op, m->addr, m->plen / 8);
		return;
	}
	for (i = 0; i < alen; i++) {
		unsigned int bits = m->plen > i * 8 ? m->plen - i * 8 : 0;

		mask[i] = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		addr[i] = m->addr[i] & mask[i];
	}
	e_payload(e, NFT_PAYLOAD_NETWORK_HEADER, off, alen);
	e_mask(e, mask, alen);
	e_cmp(e, op, addr, alen);
}

static int batch_set(struct batch *b, const struct zm_nft_match *m,
		     uint32_t key_type, uint32_t key_len, uint32_t id);

/* Values of key_len (1 or 2) bytes, network order: value, range or set. */
static void emit_values(struct emit *e, const struct zm_nft_match *m,
			uint32_t key_type, uint32_t key_len)
{
	uint8_t lo[2], hi[2];

	if (m->nset) {
		uint32_t id = ++e->b->set_id;
		struct nftnl_expr *x;

		if (!e->err)
			e->err = batch_set(e->b, m, key_type, key_len, id);
		x = e_new(e, "lookup");
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SREG,
					   NFT_REG_1);
			nftnl_expr_set_str(x, NFTNL_EXPR_LOOKUP_SET,
					   ANON_SET_NAME);
			nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SET_ID, id);
		}
		e_add(e, x);
		return;
	}
	lo[0] = key_len == 2 ? (uint8_t)(m->lo >> 8) : (uint8_t)m->lo;
	lo[1] = (uint8_t)m->lo;
	hi[0] = key_len == 2 ? (uint8_t)(m->hi >> 8) : (uint8_t)m->hi;
	hi[1] = (uint8_t)m->hi;
	if (m->lo == m->hi) {
		e_cmp(e, NFT_CMP_EQ, lo, key_len);
		return;
	}
	e_cmp(e, NFT_CMP_GTE, lo, key_len);
	e_cmp(e, NFT_CMP_LTE, hi, key_len);
}

static void emit_port(struct emit *e, uint32_t off,
		      const struct zm_nft_match *m)
{
	e_payload(e, NFT_PAYLOAD_TRANSPORT_HEADER, off, 2);
	emit_values(e, m, NFT_TYPE_INET_SERVICE, 2);
}

static bool single(const struct zm_nft_match *m)
{
	return !m->nset && m->lo == m->hi;
}

/*
 * Source and destination port; two plain values are one 4-byte compare,
 * the way nft merges adjacent header fields.
 */
static void emit_ports(struct emit *e, const struct zm_nft_rule *r,
		       enum zm_nft_key sport, enum zm_nft_key dport)
{
	const struct zm_nft_match *s = &r->m[sport], *d = &r->m[dport];
	bool has_s = r->has & (1u << sport), has_d = r->has & (1u << dport);

	if (has_s && has_d && single(s) && single(d)) {
		uint8_t both[4] = { (uint8_t)(s->lo >> 8), (uint8_t)s->lo,
				    (uint8_t)(d->lo >> 8), (uint8_t)d->lo };

		e_payload(e, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 4);
		e_cmp(e, NFT_CMP_EQ, both, 4);
		return;
	}
	if (has_s)
		emit_port(e, 0, s);
	if (has_d)
		emit_port(e, 2, d);
}

static void emit_matches(struct emit *e, const struct zm_nft_rule *r)
{
	const struct zm_nft_match *m = r->m;

#define HAS(k) (r->has & (1u << (k)))
	if (HAS(ZM_NFT_IIFNAME))
		emit_ifname(e, NFT_META_IIFNAME, &m[ZM_NFT_IIFNAME]);
	if (HAS(ZM_NFT_OIFNAME))
		emit_ifname(e, NFT_META_OIFNAME, &m[ZM_NFT_OIFNAME]);
	if (HAS(ZM_NFT_CT_STATE))
		emit_ct_state(e, &m[ZM_NFT_CT_STATE]);
	if (HAS(ZM_NFT_IP_SADDR))
		emit_addr(e, 0, 12, &m[ZM_NFT_IP_SADDR]);
	if (HAS(ZM_NFT_IP_DADDR))
		emit_addr(e, 0, 16, &m[ZM_NFT_IP_DADDR]);
	if (HAS(ZM_NFT_IP6_SADDR))
		emit_addr(e, 1, 8, &m[ZM_NFT_IP6_SADDR]);
	if (HAS(ZM_NFT_IP6_DADDR))
		emit_addr(e, 1, 24, &m[ZM_NFT_IP6_DADDR]);
	if (HAS(ZM_NFT_ICMP_TYPE)) {
		need_nfproto(e, NFPROTO_IPV4);
		need_l4proto(e, IPPROTO_ICMP);
		e_payload(e, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
		emit_values(e, &m[ZM_NFT_ICMP_TYPE], NFT_TYPE_ICMP_TYPE, 1);
	} else if (HAS(ZM_NFT_ICMPV6_TYPE)) {
		need_nfproto(e, NFPROTO_IPV6);
		need_l4proto(e, IPPROTO_ICMPV6);
		e_payload(e, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
		emit_values(e, &m[ZM_NFT_ICMPV6_TYPE], NFT_TYPE_ICMPV6_TYPE,
			    1);
	} else if (HAS(ZM_NFT_TCP_SPORT) || HAS(ZM_NFT_TCP_DPORT)) {
		need_l4proto(e, IPPROTO_TCP);
		emit_ports(e, r, ZM_NFT_TCP_SPORT, ZM_NFT_TCP_DPORT);
	} else if (HAS(ZM_NFT_UDP_SPORT) || HAS(ZM_NFT_UDP_DPORT)) {
		need_l4proto(e, IPPROTO_UDP);
		emit_ports(e, r, ZM_NFT_UDP_SPORT, ZM_NFT_UDP_DPORT);
	} else if (HAS(ZM_NFT_L4PROTO)) {
		need_l4proto(e, (uint8_t)m[ZM_NFT_L4PROTO].lo);
	}
#undef HAS
}

static void e_verdict(struct emit *e, int code, const char *chain)
{
	struct nftnl_expr *x = e_new(e, "immediate");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_VERDICT, (uint32_t)code);
		if (chain)
			nftnl_expr_set_str(x, NFTNL_EXPR_IMM_CHAIN, chain);
	}
	e_add(e, x);
}

static void emit_reject(struct emit *e)
{
	struct nftnl_expr *x = e_new(e, "reject");
	uint32_t type = NFT_REJECT_ICMP_UNREACH;
	uint8_t code;

	switch (e->b->rs->family) {
	case ZM_NFT_IP:
		code = 3;	/* ICMP_PORT_UNREACH */
		break;
	case ZM_NFT_IP6:
		code = 4;	/* ICMPV6_PORT_UNREACH */
		break;
	default:
		type = NFT_REJECT_ICMPX_UNREACH;
		code = NFT_REJECT_ICMPX_PORT_UNREACH;
		break;
	}
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_REJECT_TYPE, type);
		nftnl_expr_set_u8(x, NFTNL_EXPR_REJECT_CODE, code);
	}
	e_add(e, x);
}

static void emit_nat(struct emit *e, const struct zm_nft_rule *r)
{
	uint32_t type = r->action == ZM_NFT_SNAT ? NFT_NAT_SNAT : NFT_NAT_DNAT;
	struct nftnl_expr *x = e_new(e, "immediate");

	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
		nftnl_expr_set_data(x, NFTNL_EXPR_IMM_DATA, r->nat_addr,
				    r->nat_family == 6 ? 16 : 4);
	}
	e_add(e, x);
	x = e_new(e, "nat");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_TYPE, type);
		nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_FAMILY,
				   r->nat_family == 6 ? NFPROTO_IPV6 :
							NFPROTO_IPV4);
		nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
		if (r->fully_random)
			nftnl_expr_set_u32(x, NFTNL_EXPR_NAT_FLAGS,
					   NF_NAT_RANGE_PROTO_RANDOM_FULLY);
	}
	e_add(e, x);
}

static void emit_action(struct emit *e, const struct zm_nft_rule *r)
{
	struct nftnl_expr *x;

	if (r->counter)
		e_add(e, e_new(e, "counter"));
	switch (r->action) {
	case ZM_NFT_NONE:
		break;
	case ZM_NFT_ACCEPT:
		e_verdict(e, NF_ACCEPT, NULL);
		break;
	case ZM_NFT_DROP:
		e_verdict(e, NF_DROP, NULL);
		break;
	case ZM_NFT_RETURN:
		e_verdict(e, NFT_RETURN, NULL);
		break;
	case ZM_NFT_JUMP:
		e_verdict(e, NFT_JUMP, r->target);
		break;
	case ZM_NFT_GOTO:
		e_verdict(e, NFT_GOTO, r->target);
		break;
	case ZM_NFT_REJECT:
		emit_reject(e);
		break;
	case ZM_NFT_MASQUERADE:
		x = e_new(e, "masq");
		if (x && r->fully_random)
			nftnl_expr_set_u32(x, NFTNL_EXPR_MASQ_FLAGS,
					   NF_NAT_RANGE_PROTO_RANDOM_FULLY);
		e_add(e, x);
		break;
	case ZM_NFT_SNAT:
	case ZM_NFT_DNAT:
		emit_nat(e, r);
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

static int batch_rule(struct batch *b, const struct zm_nft_chain *c,
		      const struct zm_nft_rule *rule)
{
	struct emit e = { .b = b };
	struct nlmsghdr *nlh;

	e.r = nftnl_rule_alloc();
	if (!e.r)
		return -ENOMEM;
	nftnl_rule_set_str(e.r, NFTNL_RULE_TABLE, b->rs->table);
	nftnl_rule_set_str(e.r, NFTNL_RULE_CHAIN, c->name);
	emit_matches(&e, rule);
	emit_action(&e, rule);
	if (!e.err && rule->comment)
		e.err = set_comment(e.r, rule->comment);
	if (!e.err) {
		nlh = batch_hdr(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
		if (nlh) {
			nftnl_rule_nlmsg_build_payload(nlh, e.r);
			e.err = batch_push(b, nlh, MSG_RULE);
		} else {
			e.err = -ENOMEM;
		}
	}
	nftnl_rule_free(e.r);
	return e.err;
}

/* A set element message per ELEMS_PER_MSG values, after the set itself. */
static int batch_elems(struct batch *b, const struct zm_nft_match *m,
		       uint32_t key_len, uint32_t id)
{
	const uint32_t *vals = m->set;
	size_t i, j;
	int err = 0;

	for (i = 0; !err && i < m->nset; i += ELEMS_PER_MSG) {
		struct nftnl_set *s = nftnl_set_alloc();
		struct nlmsghdr *nlh;

		if (!s)
			return -ENOMEM;
		nftnl_set_set_str(s, NFTNL_SET_TABLE, b->rs->table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, ANON_SET_NAME);
		nftnl_set_set_u32(s, NFTNL_SET_ID, id);
		for (j = i; !err && j < m->nset && j < i + ELEMS_PER_MSG; j++) {
			struct nftnl_set_elem *el = nftnl_set_elem_alloc();
			uint8_t key[2];

			if (!el) {
				err = -ENOMEM;
				break;
			}
			key[0] = key_len == 2 ? (uint8_t)(vals[j] >> 8) :
						(uint8_t)vals[j];
			key[1] = (uint8_t)vals[j];
			nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key,
					   key_len);
			nftnl_set_elem_add(s, el);
		}
		if (!err) {
			nlh = batch_hdr(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE);
			if (nlh) {
				nftnl_set_elems_nlmsg_build_payload(nlh, s);
				err = batch_push(b, nlh, MSG_ELEMS);
			} else {
				err = -ENOMEM;
			}
		}
		nftnl_set_free(s);
	}
	return err;
}

static int batch_set(struct batch *b, const struct zm_nft_match *m,
		     uint32_t key_type, uint32_t key_len, uint32_t id)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;
	int err = -ENOMEM;

	if (!s)
		return -ENOMEM;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, b->rs->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, ANON_SET_NAME);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, zm_nft_nfproto(b->rs->family));
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS,
			  NFT_SET_ANONYMOUS | NFT_SET_CONSTANT);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, (uint32_t)m->nset);
	nlh = batch_hdr(b, NFT_MSG_NEWSET, NLM_F_CREATE);
	if (nlh) {
		nftnl_set_nlmsg_build_payload(nlh, s);
		err = batch_push(b, nlh, MSG_SET);
	}
	nftnl_set_free(s);
	if (!err)
		err = batch_elems(b, m, key_len, id);
	return err;
}

/* ---- checks the kernel would make less clearly ---- */

static int check_name(const char *what, const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > ZM_NFT_NAME_MAX) {
		zm_err_set("invalid %s name", what);
		return -EINVAL;
	}
	return 0;
}

static int check_ruleset(const struct zm_nft_ruleset *rs)
{
	size_t i, j;
	int err;

	if (!family_name(rs->family)) {
		zm_err_set("unknown family %d", (int)rs->family);
		return -EINVAL;
	}
	err = check_name("table", rs->table);
	for (i = 0; !err && i < rs->nchains; i++) {
		const struct zm_nft_chain *c = &rs->chains[i];

		err = check_name("chain", c->name);
		for (j = 0; !err && j < c->nrules; j++) {
			const struct zm_nft_rule *r = &c->rules[j];
			unsigned int k;

			if ((r->action == ZM_NFT_JUMP ||
			     r->action == ZM_NFT_GOTO))
				err = check_name("target chain", r->target);
			if (!err && r->comment &&
			    strlen(r->comment) > ZM_NFT_COMMENT_MAX) {
				zm_err_set("comment longer than %d",
					   ZM_NFT_COMMENT_MAX);
				err = -EINVAL;
			}
			for (k = 0; !err && k < ZM_NFT_KEY_COUNT; k++)
				if ((r->has & (1u << k)) &&
				    r->m[k].nset > ZM_NFT_SET_MAX) {
					zm_err_set("set of more than %d values",
						   ZM_NFT_SET_MAX);
					err = -EINVAL;
				}
			if (err)
				zm_err_context("chain '%s' rule %zu", c->name,
					       j + 1);
		}
	}
	return err;
}

/* ---- send, read every ack ---- */

static void label_msg(const struct batch *b, const struct msg_label *l,
		      char *buf, size_t len)
{
	const struct zm_nft_chain *c = l->chain >= 0 ?
		&b->rs->chains[l->chain] : NULL;

	switch (l->kind) {
	case MSG_TABLE:
	case MSG_DELTABLE:
		snprintf(buf, len, "table %s %s", family_name(b->rs->family),
			 b->rs->table);
		break;
	case MSG_CHAIN:
		snprintf(buf, len, "chain '%s'", c->name);
		break;
	case MSG_SET:
	case MSG_ELEMS:
	case MSG_RULE:
		snprintf(buf, len, "chain '%s' rule %d%s", c->name, l->rule + 1,
			 l->kind == MSG_RULE ? "" : " (its set)");
		break;
	}
}

/* The attribute of message MSG at byte offset OFFS, named, for errors. */
static const char *bad_attr(const struct batch *b, const struct msg_label *l,
			    uint32_t offs)
{
	static const char *const chain_attrs[] = {
		[NFTA_CHAIN_HOOK] = "hook", [NFTA_CHAIN_POLICY] = "policy",
		[NFTA_CHAIN_TYPE] = "type", [NFTA_CHAIN_NAME] = "name",
	};
	const struct nlmsghdr *nlh = (const void *)(b->buf + l->off);
	const struct nlattr *attr;
	size_t hdr = NLMSG_HDRLEN + sizeof(struct nfgenmsg);

	if (l->kind != MSG_CHAIN || offs < hdr || offs >= nlh->nlmsg_len)
		return NULL;
	mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
		size_t start = (const char *)attr - (const char *)nlh;
		uint16_t type = mnl_attr_get_type(attr);

		if (offs >= start && offs < start + attr->nla_len)
			return type < sizeof(chain_attrs) / sizeof(*chain_attrs) ?
				chain_attrs[type] : NULL;
	}
	return NULL;
}

/* Keep the first error the kernel reports, named after its message. */
static void note_error(const struct batch *b, const struct zm_nl_ack *ack,
		       int *first, unsigned int *nerr)
{
	char what[ZM_NFT_NAME_MAX + 64];
	const struct msg_label *l = NULL;
	const char *attr = NULL;

	(*nerr)++;
	if (*first)
		return;
	*first = -ack->error;
	if (ack->seq > b->seq0 && ack->seq - b->seq0 - 1 < b->nmsgs)
		l = &b->msgs[ack->seq - b->seq0 - 1];
	if (l) {
		label_msg(b, l, what, sizeof(what));
		if (ack->has_offs)
			attr = bad_attr(b, l, ack->offs);
	} else {
		snprintf(what, sizeof(what), "batch");
	}
	zm_err_set("%s%s%s%s%s%s", what, attr ? " (" : "", attr ? attr : "",
		   attr ? ")" : "", ack->msg && *ack->msg ? ": " : "",
		   ack->msg ? ack->msg : "");
}

static int set_buffers(struct mnl_socket *nl, size_t sndbuf, size_t nmsgs)
{
	int fd = mnl_socket_get_fd(nl);
	int snd = (int)sndbuf + 4096, rcv = (int)(nmsgs * 1024 + 65536);

	/*
	 * Every message is acknowledged, and each ack is queued as its own
	 * skb (some 700 bytes of truesize). Best effort: the FORCE variants
	 * need CAP_NET_ADMIN.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	return 0;
}

/*
 * One sendmsg for the whole batch. The kernel handles it before sendmsg
 * returns, so every answer is then queued: read until the socket is empty.
 */
static int batch_talk(struct mnl_socket *nl, const struct batch *b)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	uint32_t portid = mnl_socket_get_portid(nl);
	size_t acked = 0;
	unsigned int nerr = 0;
	int first = 0;
	ssize_t n;

	set_buffers(nl, b->len, b->nmsgs);
	n = mnl_socket_sendto(nl, b->buf, b->len);
	if (n < 0) {
		int e = errno;

		zm_err_set("cannot send the batch (%zu bytes)", b->len);
		return -e;
	}
	for (;;) {
		struct nlmsghdr *nlh;
		int len;

		n = recv(mnl_socket_get_fd(nl), buf, sizeof(buf),
			 MSG_DONTWAIT);
		if (n < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			if (e == EAGAIN)
				break;
			if (first)
				return first;
			zm_err_set("reading acknowledgements");
			return -e;
		}
		len = (int)n;
		for (nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			struct zm_nl_ack ack;

			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    nlh->nlmsg_pid != portid)
				continue;
			/* Only answers to this batch (begin..end). */
			if (zm_nl_parse_ack(nlh, &ack) ||
			    ack.seq - b->seq0 > b->nmsgs + 1)
				continue;
			if (ack.error)
				note_error(b, &ack, &first, &nerr);
			else
				acked++;
		}
	}
	if (first) {
		if (nerr > 1)
			zm_err_context("%s (and %u more errors)", zm_err_text(),
				       nerr - 1);
		return first;
	}
	if (acked != b->nmsgs) {
		zm_err_set("kernel acknowledged %zu of %zu messages", acked,
			   b->nmsgs);
		return -EPROTO;
	}
	return 0;
}

static void batch_free(struct batch *b)
{
	free(b->buf);
	free(b->msgs);
}

static int batch_begin(struct batch *b, const struct zm_nft_ruleset *rs)
{
	char *tail;

	memset(b, 0, sizeof(*b));
	b->rs = rs;
	b->chain = b->rule = -1;
	b->seq0 = zm_nft_seq(0);
	tail = batch_room(b);
	if (!tail)
		return -ENOMEM;
	b->len += NLMSG_ALIGN(nftnl_batch_begin(tail, b->seq0)->nlmsg_len);
	return 0;
}

static int batch_end(struct batch *b)
{
	char *tail = batch_room(b);

	if (!tail)
		return -ENOMEM;
	b->len += NLMSG_ALIGN(
		nftnl_batch_end(tail, batch_next_seq(b))->nlmsg_len);
	return 0;
}

/* add table, delete table: the table is gone, whether it was there or not. */
static int batch_clear(struct batch *b)
{
	int err = batch_table(b, b->rs->table, NFT_MSG_NEWTABLE, NLM_F_CREATE,
			      MSG_TABLE);

	if (!err)
		err = batch_table(b, b->rs->table, NFT_MSG_DELTABLE, 0,
				  MSG_DELTABLE);
	return err;
}

static int build(struct batch *b, const struct zm_nft_ruleset *rs)
{
	size_t i, j;
	int err;

	err = batch_begin(b, rs);
	if (!err)
		err = batch_clear(b);
	if (!err)
		err = batch_table(b, rs->table, NFT_MSG_NEWTABLE, NLM_F_CREATE,
				  MSG_TABLE);
	/* Every chain first: rules may jump to chains defined later. */
	for (i = 0; !err && i < rs->nchains; i++) {
		b->chain = (int)i;
		err = batch_chain(b, &rs->chains[i]);
	}
	for (i = 0; !err && i < rs->nchains; i++) {
		b->chain = (int)i;
		for (j = 0; !err && j < rs->chains[i].nrules; j++) {
			b->rule = (int)j;
			err = batch_rule(b, &rs->chains[i],
					 &rs->chains[i].rules[j]);
		}
		b->rule = -1;
	}
	if (!err)
		err = batch_end(b);
	/* The numbers used: begin, the messages, end. */
	zm_nft_seq((uint32_t)b->nmsgs + 2);
	return err;
}

static int run_batch(struct zm_ns *ns, struct batch *b)
{
	struct mnl_socket *nl;
	int err;

	err = zm_nft_socket(ns, &nl);
	if (err)
		return err;
	return batch_talk(nl, b);
}

int zm_nft_apply(struct zm_ns *ns, const struct zm_nft_ruleset *rs)
{
	struct batch b;
	int err;

	zm_err_clear();
	err = check_ruleset(rs);
	if (err)
		return err;
	err = build(&b, rs);
	if (!err)
		err = run_batch(ns, &b);
	batch_free(&b);
	if (err)
		zm_err_context("nft table %s %s in namespace %s",
			       family_name(rs->family), rs->table,
			       zm_ns_label(ns));
	return err;
}

int zm_nft_delete(struct zm_ns *ns, enum zm_nft_family family,
		  const char *table)
{
	struct zm_nft_ruleset rs = { .family = family, .table = table };
	struct batch b;
	int err;

	zm_err_clear();
	err = check_ruleset(&rs);
	if (err)
		return err;
	err = batch_begin(&b, &rs);
	if (!err)
		err = batch_clear(&b);
	if (!err)
		err = batch_end(&b);
	zm_nft_seq((uint32_t)b.nmsgs + 2);
	if (!err)
		err = run_batch(ns, &b);
	batch_free(&b);
	if (err)
		zm_err_context("nft table %s %s in namespace %s",
			       family_name(family), table, zm_ns_label(ns));
	return err;
}
