/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The Rust test functions of attr_store_test.rs, registered by attr_kunit.c.
 * Each returns its number of failed checks.
 */
#ifndef __KVM_GMEM_ATTR_TEST_H
#define __KVM_GMEM_ATTR_TEST_H

int gmem_rs_test_attr_edges(void);
int gmem_rs_test_attr_random(void);
int gmem_rs_test_attr_atomic(void);

#endif /* __KVM_GMEM_ATTR_TEST_H */
