// SPDX-License-Identifier: MIT
#include "sysctl.h"
#include "err.h"
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int zm_sysctl_key_valid(const char *key)
{
	const char *p;

	if (!key || (strncmp(key, "net.", 4) && strncmp(key, "net/", 4)))
		return 0;
	if (strlen(key) > 200 || strstr(key, "..") || strstr(key, "//"))
		return 0;
	for (p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		      *p == '.' || *p == '/'))
			return 0;
	return p[-1] != '.' && p[-1] != '/';
}

/* "net.ipv4.ip_forward" → /proc/sys/net/ipv4/ip_forward; "/" form kept. */
static void key_path(const char *key, char *buf, size_t len)
{
	int slashes = strchr(key, '/') != NULL;
	size_t i, off = (size_t)snprintf(buf, len, "/proc/sys/");

	for (i = 0; key[i] && off + 1 < len; i++, off++)
		buf[off] = (!slashes && key[i] == '.') ? '/' : key[i];
	buf[off] = '\0';
}

struct sysctl_io {
	const char *path;
	int flags;
	int fd;
};

/* /proc/sys/net shows the namespace of whoever opens it. */
static int open_in_ns(void *arg)
{
	struct sysctl_io *io = arg;

	io->fd = open(io->path, io->flags | O_CLOEXEC);
	return io->fd < 0 ? -errno : 0;
}

static int open_key(struct zm_ns *ns, const char *key, int flags, int *fd)
{
	char path[PATH_MAX];
	struct sysctl_io io = { path, flags, -1 };
	int err;

	zm_err_clear();
	if (!zm_sysctl_key_valid(key)) {
		zm_err_set("'%s' is not a net.* sysctl key", key);
		return -EINVAL;
	}
	key_path(key, path, sizeof(path));
	err = zm_ns_run(ns, open_in_ns, &io);
	if (err) {
		zm_err_set("sysctl %s in namespace %s", key, zm_ns_label(ns));
		return err;
	}
	*fd = io.fd;
	return 0;
}

int zm_sysctl_set(struct zm_ns *ns, const char *key, const char *value)
{
	size_t len = strlen(value);
	ssize_t n;
	int fd, err;

	err = open_key(ns, key, O_WRONLY, &fd);
	if (err)
		return err;
	n = write(fd, value, len);
	err = n < 0 ? -errno : ((size_t)n != len ? -EIO : 0);
	close(fd);
	if (err)
		zm_err_set("sysctl %s = '%s' in namespace %s", key, value,
			   zm_ns_label(ns));
	return err;
}

int zm_sysctl_get(struct zm_ns *ns, const char *key, char *buf, size_t len)
{
	ssize_t n;
	int fd, err;

	err = open_key(ns, key, O_RDONLY, &fd);
	if (err)
		return err;
	n = read(fd, buf, len - 1);
	err = n < 0 ? -errno : 0;
	close(fd);
	if (err) {
		zm_err_set("sysctl %s in namespace %s", key, zm_ns_label(ns));
		return err;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}
