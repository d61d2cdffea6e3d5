/* SPDX-License-Identifier: MIT */
/*
 * Netlink for every protocol the core speaks: rtnetlink, generic netlink
 * (WireGuard) and nftables.
 *
 * Sockets belong to this layer, one per protocol and network namespace,
 * keyed by the namespace's identity (device and inode of its nsfs file),
 * made on first use inside the namespace and kept: closing a netlink
 * socket can wait for an RCU grace period, and a call that names its
 * namespace would pay that every time. A namespace made again under an
 * old name has a new identity, so it never gets an old socket;
 * zm_netns_delete() drops the sockets of the namespace it removes (a
 * socket keeps its namespace alive), and every open by name drops those
 * of namespaces whose names are gone or name another (zm_nl_prune: a name
 * removed by some other process must not leave its namespace alive here).
 *
 * One exchange for all of them (zm_nl_talk): send one message or a batch,
 * read until every message that asked for an answer has its ack, error
 * or end of dump, map each error to the message it answers (by sequence
 * number) and keep the kernel's extended-ack text.
 */
#ifndef ZM_NL_H
#define ZM_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nlmsghdr;
struct zm_ns;

enum zm_nl_proto { ZM_NL_ROUTE, ZM_NL_GENERIC, ZM_NL_NETFILTER };

struct zm_nl;

/* The socket for PROTO in NS; valid until the next call into this layer. */
int zm_nl_get(const struct zm_ns *ns, enum zm_nl_proto proto,
	      struct zm_nl **out);
/* Close every socket of the namespace with this identity. */
void zm_nl_forget(dev_t dev, ino_t ino);
/* Close the sockets of named namespaces whose name is gone or reused. */
void zm_nl_prune(void);
/* COUNT fresh sequence numbers of the socket; the first is returned. */
uint32_t zm_nl_seq(struct zm_nl *nl, uint32_t count);

/* One exchange: what to do with the answers, and what the first error was. */
struct zm_nl_talk {
	/* Every data message answering the request; <0 stops the calls. */
	int (*data)(const struct nlmsghdr *nlh, void *arg);
	void *arg;
	/* Filled in: */
	size_t bad;		/* the refused message (its index) */
	uint32_t bad_offs;	/* its attribute at fault, when has_offs */
	bool has_offs;
	unsigned int nerr;	/* errors the kernel sent */
	bool interrupted;	/* a dump changed while it ran (DUMP_INTR) */
};

/*
 * Send the messages in BUF (each with its own sequence number; those
 * flagged NLM_F_ACK or NLM_F_DUMP expect an answer) and read until all are
 * answered. Returns the first kernel error as -errno, its text in
 * zm_err_text(), and its message in t->bad; else data()'s error; else 0.
 */
int zm_nl_talk(struct zm_nl *nl, const void *buf, size_t len,
	       struct zm_nl_talk *t);

/* A generic netlink family's id, resolved once per socket. */
int zm_nl_genl_family(struct zm_nl *nl, const char *name, uint16_t *id);

/*
 * An rtnetlink request NLH (NLM_F_REQUEST, a sequence number and, unless
 * it is a dump, NLM_F_ACK are set here) in NS; every answer to CB.
 */
int zm_nl_route(struct zm_ns *ns, struct nlmsghdr *nlh,
		int (*cb)(const struct nlmsghdr *nlh, void *arg), void *arg);

/* Room for element N (0, 1, …) of SIZE bytes in array *v; lists grow so. */
int zm_grow(void **v, size_t n, size_t size);

#endif
