// SPDX-License-Identifier: MIT
/* Netlink sockets per namespace and the one exchange every protocol uses. */
#include "nl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <sodium.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* Dump parts are at most 32 KiB (the kernel's largest dump allocation). */
#define RECV_SIZE 32768
/* Namespaces × protocols kept; the least recently used goes first. */
#define CACHE_MAX 48

struct zm_nl {
	int fd;
	enum zm_nl_proto proto;
	dev_t dev;
	ino_t ino;
	char name[ZM_NETNS_NAME_MAX + 1];	/* "" for a nameless one */
	uint32_t portid, seq;
	int sndbuf, rcvbuf;	/* as the kernel reports them (doubled) */
	bool broken;		/* an I/O error left it in doubt */
	unsigned long used;
	uint16_t genl_id;
	char genl_name[GENL_NAMSIZ];
	/* Answers may hold WireGuard keys: sodium memory, wiped after use. */
	char *rbuf;
};

/* Per thread: a socket is never shared by two exchanges at once. */
static __thread struct zm_nl *cache[CACHE_MAX];
static __thread unsigned long clock_now;

static const int protocols[] = {
	[ZM_NL_ROUTE] = NETLINK_ROUTE,
	[ZM_NL_GENERIC] = NETLINK_GENERIC,
	[ZM_NL_NETFILTER] = NETLINK_NETFILTER,
};

static void sock_close(struct zm_nl *nl)
{
	close(nl->fd);
	sodium_free(nl->rbuf);
	free(nl);
}

static int sock_open(const struct zm_ns *ns, enum zm_nl_proto proto,
		   struct zm_nl **out)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	socklen_t len = sizeof(sa);
	struct zm_nl *nl;
	int one = 1, err;

	if (sodium_init() < 0)
		return -EIO;
	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	nl->rbuf = sodium_malloc(RECV_SIZE);
	nl->fd = zm_ns_socket(ns, AF_NETLINK, SOCK_RAW, protocols[proto]);
	if (nl->fd < 0 || !nl->rbuf) {
		err = nl->fd < 0 ? nl->fd : -ENOMEM;
		if (nl->fd >= 0)
			close(nl->fd);
		sodium_free(nl->rbuf);
		free(nl);
		zm_err_set("cannot open a netlink socket in namespace %s",
			   zm_ns_label(ns));
		return err;
	}
	/* Kernel text in errors, errors without the request echoed. */
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	/* Dumps filtered by the kernel (an interface's addresses only). */
	if (proto == ZM_NL_ROUTE)
		setsockopt(nl->fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one,
			   sizeof(one));
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(nl->fd, (struct sockaddr *)&sa, &len)) {
		err = -errno;
		sock_close(nl);
		return err;
	}
	len = sizeof(nl->rcvbuf);
	getsockopt(nl->fd, SOL_SOCKET, SO_RCVBUF, &nl->rcvbuf, &len);
	len = sizeof(nl->sndbuf);
	getsockopt(nl->fd, SOL_SOCKET, SO_SNDBUF, &nl->sndbuf, &len);
	nl->proto = proto;
	nl->dev = ns->dev;
	nl->ino = ns->ino;
	snprintf(nl->name, sizeof(nl->name), "%s", ns->name);
	nl->portid = sa.nl_pid;
	nl->seq = (uint32_t)time(NULL);
	*out = nl;
	return 0;
}

int zm_nl_get(const struct zm_ns *ns, enum zm_nl_proto proto,
	      struct zm_nl **out)
{
	struct zm_nl *nl;
	int i, slot = -1, err;

	for (i = 0; i < CACHE_MAX; i++) {
		nl = cache[i];
		if (nl && nl->dev == ns->dev && nl->ino == ns->ino &&
		    nl->proto == proto) {
			if (!nl->broken) {
				nl->used = ++clock_now;
				*out = nl;
				return 0;
			}
			sock_close(nl);
			cache[i] = NULL;
		}
		if (!cache[i] && slot < 0)
			slot = i;
	}
	if (slot < 0) {
		for (slot = 0, i = 1; i < CACHE_MAX; i++)
			if (cache[i]->used < cache[slot]->used)
				slot = i;
		sock_close(cache[slot]);
		cache[slot] = NULL;
	}
	err = sock_open(ns, proto, &nl);
	if (err)
		return err;
	nl->used = ++clock_now;
	cache[slot] = nl;
	*out = nl;
	return 0;
}

void zm_nl_forget(dev_t dev, ino_t ino)
{
	int i;

	for (i = 0; i < CACHE_MAX; i++)
		if (cache[i] && cache[i]->dev == dev && cache[i]->ino == ino) {
			sock_close(cache[i]);
			cache[i] = NULL;
		}
}

void zm_nl_prune(void)
{
	char path[sizeof(ZM_NETNS_DIR) + ZM_NETNS_NAME_MAX + 1];
	struct stat st;
	int i;

	for (i = 0; i < CACHE_MAX; i++) {
		if (!cache[i] || !cache[i]->name[0])
			continue;
		snprintf(path, sizeof(path), "%s/%s", ZM_NETNS_DIR,
			 cache[i]->name);
		if (stat(path, &st) || st.st_dev != cache[i]->dev ||
		    st.st_ino != cache[i]->ino) {
			sock_close(cache[i]);
			cache[i] = NULL;
		}
	}
}

uint32_t zm_nl_seq(struct zm_nl *nl, uint32_t count)
{
	uint32_t seq = nl->seq;

	nl->seq += count;
	return seq;
}

/* ---- acks ---- */

/* What an NLMSG_ERROR (or a failed NLMSG_DONE) carries. */
struct zm_nl_ack {
	int error;		/* positive errno, 0 for an ack */
	uint32_t seq;		/* of the message answered */
	const char *msg;	/* the kernel's extended-ack text, or NULL */
	uint32_t offs;		/* offset of the attribute at fault */
	bool has_offs;
};

static int ext_ack_attr(const struct nlattr *attr, void *data)
{
	struct zm_nl_ack *ack = data;

	switch (mnl_attr_get_type(attr)) {
	case NLMSGERR_ATTR_MSG:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0 &&
		    *mnl_attr_get_str(attr))
			ack->msg = mnl_attr_get_str(attr);
		break;
	case NLMSGERR_ATTR_OFFS:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
			ack->offs = mnl_attr_get_u32(attr);
			ack->has_offs = true;
		}
		break;
	}
	return MNL_CB_OK;
}

/* The extended-ack attributes starting OFF bytes into NLH's payload. */
static void parse_tlvs(const struct nlmsghdr *nlh, size_t off,
		       struct zm_nl_ack *ack)
{
	size_t len = nlh->nlmsg_len - NLMSG_HDRLEN;

	if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) && off < len)
		mnl_attr_parse_payload((const char *)nlh + NLMSG_HDRLEN + off,
				       len - off, ext_ack_attr, ack);
}

/* NLMSG_ERROR, or an NLMSG_DONE that may carry the error ending a dump. */
static int parse_ack(const struct nlmsghdr *nlh, struct zm_nl_ack *ack)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	size_t off = sizeof(*e);
	int code;

	memset(ack, 0, sizeof(*ack));
	ack->seq = nlh->nlmsg_seq;
	if (nlh->nlmsg_type == NLMSG_DONE) {
		if (mnl_nlmsg_get_payload_len(nlh) < sizeof(code))
			return 0;
		memcpy(&code, e, sizeof(code));
		ack->error = code < 0 ? -code : 0;
		parse_tlvs(nlh, sizeof(code), ack);
		return 0;
	}
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e))
		return -EPROTO;
	ack->error = e->error < 0 ? -e->error : e->error;
	/* Uncapped, the request itself sits before the attributes. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	parse_tlvs(nlh, off, ack);
	return 0;
}

/* ---- the exchange ---- */

/* NLM_F_DUMP is two bits, one of them NLM_F_EXCL's: both must be set. */
static bool is_dump(const struct nlmsghdr *nlh)
{
	return (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
}

struct pending {
	uint32_t seq;
	bool wait;
};

/*
 * Every answer is queued before sendmsg returns (or a dump part per read),
 * a batch's acks all at once: room for them, or the kernel drops some.
 * The FORCE variants need CAP_NET_ADMIN; without it, best effort.
 */
static void make_room(struct zm_nl *nl, size_t len, size_t answers)
{
	int snd = (int)len + 4096, rcv = (int)(answers * 1024) + 65536;

	if (snd * 2 > nl->sndbuf) {
		if (setsockopt(nl->fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd,
			       sizeof(snd)))
			setsockopt(nl->fd, SOL_SOCKET, SO_SNDBUF, &snd,
				   sizeof(snd));
		nl->sndbuf = snd * 2;
	}
	if (rcv * 2 > nl->rcvbuf) {
		if (setsockopt(nl->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv,
			       sizeof(rcv)))
			setsockopt(nl->fd, SOL_SOCKET, SO_RCVBUF, &rcv,
				   sizeof(rcv));
		nl->rcvbuf = rcv * 2;
	}
}

static bool find(const struct pending *p, size_t n, uint32_t seq, size_t *i)
{
	/* A batch numbers its messages in order: try that first. */
	*i = seq - p[0].seq;
	if (*i < n && p[*i].seq == seq)
		return true;
	for (*i = 0; *i < n; (*i)++)
		if (p[*i].seq == seq)
			return true;
	return false;
}

static void note_error(struct zm_nl_talk *t, size_t i,
		       const struct zm_nl_ack *ack, int *first)
{
	if (t->nerr++)
		return;
	*first = -ack->error;
	t->bad = i;
	t->bad_offs = ack->offs;
	t->has_offs = ack->has_offs;
	if (ack->msg)
		zm_err_set("%s", ack->msg);
}

/* One read's worth of answers; false when nothing more will come. */
static bool take(struct zm_nl *nl, int len, struct pending *p, size_t n,
		 size_t *waiting, struct zm_nl_talk *t, int *first,
		 int *cb_err)
{
	const struct nlmsghdr *nlh = (const void *)nl->rbuf;
	struct zm_nl_ack ack;
	size_t i;

	for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		if (nlh->nlmsg_pid != nl->portid ||
		    !find(p, n, nlh->nlmsg_seq, &i))
			continue;	/* a late answer to another */
		if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
			t->interrupted = true;
		if (nlh->nlmsg_type == NLMSG_NOOP ||
		    nlh->nlmsg_type == NLMSG_OVERRUN)
			continue;
		if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
			if (!*cb_err && t->data)
				*cb_err = t->data(nlh, t->arg);
			continue;
		}
		if (parse_ack(nlh, &ack)) {
			*cb_err = *cb_err ? *cb_err : -EPROTO;
			continue;
		}
		if (ack.error)
			note_error(t, i, &ack, first);
		/* An error to what asked for none: the batch is refused. */
		if (!p[i].wait)
			return false;
		p[i].wait = false;
		(*waiting)--;
	}
	return *waiting > 0;
}

int zm_nl_talk(struct zm_nl *nl, const void *buf, size_t len,
	       struct zm_nl_talk *t)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	const struct nlmsghdr *nlh;
	struct pending one, *p = &one;
	size_t n = 0, i, waiting = 0, wiped = 0;
	int rest, first = 0, cb_err = 0, err = 0;

	t->nerr = 0;
	t->bad = 0;
	t->has_offs = t->interrupted = false;
	for (nlh = buf, rest = (int)len; mnl_nlmsg_ok(nlh, rest);
	     nlh = mnl_nlmsg_next(nlh, &rest))
		n++;
	if (n > 1 && !(p = calloc(n, sizeof(*p))))
		return -ENOMEM;
	for (i = 0, nlh = buf, rest = (int)len; i < n;
	     i++, nlh = mnl_nlmsg_next(nlh, &rest)) {
		p[i].seq = nlh->nlmsg_seq;
		p[i].wait = is_dump(nlh) || (nlh->nlmsg_flags & NLM_F_ACK);
		waiting += p[i].wait;
	}
	make_room(nl, len, waiting);
	if (sendto(nl->fd, buf, len, 0, (struct sockaddr *)&kernel,
		   sizeof(kernel)) < 0)
		err = -errno;
	while (!err && waiting) {
		ssize_t got = recv(nl->fd, nl->rbuf, RECV_SIZE, MSG_TRUNC);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 || got > RECV_SIZE) {
			err = got < 0 ? -errno : -EMSGSIZE;
			break;
		}
		if ((size_t)got > wiped)
			wiped = (size_t)got;
		if (!take(nl, (int)got, p, n, &waiting, t, &first, &cb_err))
			break;
	}
	sodium_memzero(nl->rbuf, wiped);
	if (p != &one)
		free(p);
	if (err) {
		/* Answers may still be on their way: never reuse it. */
		nl->broken = true;
		zm_err_set(err == -ENOBUFS ? "netlink answers were lost" :
			   "netlink exchange failed");
		return err;
	}
	return first ? first : cb_err;
}

/* ---- generic netlink ---- */

static int family_attr(const struct nlattr *attr, void *data)
{
	if (mnl_attr_get_type(attr) == CTRL_ATTR_FAMILY_ID &&
	    mnl_attr_validate(attr, MNL_TYPE_U16) >= 0)
		*(uint16_t *)data = mnl_attr_get_u16(attr);
	return MNL_CB_OK;
}

static int on_family(const struct nlmsghdr *nlh, void *arg)
{
	mnl_attr_parse(nlh, GENL_HDRLEN, family_attr, arg);
	return 0;
}

int zm_nl_genl_family(struct zm_nl *nl, const char *name, uint16_t *id)
{
	char buf[256] = { 0 };
	struct zm_nl_talk t = { .data = on_family };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;
	uint16_t found = 0;
	int err;

	if (nl->genl_id && !strcmp(nl->genl_name, name)) {
		*id = nl->genl_id;
		return 0;
	}
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = zm_nl_seq(nl, 1);
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = CTRL_CMD_GETFAMILY;
	g->version = 1;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, name);
	t.arg = &found;
	err = zm_nl_talk(nl, buf, nlh->nlmsg_len, &t);
	if (!err && !found)
		err = -ENOENT;
	if (err)
		return err;
	nl->genl_id = *id = found;
	snprintf(nl->genl_name, sizeof(nl->genl_name), "%s", name);
	return 0;
}

/* ---- rtnetlink ---- */

int zm_nl_route(struct zm_ns *ns, struct nlmsghdr *nlh,
		int (*cb)(const struct nlmsghdr *nlh, void *arg), void *arg)
{
	struct zm_nl_talk t = { .data = cb, .arg = arg };
	struct zm_nl *nl;
	int err = zm_nl_get(ns, ZM_NL_ROUTE, &nl);

	if (err)
		return err;
	nlh->nlmsg_flags |= NLM_F_REQUEST | (is_dump(nlh) ? 0 : NLM_F_ACK);
	nlh->nlmsg_seq = zm_nl_seq(nl, 1);
	return zm_nl_talk(nl, nlh, nlh->nlmsg_len, &t);
}

int zm_grow(void **v, size_t n, size_t size)
{
	size_t cap = n ? n * 2 : 16;
	void *nv;

	/* The capacity is implied: 16, then doubled whenever it is full. */
	if (n && (n < 16 || (n & (n - 1))))
		return 0;
	nv = cap < SIZE_MAX / size ? realloc(*v, cap * size) : NULL;
	if (!nv)
		return -ENOMEM;
	*v = nv;
	return 0;
}
