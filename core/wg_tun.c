// SPDX-License-Identifier: MIT
/*
 * The TUN a wireguard-go gets from us (WG_TUN_FD) instead of making its
 * own: made right in the NR, so that it never moves. The kernel waits out
 * an RCU grace period on every move of a link between namespaces (~17 ms
 * for a TUN, most of what creating a userspace interface cost).
 *
 * wireguard-go looks its TUN up by name in the namespace it runs in (the
 * ndmz, which keeps its UDP socket) and sets its MTU there, at start, and
 * exits when that fails. So a placeholder of the same name is made in the
 * ndmz: a TUN, down, held by the daemon alone (an fd it never uses), gone
 * with it. Closed earlier, its unregister would cost the same grace
 * period as the move did.
 */
#include "err.h"
#include "netns.h"
#include "wg_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if_tun.h>

/*
 * The last release that reads a TUN with the packet-information header
 * (IFF_NO_PI off, its "TUN status hack"); later ones open it with
 * IFF_NO_PI | IFF_VNET_HDR and read the flags of a TUN they are given.
 */
#define LAST_PI_RELEASE 20230223L

int zm_wg_tun_resolve(const char *program, char *path, size_t size)
{
	const char *dirs = getenv("PATH");
	const char *p;

	if (strchr(program, '/')) {
		if ((size_t)snprintf(path, size, "%s", program) >= size)
			return -ENAMETOOLONG;
		return access(path, X_OK) ? -errno : 0;
	}
	if (!dirs || !dirs[0])
		dirs = ZM_WG_DAEMON_PATH;
	for (p = dirs; *p;) {
		size_t len = strcspn(p, ":");

		if (len && (size_t)snprintf(path, size, "%.*s/%s", (int)len, p,
					    program) < size &&
		    !access(path, X_OK))
			return 0;
		p += len;
		if (*p == ':')
			p++;
	}
	return -ENOENT;
}

/* The release date in "wireguard-go v0.0.YYYYMMDD…", or 0. */
static long release_of(const char *text)
{
	const char *v = strstr(text, " v0.0.");
	char *end;
	long date;

	if (!v)
		return 0;
	date = strtol(v + 6, &end, 10);
	return end - (v + 6) == 8 ? date : 0;
}

/*
 * What PATH --version prints (the start of it), NUL-terminated; empty
 * when it says nothing within a second (a wrapper that does not know the
 * option must not hold up the create).
 */
static int version_text(const char *path, char *buf, size_t size)
{
	int out[2], status, err = 0;
	struct pollfd pfd;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(out[0]);
		close(out[1]);
		return err;
	}
	if (pid == 0) {
		char *argv[] = { (char *)path, "--version", NULL };
		char *envp[] = { "PATH=" ZM_WG_DAEMON_PATH, NULL };

		/* A group of its own: what it starts is killed with it. */
		setpgid(0, 0);
		dup2(out[1], 1);
		execve(path, argv, envp);
		_exit(127);
	}
	close(out[1]);
	pfd.fd = out[0];
	pfd.events = POLLIN;
	while (len + 1 < size && poll(&pfd, 1, 1000) > 0 &&
	       (n = read(out[0], buf + len, size - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(out[0]);
	kill(-pid, SIGKILL);	/* gone already, or not answering */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return 0;
}

enum zm_wg_tun_mode zm_wg_tun_mode(const char *path)
{
	/* One probe per binary: an upgrade (new inode or time) asks again. */
	static struct stat known;
	static enum zm_wg_tun_mode known_mode = ZM_WG_TUN_OWN;
	static bool have;
	char text[128];
	struct stat st;
	long release;

	if (stat(path, &st))
		return ZM_WG_TUN_OWN;
	if (have && st.st_dev == known.st_dev && st.st_ino == known.st_ino &&
	    st.st_mtim.tv_sec == known.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == known.st_mtim.tv_nsec)
		return known_mode;
	if (version_text(path, text, sizeof(text)))
		return ZM_WG_TUN_OWN;
	release = release_of(text);
	if (!release)
		known_mode = ZM_WG_TUN_OWN;	/* unknown: let it make its own */
	else if (release <= LAST_PI_RELEASE)
		known_mode = ZM_WG_TUN_PI;
	else
		known_mode = ZM_WG_TUN_VNET;
	known = st;
	have = true;
	return known_mode;
}

struct tun_args {
	const char *name;
	enum zm_wg_tun_mode mode;
	unsigned int mtu;
};

static int make_tun(void *arg)
{
	const struct tun_args *a = arg;
	struct ifreq ifr = { 0 };
	int fd, sock, err;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", a->name);
	ifr.ifr_flags = IFF_TUN;
	if (a->mode == ZM_WG_TUN_VNET)
		ifr.ifr_flags |= IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr))
		goto fail;
	if (!a->mtu)
		return fd;
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		goto fail;
	ifr.ifr_mtu = (int)a->mtu;
	err = ioctl(sock, SIOCSIFMTU, &ifr) ? -errno : 0;
	close(sock);
	if (!err)
		return fd;
	close(fd);
	return err;
fail:
	err = -errno;
	close(fd);
	return err;
}

int zm_wg_tun_open(const struct zm_ns *ns, const char *name,
		   enum zm_wg_tun_mode mode, unsigned int mtu)
{
	struct tun_args a = { name, mode, mtu };
	int fd = zm_ns_run(ns, make_tun, &a);

	if (fd < 0)
		zm_err_set("cannot make TUN '%s' in %s", name, zm_ns_label(ns));
	return fd;
}

