/* SPDX-License-Identifier: MIT */
/* Strict parsing of IP addresses and prefixes ("10.1.1.1/24", "fd00::/64"). */
#ifndef ZM_IP_H
#define ZM_IP_H

#include <stdbool.h>

struct zm_cidr {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned int prefix;	/* 32/128 when the text had none */
	bool has_prefix;
};

/* 0, or -EINVAL with the reason in zm_err_text(). */
int zm_cidr_parse(const char *text, struct zm_cidr *out);
/* An address without a prefix. */
int zm_ip_parse(const char *text, struct zm_cidr *out);
/* Address length in bytes for the family. */
unsigned int zm_ip_len(int family);

#endif
