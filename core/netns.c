// SPDX-License-Identifier: MIT

#include "netns.h"
#include "err.h"
#include "fs.h"
#include "nl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/nsfs.h>

int zm_netns_name_valid(const char *name)
{
	size_t i, len;

	if (!name)
		return 0;
	len = strlen(name);
	if (len == 0 || len > ZM_NETNS_NAME_MAX)
		return 0;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			return 0;
	}
	return 1;
}

static int check_name(const char *name)
{
	if (zm_netns_name_valid(name))
		return 0;
	zm_err_set("invalid namespace name");
	return -EINVAL;
}

static void ns_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", ZM_NETNS_DIR, name);
}

static int is_netns_fd(int fd)
{
	return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
}

/*
 * Make /run/netns a shared mount point, as iproute2 does, so that a name
 * removed in one mount namespace goes away in the others too.
 */
static int prepare_netns_dir(void)
{
	int made = 0;

	if (mkdir(ZM_NETNS_DIR, 0755) && errno != EEXIST)
		return -errno;
	while (mount("", ZM_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL)) {
		if (errno != EINVAL || made)
			return -errno;
		if (mount(ZM_NETNS_DIR, ZM_NETNS_DIR, "none", MS_BIND | MS_REC,
			  NULL))
			return -errno;
		made = 1;
	}
	return 0;
}

/* In a forked child: a new namespace, pinned on PATH. Async-signal-safe. */
static void __attribute__((noreturn)) create_child(const char *path, int wfd)
{
	int err = 0;

	if (unshare(CLONE_NEWNET))
		err = errno;
	else if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL))
		err = errno;
	if (write(wfd, &err, sizeof(err)) != sizeof(err))
		_exit(2);
	_exit(err ? 1 : 0);
}

int zm_netns_create(const char *name)
{
	char path[PATH_MAX];
	int pipefd[2], fd, err, child_err = EIO;
	pid_t pid;

	zm_err_clear();
	err = check_name(name);
	if (err)
		return err;
	err = prepare_netns_dir();
	if (err) {
		zm_err_set("cannot prepare %s", ZM_NETNS_DIR);
		return err;
	}
	ns_path(path, sizeof(path), name);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		if (err == -EEXIST)
			zm_err_set("namespace '%s' already exists", name);
		return err;
	}
	close(fd);

	if (pipe2(pipefd, O_CLOEXEC)) {
		err = -errno;
		goto out_unlink;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		goto out_unlink;
	}
	if (pid == 0)
		create_child(path, pipefd[1]);
	close(pipefd[1]);
	if (read(pipefd[0], &child_err, sizeof(child_err)) != sizeof(child_err))
		child_err = EIO;
	close(pipefd[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (!child_err)
		return 0;
	err = -child_err;
	zm_err_set("cannot create namespace '%s'", name);
out_unlink:
	umount2(path, MNT_DETACH);
	unlink(path);
	return err;
}

int zm_netns_exists(const char *name)
{
	struct zm_ns *ns;
	int err;

	zm_err_clear();
	if (check_name(name))
		return -EINVAL;
	err = zm_ns_open(name, &ns);
	zm_ns_close(ns);
	if (err == -ENOENT || err == -EINVAL) {
		zm_err_clear();
		return 0;
	}
	return err ? err : 1;
}

int zm_netns_list(char ***names, size_t *count)
{
	size_t i, kept = 0;
	int err;

	err = zm_fs_list(ZM_NETNS_DIR, names, count);
	if (err == -ENOENT) {
		zm_err_clear();
		return 0;
	}
	if (err)
		return err;
	/* Only what could be a namespace name: no stray files. */
	for (i = 0; i < *count; i++) {
		if (zm_netns_name_valid((*names)[i]))
			(*names)[kept++] = (*names)[i];
		else
			free((*names)[i]);
	}
	*count = kept;
	return 0;
}

static int collect_pids(const struct zm_ns *ns, pid_t **pids, size_t *count)
{
	char path[64];
	struct dirent *de;
	struct stat st;
	pid_t *v = NULL, self = getpid();
	size_t n = 0;
	DIR *dir;

	dir = opendir("/proc");
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
		/* Zombies and vanished processes have no namespace: skip. */
		if (stat(path, &st) || st.st_dev != ns->dev ||
		    st.st_ino != ns->ino)
			continue;
		if (zm_grow((void **)&v, n, sizeof(*v))) {
			free(v);
			closedir(dir);
			return -ENOMEM;
		}
		v[n++] = (pid_t)pid;
	}
	closedir(dir);
	*pids = v;
	*count = n;
	return 0;
}

int zm_ns_pids(const struct zm_ns *ns, pid_t **pids, size_t *count)
{
	*pids = NULL;
	*count = 0;
	return collect_pids(ns, pids, count);
}

int zm_netns_pids(const char *name, pid_t **pids, size_t *count)
{
	struct zm_ns *ns;
	int err = check_name(name);

	*pids = NULL;
	*count = 0;
	if (!err)
		err = zm_ns_open(name, &ns);
	if (err)
		return err;
	err = collect_pids(ns, pids, count);
	zm_ns_close(ns);
	return err;
}

void zm_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

ssize_t zm_proc_read(pid_t pid, const char *what, char *buf, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, what);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

int zm_pid_alive(pid_t pid)
{
	char buf[256], *p;

	if (zm_proc_read(pid, "stat", buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/*
 * A pidfd turns readable once every thread of the process has exited: a
 * leader shows as a zombie while its other threads still run their exit,
 * and the files they share (a TUN, which goes with its last fd) are only
 * closed by the last one. 0 when it did within WAIT_MS, 1 when not, -1
 * without a pidfd.
 */
static int wait_pidfd(int pidfd, unsigned int wait_ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	unsigned int waited = 0;
	int n;

	for (;;) {
		n = poll(&p, 1, (int)(wait_ms - waited));
		if (n > 0)
			return 0;
		if (n == 0 || errno != EINTR)
			return n == 0 ? 1 : -1;
		waited += 10; /* a signal: go on, the wait roughly kept */
		if (waited >= wait_ms)
			return 1;
	}
}

int zm_pid_end(pid_t pid, int sig, unsigned int wait_ms)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	unsigned int waited = 0;
	int ret;

	kill(pid, sig);
	/* Our own child would linger as a zombie. */
	waitpid(pid, NULL, WNOHANG);
	if (pidfd >= 0) {
		ret = wait_pidfd(pidfd, wait_ms);
		close(pidfd);
		waitpid(pid, NULL, WNOHANG);
		if (ret >= 0)
			return ret;
	}
	while (zm_pid_alive(pid) && waited < wait_ms) {
		zm_sleep_ms(10);
		waited += 10;
		waitpid(pid, NULL, WNOHANG);
	}
	return zm_pid_alive(pid);
}

/* Signal everything inside; 0 once nothing is left, -EBUSY if it stays. */
static int end_processes(const struct zm_ns *ns, int sig, unsigned int wait_ms)
{
	unsigned int waited = 0;
	pid_t *pids;
	size_t n, i;
	int err;

	for (;;) {
		err = collect_pids(ns, &pids, &n);
		if (err)
			return err;
		for (i = 0; i < n; i++) {
			if (!waited)
				kill(pids[i], sig);
			waitpid(pids[i], NULL, WNOHANG);
		}
		free(pids);
		if (!n)
			return 0;
		if (waited >= wait_ms)
			return -EBUSY;
		zm_sleep_ms(10);
		waited += 10;
	}
}

int zm_netns_delete(const char *name, unsigned int grace_ms)
{
	char path[PATH_MAX];
	struct zm_ns *ns = NULL;
	int err;

	zm_err_clear();
	err = check_name(name);
	if (err)
		return err;
	ns_path(path, sizeof(path), name);
	/* A stale name (a file, no namespace behind it) goes all the same. */
	err = zm_ns_open(name, &ns);
	if (err == -ENOENT)
		return err;
	zm_err_clear();
	if (ns && end_processes(ns, SIGTERM, grace_ms) == -EBUSY &&
	    end_processes(ns, SIGKILL, 2000) == -EBUSY) {
		zm_err_set("processes in namespace '%s' do not end", name);
		err = -EBUSY;
	} else if (umount2(path, MNT_DETACH) && errno != EINVAL) {
		err = -errno;
		zm_err_set("cannot unmount %s", path);
	} else if (unlink(path)) {
		err = -errno;
		zm_err_set("cannot remove %s", path);
	} else {
		err = 0;
		/* A netlink socket of ours would keep it alive, unseen. */
		if (ns)
			zm_nl_forget(ns->dev, ns->ino);
	}
	zm_ns_close(ns);
	return err;
}

int zm_ns_open(const char *name, struct zm_ns **out)
{
	char path[PATH_MAX];
	struct zm_ns *ns;
	struct stat st;
	int err;

	zm_err_clear();
	*out = NULL;
	if (name && *name) {
		err = check_name(name);
		if (err)
			return err;
		ns_path(path, sizeof(path), name);
	} else {
		snprintf(path, sizeof(path), "/proc/thread-self/ns/net");
	}
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (ns->fd < 0) {
		err = -errno;
		if (err == -ENOENT)
			zm_err_set("namespace '%s' does not exist", name);
		free(ns);
		return err;
	}
	if (!is_netns_fd(ns->fd) || fstat(ns->fd, &st)) {
		zm_err_set("'%s' is not a network namespace", path);
		close(ns->fd);
		free(ns);
		return -EINVAL;
	}
	ns->dev = st.st_dev;
	ns->ino = st.st_ino;
	if (name)
		snprintf(ns->name, sizeof(ns->name), "%s", name);
	/* A stat per kept socket: cheap next to the netlink that follows. */
	if (name && *name)
		zm_nl_prune();
	*out = ns;
	return 0;
}

void zm_ns_close(struct zm_ns *ns)
{
	if (!ns)
		return;
	if (ns->fd >= 0)
		close(ns->fd);
	free(ns);
}

const char *zm_ns_label(const struct zm_ns *ns)
{
	return ns->name[0] ? ns->name : "(own)";
}

int zm_ns_run(const struct zm_ns *ns, int (*fn)(void *arg), void *arg)
{
	int saved, ret;

	saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (saved < 0)
		return -errno;
	if (setns(ns->fd, CLONE_NEWNET)) {
		ret = -errno;
		close(saved);
		return ret;
	}
	ret = fn(arg);
	/*
	 * Going on in the wrong namespace would silently change the wrong
	 * network; there is no safe way to continue.
	 */
	if (setns(saved, CLONE_NEWNET))
		abort();
	close(saved);
	return ret;
}

struct socket_args {
	int domain, type, protocol;
};

static int make_socket(void *arg)
{
	struct socket_args *a = arg;
	int fd = socket(a->domain, a->type | SOCK_CLOEXEC, a->protocol);

	return fd < 0 ? -errno : fd;
}

int zm_ns_socket(const struct zm_ns *ns, int domain, int type, int protocol)
{
	struct socket_args a = { domain, type, protocol };

	return zm_ns_run(ns, make_socket, &a);
}
