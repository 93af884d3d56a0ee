// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_attributes_test
 *
 * KVM_SET_MEMORY_ATTRIBUTES on x86 software-protected VMs:
 *
 * 1. the uAPI: which arguments KVM rejects with EINVAL, on a
 *    KVM_X86_SW_PROTECTED_VM and on a default VM (which only accepts
 *    attributes 0), and what KVM_CAP_MEMORY_ATTRIBUTES reports;
 *
 * 2. a big range (-s SIZE, default 1 TiB) made PRIVATE above guest RAM with
 *    no memslot behind it, then small memslots added inside it, with and
 *    without guest_memfd.  A guest reads single words at GPAs chosen by the
 *    host: a private access to a memslot without guest_memfd must exit to
 *    userspace with KVM_EXIT_MEMORY_FAULT, a private access to a guest_memfd
 *    memslot must see the (zeroed) guest_memfd page, and a shared access
 *    must see what the host wrote into the userspace mapping.  The range is
 *    cleared, split page by page and set again as a whole; the time each
 *    whole-range update takes is printed as "# set SIZE: MS ms" and
 *    "# clear SIZE: MS ms".
 *
 * A read that faults leaves the vCPU on the faulting instruction: the host
 * changes the attributes of the page and runs the vCPU again to complete the
 * read.  Should a read go wrong in an unexpected way, the stuck vCPU is left
 * alone and a fresh one takes over, so that the next checks still run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define PRIV			KVM_MEMORY_ATTRIBUTE_PRIVATE
#define SZ_1T			((uint64_t)1 << 40)

/* The big range starts above guest RAM, 1 GiB aligned. */
#define RANGE_BASE		SZ_4G
#define DEFAULT_RANGE_SIZE	SZ_1T
#define MIN_RANGE_SIZE		(8ull * SZ_1M)

#define SLOT_BASE		10
#define SLOT_SIZE		SZ_2M
#define SLOT_NPAGES		(SLOT_SIZE / PAGE_SIZE)
/* Room in memslot 0 for the page tables of the memslots and spare vCPUs. */
#define EXTRA_PAGES		1024

/* What the host writes into the shared backing of every test memslot. */
#define PATTERN(gpa)		((0xa5ull << 56) | (gpa))

#define PAGE_OF(gpa)		((gpa) & ~(uint64_t)(PAGE_SIZE - 1))

struct attr_case {
	const char *desc;
	uint64_t address;
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
	int err;
};

/*
 * Run in order on one VM without memslots: the accepted cases that set
 * PRIVATE are followed by one that clears the same range, so that nothing
 * is private when the last case clears [0, 2^63).
 */
static const struct attr_case protected_cases[] = {
	{ "PRIVATE on one page, no memslot", SZ_4G, PAGE_SIZE, PRIV, 0, 0 },
	{ "attributes 0 on that page", SZ_4G, PAGE_SIZE, 0, 0, 0 },
	{ "PRIVATE on 2 MiB at an odd page", SZ_4G + PAGE_SIZE, SZ_2M, PRIV, 0, 0 },
	{ "attributes 0 on that range", SZ_4G + PAGE_SIZE, SZ_2M, 0, 0, 0 },
	{ "PRIVATE on the last page below 2^64", -2ull * PAGE_SIZE, PAGE_SIZE, PRIV, 0, 0 },
	{ "attributes 0 on that page", -2ull * PAGE_SIZE, PAGE_SIZE, 0, 0, 0 },
	{ "flags 1", SZ_4G, PAGE_SIZE, PRIV, 1, EINVAL },
	{ "flags 1<<63", SZ_4G, PAGE_SIZE, PRIV, 1ull << 63, EINVAL },
	{ "flags 1 with attributes 0", SZ_4G, PAGE_SIZE, 0, 1, EINVAL },
	{ "attribute bit 0", SZ_4G, PAGE_SIZE, BIT_ULL(0), 0, EINVAL },
	{ "attribute bit 63", SZ_4G, PAGE_SIZE, BIT_ULL(63), 0, EINVAL },
	{ "PRIVATE | bit 4", SZ_4G, PAGE_SIZE, PRIV | BIT_ULL(4), 0, EINVAL },
	{ "size 0", SZ_4G, 0, PRIV, 0, EINVAL },
	{ "size 0 with attributes 0", SZ_4G, 0, 0, 0, EINVAL },
	{ "range wrapping past 2^64", -1ull * PAGE_SIZE, 2 * PAGE_SIZE, PRIV, 0, EINVAL },
	{ "last page, ending exactly at 2^64", -1ull * PAGE_SIZE, PAGE_SIZE, PRIV, 0, EINVAL },
	{ "[4 KiB, 2^64)", PAGE_SIZE, -1ull * PAGE_SIZE, PRIV, 0, EINVAL },
	{ "address + 1", SZ_4G + 1, PAGE_SIZE, PRIV, 0, EINVAL },
	{ "address + 2048", SZ_4G + 2048, PAGE_SIZE, PRIV, 0, EINVAL },
	{ "size 4095", SZ_4G, PAGE_SIZE - 1, PRIV, 0, EINVAL },
	{ "size 4097", SZ_4G, PAGE_SIZE + 1, PRIV, 0, EINVAL },
	{ "size 2 MiB + 1", SZ_4G, SZ_2M + 1, PRIV, 0, EINVAL },
	{ "unaligned size with attributes 0", SZ_4G, 512, 0, 0, EINVAL },
	{ "attributes 0 on [0, 2^63), nothing private", 0, 1ull << 63, 0, 0, 0 },
};

static const struct attr_case default_cases[] = {
	{ "PRIVATE", SZ_4G, PAGE_SIZE, PRIV, 0, EINVAL },
	{ "PRIVATE on [0, 2^63)", 0, 1ull << 63, PRIV, 0, EINVAL },
	{ "attribute bit 0", SZ_4G, PAGE_SIZE, BIT_ULL(0), 0, EINVAL },
	{ "attributes 0", SZ_4G, PAGE_SIZE, 0, 0, 0 },
	{ "attributes 0 on [0, 2^63)", 0, 1ull << 63, 0, 0, 0 },
	{ "flags 1 with attributes 0", SZ_4G, PAGE_SIZE, 0, 1, EINVAL },
	{ "size 0 with attributes 0", SZ_4G, 0, 0, 0, EINVAL },
	{ "unaligned address with attributes 0", SZ_4G + 8, PAGE_SIZE, 0, 0, EINVAL },
	{ "unaligned size with attributes 0", SZ_4G, PAGE_SIZE + 8, 0, 0, EINVAL },
	{ "wrapping range with attributes 0", -1ull * PAGE_SIZE, 2 * PAGE_SIZE, 0, 0, EINVAL },
};

#define NR_CAP_TESTS		3
/* Results reported by test_big_range(), whatever happens. */
#define NR_RANGE_TESTS		(11 + 2 * NR_SLOTS)

static const struct vm_shape protected_shape = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};

static int set_attrs(struct kvm_vm *vm, uint64_t address, uint64_t size,
		     uint64_t attributes, uint64_t flags)
{
	struct kvm_memory_attributes attr = {
		.address = address,
		.size = size,
		.attributes = attributes,
		.flags = flags,
	};

	return __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr) ? errno : 0;
}

static const char *size_str(uint64_t size)
{
	static char buf[4][32];
	static int next;
	static const char units[] = "KMGT";
	char *s = buf[next++ % ARRAY_SIZE(buf)];
	int shift = 40, i;

	for (i = 3; i >= 0; i--, shift -= 10) {
		if (size >= (1ull << shift) && !(size & ((1ull << shift) - 1))) {
			snprintf(s, sizeof(buf[0]), "%llu%c",
				 (unsigned long long)(size >> shift), units[i]);
			return s;
		}
	}
	snprintf(s, sizeof(buf[0]), "%llu", (unsigned long long)size);
	return s;
}

/* Set @attributes over a range, print how long it took; 0 or an errno. */
static int set_attrs_timed(struct kvm_vm *vm, uint64_t address, uint64_t size,
			   uint64_t attributes)
{
	double t0, ms;
	int err;

	t0 = gmem_now_us();
	err = set_attrs(vm, address, size, attributes, 0);
	ms = (gmem_now_us() - t0) / 1e3;
	ksft_print_msg("%s %s: %.3f ms ([0x%lx, 0x%lx)%s%s)\n",
		       attributes ? "set" : "clear", size_str(size), ms,
		       address, address + size, err ? ", failed: " : "",
		       err ? strerror(err) : "");
	return err;
}

static void run_cases(struct kvm_vm *vm, const char *vm_name,
		      const struct attr_case *cases, int nr)
{
	int i, err;

	for (i = 0; i < nr; i++) {
		const struct attr_case *c = &cases[i];

		err = set_attrs(vm, c->address, c->size, c->attributes, c->flags);
		if (err != c->err)
			ksft_print_msg("address 0x%lx size 0x%lx attributes 0x%lx flags 0x%lx: got %s, expected %s\n",
				       c->address, c->size, c->attributes, c->flags,
				       err ? strerror(err) : "success",
				       c->err ? strerror(c->err) : "success");
		ksft_test_result(err == c->err, "%s VM: %s -> %s\n", vm_name,
				 c->desc, c->err ? strerror(c->err) : "success");
	}
}

static void test_uapi(void)
{
	struct kvm_vm *vm;
	int cap;

	cap = kvm_check_cap(KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(cap == PRIV,
			 "/dev/kvm: KVM_CAP_MEMORY_ATTRIBUTES is 0x%x (expected 0x%llx)\n",
			 cap, PRIV);

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	cap = vm_check_cap(vm, KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(cap == PRIV,
			 "SW_PROTECTED VM: KVM_CAP_MEMORY_ATTRIBUTES is 0x%x (expected 0x%llx)\n",
			 cap, PRIV);
	run_cases(vm, "SW_PROTECTED", protected_cases,
		  ARRAY_SIZE(protected_cases));
	kvm_vm_free(vm);

	vm = vm_create_barebones();
	cap = vm_check_cap(vm, KVM_CAP_MEMORY_ATTRIBUTES);
	ksft_test_result(cap == 0,
			 "default VM: KVM_CAP_MEMORY_ATTRIBUTES is 0x%x (expected 0)\n",
			 cap);
	run_cases(vm, "default", default_cases, ARRAY_SIZE(default_cases));
	kvm_vm_free(vm);
}

struct reader {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint32_t next_vcpu_id;
	/* The vCPU is stopped on a read of pending_gpa that faulted. */
	bool pending;
	uint64_t pending_gpa;
};

enum read_outcome {
	READ_VALUE,
	READ_FAULT,
	READ_BROKEN,
};

/* Give up on a vCPU stuck on a read; a fresh one runs the next reads. */
static void replace_vcpu(struct reader *r)
{
	ksft_print_msg("giving up on vCPU %u, continuing with vCPU %u\n",
		       r->vcpu->id, r->next_vcpu_id);
	r->vcpu = vm_vcpu_add(r->vm, r->next_vcpu_id++, gmem_probe_guest_code);
	r->pending = false;
}

/*
 * Let the guest read @gpa, or complete the read of @gpa that faulted
 * before.  On READ_VALUE, *val is what the guest read.
 */
static enum read_outcome guest_read(struct reader *r, uint64_t gpa,
				    uint64_t *val)
{
	struct kvm_run *run = r->vcpu->run;
	struct ucall uc;

	TEST_ASSERT(!r->pending || r->pending_gpa == gpa,
		    "Test bug: read of 0x%lx pending, 0x%lx requested",
		    r->pending_gpa, gpa);

	switch (gmem_probe_read(r->vcpu, gpa, r->pending, &uc)) {
	case GMEM_RUN_FAULT:
		r->pending = true;
		r->pending_gpa = gpa;
		return READ_FAULT;
	case GMEM_RUN_ERROR:
		ksft_print_msg("read of 0x%lx: KVM_RUN failed: %s, exit reason %u (%s)\n",
			       gpa, strerror(errno), run->exit_reason,
			       exit_reason_str(run->exit_reason));
		return READ_BROKEN;
	case GMEM_RUN_EXIT:
		ksft_print_msg("read of 0x%lx: unexpected exit reason %u (%s)\n",
			       gpa, run->exit_reason,
			       exit_reason_str(run->exit_reason));
		return READ_BROKEN;
	case GMEM_RUN_UCALL:
		break;
	}
	if (uc.cmd != UCALL_SYNC) {
		ksft_print_msg("read of 0x%lx: unexpected ucall %lu\n", gpa,
			       uc.cmd);
		return READ_BROKEN;
	}
	r->pending = false;
	*val = uc.args[1];
	return READ_VALUE;
}

/* The guest reads @gpa (or completes a read of it), expecting @expected. */
static bool expect_value(struct reader *r, uint64_t gpa, uint64_t expected)
{
	typeof(r->vcpu->run->memory_fault) *mf = &r->vcpu->run->memory_fault;
	uint64_t val;

	switch (guest_read(r, gpa, &val)) {
	case READ_VALUE:
		if (val == expected)
			return true;
		ksft_print_msg("read of 0x%lx returned 0x%lx, expected 0x%lx\n",
			       gpa, val, expected);
		return false;
	case READ_FAULT:
		ksft_print_msg("read of 0x%lx: memory fault exit (flags 0x%llx gpa 0x%llx size 0x%llx), expected 0x%lx\n",
			       gpa, mf->flags, mf->gpa, mf->size, expected);
		break;
	case READ_BROKEN:
		break;
	}
	replace_vcpu(r);
	return false;
}

/*
 * The guest reads @gpa, expecting a private memory fault exit for its
 * page; the vCPU then stays on the read until the host completes it.
 */
static bool expect_fault(struct reader *r, uint64_t gpa)
{
	typeof(r->vcpu->run->memory_fault) *mf = &r->vcpu->run->memory_fault;
	uint64_t val;

	switch (guest_read(r, gpa, &val)) {
	case READ_VALUE:
		ksft_print_msg("read of 0x%lx returned 0x%lx, expected a memory fault exit\n",
			       gpa, val);
		return false;
	case READ_FAULT:
		if (mf->flags == KVM_MEMORY_EXIT_FLAG_PRIVATE &&
		    mf->gpa == PAGE_OF(gpa) && mf->size == PAGE_SIZE)
			return true;
		ksft_print_msg("read of 0x%lx: memory fault exit with flags 0x%llx gpa 0x%llx size 0x%llx, expected 0x%llx 0x%lx 0x%llx\n",
			       gpa, mf->flags, mf->gpa, mf->size,
			       KVM_MEMORY_EXIT_FLAG_PRIVATE, PAGE_OF(gpa),
			       PAGE_SIZE);
		break;
	case READ_BROKEN:
		break;
	}
	replace_vcpu(r);
	return false;
}

static bool expect_attrs(struct kvm_vm *vm, uint64_t address, uint64_t size,
			 uint64_t attributes)
{
	int err = set_attrs(vm, address, size, attributes, 0);

	if (err)
		ksft_print_msg("setting attributes 0x%lx on [0x%lx, 0x%lx) failed: %s\n",
			       attributes, address, address + size,
			       strerror(err));
	return !err;
}

struct test_slot {
	const char *name;
	bool gmem;
	bool present;
	uint64_t gpa;
};

enum {
	SLOT_PLAIN_LO,
	SLOT_GMEM_LO,
	SLOT_GMEM_MID,
	SLOT_PLAIN_HI,
	SLOT_GMEM_HI,
	NR_SLOTS,
};

static struct test_slot slots[NR_SLOTS] = {
	[SLOT_PLAIN_LO] = { "plain memslot at the range start", false },
	[SLOT_GMEM_LO] = { "guest_memfd memslot after it", true },
	[SLOT_GMEM_MID] = { "guest_memfd memslot across a 1 GiB boundary", true },
	[SLOT_PLAIN_HI] = { "plain memslot near the range end", false },
	[SLOT_GMEM_HI] = { "guest_memfd memslot at the range end", true },
};

/* The words of a memslot that the guest reads. */
static const uint64_t probes[] = { 0, SLOT_SIZE / 2, SLOT_SIZE - 8 };

/*
 * Lay the memslots out in [base, limit): two at each end, one across a
 * 1 GiB boundary in the middle if there is one with room around it.
 */
static void place_slots(uint64_t base, uint64_t limit)
{
	uint64_t mid;

	slots[SLOT_PLAIN_LO].gpa = base;
	slots[SLOT_GMEM_LO].gpa = base + SLOT_SIZE;
	slots[SLOT_PLAIN_HI].gpa = limit - 2 * SLOT_SIZE;
	slots[SLOT_GMEM_HI].gpa = limit - SLOT_SIZE;
	slots[SLOT_PLAIN_LO].present = true;
	slots[SLOT_GMEM_LO].present = true;
	slots[SLOT_PLAIN_HI].present = true;
	slots[SLOT_GMEM_HI].present = true;

	if (limit - base >= 2ull * SZ_1G) {
		mid = base + (((limit - base) / 2) & ~(SZ_1G - 1ull));
		slots[SLOT_GMEM_MID].gpa = mid - SLOT_SIZE / 2;
		slots[SLOT_GMEM_MID].present = true;
	}
}

static void add_slots(struct kvm_vm *vm)
{
	enum vm_mem_backing_src_type plain_src;
	uint64_t *hva;
	int i, w;

	/*
	 * THP-backed plain memslots let KVM map them with huge pages while
	 * shared, so that making one page private has to split the mapping.
	 */
	plain_src = thp_configured() ? VM_MEM_SRC_ANONYMOUS_THP :
				       VM_MEM_SRC_ANONYMOUS;

	for (i = 0; i < NR_SLOTS; i++) {
		struct test_slot *s = &slots[i];

		if (!s->present)
			continue;
		vm_userspace_mem_region_add(vm, s->gmem ? VM_MEM_SRC_ANONYMOUS : plain_src,
					    s->gpa, SLOT_BASE + i, SLOT_NPAGES,
					    s->gmem ? KVM_MEM_GUEST_MEMFD : 0);
		virt_map(vm, s->gpa, s->gpa, SLOT_NPAGES);
		hva = addr_gpa2hva(vm, s->gpa);
		for (w = 0; w < SLOT_SIZE / 8; w++)
			hva[w] = PATTERN(s->gpa + 8 * w);
		ksft_print_msg("memslot %d: [0x%lx, 0x%lx) %s\n", SLOT_BASE + i,
			       s->gpa, s->gpa + SLOT_SIZE, s->name);
	}
}

/*
 * The whole range is private.  Reads in guest_memfd memslots must return
 * zeros; reads in plain memslots must fault, and complete with the shared
 * content once their page alone is made shared, after which the page is
 * made private again.
 */
static bool check_private_slot(struct reader *r, struct test_slot *s)
{
	bool ok = true;
	int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		uint64_t gpa = s->gpa + probes[i];

		if (s->gmem) {
			ok &= expect_value(r, gpa, 0);
			continue;
		}
		if (!expect_fault(r, gpa)) {
			ok = false;
			continue;
		}
		ok &= expect_attrs(r->vm, PAGE_OF(gpa), PAGE_SIZE, 0);
		ok &= expect_value(r, gpa, PATTERN(gpa));
		ok &= expect_attrs(r->vm, PAGE_OF(gpa), PAGE_SIZE, PRIV);
	}
	return ok;
}

static bool check_shared_slot(struct reader *r, struct test_slot *s)
{
	bool ok = true;
	int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		ok &= expect_value(r, s->gpa + probes[i],
				   PATTERN(s->gpa + probes[i]));
	return ok;
}

/* One private page in an otherwise shared memslot. */
static bool check_one_private_page(struct reader *r, struct test_slot *s,
				   uint64_t offset)
{
	uint64_t gpa = s->gpa + offset;
	bool ok = true;

	if (!expect_attrs(r->vm, PAGE_OF(gpa), PAGE_SIZE, PRIV))
		return false;
	ok &= expect_value(r, gpa - PAGE_SIZE, PATTERN(gpa - PAGE_SIZE));
	ok &= expect_value(r, gpa + PAGE_SIZE, PATTERN(gpa + PAGE_SIZE));
	if (s->gmem)
		ok &= expect_value(r, gpa, 0);
	else
		ok &= expect_fault(r, gpa);
	ok &= expect_attrs(r->vm, PAGE_OF(gpa), PAGE_SIZE, 0);
	ok &= expect_value(r, gpa, PATTERN(gpa));
	return ok;
}

static void test_big_range(uint64_t size)
{
	const uint64_t base = RANGE_BASE, end = base + size;
	struct test_slot *plain_lo = &slots[SLOT_PLAIN_LO];
	struct test_slot *plain_hi = &slots[SLOT_PLAIN_HI];
	struct test_slot *gmem_page_slot;
	uint64_t limit, top, high_size;
	struct reader r = { 0 };
	bool ok, guest;
	int i, err;

	r.vm = __vm_create_shape_with_one_vcpu(protected_shape, &r.vcpu,
					       EXTRA_PAGES, gmem_probe_guest_code);
	r.next_vcpu_id = 1;

	/* The guest can only reach memslots below its MAXPHYADDR. */
	limit = min(end, (r.vm->max_gfn + 1) << r.vm->page_shift);
	guest = limit >= base + MIN_RANGE_SIZE;
	ksft_print_msg("range [0x%lx, 0x%lx) (%s), guest pa_bits %u, max_gfn 0x%lx\n",
		       base, end, size_str(size), r.vm->pa_bits, r.vm->max_gfn);
	if (!guest)
		ksft_print_msg("the guest cannot address the range: its memslot checks are skipped\n");
	else if (limit < end)
		ksft_print_msg("the range ends above the guest's addressable GPAs: its upper memslots end at 0x%lx instead\n",
			       limit);

	err = set_attrs_timed(r.vm, base, size, PRIV);
	ksft_test_result(!err, "set PRIVATE on %s at 0x%lx, no memslot there\n",
			 size_str(size), base);

	if (guest) {
		place_slots(base, limit);
		add_slots(r.vm);
	}

	for (i = 0; i < NR_SLOTS; i++) {
		if (!slots[i].present)
			ksft_test_result_skip("private: %s (no such memslot)\n",
					      slots[i].name);
		else
			ksft_test_result(check_private_slot(&r, &slots[i]),
					 "private: %s %s\n", slots[i].name,
					 slots[i].gmem ? "reads zeros" :
					 "exits with KVM_EXIT_MEMORY_FAULT");
	}

	/* The pages split off and made private again fault again. */
	if (guest)
		ksft_test_result(expect_fault(&r, plain_lo->gpa),
				 "private: page made shared and private again faults again\n");
	else
		ksft_test_result_skip("private: page made private again (no memslot)\n");

	err = set_attrs_timed(r.vm, base, size, 0);
	ksft_test_result(!err, "clear %s at 0x%lx\n", size_str(size), base);

	/* The read that faulted above completes. */
	if (guest)
		ksft_test_result(expect_value(&r, plain_lo->gpa,
					      PATTERN(plain_lo->gpa)),
				 "shared: read that faulted completes after the clear\n");
	else
		ksft_test_result_skip("shared: faulted read completes (no memslot)\n");

	for (i = 0; i < NR_SLOTS; i++) {
		if (!slots[i].present)
			ksft_test_result_skip("shared: %s (no such memslot)\n",
					      slots[i].name);
		else
			ksft_test_result(check_shared_slot(&r, &slots[i]),
					 "shared: %s reads the host's data\n",
					 slots[i].name);
	}

	gmem_page_slot = &slots[slots[SLOT_GMEM_MID].present ? SLOT_GMEM_MID :
							       SLOT_GMEM_LO];
	if (guest) {
		ksft_test_result(check_one_private_page(&r, plain_lo, 5 * PAGE_SIZE + 8),
				 "one private page in a plain memslot faults, its neighbours do not\n");
		ksft_test_result(check_one_private_page(&r, gmem_page_slot,
							7 * PAGE_SIZE + 16),
				 "one private page in a guest_memfd memslot reads zeros, its neighbours do not\n");
	} else {
		ksft_test_result_skip("one private page in a plain memslot (no memslot)\n");
		ksft_test_result_skip("one private page in a guest_memfd memslot (no memslot)\n");
	}

	err = set_attrs_timed(r.vm, base, size, PRIV);
	ksft_test_result(!err, "set PRIVATE on %s at 0x%lx again\n",
			 size_str(size), base);
	if (guest) {
		ok = expect_value(&r, slots[SLOT_GMEM_HI].gpa + SLOT_SIZE - 8, 0);
		ok &= expect_fault(&r, plain_hi->gpa + SLOT_SIZE - 8);
		ksft_test_result(ok, "private again: guest_memfd reads zeros, plain memslot faults\n");
	} else {
		ksft_test_result_skip("private again (no memslot)\n");
	}
	err = set_attrs_timed(r.vm, base, size, 0);
	ok = !err;
	if (guest)
		ok &= expect_value(&r, plain_hi->gpa + SLOT_SIZE - 8,
				   PATTERN(plain_hi->gpa + SLOT_SIZE - 8));
	ksft_test_result(ok, "clear %s at 0x%lx again%s\n", size_str(size),
			 base, guest ? ", the faulted read completes" : "");

	/* Attributes are not limited to the guest's physical address width. */
	top = 1ull << r.vm->pa_bits;
	ok = expect_attrs(r.vm, top - PAGE_SIZE, PAGE_SIZE, PRIV);
	ok &= expect_attrs(r.vm, top - PAGE_SIZE, PAGE_SIZE, 0);
	ok &= expect_attrs(r.vm, top, SZ_2M, PRIV);
	ok &= expect_attrs(r.vm, top, SZ_2M, 0);
	ksft_test_result(ok, "set and clear around the top of the guest physical address space (2^%u)\n",
			 r.vm->pa_bits);

	high_size = min(size, SZ_1T);
	ok = !set_attrs_timed(r.vm, (1ull << 63) - high_size, high_size, PRIV);
	ok &= !set_attrs_timed(r.vm, (1ull << 63) - high_size, high_size, 0);
	ksft_test_result(ok, "set and clear %s below 2^63\n", size_str(high_size));

	kvm_vm_free(r.vm);
}

static uint64_t parse_range_size(const char *arg)
{
	unsigned long long val;
	char *end;
	int shift = 0;

	errno = 0;
	val = strtoull(arg, &end, 0);
	TEST_ASSERT(!errno && end != arg, "Bad size '%s'", arg);
	switch (*end) {
	case 'T': case 't':
		shift += 10;
		fallthrough;
	case 'G': case 'g':
		shift += 10;
		fallthrough;
	case 'M': case 'm':
		shift += 10;
		fallthrough;
	case 'K': case 'k':
		shift += 10;
		end++;
		break;
	}
	TEST_ASSERT(!*end, "Bad size suffix in '%s'", arg);
	TEST_ASSERT(val && val <= (1ull << 62) >> shift,
		    "Size '%s' out of range", arg);
	val <<= shift;
	TEST_ASSERT(!(val % SZ_2M) && val >= MIN_RANGE_SIZE,
		    "Size '%s' must be a multiple of 2M and at least %s", arg,
		    size_str(MIN_RANGE_SIZE));
	return val;
}

static void print_usage(const char *name)
{
	printf("usage: %s [-s SIZE] [-h]\n"
	       " -s: size of the big attribute range, with an optional K, M, G or T\n"
	       "     suffix; a multiple of 2M, at least 8M (default: 1T)\n",
	       name);
}

int main(int argc, char *argv[])
{
	uint64_t size = DEFAULT_RANGE_SIZE;
	int opt;

	while ((opt = getopt(argc, argv, "hs:")) != -1) {
		switch (opt) {
		case 's':
			size = parse_range_size(optarg);
			break;
		default:
			gmem_usage_exit(opt, argv[0], print_usage);
		}
	}

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));

	ksft_print_header();
	ksft_set_plan(NR_CAP_TESTS + ARRAY_SIZE(protected_cases) +
		      ARRAY_SIZE(default_cases) + NR_RANGE_TESTS);

	test_uapi();
	test_big_range(size);

	ksft_finished();
}
