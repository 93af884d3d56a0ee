// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_stress_test
 *
 * Threads race every guest_memfd operation against each other for a
 * bounded time, while checkers verify invariants that must hold whatever
 * the other threads do.
 *
 * A KVM_X86_SW_PROTECTED_VM has one guest_memfd-backed memslot.  Each
 * checker vCPU owns a region of it: its guest writes a secret pattern to
 * the pages it holds private, converts pages between private and shared
 * with KVM_HC_MAP_GPA_RANGE (the host sets the attributes and, going to
 * shared, punches the guest_memfd as VMMs do) and asks the host to punch
 * private pages.  It checks that private pages read back what it wrote,
 * that punched private pages and pages made private again read zeros, and
 * that writes to shared pages are seen by the host and vice versa.  A
 * scanner thread keeps reading the shared alias (userspace_addr) of the
 * memslot and must never find a secret.
 *
 * Meanwhile, on the rest of that VM and on other VMs:
 *  - punch: fallocate(ALLOCATE / PUNCH_HOLE) on the unowned part of the
 *    guest_memfd, plus invalid calls;
 *  - attr: KVM_SET_MEMORY_ATTRIBUTES on the unowned part, on extra
 *    memslots and on GPAs without a memslot, plus invalid calls;
 *  - slot: two memslots bound to a guest_memfd are created, deleted,
 *    moved and re-flagged (EINVAL), overlapped (EEXIST) and bound to an
 *    already bound range (EINVAL);
 *  - gmem: a guest_memfd is created, bound, closed while bound, its
 *    memslot deleted and re-created;
 *  - fault: a vCPU of the same VM faults the unowned part and the extra
 *    memslots in and out, converting pages on KVM_EXIT_MEMORY_FAULT; it
 *    must only read zeros or what it wrote itself;
 *  - vm: whole VMs with a guest_memfd and a vCPU writing private memory
 *    are created and closed in various orders (guest_memfd closed first,
 *    while bound, or kept open and used after the VM is gone);
 *  - mmap (kernels with the 6.18 flags, KVM_CAP_GUEST_MEMFD_FLAGS): a
 *    DEFAULT VM whose memslot is guest_memfd-only (GUEST_MEMFD_FLAG_MMAP |
 *    GUEST_MEMFD_FLAG_INIT_SHARED): its vCPU reads and writes every page
 *    while a host thread faults the same pages through mappings it keeps
 *    replacing and another punches and allocates them; every read must
 *    find zeros or a tagged value, and after a punch of the whole file the
 *    host and the guest read zeros.  The gmem role then also binds MMAP
 *    guest_memfds (guest_memfd-only memslots of the checked VM).
 *
 * Every call must end with the errno expected for the state its thread
 * tracks; anything else is counted and printed.  The test fails on any
 * such result or invariant violation, or if a role did no work.  The
 * kernel log (KASAN, lockdep, WARN) is checked outside this test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <linux/falloc.h>
#include <linux/kvm_para.h>
#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define DEFAULT_SECONDS		20
/* How long the threads may take to stop before the watchdog reports them. */
#define WATCHDOG_SECONDS	60
#define MAX_CHECKERS		8
#define MAX_CHURNERS		8
#define MAX_VM_THREADS		4

/* The checked memslot: one region per checker, then the churned pages. */
#define MAIN_SLOT		10
#define MAIN_GPA		(1ull << 32)
#define CHECK_NPAGES		32
#define CHURN_NPAGES		64

/*
 * Windows of WIN_NPAGES pages, SZ_2M apart: 0-2 for the memslots of the
 * slot role, 3 for the one of the gmem role, 4 never has a memslot.
 */
#define WIN_BASE		(MAIN_GPA + SZ_1G)
#define WIN_NPAGES		16
#define WIN_SIZE		(WIN_NPAGES * PAGE_SIZE)
#define NR_SLOT_WINDOWS		3
#define GMEM_WINDOW		3
#define NR_WINDOWS		5
#define SLOT_ROLE_SLOT		20
#define GMEM_ROLE_SLOT		30

/* The memslot of the short-lived VMs. */
#define VM_SLOT			10
#define VM_GPA			(1ull << 32)
#define VM_NPAGES		16

#define QWORDS_PER_PAGE		(PAGE_SIZE / sizeof(uint64_t))

/* Top 16 bits of every qword a guest or the host writes. */
#define SECRET_TAG		0x5ec7ull
#define GUEST_SHARED_TAG	0x6a57ull
#define HOST_SHARED_TAG		0x4057ull
#define CHURN_TAG		0xc4c4ull
#define VM_TAG			0x7e57ull
#define MMAP_GUEST_TAG		0x6d67ull
#define MMAP_HOST_TAG		0x6d68ull

/* The guest_memfd-only memslot of the mmap role's VM. */
#define MMAP_SLOT		10
#define MMAP_GPA		(1ull << 32)
#define MMAP_NPAGES		64
#define MMAP_SIZE		(MMAP_NPAGES * PAGE_SIZE)
#define MMAP_FLAGS		(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/* MAP_GPA_RANGE attributes, as in private_mem_conversions_test. */
#define MAP_GPA_SHARED		BIT(1)

/* First argument of GUEST_SYNC. */
enum {
	CMD_ROUND,	/* (round): a round is over */
	CMD_PUNCH,	/* (mask): punch these pages of the region */
	CMD_SHARED,	/* (mask, round): check and overwrite shared pages */
	CMD_BAD,	/* (kind, gpa, expected, got): an invariant failed */
};

/* Invariant families. */
enum {
	BAD_DATA,	/* private page lost what the guest wrote */
	BAD_PUNCH,	/* punched private page not zero */
	BAD_FRESH,	/* new or re-privatised page not zero */
	BAD_SHARED,	/* guest and host disagree on a shared page */
	BAD_LEAK,	/* secret found in the shared alias */
	BAD_CHURN,	/* a churn guest read data not its own */
	BAD_MMAP,	/* a guest_memfd-only page held an untagged value */
	BAD_MMAP_ZERO,	/* a page not zero after the whole file was punched */
	NR_BAD,
};

static const char * const bad_desc[NR_BAD] = {
	[BAD_DATA] = "checker: private pages read back what the guest wrote",
	[BAD_PUNCH] = "checker: punched private pages read zeros",
	[BAD_FRESH] = "checker: new and re-privatised private pages read zeros",
	[BAD_SHARED] = "checker: shared pages are shared with the host",
	[BAD_LEAK] = "scanner: private data never in the shared alias",
	[BAD_CHURN] = "churn guests read only zeros or their own data",
	[BAD_MMAP] = "mmap: the guest and the host mapping read zeros or tagged values",
	[BAD_MMAP_ZERO] = "mmap: after punching the whole file the host and the guest read zeros",
};

static uint64_t bad_count[NR_BAD];

enum { PG_ZERO, PG_DATA, PG_SHARED, PG_UNKNOWN };

static uint64_t window_gpa(int w)
{
	return WIN_BASE + w * SZ_2M;
}

static inline uint64_t pattern(uint64_t tag, uint64_t id, uint64_t round,
			       uint64_t page, uint64_t q)
{
	return tag << 48 | (id & 0xff) << 40 | (round & 0xffff) << 24 |
	       (page & 0xfff) << 12 | q;
}

static void guest_check_page(uint64_t id, uint64_t gpa, int page,
			     uint8_t state, uint8_t zero_kind, uint32_t round)
{
	uint64_t *mem = (uint64_t *)(gpa + page * PAGE_SIZE);
	uint64_t expected, val;
	int q, kind;

	for (q = 0; q < QWORDS_PER_PAGE; q++) {
		switch (state) {
		case PG_ZERO:
			expected = 0;
			kind = zero_kind;
			break;
		case PG_DATA:
			expected = pattern(SECRET_TAG, id, round, page, q);
			kind = BAD_DATA;
			break;
		case PG_SHARED:
			expected = pattern(HOST_SHARED_TAG, id, round, page, q);
			kind = BAD_SHARED;
			break;
		default:
			return;
		}
		val = READ_ONCE(mem[q]);
		if (val != expected) {
			GUEST_SYNC5(CMD_BAD, kind, (uint64_t)&mem[q], expected, val);
			return;
		}
	}
}

static void guest_check_all(uint64_t id, uint64_t gpa, uint8_t *state,
			    uint8_t *zero_kind, uint32_t *wround)
{
	int page;

	for (page = 0; page < CHECK_NPAGES; page++)
		guest_check_page(id, gpa, page, state[page], zero_kind[page],
				 wround[page]);
}

/* Convert the pages of @mask: private ones to shared and vice versa. */
static void guest_convert(uint64_t gpa, uint64_t mask, uint8_t *state,
			  uint8_t *zero_kind)
{
	int page, end;
	bool shared;

	for (page = 0; page < CHECK_NPAGES; page = end) {
		end = page + 1;
		if (!(mask & BIT_ULL(page)))
			continue;
		shared = state[page] == PG_SHARED || state[page] == PG_UNKNOWN;
		while (end < CHECK_NPAGES && (mask & BIT_ULL(end)) &&
		       shared == (state[end] == PG_SHARED || state[end] == PG_UNKNOWN))
			end++;
		kvm_hypercall_map_gpa_range(gpa + page * PAGE_SIZE,
					    (end - page) * PAGE_SIZE,
					    shared ? 0 : MAP_GPA_SHARED);
		for (; page < end; page++) {
			/* Going shared punched it: private again is new memory. */
			state[page] = shared ? PG_ZERO : PG_UNKNOWN;
			zero_kind[page] = BAD_FRESH;
		}
	}
}

static uint64_t guest_random_mask(struct guest_random_state *rng, int percent)
{
	uint64_t mask = 0;
	int page;

	for (page = 0; page < CHECK_NPAGES; page++)
		if (__guest_random_bool(rng, percent))
			mask |= BIT_ULL(page);
	return mask;
}

static void guest_checker(uint64_t id, uint64_t gpa, uint64_t seed)
{
	struct guest_random_state rng = new_guest_random_state(seed);
	uint8_t state[CHECK_NPAGES], zero_kind[CHECK_NPAGES];
	uint32_t wround[CHECK_NPAGES];
	uint64_t *mem, mask;
	uint32_t round;
	int page, q;

	/* The host made the region private; nothing was allocated yet. */
	for (page = 0; page < CHECK_NPAGES; page++) {
		state[page] = PG_ZERO;
		zero_kind[page] = BAD_FRESH;
		wround[page] = 0;
	}

	for (round = 1; ; round++) {
		guest_check_all(id, gpa, state, zero_kind, wround);

		/* Fill every page: secrets if private, else for the host. */
		mask = 0;
		for (page = 0; page < CHECK_NPAGES; page++) {
			bool shared = state[page] == PG_SHARED ||
				      state[page] == PG_UNKNOWN;

			mem = (uint64_t *)(gpa + page * PAGE_SIZE);
			for (q = 0; q < QWORDS_PER_PAGE; q++)
				WRITE_ONCE(mem[q],
					   pattern(shared ? GUEST_SHARED_TAG : SECRET_TAG,
						   id, round, page, q));
			state[page] = shared ? PG_SHARED : PG_DATA;
			wround[page] = round;
			if (shared)
				mask |= BIT_ULL(page);
		}
		/* The host checks the shared pages and overwrites them. */
		if (mask)
			GUEST_SYNC3(CMD_SHARED, mask, round);
		guest_check_all(id, gpa, state, zero_kind, wround);

		mask = guest_random_mask(&rng, 25);
		if (mask) {
			GUEST_SYNC2(CMD_PUNCH, mask);
			for (page = 0; page < CHECK_NPAGES; page++) {
				if (!(mask & BIT_ULL(page)) || state[page] != PG_DATA)
					continue;
				state[page] = PG_ZERO;
				zero_kind[page] = BAD_PUNCH;
			}
			guest_check_all(id, gpa, state, zero_kind, wround);
		}

		guest_convert(gpa, guest_random_mask(&rng, 20), state, zero_kind);
		GUEST_SYNC2(CMD_ROUND, round);
	}
}

/* Touch the churned pages; they hold zeros or what this guest wrote. */
static void guest_fault(uint64_t churn_gpa)
{
	uint64_t pass, gpa, val, *p;
	int area, page, npages;

	for (pass = 1; ; pass++) {
		/* The unowned part of the checked memslot, then the windows. */
		for (area = 0; area <= NR_WINDOWS; area++) {
			gpa = area ? window_gpa(area - 1) : churn_gpa;
			npages = area ? WIN_NPAGES : CHURN_NPAGES;
			for (page = 0; page < npages; page++) {
				p = (uint64_t *)(gpa + page * PAGE_SIZE) +
				    pass % QWORDS_PER_PAGE;
				val = READ_ONCE(*p);
				if (val && val >> 48 != CHURN_TAG)
					GUEST_SYNC5(CMD_BAD, BAD_CHURN, (uint64_t)p, 0, val);
				WRITE_ONCE(*p, CHURN_TAG << 48 | pass);
			}
			GUEST_SYNC2(CMD_ROUND, npages);
		}
	}
}

/* The guest of the short-lived VMs: private memory keeps its data. */
static void guest_vm(void)
{
	uint64_t pass, expected, val, *mem;
	int page, q;

	for (pass = 1; ; pass++) {
		for (page = 0; page < VM_NPAGES; page++) {
			mem = (uint64_t *)(VM_GPA + page * PAGE_SIZE);
			for (q = 0; q < QWORDS_PER_PAGE; q++) {
				expected = pass == 1 ? 0 :
					   pattern(VM_TAG, 0, pass - 1, page, q);
				val = READ_ONCE(mem[q]);
				if (val != expected) {
					GUEST_SYNC5(CMD_BAD, BAD_CHURN, (uint64_t)&mem[q],
						    expected, val);
					break;
				}
			}
			for (q = 0; q < QWORDS_PER_PAGE; q++)
				WRITE_ONCE(mem[q], pattern(VM_TAG, 0, pass, page, q));
		}
		GUEST_SYNC2(CMD_ROUND, pass);
	}
}

static bool mmap_tagged(uint64_t val)
{
	return !val || val >> 48 == MMAP_GUEST_TAG || val >> 48 == MMAP_HOST_TAG;
}

/* Set by the host once the mmap role's threads are done. */
static bool mmap_guest_stop;

/*
 * The guest of the mmap role: every page of its guest_memfd-only memslot
 * holds zeros or tagged values; once the host punched the whole file and
 * set mmap_guest_stop, only zeros.
 */
static void guest_mmap(void)
{
	uint64_t pass, page, val, *p;
	int q;

	for (pass = 1; !READ_ONCE(mmap_guest_stop); pass++) {
		for (page = 0; page < MMAP_NPAGES; page++) {
			p = (uint64_t *)(MMAP_GPA + page * PAGE_SIZE) + pass % QWORDS_PER_PAGE;
			val = READ_ONCE(*p);
			if (!mmap_tagged(val))
				GUEST_SYNC5(CMD_BAD, BAD_MMAP, (uint64_t)p, 0, val);
			WRITE_ONCE(*p, MMAP_GUEST_TAG << 48 | pass);
		}
		GUEST_SYNC2(CMD_ROUND, pass);
	}
	for (page = 0; page < MMAP_NPAGES; page++) {
		p = (uint64_t *)(MMAP_GPA + page * PAGE_SIZE);
		for (q = 0; q < QWORDS_PER_PAGE; q++) {
			val = READ_ONCE(p[q]);
			if (val) {
				GUEST_SYNC5(CMD_BAD, BAD_MMAP_ZERO, (uint64_t)&p[q], 0, val);
				break;
			}
		}
	}
	GUEST_DONE();
}

/* Threads and what they did. */
enum {
	ROLE_CHECK,
	ROLE_SCAN,
	ROLE_PUNCH,
	ROLE_ATTR,
	ROLE_SLOT,
	ROLE_GMEM,
	ROLE_FAULT,
	ROLE_VM,
	ROLE_MMAP,
	NR_ROLES,
};

#define NR_COUNTS	6

struct role {
	const char *name;
	const char *counts[NR_COUNTS];
	uint64_t count[NR_COUNTS];
	uint64_t errors;
};

static struct role roles[NR_ROLES] = {
	[ROLE_CHECK] = { "checker", { "rounds", "pages punched", "pages made shared",
				      "pages made private", "shared pages exchanged",
				      "page checks" } },
	[ROLE_SCAN] = { "scanner", { "passes", "pages scanned" } },
	[ROLE_PUNCH] = { "punch", { "punches", "allocations", "invalid calls" } },
	[ROLE_ATTR] = { "attr", { "set private", "set shared", "invalid calls" } },
	[ROLE_SLOT] = { "slot", { "binds", "deletions", "moves and flag changes refused",
				  "overlaps refused", "bad binds refused",
				  "deletions of no memslot" } },
	[ROLE_GMEM] = { "gmem", { "guest_memfds created", "binds", "closes while bound",
				  "memslot deletions", "fallocates", "invalid calls" } },
	[ROLE_FAULT] = { "fault", { "pages touched", "memory fault exits", "MMIO exits",
				    "of them shared accesses" } },
	[ROLE_VM] = { "vm", { "VMs", "vCPU passes", "closed with guest_memfd bound",
			      "guest_memfd outlived its VM", "memslot deleted first",
			      "memory fault exits" } },
	[ROLE_MMAP] = { "mmap", { "vCPU passes", "host touches", "host mappings",
				  "punches", "allocations" } },
};

static int nr_checkers = 2;
static int nr_churners = 1;
static int nr_vm_threads = 1;
static uint32_t seed;
static bool stop;

static struct kvm_vm *vm;
static struct kvm_vcpu *fault_vcpu;
static int fault_stats_fd = -1, mmap_stats_fd = -1;
static int main_gmem;
static uint8_t *main_hva;
static uint8_t *win_hva;

/* The mmap role, on kernels with the 6.18 flags (mmap_gmem >= 0). */
static bool has_mmap;
static struct kvm_vm *mmap_vm;
static struct kvm_vcpu *mmap_vcpu;
static int mmap_gmem = -1;

static void count(int role, int idx, uint64_t n)
{
	__atomic_add_fetch(&roles[role].count[idx], n, __ATOMIC_RELAXED);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static __printf(1, 2) void print_line(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ksft_print_msg("%s\n", buf);
}

/*
 * The host pfns of the pages of memslot 0 of a VM (its page tables, IDT,
 * code and stack), from /proc/self/pagemap; 0 for a page not present.
 */
struct slot0_pfns {
	uint64_t npages;
	uint64_t *pfn;
};

static struct slot0_pfns main_pfns, mmap_pfns;

static void read_slot0_pfns(struct kvm_vm *v, struct slot0_pfns *p)
{
	struct userspace_mem_region *r = memslot2region(v, 0);
	uint64_t i, e, first = (uintptr_t)r->host_mem / PAGE_SIZE;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	p->npages = r->region.memory_size / PAGE_SIZE;
	if (!p->pfn)
		p->pfn = calloc(p->npages, sizeof(*p->pfn));
	for (i = 0; fd >= 0 && p->pfn && i < p->npages; i++) {
		e = 0;
		if (pread(fd, &e, sizeof(e), (first + i) * sizeof(e)) != sizeof(e))
			e = 0;
		p->pfn[i] = e & BIT_ULL(63) ? e & GENMASK_ULL(54, 0) : 0;
	}
	if (fd >= 0)
		close(fd);
}

/*
 * A guest of @v triple-faulted: say whether pages of its memslot 0 moved
 * to other host pages since the set-up (migration under the guest), which
 * tells a stale translation of them apart from other causes.
 */
static void report_shutdown(struct kvm_vm *v, struct slot0_pfns *setup)
{
	struct slot0_pfns now = {};
	uint64_t i, moved = 0;

	read_slot0_pfns(v, &now);
	for (i = 0; now.pfn && setup->pfn && i < now.npages && i < setup->npages; i++) {
		if (now.pfn[i] == setup->pfn[i])
			continue;
		if (moved++ < 8)
			print_line("  memslot 0 page 0x%lx: host pfn 0x%lx at set-up, 0x%lx now",
				   (uint64_t)(i * PAGE_SIZE), setup->pfn[i], now.pfn[i]);
	}
	print_line("  memslot 0: %lu of %lu pages on other host pages than at set-up",
		   moved, now.npages);
	free(now.pfn);
}

/* Print the first few failures of each kind, count them all. */
#define MAX_REPORTS	10

/* The threads that run long-lived vCPUs, for the watchdog to kick. */
static pthread_t fault_thread, mmap_vcpu_thread;

static void on_sigusr1(int sig)
{
}

/* The guest's page table entries for @gva, from CR3 down, as the host sees them. */
static void print_guest_walk(struct kvm_vm *v, uint64_t cr3, uint64_t gva)
{
	uint64_t table = cr3 & PHYSICAL_PAGE_MASK, pte = 0;
	int level, shift;

	for (level = 4; level >= 1; level--) {
		shift = 12 + 9 * (level - 1);
		pte = *(uint64_t *)addr_gpa2hva(v, table + ((gva >> shift) & 511) * 8);
		print_line("      level %d entry at 0x%lx: 0x%lx", level,
			   table + ((gva >> shift) & 511) * 8, pte);
		if (!(pte & PTE_PRESENT_MASK) || (level > 1 && (pte & PTE_LARGE_MASK)))
			return;
		table = pte & PHYSICAL_PAGE_MASK;
	}
}

/*
 * A vCPU that shut down, or that the watchdog's SIGUSR1 took out of KVM_RUN:
 * its registers, the exception KVM is delivering, and the translation of RIP
 * and CR2 by KVM (KVM_TRANSLATE) and by the guest's page tables.
 */
static void dump_vcpu(struct kvm_vcpu *vcpu, const char *name)
{
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t addrs[2];
	int i;

	vcpu_regs_get(vcpu, &regs);
	vcpu_sregs_get(vcpu, &sregs);
	vcpu_events_get(vcpu, &ev);
	print_line("  vCPU %s: rip 0x%llx rsp 0x%llx rflags 0x%llx", name, regs.rip, regs.rsp,
		   regs.rflags);
	print_line("    cr0 0x%llx cr2 0x%llx cr3 0x%llx cr4 0x%llx efer 0x%llx",
		   sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer);
	print_line("    exception: injected %u pending %u nr %u error code 0x%x (%s)",
		   ev.exception.injected, ev.exception.pending, ev.exception.nr,
		   ev.exception.error_code, ev.exception.has_error_code ? "valid" : "none");
	addrs[0] = regs.rip;
	addrs[1] = sregs.cr2;
	for (i = 0; i < 2; i++) {
		struct kvm_translation tr = { .linear_address = addrs[i] };

		if (__vcpu_ioctl(vcpu, KVM_TRANSLATE, &tr))
			print_line("    KVM_TRANSLATE(0x%lx): %s", addrs[i], strerror(errno));
		else
			print_line("    KVM_TRANSLATE(0x%lx): valid %u, gpa 0x%llx, writeable %u",
				   addrs[i], tr.valid, tr.physical_address, tr.writeable);
		print_guest_walk(vcpu->vm, sregs.cr3, addrs[i]);
	}
}

/*
 * _vcpu_run() that a stop can interrupt: KVM_RUN that the watchdog's SIGUSR1
 * interrupts after the stop dumps the vCPU as @name and fails with EINTR;
 * other interruptions retry, as in _vcpu_run().
 */
static int run_kickable(struct kvm_vcpu *vcpu, const char *name)
{
	int r;

	for (;;) {
		r = __vcpu_run(vcpu);
		if (r != -1 || errno != EINTR)
			break;
		if (stopping()) {
			dump_vcpu(vcpu, name);
			errno = EINTR;
			return -1;
		}
	}
	assert_on_unhandled_exception(vcpu);
	return r;
}

static void report_bad(int kind, uint64_t gpa, uint64_t expected, uint64_t got)
{
	if (__atomic_fetch_add(&bad_count[kind], 1, __ATOMIC_RELAXED) < MAX_REPORTS)
		print_line("FAIL %s: gpa 0x%lx expected 0x%lx, got 0x%lx",
			   bad_desc[kind], gpa, expected, got);
}

static __printf(2, 3) void unexpected(int role, const char *fmt, ...)
{
	char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (__atomic_fetch_add(&roles[role].errors, 1, __ATOMIC_RELAXED) < MAX_REPORTS)
		print_line("FAIL %s: unexpected %s", roles[role].name, buf);
}

/*
 * A call returned @ret (errno set if negative); it should have ended with
 * @expected, 0 or an errno.  Returns whether it did.
 */
static __printf(4, 5) bool check(int role, int ret, int expected,
				 const char *fmt, ...)
{
	int err = ret < 0 ? errno : 0;
	char buf[160];
	va_list ap;

	if (err == expected)
		return true;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	unexpected(role, "%s = %d (%s), expected %s", buf, ret,
		   err ? strerror(err) : "success",
		   expected ? strerror(expected) : "success");
	return false;
}

static int set_attributes(uint64_t gpa, uint64_t size, uint64_t attrs,
			  uint64_t flags)
{
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = size,
		.attributes = attrs,
		.flags = flags,
	};

	return __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr);
}

static int set_slot(int slot, uint32_t flags, uint64_t gpa, uint64_t size,
		    void *hva, int fd, uint64_t offset)
{
	return __vm_set_user_memory_region2(vm, slot, flags, gpa, size, hva,
					    fd, offset);
}

static void *window_hva(int w)
{
	return win_hva + w * WIN_SIZE;
}

static uint64_t churn_gpa(void)
{
	return MAIN_GPA + nr_checkers * CHECK_NPAGES * PAGE_SIZE;
}

/* checker: run one vCPU whose guest checks its region. */
struct checker {
	struct kvm_vcpu *vcpu;
	/* Opened up front: a vCPU ioctl would wait for a vCPU in KVM_RUN. */
	int stats_fd;
	int id;
	pthread_t thread;
};

static struct checker checkers[MAX_CHECKERS];

static uint64_t region_gpa(int id)
{
	return MAIN_GPA + id * CHECK_NPAGES * PAGE_SIZE;
}

static void punch(int role, int fd, uint64_t offset, uint64_t len)
{
	int r = fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			  offset, len);

	check(role, r, 0, "fallocate(PUNCH_HOLE, 0x%lx, 0x%lx)", offset, len);
}

static bool checker_map_gpa(struct checker *c, struct guest_random_state *rng)
{
	struct kvm_run *run = c->vcpu->run;
	uint64_t gpa = run->hypercall.args[0];
	uint64_t npages = run->hypercall.args[1];
	bool shared = run->hypercall.args[2] & MAP_GPA_SHARED;
	uint64_t size = npages * PAGE_SIZE;
	uint64_t offset = gpa - MAIN_GPA;
	bool punch_first = guest_random_bool(rng);
	int r;

	if (run->hypercall.nr != KVM_HC_MAP_GPA_RANGE ||
	    gpa < region_gpa(c->id) ||
	    gpa + size > region_gpa(c->id) + CHECK_NPAGES * PAGE_SIZE) {
		unexpected(ROLE_CHECK, "hypercall %llu (0x%lx, %lu pages) from vCPU %d",
			   run->hypercall.nr, gpa, npages, c->id);
		return false;
	}

	/* A VMM frees the private memory of pages going shared. */
	if (shared && punch_first)
		punch(ROLE_CHECK, main_gmem, offset, size);
	r = set_attributes(gpa, size, shared ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	check(ROLE_CHECK, r, 0, "KVM_SET_MEMORY_ATTRIBUTES(0x%lx, 0x%lx, %s)",
	      gpa, size, shared ? "shared" : "private");
	if (shared && !punch_first)
		punch(ROLE_CHECK, main_gmem, offset, size);

	count(ROLE_CHECK, shared ? 2 : 3, npages);
	run->hypercall.ret = 0;
	return true;
}

static void checker_punch(struct checker *c, uint64_t mask)
{
	int page;

	for (page = 0; page < CHECK_NPAGES; page++) {
		if (!(mask & BIT_ULL(page)))
			continue;
		punch(ROLE_CHECK, main_gmem,
		      region_gpa(c->id) - MAIN_GPA + page * PAGE_SIZE, PAGE_SIZE);
		count(ROLE_CHECK, 1, 1);
	}
}

/* The guest wrote its pattern to these shared pages: check, write ours. */
static void checker_shared(struct checker *c, uint64_t mask, uint64_t round)
{
	uint64_t *mem, val, expected;
	int page, q;

	for (page = 0; page < CHECK_NPAGES; page++) {
		if (!(mask & BIT_ULL(page)))
			continue;
		mem = (uint64_t *)(main_hva + region_gpa(c->id) - MAIN_GPA +
				   page * PAGE_SIZE);
		for (q = 0; q < QWORDS_PER_PAGE; q++) {
			expected = pattern(GUEST_SHARED_TAG, c->id, round, page, q);
			val = READ_ONCE(mem[q]);
			if (val != expected) {
				report_bad(BAD_SHARED, region_gpa(c->id) +
					   page * PAGE_SIZE + q * 8, expected, val);
				break;
			}
		}
		for (q = 0; q < QWORDS_PER_PAGE; q++)
			WRITE_ONCE(mem[q], pattern(HOST_SHARED_TAG, c->id, round,
						   page, q));
		count(ROLE_CHECK, 4, 1);
	}
}

static void *checker_fn(void *arg)
{
	struct checker *c = arg;
	struct guest_random_state rng = new_guest_random_state(seed + 100 + c->id);
	struct kvm_run *run = c->vcpu->run;
	struct ucall uc;
	int r;

	for (;;) {
		r = run_kickable(c->vcpu, "checker");
		if (r && errno == EINTR)
			return NULL;
		if (r) {
			unexpected(ROLE_CHECK, "KVM_RUN of checker %d: %s (exit %u)",
				   c->id, strerror(errno), run->exit_reason);
			return NULL;
		}
		if (run->exit_reason == KVM_EXIT_HYPERCALL) {
			if (!checker_map_gpa(c, &rng))
				return NULL;
			continue;
		}
		if (run->exit_reason != KVM_EXIT_IO) {
			if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
				report_shutdown(vm, &main_pfns);
				dump_vcpu(c->vcpu, "checker");
			}
			unexpected(ROLE_CHECK, "exit %u (%s) of checker %d",
				   run->exit_reason,
				   exit_reason_str(run->exit_reason), c->id);
			return NULL;
		}
		switch (get_ucall(c->vcpu, &uc)) {
		case UCALL_SYNC:
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			unexpected(ROLE_CHECK, "ucall %lu of checker %d", uc.cmd, c->id);
			return NULL;
		}
		switch (uc.args[0]) {
		case CMD_ROUND:
			count(ROLE_CHECK, 0, 1);
			/* Three checks of the whole region per round. */
			count(ROLE_CHECK, 5, 3 * CHECK_NPAGES);
			if (stopping())
				return NULL;
			break;
		case CMD_PUNCH:
			checker_punch(c, uc.args[1]);
			break;
		case CMD_SHARED:
			checker_shared(c, uc.args[1], uc.args[2]);
			break;
		case CMD_BAD:
			report_bad(uc.args[1], uc.args[2], uc.args[3], uc.args[4]);
			break;
		default:
			unexpected(ROLE_CHECK, "sync %lu of checker %d", uc.args[0], c->id);
			return NULL;
		}
	}
}

/* scanner: the shared alias never holds a secret. */
static void *scanner_fn(void *arg)
{
	uint64_t npages = nr_checkers * CHECK_NPAGES + CHURN_NPAGES;
	uint64_t i, val, *mem = (uint64_t *)main_hva;

	while (!stopping()) {
		for (i = 0; i < npages * QWORDS_PER_PAGE; i++) {
			val = READ_ONCE(mem[i]);
			if (val >> 48 == SECRET_TAG)
				report_bad(BAD_LEAK, MAIN_GPA + i * 8, 0, val);
		}
		count(ROLE_SCAN, 0, 1);
		count(ROLE_SCAN, 1, npages);
		usleep(1000);
	}
	return NULL;
}

/* A random page range [*first, *first + *nr) within @npages pages. */
static void random_range(struct guest_random_state *rng, int npages,
			 int *first, int *nr)
{
	*first = guest_random_u32(rng) % npages;
	*nr = 1 + guest_random_u32(rng) % min(npages - *first, 8);
}

/* punch: ALLOCATE and PUNCH_HOLE on the unowned part of the guest_memfd. */
static void *punch_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 200 + (long)arg);
	uint64_t base = churn_gpa() - MAIN_GPA;
	uint64_t gmem_size = base + CHURN_NPAGES * PAGE_SIZE;
	int first, nr, r, mode;

	while (!stopping()) {
		random_range(&rng, CHURN_NPAGES, &first, &nr);
		switch (guest_random_u32(&rng) % 16) {
		case 0:
			r = fallocate(main_gmem, FALLOC_FL_KEEP_SIZE, gmem_size, PAGE_SIZE);
			check(ROLE_PUNCH, r, EINVAL, "fallocate(ALLOCATE) past the end");
			count(ROLE_PUNCH, 2, 1);
			break;
		case 1:
			r = fallocate(main_gmem, FALLOC_FL_KEEP_SIZE, base + 1, PAGE_SIZE);
			check(ROLE_PUNCH, r, EINVAL, "fallocate(ALLOCATE) unaligned");
			count(ROLE_PUNCH, 2, 1);
			break;
		case 2:
			r = fallocate(main_gmem, 0, base, PAGE_SIZE);
			check(ROLE_PUNCH, r, EOPNOTSUPP, "fallocate() without KEEP_SIZE");
			count(ROLE_PUNCH, 2, 1);
			break;
		default:
			mode = FALLOC_FL_KEEP_SIZE;
			if (guest_random_bool(&rng))
				mode |= FALLOC_FL_PUNCH_HOLE;
			r = fallocate(main_gmem, mode, base + first * PAGE_SIZE,
				      nr * PAGE_SIZE);
			check(ROLE_PUNCH, r, 0, "fallocate(%s, page %d, %d pages)",
			      mode & FALLOC_FL_PUNCH_HOLE ? "PUNCH_HOLE" : "ALLOCATE",
			      first, nr);
			count(ROLE_PUNCH, mode & FALLOC_FL_PUNCH_HOLE ? 0 : 1, 1);
		}
	}
	return NULL;
}

/* attr: convert pages that no checker owns, with and without memslots. */
static void *attr_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 300 + (long)arg);
	int first, nr, w, r;
	uint64_t gpa, attrs;

	while (!stopping()) {
		w = guest_random_u32(&rng) % (2 * NR_WINDOWS);
		if (w < NR_WINDOWS) {
			random_range(&rng, WIN_NPAGES, &first, &nr);
			gpa = window_gpa(w);
		} else {
			random_range(&rng, CHURN_NPAGES, &first, &nr);
			gpa = churn_gpa();
		}
		gpa += first * PAGE_SIZE;

		switch (guest_random_u32(&rng) % 16) {
		case 0:
			r = set_attributes(gpa, nr * PAGE_SIZE, BIT(0), 0);
			check(ROLE_ATTR, r, EINVAL, "KVM_SET_MEMORY_ATTRIBUTES(bad attributes)");
			count(ROLE_ATTR, 2, 1);
			break;
		case 1:
			r = set_attributes(gpa, nr * PAGE_SIZE, 0, 1);
			check(ROLE_ATTR, r, EINVAL, "KVM_SET_MEMORY_ATTRIBUTES(flags 1)");
			count(ROLE_ATTR, 2, 1);
			break;
		case 2:
			r = set_attributes(gpa + 8, nr * PAGE_SIZE, 0, 0);
			check(ROLE_ATTR, r, EINVAL, "KVM_SET_MEMORY_ATTRIBUTES(unaligned)");
			count(ROLE_ATTR, 2, 1);
			break;
		case 3:
			r = set_attributes(gpa, 0, 0, 0);
			check(ROLE_ATTR, r, EINVAL, "KVM_SET_MEMORY_ATTRIBUTES(size 0)");
			count(ROLE_ATTR, 2, 1);
			break;
		default:
			attrs = guest_random_bool(&rng) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
			r = set_attributes(gpa, nr * PAGE_SIZE, attrs, 0);
			check(ROLE_ATTR, r, 0, "KVM_SET_MEMORY_ATTRIBUTES(0x%lx, %d pages, 0x%lx)",
			      gpa, nr, attrs);
			count(ROLE_ATTR, attrs ? 0 : 1, 1);
		}
	}
	return NULL;
}

/*
 * slot: two memslots over the two halves of a guest_memfd, in windows
 * 0-2.  Tracks where they are to know the errno of each call.
 */
static void *slot_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 400);
	int win[2] = { -1, -1 }, half[2] = { -1, -1 };
	int fd, s, o, w, h, r, expected;

	fd = vm_create_guest_memfd(vm, 2 * WIN_SIZE, 0);

	while (!stopping()) {
		s = guest_random_u32(&rng) % 2;
		o = !s;
		w = guest_random_u32(&rng) % NR_SLOT_WINDOWS;
		/* Half 2 is past the end of the file. */
		h = guest_random_u32(&rng) % 5 ? guest_random_u32(&rng) % 2 : 2;

		switch (guest_random_u32(&rng) % 4) {
		case 0:
		case 1:
			/* Create, or re-create an existing one elsewhere (a move). */
			if (win[s] >= 0)
				expected = EINVAL;
			else if (win[o] == w)
				expected = EEXIST;
			else if (h == 2 || half[o] == h)
				expected = EINVAL;
			else
				expected = 0;
			r = set_slot(SLOT_ROLE_SLOT + s, KVM_MEM_GUEST_MEMFD,
				     window_gpa(w), WIN_SIZE, window_hva(w), fd,
				     h * WIN_SIZE);
			check(ROLE_SLOT, r, expected,
			      "bind slot %d (window %d half %d) to window %d half %d",
			      s, win[s], half[s], w, h);
			if (!r) {
				win[s] = w;
				half[s] = h;
				count(ROLE_SLOT, 0, 1);
			} else {
				count(ROLE_SLOT, win[s] >= 0 ? 2 : expected == EEXIST ? 3 : 4, 1);
			}
			break;
		case 2:
			if (win[s] < 0) {
				r = set_slot(SLOT_ROLE_SLOT + s, 0, 0, 0, NULL, 0, 0);
				check(ROLE_SLOT, r, EINVAL, "delete slot %d (none)", s);
				count(ROLE_SLOT, 5, 1);
				break;
			}
			/* Changing the flags of a guest_memfd memslot. */
			r = set_slot(SLOT_ROLE_SLOT + s,
				     h == 2 ? KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES : 0,
				     window_gpa(win[s]), WIN_SIZE, window_hva(win[s]),
				     fd, half[s] * WIN_SIZE);
			check(ROLE_SLOT, r, EINVAL, "change flags of slot %d", s);
			count(ROLE_SLOT, 2, 1);
			break;
		case 3:
			r = set_slot(SLOT_ROLE_SLOT + s, KVM_MEM_GUEST_MEMFD,
				     win[s] < 0 ? 0 : window_gpa(win[s]), 0, NULL, fd, 0);
			check(ROLE_SLOT, r, win[s] < 0 ? EINVAL : 0,
			      "delete slot %d (window %d)", s, win[s]);
			count(ROLE_SLOT, win[s] < 0 ? 5 : 1, 1);
			if (!r) {
				win[s] = -1;
				half[s] = -1;
			}
			break;
		}
	}

	for (s = 0; s < 2; s++)
		if (win[s] >= 0)
			set_slot(SLOT_ROLE_SLOT + s, 0, 0, 0, NULL, 0, 0);
	close(fd);
	return NULL;
}

/*
 * gmem: a guest_memfd bound to a memslot in window 3, closed while bound,
 * re-created, the memslot deleted and added back.
 */
static void *gmem_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 500);
	uint64_t gpa = window_gpa(GMEM_WINDOW);
	void *hva = window_hva(GMEM_WINDOW);
	int fd = -1, r, first, nr, mode;
	bool bound = false, mmap_flag;

	while (!stopping()) {
		switch (guest_random_u32(&rng) % 8) {
		case 0:
		case 1:
			if (fd >= 0)
				break;
			/*
			 * With the 6.18 flags, MMAP makes its memslot
			 * guest_memfd-only: the fault role's shared accesses
			 * are then served by this guest_memfd.
			 */
			mmap_flag = has_mmap && guest_random_bool(&rng);
			fd = __vm_create_guest_memfd(vm, WIN_SIZE,
						     mmap_flag ? GUEST_MEMFD_FLAG_MMAP : 0);
			if (check(ROLE_GMEM, fd, 0, "KVM_CREATE_GUEST_MEMFD"))
				count(ROLE_GMEM, 0, 1);
			if (fd >= 0 && guest_random_bool(&rng)) {
				r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, WIN_SIZE);
				check(ROLE_GMEM, r, 0, "fallocate(ALLOCATE) of a new guest_memfd");
			}
			break;
		case 2:
			/* fd -1 is no file; a bound memslot cannot be modified. */
			r = set_slot(GMEM_ROLE_SLOT, KVM_MEM_GUEST_MEMFD, gpa, WIN_SIZE,
				     hva, fd, 0);
			check(ROLE_GMEM, r, bound ? EINVAL : fd < 0 ? EBADF : 0,
			      "bind (bound %d, fd %d)", bound, fd);
			if (!r)
				bound = true;
			count(ROLE_GMEM, r ? 5 : 1, 1);
			break;
		case 3:
			if (fd < 0)
				break;
			r = close(fd);
			check(ROLE_GMEM, r, 0, "close(guest_memfd)");
			if (bound)
				count(ROLE_GMEM, 2, 1);
			fd = -1;
			break;
		case 4:
			r = set_slot(GMEM_ROLE_SLOT, 0, gpa, 0, NULL, 0, 0);
			check(ROLE_GMEM, r, bound ? 0 : EINVAL,
			      "delete memslot (bound %d)", bound);
			count(ROLE_GMEM, bound ? 3 : 5, 1);
			if (!r)
				bound = false;
			break;
		case 5:
			r = __vm_create_guest_memfd(vm, PAGE_SIZE + 1, 0);
			check(ROLE_GMEM, r, EINVAL, "KVM_CREATE_GUEST_MEMFD(unaligned size)");
			if (r >= 0)
				close(r);
			r = __vm_create_guest_memfd(vm, WIN_SIZE, BIT(31));
			check(ROLE_GMEM, r, EINVAL, "KVM_CREATE_GUEST_MEMFD(bad flags)");
			if (r >= 0)
				close(r);
			count(ROLE_GMEM, 5, 2);
			break;
		default:
			if (fd < 0)
				break;
			random_range(&rng, WIN_NPAGES, &first, &nr);
			mode = FALLOC_FL_KEEP_SIZE;
			if (guest_random_bool(&rng))
				mode |= FALLOC_FL_PUNCH_HOLE;
			r = fallocate(fd, mode, first * PAGE_SIZE, nr * PAGE_SIZE);
			check(ROLE_GMEM, r, 0, "fallocate(0x%x, page %d, %d pages)",
			      mode, first, nr);
			count(ROLE_GMEM, 4, 1);
		}
	}

	if (bound)
		set_slot(GMEM_ROLE_SLOT, 0, gpa, 0, NULL, 0, 0);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static bool in_churned_range(uint64_t gpa, uint64_t size)
{
	int w;

	if (gpa >= churn_gpa() && gpa + size <= churn_gpa() + CHURN_NPAGES * PAGE_SIZE)
		return true;
	for (w = 0; w < NR_WINDOWS; w++)
		if (gpa >= window_gpa(w) && gpa + size <= window_gpa(w) + WIN_SIZE)
			return true;
	return false;
}

/*
 * fault: a vCPU touching the churned pages.  A memory fault exit is
 * answered by making the page shared: a private access may have no
 * guest_memfd behind it (closed, or no memslot), and a shared access is
 * converted to, as for an implicit conversion.  Shared accesses to a
 * private gfn happen when the attributes change under the fault, and on
 * a stale MMIO SPTE of a gfn that was made private and got a memslot since
 * (6.12 treats every reserved-bit fault as a shared access).
 */
static void *fault_fn(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct kvm_run *run = vcpu->run;
	struct ucall uc;
	uint64_t gpa;
	int r;

	while (!stopping()) {
		r = run_kickable(vcpu, "fault");
		if (r && errno == EINTR)
			return NULL;
		if (r) {
			gpa = run->memory_fault.gpa;
			if (errno != EFAULT || run->exit_reason != KVM_EXIT_MEMORY_FAULT ||
			    !in_churned_range(gpa, run->memory_fault.size)) {
				unexpected(ROLE_FAULT, "KVM_RUN: %s, exit %u, gpa 0x%lx",
					   strerror(errno), run->exit_reason, gpa);
				return NULL;
			}
			count(ROLE_FAULT, 1, 1);
			if (!(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE))
				count(ROLE_FAULT, 3, 1);
			r = set_attributes(gpa & ~(PAGE_SIZE - 1), PAGE_SIZE, 0, 0);
			check(ROLE_FAULT, r, 0, "KVM_SET_MEMORY_ATTRIBUTES(0x%lx, shared)", gpa);
			continue;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			/* A shared access where there is no memslot. */
			if (!in_churned_range(run->mmio.phys_addr, run->mmio.len)) {
				unexpected(ROLE_FAULT, "MMIO exit at 0x%llx",
					   run->mmio.phys_addr);
				return NULL;
			}
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0, sizeof(run->mmio.data));
			count(ROLE_FAULT, 2, 1);
			continue;
		case KVM_EXIT_IO:
			break;
		default:
			if (run->exit_reason == KVM_EXIT_SHUTDOWN)
				dump_vcpu(vcpu, "fault");
			unexpected(ROLE_FAULT, "exit %u (%s)", run->exit_reason,
				   exit_reason_str(run->exit_reason));
			return NULL;
		}
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[0] == CMD_BAD)
				report_bad(uc.args[1], uc.args[2], uc.args[3], uc.args[4]);
			else
				count(ROLE_FAULT, 0, uc.args[1]);
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			unexpected(ROLE_FAULT, "ucall %lu", uc.cmd);
			return NULL;
		}
	}
	return NULL;
}

/*
 * Runs @vcpu to the end of its guest's next round (CMD_ROUND, counted as
 * count @idx of @role), reporting the invariants the guest found broken on
 * the way (CMD_BAD); returns false, counted as unexpected, on anything
 * else.  On a guest triple fault, @pfns (if given) tells whether memslot 0
 * moved since the set-up.
 */
static bool run_round(struct kvm_vcpu *vcpu, int role, int idx, struct slot0_pfns *pfns)
{
	struct ucall uc;

	for (;;) {
		if (run_kickable(vcpu, roles[role].name)) {
			if (errno == EINTR)
				return false;
			unexpected(role, "KVM_RUN: %s, exit %u", strerror(errno),
				   vcpu->run->exit_reason);
			return false;
		}
		if (vcpu->run->exit_reason != KVM_EXIT_IO) {
			if (vcpu->run->exit_reason == KVM_EXIT_SHUTDOWN) {
				if (pfns)
					report_shutdown(vcpu->vm, pfns);
				dump_vcpu(vcpu, roles[role].name);
			}
			unexpected(role, "exit %u (%s)", vcpu->run->exit_reason,
				   exit_reason_str(vcpu->run->exit_reason));
			return false;
		}
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[0] == CMD_ROUND) {
				count(role, idx, 1);
				return true;
			}
			report_bad(uc.args[1], uc.args[2], uc.args[3], uc.args[4]);
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			unexpected(role, "ucall %lu", uc.cmd);
			return false;
		}
	}
}

/* vm: create VMs using guest_memfd and close them in different orders. */
static void *vm_fn(void *arg)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct guest_random_state rng = new_guest_random_state(seed + 600 + (long)arg);
	struct userspace_mem_region *region;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *cvm;
	int passes, fd, r;

	while (!stopping()) {
		cvm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_vm);
		vm_mem_add(cvm, VM_MEM_SRC_ANONYMOUS, VM_GPA, VM_SLOT, VM_NPAGES,
			   KVM_MEM_GUEST_MEMFD, -1, 0);
		vm_mem_set_private(cvm, VM_GPA, VM_NPAGES * PAGE_SIZE);
		virt_map(cvm, VM_GPA, VM_GPA, VM_NPAGES);
		region = memslot2region(cvm, VM_SLOT);
		count(ROLE_VM, 0, 1);

		for (passes = 1 + guest_random_u32(&rng) % 3; passes; passes--)
			if (!run_round(vcpu, ROLE_VM, 1, NULL))
				break;

		switch (guest_random_u32(&rng) % 4) {
		case 0:
			/* The vCPU faults again after the guest_memfd is gone. */
			r = close(region->region.guest_memfd);
			check(ROLE_VM, r, 0, "close(guest_memfd) of a bound memslot");
			region->region.guest_memfd = -1;
			r = _vcpu_run(vcpu);
			if (r != -1 || errno != EFAULT ||
			    vcpu->run->exit_reason != KVM_EXIT_MEMORY_FAULT ||
			    vcpu->run->memory_fault.gpa < VM_GPA ||
			    vcpu->run->memory_fault.gpa >= VM_GPA + VM_NPAGES * PAGE_SIZE)
				unexpected(ROLE_VM, "KVM_RUN without guest_memfd = %d (%s), exit %u",
					   r, strerror(errno), vcpu->run->exit_reason);
			else
				count(ROLE_VM, 5, 1);
			count(ROLE_VM, 2, 1);
			kvm_vm_free(cvm);
			break;
		case 1:
			/* The guest_memfd keeps working after its VM is closed. */
			fd = dup(region->region.guest_memfd);
			TEST_ASSERT(fd >= 0, "dup() failed");
			kvm_vm_free(cvm);
			r = fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0,
				      VM_NPAGES * PAGE_SIZE);
			check(ROLE_VM, r, 0, "fallocate(PUNCH_HOLE) after the VM is closed");
			r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, VM_NPAGES * PAGE_SIZE);
			check(ROLE_VM, r, 0, "fallocate(ALLOCATE) after the VM is closed");
			close(fd);
			count(ROLE_VM, 3, 1);
			break;
		case 2:
			vm_mem_region_delete(cvm, VM_SLOT);
			kvm_vm_free(cvm);
			count(ROLE_VM, 4, 1);
			break;
		default:
			kvm_vm_free(cvm);
		}
	}
	return NULL;
}

/* mmap: the vCPU of the DEFAULT VM with a guest_memfd-only memslot. */
static void *mmap_vcpu_fn(void *arg)
{
	while (!stopping() && run_round(mmap_vcpu, ROLE_MMAP, 0, &mmap_pfns))
		;
	return NULL;
}

/* mmap: host faults through mappings of the guest_memfd, remapped often. */
static void *mmap_touch_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 700);
	uint64_t n, page, q, val, *p = NULL;

	for (n = 0; !stopping(); n++) {
		if (!(n % 256)) {
			if (p && munmap(p, MMAP_SIZE))
				unexpected(ROLE_MMAP, "munmap(): %s", strerror(errno));
			p = mmap(NULL, MMAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				 mmap_gmem, 0);
			if (p == MAP_FAILED) {
				unexpected(ROLE_MMAP, "mmap(): %s", strerror(errno));
				return NULL;
			}
			count(ROLE_MMAP, 2, 1);
		}
		page = guest_random_u32(&rng) % MMAP_NPAGES;
		q = guest_random_u32(&rng) % QWORDS_PER_PAGE;
		val = READ_ONCE(p[page * QWORDS_PER_PAGE + q]);
		if (!mmap_tagged(val))
			report_bad(BAD_MMAP, MMAP_GPA + page * PAGE_SIZE + q * 8, 0, val);
		WRITE_ONCE(p[page * QWORDS_PER_PAGE + q], MMAP_HOST_TAG << 48 | n);
		count(ROLE_MMAP, 1, 1);
	}
	if (p && munmap(p, MMAP_SIZE))
		unexpected(ROLE_MMAP, "munmap(): %s", strerror(errno));
	return NULL;
}

/* mmap: punches and allocations under the host's and the vCPU's faults. */
static void *mmap_punch_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state(seed + 800);
	int first, nr, mode, r;

	while (!stopping()) {
		random_range(&rng, MMAP_NPAGES, &first, &nr);
		mode = FALLOC_FL_KEEP_SIZE;
		if (guest_random_u32(&rng) % 4)
			mode |= FALLOC_FL_PUNCH_HOLE;
		r = fallocate(mmap_gmem, mode, first * PAGE_SIZE, nr * PAGE_SIZE);
		check(ROLE_MMAP, r, 0, "fallocate(0x%x, page %d, %d pages)", mode, first, nr);
		count(ROLE_MMAP, mode & FALLOC_FL_PUNCH_HOLE ? 3 : 4, 1);
		usleep(guest_random_u32(&rng) % 2000);
	}
	return NULL;
}

/*
 * mmap: a DEFAULT VM whose memslot is one guest_memfd with MMAP and
 * INIT_SHARED (6.18), bound with userspace_addr 0 as mainline's tests do.
 */
static void mmap_setup(void)
{
	mmap_vm = vm_create_with_one_vcpu(&mmap_vcpu, guest_mmap);
	mmap_gmem = vm_create_guest_memfd(mmap_vm, MMAP_SIZE, MMAP_FLAGS);
	vm_set_user_memory_region2(mmap_vm, MMAP_SLOT, KVM_MEM_GUEST_MEMFD, MMAP_GPA,
				   MMAP_SIZE, NULL, mmap_gmem, 0);
	virt_map(mmap_vm, MMAP_GPA, MMAP_GPA, MMAP_NPAGES);
}

/* mmap: punch the whole file; the host and then the guest read zeros. */
static void mmap_finish(void)
{
	uint64_t i, *p;
	struct ucall uc;
	int r;

	r = fallocate(mmap_gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, MMAP_SIZE);
	check(ROLE_MMAP, r, 0, "fallocate(PUNCH_HOLE) of the whole file");
	p = mmap(NULL, MMAP_SIZE, PROT_READ, MAP_SHARED, mmap_gmem, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap() failed");
	for (i = 0; i < MMAP_SIZE / 8; i++) {
		if (p[i]) {
			report_bad(BAD_MMAP_ZERO, MMAP_GPA + i * 8, 0, p[i]);
			break;
		}
	}
	munmap(p, MMAP_SIZE);

	mmap_guest_stop = true;
	sync_global_to_guest(mmap_vm, mmap_guest_stop);
	for (;;) {
		if (_vcpu_run(mmap_vcpu) || mmap_vcpu->run->exit_reason != KVM_EXIT_IO) {
			unexpected(ROLE_MMAP, "last KVM_RUN: %s, exit %u", strerror(errno),
				   mmap_vcpu->run->exit_reason);
			break;
		}
		r = get_ucall(mmap_vcpu, &uc);
		if (r == UCALL_DONE)
			break;
		if (r == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		if (r == UCALL_SYNC && uc.args[0] == CMD_BAD)
			report_bad(uc.args[1], uc.args[2], uc.args[3], uc.args[4]);
	}
	close(mmap_gmem);
	kvm_vm_free(mmap_vm);
	/* The watchdog reads the vCPU's stats only while it exists. */
	__atomic_store_n(&mmap_vcpu, NULL, __ATOMIC_RELEASE);
}

static bool is_mmap_bad(int kind)
{
	return kind == BAD_MMAP || kind == BAD_MMAP_ZERO;
}

static void report(void)
{
	bool ok;
	int i, j, n;
	char buf[512];

	for (i = 0; i < NR_ROLES; i++) {
		if (i == ROLE_MMAP && !has_mmap)
			continue;
		n = snprintf(buf, sizeof(buf), "%s:", roles[i].name);
		for (j = 0; j < NR_COUNTS && roles[i].counts[j]; j++)
			n += snprintf(buf + n, sizeof(buf) - n, "%s %lu %s",
				      j ? "," : "", roles[i].count[j],
				      roles[i].counts[j]);
		print_line("%s", buf);
	}

	for (i = 0; i < NR_BAD; i++) {
		if (!is_mmap_bad(i) || has_mmap)
			ksft_test_result(!bad_count[i], "%s (%lu failures)\n", bad_desc[i],
					 bad_count[i]);
	}

	for (i = 0; i < NR_ROLES; i++) {
		if (i == ROLE_SCAN)
			continue;
		if (i == ROLE_MMAP && !has_mmap)
			continue;
		ok = !roles[i].errors && roles[i].count[0];
		ksft_test_result(ok, "%s: expected results only (%lu unexpected, %lu %s)\n",
				 roles[i].name, roles[i].errors, roles[i].count[0],
				 roles[i].counts[0]);
	}
}

/* Starts a thread named @name (its comm, for the watchdog's report). */
static void start(pthread_t *t, const char *name, long idx, void *(*fn)(void *), void *arg)
{
	char comm[16];

	TEST_ASSERT(!pthread_create(t, NULL, fn, arg), "pthread_create(%s)", name);
	snprintf(comm, sizeof(comm), idx < 0 ? "%s" : "%s%ld", name, idx);
	pthread_setname_np(*t, comm);
}

/* Prints the file @path of task @tid, line by line, indented. */
static void print_task_file(const char *tid, const char *file)
{
	char path[64], buf[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/%s", tid, file);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		print_line("    %s: %s", file, buf);
	}
	fclose(f);
}

/* The user and system CPU time of task @tid, in clock ticks. */
static bool task_times(const char *tid, unsigned long *utime, unsigned long *stime)
{
	char path[64], buf[512], *p;
	bool ok = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return false;
	/* Fields 14 and 15, counted after the ")" that ends the comm. */
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	if (p)
		ok = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			    utime, stime) == 2;
	fclose(f);
	return ok;
}

static bool joined;

/*
 * Prints the binary stats of @vcpu that change within a second, with their
 * change: what a vCPU stuck in KVM_RUN keeps doing (faults that retry, exits
 * that do not reach userspace).
 */
static void print_vcpu_stats(int fd, const char *name)
{
	struct kvm_stats_header header;
	struct kvm_stats_desc *descs, *d;
	uint64_t *before;
	int i;

	if (fd < 0)
		return;
	read_stats_header(fd, &header);
	descs = read_stats_descriptors(fd, &header);
	before = calloc(header.num_desc, sizeof(*before));
	TEST_ASSERT(before, "calloc() failed");
	for (i = 0; i < header.num_desc; i++) {
		d = get_stats_descriptor(descs, i, &header);
		read_stat_data(fd, &header, d, &before[i], 1);
	}
	sleep(1);
	print_line("  vCPU %s, stats that changed in 1 s:", name);
	for (i = 0; i < header.num_desc; i++) {
		uint64_t now;

		d = get_stats_descriptor(descs, i, &header);
		read_stat_data(fd, &header, d, &now, 1);
		if (now != before[i])
			print_line("    %s: %lu (+%lu)", d->name, now, now - before[i]);
	}
	free(before);
	free(descs);
}

/*
 * Once the threads were told to stop, reports them if they do not all stop
 * within WATCHDOG_SECONDS: a thread stuck in the kernel (a vCPU whose fault
 * retries forever, a lock never released) shows as its kernel stack, instead
 * of a run that only times out.
 */
static void *watchdog_fn(void *arg)
{
	struct dirent *d;
	DIR *dir;
	int i;

	for (i = 0; i < WATCHDOG_SECONDS; i++) {
		sleep(1);
		if (__atomic_load_n(&joined, __ATOMIC_ACQUIRE))
			return NULL;
	}
	print_line("FAIL watchdog: threads still running %d s after the stop:", WATCHDOG_SECONDS);
	dir = opendir("/proc/self/task");
	while (dir && (d = readdir(dir))) {
		unsigned long utime, stime;

		if (d->d_name[0] == '.')
			continue;
		print_line("  task %s", d->d_name);
		print_task_file(d->d_name, "comm");
		print_task_file(d->d_name, "wchan");
		/*
		 * The system call it sleeps in, or "running" if it is on a
		 * CPU (in the kernel or not: the CPU times below tell).
		 */
		print_task_file(d->d_name, "syscall");
		print_task_file(d->d_name, "stack");
		if (task_times(d->d_name, &utime, &stime))
			print_line("    times: user %lu, system %lu ticks", utime, stime);
	}
	print_vcpu_stats(fault_stats_fd, "fault");
	for (i = 0; i < nr_checkers; i++)
		print_vcpu_stats(checkers[i].stats_fd, "checker");
	if (__atomic_load_n(&mmap_vcpu, __ATOMIC_ACQUIRE))
		print_vcpu_stats(mmap_stats_fd, "mmap");
	/* Out of KVM_RUN with them, to see where they are. */
	for (i = 0; i < nr_checkers; i++)
		pthread_kill(checkers[i].thread, SIGUSR1);
	pthread_kill(fault_thread, SIGUSR1);
	if (__atomic_load_n(&mmap_vcpu, __ATOMIC_ACQUIRE))
		pthread_kill(mmap_vcpu_thread, SIGUSR1);
	sleep(2);
	/* A second or more later: where the running threads spent it. */
	if (dir) {
		rewinddir(dir);
		while ((d = readdir(dir))) {
			unsigned long utime, stime;

			if (d->d_name[0] != '.' && task_times(d->d_name, &utime, &stime))
				print_line("  task %s times now: user %lu, system %lu ticks",
					   d->d_name, utime, stime);
		}
		closedir(dir);
	}
	report();
	fflush(stdout);
	_exit(KSFT_FAIL);
}

static void help(const char *name)
{
	printf("usage: %s [-h] [-t seconds] [-c checkers] [-n threads] [-v threads] [-s seed]\n",
	       name);
	printf(" -t: how long the threads race (default %d)\n", DEFAULT_SECONDS);
	printf(" -c: checker vCPUs, 1-%d (default 2)\n", MAX_CHECKERS);
	printf(" -n: punch and attribute threads each, 1-%d (default 1)\n",
	       MAX_CHURNERS);
	printf(" -v: threads creating and closing VMs, 1-%d (default 1)\n",
	       MAX_VM_THREADS);
	printf(" -s: random seed (default: time and pid)\n");
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	pthread_t scanner, slot, gmem, watchdog, punchers[MAX_CHURNERS];
	pthread_t attrs[MAX_CHURNERS], vms[MAX_VM_THREADS], mmaps[2];
	int seconds = DEFAULT_SECONDS;
	uint64_t main_npages;
	long i;
	int opt, w;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	/* No SA_RESTART: the watchdog's SIGUSR1 ends a vCPU's KVM_RUN. */
	TEST_ASSERT(!sigaction(SIGUSR1, &(struct sigaction){ .sa_handler = on_sigusr1 }, NULL),
		    "sigaction(SIGUSR1)");
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_EXIT_HYPERCALL) & BIT(KVM_HC_MAP_GPA_RANGE));
	has_mmap = (kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & MMAP_FLAGS) == MMAP_FLAGS;

	seed = time(NULL) ^ getpid();
	while ((opt = getopt(argc, argv, "ht:c:n:v:s:")) != -1) {
		switch (opt) {
		case 't':
			seconds = atoi_positive("Seconds", optarg);
			break;
		case 'c':
			nr_checkers = atoi_positive("Checkers", optarg);
			TEST_ASSERT(nr_checkers <= MAX_CHECKERS, "At most %d checkers",
				    MAX_CHECKERS);
			break;
		case 'n':
			nr_churners = atoi_positive("Threads", optarg);
			TEST_ASSERT(nr_churners <= MAX_CHURNERS, "At most %d threads",
				    MAX_CHURNERS);
			break;
		case 'v':
			nr_vm_threads = atoi_positive("VM threads", optarg);
			TEST_ASSERT(nr_vm_threads <= MAX_VM_THREADS,
				    "At most %d VM threads", MAX_VM_THREADS);
			break;
		case 's':
			seed = strtoul(optarg, NULL, 0);
			break;
		default:
			gmem_usage_exit(opt, argv[0], help);
		}
	}

	ksft_print_header();
	/* Without the 6.18 flags, no mmap role and no results of it. */
	ksft_set_plan(NR_BAD + NR_ROLES - 1 - (has_mmap ? 0 : 3));
	print_line("seed %u, %d s, %d checkers, %d punch and %d attr threads, %d VM threads%s",
		   seed, seconds, nr_checkers, nr_churners, nr_churners,
		   nr_vm_threads,
		   has_mmap ? ", mmap role" : ", no mmap role (no KVM_CAP_GUEST_MEMFD_FLAGS)");

	vm = __vm_create(shape, nr_checkers + 1, 0);
	vm_enable_cap(vm, KVM_CAP_EXIT_HYPERCALL, BIT(KVM_HC_MAP_GPA_RANGE));

	main_npages = nr_checkers * CHECK_NPAGES + CHURN_NPAGES;
	vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, MAIN_GPA, MAIN_SLOT, main_npages,
		   KVM_MEM_GUEST_MEMFD, -1, 0);
	main_gmem = memslot2region(vm, MAIN_SLOT)->region.guest_memfd;
	main_hva = addr_gpa2hva(vm, MAIN_GPA);
	vm_mem_set_private(vm, MAIN_GPA, main_npages * PAGE_SIZE);
	virt_map(vm, MAIN_GPA, MAIN_GPA, main_npages);

	win_hva = mmap(NULL, NR_WINDOWS * WIN_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(win_hva != MAP_FAILED, "mmap() failed");
	for (w = 0; w < NR_WINDOWS; w++)
		virt_map(vm, window_gpa(w), window_gpa(w), WIN_NPAGES);

	for (i = 0; i < nr_checkers; i++) {
		checkers[i].id = i;
		checkers[i].vcpu = vm_vcpu_add(vm, i, guest_checker);
		vcpu_args_set(checkers[i].vcpu, 3, i, region_gpa(i),
			      (uint64_t)seed + i);
	}
	fault_vcpu = vm_vcpu_add(vm, nr_checkers, guest_fault);
	vcpu_args_set(fault_vcpu, 1, churn_gpa());
	if (has_mmap)
		mmap_setup();
	read_slot0_pfns(vm, &main_pfns);
	if (has_mmap)
		read_slot0_pfns(mmap_vm, &mmap_pfns);
	fault_stats_fd = vcpu_get_stats_fd(fault_vcpu);
	for (i = 0; i < nr_checkers; i++)
		checkers[i].stats_fd = vcpu_get_stats_fd(checkers[i].vcpu);
	if (has_mmap)
		mmap_stats_fd = vcpu_get_stats_fd(mmap_vcpu);

	for (i = 0; i < nr_checkers; i++)
		start(&checkers[i].thread, "checker", i, checker_fn, &checkers[i]);
	start(&scanner, "scanner", -1, scanner_fn, NULL);
	start(&fault_thread, "fault", -1, fault_fn, fault_vcpu);
	start(&slot, "slot", -1, slot_fn, NULL);
	start(&gmem, "gmem", -1, gmem_fn, NULL);
	for (i = 0; i < nr_churners; i++) {
		start(&punchers[i], "punch", i, punch_fn, (void *)i);
		start(&attrs[i], "attr", i, attr_fn, (void *)i);
	}
	for (i = 0; i < nr_vm_threads; i++)
		start(&vms[i], "vm", i, vm_fn, (void *)i);
	if (has_mmap) {
		start(&mmap_vcpu_thread, "mmap-vcpu", -1, mmap_vcpu_fn, NULL);
		start(&mmaps[0], "mmap-touch", -1, mmap_touch_fn, NULL);
		start(&mmaps[1], "mmap-punch", -1, mmap_punch_fn, NULL);
	}

	sleep(seconds);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	start(&watchdog, "watchdog", -1, watchdog_fn, NULL);

	for (i = 0; i < nr_checkers; i++)
		pthread_join(checkers[i].thread, NULL);
	pthread_join(scanner, NULL);
	pthread_join(fault_thread, NULL);
	pthread_join(slot, NULL);
	pthread_join(gmem, NULL);
	for (i = 0; i < nr_churners; i++) {
		pthread_join(punchers[i], NULL);
		pthread_join(attrs[i], NULL);
	}
	for (i = 0; i < nr_vm_threads; i++)
		pthread_join(vms[i], NULL);
	if (has_mmap) {
		pthread_join(mmap_vcpu_thread, NULL);
		for (i = 0; i < 2; i++)
			pthread_join(mmaps[i], NULL);
		mmap_finish();
	}
	__atomic_store_n(&joined, true, __ATOMIC_RELEASE);
	pthread_join(watchdog, NULL);

	report();

	kvm_vm_free(vm);
	munmap(win_hva, NR_WINDOWS * WIN_SIZE);

	ksft_finished();
}
