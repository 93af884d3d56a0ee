// SPDX-License-Identifier: GPL-2.0
/*
 * Host mappings of guest_memfd: the 6.18 uAPI (GUEST_MEMFD_FLAG_MMAP,
 * GUEST_MEMFD_FLAG_INIT_SHARED, KVM_CAP_GUEST_MEMFD_FLAGS) as the Rust
 * guest_memfd brings it to 6.12.
 *
 * - The capability on /dev/kvm and on each VM type, and that
 *   KVM_CREATE_GUEST_MEMFD accepts exactly the flags it reports.
 * - mmap(): ENODEV without MMAP, EINVAL for a private mapping.
 * - Faults: SIGBUS without INIT_SHARED and at or past the end of the file;
 *   otherwise zeroed pages, shared by every mapping of the file, which a
 *   punched hole takes away (zeros again) and fallocate() keeps.
 * - MADV_HUGEPAGE accepted, MADV_COLLAPSE refused; read()/write() still
 *   fail; a mapping outlives the file descriptor and the VM's.
 * - guest_memfd-only memslots: on a DEFAULT VM (KVM_CAP_GUEST_MEMFD is 1
 *   there) a memslot bound to an MMAP guest_memfd takes its shared memory
 *   from it, with userspace_addr 0 or the host mapping: the vCPU and the
 *   host see each other's writes, a punched hole reads zeros; without MMAP
 *   shared memory still comes from userspace_addr.
 * - On a KVM_X86_SW_PROTECTED_VM (MMAP only), such a memslot serves the
 *   guest's private and shared accesses from the same guest_memfd pages,
 *   which stay SIGBUS to the host.
 *
 * With -n, for a kernel without the flags (the C guest_memfd of 6.12, whose
 * capability reads 0), it checks instead that every flag bit is refused.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include "guest_memfd_common.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define NR_PAGES 8

static size_t page_size;
/* Whether touching the qword at @p (writing @val when @write) raises SIGBUS. */
static bool faults(uint8_t *p, bool write, uint64_t val)
{
	return !gmem_touch((uint64_t *)p, write, val, NULL);
}

static uint8_t pattern(size_t page, size_t byte)
{
	return (uint8_t)(0x5a ^ (page * 31) ^ byte);
}

static void *map(int fd, size_t len, int flags, off_t off)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, off);
}

/* Every flag bit alone, and the valid ones together, against @valid. */
static void test_flags(struct kvm_vm *vm, uint64_t valid, const char *what)
{
	uint64_t flag;
	int fd;

	for (flag = BIT_ULL(0); flag; flag <<= 1) {
		fd = __vm_create_guest_memfd(vm, page_size, flag);
		if (flag & valid) {
			TEST_ASSERT(fd >= 0, "%s: flag 0x%lx should be accepted", what, flag);
			close(fd);
		} else {
			TEST_ASSERT(fd == -1 && errno == EINVAL,
				    "%s: flag 0x%lx should fail with EINVAL", what, flag);
		}
	}
	if (valid) {
		fd = __vm_create_guest_memfd(vm, page_size, valid);
		TEST_ASSERT(fd >= 0, "%s: flags 0x%lx together should be accepted", what, valid);
		close(fd);
	}
	/* Flags are checked first: an invalid size does not hide them. */
	fd = __vm_create_guest_memfd(vm, page_size + 1, valid);
	TEST_ASSERT(fd == -1 && errno == EINVAL, "%s: bad size", what);
}

static void test_mmap_refused(struct kvm_vm *vm)
{
	uint64_t flags[] = { 0, GUEST_MEMFD_FLAG_INIT_SHARED };
	void *p;
	int fd, i;

	/* Without MMAP, as every guest_memfd of 6.12: ENODEV. */
	for (i = 0; i < 2; i++) {
		fd = vm_create_guest_memfd(vm, page_size, flags[i]);
		p = map(fd, page_size, MAP_SHARED, 0);
		TEST_ASSERT(p == MAP_FAILED && errno == ENODEV,
			    "mmap() without MMAP (flags 0x%lx) should fail with ENODEV", flags[i]);
		close(fd);
	}
	/* Private (copy-on-write) mappings: EINVAL. */
	fd = vm_create_guest_memfd(vm, page_size, GUEST_MEMFD_FLAG_MMAP |
						  GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, page_size, MAP_PRIVATE, 0);
	TEST_ASSERT(p == MAP_FAILED && errno == EINVAL, "MAP_PRIVATE should fail with EINVAL");
	close(fd);
}

/* MMAP alone: the mapping exists, its memory is the guest's: SIGBUS. */
static void test_private_by_default(struct kvm_vm *vm, const char *what)
{
	uint8_t *p;
	int fd;

	fd = vm_create_guest_memfd(vm, NR_PAGES * page_size, GUEST_MEMFD_FLAG_MMAP);
	p = map(fd, NR_PAGES * page_size, MAP_SHARED, 0);
	TEST_ASSERT(p != MAP_FAILED, "%s: mmap() with MMAP should work", what);
	TEST_ASSERT(faults(p, false, 0), "%s: read without INIT_SHARED should SIGBUS", what);
	TEST_ASSERT(faults(p + page_size, true, 1),
		    "%s: write without INIT_SHARED should SIGBUS", what);
	/* Allocated pages are the guest's too. */
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, NR_PAGES * page_size), "fallocate");
	TEST_ASSERT(faults(p, false, 0), "%s: read of an allocated page should SIGBUS", what);
	TEST_ASSERT(!munmap(p, NR_PAGES * page_size), "munmap");
	close(fd);
}

static void check_page(uint8_t *p, size_t page, bool zero, const char *what)
{
	size_t i;

	for (i = 0; i < page_size; i++) {
		uint8_t want = zero ? 0 : pattern(page, i);

		TEST_ASSERT(p[page * page_size + i] == want,
			    "%s: page %zu byte %zu is 0x%x, want 0x%x", what, page, i,
			    p[page * page_size + i], want);
	}
}

static void test_shared(struct kvm_vm *vm)
{
	size_t size = NR_PAGES * page_size, page, i;
	uint8_t *p, *q, *r, buf[16];
	int fd, status;
	struct stat st;
	pid_t pid;

	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	TEST_ASSERT(!fstat(fd, &st) && st.st_size == size, "fstat size");

	/* Twice the file: the second half is past its end. */
	p = map(fd, 2 * size, MAP_SHARED, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap() of an MMAP | INIT_SHARED guest_memfd");
	for (page = 0; page < NR_PAGES; page++)
		check_page(p, page, true, "fresh page");
	for (page = 0; page < NR_PAGES; page++)
		for (i = 0; i < page_size; i++)
			p[page * page_size + i] = pattern(page, i);
	TEST_ASSERT(faults(p + size, false, 0), "read at i_size should SIGBUS");
	TEST_ASSERT(faults(p + 2 * size - 8, true, 1), "write past i_size should SIGBUS");

	/* Every mapping sees the same pages, at their file offset. */
	q = map(fd, size, MAP_SHARED, 0);
	TEST_ASSERT(q != MAP_FAILED, "second mmap()");
	for (page = 0; page < NR_PAGES; page++)
		check_page(q, page, false, "second mapping");
	r = map(fd, page_size, MAP_SHARED, 3 * page_size);
	TEST_ASSERT(r != MAP_FAILED, "mmap() at an offset");
	check_page(r - 3 * page_size, 3, false, "mapping at an offset");

	/* The file cannot be read or written with syscalls. */
	TEST_ASSERT(read(fd, buf, sizeof(buf)) < 0, "read() should fail");
	TEST_ASSERT(write(fd, buf, sizeof(buf)) < 0, "write() should fail");
	TEST_ASSERT(pread(fd, buf, sizeof(buf), 0) < 0, "pread() should fail");

	/* Allocating keeps the data; punching takes it away from every mapping. */
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size), "fallocate");
	check_page(p, 2, false, "after fallocate");
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			       2 * page_size, 2 * page_size), "punch hole");
	for (page = 0; page < NR_PAGES; page++) {
		bool hole = page == 2 || page == 3;

		check_page(p, page, hole, "first mapping after punch");
		check_page(q, page, hole, "second mapping after punch");
	}
	check_page(r - 3 * page_size, 3, true, "offset mapping after punch");
	/* The hole takes new pages. */
	for (i = 0; i < page_size; i++)
		q[2 * page_size + i] = pattern(2, i);
	check_page(p, 2, false, "refilled hole");

	/* A child shares the mapping: it sees a punch done by the parent. */
	check_page(p, 6, false, "before fork");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		/* Wait for the parent's punch, then read the page. */
		while (READ_ONCE(p[7 * page_size]) != 0xee)
			usleep(1000);
		for (i = 0; i < page_size; i++)
			if (p[6 * page_size + i])
				_exit(1);
		p[6 * page_size] = 0x77;
		_exit(0);
	}
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			       6 * page_size, page_size), "punch hole with a child mapping it");
	WRITE_ONCE(p[7 * page_size], 0xee);
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    !WEXITSTATUS(status), "the child read zeros after the parent's punch");
	TEST_ASSERT(p[6 * page_size] == 0x77, "the parent sees the child's write");

	/* THP hints: asking is fine, collapsing is not. */
	TEST_ASSERT(!madvise(p, size, MADV_HUGEPAGE), "MADV_HUGEPAGE should succeed");
	TEST_ASSERT(madvise(p, size, MADV_COLLAPSE) == -1 && errno == EINVAL,
		    "MADV_COLLAPSE should fail with EINVAL");

	/* The mapping holds the file, and the file the VM. */
	close(fd);
	check_page(p, 0, false, "after close(guest_memfd)");
	TEST_ASSERT(!munmap(q, size) && !munmap(r, page_size), "munmap");
	p[5 * page_size] = 0xa5;
	TEST_ASSERT(p[5 * page_size] == 0xa5, "write after close");
	TEST_ASSERT(!munmap(p, 2 * size), "munmap");
}

static void test_outlives_vm(void)
{
	struct kvm_vm *vm = vm_create_barebones();
	uint8_t *p;
	int fd;

	fd = vm_create_guest_memfd(vm, page_size, GUEST_MEMFD_FLAG_MMAP |
						  GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, page_size, MAP_SHARED, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap()");
	p[0] = 0x42;
	close(fd);
	kvm_vm_free(vm);
	TEST_ASSERT(p[0] == 0x42 && !faults(p + 8, true, 7) && p[8] == 7,
		    "the mapping works after the VM's file descriptors are gone");
	TEST_ASSERT(!munmap(p, page_size), "munmap");
}

#define GMEM_GPA	(4ull << 30)
#define GMEM_SLOT	10

/*
 * The vCPU's side: page i of the slot holds seed + i, written by the host
 * through its mapping; it writes ~(seed + i) back, and after the host
 * punched page 1 it reads zeros there.
 */
static void guest_code(uint64_t gpa, uint64_t npages, uint64_t seed)
{
	uint64_t i;

	for (i = 0; i < npages; i++) {
		uint64_t *p = (uint64_t *)(gpa + i * 4096);

		GUEST_ASSERT_EQ(READ_ONCE(*p), seed + i);
		WRITE_ONCE(*p, ~(seed + i));
	}
	GUEST_SYNC(1);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + 4096)), 0);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)gpa), ~seed);
	GUEST_DONE();
}

/*
 * A DEFAULT VM whose memory at 4 GiB is a guest_memfd-only memslot (6.18):
 * the vCPU sees what the host wrote through the mapping and the other way
 * round, with the slot's userspace_addr 0 (@hva false) as mainline's test
 * binds it, or the host mapping (@hva true).  A punched hole reads zeros.
 */
static void test_gmem_only_slot(bool hva)
{
	size_t npages = NR_PAGES, size = npages * page_size, i;
	uint64_t seed = 0x1234567800000000ull | hva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t *p;
	int fd;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, size, MAP_SHARED, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap()");
	for (i = 0; i < npages; i++)
		p[i * page_size / 8] = seed + i;
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA, size,
				   hva ? p : NULL, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, npages);
	vcpu_args_set(vcpu, 3, GMEM_GPA, npages, seed);

	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_SYNC), NULL), UCALL_SYNC);
	for (i = 0; i < npages; i++)
		TEST_ASSERT(p[i * page_size / 8] == ~(seed + i),
			    "the host sees the guest's write to page %zu", i);
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			       page_size, page_size), "punch hole");
	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_DONE), NULL), UCALL_DONE);

	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
	kvm_vm_free(vm);
}

/*
 * The vCPU of a VM with private memory on a guest_memfd-only memslot: it
 * writes seed + i to page i, some pages private, the others shared; after
 * the host flipped every page's attribute, each page still holds what the
 * guest wrote (a private and a shared access map the same guest_memfd
 * page); after the host punched page 1, it reads zeros there.
 */
static void guest_code_protected(uint64_t gpa, uint64_t npages, uint64_t seed)
{
	uint64_t i;

	for (i = 0; i < npages; i++)
		WRITE_ONCE(*(uint64_t *)(gpa + i * 4096), seed + i);
	GUEST_SYNC(1);
	for (i = 0; i < npages; i++)
		GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + i * 4096)), seed + i);
	GUEST_SYNC(2);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + 4096)), 0);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)gpa), seed);
	GUEST_DONE();
}

/* Sets page i of the slot private if its parity is @parity, else shared. */
static void set_parity_private(struct kvm_vm *vm, size_t npages, size_t parity)
{
	size_t i;

	for (i = 0; i < npages; i++)
		vm_set_memory_attributes(vm, GMEM_GPA + i * page_size, page_size,
					 i % 2 == parity ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
}

/*
 * A KVM_X86_SW_PROTECTED_VM with an MMAP guest_memfd (INIT_SHARED is not
 * valid there): its memslot is guest_memfd-only, so the guest's shared
 * accesses are served by the guest_memfd as its private ones are, while
 * the host's mapping stays SIGBUS (the memory is the guest's).
 */
static void test_protected_gmem_only_slot(void)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	size_t npages = NR_PAGES, size = npages * page_size, i;
	uint64_t seed = 0x7e57000000000000ull;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint8_t *p;
	int fd;

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code_protected);
	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP);
	p = map(fd, size, MAP_SHARED, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap() of an MMAP guest_memfd of a SW_PROTECTED VM");
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA, size,
				   NULL, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, npages);
	vcpu_args_set(vcpu, 3, GMEM_GPA, npages, seed);
	set_parity_private(vm, npages, 0);

	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_SYNC), NULL), UCALL_SYNC);
	for (i = 0; i < npages; i++)
		TEST_ASSERT(faults(p + i * page_size, false, 0),
			    "the host's read of page %zu (written by the guest) should SIGBUS", i);
	set_parity_private(vm, npages, 1);
	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_SYNC), NULL), UCALL_SYNC);
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			       page_size, page_size), "punch hole");
	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_DONE), NULL), UCALL_DONE);

	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
	kvm_vm_free(vm);
}

/*
 * A guest_memfd without MMAP on a DEFAULT VM (6.18 allows the binding):
 * shared memory still comes from userspace_addr, not the guest_memfd.
 */
static void test_plain_gmem_slot(void)
{
	size_t npages = 2, size = npages * page_size;
	uint64_t seed = 0xabcd000000000000ull;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t *p;
	int fd;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	fd = vm_create_guest_memfd(vm, size, 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(p != MAP_FAILED, "anonymous mmap()");
	p[0] = seed;
	p[page_size / 8] = seed + 1;
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA, size, p, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, npages);
	vcpu_args_set(vcpu, 3, GMEM_GPA, npages, seed);
	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_SYNC), NULL), UCALL_SYNC);
	TEST_ASSERT(p[0] == ~seed && p[page_size / 8] == ~(seed + 1),
		    "the guest wrote the anonymous memory");
	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
	kvm_vm_free(vm);
}

static void help(const char *name)
{
	printf("usage: %s [-n]\n"
	       " -n: the kernel has no 6.18 flags (stock 6.12): check they are refused\n",
	       name);
}

int main(int argc, char *argv[])
{
	uint64_t all = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	bool sw_protected, none = false;
	struct kvm_vm *vm;
	uint64_t cap;
	int opt;

	while ((opt = getopt(argc, argv, "nh")) != -1) {
		switch (opt) {
		case 'n':
			none = true;
			break;
		default:
			gmem_usage_exit(opt, argv[0], help);
		}
	}
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));
	page_size = getpagesize();
	sw_protected = kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM);
	cap = kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS);

	ksft_print_header();
	if (none) {
		/* A kernel without the 6.18 flags: all of them are refused. */
		TEST_ASSERT(!cap, "KVM_CAP_GUEST_MEMFD_FLAGS is 0x%lx, want 0", cap);
		ksft_set_plan(1);
		vm = vm_create_barebones();
		test_flags(vm, 0, "no KVM_CAP_GUEST_MEMFD_FLAGS");
		kvm_vm_free(vm);
		ksft_test_result_pass("no KVM_CAP_GUEST_MEMFD_FLAGS: every flag bit is refused\n");
		ksft_finished();
	}
	ksft_set_plan(8);
	if (!sw_protected)
		ksft_print_msg("no KVM_X86_SW_PROTECTED_VM: DEFAULT VMs only\n");

	TEST_ASSERT(cap == all, "KVM_CAP_GUEST_MEMFD_FLAGS on /dev/kvm is 0x%lx, want 0x%lx",
		    cap, all);
	vm = vm_create_barebones();
	TEST_ASSERT(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD) == 1,
		    "KVM_CAP_GUEST_MEMFD is 1 on a DEFAULT VM");
	TEST_ASSERT(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS) == all,
		    "a DEFAULT VM allows MMAP and INIT_SHARED");
	test_flags(vm, all, "DEFAULT VM");
	if (sw_protected) {
		struct kvm_vm *pvm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);

		TEST_ASSERT(vm_check_cap(pvm, KVM_CAP_GUEST_MEMFD_FLAGS) == GUEST_MEMFD_FLAG_MMAP,
			    "a VM with private memory allows MMAP only");
		test_flags(pvm, GUEST_MEMFD_FLAG_MMAP, "SW_PROTECTED VM");
		test_private_by_default(pvm, "SW_PROTECTED VM");
		kvm_vm_free(pvm);
	}
	ksft_test_result_pass("KVM_CAP_GUEST_MEMFD_FLAGS and the flags KVM_CREATE_GUEST_MEMFD takes\n");

	test_mmap_refused(vm);
	ksft_test_result_pass("mmap(): ENODEV without MMAP, EINVAL for MAP_PRIVATE\n");

	test_private_by_default(vm, "DEFAULT VM");
	ksft_test_result_pass("MMAP without INIT_SHARED: every access is SIGBUS\n");

	test_shared(vm);
	ksft_test_result_pass("MMAP | INIT_SHARED: zeroed shared pages, SIGBUS past the end, punch gives zeros, also to a forked child\n");
	kvm_vm_free(vm);

	test_outlives_vm();
	ksft_test_result_pass("a mapping outlives the guest_memfd's and the VM's descriptors\n");

	test_gmem_only_slot(false);
	test_gmem_only_slot(true);
	ksft_test_result_pass("guest_memfd-only memslot: the vCPU and the host share its pages\n");

	test_plain_gmem_slot();
	ksft_test_result_pass("guest_memfd without MMAP: shared memory from userspace_addr\n");

	if (sw_protected) {
		test_protected_gmem_only_slot();
		ksft_test_result_pass("SW_PROTECTED VM, MMAP guest_memfd: private and shared guest accesses share its pages, the host's SIGBUS\n");
	} else {
		ksft_test_result_skip("no KVM_X86_SW_PROTECTED_VM\n");
	}
	ksft_finished();
}
