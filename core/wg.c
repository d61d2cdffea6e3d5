// SPDX-License-Identifier: MIT
/* WireGuard: backend choice, shared parsing, and freeing. */
#include "wg.h"
#include "err.h"
#include "ip.h"
#include "link.h"
#include "netns.h"
#include "wg_backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zm_wg_device_free(struct zm_wg_device *dev)
{
	size_t i;

	if (!dev)
		return;
	for (i = 0; i < dev->n_peers; i++) {
		zm_key_free(dev->peers[i].preshared_key);
		free(dev->peers[i].allowedips);
	}
	free(dev->peers);
	zm_key_free(dev->private_key);
	free(dev);
}

int zm_wg_kernel_available(void)
{
	return zm_wg_kernel_probe();
}

enum zm_wg_backend zm_wg_resolve_backend(enum zm_wg_backend wanted)
{
	if (wanted != ZM_WG_AUTO)
		return wanted;
	return zm_wg_kernel_probe() == 1 ? ZM_WG_KERNEL : ZM_WG_USERSPACE;
}

/* Every entry point: forget old error text, refuse an invalid name. */
static int begin(const char *name)
{
	zm_err_clear();
	if (zm_link_name_valid(name))
		return 0;
	zm_err_set("invalid WireGuard interface name");
	return -EINVAL;
}

int zm_wg_create(const struct zm_wg_create *c, pid_t *pid)
{
	int err = begin(c->name);

	*pid = 0;
	if (err)
		return err;
	switch (zm_wg_resolve_backend(c->backend)) {
	case ZM_WG_KERNEL:
		return zm_wg_kernel_create(c);
	case ZM_WG_USERSPACE:
		return zm_wg_uapi_create(c, pid);
	default:
		return -EINVAL;
	}
}

int zm_wg_set(struct zm_ns *ns, const struct zm_wg_device *dev)
{
	int err = begin(dev->name);

	if (err)
		return err;
	if (zm_wg_uapi_serves(dev->name) == 1)
		return zm_wg_uapi_set(dev);
	return zm_wg_kernel_set(ns, dev);
}

int zm_wg_get(struct zm_ns *ns, const char *name, struct zm_wg_device **out)
{
	int err = begin(name);

	*out = NULL;
	if (err)
		return err;
	if (zm_wg_uapi_serves(name) == 1) {
		err = zm_wg_uapi_get(name, out);
		if (!err)
			(*out)->backend = ZM_WG_USERSPACE;
		return err;
	}
	err = zm_wg_kernel_get(ns, name, out);
	if (!err)
		(*out)->backend = ZM_WG_KERNEL;
	return err;
}

int zm_wg_delete(struct zm_ns *ns, struct zm_ns *birth, const char *name)
{
	int err = begin(name), ended = 0;

	if (err)
		return err;
	/* The serving daemon first, gracefully; then any still starting. */
	if (zm_wg_uapi_serves(name) == 1) {
		err = zm_wg_uapi_stop(name, 2000);
		if (err)
			return err;
		ended = 1;
	}
	if (birth) {
		err = zm_wg_uapi_end_strays(birth, NULL, name);
		if (err < 0)
			return err;
		ended += err;
	}
	err = zm_link_delete(ns, name);
	/* A TUN link goes with its daemon: none left is what was asked. */
	if (ended && (err == -ENODEV || err == -ENOENT)) {
		zm_err_clear();
		err = 0;
	}
	/* A daemon that died, or ended just now, leaves its socket behind. */
	zm_wg_uapi_forget(name);
	return err;
}

int zm_wg_strays(struct zm_ns *birth, const char *name, pid_t **pids,
		 size_t *count)
{
	int err = begin(name);

	*pids = NULL;
	*count = 0;
	return err ? err : zm_wg_uapi_strays(birth, NULL, name, pids, count);
}

int zm_wg_userspace_pid(const char *name)
{
	int err = begin(name);

	return err ? err : zm_wg_uapi_pid(name);
}

int zm_wg_parse_allowedip(const char *text, struct zm_wg_allowedip *out)
{
	struct zm_cidr c;
	int err = zm_cidr_parse(text, &c);

	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	out->family = (uint16_t)c.family;
	out->cidr = (uint8_t)c.prefix;
	memcpy(out->family == AF_INET ? (void *)&out->ip4 : (void *)&out->ip6,
	       c.addr, zm_ip_len(c.family));
	return 0;
}

int zm_wg_parse_endpoint(const char *text, struct zm_wg_peer *peer)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *port_text;
	unsigned long port;
	struct zm_cidr addr;
	size_t len;
	char *end;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			goto bad;
		len = (size_t)(close - text - 1);
		if (len >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, len);
		port_text = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			goto bad;
		len = (size_t)(colon - text);
		if (len >= sizeof(host))
			goto bad;
		memcpy(host, text, len);
		port_text = colon + 1;
	}
	host[len] = '\0';
	errno = 0;
	port = strtoul(port_text, &end, 10);
	if (!*port_text || *end || errno || port == 0 || port > 65535 ||
	    port_text[0] == '-' || port_text[0] == '+')
		goto bad;
	if (zm_ip_parse(host, &addr))
		goto bad;
	if ((addr.family == AF_INET6) != (text[0] == '['))
		goto bad;
	memset(&peer->endpoint, 0, sizeof(peer->endpoint));
	if (addr.family == AF_INET) {
		peer->endpoint.addr4.sin_family = AF_INET;
		peer->endpoint.addr4.sin_port = htons((uint16_t)port);
		memcpy(&peer->endpoint.addr4.sin_addr, addr.addr, 4);
	} else {
		peer->endpoint.addr6.sin6_family = AF_INET6;
		peer->endpoint.addr6.sin6_port = htons((uint16_t)port);
		memcpy(&peer->endpoint.addr6.sin6_addr, addr.addr, 16);
	}
	return 0;
bad:
	zm_err_set("'%s' is not an endpoint (a.b.c.d:port or [v6]:port)", text);
	return -EINVAL;
}

void zm_wg_format_endpoint(const struct zm_wg_peer *peer, char *buf,
			   size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (peer->endpoint.addr.sa_family == AF_INET) {
		inet_ntop(AF_INET, &peer->endpoint.addr4.sin_addr, host,
			  sizeof(host));
		snprintf(buf, len, "%s:%u", host,
			 ntohs(peer->endpoint.addr4.sin_port));
	} else if (peer->endpoint.addr.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &peer->endpoint.addr6.sin6_addr, host,
			  sizeof(host));
		snprintf(buf, len, "[%s]:%u", host,
			 ntohs(peer->endpoint.addr6.sin6_port));
	} else if (len) {
		buf[0] = '\0';
	}
}

void zm_wg_format_allowedip(const struct zm_wg_allowedip *a, char *buf,
			    size_t len)
{
	char host[INET6_ADDRSTRLEN];

	inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->ip4 :
						    (const void *)&a->ip6,
		  host, sizeof(host));
	snprintf(buf, len, "%s/%u", host, a->cidr);
}
