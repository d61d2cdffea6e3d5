// SPDX-License-Identifier: MIT
/*
 * The kernel WireGuard backend.
 *
 * The link is made with rtnetlink (kind "wireguard") through the birth
 * namespace's socket, with IFLA_NET_NS_FD naming the target: the kernel
 * keeps the birth namespace as the one that owns the UDP socket and puts
 * the interface in the target. Configuration and read-back go over
 * generic netlink on the netlink layer's socket of the namespace that
 * holds the interface (nl.h), where the "wireguard" family is resolved
 * (which also loads the module on demand).
 *
 * Large writes are split like wireguard-tools' kernel_set_device: only the
 * first message carries the device attributes and REPLACE_PEERS; a peer
 * that does not fit is continued in the next message by its public key
 * with the rest of its allowed IPs. The request is well-formed (the
 * bindings parse every field before the core sees it), so only the kernel
 * can refuse it; a refusal part-way leaves the earlier parts applied (as
 * with wg), and the error names the peer or the part. Reads drain the whole dump,
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
#include <sodium.h>

/*
 * One SET message at most; wireguard-tools uses the same size, which every
 * kernel accepts (the limit is the socket's send buffer).
 */
#define SET_MSG_SIZE 8192
/* A peer that changed under a dump makes the dump restart; give up then. */
#define DUMP_TRIES 10
/* The smallest peer entry: its nest and public key. */
#define PEER_MIN_LEN (2 * sizeof(struct nlattr) + ZM_KEY_LEN)
#define MAX_PEERS_PER_MSG (SET_MSG_SIZE / PEER_MIN_LEN + 1)

static const uint8_t zero_key[ZM_KEY_LEN];

/* The namespace's generic netlink socket (nl.h) and the family's id. */
static int wg_socket(struct zm_ns *ns, struct zm_nl **nl, uint16_t *family)
{
	int err = zm_nl_get(ns, ZM_NL_GENERIC, nl);

	/* Resolving the family also loads the module on demand. */
	return err ? err : zm_nl_genl_family(*nl, WG_GENL_NAME, family);
}

static struct nlmsghdr *genl_msg(struct zm_nl *nl, char *buf, uint16_t family,
				 uint8_t cmd, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *gh;

	nlh->nlmsg_type = family;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = zm_nl_seq(nl, 1);
	gh = mnl_nlmsg_put_extra_header(nlh, sizeof(*gh));
	gh->cmd = cmd;
	gh->version = WG_GENL_VERSION;
	return nlh;
}

int zm_wg_kernel_probe(void)
{
	struct zm_ns *own;
	struct zm_nl *nl;
	uint16_t family;
	int err = zm_ns_open(NULL, &own);

	if (!err) {
		err = wg_socket(own, &nl, &family);
		zm_ns_close(own);
	}
	zm_err_clear();
	return err ? 0 : 1;
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

/* ------------------------------------------------------------------ */
/* Create */

int zm_wg_kernel_create(const struct zm_wg_create *c)
{
	/*
	 * Made through the birth namespace's socket, which the kernel keeps
	 * as the home of the UDP socket, and put straight into the target.
	 */
	struct zm_link_new l = { .name = c->name, .kind = "wireguard",
				 .mtu = c->mtu, .netns = c->target };
	int err;

	zm_err_clear();
	if (!c->birth || !c->target) {
		zm_err_set("birth and target namespaces are required");
		return -EINVAL;
	}
	err = zm_link_add(c->birth, &l);
	if (err == -EOPNOTSUPP)
		zm_err_context("the kernel has no WireGuard link type");
	return err;
}

/* ------------------------------------------------------------------ */
/* Set */

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
	struct zm_nl *nl;
	bool first = true;
	size_t part = 0;
	uint16_t family;
	char *buf = NULL;	/* may hold keys: sodium memory */
	int err;

	zm_err_clear();
	if (zm_key_init())
		return -EIO;
	map = malloc(sizeof(*map));
	buf = sodium_malloc(SET_MSG_SIZE);
	err = map && buf ? wg_socket(ns, &nl, &family) : -ENOMEM;
	while (!err) {
		struct zm_nl_talk t = { 0 };

		memset(buf, 0, SET_MSG_SIZE);
		nlh = genl_msg(nl, buf, family, WG_CMD_SET_DEVICE, NLM_F_ACK);
		err = fill_set(nlh, dev, &c, first, map);
		if (err) {
			zm_err_set("a peer does not fit into one message");
			break;
		}
		part++;
		err = zm_nl_talk(nl, nlh, nlh->nlmsg_len, &t);
		if (err) {
			size_t bad;

			explain(err);
			if (t.has_offs && map_offset(map, t.bad_offs, &bad)) {
				zm_key_encode(dev->peers[bad].public_key, b64);
				zm_err_context("peer %zu (%s)", bad + 1, b64);
			} else if (part > 1) {
				zm_err_context("part %zu of the update", part);
			}
			break;
		}
		first = false;
		if (c.peer == dev->n_peers)
			break;
	}
	sodium_free(buf);
	free(map);
	if (err)
		return fail(err, dev->name, ns);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Get */

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
	if (zm_grow((void **)&p->allowedips, p->n_allowedips,
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
			if (zm_grow((void **)&last->allowedips,
				 last->n_allowedips,
				 sizeof(*last->allowedips)))
				return -ENOMEM;
			last->allowedips[last->n_allowedips++] =
				p->allowedips[i];
		}
		peer_clear(p);
		return 0;
	}
	if (zm_grow((void **)&dev->peers, dev->n_peers, sizeof(*dev->peers)))
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
static int get_once(struct zm_nl *nl, uint16_t family, const char *name,
		    struct zm_wg_device **out, bool *interrupted)
{
	char buf[NLMSG_HDRLEN + GENL_HDRLEN + 64] = { 0 };
	struct get_ctx ctx = { 0 };
	struct zm_nl_talk t = { .data = parse_device, .arg = &ctx };
	struct nlmsghdr *nlh;
	int err;

	*out = NULL;
	ctx.dev = calloc(1, sizeof(*ctx.dev));
	if (!ctx.dev)
		return -ENOMEM;
	nlh = genl_msg(nl, buf, family, WG_CMD_GET_DEVICE, NLM_F_DUMP);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, name);
	err = zm_nl_talk(nl, nlh, nlh->nlmsg_len, &t);
	/* What was read of a dump that changed under it is thrown away. */
	*interrupted = t.interrupted && !t.nerr;
	if (err || *interrupted) {
		zm_wg_device_free(ctx.dev);
		return *interrupted ? 0 : err;
	}
	ctx.dev->backend = ZM_WG_KERNEL;
	*out = ctx.dev;
	return 0;
}

int zm_wg_kernel_get(struct zm_ns *ns, const char *name,
		     struct zm_wg_device **out)
{
	bool interrupted = false;
	struct zm_nl *nl;
	uint16_t family;
	int err, tries;

	zm_err_clear();
	*out = NULL;
	err = wg_socket(ns, &nl, &family);
	for (tries = 0; !err && tries < DUMP_TRIES; tries++) {
		err = get_once(nl, family, name, out, &interrupted);
		if (!interrupted)
			break;
	}
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
