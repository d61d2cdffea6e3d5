/* SPDX-License-Identifier: MIT */
/* IPv4 and IPv6 interface addresses. */
#ifndef ZM_ADDR_H
#define ZM_ADDR_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>

struct zm_ns;

struct zm_addr_info {
	char dev[IFNAMSIZ];
	char cidr[64];		/* "10.1.1.1/24" */
	char scope[16];		/* "global", "link", "host" */
	int index;
	int family;
	unsigned int flags;	/* IFA_F_* */
};

struct zm_addr_opts {
	bool replace;		/* update if present instead of -EEXIST */
	bool nodad;		/* IPv6: usable at once, no duplicate detection */
};

int zm_addr_add(struct zm_ns *ns, const char *dev, const char *cidr,
		const struct zm_addr_opts *opts);
int zm_addr_delete(struct zm_ns *ns, const char *dev, const char *cidr);
/* The name of an rtnetlink scope ("global", "link", "host" …). */
void zm_scope_name(unsigned int scope, char *buf, size_t len);
/* Every address of ns (dev NULL) or of one link; free *out with free(). */
int zm_addr_dump(struct zm_ns *ns, const char *dev, struct zm_addr_info **out,
		 size_t *count);

#endif
