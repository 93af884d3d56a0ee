// SPDX-License-Identifier: GPL-2.0

#include <linux/xarray.h>

void rust_helper_xa_init_flags(struct xarray *xa, gfp_t flags)
{
	xa_init_flags(xa, flags);
}

bool rust_helper_xa_empty(const struct xarray *xa)
{
	return xa_empty(xa);
}

void *rust_helper_xa_mk_value(unsigned long v)
{
	return xa_mk_value(v);
}

unsigned long rust_helper_xa_to_value(const void *entry)
{
	return xa_to_value(entry);
}

bool rust_helper_xa_is_value(const void *entry)
{
	return xa_is_value(entry);
}

bool rust_helper_xa_is_internal(const void *entry)
{
	return xa_is_internal(entry);
}

int rust_helper_xa_err(void *entry)
{
	return xa_err(entry);
}
