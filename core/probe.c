// SPDX-License-Identifier: MIT
#include "probe.h"
#include "err.h"
#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_FREEBIND
#define IP_FREEBIND 15
#endif

/* RFC 1071, over what the kernel leaves to a raw ICMP socket. */
static uint16_t checksum(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t sum = 0;

	while (len > 1) {
		sum += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

int zm_probe_open(struct zm_ns *ns, const struct in_addr *src)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, one = 1, err;

	zm_err_clear();
	fd = zm_ns_socket(ns, AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_ICMP);
	if (fd < 0) {
		zm_err_set("cannot open a raw ICMP socket in namespace %s",
			   zm_ns_label(ns));
		return fd;
	}
	/* The mesh address may come with the apply that follows. */
	if (setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)))
		goto fail;
	sin.sin_addr = *src;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)))
		goto fail;
	return fd;
fail:
	err = -errno;
	zm_err_set("cannot bind the probe socket");
	close(fd);
	return err;
}

int zm_probe_send(int fd, const struct in_addr *dst, uint16_t id,
		  uint16_t seq, const void *data, size_t len)
{
	unsigned char pkt[sizeof(struct icmphdr) + ZM_PROBE_DATA_MAX];
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = *dst };
	struct icmphdr *h = (struct icmphdr *)pkt;

	zm_err_clear();
	if (len > ZM_PROBE_DATA_MAX)
		return -EMSGSIZE;
	memset(h, 0, sizeof(*h));
	h->type = ICMP_ECHO;
	h->un.echo.id = htons(id);
	h->un.echo.sequence = htons(seq);
	if (len)
		memcpy(pkt + sizeof(*h), data, len);
	h->checksum = checksum(pkt, sizeof(*h) + len);
	if (sendto(fd, pkt, sizeof(*h) + len, MSG_DONTWAIT,
		   (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		int err = -errno;

		/* No route (a peer without AllowedIPs yet) is a lost probe. */
		zm_err_set("probe to %s", inet_ntoa(*dst));
		return err;
	}
	return 0;
}

int zm_probe_recv(int fd, struct zm_probe_msg *msgs, size_t max, size_t *n)
{
	unsigned char buf[2048];

	zm_err_clear();
	*n = 0;
	while (*n < max) {
		struct zm_probe_msg *m = &msgs[*n];
		const struct iphdr *ip = (const struct iphdr *)buf;
		const struct icmphdr *h;
		ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		size_t ihl;

		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -errno;
		}
		if ((size_t)got < sizeof(*ip))
			continue;
		ihl = (size_t)ip->ihl * 4;
		if (ihl < sizeof(*ip) || (size_t)got < ihl + sizeof(*h))
			continue;
		h = (const struct icmphdr *)(buf + ihl);
		if (h->type != ICMP_ECHO && h->type != ICMP_ECHOREPLY)
			continue;
		m->reply = h->type == ICMP_ECHOREPLY;
		m->from.s_addr = ip->saddr;
		m->id = ntohs(h->un.echo.id);
		m->seq = ntohs(h->un.echo.sequence);
		m->len = (size_t)got - ihl - sizeof(*h);
		if (m->len > ZM_PROBE_DATA_MAX)
			m->len = ZM_PROBE_DATA_MAX;
		memcpy(m->data, buf + ihl + sizeof(*h), m->len);
		(*n)++;
	}
	return 0;
}
