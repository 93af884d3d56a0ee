// SPDX-License-Identifier: GPL-2.0
/*
 * NUMA placement of guest_memfd memory and the guest_memfd filesystem (the
 * 6.19 semantics of the Rust guest_memfd): mbind() on a mapping of an MMAP
 * guest_memfd sets a policy that the file's inode keeps, get_mempolicy()
 * reads it back, and every later allocation of a page of the file follows
 * it, whether a host fault, a vCPU's fault or fallocate() allocates it;
 * pages already allocated stay where they are.
 *
 * Needs two NUMA nodes (scripts/vmrun --numa=2 gives the test VM two);
 * skips with fewer.  Placement is read with move_pages() (status only)
 * through a host mapping, and for private memory (x86's SW_PROTECTED VMs),
 * which the host cannot map, from the nodes' FilePages counters.  x86_64
 * and arm64.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#ifndef GUEST_MEMFD_MAGIC
#define GUEST_MEMFD_MAGIC 0x474d454d	/* "GMEM" */
#endif

#define NR_PAGES	16
#define MAXNODE		(8 * sizeof(unsigned long))
#define GMEM_GPA	(4ull << 30)
#define GMEM_SLOT	10

static size_t page_size;

static long sys_mbind(void *addr, size_t len, int mode, unsigned long nodes,
		      unsigned int flags)
{
	return syscall(SYS_mbind, addr, len, mode, nodes ? &nodes : NULL,
		       nodes ? MAXNODE : 0, flags);
}

/* The mode and nodes of the policy at @addr (MPOL_F_ADDR). */
static int policy_at(void *addr, unsigned long *nodes)
{
	int mode = -1;

	*nodes = 0;
	TEST_ASSERT(!syscall(SYS_get_mempolicy, &mode, nodes, MAXNODE, addr, MPOL_F_ADDR),
		    "get_mempolicy(MPOL_F_ADDR) at %p", addr);
	return mode;
}

/* The node of the page mapped at @addr: move_pages() with no target. */
static int node_of(void *addr)
{
	int status = -1;

	TEST_ASSERT(!syscall(SYS_move_pages, 0, 1UL, &addr, NULL, &status, 0),
		    "move_pages() status of %p", addr);
	return status;
}

/* Reads every page of @p (@npages pages), faulting them in. */
static void touch(uint8_t *p, size_t npages)
{
	size_t i;

	for (i = 0; i < npages; i++)
		(void)READ_ONCE(p[i * page_size]);
}

/* Every page of @p is on node @node. */
static void assert_on(uint8_t *p, size_t npages, int node, const char *what)
{
	size_t i;

	for (i = 0; i < npages; i++) {
		int n = node_of(p + i * page_size);

		TEST_ASSERT(n == node, "%s: page %zu is on node %d, want %d", what, i, n, node);
	}
}

static void *map(int fd, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	TEST_ASSERT(p != MAP_FAILED, "mmap() of a guest_memfd");
	return p;
}

static void punch(int fd, size_t offset, size_t len)
{
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, len),
		    "fallocate(PUNCH_HOLE)");
}

/* The number of online NUMA nodes: "0" or "0-N" in sysfs. */
static int nr_online_nodes(void)
{
	int first, last, n;
	FILE *f;

	f = fopen("/sys/devices/system/node/online", "r");
	if (!f)
		return 1;
	n = fscanf(f, "%d-%d", &first, &last);
	fclose(f);
	return n == 2 ? last - first + 1 : 1;
}

/*
 * The FilePages of node @node, in pages, with the CPUs' pending counter
 * deltas folded in first (vm.stat_refresh), so that it is exact.
 */
static long node_file_pages(int node)
{
	char path[64], line[128];
	long kb = -1;
	FILE *f;

	f = fopen("/proc/sys/vm/stat_refresh", "w");
	TEST_ASSERT(f && fputs("1", f) >= 0 && !fclose(f), "write vm.stat_refresh");

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	f = fopen(path, "r");
	TEST_ASSERT(f, "open %s", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Node %*d FilePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	TEST_ASSERT(kb >= 0, "no FilePages in %s", path);
	return kb * 1024 / page_size;
}

/*
 * The inode comes from guest_memfd's own filesystem; stat() reports what
 * it always did, and two guest_memfds have two inodes.
 */
static void test_filesystem(struct kvm_vm *vm)
{
	int fd1 = vm_create_guest_memfd(vm, NR_PAGES * page_size, 0);
	int fd2 = vm_create_guest_memfd(vm, 2 * page_size, GUEST_MEMFD_FLAG_MMAP);
	struct stat st1, st2;
	struct statfs sfs;

	TEST_ASSERT(!fstatfs(fd1, &sfs), "fstatfs()");
	TEST_ASSERT(sfs.f_type == GUEST_MEMFD_MAGIC, "f_type 0x%lx, want GUEST_MEMFD_MAGIC",
		    (unsigned long)sfs.f_type);
	TEST_ASSERT(!fstat(fd1, &st1) && !fstat(fd2, &st2), "fstat()");
	TEST_ASSERT(S_ISREG(st1.st_mode), "st_mode 0%o is not S_IFREG", st1.st_mode);
	TEST_ASSERT(st1.st_size == NR_PAGES * page_size && st2.st_size == 2 * page_size,
		    "st_size %ld and %ld", (long)st1.st_size, (long)st2.st_size);
	TEST_ASSERT(st1.st_blksize == page_size, "st_blksize %ld", (long)st1.st_blksize);
	TEST_ASSERT(st1.st_ino != st2.st_ino, "two guest_memfds share inode %lu",
		    (unsigned long)st1.st_ino);
	TEST_ASSERT(st1.st_dev == st2.st_dev, "two guest_memfds on two filesystems");
	close(fd1);
	close(fd2);
}

/* The task's own policy (set_mempolicy()). */
static void set_task_policy(int mode, unsigned long nodes)
{
	TEST_ASSERT(!syscall(SYS_set_mempolicy, mode, nodes ? &nodes : NULL,
			     nodes ? MAXNODE : 0),
		    "set_mempolicy(mode %d)", mode);
}

/*
 * mbind() and get_mempolicy() for each mode, on part of a mapping: the
 * policy belongs to the file, not to the mapping: a second mapping, and
 * one made after the first is gone, see it.  Where none is set,
 * get_mempolicy() reports the default, not the task's policy.  An invalid
 * mode is EINVAL.
 */
static void test_policy_modes(struct kvm_vm *vm)
{
	static const struct {
		int mode;
		unsigned long nodes;
	} cases[] = {
		{ MPOL_PREFERRED, 1ul << 1 },
		{ MPOL_BIND, 1ul << 1 },
		{ MPOL_BIND, 3ul },
		{ MPOL_INTERLEAVE, 3ul },
		{ MPOL_PREFERRED_MANY, 3ul },
		{ MPOL_WEIGHTED_INTERLEAVE, 3ul },
		{ MPOL_LOCAL, 0 },
		{ MPOL_DEFAULT, 0 },
	};
	size_t size = NR_PAGES * page_size, i;
	unsigned long nodes;
	uint8_t *p, *q;
	int fd;

	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, size);
	q = map(fd, size);
	set_task_policy(MPOL_PREFERRED, 1ul << 1);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int mode = cases[i].mode;

		TEST_ASSERT(!sys_mbind(p + 2 * page_size, 2 * page_size, mode, cases[i].nodes, 0),
			    "mbind(mode %d, nodes 0x%lx)", mode, cases[i].nodes);
		TEST_ASSERT_EQ(policy_at(p + 2 * page_size, &nodes), mode);
		TEST_ASSERT_EQ(nodes, cases[i].nodes);
		TEST_ASSERT_EQ(policy_at(q + 3 * page_size, &nodes), mode);
		TEST_ASSERT_EQ(nodes, cases[i].nodes);
		/* Outside the range: no policy, reported as the default. */
		TEST_ASSERT_EQ(policy_at(q + page_size, &nodes), MPOL_DEFAULT);
		TEST_ASSERT_EQ(policy_at(p + 4 * page_size, &nodes), MPOL_DEFAULT);
	}
	set_task_policy(MPOL_DEFAULT, 0);

	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 1, 0), "mbind(MPOL_BIND)");
	TEST_ASSERT(!munmap(p, size) && !munmap(q, size), "munmap");
	p = map(fd, size);
	TEST_ASSERT_EQ(policy_at(p + 5 * page_size, &nodes), MPOL_BIND);
	TEST_ASSERT_EQ(nodes, 1ul << 1);

	errno = 0;
	TEST_ASSERT(sys_mbind(p, size, MPOL_MAX, 1ul, 0) == -1 && errno == EINVAL,
		    "mbind() with an invalid mode: errno %d, want EINVAL", errno);
	errno = 0;
	TEST_ASSERT(sys_mbind(p, size, MPOL_BIND, 0, 0) == -1 && errno == EINVAL,
		    "mbind(MPOL_BIND) with no node: errno %d, want EINVAL", errno);
	TEST_ASSERT_EQ(policy_at(p + 5 * page_size, &nodes), MPOL_BIND);
	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
}

/*
 * Host faults allocate by the policy; a new policy moves nothing already
 * allocated, but a punched page comes back by the new one.  fallocate()
 * allocates by the policy too.
 */
static void test_host_and_fallocate(struct kvm_vm *vm)
{
	size_t size = NR_PAGES * page_size;
	uint8_t *p;
	int fd;

	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, size);
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 1, 0), "mbind(node 1)");
	touch(p, NR_PAGES);
	assert_on(p, NR_PAGES, 1, "host faults under MPOL_BIND node 1");

	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 0, 0), "mbind(node 0)");
	touch(p, NR_PAGES);
	assert_on(p, NR_PAGES, 1, "pages allocated before the policy changed");

	punch(fd, 3 * page_size, 2 * page_size);
	touch(p, NR_PAGES);
	TEST_ASSERT_EQ(node_of(p + 3 * page_size), 0);
	TEST_ASSERT_EQ(node_of(p + 4 * page_size), 0);
	TEST_ASSERT_EQ(node_of(p + 5 * page_size), 1);
	TEST_ASSERT_EQ(node_of(p + 2 * page_size), 1);

	/* fallocate() under node 1, then look with node 0 as the policy. */
	punch(fd, 0, size);
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 1, 0), "mbind(node 1)");
	TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size), "fallocate()");
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 0, 0), "mbind(node 0)");
	touch(p, NR_PAGES);
	assert_on(p, NR_PAGES, 1, "fallocate() under MPOL_BIND node 1");

	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
}

/*
 * Interleaving spreads each file by index from a node its inode number
 * picks: node (st_ino + index) % 2.  Touching two files' pages in turns
 * must not couple them, as a per-task interleave counter would (it would
 * put all of one file's pages on one node).
 */
static void test_interleave(struct kvm_vm *vm)
{
	size_t size = NR_PAGES * page_size, i, f;
	struct stat st[2];
	uint8_t *p[2];
	int fd[2];

	for (f = 0; f < 2; f++) {
		fd[f] = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP |
							GUEST_MEMFD_FLAG_INIT_SHARED);
		p[f] = map(fd[f], size);
		TEST_ASSERT(!fstat(fd[f], &st[f]), "fstat()");
		TEST_ASSERT(!sys_mbind(p[f], size, MPOL_INTERLEAVE, 3ul, 0),
			    "mbind(MPOL_INTERLEAVE)");
	}
	for (i = 0; i < NR_PAGES; i++)
		for (f = 0; f < 2; f++)
			touch(p[f] + i * page_size, 1);
	for (f = 0; f < 2; f++) {
		for (i = 0; i < NR_PAGES; i++) {
			int want = (st[f].st_ino + i) % 2;
			int n = node_of(p[f] + i * page_size);

			TEST_ASSERT(n == want, "file %zu (inode %lu): page %zu on node %d, want %d",
				    f, (unsigned long)st[f].st_ino, i, n, want);
		}
		TEST_ASSERT(!munmap(p[f], size), "munmap");
		close(fd[f]);
	}
}

/* Runs @vcpu until the guest is done; a guest assertion fails the test. */
static void run_to_done(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	vcpu_run(vcpu);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_DONE:
		return;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %s (ucall %lu)",
			  exit_reason_str(vcpu->run->exit_reason), uc.cmd);
	}
}

/* The vCPU writes seed + i to page i of the slot at @gpa. */
static void guest_code(uint64_t gpa, uint64_t npages, uint64_t seed)
{
	uint64_t i;

	for (i = 0; i < npages; i++)
		WRITE_ONCE(*(uint64_t *)(gpa + i * 4096), seed + i);
	GUEST_DONE();
}

/*
 * A vCPU's faults on a guest_memfd-only memslot allocate by the policy
 * (shared faults of a DEFAULT VM; the host then maps the same pages).
 */
static void test_vcpu_shared(void)
{
	size_t size = NR_PAGES * page_size, i;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t *p;
	int fd;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	p = map(fd, size);
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 1, 0), "mbind(node 1)");
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA, size,
				   NULL, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, NR_PAGES);
	vcpu_args_set(vcpu, 3, GMEM_GPA, NR_PAGES, 0x5eed0000ull);
	run_to_done(vcpu);

	/* Any page the host's touch allocated would be on node 0. */
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << 0, 0), "mbind(node 0)");
	for (i = 0; i < NR_PAGES; i++)
		TEST_ASSERT_EQ(READ_ONCE(p[i * page_size / 8]), 0x5eed0000ull + i);
	assert_on((uint8_t *)p, NR_PAGES, 1, "vCPU faults under MPOL_BIND node 1");

	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
	kvm_vm_free(vm);
}

#ifdef __x86_64__
/*
 * Private faults of a SW_PROTECTED VM allocate by the policy as well: the
 * host cannot map private memory, so count the nodes' page-cache pages.
 * The policy is set through a mapping of the (MMAP) guest_memfd.
 */
static void test_vcpu_private(int node)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	const size_t npages = 512, size = npages * page_size;
	long before[2], grew[2];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint8_t *p;
	int fd, n;

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);
	fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP);
	p = map(fd, size);
	TEST_ASSERT(!sys_mbind(p, size, MPOL_BIND, 1ul << node, 0), "mbind(node %d)", node);
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA, size,
				   NULL, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, npages);
	vm_set_memory_attributes(vm, GMEM_GPA, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	vcpu_args_set(vcpu, 3, GMEM_GPA, npages, 0x9a9e0000ull);

	for (n = 0; n < 2; n++)
		before[n] = node_file_pages(n);
	run_to_done(vcpu);
	for (n = 0; n < 2; n++)
		grew[n] = node_file_pages(n) - before[n];
	TEST_ASSERT(grew[node] >= (long)npages && grew[!node] < (long)npages / 4,
		    "private faults under MPOL_BIND node %d: node 0 grew by %ld pages, node 1 by %ld, want %zu on node %d",
		    node, grew[0], grew[1], npages, node);

	TEST_ASSERT(!munmap(p, size), "munmap");
	close(fd);
	kvm_vm_free(vm);
}
#endif

int main(int argc, char *argv[])
{
	uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	struct kvm_vm *vm;

	page_size = getpagesize();
	TEST_REQUIRE((kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & want) == want);
	TEST_REQUIRE(nr_online_nodes() >= 2);

	ksft_print_header();
#ifdef __x86_64__
	ksft_set_plan(6);
#else
	ksft_set_plan(5);	/* No private memory. */
#endif

	vm = vm_create_barebones();
	test_filesystem(vm);
	ksft_test_result_pass("guest_memfd filesystem: magic, S_IFREG, size, blksize, an inode each\n");
	test_policy_modes(vm);
	ksft_test_result_pass("mbind()/get_mempolicy() of every mode; the policy is the file's\n");
	test_host_and_fallocate(vm);
	ksft_test_result_pass("host faults and fallocate() follow the policy; a new one moves nothing; punch + fault follows it\n");
	test_interleave(vm);
	ksft_test_result_pass("two guest_memfds interleave independently, by inode number + index\n");
	kvm_vm_free(vm);

	test_vcpu_shared();
	ksft_test_result_pass("vCPU faults on a guest_memfd-only memslot follow the policy\n");
#ifdef __x86_64__
	if (kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM)) {
		test_vcpu_private(1);
		test_vcpu_private(0);
		ksft_test_result_pass("private vCPU faults follow the policy\n");
	} else {
		ksft_test_result_skip("no KVM_X86_SW_PROTECTED_VM\n");
	}
#endif
	ksft_finished();
}
