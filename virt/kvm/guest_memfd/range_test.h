/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The Rust test functions of range_test.rs, registered by range_kunit.c.
 * Each returns its number of failed checks.
 */
#ifndef __KVM_GMEM_RANGE_TEST_H
#define __KVM_GMEM_RANGE_TEST_H

int gmem_rs_test_create(void);
int gmem_rs_test_fallocate(void);
int gmem_rs_test_allocate_bounds(void);
int gmem_rs_test_bind_span(void);
int gmem_rs_test_gfn_math(void);
int gmem_rs_test_populate_result(void);
int gmem_rs_test_set_attributes(void);

#endif /* __KVM_GMEM_RANGE_TEST_H */
