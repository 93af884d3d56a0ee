// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd memslots on arm64 (the 6.18 arm64 behaviour, brought to 6.12
 * with the Rust guest_memfd): a guest_memfd backs all of a memslot's
 * memory, which therefore must be mappable.
 *
 * - KVM_CAP_GUEST_MEMFD is 1 on /dev/kvm and on the VM, and
 *   KVM_CAP_GUEST_MEMFD_FLAGS is MMAP | INIT_SHARED on both.
 * - Binding a guest_memfd created without MMAP fails with EINVAL (6.18's
 *   kvm_arch_prepare_memory_region()), as do KVM_MEM_READONLY and
 *   KVM_MEM_LOG_DIRTY_PAGES on a guest_memfd memslot.
 * - The vCPU reads what the host wrote through its mapping of the
 *   guest_memfd, and the host sees what the vCPU wrote; after a punched
 *   hole the vCPU reads zeros there (stage 2 was unmapped) while the rest
 *   keeps its data.
 * - guest_memfd memory and anonymous memory coexist in the VM, and a
 *   read-only anonymous memslot refuses the vCPU's write (KVM_EXIT_MMIO,
 *   memory unchanged).
 * - The vCPU executes code it wrote into guest_memfd memory: on a CPU
 *   without CTR_EL0.DIC the write maps the page without exec permission
 *   and the instruction fetch takes a stage-2 permission fault, which must
 *   relax the mapping (6.18 mapped it again, which stage 2 refuses as no
 *   update, and the vCPU faulted forever; fixed in 7.1).
 * - Releasing the guest_memfd (last mapping and fd gone) unmaps it from
 *   stage 2: the vCPU's next access to a page it had mapped fails with
 *   EFAULT and KVM_EXIT_MEMORY_FAULT instead of reaching freed memory.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

#define GMEM_SLOT	10
#define ANON_SLOT	11
#define RO_SLOT		12

#define NR_PAGES	16
#define GMEM_GPA	0xc0000000ul
#define ANON_GPA	(GMEM_GPA + 0x100000ul)
#define RO_GPA		(GMEM_GPA + 0x200000ul)

/* Pages [PUNCH_FIRST, PUNCH_FIRST + PUNCH_PAGES) are punched at stage 2. */
#define PUNCH_FIRST	4
#define PUNCH_PAGES	4
/* The page the vCPU writes code into and runs. */
#define CODE_PAGE	12

#define HOST_VAL(i)	(0x4000000000000000ul | (i))
#define GUEST_VAL(i)	(0x5000000000000000ul | (i))
#define RO_VAL		0x6000000000000000ul
#define GUEST_RET	42

static uint64_t page_size;

static uint64_t *page_ptr(uint64_t base, int i)
{
	return (uint64_t *)(base + i * page_size);
}

static bool punched(int i)
{
	return i >= PUNCH_FIRST && i < PUNCH_FIRST + PUNCH_PAGES;
}

static void guest_code(uint64_t psize)
{
	/* mov x0, #GUEST_RET; ret */
	static const uint32_t code[] = { 0xd2800000 | (GUEST_RET << 5), 0xd65f03c0 };
	uint64_t (*fn)(void);
	int i;

	page_size = psize;

	/* Stage 1: the host's data in, the guest's data out. */
	for (i = 0; i < NR_PAGES; i++) {
		GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(GMEM_GPA, i)), HOST_VAL(i));
		GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(ANON_GPA, i)), HOST_VAL(i));
		WRITE_ONCE(*page_ptr(GMEM_GPA, i), GUEST_VAL(i));
		WRITE_ONCE(*page_ptr(ANON_GPA, i), GUEST_VAL(i));
	}
	GUEST_SYNC(1);

	/* Stage 2: the host punched a hole; the rest is still ours. */
	for (i = 0; i < NR_PAGES; i++)
		GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(GMEM_GPA, i)),
				punched(i) ? 0 : GUEST_VAL(i));
	for (i = 0; i < NR_PAGES; i++)
		GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(ANON_GPA, i)), GUEST_VAL(i));
	GUEST_SYNC(2);

	/* Stage 3: a read-only memslot reads, and its write is an MMIO exit. */
	GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(RO_GPA, 0)), RO_VAL);
	WRITE_ONCE(*page_ptr(RO_GPA, 0), GUEST_VAL(0));
	GUEST_ASSERT_EQ(READ_ONCE(*page_ptr(RO_GPA, 0)), RO_VAL);
	GUEST_SYNC(3);

	/* Stage 4: run code written into guest_memfd memory. */
	memcpy((void *)page_ptr(GMEM_GPA, CODE_PAGE), code, sizeof(code));
	asm volatile("dc cvau, %0\n\t"
		     "dsb ish\n\t"
		     "ic ivau, %0\n\t"
		     "dsb ish\n\t"
		     "isb" : : "r" (page_ptr(GMEM_GPA, CODE_PAGE)) : "memory");
	fn = (void *)page_ptr(GMEM_GPA, CODE_PAGE);
	GUEST_SYNC(fn());

	/* Stage 5: the host released the guest_memfd; this must not map. */
	GUEST_SYNC(READ_ONCE(*page_ptr(GMEM_GPA, 0)));

	GUEST_DONE();
}

static uint64_t run_to_ucall(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	vcpu_run(vcpu);
	TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_MMIO,
		    "unexpected exit reason %u (%s)", vcpu->run->exit_reason,
		    exit_reason_str(vcpu->run->exit_reason));
	return get_ucall(vcpu, uc);
}

static void expect_sync(struct kvm_vcpu *vcpu, uint64_t stage)
{
	struct ucall uc;

	switch (run_to_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		TEST_ASSERT(uc.args[1] == stage, "guest at stage %lu, expected %lu",
			    uc.args[1], stage);
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
		break;
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

static void test_caps(struct kvm_vm *vm)
{
	uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

	TEST_ASSERT_EQ(kvm_check_cap(KVM_CAP_GUEST_MEMFD), 1);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD), 1);
	TEST_ASSERT_EQ(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS), want);
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS), want);
	/* No private memory: no memory attributes. */
	TEST_ASSERT_EQ(vm_check_cap(vm, KVM_CAP_MEMORY_ATTRIBUTES), 0);
	pr_info("caps: GUEST_MEMFD 1, GUEST_MEMFD_FLAGS 0x%lx\n", want);
}

/* Binding guest_memfd @fd with memslot flags @slot_flags fails with EINVAL. */
static void expect_bind_einval(struct kvm_vm *vm, uint64_t size, int fd,
			       uint32_t slot_flags, const char *what)
{
	int r = __vm_set_user_memory_region2(vm, GMEM_SLOT, slot_flags,
					     GMEM_GPA, size, NULL, fd, 0);

	TEST_ASSERT(r == -1 && errno == EINVAL, "%s: %d (errno %d), want EINVAL",
		    what, r, errno);
}

/* What a memslot bound to a guest_memfd refuses. */
static void test_bind_rules(struct kvm_vm *vm, uint64_t size)
{
	uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	int fd;

	fd = vm_create_guest_memfd(vm, size, 0);
	expect_bind_einval(vm, size, fd, KVM_MEM_GUEST_MEMFD,
			   "binding a guest_memfd without MMAP");
	close(fd);

	fd = vm_create_guest_memfd(vm, size, flags);
	expect_bind_einval(vm, size, fd, KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY,
			   "a read-only guest_memfd memslot");
	expect_bind_einval(vm, size, fd, KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
			   "dirty logging a guest_memfd memslot");
	close(fd);
	pr_info("bind: without MMAP, READONLY and LOG_DIRTY_PAGES all EINVAL\n");
}

static bool cpu_has_dic(void)
{
	uint64_t ctr;

	asm volatile("mrs %0, ctr_el0" : "=r" (ctr));
	return ctr & BIT(29);
}

int main(int argc, char *argv[])
{
	uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t size, *gmem, *anon, *ro;
	int fd, i, r;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));
	page_size = getpagesize();
	size = NR_PAGES * page_size;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vcpu_args_set(vcpu, 1, page_size);
	test_caps(vm);
	test_bind_rules(vm, size);

	/*
	 * All of this memslot's memory is the guest_memfd's; userspace_addr
	 * is the host's mapping of it, as a VMM would set it.
	 */
	fd = vm_create_guest_memfd(vm, size, flags);
	gmem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(gmem != MAP_FAILED, "mmap() of the guest_memfd failed");
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD,
				   GMEM_GPA, size, gmem, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, NR_PAGES);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, ANON_GPA, ANON_SLOT,
				    NR_PAGES, 0);
	virt_map(vm, ANON_GPA, ANON_GPA, NR_PAGES);
	anon = addr_gpa2hva(vm, ANON_GPA);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, RO_GPA, RO_SLOT,
				    1, KVM_MEM_READONLY);
	virt_map(vm, RO_GPA, RO_GPA, 1);
	ro = addr_gpa2hva(vm, RO_GPA);
	*ro = RO_VAL;

	for (i = 0; i < NR_PAGES; i++) {
		gmem[i * page_size / 8] = HOST_VAL(i);
		anon[i * page_size / 8] = HOST_VAL(i);
	}

	expect_sync(vcpu, 1);
	for (i = 0; i < NR_PAGES; i++) {
		TEST_ASSERT_EQ(gmem[i * page_size / 8], GUEST_VAL(i));
		TEST_ASSERT_EQ(anon[i * page_size / 8], GUEST_VAL(i));
	}
	pr_info("stage 1: vCPU read the host's writes, host reads the vCPU's\n");

	TEST_ASSERT(!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       PUNCH_FIRST * page_size, PUNCH_PAGES * page_size),
		    "punching a hole failed");
	for (i = 0; i < NR_PAGES; i++)
		TEST_ASSERT_EQ(gmem[i * page_size / 8], punched(i) ? 0 : GUEST_VAL(i));
	expect_sync(vcpu, 2);
	pr_info("stage 2: after the punch the vCPU reads zeros there, data elsewhere\n");

	/* The write to the read-only memslot exits as MMIO. */
	vcpu_run(vcpu);
	TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_MMIO &&
		    vcpu->run->mmio.is_write &&
		    vcpu->run->mmio.phys_addr == RO_GPA,
		    "the write to the read-only memslot: exit %u, MMIO write %d at 0x%llx",
		    vcpu->run->exit_reason, vcpu->run->mmio.is_write,
		    vcpu->run->mmio.phys_addr);
	expect_sync(vcpu, 3);
	TEST_ASSERT_EQ(*ro, RO_VAL);
	pr_info("stage 3: the read-only memslot refused the write (MMIO exit)\n");

	/* The guest reports what its code returned as the stage. */
	expect_sync(vcpu, GUEST_RET);
	pr_info("stage 4: code written into guest_memfd memory ran (CTR_EL0.DIC %d: %s)\n",
		cpu_has_dic(), cpu_has_dic() ? "mapped executable at once" :
		"through a stage-2 permission fault");

	/* Release the guest_memfd; the memslot stays. */
	munmap(gmem, size);
	close(fd);
	r = __vcpu_run(vcpu);
	TEST_ASSERT(r == -1 && errno == EFAULT &&
		    vcpu->run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
		    vcpu->run->memory_fault.gpa == GMEM_GPA,
		    "access after the release: KVM_RUN %d (errno %d), exit %u, gpa 0x%llx",
		    r, errno, vcpu->run->exit_reason,
		    (unsigned long long)vcpu->run->memory_fault.gpa);
	pr_info("stage 5: after the release the vCPU's access is a memory fault\n");

	kvm_vm_free(vm);
	return 0;
}
