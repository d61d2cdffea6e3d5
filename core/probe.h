/* SPDX-License-Identifier: MIT */
/*
 * Probes through the tunnels: ICMP echo over a raw socket made inside an
 * NR's namespace and bound to its mesh address. The far kernel answers an
 * echo, so a probe tells whether the path forwards without depending on
 * any daemon there; a request's payload carries the sender's state (which
 * aggregator it routes through), which a raw socket at the far end sees.
 */
#ifndef ZM_PROBE_H
#define ZM_PROBE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zm_ns;

#define ZM_PROBE_DATA_MAX 256

struct zm_probe_msg {
	bool reply;		/* echo reply; else an echo request */
	struct in_addr from;
	uint16_t id, seq;
	size_t len;
	unsigned char data[ZM_PROBE_DATA_MAX];	/* payload, cut to the max */
};

/* A raw ICMP socket in ns with source SRC (may not exist yet); its fd. */
int zm_probe_open(struct zm_ns *ns, const struct in_addr *src);
/* One echo request to DST carrying DATA. */
int zm_probe_send(int fd, const struct in_addr *dst, uint16_t id,
		  uint16_t seq, const void *data, size_t len);
/* What has arrived, up to MAX messages, without waiting; *n set. */
int zm_probe_recv(int fd, struct zm_probe_msg *msgs, size_t max, size_t *n);

#endif
