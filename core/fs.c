// SPDX-License-Identifier: MIT
#include "fs.h"
#include "err.h"
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int zm_fs_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path), i;

	zm_err_clear();
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) && errno != EEXIST) {
			int err = -errno;

			zm_err_set("cannot make directory %s", buf);
			return err;
		}
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

int zm_fs_write_atomic(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	int fd, err = 0;

	zm_err_clear();
	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkstemp(tmp);
	if (fd < 0) {
		err = -errno;
		zm_err_set("cannot write %s", path);
		return err;
	}
	if (fchmod(fd, mode))
		err = -errno;
	while (!err && len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (!err && fsync(fd))
		err = -errno;
	close(fd);
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		zm_err_set("cannot write %s", path);
	}
	return err;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int zm_fs_list(const char *dir, char ***names, size_t *count)
{
	struct dirent *de;
	char **v = NULL, **nv;
	size_t n = 0, cap = 0;
	DIR *d;
	int err;

	zm_err_clear();
	*names = NULL;
	*count = 0;
	d = opendir(dir);
	if (!d) {
		err = -errno;
		zm_err_set("cannot list %s", dir);
		return err;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				goto nomem;
			v = nv;
		}
		v[n] = strdup(de->d_name);
		if (!v[n])
			goto nomem;
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	*names = v;
	*count = n;
	return 0;
nomem:
	closedir(d);
	zm_strv_free(v, n);
	return -ENOMEM;
}

int zm_fs_readlink(const char *path, char *buf, size_t len)
{
	ssize_t n;

	zm_err_clear();
	n = readlink(path, buf, len - 1);
	if (n < 0) {
		int err = -errno;

		zm_err_set("cannot read link %s", path);
		return err;
	}
	buf[n] = '\0';
	return 0;
}
