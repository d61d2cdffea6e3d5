// SPDX-License-Identifier: MIT
/*
 * Reading one table back through libnftnl: its chains and, per rule, the
 * handle, comment and counter. Three dumps bracketed by the ruleset
 * generation, so that the result is one consistent picture.
 */
#include "nft.h"
#include "err.h"
#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

/* Tries before giving up on a ruleset that keeps changing under us. */
#define DUMP_TRIES 5

struct dump_ctx {
	struct zm_nft_dump *d;
	uint32_t gen;
};

static int gen_attr(const struct nlattr *attr, void *data)
{
	if (mnl_attr_get_type(attr) == NFTA_GEN_ID &&
	    mnl_attr_validate(attr, MNL_TYPE_U32) >= 0)
		*(uint32_t *)data = ntohl(mnl_attr_get_u32(attr));
	return MNL_CB_OK;
}

static int on_gen(const struct nlmsghdr *nlh, void *data)
{
	mnl_attr_parse(nlh, sizeof(struct nfgenmsg), gen_attr, data);
	return 0;
}

static int get_gen(struct mnl_socket *nl, uint32_t seq, uint32_t *gen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;

	/* Attribute padding is sent as is: no stack garbage to the kernel. */
	memset(buf, 0, sizeof(buf));
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, 0, seq);
	return zm_nft_request(nl, nlh, on_gen, gen);
}

static int on_table(const struct nlmsghdr *nlh, void *data)
{
	struct zm_nft_dump *d = data;
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t)
		return -ENOMEM;
	if (nftnl_table_nlmsg_parse(nlh, t) < 0) {
		nftnl_table_free(t);
		return -EPROTO;
	}
	if (nftnl_table_is_set(t, NFTNL_TABLE_HANDLE))
		d->handle = nftnl_table_get_u64(t, NFTNL_TABLE_HANDLE);
	nftnl_table_free(t);
	return 0;
}

static int get_table(struct mnl_socket *nl, uint32_t seq,
		     struct zm_nft_dump *d)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;
	int err;

	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, d->table);
	/* Attribute padding is sent as is: no stack garbage to the kernel. */
	memset(buf, 0, sizeof(buf));
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE,
				    zm_nft_nfproto(d->family), 0, seq);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	err = zm_nft_request(nl, nlh, on_table, d);
	if (err == -ENOENT)
		zm_err_set("no such table");
	return err;
}

static int on_chain(const struct nlmsghdr *nlh, void *data)
{
	struct zm_nft_dump *d = data;
	struct zm_nft_dump_chain *c;
	struct nftnl_chain *ch = nftnl_chain_alloc();
	const char *s;
	int err = 0;

	if (!ch)
		return -ENOMEM;
	if (nftnl_chain_nlmsg_parse(nlh, ch) < 0) {
		err = -EPROTO;
		goto out;
	}
	s = nftnl_chain_get_str(ch, NFTNL_CHAIN_TABLE);
	if (!s || strcmp(s, d->table))
		goto out;
	if (d->nchains == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct zm_nft_dump_chain *nc =
			realloc(d->chains, cap * sizeof(*nc));

		if (!nc) {
			err = -ENOMEM;
			goto out;
		}
		d->chains = nc;
		d->cap = cap;
	}
	c = &d->chains[d->nchains];
	memset(c, 0, sizeof(*c));
	c->name = strdup(nftnl_chain_get_str(ch, NFTNL_CHAIN_NAME));
	if (!c->name) {
		err = -ENOMEM;
		goto out;
	}
	d->nchains++;
	c->handle = nftnl_chain_get_u64(ch, NFTNL_CHAIN_HANDLE);
	if (nftnl_chain_is_set(ch, NFTNL_CHAIN_HOOKNUM)) {
		c->base = true;
		c->hook = nftnl_chain_get_u32(ch, NFTNL_CHAIN_HOOKNUM);
		c->priority = nftnl_chain_get_s32(ch, NFTNL_CHAIN_PRIO);
		c->drop = nftnl_chain_get_u32(ch, NFTNL_CHAIN_POLICY) ==
			  NF_DROP;
		s = nftnl_chain_get_str(ch, NFTNL_CHAIN_TYPE);
		strncpy(c->type, s ? s : "", sizeof(c->type) - 1);
	}
out:
	nftnl_chain_free(ch);
	return err;
}

static int get_chains(struct mnl_socket *nl, uint32_t seq,
		      struct zm_nft_dump *d)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_chain *ch = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!ch)
		return -ENOMEM;
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, d->table);
	/* Attribute padding is sent as is: no stack garbage to the kernel. */
	memset(buf, 0, sizeof(buf));
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN,
				    zm_nft_nfproto(d->family), NLM_F_DUMP,
				    seq);
	nftnl_chain_nlmsg_build_payload(nlh, ch);
	nftnl_chain_free(ch);
	return zm_nft_request(nl, nlh, on_chain, d);
}

static int expr_cb(struct nftnl_expr *e, void *data)
{
	struct zm_nft_dump_rule *r = data;
	const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

	r->nexprs++;
	if (name && !strcmp(name, "counter") && !r->has_counter) {
		r->has_counter = true;
		r->packets = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
		r->bytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
	}
	return 0;
}

static int udata_cb(const struct nftnl_udata *attr, void *data)
{
	const char **comment = data;
	const char *s = nftnl_udata_get(attr);
	uint8_t len = nftnl_udata_len(attr);

	if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && len > 0 &&
	    s[len - 1] == '\0')
		*comment = s;
	return 0;
}

static struct zm_nft_dump_chain *find_chain(struct zm_nft_dump *d,
					    const char *name)
{
	size_t i;

	for (i = 0; i < d->nchains; i++)
		if (!strcmp(d->chains[i].name, name))
			return &d->chains[i];
	return NULL;
}

static int add_rule(struct zm_nft_dump_chain *c, struct nftnl_rule *r)
{
	struct zm_nft_dump_rule *dr;
	const char *comment = NULL;
	const void *ud;
	uint32_t len;

	if (c->nrules == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct zm_nft_dump_rule *nr =
			realloc(c->rules, cap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		c->rules = nr;
		c->cap = cap;
	}
	dr = &c->rules[c->nrules];
	memset(dr, 0, sizeof(*dr));
	dr->handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
	ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
	if (ud && nftnl_udata_parse(ud, len, udata_cb, &comment) >= 0 &&
	    comment) {
		dr->comment = strdup(comment);
		if (!dr->comment)
			return -ENOMEM;
	}
	c->nrules++;
	nftnl_expr_foreach(r, expr_cb, dr);
	return 0;
}

static int on_rule(const struct nlmsghdr *nlh, void *data)
{
	struct zm_nft_dump *d = data;
	struct zm_nft_dump_chain *c;
	struct nftnl_rule *r = nftnl_rule_alloc();
	const char *s;
	int err = 0;

	if (!r)
		return -ENOMEM;
	if (nftnl_rule_nlmsg_parse(nlh, r) < 0) {
		err = -EPROTO;
		goto out;
	}
	s = nftnl_rule_get_str(r, NFTNL_RULE_TABLE);
	if (!s || strcmp(s, d->table))
		goto out;
	s = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
	c = s ? find_chain(d, s) : NULL;
	/* A chain added after our chain dump: the generation check retries. */
	if (c)
		err = add_rule(c, r);
out:
	nftnl_rule_free(r);
	return err;
}

static int get_rules(struct mnl_socket *nl, uint32_t seq,
		     struct zm_nft_dump *d)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nlmsghdr *nlh;

	if (!r)
		return -ENOMEM;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, d->table);
	/* Attribute padding is sent as is: no stack garbage to the kernel. */
	memset(buf, 0, sizeof(buf));
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE,
				    zm_nft_nfproto(d->family), NLM_F_DUMP,
				    seq);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftnl_rule_free(r);
	return zm_nft_request(nl, nlh, on_rule, d);
}

static void clear_chains(struct zm_nft_dump *d)
{
	size_t i, j;

	for (i = 0; i < d->nchains; i++) {
		for (j = 0; j < d->chains[i].nrules; j++)
			free(d->chains[i].rules[j].comment);
		free(d->chains[i].rules);
		free(d->chains[i].name);
	}
	free(d->chains);
	d->chains = NULL;
	d->nchains = d->cap = 0;
}

void zm_nft_dump_free(struct zm_nft_dump *d)
{
	if (!d)
		return;
	clear_chains(d);
	free(d->table);
	free(d);
}

static int dump_once(struct mnl_socket *nl, uint32_t *seq,
		     struct zm_nft_dump *d, bool *stable)
{
	uint32_t gen_after = 0;
	int err;

	clear_chains(d);
	err = get_gen(nl, (*seq)++, &d->generation);
	if (!err)
		err = get_table(nl, (*seq)++, d);
	if (!err)
		err = get_chains(nl, (*seq)++, d);
	if (!err)
		err = get_rules(nl, (*seq)++, d);
	if (!err)
		err = get_gen(nl, (*seq)++, &gen_after);
	*stable = !err && gen_after == d->generation;
	return err;
}

int zm_nft_dump(struct zm_ns *ns, enum zm_nft_family family, const char *table,
		struct zm_nft_dump **out)
{
	const char *fname = zm_nft_name_of(zm_nft_families, family);
	struct mnl_socket *nl = NULL;
	struct zm_nft_dump *d;
	uint32_t seq = zm_nft_seq(DUMP_TRIES * 5);
	bool stable = false;
	int err, tries;

	zm_err_clear();
	*out = NULL;
	if (!fname || !table || !*table || strlen(table) > ZM_NFT_NAME_MAX) {
		zm_err_set("invalid family or table name");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->family = family;
	d->table = strdup(table);
	err = d->table ? zm_nft_socket(ns, &nl) : -ENOMEM;
	for (tries = 0; !err && !stable && tries < DUMP_TRIES; tries++)
		err = dump_once(nl, &seq, d, &stable);
	if (!err && !stable) {
		zm_err_set("ruleset kept changing during %d dumps", DUMP_TRIES);
		err = -EAGAIN;
	}
	if (err) {
		zm_err_context("nft table %s %s in namespace %s", fname, table,
			       zm_ns_label(ns));
		zm_nft_dump_free(d);
		return err;
	}
	*out = d;
	return 0;
}
