/* SPDX-License-Identifier: MIT */
/* IPv4 and IPv6 routes: dev, via, default. */
#ifndef ZM_ROUTE_H
#define ZM_ROUTE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>

struct zm_ns;

struct zm_route_spec {
	int family;		/* AF_INET, AF_INET6; 0: the prefix's own */
	const char *dst;	/* "default" (with family) or a prefix */
	const char *via;	/* gateway address, or NULL */
	const char *dev;	/* output link, or NULL */
	unsigned int metric;
	unsigned int table;	/* 0: main */
	bool replace;		/* add: replace a route with the same key */
};

struct zm_route_info {
	char dst[64];		/* "default" for a /0 */
	char via[48];
	char dev[IFNAMSIZ];
	char protocol[16];
	char scope[16];
	char type[16];
	int family;
	unsigned int metric;
	unsigned int table;
};

int zm_route_add(struct zm_ns *ns, const struct zm_route_spec *spec);
int zm_route_delete(struct zm_ns *ns, const struct zm_route_spec *spec);
/*
 * Unicast routes of one table (0: main) and family (AF_UNSPEC: both);
 * free *out with free().
 */
int zm_route_dump(struct zm_ns *ns, int family, unsigned int table,
		  struct zm_route_info **out, size_t *count);

#endif
