// SPDX-License-Identifier: MIT
/*
 * The kernel WireGuard backend.
 *
 * The link is made with rtnetlink (kind "wireguard") through the birth
 * namespace's libnl socket, with IFLA_NET_NS_FD naming the target: the
 * kernel keeps the birth namespace as the one that owns the UDP socket and
 * puts the interface in the target. Configuration and read-back go over
 * generic netlink (libmnl) on a socket made inside the namespace that holds
 * the interface, where the "wireguard" family is resolved (which also loads
 * the module on demand).
 *
 * Large writes are split like wireguard-tools' kernel_set_device: only the
 * first message carries the device attributes and REPLACE_PEERS; a peer
 * that does not fit is continued in the next message by its public key
 * with the rest of its allowed IPs. The whole request is checked before
 * the first message goes out, so bad input changes nothing; a refusal by
 * the kernel part-way leaves the earlier parts applied (as with wg), and
 * the error names the peer or the part. Reads drain the whole dump,
 * restart it when the device changed under it, and merge a peer that the
 * kernel split across messages.
 *
 * Every buffer that may hold a private or preshared key is sodium memory,
 * wiped when freed.
 */
#include "wg_backend.h"
#include "err.h"
#include "link.h"
#include "netns.h"
#include "nl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/time_types.h>
#include <linux/wireguard.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sodium.h>

/*
 * One SET message at most; wireguard-tools uses the same size, which every
 * kernel accepts (the limit is the socket's send buffer).
 */
#define SET_MSG_SIZE 8192
/* Dump parts are at most 32 KiB (the kernel's netlink dump allocation). */
#define RECV_SIZE 32768
/* A peer that changed under a dump makes the dump restart; give up then. */
#define DUMP_TRIES 10
/* The smallest peer entry: its nest and public key. */
#define PEER_MIN_LEN (2 * sizeof(struct nlattr) + ZM_KEY_LEN)
#define MAX_PEERS_PER_MSG (SET_MSG_SIZE / PEER_MIN_LEN + 1)

static const uint8_t zero_key[ZM_KEY_LEN];

/* A generic netlink socket inside one namespace, with its family. */
struct genl {
	struct mnl_socket *nl;
	unsigned int portid;
	unsigned int seq;
	uint16_t family;
	char *sbuf;		/* SET_MSG_SIZE, sodium memory */
	char *rbuf;		/* RECV_SIZE, sodium memory */
};

/* What one exchange brought back. */
struct reply {
	int kernel_err;		/* positive errno the kernel answered */
	int parse_err;		/* negative errno of our own parsing */
	uint32_t bad_offset;	/* NLMSGERR_ATTR_OFFS, 0 if none */
	bool interrupted;	/* the dump changed while it ran */
	int (*parse)(const struct nlmsghdr *nlh, void *arg);
	void *arg;
};

/* ------------------------------------------------------------------ */
/* Replies, with the kernel's extended ack */

/* Keep the kernel's text and the offset of the attribute at fault. */
static void note_ack(struct reply *r, const struct zm_nl_ack *ack)
{
	if (ack->msg)
		zm_err_set("%s", ack->msg);
	if (ack->has_offs)
		r->bad_offset = ack->offs;
}

static int on_error(const struct nlmsghdr *nlh, void *data)
{
	struct reply *r = data;
	struct zm_nl_ack ack;

	if (zm_nl_parse_ack(nlh, &ack)) {
		r->parse_err = -EBADMSG;
		return MNL_CB_ERROR;
	}
	if (ack.error == 0)
		return MNL_CB_STOP;	/* the ack */
	note_ack(r, &ack);
	r->kernel_err = ack.error;
	return MNL_CB_ERROR;
}

/* The end of a dump; it may carry the error that cut it short. */
static int on_done(const struct nlmsghdr *nlh, void *data)
{
	struct reply *r = data;
	struct zm_nl_ack ack;
	int err;

	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		r->interrupted = true;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(int))
		return MNL_CB_STOP;
	memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
	if (err >= 0)
		return MNL_CB_STOP;
	memset(&ack, 0, sizeof(ack));
	zm_nl_parse_ack_tlvs(nlh, sizeof(int), &ack);
	note_ack(r, &ack);
	r->kernel_err = -err;
	return MNL_CB_ERROR;
}

static int on_noop(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(void)data;
	return MNL_CB_OK;
}

static int on_data(const struct nlmsghdr *nlh, void *data)
{
	struct reply *r = data;
	int err;

	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		r->interrupted = true;
	/* Read on to the end of an interrupted dump, then start again. */
	if (r->interrupted || !r->parse)
		return MNL_CB_OK;
	err = r->parse(nlh, r->arg);
	if (err) {
		r->parse_err = err;
		return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
}

static mnl_cb_t ctl_cbs[NLMSG_MIN_TYPE] = {
	[NLMSG_NOOP] = on_noop,
	[NLMSG_ERROR] = on_error,
	[NLMSG_DONE] = on_done,
	[NLMSG_OVERRUN] = on_noop,
};

/* Send NLH and read until its ack, the dump's end, or an error. */
static int genl_talk(struct genl *g, const struct nlmsghdr *nlh,
		     struct reply *r)
{
	ssize_t n;
	int ret;

	if (mnl_socket_sendto(g->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		n = mnl_socket_recvfrom(g->nl, g->rbuf, RECV_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		errno = 0;
		ret = mnl_cb_run2(g->rbuf, (size_t)n, nlh->nlmsg_seq, g->portid,
				  on_data, r, ctl_cbs, NLMSG_MIN_TYPE);
		if (ret == MNL_CB_STOP)
			return 0;
		if (ret < 0) {
			if (r->kernel_err)
				return -r->kernel_err;
			if (r->parse_err)
				return r->parse_err;
			return errno ? -errno : -EPROTO;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Sockets and the family */

static struct nlmsghdr *genl_msg(struct genl *g, char *buf, uint16_t type,
				 uint8_t cmd, uint8_t version, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *gh;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++g->seq;
	gh = mnl_nlmsg_put_extra_header(nlh, sizeof(*gh));
	gh->cmd = cmd;
	gh->version = version;
	return nlh;
}

static int family_attr(const struct nlattr *attr, void *data)
{
	if (mnl_attr_get_type(attr) == CTRL_ATTR_FAMILY_ID &&
	    mnl_attr_validate(attr, MNL_TYPE_U16) >= 0)
		*(uint16_t *)data = mnl_attr_get_u16(attr);
	return MNL_CB_OK;
}

static int parse_family(const struct nlmsghdr *nlh, void *arg)
{
	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), family_attr,
			   arg) < 0)
		return -EBADMSG;
	return 0;
}

static int resolve_family(struct genl *g)
{
	struct reply r = { .parse = parse_family, .arg = &g->family };
	struct nlmsghdr *nlh;
	int err;

	nlh = genl_msg(g, g->sbuf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1,
		       NLM_F_ACK);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	err = genl_talk(g, nlh, &r);
	if (!err && !g->family)
		err = -ENOENT;
	return err;
}

static void genl_close(struct genl *g)
{
	if (g->nl)
		mnl_socket_close(g->nl);
	sodium_free(g->sbuf);
	sodium_free(g->rbuf);
	memset(g, 0, sizeof(*g));
}

/*
 * A socket inside NS (NULL: the caller's namespace) with the wireguard
 * family resolved. -ENOENT when the kernel has no WireGuard.
 */
static int genl_open(struct zm_ns *ns, struct genl *g)
{
	int one = 1, fd, err;

	memset(g, 0, sizeof(*g));
	if (zm_key_init())
		return -EIO;
	if (ns)
		fd = zm_ns_socket(ns, AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
	else
		fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
			    NETLINK_GENERIC);
	if (fd < 0)
		return ns ? fd : -errno;
	g->nl = mnl_socket_fdopen(fd);
	if (!g->nl) {
		err = -errno;
		close(fd);
		return err ? err : -ENOMEM;
	}
	/* Optional: older kernels lack them and still work. */
	mnl_socket_setsockopt(g->nl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(g->nl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(g->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto fail;
	}
	g->portid = mnl_socket_get_portid(g->nl);
	g->seq = (unsigned int)time(NULL);
	g->sbuf = sodium_malloc(SET_MSG_SIZE);
	g->rbuf = sodium_malloc(RECV_SIZE);
	if (!g->sbuf || !g->rbuf) {
		err = -ENOMEM;
		goto fail;
	}
	err = resolve_family(g);
	if (err)
		goto fail;
	return 0;
fail:
	genl_close(g);
	return err;
}

int zm_wg_kernel_probe(void)
{
	struct genl g;

	if (genl_open(NULL, &g))
		return 0;
	genl_close(&g);
	return 1;
}

static int fail(int err, const char *name, const struct zm_ns *ns)
{
	if (err == -ENOENT && !zm_err_text()[0])
		zm_err_set("the kernel has no WireGuard (module not loaded?)");
	zm_err_context("wireguard '%s' in namespace %s", name,
		       ns ? zm_ns_label(ns) : "(own)");
	return err;
}

/* Name the object when the kernel only gave an errno. */
static void explain(int err)
{
	if (zm_err_text()[0])
		return;
	if (err == -ENODEV)
		zm_err_set("no such interface");
	else if (err == -EOPNOTSUPP)
		zm_err_set("not a WireGuard interface");
}

static int check_ifname(const char *name)
{
	if (zm_link_name_valid(name))
		return 0;
	zm_err_set("invalid interface name");
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Create */

int zm_wg_kernel_create(const struct zm_wg_create *c)
{
	struct rtnl_link *link;
	struct nl_sock *sk;
	int err;

	zm_err_clear();
	zm_nl_begin();
	if (!c->birth || !c->target) {
		zm_err_set("birth and target namespaces are required");
		return -EINVAL;
	}
	err = check_ifname(c->name);
	if (err)
		return fail(err, c->name ? c->name : "", c->target);
	err = zm_nl_route(c->birth, &sk);
	if (err)
		return fail(err, c->name, c->birth);
	link = rtnl_link_alloc();
	if (!link)
		return -ENOMEM;
	rtnl_link_set_name(link, c->name);
	err = zm_nl_result(rtnl_link_set_type(link, "wireguard"));
	if (!err && c->mtu)
		rtnl_link_set_mtu(link, c->mtu);
	/*
	 * Made through the birth namespace's socket, which the kernel keeps
	 * as the home of the UDP socket, and put straight into the target.
	 */
	if (!err && c->target != c->birth)
		rtnl_link_set_ns_fd(link, c->target->fd);
	if (!err)
		err = zm_nl_result(rtnl_link_add(sk, link,
						 NLM_F_CREATE | NLM_F_EXCL));
	rtnl_link_put(link);
	if (err) {
		if (err == -EOPNOTSUPP && !zm_err_text()[0])
			zm_err_set("the kernel has no WireGuard link type");
		return fail(err, c->name, c->target);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Set */

static int check_allowedip(const struct zm_wg_allowedip *a)
{
	if (a->family == AF_INET && a->cidr <= 32)
		return 0;
	if (a->family == AF_INET6 && a->cidr <= 128)
		return 0;
	return -EINVAL;
}

/* Everything is checked before the first message: bad input changes nothing. */
static int check_device(const struct zm_wg_device *dev)
{
	char b64[ZM_KEY_B64_LEN + 1];
	size_t i, j;

	for (i = 0; i < dev->n_peers; i++) {
		const struct zm_wg_peer *p = &dev->peers[i];
		const char *what = NULL;

		if ((p->flags & ZM_WGPEER_HAS_ENDPOINT) &&
		    p->endpoint.addr.sa_family != AF_INET &&
		    p->endpoint.addr.sa_family != AF_INET6)
			what = "endpoint is neither IPv4 nor IPv6";
		for (j = 0; !what && j < p->n_allowedips; j++)
			if (check_allowedip(&p->allowedips[j]))
				what = "allowed IP with a bad family or prefix";
		if (p->n_allowedips && !p->allowedips)
			what = "allowed IPs missing";
		if (what) {
			zm_key_encode(p->public_key, b64);
			zm_err_set("peer %zu (%s): %s", i + 1, b64, what);
			return -EINVAL;
		}
	}
	if (dev->n_peers && !dev->peers) {
		zm_err_set("peers missing");
		return -EINVAL;
	}
	return 0;
}

/* Where the next message goes on from. */
struct cursor {
	size_t peer;
	size_t allowedip;
	bool started;		/* the peer's own attributes are sent */
};

/* Which peer starts where in the message, to name the one the kernel refused. */
struct msg_map {
	size_t n;
	uint32_t offset[MAX_PEERS_PER_MSG];
	size_t peer[MAX_PEERS_PER_MSG];
};

static bool put_device(struct nlmsghdr *nlh, const struct zm_wg_device *dev)
{
	uint32_t flags = 0;
	const void *key;

	if (dev->flags & ZM_WG_HAS_PRIVATE_KEY) {
		/* No key means all zeroes: the kernel drops its identity. */
		key = dev->private_key ? dev->private_key->secret : zero_key;
		if (!mnl_attr_put_check(nlh, SET_MSG_SIZE,
					WGDEVICE_A_PRIVATE_KEY, ZM_KEY_LEN,
					key))
			return false;
	}
	if ((dev->flags & ZM_WG_HAS_LISTEN_PORT) &&
	    !mnl_attr_put_u16_check(nlh, SET_MSG_SIZE, WGDEVICE_A_LISTEN_PORT,
				    dev->listen_port))
		return false;
	if ((dev->flags & ZM_WG_HAS_FWMARK) &&
	    !mnl_attr_put_u32_check(nlh, SET_MSG_SIZE, WGDEVICE_A_FWMARK,
				    dev->fwmark))
		return false;
	if (dev->flags & ZM_WG_REPLACE_PEERS)
		flags |= WGDEVICE_F_REPLACE_PEERS;
	if (flags && !mnl_attr_put_u32_check(nlh, SET_MSG_SIZE,
					     WGDEVICE_A_FLAGS, flags))
		return false;
	return true;
}

/* The peer's own attributes, sent once, with its first allowed IPs. */
static bool put_peer_head(struct nlmsghdr *nlh, const struct zm_wg_peer *p)
{
	const void *psk;
	size_t len;

	if (p->flags & ZM_WGPEER_HAS_PRESHARED_KEY) {
		/* No key means all zeroes: no preshared key. */
		psk = p->preshared_key ? p->preshared_key->secret : zero_key;
		if (!mnl_attr_put_check(nlh, SET_MSG_SIZE,
					WGPEER_A_PRESHARED_KEY, ZM_KEY_LEN,
					psk))
			return false;
	}
	if (p->flags & ZM_WGPEER_HAS_ENDPOINT) {
		len = p->endpoint.addr.sa_family == AF_INET ?
			      sizeof(p->endpoint.addr4) :
			      sizeof(p->endpoint.addr6);
		if (!mnl_attr_put_check(nlh, SET_MSG_SIZE, WGPEER_A_ENDPOINT,
					len, &p->endpoint))
			return false;
	}
	if ((p->flags & ZM_WGPEER_HAS_KEEPALIVE) &&
	    !mnl_attr_put_u16_check(nlh, SET_MSG_SIZE,
				    WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
				    p->persistent_keepalive))
		return false;
	return true;
}

static bool put_allowedip(struct nlmsghdr *nlh, const struct zm_wg_allowedip *a)
{
	struct nlattr *nest = mnl_attr_nest_start_check(nlh, SET_MSG_SIZE, 0);
	size_t len = a->family == AF_INET ? sizeof(a->ip4) : sizeof(a->ip6);

	if (!nest)
		return false;
	if (!mnl_attr_put_u16_check(nlh, SET_MSG_SIZE, WGALLOWEDIP_A_FAMILY,
				    a->family) ||
	    !mnl_attr_put_check(nlh, SET_MSG_SIZE, WGALLOWEDIP_A_IPADDR, len,
				&a->ip4) ||
	    !mnl_attr_put_u8_check(nlh, SET_MSG_SIZE, WGALLOWEDIP_A_CIDR_MASK,
				   a->cidr)) {
		mnl_attr_nest_cancel(nlh, nest);
		return false;
	}
	mnl_attr_nest_end(nlh, nest);
	return true;
}

/*
 * Put as much of the peer at the cursor as fits. Returns true when the
 * whole peer went in; false when the message is full (the cursor then
 * says where the next one continues).
 */
static bool put_peer(struct nlmsghdr *nlh, const struct zm_wg_device *dev,
		     struct cursor *c, struct msg_map *map)
{
	const struct zm_wg_peer *p = &dev->peers[c->peer];
	struct nlattr *peer, *ips;
	uint32_t flags = 0;
	bool head = !c->started;

	peer = mnl_attr_nest_start_check(nlh, SET_MSG_SIZE, 0);
	if (!peer)
		return false;
	if (!mnl_attr_put_check(nlh, SET_MSG_SIZE, WGPEER_A_PUBLIC_KEY,
				ZM_KEY_LEN, p->public_key))
		goto cancel;
	/* Repeated in a continuation, so it never makes a partial new peer. */
	if (p->flags & ZM_WGPEER_REMOVE_ME)
		flags |= WGPEER_F_REMOVE_ME;
	if (p->flags & ZM_WGPEER_UPDATE_ONLY)
		flags |= WGPEER_F_UPDATE_ONLY;
	if (head && (p->flags & ZM_WGPEER_REPLACE_ALLOWEDIPS))
		flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
	if (flags && !mnl_attr_put_u32_check(nlh, SET_MSG_SIZE,
					     WGPEER_A_FLAGS, flags))
		goto cancel;
	if (head && !put_peer_head(nlh, p))
		goto cancel;
	if (c->allowedip < p->n_allowedips) {
		ips = mnl_attr_nest_start_check(nlh, SET_MSG_SIZE,
						WGPEER_A_ALLOWEDIPS);
		if (!ips)
			goto cancel;
		while (c->allowedip < p->n_allowedips &&
		       put_allowedip(nlh, &p->allowedips[c->allowedip]))
			c->allowedip++;
		mnl_attr_nest_end(nlh, ips);
	}
	mnl_attr_nest_end(nlh, peer);
	if (map->n < MAX_PEERS_PER_MSG) {
		map->offset[map->n] = (uint32_t)((char *)peer - (char *)nlh);
		map->peer[map->n++] = c->peer;
	}
	c->started = true;
	return c->allowedip == p->n_allowedips;
cancel:
	mnl_attr_nest_cancel(nlh, peer);
	return false;
}

/*
 * Fill one SET message from the cursor. -EMSGSIZE when not even one peer
 * entry fits into an empty message (cannot happen with sane sizes).
 */
static int fill_set(struct nlmsghdr *nlh, const struct zm_wg_device *dev,
		    struct cursor *c, bool first, struct msg_map *map)
{
	struct nlattr *peers;
	size_t before_peer = c->peer, before_ip = c->allowedip;
	bool before_started = c->started;

	map->n = 0;
	if (!mnl_attr_put_strz_check(nlh, SET_MSG_SIZE, WGDEVICE_A_IFNAME,
				     dev->name))
		return -EMSGSIZE;
	if (first && !put_device(nlh, dev))
		return -EMSGSIZE;
	if (c->peer == dev->n_peers)
		return 0;
	peers = mnl_attr_nest_start_check(nlh, SET_MSG_SIZE, WGDEVICE_A_PEERS);
	if (!peers)
		return first ? 0 : -EMSGSIZE;
	while (c->peer < dev->n_peers) {
		if (!put_peer(nlh, dev, c, map))
			break;
		c->peer++;
		c->allowedip = 0;
		c->started = false;
	}
	mnl_attr_nest_end(nlh, peers);
	if (!first && c->peer == before_peer && c->allowedip == before_ip &&
	    c->started == before_started)
		return -EMSGSIZE;
	return 0;
}

/* The peer index whose entry holds OFFSET in the message. */
static bool map_offset(const struct msg_map *map, uint32_t offset,
		       size_t *peer)
{
	size_t i;
	bool found = false;

	for (i = 0; i < map->n; i++) {
		if (map->offset[i] > offset)
			break;
		*peer = map->peer[i];
		found = true;
	}
	return found;
}

int zm_wg_kernel_set(struct zm_ns *ns, const struct zm_wg_device *dev)
{
	char b64[ZM_KEY_B64_LEN + 1];
	struct cursor c = { 0 };
	struct msg_map *map = NULL;
	struct nlmsghdr *nlh;
	struct genl g;
	bool first = true;
	size_t part = 0;
	int err;

	zm_err_clear();
	err = check_ifname(dev->name);
	if (!err)
		err = check_device(dev);
	if (err)
		return fail(err, dev->name, ns);
	map = malloc(sizeof(*map));
	if (!map)
		return -ENOMEM;
	err = genl_open(ns, &g);
	if (err)
		goto out;
	do {
		struct reply r = { 0 };

		nlh = genl_msg(&g, g.sbuf, g.family, WG_CMD_SET_DEVICE,
			       WG_GENL_VERSION, NLM_F_ACK);
		err = fill_set(nlh, dev, &c, first, map);
		if (err) {
			zm_err_set("a peer does not fit into one message");
			goto out;
		}
		part++;
		err = genl_talk(&g, nlh, &r);
		if (err) {
			size_t bad;

			explain(err);
			if (r.bad_offset && map_offset(map, r.bad_offset, &bad)) {
				zm_key_encode(dev->peers[bad].public_key, b64);
				zm_err_context("peer %zu (%s)", bad + 1, b64);
			} else if (part > 1) {
				zm_err_context("part %zu of the update", part);
			}
			goto out;
		}
		first = false;
	} while (c.peer < dev->n_peers);
out:
	genl_close(&g);
	free(map);
	if (err)
		return fail(err, dev->name, ns);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Get */

/* Room for one more element: capacity is the next power of two (min 4). */
static int grow(void **arr, size_t n, size_t size)
{
	void *p;
	size_t cap;

	if (n && (n < 4 || (n & (n - 1))))
		return 0;
	cap = n ? n * 2 : 4;
	if (cap > SIZE_MAX / size)
		return -ENOMEM;
	p = realloc(*arr, cap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

struct allowedip_parse {
	struct zm_wg_allowedip a;
	bool has_family, has_ip, has_cidr;
	size_t ip_len;
};

static int allowedip_attr(const struct nlattr *attr, void *data)
{
	struct allowedip_parse *ap = data;
	uint16_t len = mnl_attr_get_payload_len(attr);

	switch (mnl_attr_get_type(attr)) {
	case WGALLOWEDIP_A_FAMILY:
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return MNL_CB_ERROR;
		ap->a.family = mnl_attr_get_u16(attr);
		ap->has_family = true;
		break;
	case WGALLOWEDIP_A_IPADDR:
		if (len != sizeof(ap->a.ip4) && len != sizeof(ap->a.ip6))
			return MNL_CB_ERROR;
		memcpy(&ap->a.ip6, mnl_attr_get_payload(attr), len);
		ap->ip_len = len;
		ap->has_ip = true;
		break;
	case WGALLOWEDIP_A_CIDR_MASK:
		if (mnl_attr_validate(attr, MNL_TYPE_U8) < 0)
			return MNL_CB_ERROR;
		ap->a.cidr = mnl_attr_get_u8(attr);
		ap->has_cidr = true;
		break;
	}
	return MNL_CB_OK;
}

static int allowedips_attr(const struct nlattr *attr, void *data)
{
	struct zm_wg_peer *p = data;
	struct allowedip_parse ap = { 0 };

	if (mnl_attr_parse_nested(attr, allowedip_attr, &ap) < 0)
		return MNL_CB_ERROR;
	if (!ap.has_family || !ap.has_ip || !ap.has_cidr ||
	    ap.ip_len != (ap.a.family == AF_INET ? sizeof(ap.a.ip4) :
						   sizeof(ap.a.ip6)))
		return MNL_CB_ERROR;
	if (grow((void **)&p->allowedips, p->n_allowedips,
		 sizeof(*p->allowedips))) {
		errno = ENOMEM;
		return MNL_CB_ERROR;
	}
	p->allowedips[p->n_allowedips++] = ap.a;
	return MNL_CB_OK;
}

static int peer_attr(const struct nlattr *attr, void *data)
{
	struct zm_wg_peer *p = data;
	uint16_t len = mnl_attr_get_payload_len(attr);
	const void *pl = mnl_attr_get_payload(attr);
	struct __kernel_timespec ts;

	switch (mnl_attr_get_type(attr)) {
	case WGPEER_A_PUBLIC_KEY:
		if (len != ZM_KEY_LEN)
			return MNL_CB_ERROR;
		memcpy(p->public_key, pl, ZM_KEY_LEN);
		break;
	case WGPEER_A_PRESHARED_KEY:
		if (len != ZM_KEY_LEN)
			return MNL_CB_ERROR;
		/* All zeroes: none. Straight from the buffer into sodium memory. */
		if (sodium_is_zero(pl, ZM_KEY_LEN) || p->preshared_key)
			break;
		if (zm_key_generate_psk(&p->preshared_key)) {
			errno = ENOMEM;
			return MNL_CB_ERROR;
		}
		memcpy(p->preshared_key->secret, pl, ZM_KEY_LEN);
		p->flags |= ZM_WGPEER_HAS_PRESHARED_KEY;
		break;
	case WGPEER_A_ENDPOINT:
		if (len == sizeof(p->endpoint.addr4) &&
		    ((const struct sockaddr *)pl)->sa_family == AF_INET) {
			memcpy(&p->endpoint.addr4, pl, len);
			p->flags |= ZM_WGPEER_HAS_ENDPOINT;
		} else if (len == sizeof(p->endpoint.addr6) &&
			   ((const struct sockaddr *)pl)->sa_family ==
				   AF_INET6) {
			memcpy(&p->endpoint.addr6, pl, len);
			p->flags |= ZM_WGPEER_HAS_ENDPOINT;
		}
		break;
	case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return MNL_CB_ERROR;
		p->persistent_keepalive = mnl_attr_get_u16(attr);
		p->flags |= ZM_WGPEER_HAS_KEEPALIVE;
		break;
	case WGPEER_A_LAST_HANDSHAKE_TIME:
		if (len != sizeof(ts))
			return MNL_CB_ERROR;
		memcpy(&ts, pl, sizeof(ts));
		p->last_handshake_sec = ts.tv_sec;
		p->last_handshake_nsec = ts.tv_nsec;
		break;
	case WGPEER_A_RX_BYTES:
		if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
			return MNL_CB_ERROR;
		p->rx_bytes = mnl_attr_get_u64(attr);
		break;
	case WGPEER_A_TX_BYTES:
		if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0)
			return MNL_CB_ERROR;
		p->tx_bytes = mnl_attr_get_u64(attr);
		break;
	case WGPEER_A_ALLOWEDIPS:
		if (mnl_attr_parse_nested(attr, allowedips_attr, p) < 0)
			return MNL_CB_ERROR;
		break;
	}
	return MNL_CB_OK;
}

static void peer_clear(struct zm_wg_peer *p)
{
	zm_key_free(p->preshared_key);
	free(p->allowedips);
	memset(p, 0, sizeof(*p));
}

/*
 * Add the parsed peer P to DEV; a peer the kernel split over two parts of
 * the dump comes back with the same public key and the rest of its
 * allowed IPs: those go to the one already there.
 */
static int add_peer(struct zm_wg_device *dev, struct zm_wg_peer *p)
{
	struct zm_wg_peer *last;
	size_t i;

	last = dev->n_peers ? &dev->peers[dev->n_peers - 1] : NULL;
	if (last && !memcmp(last->public_key, p->public_key, ZM_KEY_LEN)) {
		for (i = 0; i < p->n_allowedips; i++) {
			if (grow((void **)&last->allowedips,
				 last->n_allowedips,
				 sizeof(*last->allowedips)))
				return -ENOMEM;
			last->allowedips[last->n_allowedips++] =
				p->allowedips[i];
		}
		peer_clear(p);
		return 0;
	}
	if (grow((void **)&dev->peers, dev->n_peers, sizeof(*dev->peers)))
		return -ENOMEM;
	dev->peers[dev->n_peers++] = *p;
	memset(p, 0, sizeof(*p));
	return 0;
}

struct get_ctx {
	struct zm_wg_device *dev;
	int err;
};

static int peers_attr(const struct nlattr *attr, void *data)
{
	struct get_ctx *ctx = data;
	struct zm_wg_peer p = { 0 };
	bool has_key;

	errno = EBADMSG;
	if (mnl_attr_parse_nested(attr, peer_attr, &p) < 0)
		goto bad;
	has_key = !sodium_is_zero(p.public_key, ZM_KEY_LEN);
	if (!has_key)
		goto bad;
	ctx->err = add_peer(ctx->dev, &p);
	if (ctx->err) {
		peer_clear(&p);
		return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
bad:
	ctx->err = errno == ENOMEM ? -ENOMEM : -EBADMSG;
	peer_clear(&p);
	return MNL_CB_ERROR;
}

static int device_attr(const struct nlattr *attr, void *data)
{
	struct get_ctx *ctx = data;
	struct zm_wg_device *dev = ctx->dev;
	uint16_t len = mnl_attr_get_payload_len(attr);
	const void *pl = mnl_attr_get_payload(attr);

	switch (mnl_attr_get_type(attr)) {
	case WGDEVICE_A_IFINDEX:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
			return MNL_CB_ERROR;
		dev->ifindex = (int)mnl_attr_get_u32(attr);
		break;
	case WGDEVICE_A_IFNAME:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
			return MNL_CB_ERROR;
		snprintf(dev->name, sizeof(dev->name), "%s",
			 mnl_attr_get_str(attr));
		break;
	case WGDEVICE_A_PRIVATE_KEY:
		if (len != ZM_KEY_LEN)
			return MNL_CB_ERROR;
		if (dev->private_key)
			break;
		if (zm_key_generate_psk(&dev->private_key)) {
			ctx->err = -ENOMEM;
			return MNL_CB_ERROR;
		}
		memcpy(dev->private_key->secret, pl, ZM_KEY_LEN);
		dev->flags |= ZM_WG_HAS_PRIVATE_KEY;
		break;
	case WGDEVICE_A_PUBLIC_KEY:
		if (len != ZM_KEY_LEN)
			return MNL_CB_ERROR;
		memcpy(dev->public_key, pl, ZM_KEY_LEN);
		dev->has_public_key = true;
		break;
	case WGDEVICE_A_LISTEN_PORT:
		if (mnl_attr_validate(attr, MNL_TYPE_U16) < 0)
			return MNL_CB_ERROR;
		dev->listen_port = mnl_attr_get_u16(attr);
		dev->flags |= ZM_WG_HAS_LISTEN_PORT;
		break;
	case WGDEVICE_A_FWMARK:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
			return MNL_CB_ERROR;
		dev->fwmark = mnl_attr_get_u32(attr);
		dev->flags |= ZM_WG_HAS_FWMARK;
		break;
	case WGDEVICE_A_PEERS:
		if (mnl_attr_parse_nested(attr, peers_attr, ctx) < 0)
			return MNL_CB_ERROR;
		break;
	}
	return MNL_CB_OK;
}

static int parse_device(const struct nlmsghdr *nlh, void *arg)
{
	struct get_ctx *ctx = arg;

	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), device_attr,
			   ctx) < 0)
		return ctx->err ? ctx->err : -EBADMSG;
	return 0;
}

/* One whole dump; *interrupted when the device changed under it. */
static int get_once(struct genl *g, const char *name,
		    struct zm_wg_device **out, bool *interrupted)
{
	struct get_ctx ctx = { 0 };
	struct reply r = { .parse = parse_device, .arg = &ctx };
	struct nlmsghdr *nlh;
	int err;

	*out = NULL;
	ctx.dev = calloc(1, sizeof(*ctx.dev));
	if (!ctx.dev)
		return -ENOMEM;
	nlh = genl_msg(g, g->sbuf, g->family, WG_CMD_GET_DEVICE,
		       WG_GENL_VERSION, NLM_F_DUMP);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, name);
	err = genl_talk(g, nlh, &r);
	*interrupted = r.interrupted;
	if (err || r.interrupted) {
		zm_wg_device_free(ctx.dev);
		return err;
	}
	ctx.dev->backend = ZM_WG_KERNEL;
	*out = ctx.dev;
	return 0;
}

int zm_wg_kernel_get(struct zm_ns *ns, const char *name,
		     struct zm_wg_device **out)
{
	struct genl g;
	bool interrupted = false;
	int err, tries;

	zm_err_clear();
	*out = NULL;
	err = check_ifname(name);
	if (err)
		return fail(err, name ? name : "", ns);
	err = genl_open(ns, &g);
	if (err)
		return fail(err, name, ns);
	for (tries = 0; tries < DUMP_TRIES; tries++) {
		err = get_once(&g, name, out, &interrupted);
		if (err || !interrupted)
			break;
	}
	genl_close(&g);
	if (!err && interrupted) {
		zm_err_set("the device kept changing while it was read");
		err = -EAGAIN;
	}
	if (err) {
		explain(err);
		return fail(err, name, ns);
	}
	return 0;
}
