/* SPDX-License-Identifier: GPL-2.0 */
/*
 * KUnit cases for the Rust tests of this directory, which 6.12 cannot
 * register from Rust: GMEM_RS_CASE(name) defines name_case(), which runs
 * the Rust function gmem_rs_test_name() and expects it to report no failed
 * check (the failures themselves are in the kernel log).
 */
#ifndef __KVM_GMEM_KUNIT_CASE_H
#define __KVM_GMEM_KUNIT_CASE_H

#include <kunit/test.h>

#define GMEM_RS_CASE(name)						\
static void name##_case(struct kunit *test)				\
{									\
	KUNIT_EXPECT_EQ_MSG(test, gmem_rs_test_##name(), 0,		\
			    "failed checks are in the kernel log");	\
}

#endif /* __KVM_GMEM_KUNIT_CASE_H */
