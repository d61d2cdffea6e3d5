// SPDX-License-Identifier: MIT
#include "nl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static __thread int kernel_err;

void zm_nl_begin(void)
{
	kernel_err = 0;
}

int zm_nl_result(int nle_ret)
{
	if (nle_ret >= 0)
		return 0;
	if (kernel_err)
		return -kernel_err;
	return -zm_nle_to_errno(nle_ret);
}

static int ext_ack_attr(const struct nlattr *attr, void *data)
{
	struct zm_nl_ack *ack = data;

	switch (mnl_attr_get_type(attr)) {
	case NLMSGERR_ATTR_MSG:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0 &&
		    *mnl_attr_get_str(attr))
			ack->msg = mnl_attr_get_str(attr);
		break;
	case NLMSGERR_ATTR_OFFS:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
			ack->offs = mnl_attr_get_u32(attr);
			ack->has_offs = true;
		}
		break;
	}
	return MNL_CB_OK;
}

void zm_nl_parse_ack_tlvs(const struct nlmsghdr *nlh, size_t off,
			  struct zm_nl_ack *ack)
{
	size_t len = nlh->nlmsg_len - NLMSG_HDRLEN;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) ||
	    nlh->nlmsg_len < NLMSG_HDRLEN || off >= len)
		return;
	mnl_attr_parse_payload((const char *)nlh + NLMSG_HDRLEN + off,
			       len - off, ext_ack_attr, ack);
}

int zm_nl_parse_ack(const struct nlmsghdr *nlh, struct zm_nl_ack *ack)
{
	const struct nlmsgerr *e = (const void *)((const char *)nlh + NLMSG_HDRLEN);
	size_t off = sizeof(*e);

	memset(ack, 0, sizeof(*ack));
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
		return -EPROTO;
	ack->error = e->error < 0 ? -e->error : e->error;
	ack->seq = e->msg.nlmsg_seq;
	/* Uncapped, the request itself sits before the attributes. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	zm_nl_parse_ack_tlvs(nlh, off, ack);
	return 0;
}

/* Keep the kernel's errno and, when it sent one, its extended-ack text. */
static int on_kernel_error(struct sockaddr_nl *who, struct nlmsgerr *e,
			   void *arg)
{
	const struct nlmsghdr *hdr =
		(const void *)((const char *)e - NLMSG_HDRLEN);
	struct zm_nl_ack ack;

	(void)who;
	(void)arg;
	kernel_err = -e->error;
	if (!zm_nl_parse_ack(hdr, &ack) && ack.msg)
		zm_err_set("%s", ack.msg);
	return NL_STOP;
}

struct connect_args {
	struct nl_sock *sk;
};

static int connect_route(void *arg)
{
	struct connect_args *a = arg;
	int ret = nl_connect(a->sk, NETLINK_ROUTE);

	return ret < 0 ? -zm_nle_to_errno(ret) : 0;
}

int zm_nl_route(struct zm_ns *ns, struct nl_sock **out)
{
	struct connect_args a;
	struct nl_cb *cb;
	int one = 1, fd, err;

	if (ns->rtnl) {
		*out = ns->rtnl;
		return 0;
	}
	a.sk = nl_socket_alloc();
	if (!a.sk)
		return -ENOMEM;
	err = zm_ns_run(ns, connect_route, &a);
	if (err) {
		nl_socket_free(a.sk);
		return err;
	}
	fd = nl_socket_get_fd(a.sk);
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	cb = nl_socket_get_cb(a.sk);
	nl_cb_err(cb, NL_CB_CUSTOM, on_kernel_error, NULL);
	nl_cb_put(cb);
	ns->rtnl = a.sk;
	*out = a.sk;
	return 0;
}

void zm_nl_free(struct nl_sock *sk)
{
	if (sk)
		nl_socket_free(sk);
}
