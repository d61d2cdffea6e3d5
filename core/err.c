// SPDX-License-Identifier: MIT
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <netlink/errno.h>

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

/*
 * libnl folds kernel errnos into its own codes; this is the one place that
 * turns them back. Kernel errors proper are captured exactly by the ext-ack
 * callback in nl.c, so this only matters for libnl's own failures.
 */
int zm_nle_to_errno(int nle)
{
	if (nle < 0)
		nle = -nle;
	switch (nle) {
	case NLE_SUCCESS:		return 0;
	case NLE_INTR:			return EINTR;
	case NLE_BAD_SOCK:		return EBADF;
	case NLE_AGAIN:			return EAGAIN;
	case NLE_NOMEM:			return ENOMEM;
	case NLE_EXIST:			return EEXIST;
	case NLE_INVAL:			return EINVAL;
	case NLE_RANGE:			return ERANGE;
	case NLE_MSGSIZE:		return EMSGSIZE;
	case NLE_OPNOTSUPP:		return EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:		return EAFNOSUPPORT;
	case NLE_OBJ_NOTFOUND:		return ENOENT;
	case NLE_NOATTR:		return ENODATA;
	case NLE_MISSING_ATTR:		return EINVAL;
	case NLE_AF_MISMATCH:		return EAFNOSUPPORT;
	case NLE_SEQ_MISMATCH:		return EPROTO;
	case NLE_MSG_OVERFLOW:		return EOVERFLOW;
	case NLE_MSG_TRUNC:		return EMSGSIZE;
	case NLE_NOADDR:		return EADDRNOTAVAIL;
	case NLE_SRCRT_NOSUPPORT:	return EOPNOTSUPP;
	case NLE_MSG_TOOSHORT:		return EPROTO;
	case NLE_MSGTYPE_NOSUPPORT:	return EOPNOTSUPP;
	case NLE_OBJ_MISMATCH:		return EINVAL;
	case NLE_NOCACHE:		return ENOENT;
	case NLE_BUSY:			return EBUSY;
	case NLE_PROTO_MISMATCH:	return EPROTONOSUPPORT;
	case NLE_NOACCESS:		return EACCES;
	case NLE_PERM:			return EPERM;
	case NLE_PKTLOC_FILE:		return ENOENT;
	case NLE_PARSE_ERR:		return EINVAL;
	case NLE_NODEV:			return ENODEV;
	case NLE_IMMUTABLE:		return EPERM;
	case NLE_DUMP_INTR:		return EINTR;
	case NLE_ATTRSIZE:		return ERANGE;
	default:			return EIO;
	}
}
