// SPDX-License-Identifier: MIT
#include "addr.h"
#include "err.h"
#include "ip.h"
#include "link.h"
#include "netns.h"
#include "nl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/if_addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/rtnl.h>

static int fail(int err, const char *cidr, const char *dev,
		const struct zm_ns *ns)
{
	zm_err_context("address %s on '%s' in namespace %s", cidr, dev,
		       zm_ns_label(ns));
	return err;
}

/* An rtnl_addr for CIDR on DEV, ready to send. */
static int build(struct zm_ns *ns, const char *dev, const char *cidr,
		 struct rtnl_addr **out)
{
	struct zm_cidr c;
	struct nl_addr *local;
	struct rtnl_addr *addr;
	int err, idx;

	zm_err_clear();
	if (!zm_link_name_valid(dev)) {
		zm_err_set("invalid link name");
		return -EINVAL;
	}
	err = zm_cidr_parse(cidr, &c);
	if (err)
		return err;
	idx = zm_link_index(ns, dev);
	if (idx < 0)
		return idx;
	zm_err_clear();
	zm_nl_begin();
	local = nl_addr_build(c.family, c.addr, zm_ip_len(c.family));
	addr = rtnl_addr_alloc();
	if (!local || !addr) {
		nl_addr_put(local);
		rtnl_addr_put(addr);
		return -ENOMEM;
	}
	nl_addr_set_prefixlen(local, (int)c.prefix);
	rtnl_addr_set_ifindex(addr, idx);
	rtnl_addr_set_family(addr, c.family);
	err = zm_nl_result(rtnl_addr_set_local(addr, local));
	nl_addr_put(local);
	if (err) {
		rtnl_addr_put(addr);
		return err;
	}
	rtnl_addr_set_prefixlen(addr, (int)c.prefix);
	*out = addr;
	return 0;
}

int zm_addr_add(struct zm_ns *ns, const char *dev, const char *cidr,
		const struct zm_addr_opts *opts)
{
	struct rtnl_addr *addr;
	struct nl_sock *sk;
	int err;

	err = build(ns, dev, cidr, &addr);
	if (err)
		return fail(err, cidr, dev, ns);
	if (opts && opts->nodad)
		rtnl_addr_set_flags(addr, IFA_F_NODAD);
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_addr_add(sk, addr,
						 opts && opts->replace ?
						 NLM_F_REPLACE : NLM_F_EXCL));
	rtnl_addr_put(addr);
	if (err)
		return fail(err, cidr, dev, ns);
	return 0;
}

int zm_addr_delete(struct zm_ns *ns, const char *dev, const char *cidr)
{
	struct rtnl_addr *addr;
	struct nl_sock *sk;
	int err;

	err = build(ns, dev, cidr, &addr);
	if (err)
		return fail(err, cidr, dev, ns);
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_addr_delete(sk, addr, 0));
	rtnl_addr_put(addr);
	if (err)
		return fail(err, cidr, dev, ns);
	return 0;
}

static void fill_info(struct rtnl_addr *a, struct nl_cache *links,
		      struct zm_addr_info *info)
{
	struct nl_addr *local = rtnl_addr_get_local(a);

	memset(info, 0, sizeof(*info));
	info->index = rtnl_addr_get_ifindex(a);
	info->family = rtnl_addr_get_family(a);
	info->flags = rtnl_addr_get_flags(a);
	rtnl_link_i2name(links, info->index, info->dev, sizeof(info->dev));
	if (local) {
		char buf[INET6_ADDRSTRLEN];

		/* nl_addr2str drops "/32": print address and prefix ourselves. */
		nl_addr2str(local, buf, sizeof(buf));
		buf[strcspn(buf, "/")] = '\0';
		snprintf(info->cidr, sizeof(info->cidr), "%s/%d", buf,
			 rtnl_addr_get_prefixlen(a));
	}
	rtnl_scope2str(rtnl_addr_get_scope(a), info->scope,
		       sizeof(info->scope));
}

int zm_addr_dump(struct zm_ns *ns, const char *dev, struct zm_addr_info **out,
		 size_t *count)
{
	struct nl_cache *cache = NULL, *links = NULL;
	struct nl_object *obj;
	struct zm_addr_info *v;
	struct nl_sock *sk;
	size_t n = 0;
	int err, idx = 0;

	zm_err_clear();
	*out = NULL;
	*count = 0;
	if (dev) {
		idx = zm_link_index(ns, dev);
		if (idx < 0)
			return idx;
	}
	zm_nl_begin();
	err = zm_nl_route(ns, &sk);
	if (!err)
		err = zm_nl_result(rtnl_link_alloc_cache(sk, AF_UNSPEC, &links));
	if (!err)
		err = zm_nl_result(rtnl_addr_alloc_cache(sk, &cache));
	if (err)
		goto out;
	v = calloc((size_t)nl_cache_nitems(cache) + 1, sizeof(*v));
	if (!v) {
		err = -ENOMEM;
		goto out;
	}
	for (obj = nl_cache_get_first(cache); obj; obj = nl_cache_get_next(obj)) {
		struct rtnl_addr *a = (struct rtnl_addr *)obj;

		if (idx && rtnl_addr_get_ifindex(a) != idx)
			continue;
		fill_info(a, links, &v[n++]);
	}
	*out = v;
	*count = n;
out:
	if (cache)
		nl_cache_free(cache);
	if (links)
		nl_cache_free(links);
	if (err)
		zm_err_context("addresses of namespace %s", zm_ns_label(ns));
	return err;
}
