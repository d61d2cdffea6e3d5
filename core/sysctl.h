/* SPDX-License-Identifier: MIT */
/*
 * Per-namespace sysctls. Only net.* keys: everything else is global to the
 * machine and never Zero-Mesh's to change.
 */
#ifndef ZM_SYSCTL_H
#define ZM_SYSCTL_H

#include <stddef.h>

struct zm_ns;

/* 1 when KEY is a net.* sysctl name ("net.ipv4.ip_forward" or net/ipv4/…). */
int zm_sysctl_key_valid(const char *key);
int zm_sysctl_set(struct zm_ns *ns, const char *key, const char *value);
/* The value without its trailing newline. */
int zm_sysctl_get(struct zm_ns *ns, const char *key, char *buf, size_t len);

#endif
