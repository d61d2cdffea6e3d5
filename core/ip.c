// SPDX-License-Identifier: MIT
#include "ip.h"
#include "err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned int zm_ip_len(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

int zm_ip_parse(const char *text, struct zm_cidr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, out->addr) == 1) {
		out->family = AF_INET;
		out->prefix = 32;
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->addr) == 1) {
		out->family = AF_INET6;
		out->prefix = 128;
		return 0;
	}
	zm_err_set("'%s' is not an IPv4 or IPv6 address", text);
	return -EINVAL;
}

int zm_cidr_parse(const char *text, struct zm_cidr *out)
{
	char buf[64];
	const char *slash = strchr(text, '/');
	unsigned long prefix;
	char *end;
	size_t len;
	int err;

	if (!slash)
		return zm_ip_parse(text, out);
	len = (size_t)(slash - text);
	if (len >= sizeof(buf)) {
		zm_err_set("'%s' is not an address/prefix", text);
		return -EINVAL;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	err = zm_ip_parse(buf, out);
	if (err) {
		zm_err_set("'%s' is not an address/prefix", text);
		return err;
	}
	errno = 0;
	prefix = strtoul(slash + 1, &end, 10);
	/* Digits only, no leading zero: as strict as zmesh.ip. */
	if (!slash[1] || *end || errno || slash[1] < '0' || slash[1] > '9' ||
	    (slash[1] == '0' && slash[2]) ||
	    prefix > zm_ip_len(out->family) * 8) {
		zm_err_set("'%s' has an invalid prefix length", text);
		return -EINVAL;
	}
	out->prefix = (unsigned int)prefix;
	out->has_prefix = true;
	return 0;
}
