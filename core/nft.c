// SPDX-License-Identifier: MIT
/*
 * nftables through libnftnl: the atomic replace of one table and its read
 * back (see nft.h). Messages go through the netlink layer (nl.h), which
 * maps every answer to the message it answers.
 */
#include "nft.h"
#include "err.h"
#include "netns.h"
#include "nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

/* Room kept free for one message: every message stays below. */
#define MSG_ROOM 65536
/* Tries before giving up on a ruleset that keeps changing under a dump. */
#define DUMP_TRIES 5

struct entry {
	enum zm_nft_kind kind;
	void *obj;
	char *label;
};

struct zm_nft_batch {
	uint8_t family;
	char *table;
	struct entry *v;
	size_t n;
};

static const char *family_name(uint8_t family)
{
	return family == NFPROTO_IPV4 ? "ip" :
	       family == NFPROTO_IPV6 ? "ip6" : "inet";
}

static int check_table(uint8_t family, const char *table)
{
	size_t len = table ? strlen(table) : 0;

	if ((family == NFPROTO_INET || family == NFPROTO_IPV4 ||
	     family == NFPROTO_IPV6) && len && len <= ZM_NFT_NAME_MAX)
		return 0;
	zm_err_set("invalid family or table name");
	return -EINVAL;
}

int zm_nft_batch_new(uint8_t family, const char *table,
		     struct zm_nft_batch **out)
{
	struct zm_nft_batch *b;
	int err = check_table(family, table);

	*out = NULL;
	if (err)
		return err;
	b = calloc(1, sizeof(*b));
	if (!b || !(b->table = strdup(table))) {
		free(b);
		return -ENOMEM;
	}
	b->family = family;
	*out = b;
	return 0;
}

static void free_obj(enum zm_nft_kind kind, void *obj)
{
	if (kind == ZM_NFT_CHAIN)
		nftnl_chain_free(obj);
	else if (kind == ZM_NFT_SET)
		nftnl_set_free(obj);
	else
		nftnl_rule_free(obj);
}

int zm_nft_batch_add(struct zm_nft_batch *b, enum zm_nft_kind kind,
		     void *obj, const char *label)
{
	char *copy = strdup(label ? label : "");

	if (!copy || zm_grow((void **)&b->v, b->n, sizeof(*b->v))) {
		free(copy);
		free_obj(kind, obj);
		return -ENOMEM;
	}
	b->v[b->n++] = (struct entry){ kind, obj, copy };
	return 0;
}

void zm_nft_batch_free(struct zm_nft_batch *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n; i++) {
		free_obj(b->v[i].kind, b->v[i].obj);
		free(b->v[i].label);
	}
	free(b->v);
	free(b->table);
	free(b);
}

/* ---- the batch on the wire ---- */

struct wire {
	char *buf;
	size_t len, cap;
	size_t *owner;		/* per message: its entry + 1, 0: the table */
	size_t nmsgs;
	uint32_t seq;		/* of the next message */
};

/* The free tail of the buffer, at least MSG_ROOM bytes; NULL on ENOMEM. */
static char *room(struct wire *w)
{
	if (w->cap - w->len < MSG_ROOM) {
		size_t cap = w->cap ? w->cap * 2 : 4 * MSG_ROOM;
		char *nb;

		while (cap - w->len < MSG_ROOM)
			cap *= 2;
		nb = realloc(w->buf, cap);
		if (!nb)
			return NULL;
		/* libnftnl leaves attribute padding as it finds it. */
		memset(nb + w->cap, 0, cap - w->cap);
		w->buf = nb;
		w->cap = cap;
	}
	return w->buf + w->len;
}

static struct nlmsghdr *msg(struct wire *w, const struct zm_nft_batch *b,
			    uint16_t type, uint16_t flags, size_t owner)
{
	char *tail = room(w);

	if (!tail || zm_grow((void **)&w->owner, w->nmsgs, sizeof(*w->owner)))
		return NULL;
	w->owner[w->nmsgs++] = owner;
	return nftnl_nlmsg_build_hdr(tail, type, b->family, flags | NLM_F_ACK,
				     w->seq++);
}

static void put(struct wire *w, struct nlmsghdr *nlh)
{
	w->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

static int table_msg(struct wire *w, const struct zm_nft_batch *b,
		     uint16_t type, uint16_t flags)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh = t ? msg(w, b, type, flags, 0) : NULL;

	if (nlh) {
		nftnl_table_set_str(t, NFTNL_TABLE_NAME, b->table);
		nftnl_table_nlmsg_build_payload(nlh, t);
		put(w, nlh);
	}
	nftnl_table_free(t);
	return nlh ? 0 : -ENOMEM;
}

static int entry_msgs(struct wire *w, const struct zm_nft_batch *b, size_t i)
{
	const struct entry *e = &b->v[i];
	struct nlmsghdr *nlh;

	switch (e->kind) {
	case ZM_NFT_CHAIN:
		/* EXCL: a name given twice is refused, not merged. */
		nlh = msg(w, b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL,
			  i + 1);
		if (nlh)
			nftnl_chain_nlmsg_build_payload(nlh, e->obj);
		break;
	case ZM_NFT_SET:
		nlh = msg(w, b, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL,
			  i + 1);
		if (!nlh)
			break;
		nftnl_set_nlmsg_build_payload(nlh, e->obj);
		put(w, nlh);
		/* EXCL again: a value given twice is refused. */
		nlh = msg(w, b, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL,
			  i + 1);
		if (nlh)
			nftnl_set_elems_nlmsg_build_payload(nlh, e->obj);
		break;
	default:
		nlh = msg(w, b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
			  i + 1);
		if (nlh)
			nftnl_rule_nlmsg_build_payload(nlh, e->obj);
		break;
	}
	if (!nlh)
		return -ENOMEM;
	put(w, nlh);
	return 0;
}

/*
 * begin; add table, delete table (the table is gone, whether it was there
 * or not); then, unless DELETE_ONLY, add table and the entries; end.
 */
static int build(struct wire *w, const struct zm_nft_batch *b,
		 bool delete_only)
{
	size_t i;
	int err;

	if (!room(w) || zm_grow((void **)&w->owner, 0, sizeof(*w->owner)))
		return -ENOMEM;
	w->owner[0] = 0;
	w->nmsgs = 1;		/* begin: asks for no answer */
	put(w, nftnl_batch_begin(w->buf, w->seq++));
	err = table_msg(w, b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	if (!err)
		err = table_msg(w, b, NFT_MSG_DELTABLE, 0);
	if (!err && !delete_only)
		err = table_msg(w, b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	for (i = 0; !err && !delete_only && i < b->n; i++)
		err = entry_msgs(w, b, i);
	if (!err && !room(w))
		err = -ENOMEM;
	if (!err)
		put(w, nftnl_batch_end(w->buf + w->len, w->seq++));
	return err;
}

/* The attribute of a chain message at byte offset OFFS, named. */
static const char *bad_attr(const struct nlmsghdr *nlh, uint32_t offs)
{
	static const char *const names[] = {
		[NFTA_CHAIN_HOOK] = "hook", [NFTA_CHAIN_POLICY] = "policy",
		[NFTA_CHAIN_TYPE] = "type", [NFTA_CHAIN_NAME] = "name",
	};
	const struct nlattr *attr;

	mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
		size_t start = (const char *)attr - (const char *)nlh;
		uint16_t type = mnl_attr_get_type(attr);

		if (offs >= start && offs < start + attr->nla_len)
			return type < sizeof(names) / sizeof(*names) ?
				names[type] : NULL;
	}
	return NULL;
}

static void name_error(const struct wire *w, const struct zm_nft_batch *b,
		       const struct zm_nl_talk *t)
{
	const struct nlmsghdr *nlh = (const void *)w->buf;
	const char *attr = NULL;
	size_t owner = t->bad < w->nmsgs ? w->owner[t->bad] : 0, i;

	for (i = 0; i < t->bad && i < w->nmsgs; i++)
		nlh = (const void *)((const char *)nlh +
				     NLMSG_ALIGN(nlh->nlmsg_len));
	if (t->has_offs && owner && b->v[owner - 1].kind == ZM_NFT_CHAIN)
		attr = bad_attr(nlh, t->bad_offs);
	if (t->nerr > 1)
		zm_err_context("%s (and %u more errors)", zm_err_text(),
			       t->nerr - 1);
	if (owner)
		zm_err_context("%s%s%s%s", b->v[owner - 1].label,
			       attr ? " (" : "", attr ? attr : "",
			       attr ? ")" : "");
	else
		zm_err_context("table %s %s", family_name(b->family), b->table);
}

static int send_batch(struct zm_ns *ns, const struct zm_nft_batch *b,
		      bool delete_only)
{
	struct wire w = { 0 };
	struct zm_nl_talk t = { 0 };
	struct zm_nl *nl;
	int err;

	zm_err_clear();
	err = zm_nl_get(ns, ZM_NL_NETFILTER, &nl);
	if (!err) {
		/* Sequence numbers: begin, every message, end. */
		w.seq = zm_nl_seq(nl, 0);
		err = build(&w, b, delete_only);
		zm_nl_seq(nl, w.seq - zm_nl_seq(nl, 0));
	}
	if (!err) {
		err = zm_nl_talk(nl, w.buf, w.len, &t);
		if (err && t.nerr)
			name_error(&w, b, &t);
	}
	free(w.buf);
	free(w.owner);
	if (err)
		zm_err_context("nft table %s %s in namespace %s",
			       family_name(b->family), b->table,
			       zm_ns_label(ns));
	return err;
}

int zm_nft_commit(struct zm_ns *ns, const struct zm_nft_batch *b)
{
	return send_batch(ns, b, false);
}

int zm_nft_delete(struct zm_ns *ns, uint8_t family, const char *table)
{
	struct zm_nft_batch b = { .family = family, .table = (char *)table };
	int err;

	zm_err_clear();
	err = check_table(family, table);
	return err ? err : send_batch(ns, &b, true);
}

/* ---- read back ---- */

struct reader {
	struct zm_nl *nl;
	struct zm_nft_dump *d;
	uint8_t family;
	const char *table;
	struct nftnl_set *set;	/* whose elements are read */
	uint32_t gen;
};

static int gen_attr(const struct nlattr *attr, void *data)
{
	if (mnl_attr_get_type(attr) == NFTA_GEN_ID &&
	    mnl_attr_validate(attr, MNL_TYPE_U32) >= 0)
		*(uint32_t *)data = ntohl(mnl_attr_get_u32(attr));
	return MNL_CB_OK;
}

static int on_gen(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;

	mnl_attr_parse(nlh, sizeof(struct nfgenmsg), gen_attr, &r->gen);
	return 0;
}

static int on_table(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;

	if (!r->d->table)
		r->d->table = nftnl_table_alloc();
	if (!r->d->table)
		return -ENOMEM;
	return nftnl_table_nlmsg_parse(nlh, r->d->table) < 0 ? -EPROTO : 0;
}

static int on_chain(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;
	struct nftnl_chain *c = nftnl_chain_alloc();
	const char *t;

	if (!c)
		return -ENOMEM;
	t = nftnl_chain_nlmsg_parse(nlh, c) < 0 ? NULL :
	    nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
	if (!t || strcmp(t, r->table)) {
		nftnl_chain_free(c);
		return t ? 0 : -EPROTO;
	}
	nftnl_chain_list_add_tail(c, r->d->chains);
	return 0;
}

static int on_set(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;
	struct nftnl_set *s = nftnl_set_alloc();
	const char *t;

	if (!s)
		return -ENOMEM;
	t = nftnl_set_nlmsg_parse(nlh, s) < 0 ? NULL :
	    nftnl_set_get_str(s, NFTNL_SET_TABLE);
	if (!t || strcmp(t, r->table)) {
		nftnl_set_free(s);
		return t ? 0 : -EPROTO;
	}
	nftnl_set_list_add_tail(s, r->d->sets);
	return 0;
}

static int on_elems(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;

	return nftnl_set_elems_nlmsg_parse(nlh, r->set) < 0 ? -EPROTO : 0;
}

static int on_rule(const struct nlmsghdr *nlh, void *arg)
{
	struct reader *r = arg;
	struct nftnl_rule *rule = nftnl_rule_alloc();
	struct nftnl_chain *c = NULL;
	const char *t, *name;

	if (!rule)
		return -ENOMEM;
	if (nftnl_rule_nlmsg_parse(nlh, rule) < 0) {
		nftnl_rule_free(rule);
		return -EPROTO;
	}
	t = nftnl_rule_get_str(rule, NFTNL_RULE_TABLE);
	name = nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN);
	if (t && name && !strcmp(t, r->table))
		c = nftnl_chain_list_lookup_byname(r->d->chains, name);
	/* A chain made after the chain dump: the generation check retries. */
	if (!c) {
		nftnl_rule_free(rule);
		return 0;
	}
	nftnl_chain_rule_add_tail(rule, c);
	return 0;
}

/* One request (TYPE, for the table or OBJ's set), its answers to CB. */
static int ask(struct reader *r, uint16_t type, uint16_t flags,
	       int (*cb)(const struct nlmsghdr *, void *))
{
	char buf[512] = { 0 };	/* padding goes to the kernel as it is */
	struct zm_nl_talk t = { .data = cb, .arg = r };
	struct nlmsghdr *nlh;
	struct nftnl_set *s;

	nlh = nftnl_nlmsg_build_hdr(buf, type, type == NFT_MSG_GETGEN ?
				    AF_UNSPEC : r->family,
				    flags ? flags : NLM_F_ACK,
				    zm_nl_seq(r->nl, 1));
	if (type == NFT_MSG_GETSETELEM) {
		nftnl_set_elems_nlmsg_build_payload(nlh, r->set);
	} else if (type != NFT_MSG_GETGEN) {
		/* Every object kind names its table in the same attribute. */
		s = nftnl_set_alloc();
		if (!s)
			return -ENOMEM;
		nftnl_set_set_str(s, NFTNL_SET_TABLE, r->table);
		nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
	}
	return zm_nl_talk(r->nl, nlh, nlh->nlmsg_len, &t);
}

static void clear(struct zm_nft_dump *d)
{
	if (d->table)
		nftnl_table_free(d->table);
	if (d->chains)
		nftnl_chain_list_free(d->chains);
	if (d->sets)
		nftnl_set_list_free(d->sets);
	d->table = NULL;
	d->chains = NULL;
	d->sets = NULL;
}

void zm_nft_dump_free(struct zm_nft_dump *d)
{
	if (d) {
		clear(d);
		free(d);
	}
}

static int each_set(struct nftnl_set *s, void *arg)
{
	struct reader *r = arg;

	r->set = s;
	return ask(r, NFT_MSG_GETSETELEM, NLM_F_DUMP, on_elems);
}

/* One picture; *stable when the generation did not move meanwhile. */
static int read_once(struct reader *r, bool *stable)
{
	struct zm_nft_dump *d = r->d;
	int err;

	clear(d);
	d->chains = nftnl_chain_list_alloc();
	d->sets = nftnl_set_list_alloc();
	if (!d->chains || !d->sets)
		return -ENOMEM;
	err = ask(r, NFT_MSG_GETGEN, 0, on_gen);
	d->generation = r->gen;
	if (!err) {
		err = ask(r, NFT_MSG_GETTABLE, 0, on_table);
		if (err == -ENOENT)
			zm_err_set("no such table");
	}
	if (!err)
		err = ask(r, NFT_MSG_GETCHAIN, NLM_F_DUMP, on_chain);
	if (!err)
		err = ask(r, NFT_MSG_GETSET, NLM_F_DUMP, on_set);
	if (!err)
		err = nftnl_set_list_foreach(d->sets, each_set, r);
	if (!err)
		err = ask(r, NFT_MSG_GETRULE, NLM_F_DUMP, on_rule);
	if (!err)
		err = ask(r, NFT_MSG_GETGEN, 0, on_gen);
	*stable = !err && r->gen == d->generation;
	return err;
}

int zm_nft_dump(struct zm_ns *ns, uint8_t family, const char *table,
		struct zm_nft_dump **out)
{
	struct reader r = { .family = family, .table = table };
	bool stable = false;
	int err, tries;

	zm_err_clear();
	*out = NULL;
	err = check_table(family, table);
	if (err)
		return err;
	r.d = calloc(1, sizeof(*r.d));
	err = r.d ? zm_nl_get(ns, ZM_NL_NETFILTER, &r.nl) : -ENOMEM;
	for (tries = 0; !err && !stable && tries < DUMP_TRIES; tries++)
		err = read_once(&r, &stable);
	if (!err && !stable) {
		zm_err_set("ruleset kept changing during %d dumps", DUMP_TRIES);
		err = -EAGAIN;
	}
	if (err) {
		zm_err_context("nft table %s %s in namespace %s",
			       family_name(family), table, zm_ns_label(ns));
		zm_nft_dump_free(r.d);
		return err;
	}
	*out = r.d;
	return 0;
}
