/* SPDX-License-Identifier: MIT */
/* The few file-system steps Lua lacks: directories, atomic writes, listing. */
#ifndef ZM_FS_H
#define ZM_FS_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with MODE for what it creates; existing directories are fine. */
int zm_fs_mkdir_p(const char *path, mode_t mode);
/* Write DATA to PATH through a temporary file and rename, with MODE. */
int zm_fs_write_atomic(const char *path, const void *data, size_t len,
		       mode_t mode);
/* Sorted entry names of DIR (no "." or ".."); free with zm_strv_free. */
int zm_fs_list(const char *dir, char ***names, size_t *count);

/* The target of symlink PATH into buf (NUL-terminated). */
int zm_fs_readlink(const char *path, char *buf, size_t len);

#endif
