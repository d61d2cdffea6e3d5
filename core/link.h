/* SPDX-License-Identifier: MIT */
/* Links: veth pairs, bridges, macvlan; changes, moves, deletes, dumps. */
#ifndef ZM_LINK_H
#define ZM_LINK_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

struct zm_ns;

struct zm_link_info {
	char name[IFNAMSIZ];
	char kind[24];		/* "veth", "bridge", …; "" for physical/lo */
	char mac[24];
	char operstate[16];
	int index;
	int master;		/* ifindex of the master, 0 when none */
	int link;		/* IFLA_LINK: peer or parent ifindex, 0 when none */
	int link_netnsid;	/* -1 when the peer/parent is in this ns */
	unsigned int mtu;
	unsigned int flags;	/* IFF_* */
};

/* Which fields of a zm_link_change to apply; others stay as they are. */
enum {
	ZM_LINK_SET_UP = 1 << 0,
	ZM_LINK_SET_MTU = 1 << 1,
	ZM_LINK_SET_MASTER = 1 << 2,	/* master == NULL: no master */
	ZM_LINK_SET_NETNS = 1 << 3,
	ZM_LINK_SET_NAME = 1 << 4,
};

struct zm_link_change {
	unsigned int has;
	int up;
	unsigned int mtu;
	const char *master;
	struct zm_ns *netns;
	const char *name;
};

/* 1 when NAME is a valid interface name (1..15 chars, no '/', ':' or space). */
int zm_link_name_valid(const char *name);

/*
 * A link to make, of kind KIND ("veth", "bridge", "macvlan",
 * "wireguard" …), strictly (-EEXIST when there is one).
 */
struct zm_link_new {
	const char *name, *kind;
	unsigned int mtu;		/* 0: the kind's default */
	struct zm_ns *netns;		/* born there (NULL: where made) */
	const char *parent;		/* macvlan: what it hangs on … */
	uint32_t macvlan_mode;		/* … MACVLAN_MODE_* */
	const char *peer;		/* veth: the other end … */
	struct zm_ns *peer_ns;		/* … NULL: the same namespace */
};

/* Made through ns (where the parent is, and a wireguard's UDP socket). */
int zm_link_add(struct zm_ns *ns, const struct zm_link_new *l);

int zm_link_set(struct zm_ns *ns, const char *name,
		const struct zm_link_change *change);
int zm_link_delete(struct zm_ns *ns, const char *name);
int zm_link_get(struct zm_ns *ns, const char *name, struct zm_link_info *out);
/* Every link of ns; free *out with free(). */
int zm_link_dump(struct zm_ns *ns, struct zm_link_info **out, size_t *count);
/* The ifindex of NAME in ns, or -errno. */
int zm_link_index(struct zm_ns *ns, const char *name);

#endif
