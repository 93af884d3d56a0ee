// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_punch_zero_test
 *
 * The guest writes private memory, the host punches holes in the backing
 * guest_memfd with fallocate(PUNCH_HOLE | KEEP_SIZE), and the guest reads
 * the memory back: every punched page must read as zeros, every other page
 * must still hold what the guest wrote.  Memory that the host allocates with
 * fallocate(KEEP_SIZE), either before the guest ever touched it or right
 * after punching it, must also read as zeros, while allocating over pages
 * that are already populated must leave their content alone.
 *
 * One guest_memfd backs two memslots, bound "crosswise": the memslot at the
 * lower GPA maps the upper half of the file and vice versa, so that file
 * offsets and GPAs differ and holes straddle the boundary between bindings.
 * A few pages at the end of the file are not bound at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define SLOT_BASE		10
#define SLOT_NPAGES		16
#define SLOT_SIZE		(SLOT_NPAGES * PAGE_SIZE)
/* File pages bound to memslots, then a few pages no memslot maps. */
#define NR_PAGES		(2 * SLOT_NPAGES)
#define NR_UNBOUND_PAGES	4
#define GMEM_SIZE		((NR_PAGES + NR_UNBOUND_PAGES) * PAGE_SIZE)

#define GPA_LOW			(1ull << 32)
#define GPA_HIGH		(GPA_LOW + SZ_1G)

#define QWORDS_PER_PAGE		(PAGE_SIZE / sizeof(uint64_t))

struct page_range {
	int first;
	int nr;
};

struct punch_round {
	const char *desc;
	/* File pages to punch, then to allocate; terminated by nr == 0. */
	struct page_range punch[8];
	struct page_range alloc[4];
};

static const struct punch_round rounds[] = {
	{
		.desc = "single pages and a run punched, guest faults them back",
		.punch = { { 0, 1 }, { 5, 3 }, { 31, 1 }, { NR_PAGES, NR_UNBOUND_PAGES } },
	},
	{
		.desc = "hole across both bindings, then ALLOCATE over the whole file",
		.punch = { { 14, 4 } },
		.alloc = { { 0, NR_PAGES + NR_UNBOUND_PAGES } },
	},
	{
		.desc = "odd pages punched one by one, some twice, then re-allocated",
		.punch = { { 1, 1 }, { 3, 1 }, { 9, 1 }, { 17, 1 }, { 25, 1 },
			   { 1, 1 }, { 31, 1 } },
		.alloc = { { 1, 1 }, { 3, 1 }, { 9, 1 } },
	},
	{
		.desc = "whole file punched and allocated again",
		.punch = { { 0, NR_PAGES + NR_UNBOUND_PAGES } },
		.alloc = { { 0, NR_PAGES + NR_UNBOUND_PAGES } },
	},
	{
		.desc = "nothing punched, ALLOCATE over populated pages",
		.alloc = { { 0, NR_PAGES } },
	},
};

#define NR_ROUNDS	ARRAY_SIZE(rounds)

/*
 * Bit i set: file page i must read as zeros in the guest's next check.
 * Written by the host before each check.
 */
static uint64_t zero_mask;

/* The GPA at which the guest sees page @page of the guest_memfd. */
static uint64_t file_page_gpa(int page)
{
	uint64_t base = page < SLOT_NPAGES ? GPA_HIGH : GPA_LOW;

	return base + (page % SLOT_NPAGES) * PAGE_SIZE;
}

static uint64_t pattern(int round, int page, int qword)
{
	return (1ull << 63) | ((uint64_t)round << 48) |
	       ((uint64_t)page << 32) | qword;
}

static void guest_fill(int round)
{
	int page, q;

	for (page = 0; page < NR_PAGES; page++) {
		uint64_t *mem = (uint64_t *)file_page_gpa(page);

		for (q = 0; q < QWORDS_PER_PAGE; q++)
			WRITE_ONCE(mem[q], pattern(round, page, q));
	}
}

static void guest_check(int round)
{
	uint64_t mask = READ_ONCE(zero_mask);
	int page, q;

	for (page = 0; page < NR_PAGES; page++) {
		uint64_t *mem = (uint64_t *)file_page_gpa(page);
		bool zero = mask & BIT_ULL(page);

		for (q = 0; q < QWORDS_PER_PAGE; q++) {
			uint64_t expected = zero ? 0 : pattern(round, page, q);
			uint64_t val = READ_ONCE(mem[q]);

			__GUEST_ASSERT(val == expected,
				       "round %d: file page %d (gpa 0x%lx) qword %d: expected 0x%lx, got 0x%lx",
				       round, page, file_page_gpa(page), q,
				       expected, val);
		}
	}
}

static void guest_code(void)
{
	int round;

	/* The host allocated the whole file up front: fresh pages are zero. */
	guest_check(0);
	GUEST_SYNC(0);

	for (round = 1; round <= NR_ROUNDS; round++) {
		guest_fill(round);
		GUEST_SYNC(round);
		guest_check(round);
		GUEST_SYNC(round);
	}
	GUEST_DONE();
}

static void gmem_fallocate(int fd, int mode, const struct page_range *r)
{
	int ret;

	ret = fallocate(fd, mode, r->first * PAGE_SIZE, r->nr * PAGE_SIZE);
	TEST_ASSERT(!ret, "fallocate(%s) of pages [%d, %d) failed: %s",
		    mode & FALLOC_FL_PUNCH_HOLE ? "PUNCH_HOLE" : "ALLOCATE",
		    r->first, r->first + r->nr, strerror(errno));
}

/* Run the vCPU to its next GUEST_SYNC, which must report @stage. */
static void run_to_sync(struct kvm_vcpu *vcpu, uint64_t stage)
{
	struct ucall uc;

	gmem_run_to_ucall(vcpu, &uc, BIT(UCALL_SYNC), NULL);
	TEST_ASSERT(uc.args[1] == stage, "Guest reached stage %lu, expected %lu",
		    uc.args[1], stage);
}

static void do_round(struct kvm_vm *vm, struct kvm_vcpu *vcpu, int fd, int nr)
{
	const struct punch_round *r = &rounds[nr - 1];
	const struct page_range *p;
	uint64_t mask = 0;
	int page;

	/* The guest has filled every page with this round's pattern. */
	run_to_sync(vcpu, nr);

	for (p = r->punch; p->nr; p++) {
		gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, p);
		for (page = p->first; page < p->first + p->nr; page++)
			if (page < NR_PAGES)
				mask |= BIT_ULL(page);
	}
	for (p = r->alloc; p->nr; p++)
		gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE, p);

	zero_mask = mask;
	sync_global_to_guest(vm, zero_mask);

	/* The guest has checked every page. */
	run_to_sync(vcpu, nr);
	ksft_test_result_pass("round %d: %s (zero mask 0x%lx)\n", nr, r->desc,
			      mask);
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	const struct page_range all = { 0, NR_PAGES + NR_UNBOUND_PAGES };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	void *hva;
	int fd, nr;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	ksft_print_header();
	ksft_set_plan(1 + NR_ROUNDS);

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);

	fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);
	hva = mmap(NULL, 2 * SLOT_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(hva != MAP_FAILED, "mmap() failed");

	/* Crosswise: the low GPA maps the upper half of the bound pages. */
	vm_set_user_memory_region2(vm, SLOT_BASE, KVM_MEM_GUEST_MEMFD,
				   GPA_LOW, SLOT_SIZE, hva, fd, SLOT_SIZE);
	vm_set_user_memory_region2(vm, SLOT_BASE + 1, KVM_MEM_GUEST_MEMFD,
				   GPA_HIGH, SLOT_SIZE, (uint8_t *)hva + SLOT_SIZE,
				   fd, 0);
	vm_mem_set_private(vm, GPA_LOW, SLOT_SIZE);
	vm_mem_set_private(vm, GPA_HIGH, SLOT_SIZE);
	virt_map(vm, GPA_LOW, GPA_LOW, SLOT_NPAGES);
	virt_map(vm, GPA_HIGH, GPA_HIGH, SLOT_NPAGES);

	/* Allocate everything before the guest runs, as a VMM may do. */
	gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE, &all);
	zero_mask = ~0ull;
	sync_global_to_guest(vm, zero_mask);
	run_to_sync(vcpu, 0);
	ksft_test_result_pass("pre-allocated guest_memfd reads as zeros\n");

	for (nr = 1; nr <= NR_ROUNDS; nr++)
		do_round(vm, vcpu, fd, nr);

	gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_DONE), NULL);

	kvm_vm_free(vm);
	close(fd);
	munmap(hva, 2 * SLOT_SIZE);

	ksft_finished();
}
