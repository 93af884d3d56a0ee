// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_regress_test
 *
 * Regression tests for guest_memfd bugs fixed upstream whose 6.12
 * semantics apply, and for the isolation guarantees of a guest_memfd:
 *
 * - a memslot cannot be both KVM_MEM_READONLY and KVM_MEM_GUEST_MEMFD;
 * - guest_memfd_offset near 2^63, past the end of the file, or wrapping
 *   around 2^64 is rejected (the bind once overflowed a signed offset);
 * - binding a range of a guest_memfd that another memslot already binds
 *   fails with 6.12's errno, EINVAL (later kernels return EEXIST);
 * - a guest_memfd cannot be bound to a VM other than its own;
 * - the host cannot read, write or map it.
 *
 * Every check has the same result on the C and the Rust guest_memfd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "test_util.h"

#define GMEM_SIZE	SZ_2M
#define SLOT_GPA	SZ_4G

static struct kvm_vm *protected_vm(void)
{
	return vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
}

/* KVM_SET_USER_MEMORY_REGION2 of a guest_memfd slot; 0 or the errno. */
static int bind(struct kvm_vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa,
		uint64_t size, void *hva, int fd, uint64_t offset)
{
	int r = __vm_set_user_memory_region2(vm, slot, flags | KVM_MEM_GUEST_MEMFD,
					     gpa, size, hva, fd, offset);

	return r ? errno : 0;
}

static void report(bool ok, const char *what, int got, int want)
{
	if (ok)
		ksft_test_result_pass("%s\n", what);
	else
		ksft_test_result_fail("%s: got %s, want %s\n", what,
				      got ? strerror(got) : "success",
				      want ? strerror(want) : "success");
}

static void expect(int got, int want, const char *what)
{
	report(got == want, what, got, want);
}

static void test_readonly(void *hva)
{
	struct kvm_vm *vm = protected_vm();
	int fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);

	expect(bind(vm, 1, KVM_MEM_READONLY, SLOT_GPA, GMEM_SIZE, hva, fd, 0),
	       EINVAL, "READONLY | GUEST_MEMFD memslot rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, GMEM_SIZE, hva, fd, 0), 0,
	       "the same memslot without READONLY accepted");
	close(fd);
	kvm_vm_free(vm);
}

static void test_offsets(void *hva)
{
	struct kvm_vm *vm = protected_vm();
	int fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);
	const uint64_t two63 = 1ULL << 63;

	expect(bind(vm, 1, 0, SLOT_GPA, SZ_8K, hva, fd, two63 - SZ_4K), EINVAL,
	       "offset 2^63 - 4 KiB rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, SZ_8K, hva, fd, two63), EINVAL,
	       "offset 2^63 rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, SZ_8K, hva, fd, -(uint64_t)SZ_4K), EINVAL,
	       "offset + size wrapping around 2^64 rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, SZ_8K, hva, fd, GMEM_SIZE - SZ_4K), EINVAL,
	       "range past the end of the file rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, SZ_4K, hva, fd, SZ_4K / 2), EINVAL,
	       "unaligned offset rejected");
	expect(bind(vm, 1, 0, SLOT_GPA, SZ_4K, hva, fd, GMEM_SIZE - SZ_4K), 0,
	       "last page of the file accepted");
	close(fd);
	kvm_vm_free(vm);
}

static void test_overlap(void *hva)
{
	struct kvm_vm *vm = protected_vm();
	int fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);

	expect(bind(vm, 1, 0, SLOT_GPA, SZ_1M, hva, fd, 0), 0,
	       "first half of the file bound");
	expect(bind(vm, 2, 0, SLOT_GPA + SZ_1G, SZ_1M, hva, fd, SZ_1M / 2), EINVAL,
	       "overlapping range of the same file rejected with EINVAL");
	expect(bind(vm, 2, 0, SLOT_GPA + SZ_1G, SZ_1M, hva, fd, SZ_1M), 0,
	       "adjacent range of the same file accepted");
	close(fd);
	kvm_vm_free(vm);
}

static void test_other_vm(void *hva)
{
	struct kvm_vm *owner = protected_vm();
	struct kvm_vm *other = protected_vm();
	int fd = vm_create_guest_memfd(owner, GMEM_SIZE, 0);

	expect(bind(other, 1, 0, SLOT_GPA, GMEM_SIZE, hva, fd, 0), EINVAL,
	       "guest_memfd of another VM rejected");
	expect(bind(owner, 1, 0, SLOT_GPA, GMEM_SIZE, hva, fd, 0), 0,
	       "guest_memfd bound to its own VM");
	close(fd);
	kvm_vm_free(other);
	kvm_vm_free(owner);
}

static void test_host_access(void)
{
	struct kvm_vm *vm = protected_vm();
	int fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);
	char buf[64] = { 0 };
	void *p;
	int r;

	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, GMEM_SIZE),
		    "fallocate failed: %s", strerror(errno));
	r = read(fd, buf, sizeof(buf)) < 0 ? errno : 0;
	expect(r, EINVAL, "read() refused");
	r = write(fd, buf, sizeof(buf)) < 0 ? errno : 0;
	expect(r, EINVAL, "write() refused");
	p = mmap(NULL, GMEM_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	r = p == MAP_FAILED ? errno : 0;
	expect(r, ENODEV, "shared mmap() refused");
	if (p != MAP_FAILED)
		munmap(p, GMEM_SIZE);
	p = mmap(NULL, GMEM_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	r = p == MAP_FAILED ? errno : 0;
	expect(r, ENODEV, "private mmap() refused");
	if (p != MAP_FAILED)
		munmap(p, GMEM_SIZE);
	close(fd);
	kvm_vm_free(vm);
}

int main(int argc, char *argv[])
{
	void *hva;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));

	hva = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(hva != MAP_FAILED, "mmap failed");

	ksft_print_header();
	ksft_set_plan(2 + 6 + 3 + 2 + 4);
	test_readonly(hva);
	test_offsets(hva);
	test_overlap(hva);
	test_other_vm(hva);
	test_host_access();
	munmap(hva, GMEM_SIZE);
	ksft_finished();
}
