// SPDX-License-Identifier: MIT
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static __thread char err_text[ZM_ERR_MAX];

void zm_err_clear(void)
{
	err_text[0] = '\0';
}

void zm_err_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_text, sizeof(err_text), fmt, ap);
	va_end(ap);
}

void zm_err_context(const char *fmt, ...)
{
	char buf[ZM_ERR_MAX * 2 + 2];
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, ZM_ERR_MAX, fmt, ap);
	va_end(ap);
	len = strlen(buf);
	if (err_text[0]) {
		memcpy(buf + len, ": ", 2);
		memcpy(buf + len + 2, err_text, strlen(err_text) + 1);
	}
	len = strlen(buf);
	if (len >= ZM_ERR_MAX)
		len = ZM_ERR_MAX - 1;
	memcpy(err_text, buf, len);
	err_text[len] = '\0';
}

const char *zm_err_text(void)
{
	return err_text;
}

const char *zm_errno_name(int err, char *buf, unsigned len)
{
	const char *name;

	if (err < 0)
		err = -err;
	name = strerrorname_np(err);
	if (name)
		return name;
	snprintf(buf, len, "E%d", err);
	return buf;
}
