/* SPDX-License-Identifier: MIT */
/*
 * Named network namespaces, the iproute2 way (/run/netns/NAME bind mounts),
 * and handles for acting inside one without leaving the calling thread there.
 */
#ifndef ZM_NETNS_H
#define ZM_NETNS_H

#include <stddef.h>
#include <sys/types.h>

#define ZM_NETNS_DIR "/run/netns"
#define ZM_NETNS_NAME_MAX 64

/*
 * An open namespace: the caller's own (name "") or a named one. Its
 * identity (the nsfs inode) keys the netlink sockets kept for it (nl.h).
 */
struct zm_ns {
	int fd;
	dev_t dev;
	ino_t ino;
	char name[ZM_NETNS_NAME_MAX + 1];
};

/* 1 when usable as a namespace name: [A-Za-z0-9_.-], 1..64, not "." or "..". */
int zm_netns_name_valid(const char *name);

int zm_netns_create(const char *name);
/*
 * Ends every process living in the namespace (SIGTERM, then SIGKILL after
 * grace_ms), then removes the name. Without the first step a namespace
 * outlives its name, unseen.
 */
int zm_netns_delete(const char *name, unsigned int grace_ms);
/* 1 when NAME names a live network namespace, 0 when not, or -errno. */
int zm_netns_exists(const char *name);
/* Sorted names; free with zm_strv_free(). */
int zm_netns_list(char ***names, size_t *count);
/* Processes whose network namespace is NAME's; free with free(). */
int zm_netns_pids(const char *name, pid_t **pids, size_t *count);

/* NULL or "" opens the caller's own namespace. */
int zm_ns_open(const char *name, struct zm_ns **out);
void zm_ns_close(struct zm_ns *ns);
/* "" for the caller's own namespace, for messages. */
const char *zm_ns_label(const struct zm_ns *ns);
/*
 * Run fn inside ns on the calling thread and come back before returning,
 * whatever fn returns. Sockets made by fn stay bound to ns.
 */
int zm_ns_run(const struct zm_ns *ns, int (*fn)(void *arg), void *arg);
/* Processes living in ns (the caller excepted); free with free(). */
int zm_ns_pids(const struct zm_ns *ns, pid_t **pids, size_t *count);
/* Processes: alive (not a zombie); signalled and waited for (1: alive). */
/* /proc/PID/WHAT into BUF, NUL-terminated: the bytes read, or -errno. */
ssize_t zm_proc_read(pid_t pid, const char *what, char *buf, size_t size);
int zm_pid_alive(pid_t pid);
int zm_pid_end(pid_t pid, int sig, unsigned int wait_ms);
void zm_sleep_ms(unsigned int ms);
/* A socket(2) made inside ns; returns the fd or -errno. */
int zm_ns_socket(const struct zm_ns *ns, int domain, int type, int protocol);

#endif
