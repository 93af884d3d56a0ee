// SPDX-License-Identifier: GPL-2.0
/*
 * Registers the Rust tests of range_test.rs as a KUnit suite; 6.12 has no
 * Rust macro for declaring KUnit suites.  Each test returns its number of
 * failed checks and logs them.
 */
#include "kunit_case.h"
#include "range_test.h"

GMEM_RS_CASE(create)
GMEM_RS_CASE(fallocate)
GMEM_RS_CASE(allocate_bounds)
GMEM_RS_CASE(bind_span)
GMEM_RS_CASE(gfn_math)
GMEM_RS_CASE(populate_result)
GMEM_RS_CASE(set_attributes)

static struct kunit_case gmem_rs_range_cases[] = {
	KUNIT_CASE(create_case),
	KUNIT_CASE(fallocate_case),
	KUNIT_CASE(allocate_bounds_case),
	KUNIT_CASE(bind_span_case),
	KUNIT_CASE(gfn_math_case),
	KUNIT_CASE(populate_result_case),
	KUNIT_CASE(set_attributes_case),
	{}
};

static struct kunit_suite gmem_rs_range_suite = {
	.name = "gmem_rs_range",
	.test_cases = gmem_rs_range_cases,
};

kunit_test_suite(gmem_rs_range_suite);

MODULE_DESCRIPTION("KUnit tests of the Rust guest_memfd range logic");
MODULE_LICENSE("GPL");
