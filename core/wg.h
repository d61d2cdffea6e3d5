/* SPDX-License-Identifier: MIT */
/*
 * WireGuard: one API, two backends (after wireguard-tools' ipc.h).
 *
 * kernel:    the link is made with rtnetlink (kind "wireguard") and set/read
 *            over generic netlink in the namespace that holds it.
 * userspace: wireguard-go, started in the birth namespace (where its UDP
 *            socket stays) with its interface moved to the target one, and
 *            set/read over the userspace API socket at
 *            /run/wireguard/NAME.sock, where the real `wg` finds it too.
 *
 * A device struct with presence flags says both "replace everything" and
 * "change just this" (wireguard-tools' containers.h).
 */
#ifndef ZM_WG_H
#define ZM_WG_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "key.h"

struct zm_ns;

#define ZM_WG_SOCKET_DIR "/run/wireguard"

enum zm_wg_backend {
	ZM_WG_AUTO = 0,		/* kernel when the module answers, else userspace */
	ZM_WG_KERNEL,
	ZM_WG_USERSPACE,
};

/* zm_wg_device.flags */
enum {
	ZM_WG_HAS_PRIVATE_KEY = 1U << 0,
	ZM_WG_HAS_LISTEN_PORT = 1U << 1,
	ZM_WG_HAS_FWMARK = 1U << 2,
	ZM_WG_REPLACE_PEERS = 1U << 3,
};

/* zm_wg_peer.flags */
enum {
	ZM_WGPEER_HAS_PRESHARED_KEY = 1U << 0,
	ZM_WGPEER_HAS_ENDPOINT = 1U << 1,
	ZM_WGPEER_HAS_KEEPALIVE = 1U << 2,
	ZM_WGPEER_REPLACE_ALLOWEDIPS = 1U << 3,
	ZM_WGPEER_REMOVE_ME = 1U << 4,
	ZM_WGPEER_UPDATE_ONLY = 1U << 5,
};

struct zm_wg_allowedip {
	uint16_t family;	/* AF_INET / AF_INET6 */
	uint8_t cidr;
	union {
		struct in_addr ip4;
		struct in6_addr ip6;
	};
};

struct zm_wg_peer {
	uint32_t flags;
	uint8_t public_key[ZM_KEY_LEN];
	struct zm_key *preshared_key;	/* owned; sodium memory */
	union {
		struct sockaddr addr;
		struct sockaddr_in addr4;
		struct sockaddr_in6 addr6;
	} endpoint;
	uint16_t persistent_keepalive;	/* seconds, 0 = off */
	struct zm_wg_allowedip *allowedips;	/* owned */
	size_t n_allowedips;
	/* Read back only. */
	int64_t last_handshake_sec;
	int64_t last_handshake_nsec;
	uint64_t rx_bytes;
	uint64_t tx_bytes;
};

struct zm_wg_device {
	char name[IFNAMSIZ];
	uint32_t flags;
	struct zm_key *private_key;	/* owned; sodium memory */
	uint16_t listen_port;
	uint32_t fwmark;
	struct zm_wg_peer *peers;	/* owned array */
	size_t n_peers;
	/* Read back only. */
	uint8_t public_key[ZM_KEY_LEN];
	bool has_public_key;
	int ifindex;
	enum zm_wg_backend backend;
};

/* Frees the device, its peers, allowed IPs and keys (wiping them). */
void zm_wg_device_free(struct zm_wg_device *dev);

struct zm_wg_create {
	const char *name;
	struct zm_ns *birth;	/* keeps the UDP socket */
	struct zm_ns *target;	/* gets the interface */
	unsigned int mtu;	/* 0: the backend's default */
	enum zm_wg_backend backend;
	/* userspace only */
	const char *program;	/* NULL: "wireguard-go" from PATH */
	const char *log_path;	/* daemon output; NULL: /dev/null */
	unsigned int timeout_ms;	/* for the API socket; 0: 5000 */
};

/* 1 when the kernel's WireGuard answers (genl family), 0 when not. */
int zm_wg_kernel_available(void);
/* Which backend zm_wg_create would use for this request. */
enum zm_wg_backend zm_wg_resolve_backend(enum zm_wg_backend wanted);

/* Create; *pid is the userspace daemon's, 0 for the kernel backend. */
int zm_wg_create(const struct zm_wg_create *c, pid_t *pid);
/*
 * Apply DEV to the interface DEV->name in ns. The backend is the one that
 * serves it: a userspace API socket for the name, else the kernel. DEV is
 * well-formed (its parts made by zm_wg_parse_*, as the bindings do): the
 * kernel backend splits a large update, and a part refused half-way
 * would leave the earlier parts applied.
 */
int zm_wg_set(struct zm_ns *ns, const struct zm_wg_device *dev);
int zm_wg_get(struct zm_ns *ns, const char *name, struct zm_wg_device **out);
/*
 * Userspace: stop the daemon (and the socket); both: remove the link from
 * ns. BIRTH (may be NULL): also end daemons for NAME started there that do
 * not serve yet, as a create killed half-way leaves them.
 */
int zm_wg_delete(struct zm_ns *ns, struct zm_ns *birth, const char *name);
/*
 * Pids of the daemons for NAME living in BIRTH (one still starting, or the
 * serving one); free with free().
 */
int zm_wg_strays(struct zm_ns *birth, const char *name, pid_t **pids,
		 size_t *count);
/* The pid serving NAME over the userspace API, or -errno (dead: -ENOENT…). */
int zm_wg_userspace_pid(const char *name);

/* Parsing helpers shared by both backends and the bindings. */
int zm_wg_parse_allowedip(const char *text, struct zm_wg_allowedip *out);
/* "192.0.2.1:51820" or "[2001:db8::1]:51820"; no host names. */
int zm_wg_parse_endpoint(const char *text, struct zm_wg_peer *peer);
/* Back to text: "a.b.c.d:port" / "[v6]:port"; buf of at least 64 bytes. */
void zm_wg_format_endpoint(const struct zm_wg_peer *peer, char *buf,
			   size_t len);
void zm_wg_format_allowedip(const struct zm_wg_allowedip *a, char *buf,
			    size_t len);

#endif
