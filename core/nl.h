/* SPDX-License-Identifier: MIT */
/*
 * rtnetlink through libnl, one socket per namespace handle, with the
 * kernel's extended-ack text and exact errno captured for the caller.
 */
#ifndef ZM_NL_H
#define ZM_NL_H

struct nl_sock;
struct zm_ns;

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
