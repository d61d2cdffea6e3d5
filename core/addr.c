// SPDX-License-Identifier: MIT
/* Interface addresses over rtnetlink. */
#include "addr.h"
#include "err.h"
#include "ip.h"
#include "link.h"
#include "netns.h"
#include "nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#define ADDR_MSG 256

static int fail(int err, const char *cidr, const char *dev,
		const struct zm_ns *ns)
{
	zm_err_context("address %s on '%s' in namespace %s", cidr, dev,
		       zm_ns_label(ns));
	return err;
}

/* RTM_NEWADDR or RTM_DELADDR for CIDR on DEV, sent. */
static int change(struct zm_ns *ns, uint16_t type, uint16_t flags,
		  const char *dev, const char *cidr, uint8_t ifa_flags)
{
	char buf[ADDR_MSG] = { 0 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;
	struct zm_cidr c;
	int err, idx;

	zm_err_clear();
	if (!zm_link_name_valid(dev)) {
		zm_err_set("invalid link name");
		return fail(-EINVAL, cidr, dev ? dev : "", ns);
	}
	err = zm_cidr_parse(cidr, &c);
	if (err)
		return fail(err, cidr, dev, ns);
	idx = zm_link_index(ns, dev);
	if (idx < 0)
		return fail(idx, cidr, dev, ns);
	zm_err_clear();
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)c.family;
	ifa->ifa_prefixlen = (uint8_t)c.prefix;
	ifa->ifa_flags = ifa_flags;
	ifa->ifa_index = (uint32_t)idx;
	/* 127/8 is host scope, as ip(8) and libnl make it. */
	if (c.family == AF_INET && c.addr[0] == 127)
		ifa->ifa_scope = RT_SCOPE_HOST;
	/* As ip(8) does: the local address, and the same as the peer's. */
	mnl_attr_put(nlh, IFA_LOCAL, zm_ip_len(c.family), c.addr);
	mnl_attr_put(nlh, IFA_ADDRESS, zm_ip_len(c.family), c.addr);
	err = zm_nl_route(ns, nlh, NULL, NULL);
	return err ? fail(err, cidr, dev, ns) : 0;
}

int zm_addr_add(struct zm_ns *ns, const char *dev, const char *cidr,
		const struct zm_addr_opts *opts)
{
	return change(ns, RTM_NEWADDR, NLM_F_CREATE |
		      (opts && opts->replace ? NLM_F_REPLACE : NLM_F_EXCL),
		      dev, cidr, opts && opts->nodad ? IFA_F_NODAD : 0);
}

int zm_addr_delete(struct zm_ns *ns, const char *dev, const char *cidr)
{
	return change(ns, RTM_DELADDR, 0, dev, cidr, 0);
}

/* The name of SCOPE as ip(8) and libnl write it. */
void zm_scope_name(unsigned int scope, char *buf, size_t len)
{
	const char *s = scope == RT_SCOPE_UNIVERSE ? "global" :
			scope == RT_SCOPE_SITE ? "site" :
			scope == RT_SCOPE_LINK ? "link" :
			scope == RT_SCOPE_HOST ? "host" :
			scope == RT_SCOPE_NOWHERE ? "nowhere" : NULL;

	if (s)
		snprintf(buf, len, "%s", s);
	else
		snprintf(buf, len, "%u", scope);
}

struct addr_vec {
	struct zm_addr_info *v;
	size_t n;
	int idx;
	const char *dev;
	const struct zm_link_info *links;
	size_t nlinks;
};

struct addr_attrs {
	const void *local, *address;
	uint32_t flags;
	bool has_flags;
};

static int addr_attr(const struct nlattr *attr, void *data)
{
	struct addr_attrs *a = data;

	switch (mnl_attr_get_type(attr)) {
	case IFA_LOCAL:
		a->local = mnl_attr_get_payload(attr);
		break;
	case IFA_ADDRESS:
		a->address = mnl_attr_get_payload(attr);
		break;
	case IFA_FLAGS:
		a->flags = mnl_attr_get_u32(attr);
		a->has_flags = true;
		break;
	}
	return MNL_CB_OK;
}

static int add_info(const struct nlmsghdr *nlh, void *arg)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct addr_attrs a = { 0 };
	struct addr_vec *av = arg;
	struct zm_addr_info *info;
	char text[INET6_ADDRSTRLEN];
	size_t i;

	if (av->idx && (int)ifa->ifa_index != av->idx)
		return 0;
	if (zm_grow((void **)&av->v, av->n, sizeof(*av->v)))
		return -ENOMEM;
	mnl_attr_parse(nlh, sizeof(*ifa), addr_attr, &a);
	info = &av->v[av->n++];
	memset(info, 0, sizeof(*info));
	info->index = (int)ifa->ifa_index;
	info->family = ifa->ifa_family;
	info->flags = a.has_flags ? a.flags : ifa->ifa_flags;
	if (av->dev)
		snprintf(info->dev, sizeof(info->dev), "%s", av->dev);
	for (i = 0; i < av->nlinks; i++)
		if (av->links[i].index == info->index)
			snprintf(info->dev, sizeof(info->dev), "%s",
				 av->links[i].name);
	/* IPv6 has no IFA_LOCAL: its address is IFA_ADDRESS. */
	if ((a.local || a.address) &&
	    inet_ntop(ifa->ifa_family, a.local ? a.local : a.address, text,
		      sizeof(text)))
		snprintf(info->cidr, sizeof(info->cidr), "%s/%u", text,
			 ifa->ifa_prefixlen);
	zm_scope_name(ifa->ifa_scope, info->scope, sizeof(info->scope));
	return 0;
}

int zm_addr_dump(struct zm_ns *ns, const char *dev, struct zm_addr_info **out,
		 size_t *count)
{
	char buf[ADDR_MSG] = { 0 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct zm_link_info *links = NULL;
	struct addr_vec av = { 0 };
	struct ifaddrmsg *ifa;
	int err;

	zm_err_clear();
	*out = NULL;
	*count = 0;
	if (dev) {
		av.idx = zm_link_index(ns, dev);
		if (av.idx < 0)
			return av.idx;
	}
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_DUMP;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	/*
	 * One link's: the kernel filters (strict dumps), and its name is
	 * known; every link's need the names of all.
	 */
	ifa->ifa_index = (uint32_t)av.idx;
	av.dev = dev;
	err = dev ? 0 : zm_link_dump(ns, &links, &av.nlinks);
	av.links = links;
	if (!err)
		err = zm_nl_route(ns, nlh, add_info, &av);
	free(links);
	if (err) {
		free(av.v);
		zm_err_context("addresses of namespace %s", zm_ns_label(ns));
		return err;
	}
	*out = av.v;
	*count = av.n;
	return 0;
}
