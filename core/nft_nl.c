// SPDX-License-Identifier: MIT
/*
 * The netfilter netlink socket of the nft area: made inside a namespace,
 * extended acks on, and a request/answer helper that keeps the kernel's
 * error text (see nft.h, "shared by core/nft*.c only").
 */
#include "nft.h"
#include "nl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

uint32_t zm_nft_seq(uint32_t count)
{
	static __thread uint32_t next;
	uint32_t seq;

	if (!next)
		next = (uint32_t)time(NULL);
	seq = next;
	next += count;
	return seq;
}

int zm_nft_socket(struct zm_ns *ns, struct mnl_socket **out)
{
	struct mnl_socket *nl;
	int fd, one = 1;

	if (ns->nft) {
		*out = ns->nft;
		return 0;
	}
	*out = NULL;
	fd = zm_ns_socket(ns, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
	if (fd < 0) {
		zm_err_set("cannot open a netfilter socket in namespace %s",
			   zm_ns_label(ns));
		return fd;
	}
	nl = mnl_socket_fdopen(fd);
	if (!nl) {
		close(fd);
		return -ENOMEM;
	}
	/* Kernel text in errors; errors without the echoed request. */
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = -errno;

		mnl_socket_close(nl);
		return err;
	}
	ns->nft = nl;
	*out = nl;
	return 0;
}

void zm_nft_socket_free(struct mnl_socket *nl)
{
	if (nl)
		mnl_socket_close(nl);
}

/*
 * Send one request and read its answer: every message goes to cb until
 * NLMSG_DONE (a dump) or the ack (a plain request). Kernel errors come back
 * as -errno, with the extended-ack text in zm_err.
 */
int zm_nft_request(struct mnl_socket *nl, struct nlmsghdr *req,
		   int (*cb)(const struct nlmsghdr *nlh, void *data),
		   void *data)
{
	char buf[32768];
	uint32_t seq = req->nlmsg_seq, portid = mnl_socket_get_portid(nl);
	int err = 0;

	if (!(req->nlmsg_flags & NLM_F_DUMP))
		req->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		struct nlmsghdr *nlh;
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		len = (int)n;
		for (nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			struct zm_nl_ack ack;

			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid)
				continue;
			if (nlh->nlmsg_type == NLMSG_DONE)
				return err;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				if (zm_nl_parse_ack(nlh, &ack))
					return -EPROTO;
				if (ack.error && ack.msg && *ack.msg)
					zm_err_set("%s", ack.msg);
				/* The ack that ends a dump comes after DONE. */
				return ack.error ? -ack.error : err;
			}
			if (!err && cb)
				err = cb(nlh, data);
		}
	}
}
