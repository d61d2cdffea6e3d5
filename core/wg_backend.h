/* SPDX-License-Identifier: MIT */
/* The two WireGuard backends behind wg.h. Only wg.c calls these. */
#ifndef ZM_WG_BACKEND_H
#define ZM_WG_BACKEND_H

#include "wg.h"

/* kernel (wg_kernel.c): rtnetlink + generic netlink via libmnl */
int zm_wg_kernel_probe(void);
/* Link of kind "wireguard" born in c->birth, moved to c->target. */
int zm_wg_kernel_create(const struct zm_wg_create *c);
/* WG_CMD_SET_DEVICE, split over several messages for large peer lists. */
int zm_wg_kernel_set(struct zm_ns *ns, const struct zm_wg_device *dev);
/* WG_CMD_GET_DEVICE, every part of the dump read and merged. */
int zm_wg_kernel_get(struct zm_ns *ns, const char *name,
		     struct zm_wg_device **out);

/* userspace (wg_uapi.c): wireguard-go + the userspace API socket */
int zm_wg_uapi_create(const struct zm_wg_create *c, pid_t *pid);
int zm_wg_uapi_set(const struct zm_wg_device *dev);
int zm_wg_uapi_get(const char *name, struct zm_wg_device **out);
/* 1 when a daemon answers on NAME's socket. */
int zm_wg_uapi_serves(const char *name);
int zm_wg_uapi_pid(const char *name);
/* Stop the daemon serving NAME and remove a stale socket. */
int zm_wg_uapi_stop(const char *name, unsigned int grace_ms);
/* Remove NAME's socket if no daemon answers on it. */
void zm_wg_uapi_forget(const char *name);
/* Daemons (PROGRAM, NULL: wireguard-go) for NAME living in BIRTH. */
int zm_wg_uapi_strays(const struct zm_ns *birth, const char *program,
		      const char *name, pid_t **pids, size_t *count);
/* SIGKILL them and wait until they are gone; how many, or -errno. */
int zm_wg_uapi_end_strays(const struct zm_ns *birth, const char *program,
			  const char *name);

/* TUNs handed to wireguard-go (wg_tun.c) */
/* The daemon's PATH: what it runs with, whatever the caller's is. */
#define ZM_WG_DAEMON_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
enum zm_wg_tun_mode {
	ZM_WG_TUN_OWN,	/* the daemon makes its own (an unknown release) */
	ZM_WG_TUN_PI,	/* with the packet-information header */
	ZM_WG_TUN_VNET,	/* IFF_NO_PI | IFF_VNET_HDR */
};
/* PROGRAM found as execvp(3) would (the caller's PATH), into PATH. */
int zm_wg_tun_resolve(const char *program, char *path, size_t size);
/* How the wireguard-go at PATH takes a TUN, from its --version. */
enum zm_wg_tun_mode zm_wg_tun_mode(const char *path);
/* A TUN NAME made in NS (MTU 0: the kernel's); its fd or -errno. */
int zm_wg_tun_open(const struct zm_ns *ns, const char *name,
		   enum zm_wg_tun_mode mode, unsigned int mtu);

#endif
