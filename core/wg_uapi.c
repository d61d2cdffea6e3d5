// SPDX-License-Identifier: MIT
/*
 * The userspace backend: wireguard-go, configured over the cross-platform
 * userspace API (wireguard.com/xplatform) on /run/wireguard/NAME.sock.
 * Keys cross this file only in sodium memory, wiped after use.
 */
#include "err.h"
#include "link.h"
#include "netns.h"
#include "nl.h"
#include "wg.h"
#include "wg_backend.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <sodium.h>

#define IO_BUF 4096

/*
 * What wireguard-go itself asks for since v0.0.20230223 (SO_RCVBUFFORCE,
 * SO_SNDBUFFORCE); the kernel doubles it.
 */
#define UDP_BUFFER (7 << 20)

static int socket_path(const char *name, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s.sock",
			     ZM_WG_SOCKET_DIR, name) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static int uapi_connect(const char *name)
{
	struct sockaddr_un sun;
	int fd, err;

	err = socket_path(name, &sun);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int zm_wg_uapi_serves(const char *name)
{
	int fd = uapi_connect(name);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int zm_wg_uapi_pid(const char *name)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd, err = 0;

	fd = uapi_connect(name);
	if (fd < 0) {
		zm_err_set("no userspace WireGuard serves '%s'", name);
		return fd == -ECONNREFUSED ? -ENOENT : fd;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
		err = -errno;
	close(fd);
	if (err)
		return err;
	/*
	 * SO_PEERCRED names the process that called listen(). wireguard-go
	 * without -f (as wg-quick starts it) listens, hands the socket to a
	 * child and exits: that pid is gone. Never signal a stranger.
	 */
	if (!zm_pid_alive(cred.pid)) {
		zm_err_set("the daemon serving '%s' is unknown (pid %d, which opened its socket, has exited)",
			   name, cred.pid);
		return -ESRCH;
	}
	return cred.pid;
}

/*
 * 1 when PID runs PROGRAM (by base name; any when NULL) for interface
 * NAME ("… -f NAME").
 */
static int runs_daemon_for(pid_t pid, const char *program, const char *name)
{
	char buf[512], *base, *last;
	ssize_t n = zm_proc_read(pid, "cmdline", buf, sizeof(buf));

	if (n <= 0)
		return 0;
	base = strrchr(buf, '/');
	base = base ? base + 1 : buf;
	/* argv ends with the interface name: the last NUL-separated word. */
	if (buf[n - 1] == '\0')
		n--;
	buf[n] = '\0';
	last = memrchr(buf, '\0', (size_t)n);
	last = last ? last + 1 : buf;
	return (!program || !strcmp(base, program)) && !strcmp(last, name);
}

/*
 * The daemon's link listener: wireguard-go subscribes to the link and
 * address events of the namespace it starts in (the ndmz), to follow its
 * own interface by index. That interface lives in the NR, so the listener
 * only ever hears the ndmz's other links (every NR's veth and TUN), which
 * wake every daemon on the node: a node with 200 NRs had 200 daemons parse
 * each event. Its up state comes from its once-a-second TUN poll, made
 * for namespaces; route events (its sticky source addresses) stay.
 */
static void mute_link_events(int fd)
{
	static const int groups[] = { RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
				      RTNLGRP_IPV6_IFADDR };
	size_t i;

	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		setsockopt(fd, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &groups[i],
			   sizeof(groups[i]));
}

/*
 * Tune FD of PIDFD's process: a UDP socket gets large buffers, a
 * rtnetlink one stops hearing link events.
 */
static int tune_socket(int pidfd, int target)
{
	int fd, type, domain, proto, have, size = UDP_BUFFER, err = 0;
	socklen_t len = sizeof(int);

	fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
	if (fd < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len))
		goto out;
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len))
		goto out;
	len = sizeof(proto);
	if (domain == AF_NETLINK &&
	    !getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) &&
	    proto == NETLINK_ROUTE) {
		mute_link_events(fd);
		goto out;
	}
	if (type != SOCK_DGRAM || (domain != AF_INET && domain != AF_INET6))
		goto out;
	len = sizeof(have);
	if (!getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &have, &len) && have >= size)
		goto out;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		err = -errno;
out:
	close(fd);
	return err;
}

/*
 * wireguard-go before v0.0.20230223 (Debian 12 ships v0.0.20220316)
 * leaves its UDP sockets at net.core.rmem_default (208 KiB; global, and
 * read-only inside a namespace): a burst of some 90 packets overflows
 * the receiving one (UdpRcvbufErrors) and TCP through the tunnel backs
 * off. Give them what newer versions take themselves, from outside: each
 * UDP socket of the daemon answering on FD, taken with pidfd_getfd(2)
 * (its link listener is muted on the way: mute_link_events). It binds
 * again on every port change and every time its link comes up (which it
 * notices up to a second late), so this runs after every set and get; a
 * socket already raised costs one getsockopt.
 */
static int tune_daemon(int fd, const char *name)
{
	char path[64], link[32];
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct dirent *e;
	int pidfd, err = 0, ret;
	ssize_t n;
	DIR *dir;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
		return -errno;
	pidfd = syscall(SYS_pidfd_open, cred.pid, 0);
	if (pidfd < 0)
		return -errno;
	/*
	 * The pid that listened: a daemon started without -f handed the
	 * socket to a child and exited, and the pid may be a stranger's now.
	 */
	if (!runs_daemon_for(cred.pid, NULL, name)) {
		err = -ESRCH;
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", cred.pid);
	dir = opendir(path);
	if (!dir) {
		err = -errno;
		goto out;
	}
	while ((e = readdir(dir))) {
		n = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "socket:", 7))
			continue;
		ret = tune_socket(pidfd, atoi(e->d_name));
		if (ret && !err)
			err = ret;
	}
	closedir(dir);
out:
	close(pidfd);
	return err;
}

/* A request writer whose buffer may hold keys: sodium memory. */
struct writer {
	int fd;
	int err;
	size_t len;
	char *buf;
};

static int writer_init(struct writer *w, int fd)
{
	w->fd = fd;
	w->err = 0;
	w->len = 0;
	w->buf = sodium_malloc(IO_BUF);
	return w->buf ? 0 : -ENOMEM;
}

static void writer_flush(struct writer *w)
{
	size_t off = 0;

	while (!w->err && off < w->len) {
		ssize_t n = send(w->fd, w->buf + off, w->len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			w->err = -errno;
		else
			off += (size_t)n;
	}
	w->len = 0;
}

static void __attribute__((format(printf, 2, 3)))
writer_line(struct writer *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->len, IO_BUF - w->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= IO_BUF) {
		w->err = -EINVAL;
		return;
	}
	if (w->len + (size_t)n >= IO_BUF) {
		writer_flush(w);
		va_start(ap, fmt);
		n = vsnprintf(w->buf, IO_BUF, fmt, ap);
		va_end(ap);
	}
	w->len += (size_t)n;
}

static void writer_free(struct writer *w)
{
	sodium_free(w->buf);
}

/* Line reader over the socket, its buffer in sodium memory too. */
struct reader {
	int fd;
	size_t len, off;
	char *buf;
};

static int reader_init(struct reader *r, int fd)
{
	r->fd = fd;
	r->len = r->off = 0;
	r->buf = sodium_malloc(IO_BUF + 1);
	return r->buf ? 0 : -ENOMEM;
}

/* 1 with *line set (NUL-terminated, without '\n'), 0 at EOF, or -errno. */
static int reader_line(struct reader *r, char **line)
{
	for (;;) {
		char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
		ssize_t n;

		if (nl) {
			*nl = '\0';
			*line = r->buf + r->off;
			r->off = (size_t)(nl - r->buf) + 1;
			return 1;
		}
		if (r->off) {
			memmove(r->buf, r->buf + r->off, r->len - r->off);
			r->len -= r->off;
			r->off = 0;
		}
		if (r->len >= IO_BUF)
			return -EMSGSIZE;
		n = recv(r->fd, r->buf + r->len, IO_BUF - r->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		r->len += (size_t)n;
	}
}

static void reader_free(struct reader *r)
{
	sodium_free(r->buf);
}

/* Read "errno=N" and the blank line that ends every answer. */
static int read_status(struct reader *r)
{
	char *line;
	int ret, status = -EPROTO;

	while ((ret = reader_line(r, &line)) == 1) {
		if (!line[0])
			return status;
		if (!strncmp(line, "errno=", 6))
			status = -atoi(line + 6);
	}
	return ret < 0 ? ret : -EPROTO;
}

static void hex_key(const uint8_t *key, char *hex)
{
	sodium_bin2hex(hex, ZM_KEY_LEN * 2 + 1, key, ZM_KEY_LEN);
}

static void write_peer(struct writer *w, const struct zm_wg_peer *p, char *hex)
{
	char text[96];
	size_t i;

	hex_key(p->public_key, hex);
	writer_line(w, "public_key=%s\n", hex);
	if (p->flags & ZM_WGPEER_REMOVE_ME) {
		writer_line(w, "remove=true\n");
		return;
	}
	if (p->flags & ZM_WGPEER_UPDATE_ONLY)
		writer_line(w, "update_only=true\n");
	if (p->flags & ZM_WGPEER_HAS_PRESHARED_KEY) {
		if (p->preshared_key)
			hex_key(p->preshared_key->secret, hex);
		else
			memset(hex, '0', ZM_KEY_LEN * 2);
		hex[ZM_KEY_LEN * 2] = '\0';
		writer_line(w, "preshared_key=%s\n", hex);
	}
	if (p->flags & ZM_WGPEER_HAS_ENDPOINT) {
		zm_wg_format_endpoint(p, text, sizeof(text));
		writer_line(w, "endpoint=%s\n", text);
	}
	if (p->flags & ZM_WGPEER_HAS_KEEPALIVE)
		writer_line(w, "persistent_keepalive_interval=%u\n",
			    p->persistent_keepalive);
	if (p->flags & ZM_WGPEER_REPLACE_ALLOWEDIPS)
		writer_line(w, "replace_allowed_ips=true\n");
	for (i = 0; i < p->n_allowedips; i++) {
		zm_wg_format_allowedip(&p->allowedips[i], text, sizeof(text));
		writer_line(w, "allowed_ip=%s\n", text);
	}
}

int zm_wg_uapi_set(const struct zm_wg_device *dev)
{
	struct writer w;
	struct reader r;
	char *hex;
	size_t i;
	int fd, err;

	if (zm_key_init())
		return -EIO;
	fd = uapi_connect(dev->name);
	if (fd < 0) {
		zm_err_set("userspace WireGuard '%s' does not answer", dev->name);
		return fd;
	}
	hex = sodium_malloc(ZM_KEY_LEN * 2 + 1);
	err = hex ? writer_init(&w, fd) : -ENOMEM;
	if (err)
		goto out_close;
	err = reader_init(&r, fd);
	if (err)
		goto out_writer;

	writer_line(&w, "set=1\n");
	if (dev->flags & ZM_WG_HAS_PRIVATE_KEY) {
		if (dev->private_key)
			hex_key(dev->private_key->secret, hex);
		else
			memset(hex, '0', ZM_KEY_LEN * 2);
		hex[ZM_KEY_LEN * 2] = '\0';
		writer_line(&w, "private_key=%s\n", hex);
	}
	if (dev->flags & ZM_WG_HAS_LISTEN_PORT)
		writer_line(&w, "listen_port=%u\n", dev->listen_port);
	if (dev->flags & ZM_WG_HAS_FWMARK)
		writer_line(&w, "fwmark=%u\n", dev->fwmark);
	if (dev->flags & ZM_WG_REPLACE_PEERS)
		writer_line(&w, "replace_peers=true\n");
	for (i = 0; i < dev->n_peers; i++)
		write_peer(&w, &dev->peers[i], hex);
	writer_line(&w, "\n");
	writer_flush(&w);
	err = w.err;
	if (!err)
		err = read_status(&r);
	if (err)
		zm_err_set("userspace WireGuard '%s' refused the change",
			   dev->name);
	else
		/* Tuning only: the change is made, whatever this returns. */
		tune_daemon(fd, dev->name);
	reader_free(&r);
out_writer:
	writer_free(&w);
out_close:
	sodium_free(hex);
	close(fd);
	return err;
}

/* Parse one "key=value" of a get answer into dev. */
static int parse_get_line(struct zm_wg_device *dev, char *key, char *value)
{
	struct zm_wg_peer *peer = dev->n_peers ? &dev->peers[dev->n_peers - 1] :
						 NULL;
	unsigned long long num = strtoull(value, NULL, 10);

	if (!strcmp(key, "private_key")) {
		int err = zm_key_generate(&dev->private_key);

		if (err)
			return err;
		if (sodium_hex2bin(dev->private_key->secret, ZM_KEY_LEN, value,
				   strlen(value), NULL, NULL, NULL))
			return -EPROTO;
		dev->flags |= ZM_WG_HAS_PRIVATE_KEY;
		if (!zm_key_public(dev->private_key, dev->public_key))
			dev->has_public_key = true;
	} else if (!strcmp(key, "listen_port")) {
		dev->listen_port = (uint16_t)num;
		dev->flags |= ZM_WG_HAS_LISTEN_PORT;
	} else if (!strcmp(key, "fwmark")) {
		dev->fwmark = (uint32_t)num;
		dev->flags |= ZM_WG_HAS_FWMARK;
	} else if (!strcmp(key, "public_key")) {
		if (zm_grow((void **)&dev->peers, dev->n_peers,
			    sizeof(*dev->peers)))
			return -ENOMEM;
		peer = &dev->peers[dev->n_peers++];
		memset(peer, 0, sizeof(*peer));
		if (sodium_hex2bin(peer->public_key, ZM_KEY_LEN, value,
				   strlen(value), NULL, NULL, NULL))
			return -EPROTO;
	} else if (!peer) {
		return 0;	/* a device field we do not keep */
	} else if (!strcmp(key, "endpoint")) {
		if (zm_wg_parse_endpoint(value, peer))
			return -EPROTO;
		peer->flags |= ZM_WGPEER_HAS_ENDPOINT;
	} else if (!strcmp(key, "preshared_key")) {
		static const char zero[ZM_KEY_LEN * 2 + 1] =
			"0000000000000000000000000000000000000000000000000000000000000000";

		if (strcmp(value, zero))
			peer->flags |= ZM_WGPEER_HAS_PRESHARED_KEY;
	} else if (!strcmp(key, "persistent_keepalive_interval")) {
		peer->persistent_keepalive = (uint16_t)num;
		if (num)
			peer->flags |= ZM_WGPEER_HAS_KEEPALIVE;
	} else if (!strcmp(key, "last_handshake_time_sec")) {
		peer->last_handshake_sec = (int64_t)num;
	} else if (!strcmp(key, "last_handshake_time_nsec")) {
		peer->last_handshake_nsec = (int64_t)num;
	} else if (!strcmp(key, "rx_bytes")) {
		peer->rx_bytes = num;
	} else if (!strcmp(key, "tx_bytes")) {
		peer->tx_bytes = num;
	} else if (!strcmp(key, "allowed_ip")) {
		if (zm_grow((void **)&peer->allowedips, peer->n_allowedips,
			    sizeof(*peer->allowedips)))
			return -ENOMEM;
		if (zm_wg_parse_allowedip(value,
					  &peer->allowedips[peer->n_allowedips]))
			return -EPROTO;
		peer->n_allowedips++;
	}
	return 0;
}

int zm_wg_uapi_get(const char *name, struct zm_wg_device **out)
{
	struct zm_wg_device *dev;
	struct reader r;
	char *line, *eq;
	int fd, err, ret, status = -EPROTO;

	*out = NULL;
	if (zm_key_init())
		return -EIO;
	fd = uapi_connect(name);
	if (fd < 0) {
		zm_err_set("userspace WireGuard '%s' does not answer", name);
		return fd;
	}
	dev = calloc(1, sizeof(*dev));
	err = dev ? reader_init(&r, fd) : -ENOMEM;
	if (err)
		goto out_close;
	snprintf(dev->name, sizeof(dev->name), "%s", name);
	if (send(fd, "get=1\n\n", 7, MSG_NOSIGNAL) != 7) {
		err = -errno;
		goto out_reader;
	}
	while ((ret = reader_line(&r, &line)) == 1) {
		if (!line[0])
			break;
		eq = strchr(line, '=');
		if (!eq) {
			err = -EPROTO;
			break;
		}
		*eq = '\0';
		if (!strcmp(line, "errno")) {
			status = -atoi(eq + 1);
			continue;
		}
		err = parse_get_line(dev, line, eq + 1);
		if (err)
			break;
	}
	if (!err && ret < 0)
		err = ret;
	if (!err)
		err = status;
	if (!err)
		tune_daemon(fd, name);
out_reader:
	reader_free(&r);
out_close:
	close(fd);
	if (err) {
		zm_err_set("cannot read userspace WireGuard '%s'", name);
		zm_wg_device_free(dev);
		return err;
	}
	*out = dev;
	return 0;
}

static void unlink_socket(const char *name)
{
	struct sockaddr_un sun;

	if (!socket_path(name, &sun))
		unlink(sun.sun_path);
}

void zm_wg_uapi_forget(const char *name)
{
	if (!zm_wg_uapi_serves(name))
		unlink_socket(name);
}

int zm_wg_uapi_stop(const char *name, unsigned int grace_ms)
{
	int pid;

	pid = zm_wg_uapi_pid(name);
	zm_err_clear();
	if (pid > 0 && zm_pid_end(pid, SIGTERM, grace_ms) &&
	    zm_pid_end(pid, SIGKILL, 2000)) {
		zm_err_set("wireguard-go for '%s' (pid %d) does not end", name,
			   pid);
		return -EBUSY;
	}
	/* A daemon that died leaves its socket behind. */
	unlink_socket(name);
	return 0;
}

int zm_wg_uapi_strays(const struct zm_ns *birth, const char *program,
		      const char *name, pid_t **pids, size_t *count)
{
	const char *prog = program ? program : "wireguard-go";
	const char *slash = strrchr(prog, '/');
	size_t i, kept = 0;
	pid_t *v;
	int err;

	err = zm_ns_pids(birth, &v, count);
	if (err)
		return err;
	for (i = 0; i < *count; i++)
		if (zm_pid_alive(v[i]) &&
		    runs_daemon_for(v[i], slash ? slash + 1 : prog, name))
			v[kept++] = v[i];
	*count = kept;
	*pids = v;
	return 0;
}

int zm_wg_uapi_end_strays(const struct zm_ns *birth, const char *program,
			  const char *name)
{
	size_t n, i;
	pid_t *pids;
	int err;

	err = zm_wg_uapi_strays(birth, program, name, &pids, &n);
	if (err)
		return err;
	for (i = 0; i < n && !err; i++)
		if (zm_pid_end(pids[i], SIGKILL, 2000)) {
			zm_err_set("wireguard-go for '%s' (pid %d) does not end",
				   name, pids[i]);
			err = -EBUSY;
		}
	free(pids);
	/* A socket a stray made before it died is stale now. */
	if (n && !err && !zm_wg_uapi_serves(name))
		unlink_socket(name);
	return err ? err : (int)n;
}

/*
 * Every signal to its default action, none blocked (a forked child only).
 * glibc refuses its own two (32, 33); Go leaves them alone.
 */
static void reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * Forked twice so that the daemon belongs to no one (init reaps it) and
 * outlives a short-lived zmesh. The middle child reports the daemon's pid;
 * a close-on-exec pipe reports a failed exec.
 */
static int spawn_daemon(const struct zm_wg_create *c, const char *path,
			const int tun[2], pid_t *out)
{
	const char *program = c->program ? c->program : "wireguard-go";
	int pid_pipe[2], exec_pipe[2], err, child_err = 0;
	pid_t mid, daemon_pid = 0;

	if (pipe2(pid_pipe, O_CLOEXEC))
		return -errno;
	if (pipe2(exec_pipe, O_CLOEXEC)) {
		err = -errno;
		close(pid_pipe[0]);
		close(pid_pipe[1]);
		return err;
	}
	mid = fork();
	if (mid < 0) {
		err = -errno;
		goto out;
	}
	if (mid == 0) {
		pid_t gc;

		setsid();
		if (setns(c->birth->fd, CLONE_NEWNET))
			_exit(1);
		gc = fork();
		if (gc == 0) {
			char *argv[] = { (char *)program, "-f", (char *)c->name,
					 NULL };
			int fd = open(c->log_path ? c->log_path : "/dev/null",
				      O_WRONLY | O_CREAT | O_APPEND, 0600);
			int devnull = open("/dev/null", O_RDONLY);
			int report = exec_pipe[1];
			/* Above the fd numbers they go to, before any dup2. */
			int t = tun[0] >= 0 ? fcntl(tun[0], F_DUPFD, 10) : -1;
			int ph = tun[1] >= 0 ? fcntl(tun[1], F_DUPFD, 10) : -1;

			if (fd < 0 || devnull < 0 ||
			    (tun[0] >= 0 && (t < 0 || ph < 0)))
				goto exec_failed;
			dup2(devnull, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			dup2(exec_pipe[1], 3);
			fcntl(3, F_SETFD, FD_CLOEXEC);
			report = 3;
			/* WG_TUN_FD=4; 5 only holds the placeholder. */
			if (t >= 0) {
				dup2(t, 4);
				dup2(ph, 5);
			}
			close_range(t >= 0 ? 6 : 4, ~0U, 0);
			/*
			 * Nor the caller's signals: an ignored one stays
			 * ignored across exec, and a blocked one stays
			 * blocked in every Go thread (SIGTERM pending for
			 * ever, SIGURG: no preemption).
			 */
			reset_signals();
			/*
			 * Only what it needs: the caller's environment
			 * (secrets, proxies, Go tuning) is none of its business.
			 */
			char *envp[] = {
				"PATH=" ZM_WG_DAEMON_PATH,
				"WG_PROCESS_FOREGROUND=1",
				t >= 0 ? "WG_TUN_FD=4" : NULL, NULL
			};

			execve(path, argv, envp);
exec_failed:
			err = errno;
			if (write(report, &err, sizeof(err)) < 0)
				_exit(126);
			_exit(127);
		}
		if (write(pid_pipe[1], &gc, sizeof(gc)) != sizeof(gc))
			_exit(1);
		_exit(gc > 0 ? 0 : 1);
	}
	close(pid_pipe[1]);
	close(exec_pipe[1]);
	pid_pipe[1] = exec_pipe[1] = -1;
	if (read(pid_pipe[0], &daemon_pid, sizeof(daemon_pid)) !=
	    sizeof(daemon_pid))
		daemon_pid = 0;
	while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
		;
	if (daemon_pid <= 0) {
		err = -ECHILD;
		zm_err_set("cannot start %s", program);
		goto out;
	}
	/* EOF once exec has succeeded; an errno when it failed. */
	if (read(exec_pipe[0], &child_err, sizeof(child_err)) ==
	    sizeof(child_err)) {
		err = -child_err;
		zm_err_set("cannot run %s", program);
		goto out;
	}
	*out = daemon_pid;
	err = 0;
out:
	close(pid_pipe[0]);
	close(exec_pipe[0]);
	if (pid_pipe[1] >= 0)
		close(pid_pipe[1]);
	if (exec_pipe[1] >= 0)
		close(exec_pipe[1]);
	return err;
}

/*
 * The last line of a daemon's log, for the error text of a daemon that
 * died at start (its log goes with a rolled-back NR). Empty when none.
 */
static void log_tail(const char *path, char *out, size_t size)
{
	char buf[512];
	ssize_t n;
	size_t len;
	off_t end;
	char *line;
	int fd;

	out[0] = '\0';
	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > (off_t)sizeof(buf) - 1)
		lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	len = strnlen(line, size - 1);
	memcpy(out, line, len);
	out[len] = '\0';
}

int zm_wg_uapi_create(const struct zm_wg_create *c, pid_t *pid)
{
	unsigned int timeout = c->timeout_ms ? c->timeout_ms : 5000;
	bool moves = c->birth->dev != c->target->dev ||
		     c->birth->ino != c->target->ino;
	enum zm_wg_tun_mode mode = ZM_WG_TUN_OWN;
	unsigned int waited = 0, mtu = c->mtu;
	struct zm_link_change change = { 0 };
	int tun[2] = { -1, -1 };	/* the TUN, its placeholder */
	char path[PATH_MAX];
	pid_t daemon_pid = 0;
	int err;

	if (zm_wg_uapi_serves(c->name)) {
		zm_err_set("a userspace WireGuard already serves '%s'", c->name);
		return -EEXIST;
	}
	/*
	 * A create killed half-way may have left a daemon that is still
	 * starting (no socket yet): it would take the name from under ours,
	 * and its placeholder goes with it.
	 */
	err = zm_wg_uapi_end_strays(c->birth, c->program, c->name);
	if (err < 0)
		return err;
	if (zm_link_index(c->target, c->name) >= 0 ||
	    zm_link_index(c->birth, c->name) >= 0) {
		zm_err_clear();
		zm_err_set("link '%s' already exists", c->name);
		return -EEXIST;
	}
	zm_err_clear();
	err = zm_wg_tun_resolve(c->program ? c->program : "wireguard-go",
				path, sizeof(path));
	if (err) {
		zm_err_set("cannot run %s", c->program ? c->program : "wireguard-go");
		return err;
	}
	if (mkdir(ZM_WG_SOCKET_DIR, 0755) && errno != EEXIST) {
		err = -errno;
		zm_err_set("cannot make %s", ZM_WG_SOCKET_DIR);
		return err;
	}
	/* What wireguard-go sets on a TUN it makes itself. */
	if (!mtu)
		mtu = 1420;
	if (moves)
		mode = zm_wg_tun_mode(path);
	if (mode != ZM_WG_TUN_OWN) {
		tun[0] = zm_wg_tun_open(c->target, c->name, mode, mtu);
		tun[1] = tun[0] < 0 ? tun[0] :
			 zm_wg_tun_open(c->birth, c->name, mode, 0);
		err = tun[1] < 0 ? tun[1] : 0;
	}
	if (!err)
		err = spawn_daemon(c, path, tun, &daemon_pid);
	/* The daemon holds them now: both go when it ends. */
	if (tun[0] >= 0)
		close(tun[0]);
	if (tun[1] >= 0)
		close(tun[1]);
	if (err)
		return err;
	/* Moving the link before the API socket answers kills the daemon. */
	while (!zm_wg_uapi_serves(c->name)) {
		if (!zm_pid_alive(daemon_pid)) {
			char last[200];

			log_tail(c->log_path, last, sizeof(last));
			zm_err_set("wireguard-go for '%s' exited at start%s%s",
				   c->name, last[0] ? ": " : "", last);
			err = -ECHILD;
			goto fail;
		}
		if (waited >= timeout) {
			zm_err_set("wireguard-go for '%s' did not answer in %u ms",
				   c->name, timeout);
			err = -ETIMEDOUT;
			goto fail;
		}
		/* It answers some 5 ms after exec: a coarse poll adds to that. */
		zm_sleep_ms(1);
		waited += 1;
	}
	if (mode == ZM_WG_TUN_OWN && moves) {
		change.has = ZM_LINK_SET_NETNS;
		change.netns = c->target;
		err = zm_link_set(c->birth, c->name, &change);
		if (err)
			goto fail;
	}
	if (mode == ZM_WG_TUN_OWN && c->mtu) {
		change.has = ZM_LINK_SET_MTU;
		change.mtu = c->mtu;
		err = zm_link_set(c->target, c->name, &change);
		if (err)
			goto fail;
	}
	*pid = daemon_pid;
	return 0;
fail:
	zm_pid_end(daemon_pid, SIGKILL, 2000);
	unlink_socket(c->name);
	return err;
}
