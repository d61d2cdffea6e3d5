/* SPDX-License-Identifier: MIT */
/*
 * Error text that travels beside an -errno return.
 *
 * Core functions return 0 or -errno. When the kernel (or the core) has more
 * to say than strerror() -- a netlink extended ack, the object concerned --
 * the text is kept here, per thread, until the next zm_err_clear(). The
 * bindings read it when they build the "ENAME: message" string for Lua.
 */
#ifndef ZM_ERR_H
#define ZM_ERR_H

#include <stdarg.h>

#define ZM_ERR_MAX 512

/* Forget any text from an earlier call. Every public core entry calls this. */
void zm_err_clear(void);

/* Set the text (printf-style), replacing what was there. */
void zm_err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prefix context ("link 'x'") to the current text, or set it if empty. */
void zm_err_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The kept text, "" when none. */
const char *zm_err_text(void);

/* "EEXIST" for EEXIST; "E<n>" for an errno without a name. */
const char *zm_errno_name(int err, char *buf, unsigned len);

#endif
