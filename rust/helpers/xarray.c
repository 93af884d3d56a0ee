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

void rust_helper_xa_lock(struct xarray *xa)
{
	xa_lock(xa);
}

void rust_helper_xa_unlock(struct xarray *xa)
{
	xa_unlock(xa);
}

bool rust_helper_xa_trylock(struct xarray *xa)
{
	return xa_trylock(xa);
}

bool rust_helper_xa_is_node(const void *entry)
{
	return xa_is_node(entry);
}

struct xa_node *rust_helper_xa_to_node(const void *entry)
{
	return xa_to_node(entry);
}

bool rust_helper_xa_is_zero(const void *entry)
{
	return xa_is_zero(entry);
}

void *rust_helper_xa_mk_internal(unsigned long v)
{
	return xa_mk_internal(v);
}

int rust_helper_xas_error(const struct xa_state *xas)
{
	return xas_error(xas);
}

bool rust_helper_xa_is_retry(const void *entry)
{
	return xa_is_retry(entry);
}

/* For lock-free XArray lookups. */
void rust_helper_rcu_read_lock(void)
{
	rcu_read_lock();
}

void rust_helper_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

bool rust_helper_xas_invalid(const struct xa_state *xas)
{
	return xas_invalid(xas);
}

bool rust_helper_xa_is_sibling(const void *entry)
{
	return xa_is_sibling(entry);
}

unsigned long rust_helper_xa_to_sibling(const void *entry)
{
	return xa_to_sibling(entry);
}
