// SPDX-License-Identifier: MIT
/* Links over rtnetlink: each verb builds its message, nl.c sends it. */
#include "link.h"
#include "err.h"
#include "netns.h"
#include "nl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

/* Every link message fits: a name, a few numbers, two nests. */
#define LINK_MSG 1024

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

static int fail(int err, const char *name, const struct zm_ns *ns)
{
	zm_err_context("link '%s' in namespace %s", name, zm_ns_label(ns));
	return err;
}

/* RTM_*LINK for the link INDEX or NAME; the ifinfomsg is returned. */
static struct ifinfomsg *link_msg(char *buf, uint16_t type, uint16_t flags,
				  int index, const char *name)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_index = index;
	if (name)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	return ifi;
}

static int linkinfo_attr(const struct nlattr *attr, void *data)
{
	struct zm_link_info *info = data;

	if (mnl_attr_get_type(attr) == IFLA_INFO_KIND)
		snprintf(info->kind, sizeof(info->kind), "%s",
			 mnl_attr_get_str(attr));
	return MNL_CB_OK;
}

static int link_attr(const struct nlattr *attr, void *data)
{
	static const char *const operstates[] = {
		"unknown", "notpresent", "down", "lowerlayerdown", "testing",
		"dormant", "up",
	};
	struct zm_link_info *info = data;
	const uint8_t *mac;
	uint16_t i, len;
	size_t o = 0;
	uint8_t op;

	switch (mnl_attr_get_type(attr)) {
	case IFLA_IFNAME:
		snprintf(info->name, sizeof(info->name), "%s",
			 mnl_attr_get_str(attr));
		break;
	case IFLA_MTU:
		info->mtu = mnl_attr_get_u32(attr);
		break;
	case IFLA_MASTER:
		info->master = (int)mnl_attr_get_u32(attr);
		break;
	case IFLA_LINK:
		info->link = (int)mnl_attr_get_u32(attr);
		break;
	case IFLA_LINK_NETNSID:
		info->link_netnsid = (int)mnl_attr_get_u32(attr);
		break;
	case IFLA_OPERSTATE:
		op = mnl_attr_get_u8(attr);
		snprintf(info->operstate, sizeof(info->operstate), "%s",
			 op < sizeof(operstates) / sizeof(*operstates) ?
			 operstates[op] : "unknown");
		break;
	case IFLA_ADDRESS:
		mac = mnl_attr_get_payload(attr);
		len = mnl_attr_get_payload_len(attr);
		for (i = 0; i < len && o + 3 < sizeof(info->mac); i++)
			o += (size_t)snprintf(info->mac + o,
					      sizeof(info->mac) - o, "%s%02x",
					      i ? ":" : "", mac[i]);
		break;
	case IFLA_LINKINFO:
		mnl_attr_parse_nested(attr, linkinfo_attr, data);
		break;
	}
	return MNL_CB_OK;
}

static int on_link(const struct nlmsghdr *nlh, void *arg)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	struct zm_link_info *info = arg;

	memset(info, 0, sizeof(*info));
	info->index = ifi->ifi_index;
	info->flags = ifi->ifi_flags;
	info->link_netnsid = -1;
	snprintf(info->operstate, sizeof(info->operstate), "unknown");
	mnl_attr_parse(nlh, sizeof(*ifi), link_attr, info);
	/* Without a peer attribute, IFLA_LINK of a top-level link is itself. */
	if (info->link == info->index)
		info->link = 0;
	return 0;
}

int zm_link_get(struct zm_ns *ns, const char *name, struct zm_link_info *out)
{
	char buf[LINK_MSG] = { 0 };
	int err;

	zm_err_clear();
	err = check_name(name, "link");
	if (!err) {
		out->index = 0;
		link_msg(buf, RTM_GETLINK, 0, 0, name);
		err = zm_nl_route(ns, (void *)buf, on_link, out);
	}
	if (!err && !out->index)
		err = -ENODEV;
	return err ? fail(err, name, ns) : 0;
}

int zm_link_index(struct zm_ns *ns, const char *name)
{
	struct zm_link_info info;
	int err = zm_link_get(ns, name, &info);

	return err ? err : info.index;
}

struct link_vec {
	struct zm_link_info *v;
	size_t n;
};

static int add_info(const struct nlmsghdr *nlh, void *arg)
{
	struct link_vec *lv = arg;

	if (zm_grow((void **)&lv->v, lv->n, sizeof(*lv->v)))
		return -ENOMEM;
	return on_link(nlh, &lv->v[lv->n++]);
}

int zm_link_dump(struct zm_ns *ns, struct zm_link_info **out, size_t *count)
{
	char buf[LINK_MSG] = { 0 };
	struct link_vec lv = { 0 };
	int err;

	zm_err_clear();
	link_msg(buf, RTM_GETLINK, NLM_F_DUMP, 0, NULL);
	err = zm_nl_route(ns, (void *)buf, add_info, &lv);
	if (err) {
		free(lv.v);
		zm_err_context("links of namespace %s", zm_ns_label(ns));
		return err;
	}
	*out = lv.v;
	*count = lv.n;
	return 0;
}

/* The link data of kind L->kind: a veth's peer, a macvlan's mode. */
static void put_info_data(struct nlmsghdr *nlh, const struct zm_link_new *l,
			  const struct zm_ns *home)
{
	struct nlattr *data, *peer;
	struct ifinfomsg ifi = { 0 };

	if (!l->peer && !l->macvlan_mode)
		return;
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	if (l->macvlan_mode)
		mnl_attr_put_u32(nlh, IFLA_MACVLAN_MODE, l->macvlan_mode);
	if (l->peer) {
		peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
		/* The peer is a link request: its header, then attributes. */
		memcpy(mnl_nlmsg_get_payload_tail(nlh), &ifi, sizeof(ifi));
		nlh->nlmsg_len += MNL_ALIGN(sizeof(ifi));
		mnl_attr_put_strz(nlh, IFLA_IFNAME, l->peer);
		if (l->mtu)
			mnl_attr_put_u32(nlh, IFLA_MTU, l->mtu);
		if (l->peer_ns && l->peer_ns != home)
			mnl_attr_put_u32(nlh, IFLA_NET_NS_FD,
					 (uint32_t)l->peer_ns->fd);
		mnl_attr_nest_end(nlh, peer);
	}
	mnl_attr_nest_end(nlh, data);
}

int zm_link_add(struct zm_ns *ns, const struct zm_link_new *l)
{
	struct zm_ns *home = l->netns ? l->netns : ns;
	char buf[LINK_MSG] = { 0 };
	struct nlmsghdr *nlh = (void *)buf;
	struct nlattr *info;
	int err, parent = 0;

	zm_err_clear();
	err = check_name(l->name, "link");
	if (!err && l->peer)
		err = check_name(l->peer, "peer");
	if (!err && l->parent)
		err = check_name(l->parent, "parent");
	if (err)
		return fail(err, l->name ? l->name : "", home);
	if (l->parent) {
		parent = zm_link_index(ns, l->parent);
		if (parent < 0)
			return parent;
		zm_err_clear();
	}
	link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, l->name);
	if (l->mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, l->mtu);
	if (parent)
		mnl_attr_put_u32(nlh, IFLA_LINK, (uint32_t)parent);
	/* Born straight into its namespace, next to what it hangs on. */
	if (home != ns)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)home->fd);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, l->kind);
	put_info_data(nlh, l, home);
	mnl_attr_nest_end(nlh, info);
	err = zm_nl_route(ns, nlh, NULL, NULL);
	return err ? fail(err, l->name, home) : 0;
}

int zm_link_set(struct zm_ns *ns, const char *name,
		const struct zm_link_change *c)
{
	char buf[LINK_MSG] = { 0 };
	struct nlmsghdr *nlh = (void *)buf;
	struct ifinfomsg *ifi;
	int err, index, master = 0;

	zm_err_clear();
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
	}
	index = zm_link_index(ns, name);
	if (index < 0)
		return index;
	zm_err_clear();
	ifi = link_msg(buf, RTM_NEWLINK, 0, index,
		       (c->has & ZM_LINK_SET_NAME) ? c->name : NULL);
	if (c->has & ZM_LINK_SET_UP) {
		ifi->ifi_change = IFF_UP;
		ifi->ifi_flags = c->up ? IFF_UP : 0;
	}
	if (c->has & ZM_LINK_SET_MTU)
		mnl_attr_put_u32(nlh, IFLA_MTU, c->mtu);
	if (c->has & ZM_LINK_SET_MASTER)
		mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	if (c->has & ZM_LINK_SET_NETNS)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)c->netns->fd);
	err = zm_nl_route(ns, nlh, NULL, NULL);
	return err ? fail(err, name, ns) : 0;
}

int zm_link_delete(struct zm_ns *ns, const char *name)
{
	char buf[LINK_MSG] = { 0 };
	int err;

	zm_err_clear();
	err = check_name(name, "link");
	if (!err) {
		link_msg(buf, RTM_DELLINK, 0, 0, name);
		err = zm_nl_route(ns, (void *)buf, NULL, NULL);
	}
	return err ? fail(err, name, ns) : 0;
}
