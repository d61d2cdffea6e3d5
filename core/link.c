// SPDX-License-Identifier: MIT
#include "link.h"
#include "err.h"
#include "netns.h"
#include "nl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/link/veth.h>

int zm_link_name_valid(const char *name)
{
	size_t len;

	if (!name)
		return 0;
	len = strlen(name);
	if (len == 0 || len >= IFNAMSIZ)
		return 0;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	for (; *name; name++)
		if (*name == '/' || *name == ':' || *name <= ' ' || *name == 0x7f)
			return 0;
	return 1;
}

static int check_name(const char *name, const char *what)
{
	if (zm_link_name_valid(name))
		return 0;
	zm_err_set("invalid %s name", what);
	return -EINVAL;
}

/* Begin an operation on ns: clear errors, get its socket. */
static int begin(struct zm_ns *ns, struct nl_sock **sk)
{
	zm_err_clear();
	zm_nl_begin();
	return zm_nl_route(ns, sk);
}

static int fail(int err, const char *name, const struct zm_ns *ns)
{
	zm_err_context("link '%s' in namespace %s", name, zm_ns_label(ns));
	return err;
}

int zm_link_index(struct zm_ns *ns, const char *name)
{
	struct nl_sock *sk;
	struct rtnl_link *link = NULL;
	int err, idx;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = zm_nl_result(rtnl_link_get_kernel(sk, 0, name, &link));
	if (err)
		return fail(err, name, ns);
	idx = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	return idx;
}

static int add_link(struct nl_sock *sk, struct rtnl_link *link)
{
	return zm_nl_result(rtnl_link_add(sk, link, NLM_F_CREATE | NLM_F_EXCL));
}

int zm_link_add_veth(struct zm_ns *ns, const char *name, struct zm_ns *peer_ns,
		     const char *peer, unsigned int mtu)
{
	struct rtnl_link *link, *peer_link;
	struct nl_sock *sk;
	int err;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = check_name(name, "link");
	if (!err)
		err = check_name(peer, "peer");
	if (err)
		return fail(err, name, ns);
	link = rtnl_link_veth_alloc();
	if (!link)
		return -ENOMEM;
	peer_link = rtnl_link_veth_get_peer(link);
	rtnl_link_set_name(link, name);
	rtnl_link_set_name(peer_link, peer);
	if (mtu) {
		rtnl_link_set_mtu(link, mtu);
		rtnl_link_set_mtu(peer_link, mtu);
	}
	if (peer_ns && peer_ns != ns)
		rtnl_link_set_ns_fd(peer_link, peer_ns->fd);
	err = add_link(sk, link);
	rtnl_link_put(peer_link);
	rtnl_link_veth_release(link);
	if (err)
		return fail(err, name, ns);
	return 0;
}

int zm_link_add_bridge(struct zm_ns *ns, const char *name, unsigned int mtu)
{
	struct rtnl_link *link;
	struct nl_sock *sk;
	int err;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = check_name(name, "link");
	if (err)
		return fail(err, name, ns);
	link = rtnl_link_alloc();
	if (!link)
		return -ENOMEM;
	rtnl_link_set_name(link, name);
	err = zm_nl_result(rtnl_link_set_type(link, "bridge"));
	if (!err && mtu)
		rtnl_link_set_mtu(link, mtu);
	if (!err)
		err = add_link(sk, link);
	rtnl_link_put(link);
	if (err)
		return fail(err, name, ns);
	return 0;
}

int zm_link_add_macvlan(struct zm_ns *parent_ns, const char *parent,
			struct zm_ns *ns, const char *name, const char *mode,
			unsigned int mtu)
{
	struct rtnl_link *link;
	struct nl_sock *sk;
	int err, parent_idx, mode_id;

	zm_err_clear();
	err = check_name(name, "link");
	if (!err)
		err = check_name(parent, "parent");
	if (err)
		return fail(err, name, ns);
	mode_id = rtnl_link_macvlan_str2mode(mode ? mode : "bridge");
	if (mode_id < 0) {
		zm_err_set("unknown macvlan mode '%s'", mode);
		return fail(-EINVAL, name, ns);
	}
	parent_idx = zm_link_index(parent_ns, parent);
	if (parent_idx < 0)
		return parent_idx;
	/* Made next to its parent, born straight into ns. */
	err = begin(parent_ns, &sk);
	if (err)
		return err;
	link = rtnl_link_macvlan_alloc();
	if (!link)
		return -ENOMEM;
	rtnl_link_set_name(link, name);
	rtnl_link_set_link(link, parent_idx);
	rtnl_link_macvlan_set_mode(link, (uint32_t)mode_id);
	if (mtu)
		rtnl_link_set_mtu(link, mtu);
	if (ns != parent_ns)
		rtnl_link_set_ns_fd(link, ns->fd);
	err = add_link(sk, link);
	rtnl_link_put(link);
	if (err)
		return fail(err, name, ns);
	return 0;
}

int zm_link_set(struct zm_ns *ns, const char *name,
		const struct zm_link_change *c)
{
	struct rtnl_link *orig = NULL, *change = NULL;
	struct nl_sock *sk;
	int err, master = 0;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = check_name(name, "link");
	if (!err && (c->has & ZM_LINK_SET_NAME))
		err = check_name(c->name, "new link");
	if (!err && (c->has & ZM_LINK_SET_MASTER) && c->master)
		err = check_name(c->master, "master");
	if (err)
		return fail(err, name, ns);
	if ((c->has & ZM_LINK_SET_MASTER) && c->master) {
		master = zm_link_index(ns, c->master);
		if (master < 0)
			return master;
		zm_nl_begin();
	}
	err = zm_nl_result(rtnl_link_get_kernel(sk, 0, name, &orig));
	if (err)
		goto out;
	change = rtnl_link_alloc();
	if (!change) {
		err = -ENOMEM;
		goto out;
	}
	if (c->has & ZM_LINK_SET_UP) {
		if (c->up)
			rtnl_link_set_flags(change, IFF_UP);
		else
			rtnl_link_unset_flags(change, IFF_UP);
	}
	if (c->has & ZM_LINK_SET_MTU)
		rtnl_link_set_mtu(change, c->mtu);
	if (c->has & ZM_LINK_SET_MASTER)
		rtnl_link_set_master(change, master);
	if (c->has & ZM_LINK_SET_NETNS)
		rtnl_link_set_ns_fd(change, c->netns->fd);
	if (c->has & ZM_LINK_SET_NAME)
		rtnl_link_set_name(change, c->name);
	err = zm_nl_result(rtnl_link_change(sk, orig, change, 0));
out:
	if (change)
		rtnl_link_put(change);
	if (orig)
		rtnl_link_put(orig);
	if (err)
		return fail(err, name, ns);
	return 0;
}

int zm_link_delete(struct zm_ns *ns, const char *name)
{
	struct rtnl_link *link;
	struct nl_sock *sk;
	int err;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = check_name(name, "link");
	if (err)
		return fail(err, name, ns);
	link = rtnl_link_alloc();
	if (!link)
		return -ENOMEM;
	rtnl_link_set_name(link, name);
	err = zm_nl_result(rtnl_link_delete(sk, link));
	rtnl_link_put(link);
	if (err)
		return fail(err, name, ns);
	return 0;
}

static void fill_info(struct rtnl_link *link, struct zm_link_info *info)
{
	struct nl_addr *addr;
	const char *kind = rtnl_link_get_type(link);
	int32_t nsid = -1;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s",
		 rtnl_link_get_name(link) ? rtnl_link_get_name(link) : "");
	snprintf(info->kind, sizeof(info->kind), "%s", kind ? kind : "");
	info->index = rtnl_link_get_ifindex(link);
	info->master = rtnl_link_get_master(link);
	info->link = rtnl_link_get_link(link);
	info->link_netnsid = rtnl_link_get_link_netnsid(link, &nsid) ? -1 : nsid;
	info->mtu = rtnl_link_get_mtu(link);
	info->flags = rtnl_link_get_flags(link);
	rtnl_link_operstate2str(rtnl_link_get_operstate(link), info->operstate,
				sizeof(info->operstate));
	addr = rtnl_link_get_addr(link);
	if (addr && nl_addr_get_len(addr))
		nl_addr2str(addr, info->mac, sizeof(info->mac));
	/* Without a peer attribute, IFLA_LINK of a top-level link is itself. */
	if (info->link == info->index)
		info->link = 0;
}

int zm_link_get(struct zm_ns *ns, const char *name, struct zm_link_info *out)
{
	struct rtnl_link *link = NULL;
	struct nl_sock *sk;
	int err;

	err = begin(ns, &sk);
	if (err)
		return err;
	err = check_name(name, "link");
	if (err)
		return fail(err, name, ns);
	err = zm_nl_result(rtnl_link_get_kernel(sk, 0, name, &link));
	if (err)
		return fail(err, name, ns);
	fill_info(link, out);
	rtnl_link_put(link);
	return 0;
}

int zm_link_dump(struct zm_ns *ns, struct zm_link_info **out, size_t *count)
{
	struct nl_cache *cache = NULL;
	struct nl_object *obj;
	struct zm_link_info *v;
	struct nl_sock *sk;
	size_t n = 0;
	int err;

	*out = NULL;
	*count = 0;
	err = begin(ns, &sk);
	if (err)
		return err;
	err = zm_nl_result(rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache));
	if (err) {
		zm_err_context("links of namespace %s", zm_ns_label(ns));
		return err;
	}
	v = calloc((size_t)nl_cache_nitems(cache) + 1, sizeof(*v));
	if (!v) {
		nl_cache_free(cache);
		return -ENOMEM;
	}
	for (obj = nl_cache_get_first(cache); obj; obj = nl_cache_get_next(obj))
		fill_info((struct rtnl_link *)obj, &v[n++]);
	nl_cache_free(cache);
	*out = v;
	*count = n;
	return 0;
}
