// SPDX-License-Identifier: MIT
/* Placeholder until wg_kernel.c lands: the kernel backend is absent. */
#include "err.h"
#include "wg_backend.h"

#include <errno.h>

__attribute__((weak)) int zm_wg_kernel_probe(void)
{
	return 0;
}

__attribute__((weak)) int zm_wg_kernel_create(const struct zm_wg_create *c)
{
	(void)c;
	zm_err_set("kernel WireGuard backend not built");
	return -EOPNOTSUPP;
}

__attribute__((weak)) int zm_wg_kernel_set(struct zm_ns *ns,
					   const struct zm_wg_device *dev)
{
	(void)ns;
	(void)dev;
	zm_err_set("kernel WireGuard backend not built");
	return -EOPNOTSUPP;
}

__attribute__((weak)) int zm_wg_kernel_get(struct zm_ns *ns, const char *name,
					   struct zm_wg_device **out)
{
	(void)ns;
	(void)name;
	*out = NULL;
	zm_err_set("kernel WireGuard backend not built");
	return -EOPNOTSUPP;
}
