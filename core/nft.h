/* SPDX-License-Identifier: MIT */
/*
 * nftables: one table owned by Zero-Mesh per namespace, replaced as a whole
 * in one kernel transaction, and read back with its rule counters.
 *
 * A ruleset is plain data (struct zm_nft_ruleset), filled by the caller and
 * owned by it; the core only reads it. zm_nft_apply() sends ONE batch in one
 * sendmsg(): begin, add table, delete table, add table, chains, (anonymous
 * sets,) rules, end. The kernel commits all of it or none of it, so a failed
 * apply leaves the previous table exactly as it was. Every message asks for
 * an acknowledgement; all are read, and an error is named after the chain or
 * rule whose message the kernel refused, with the kernel's extended-ack text.
 *
 * The vocabulary is deliberately small: see enum zm_nft_key and
 * enum zm_nft_action. Rules are emitted the way nft(8) emits the same rule,
 * so `nft list ruleset` prints them in nft's own words.
 */
#ifndef ZM_NFT_H
#define ZM_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zm_ns;

#define ZM_NFT_NAME_MAX 255	/* table and chain names, without the NUL */
#define ZM_NFT_COMMENT_MAX 128	/* rule comments, without the NUL */
#define ZM_NFT_SET_MAX 256	/* values in one set match */
#define ZM_NFT_IFNAMSIZ 16

enum zm_nft_family { ZM_NFT_INET, ZM_NFT_IP, ZM_NFT_IP6 };

enum zm_nft_chain_type { ZM_NFT_FILTER, ZM_NFT_NAT };

/* Matches, in the order a rule tests them. */
enum zm_nft_key {
	ZM_NFT_IIFNAME,		/* name: exact or prefix (wildcard) */
	ZM_NFT_OIFNAME,
	ZM_NFT_CT_STATE,	/* lo: mask of ZM_NFT_CT_* bits, any of */
	ZM_NFT_IP_SADDR,	/* addr/plen */
	ZM_NFT_IP_DADDR,
	ZM_NFT_IP6_SADDR,
	ZM_NFT_IP6_DADDR,
	ZM_NFT_L4PROTO,		/* lo: protocol number */
	ZM_NFT_TCP_SPORT,	/* lo[..hi] or set */
	ZM_NFT_TCP_DPORT,
	ZM_NFT_UDP_SPORT,
	ZM_NFT_UDP_DPORT,
	ZM_NFT_ICMP_TYPE,	/* lo or set */
	ZM_NFT_ICMPV6_TYPE,
	ZM_NFT_KEY_COUNT
};

/* ct state bits, as the kernel's NF_CT_STATE_* bits. */
#define ZM_NFT_CT_INVALID	(1u << 0)
#define ZM_NFT_CT_ESTABLISHED	(1u << 1)
#define ZM_NFT_CT_RELATED	(1u << 2)
#define ZM_NFT_CT_NEW		(1u << 3)
#define ZM_NFT_CT_UNTRACKED	(1u << 6)

struct zm_nft_match {
	bool neg;		/* "!=": names and addresses only */
	/* iifname/oifname */
	char name[ZM_NFT_IFNAMSIZ];
	bool wildcard;		/* name is a prefix ("veth*") */
	/* addresses: 4 or 16 bytes, network order; plen 1..32/128 */
	uint8_t addr[16];
	unsigned int plen;
	/* integers: a value (lo == hi), a range lo..hi, or a set */
	uint32_t lo, hi;
	const uint32_t *set;	/* nset values, when nset > 0 */
	size_t nset;
};

enum zm_nft_action {
	ZM_NFT_NONE,		/* fall through (e.g. a counter only) */
	ZM_NFT_ACCEPT,
	ZM_NFT_DROP,
	ZM_NFT_REJECT,		/* ICMP(v6)/ICMPX port unreachable */
	ZM_NFT_RETURN,
	ZM_NFT_JUMP,		/* target */
	ZM_NFT_GOTO,		/* target */
	ZM_NFT_MASQUERADE,	/* fully_random */
	ZM_NFT_SNAT,		/* nat_addr, fully_random */
	ZM_NFT_DNAT,		/* nat_addr */
};

struct zm_nft_rule {
	uint32_t has;		/* bit (1 << ZM_NFT_*) per match present */
	struct zm_nft_match m[ZM_NFT_KEY_COUNT];
	bool counter;
	enum zm_nft_action action;
	const char *target;	/* chain, for jump/goto */
	bool fully_random;
	int nat_family;		/* 4 or 6 */
	uint8_t nat_addr[16];
	const char *comment;	/* NULL or text */
};

struct zm_nft_chain {
	const char *name;
	bool base;		/* type, hook, priority, policy are set */
	enum zm_nft_chain_type type;
	unsigned int hook;	/* NF_INET_* */
	int32_t priority;
	bool drop;		/* policy drop (else accept) */
	const struct zm_nft_rule *rules;
	size_t nrules;
};

struct zm_nft_ruleset {
	enum zm_nft_family family;
	const char *table;
	const struct zm_nft_chain *chains;
	size_t nchains;
};

/*
 * Replace table rs->table of family rs->family in ns by rs, atomically.
 * 0 or -errno; on error the previous table (or its absence) is untouched.
 */
int zm_nft_apply(struct zm_ns *ns, const struct zm_nft_ruleset *rs);
/* Remove the table; 0 also when it was not there. */
int zm_nft_delete(struct zm_ns *ns, enum zm_nft_family family,
		  const char *table);

/* A table read back: chains in kernel order, rules in chain order. */
struct zm_nft_dump_rule {
	uint64_t handle;
	char *comment;		/* NULL when none */
	bool has_counter;
	uint64_t packets, bytes;
	unsigned int nexprs;
};

struct zm_nft_dump_chain {
	char *name;
	uint64_t handle;
	bool base;
	char type[16];
	unsigned int hook;
	int32_t priority;
	bool drop;
	struct zm_nft_dump_rule *rules;
	size_t nrules, cap;
};

struct zm_nft_dump {
	enum zm_nft_family family;
	char *table;
	uint64_t handle;
	uint32_t generation;	/* ruleset generation the dump is from */
	struct zm_nft_dump_chain *chains;
	size_t nchains, cap;
};

/* -ENOENT (with a message) when the table does not exist. */
int zm_nft_dump(struct zm_ns *ns, enum zm_nft_family family, const char *table,
		struct zm_nft_dump **out);
void zm_nft_dump_free(struct zm_nft_dump *d);

/* Names of the vocabulary, shared by the bindings; NULL-name terminated. */
struct zm_nft_name {
	const char *name;
	uint32_t value;
};

extern const struct zm_nft_name zm_nft_families[];
extern const struct zm_nft_name zm_nft_chain_types[];
extern const struct zm_nft_name zm_nft_hooks[];
extern const struct zm_nft_name zm_nft_ct_states[];
extern const struct zm_nft_name zm_nft_l4protos[];
extern const struct zm_nft_name zm_nft_icmp_types[];
extern const struct zm_nft_name zm_nft_icmpv6_types[];

/* 0 and *value, or -ENOENT. */
int zm_nft_name_lookup(const struct zm_nft_name *names, const char *name,
		       uint32_t *value);
/* The name of value, or NULL. */
const char *zm_nft_name_of(const struct zm_nft_name *names, uint32_t value);

/* Match key names as in the Lua description ("iifname" …), NULL-ended. */
extern const char *const zm_nft_key_names[ZM_NFT_KEY_COUNT + 1];



/* ---- shared by core/nft*.c only ---- */

struct mnl_socket;
struct nlmsghdr;

/* An acknowledgement or error, with its extended-ack parts. */

uint8_t zm_nft_nfproto(enum zm_nft_family f);
/* COUNT fresh sequence numbers (per thread, never reused soon). */
uint32_t zm_nft_seq(uint32_t count);
/*
 * The handle's netfilter socket, made inside ns on first use (ext-acks on)
 * and kept there: closing one right after a commit waits for an RCU grace
 * period. Freed by zm_ns_close().
 */
int zm_nft_socket(struct zm_ns *ns, struct mnl_socket **out);
void zm_nft_socket_free(struct mnl_socket *nl);
/* One request, its replies to cb, until DONE or the ack; 0 or -errno. */
int zm_nft_request(struct mnl_socket *nl, struct nlmsghdr *req,
		   int (*cb)(const struct nlmsghdr *nlh, void *data),
		   void *data);
#endif
