// SPDX-License-Identifier: MIT
/* IPv4 and IPv6 routes over rtnetlink. */
#include "route.h"
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
#include <linux/rtnetlink.h>

#define ROUTE_MSG 256

static int fail(int err, const struct zm_route_spec *s, const struct zm_ns *ns)
{
	zm_err_context("route %s in namespace %s", s->dst ? s->dst : "?",
		       zm_ns_label(ns));
	return err;
}

/* "default" has no family of its own: the caller says which. */
static int parse_dst(const char *dst, int family, struct zm_cidr *c)
{
	int err;

	if (!dst) {
		zm_err_set("destination missing");
		return -EINVAL;
	}
	if (!strcmp(dst, "default")) {
		if (family != AF_INET && family != AF_INET6) {
			zm_err_set("a default route needs its family");
			return -EINVAL;
		}
		memset(c, 0, sizeof(*c));
		c->family = family;
		return 0;
	}
	err = zm_cidr_parse(dst, c);
	if (err)
		return err;
	if (family && c->family != family) {
		zm_err_set("%s is not of the route's family", dst);
		return -EINVAL;
	}
	if (!c->has_prefix)
		c->prefix = zm_ip_len(c->family) * 8;
	return 0;
}

/*
 * RTM_NEWROUTE (FLAGS) or RTM_DELROUTE for spec S, sent: a static unicast
 * route in its table, by a gateway and/or a link.
 */
static int change(struct zm_ns *ns, const struct zm_route_spec *s,
		  uint16_t type, uint16_t flags)
{
	char buf[ROUTE_MSG] = { 0 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	unsigned int table = s->table ? s->table : RT_TABLE_MAIN;
	struct zm_cidr d, g;
	struct rtmsg *rtm;
	int err, idx = 0;

	zm_err_clear();
	err = parse_dst(s->dst, s->family, &d);
	if (!err && s->via) {
		err = zm_ip_parse(s->via, &g);
		if (!err && g.family != d.family) {
			zm_err_set("gateway %s is not of the destination's family",
				   s->via);
			err = -EINVAL;
		}
	}
	if (!err && s->dev && !zm_link_name_valid(s->dev)) {
		zm_err_set("invalid link name");
		err = -EINVAL;
	}
	if (!err && !s->via && !s->dev) {
		zm_err_set("a route needs 'via' or 'dev'");
		err = -EINVAL;
	}
	if (!err && s->dev) {
		idx = zm_link_index(ns, s->dev);
		err = idx < 0 ? idx : 0;
	}
	if (err)
		return fail(err, s, ns);
	zm_err_clear();
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)d.family;
	rtm->rtm_dst_len = (uint8_t)d.prefix;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_type = RTN_UNICAST;
	/* A delete matches what is given; a scope would narrow it wrongly. */
	rtm->rtm_scope = type == RTM_DELROUTE ? RT_SCOPE_NOWHERE :
			 s->via ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	if (d.prefix)
		mnl_attr_put(nlh, RTA_DST, zm_ip_len(d.family), d.addr);
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	if (s->metric)
		mnl_attr_put_u32(nlh, RTA_PRIORITY, s->metric);
	if (idx)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)idx);
	if (s->via)
		mnl_attr_put(nlh, RTA_GATEWAY, zm_ip_len(g.family), g.addr);
	err = zm_nl_route(ns, nlh, NULL, NULL);
	return err ? fail(err, s, ns) : 0;
}

int zm_route_add(struct zm_ns *ns, const struct zm_route_spec *s)
{
	return change(ns, s, RTM_NEWROUTE, NLM_F_CREATE |
		      (s->replace ? NLM_F_REPLACE : NLM_F_EXCL));
}

int zm_route_delete(struct zm_ns *ns, const struct zm_route_spec *s)
{
	return change(ns, s, RTM_DELROUTE, 0);
}

struct route_vec {
	struct zm_route_info *v;
	size_t n;
	unsigned int table;
	const struct zm_link_info *links;
	size_t nlinks;
};

struct route_attrs {
	const void *dst, *gw;
	uint32_t table, metric;
	int oif;
};

static int nexthop_attr(const struct nlattr *attr, void *data)
{
	struct route_attrs *a = data;

	if (mnl_attr_get_type(attr) == RTA_GATEWAY)
		a->gw = mnl_attr_get_payload(attr);
	return MNL_CB_OK;
}

static int route_attr(const struct nlattr *attr, void *data)
{
	struct route_attrs *a = data;
	const struct rtnexthop *nh;

	switch (mnl_attr_get_type(attr)) {
	case RTA_DST:
		a->dst = mnl_attr_get_payload(attr);
		break;
	case RTA_GATEWAY:
		a->gw = mnl_attr_get_payload(attr);
		break;
	case RTA_OIF:
		a->oif = (int)mnl_attr_get_u32(attr);
		break;
	case RTA_PRIORITY:
		a->metric = mnl_attr_get_u32(attr);
		break;
	case RTA_TABLE:
		a->table = mnl_attr_get_u32(attr);
		break;
	case RTA_MULTIPATH:
		/* The first path stands for the route, as libnl showed it. */
		nh = mnl_attr_get_payload(attr);
		if (mnl_attr_get_payload_len(attr) < sizeof(*nh) ||
		    nh->rtnh_len < sizeof(*nh) || a->oif)
			break;
		a->oif = nh->rtnh_ifindex;
		mnl_attr_parse_payload(RTNH_DATA(nh),
				       nh->rtnh_len - sizeof(*nh), nexthop_attr,
				       a);
		break;
	}
	return MNL_CB_OK;
}

static const char *protocol_name(uint8_t p)
{
	static const char *const names[] = { "unspec", "redirect", "kernel",
					     "boot", "static" };

	return p < sizeof(names) / sizeof(*names) ? names[p] :
	       p == RTPROT_RA ? "ra" : p == RTPROT_DHCP ? "dhcp" : NULL;
}

static int add_info(const struct nlmsghdr *nlh, void *arg)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	struct route_attrs a = { .table = rtm->rtm_table };
	struct route_vec *rv = arg;
	struct zm_route_info *info;
	char text[INET6_ADDRSTRLEN];
	size_t i;

	mnl_attr_parse(nlh, sizeof(*rtm), route_attr, &a);
	if (a.table != rv->table || rtm->rtm_type != RTN_UNICAST)
		return 0;
	if (zm_grow((void **)&rv->v, rv->n, sizeof(*rv->v)))
		return -ENOMEM;
	info = &rv->v[rv->n++];
	memset(info, 0, sizeof(*info));
	info->family = rtm->rtm_family;
	info->metric = a.metric;
	info->table = a.table;
	snprintf(info->type, sizeof(info->type), "unicast");
	if (!rtm->rtm_dst_len || !a.dst ||
	    !inet_ntop(rtm->rtm_family, a.dst, text, sizeof(text)))
		snprintf(info->dst, sizeof(info->dst), "default");
	else
		snprintf(info->dst, sizeof(info->dst), "%s/%u", text,
			 rtm->rtm_dst_len);
	if (a.gw && inet_ntop(rtm->rtm_family, a.gw, text, sizeof(text)))
		snprintf(info->via, sizeof(info->via), "%s", text);
	if (protocol_name(rtm->rtm_protocol))
		snprintf(info->protocol, sizeof(info->protocol), "%s",
			 protocol_name(rtm->rtm_protocol));
	else
		snprintf(info->protocol, sizeof(info->protocol), "%u",
			 rtm->rtm_protocol);
	zm_scope_name(rtm->rtm_scope, info->scope, sizeof(info->scope));
	for (i = 0; i < rv->nlinks; i++)
		if (rv->links[i].index == a.oif)
			snprintf(info->dev, sizeof(info->dev), "%s",
				 rv->links[i].name);
	return 0;
}

int zm_route_dump(struct zm_ns *ns, int family, unsigned int table,
		  struct zm_route_info **out, size_t *count)
{
	char buf[ROUTE_MSG] = { 0 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct route_vec rv = { .table = table ? table : RT_TABLE_MAIN };
	struct zm_link_info *links = NULL;
	struct rtmsg *rtm;
	int err;

	zm_err_clear();
	*out = NULL;
	*count = 0;
	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_DUMP;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	err = zm_link_dump(ns, &links, &rv.nlinks);
	rv.links = links;
	if (!err)
		err = zm_nl_route(ns, nlh, add_info, &rv);
	free(links);
	if (err) {
		free(rv.v);
		zm_err_context("routes of namespace %s", zm_ns_label(ns));
		return err;
	}
	*out = rv.v;
	*count = rv.n;
	return 0;
}
