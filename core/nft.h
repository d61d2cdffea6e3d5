/* SPDX-License-Identifier: MIT */
/*
 * nftables: one table owned by Zero-Mesh per namespace, replaced as a whole
 * in one kernel transaction, and read back.
 *
 * The core knows no rule vocabulary: the caller (the bindings) builds
 * libnftnl objects, and the core sends them as ONE batch in one sendmsg():
 * begin, add table, delete table, add table, the objects in the order
 * given, end. The kernel commits all of it or none of it, so a failed
 * commit leaves the previous table exactly as it was. Every message asks
 * for an acknowledgement; all are read, and an error is named after the
 * object the kernel refused (its label), with the kernel's extended-ack
 * text. The read side gives back the table's objects as libnftnl parsed
 * them.
 */
#ifndef ZM_NFT_H
#define ZM_NFT_H

#include <stdint.h>

struct nftnl_chain_list;
struct nftnl_set_list;
struct nftnl_table;
struct zm_ns;

#define ZM_NFT_NAME_MAX 255	/* table, chain and set names, without NUL */

enum zm_nft_kind { ZM_NFT_CHAIN, ZM_NFT_SET, ZM_NFT_RULE };

struct zm_nft_batch;

/* An empty replace of TABLE of FAMILY (NFPROTO_INET, _IPV4, _IPV6). */
int zm_nft_batch_new(uint8_t family, const char *table,
		     struct zm_nft_batch **out);
/*
 * Append OBJ, a struct nftnl_chain, nftnl_set (its elements go in a
 * message of their own) or nftnl_rule; the batch owns it from now on,
 * also when this fails. LABEL ("chain 'input' rule 3") names it in errors.
 */
int zm_nft_batch_add(struct zm_nft_batch *b, enum zm_nft_kind kind,
		     void *obj, const char *label);
void zm_nft_batch_free(struct zm_nft_batch *b);
/* Replace the table in ns by the batch's; 0 or -errno, nothing changed. */
int zm_nft_commit(struct zm_ns *ns, const struct zm_nft_batch *b);
/* Remove the table; 0 also when it was not there. */
int zm_nft_delete(struct zm_ns *ns, uint8_t family, const char *table);

/* A table read back, as one consistent picture (same ruleset generation). */
struct zm_nft_dump {
	uint32_t generation;
	struct nftnl_table *table;
	struct nftnl_chain_list *chains; /* kernel order, each with its rules */
	struct nftnl_set_list *sets;	/* with their elements */
};

/* -ENOENT (with a message) when the table does not exist. */
int zm_nft_dump(struct zm_ns *ns, uint8_t family, const char *table,
		struct zm_nft_dump **out);
void zm_nft_dump_free(struct zm_nft_dump *d);

#endif
