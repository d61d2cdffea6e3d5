/* SPDX-License-Identifier: MIT */
/* The few file-system steps Lua lacks: directories, atomic writes, listing. */
#ifndef ZM_FS_H
#define ZM_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* mkdir -p with MODE for what it creates; existing directories are fine. */
int zm_fs_mkdir_p(const char *path, mode_t mode);
/*
 * Write DATA to PATH through PATH.tmp, fsync, rename and fsync of the
 * directory, with MODE: after a power loss PATH holds the old or the new
 * content, never a mix. One writer per PATH at a time (the node lock).
 */
int zm_fs_write_atomic(const char *path, const void *data, size_t len,
		       mode_t mode);
/* Remove a file (not a directory); -ENOENT when there is none. */
int zm_fs_remove(const char *path);

enum zm_fs_type {
	ZM_FS_FILE = 1, ZM_FS_DIR, ZM_FS_SOCKET, ZM_FS_SYMLINK, ZM_FS_OTHER,
};
struct zm_fs_info {
	enum zm_fs_type type;
	off_t size;
	/* Together they tell a file replaced or rewritten (cache checks). */
	uint64_t ino;
	int64_t mtime_ns;
};
/* lstat: what PATH is; -ENOENT when there is nothing. */
int zm_fs_stat(const char *path, struct zm_fs_info *info);

/*
 * An exclusive flock(2) on PATH (made 0600 when absent), waited for up to
 * timeout_ms. Returns the descriptor that holds it, or -errno: -EAGAIN
 * when another holder kept it all that time. The lock ends when the
 * descriptor is closed, or with its process, however that ends.
 */
int zm_fs_lock(const char *path, unsigned int timeout_ms);
/* Sorted entry names of DIR (no "." or ".."); free with zm_strv_free. */
int zm_fs_list(const char *dir, char ***names, size_t *count);
void zm_strv_free(char **v, size_t count);

/* The target of symlink PATH into buf (NUL-terminated). */
int zm_fs_readlink(const char *path, char *buf, size_t len);

#endif
