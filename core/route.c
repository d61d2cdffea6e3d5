// SPDX-License-Identifier: MIT
#include "route.h"
#include "err.h"
#include "ip.h"
#include "link.h"
#include "netns.h"
#include "nl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>

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

static int build(struct zm_ns *ns, const struct zm_route_spec *s,
		 struct rtnl_route **out)
{
	struct rtnl_nexthop *nh = NULL;
	struct rtnl_route *route = NULL;
	struct nl_addr *dst = NULL, *gw = NULL;
	struct zm_cidr d, g;
	int err, idx = 0;

	zm_err_clear();
	err = parse_dst(s->dst, s->family, &d);
	if (err)
		return err;
	if (s->via) {
		err = zm_ip_parse(s->via, &g);
		if (err)
			return err;
		if (g.family != d.family) {
			zm_err_set("gateway %s is not of the destination's family",
				   s->via);
			return -EINVAL;
		}
	}
	if (s->dev) {
		if (!zm_link_name_valid(s->dev)) {
			zm_err_set("invalid link name");
			return -EINVAL;
		}
		idx = zm_link_index(ns, s->dev);
		if (idx < 0)
			return idx;
	}
	if (!s->via && !s->dev) {
		zm_err_set("a route needs 'via' or 'dev'");
		return -EINVAL;
	}
	zm_err_clear();
	zm_nl_begin();
	err = -ENOMEM;
	route = rtnl_route_alloc();
	dst = nl_addr_build(d.family, d.addr, zm_ip_len(d.family));
	if (!route || !dst)
		goto fail;
	nl_addr_set_prefixlen(dst, (int)d.prefix);
	rtnl_route_set_family(route, (uint8_t)d.family);
	err = zm_nl_result(rtnl_route_set_dst(route, dst));
	if (err)
		goto fail;
	rtnl_route_set_table(route, s->table ? s->table : RT_TABLE_MAIN);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_type(route, RTN_UNICAST);
	if (s->metric)
		rtnl_route_set_priority(route, s->metric);
	err = -ENOMEM;
	nh = rtnl_route_nh_alloc();
	if (!nh)
		goto fail;
	if (idx)
		rtnl_route_nh_set_ifindex(nh, idx);
	if (s->via) {
		gw = nl_addr_build(g.family, g.addr, zm_ip_len(g.family));
		if (!gw)
			goto fail;
		rtnl_route_nh_set_gateway(nh, gw);
		nl_addr_put(gw);
	}
	rtnl_route_set_scope(route, s->via ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	rtnl_route_add_nexthop(route, nh);
	nl_addr_put(dst);
	*out = route;
	return 0;
fail:
	rtnl_route_nh_free(nh);
	nl_addr_put(dst);
	rtnl_route_put(route);
	return err;
}

int zm_route_add(struct zm_ns *ns, const struct zm_route_spec *s)
{
	struct rtnl_route *route;
	struct nl_sock *sk;
	int err;

	err = build(ns, s, &route);
	if (err)
		return fail(err, s, ns);
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_route_add(sk, route,
						  s->replace ? NLM_F_REPLACE :
							       NLM_F_EXCL));
	rtnl_route_put(route);
	if (err)
		return fail(err, s, ns);
	return 0;
}

int zm_route_delete(struct zm_ns *ns, const struct zm_route_spec *s)
{
	struct rtnl_route *route;
	struct nl_sock *sk;
	int err;

	err = build(ns, s, &route);
	if (err)
		return fail(err, s, ns);
	/* The kernel matches what is given; a scope would narrow it wrongly. */
	rtnl_route_set_scope(route, RT_SCOPE_NOWHERE);
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_route_delete(sk, route, 0));
	rtnl_route_put(route);
	if (err)
		return fail(err, s, ns);
	return 0;
}

static void addr_text(struct nl_addr *a, char *buf, size_t len, bool prefix)
{
	char tmp[INET6_ADDRSTRLEN + 8];

	nl_addr2str(a, tmp, sizeof(tmp));
	tmp[strcspn(tmp, "/")] = '\0';
	if (prefix)
		snprintf(buf, len, "%s/%u", tmp, nl_addr_get_prefixlen(a));
	else
		snprintf(buf, len, "%s", tmp);
}

static void fill_info(struct rtnl_route *r, struct nl_cache *links,
		      struct zm_route_info *info)
{
	struct nl_addr *dst = rtnl_route_get_dst(r);
	struct rtnl_nexthop *nh;

	memset(info, 0, sizeof(*info));
	info->family = rtnl_route_get_family(r);
	info->metric = rtnl_route_get_priority(r);
	info->table = rtnl_route_get_table(r);
	if (!dst || nl_addr_get_prefixlen(dst) == 0)
		snprintf(info->dst, sizeof(info->dst), "default");
	else
		addr_text(dst, info->dst, sizeof(info->dst), true);
	rtnl_route_proto2str(rtnl_route_get_protocol(r), info->protocol,
			     sizeof(info->protocol));
	rtnl_scope2str(rtnl_route_get_scope(r), info->scope,
		       sizeof(info->scope));
	nl_rtntype2str(rtnl_route_get_type(r), info->type, sizeof(info->type));
	if (rtnl_route_get_nnexthops(r) < 1)
		return;
	nh = rtnl_route_nexthop_n(r, 0);
	if (rtnl_route_nh_get_gateway(nh))
		addr_text(rtnl_route_nh_get_gateway(nh), info->via,
			  sizeof(info->via), false);
	rtnl_link_i2name(links, rtnl_route_nh_get_ifindex(nh), info->dev,
			 sizeof(info->dev));
}

int zm_route_dump(struct zm_ns *ns, int family, unsigned int table,
		  struct zm_route_info **out, size_t *count)
{
	struct nl_cache *cache = NULL, *links = NULL;
	struct nl_object *obj;
	struct zm_route_info *v;
	struct nl_sock *sk;
	size_t n = 0;
	int err;

	zm_err_clear();
	zm_nl_begin();
	*out = NULL;
	*count = 0;
	if (!table)
		table = RT_TABLE_MAIN;
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_link_alloc_cache(sk, AF_UNSPEC, &links));
	if (!err)
		err = zm_nl_result(rtnl_route_alloc_cache(sk, family, 0, &cache));
	if (err)
		goto out;
	v = calloc((size_t)nl_cache_nitems(cache) + 1, sizeof(*v));
	if (!v) {
		err = -ENOMEM;
		goto out;
	}
	for (obj = nl_cache_get_first(cache); obj; obj = nl_cache_get_next(obj)) {
		struct rtnl_route *r = (struct rtnl_route *)obj;

		if (rtnl_route_get_table(r) != table)
			continue;
		if (rtnl_route_get_type(r) != RTN_UNICAST)
			continue;
		fill_info(r, links, &v[n++]);
	}
	*out = v;
	*count = n;
out:
	if (cache)
		nl_cache_free(cache);
	if (links)
		nl_cache_free(links);
	if (err)
		zm_err_context("routes of namespace %s", zm_ns_label(ns));
	return err;
}
