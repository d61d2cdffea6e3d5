// SPDX-License-Identifier: MIT
#include "nl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <stddef.h>
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
	const char **msg = data;

	if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0)
		*msg = mnl_attr_get_str(attr);
	return MNL_CB_OK;
}

/* Keep the kernel's errno and, when it sent one, its extended-ack text. */
static int on_kernel_error(struct sockaddr_nl *who, struct nlmsgerr *e,
			   void *arg)
{
	const struct nlmsghdr *hdr =
		(const void *)((const char *)e - NLMSG_HDRLEN);
	const char *msg = NULL;
	size_t off;

	(void)who;
	(void)arg;
	kernel_err = -e->error;
	if (hdr->nlmsg_flags & NLM_F_ACK_TLVS) {
		off = sizeof(*e);
		if (!(hdr->nlmsg_flags & NLM_F_CAPPED))
			off += e->msg.nlmsg_len - NLMSG_HDRLEN;
		if (NLMSG_HDRLEN + off < hdr->nlmsg_len)
			mnl_attr_parse_payload((const char *)e + off,
					       hdr->nlmsg_len - NLMSG_HDRLEN -
						       off,
					       ext_ack_attr, &msg);
	}
	if (msg && *msg)
		zm_err_set("%s", msg);
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
