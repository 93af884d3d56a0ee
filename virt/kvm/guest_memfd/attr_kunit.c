// SPDX-License-Identifier: GPL-2.0
/*
 * Registers the Rust tests of attr_store_test.rs, the memory attribute
 * store of the Rust guest_memfd, as a KUnit suite.  Each test returns its
 * number of failed checks and logs them.
 */
#include "kunit_case.h"
#include "attr_test.h"

GMEM_RS_CASE(attr_edges)
GMEM_RS_CASE(attr_random)
GMEM_RS_CASE(attr_atomic)

static struct kunit_case gmem_rs_attr_store_cases[] = {
	KUNIT_CASE(attr_edges_case),
	KUNIT_CASE(attr_random_case),
	KUNIT_CASE(attr_atomic_case),
	{}
};

static struct kunit_suite gmem_rs_attr_store_suite = {
	.name = "gmem_rs_attr_store",
	.test_cases = gmem_rs_attr_store_cases,
};

kunit_test_suite(gmem_rs_attr_store_suite);

MODULE_DESCRIPTION("KUnit tests of the Rust guest_memfd attribute store");
MODULE_LICENSE("GPL");
