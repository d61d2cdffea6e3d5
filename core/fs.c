// SPDX-License-Identifier: MIT
#include "fs.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
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

/* fsync the directory holding PATH, so that a rename in it is durable. */
static int sync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 1;
	int fd, err = 0;

	if (len == 0)
		len = 1;	/* "/name" */
	if (len >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, slash ? path : ".", len);
	dir[len] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (err)
		zm_err_set("cannot sync directory %s", dir);
	return err;
}

int zm_fs_write_atomic(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	int fd, err = 0;

	zm_err_clear();
	/*
	 * A fixed name, not mkstemp: there is one writer per node (the node
	 * lock), and what a killed writer left is overwritten by the next.
	 */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  mode & 0600);
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
		return err;
	}
	return sync_dir_of(path);
}

int zm_fs_remove(const char *path)
{
	zm_err_clear();
	if (unlink(path)) {
		int err = -errno;

		if (err != -ENOENT)
			zm_err_set("cannot remove %s", path);
		return err;
	}
	return 0;
}

int zm_fs_stat(const char *path, struct zm_fs_info *info)
{
	struct stat st;

	zm_err_clear();
	if (lstat(path, &st))
		return -errno;
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		info->type = ZM_FS_FILE;
		break;
	case S_IFDIR:
		info->type = ZM_FS_DIR;
		break;
	case S_IFSOCK:
		info->type = ZM_FS_SOCKET;
		break;
	case S_IFLNK:
		info->type = ZM_FS_SYMLINK;
		break;
	default:
		info->type = ZM_FS_OTHER;
	}
	info->size = st.st_size;
	info->ino = st.st_ino;
	info->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
			 st.st_mtim.tv_nsec;
	return 0;
}

int zm_fs_lock(const char *path, unsigned int timeout_ms)
{
	struct timespec pause = { 0, 10 * 1000000L };
	unsigned int waited = 0;
	int fd, err;

	zm_err_clear();
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		zm_err_set("cannot open lock %s", path);
		return err;
	}
	/* Polled, not blocking: a holder that never lets go must not hang us. */
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK || waited >= timeout_ms) {
			err = errno == EWOULDBLOCK ? -EAGAIN : -errno;
			zm_err_set("lock %s is held by another process", path);
			close(fd);
			return err;
		}
		nanosleep(&pause, NULL);
		waited += 10;
	}
	return fd;
}

void zm_strv_free(char **v, size_t count)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < count; i++)
		free(v[i]);
	free(v);
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
