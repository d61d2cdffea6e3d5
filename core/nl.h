/* SPDX-License-Identifier: MIT */
/*
 * rtnetlink through libnl, one socket per namespace handle, with the
 * kernel's extended-ack text and exact errno captured for the caller.
 */
#ifndef ZM_NL_H
#define ZM_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nl_sock;
struct nlmsghdr;
struct zm_ns;

/* What an NLMSG_ERROR (or a failed NLMSG_DONE) carries. */
struct zm_nl_ack {
	int error;		/* positive errno, 0 for an ack */
	uint32_t seq;		/* of the message answered */
	const char *msg;	/* the kernel's extended-ack text, or NULL */
	uint32_t offs;		/* offset of the attribute at fault */
	bool has_offs;
};

/* Parse an NLMSG_ERROR message; -EPROTO when it is too short. */
int zm_nl_parse_ack(const struct nlmsghdr *nlh, struct zm_nl_ack *ack);
/* The extended-ack attributes starting OFF bytes into NLH's payload. */
void zm_nl_parse_ack_tlvs(const struct nlmsghdr *nlh, size_t off,
			  struct zm_nl_ack *ack);

/* The handle's rtnetlink socket, made inside its namespace on first use. */
int zm_nl_route(struct zm_ns *ns, struct nl_sock **out);
void zm_nl_free(struct nl_sock *sk);
/* Start of an operation: forget the kernel error of the previous one. */
void zm_nl_begin(void);
/*
 * Turn a libnl return (<0 NLE code) into -errno: the kernel's own errno
 * when the kernel answered with an error, libnl's mapped otherwise.
 */
int zm_nl_result(int nle_ret);

#endif
