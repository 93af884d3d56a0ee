// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_failslab_test
 *
 * Allocation failures must not leave guest_memfd or the memory attributes
 * half-changed.  Faults are injected systematically with
 * /proc/thread-self/fail-nth (Documentation/fault-injection/
 * fault-injection.rst, "Systematic faults using fail-nth"): writing k makes
 * the k-th fault-injection point that this thread reaches fail, for
 * k = 1, 2, ... until a call completes without reaching a k-th point.
 * Each call is run in two modes:
 *
 *   k-th     only the k-th point fails.  A failure with a fallback, like
 *            an xarray node allocated with GFP_NOWAIT under the lock and
 *            again with GFP_KERNEL by xas_nomem(), or kmemleak's metadata,
 *            is absorbed and the call succeeds;
 *   k-th on  the k-th and every later point fail: failslab has
 *            probability=100, interval=1, task-filter=Y, and this
 *            thread's /proc/thread-self/make-it-fail is 1 while the call
 *            runs, so the fallbacks fail too.
 *
 * failslab has ignore-gfp-wait=N (the allocations are GFP_KERNEL) and
 * verbose=0; fail_page_alloc only counts for fallocate().
 *
 * The kernel counts every failure it injects, by either means, down from
 * "times" (set to TIMES_BUDGET here instead of -1, unlimited), so the test
 * knows how many allocations it made fail, not only that fail-nth reached
 * 0.  A part below that saw no injection in a mode tested nothing and
 * fails.
 *
 * 1. KVM_SET_MEMORY_ATTRIBUTES on a KVM_X86_SW_PROTECTED_VM whose private
 *    ranges must be split and merged, across 2 MiB boundaries and the
 *    1 GiB boundary at 4 GiB, and a large range (-l SIZE) with no memslot
 *    in its middle.  After every failed call (ENOMEM) a vCPU probes the
 *    attributes at the edges of every range and of the change, and in the
 *    neighbours: in a plain memslot a private page exits with
 *    KVM_EXIT_MEMORY_FAULT (flag PRIVATE) and a shared one reads the
 *    host's data; in a guest_memfd memslot a private page reads the
 *    (zeroed) guest_memfd page and a shared one the host's data.  They
 *    must be exactly as before the call; after the call that succeeds,
 *    exactly as the change says.  A call that absorbed its failure must
 *    have made the change, which is then undone for the next k.
 *
 * 2. KVM_CREATE_GUEST_MEMFD: a failed call returns ENOMEM and leaves no
 *    file descriptor behind.
 *
 * 3. KVM_SET_USER_MEMORY_REGION2 binding a guest_memfd, with failslab
 *    limited to xarray nodes (cache-filter), where the binding allocates:
 *    a failure inside vmalloc() of the memslot's metadata would print a
 *    warn_alloc() stack dump, which the test VM counts as a splat.  A
 *    failed call returns ENOMEM, the file keeps its size and its range
 *    binds to another memslot.
 *
 * 4. fallocate() of a guest_memfd, page allocations counting too: a failed
 *    call returns ENOMEM, the file keeps its size and the range can then
 *    be allocated.
 *
 * The number of injection points each call reaches, and the number of
 * injections the kernel counted, are printed.  Leaks show up in kmemleak,
 * which the debug kernels' test VM scans at the end.
 * Without fault injection (failslab in debugfs and fail-nth) the test is
 * skipped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <linux/falloc.h>
#include <linux/sizes.h>
#include <linux/stringify.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define PRIV			KVM_MEMORY_ATTRIBUTE_PRIVATE
#define X			SZ_4G		/* a 1 GiB boundary */
#define SLOT_A			10		/* plain, [X - 4M, X) */
#define SLOT_B			11		/* guest_memfd, [X, X + 4M) */
#define SLOT_C			12		/* plain, [E - 2M, E + 2M) */
#define SLOT_BIND		20
#define SLOT_CHECK		21
#define EXTRA_PAGES		256
#define MAX_K			100000
/* Injections the fault attributes may count down from "times". */
#define TIMES_BUDGET		1000000000
/* The attribute changes of test_set_attributes(). */
#define NR_CHANGES		12

#define PATTERN(gpa)		((0xa5ull << 56) | (gpa))

static const char *failslab_dir = "/sys/kernel/debug/failslab";
static const char *fail_page_dir = "/sys/kernel/debug/fail_page_alloc";

static uint64_t large_size = 16ull * SZ_1M;
/* End of the large private range; slot C is around it. */
static uint64_t E;

static struct kvm_vm *vm;
static struct kvm_vcpu *vcpu;
static struct kvm_regs initial_regs;
static int fail_nth_fd = -1, make_it_fail_fd = -1;
/* The kernel's count of injections when the current call was armed. */
static long injections_armed;

/* ONE: only the k-th injection point fails; FROM: it and all later ones. */
enum { ONE, FROM, NR_MODES };
static int mode;
static const char * const mode_names[NR_MODES] = { "k-th", "k-th on" };

/* -------- fault injection -------- */

static int write_file(const char *dir, const char *name, const char *val)
{
	char path[256];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	if (write(fd, val, strlen(val)) != strlen(val))
		ret = errno ?: EIO;
	close(fd);
	return ret;
}

/* verbose=0 for every fault type: no stack dumps in the kernel log. */
static void quiet_all_fault_types(void)
{
	DIR *d = opendir("/sys/kernel/debug");
	struct dirent *de;
	char dir[300];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "fail", 4))
			continue;
		snprintf(dir, sizeof(dir), "/sys/kernel/debug/%s", de->d_name);
		write_file(dir, "verbose", "0");
	}
	closedir(d);
}

static bool setup_fault_injection(void)
{
	if (access(failslab_dir, F_OK))
		return false;
	fail_nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	make_it_fail_fd = open("/proc/thread-self/make-it-fail", O_RDWR);
	if (fail_nth_fd < 0 || make_it_fail_fd < 0)
		return false;
	quiet_all_fault_types();
	/*
	 * fail-nth fails the k-th injection point; after it, with
	 * make-it-fail set (FROM mode), every later one fails too.  Only this
	 * thread, and only while armed, has make-it-fail set.
	 */
	TEST_ASSERT(pwrite(make_it_fail_fd, "0", 1, 0) == 1 &&
		    !write_file(failslab_dir, "probability", "100") &&
		    !write_file(failslab_dir, "interval", "1") &&
		    !write_file(failslab_dir, "times", __stringify(TIMES_BUDGET)) &&
		    !write_file(failslab_dir, "space", "0") &&
		    !write_file(failslab_dir, "task-filter", "Y") &&
		    !write_file(failslab_dir, "ignore-gfp-wait", "N") &&
		    !write_file(failslab_dir, "cache-filter", "N"),
		    "Cannot set up %s", failslab_dir);
	/* Page allocations do not count, but for fallocate(). */
	if (!access(fail_page_dir, F_OK))
		TEST_ASSERT(!write_file(fail_page_dir, "min-order", "32") &&
			    !write_file(fail_page_dir, "probability", "100") &&
			    !write_file(fail_page_dir, "interval", "1") &&
			    !write_file(fail_page_dir, "times", __stringify(TIMES_BUDGET)) &&
			    !write_file(fail_page_dir, "space", "0") &&
			    !write_file(fail_page_dir, "task-filter", "Y"),
			    "Cannot set up %s", fail_page_dir);
	return true;
}

/* Injections made through @dir's fault attribute since the setup. */
static long injections_of(const char *dir)
{
	char path[256], val[32] = { 0 };
	int fd;

	if (access(dir, F_OK))
		return 0;
	snprintf(path, sizeof(path), "%s/times", dir);
	fd = open(path, O_RDONLY);
	TEST_ASSERT(fd >= 0 && read(fd, val, sizeof(val) - 1) > 0,
		    "Cannot read %s: %s", path, strerror(errno));
	close(fd);
	return TIMES_BUDGET - atol(val);
}

/* The injections the kernel counted: failslab's and fail_page_alloc's. */
static long injections(void)
{
	return injections_of(failslab_dir) + injections_of(fail_page_dir);
}

static void fail_page_alloc_count(bool on)
{
	TEST_ASSERT(!write_file(fail_page_dir, "min-order", on ? "0" : "32") &&
		    !write_file(fail_page_dir, "ignore-gfp-wait", on ? "N" : "Y") &&
		    !write_file(fail_page_dir, "ignore-gfp-highmem", on ? "N" : "Y"),
		    "Cannot set up %s", fail_page_dir);
}

/*
 * Only xarray nodes fail: a failure inside vmalloc() (memslot metadata)
 * prints a warn_alloc() stack dump, which the test VM takes for a splat.
 */
static bool only_xarray_nodes(bool on)
{
	const char *cache = "/sys/kernel/slab/radix_tree_node";

	if (write_file(cache, "failslab", on ? "1" : "0"))
		return false;
	TEST_ASSERT(!write_file(failslab_dir, "cache-filter", on ? "Y" : "N"),
		    "Cannot set %s/cache-filter", failslab_dir);
	return true;
}

/* Arm: the k-th injection point of the next call fails (and later ones in FROM mode). */
static void arm(int k)
{
	char val[16];
	int n = snprintf(val, sizeof(val), "%d", k);

	injections_armed = injections();
	TEST_ASSERT(pwrite(fail_nth_fd, val, n, 0) == n,
		    "Cannot write fail-nth: %s", strerror(errno));
	if (mode == FROM)
		TEST_ASSERT(pwrite(make_it_fail_fd, "1", 1, 0) == 1,
			    "Cannot write make-it-fail: %s", strerror(errno));
}

/*
 * Disarm; returns the number of failures injected into the call, 0 if it
 * did not reach the armed injection point.
 */
static int disarm(void)
{
	char val[16] = { 0 };
	bool reached;
	long n;

	if (mode == FROM)
		TEST_ASSERT(pwrite(make_it_fail_fd, "0", 1, 0) == 1,
			    "Cannot reset make-it-fail: %s", strerror(errno));
	TEST_ASSERT(pread(fail_nth_fd, val, sizeof(val) - 1, 0) > 0,
		    "Cannot read fail-nth: %s", strerror(errno));
	TEST_ASSERT(pwrite(fail_nth_fd, "0", 1, 0) == 1,
		    "Cannot reset fail-nth: %s", strerror(errno));
	reached = atoi(val) == 0;
	n = injections() - injections_armed;
	/* fail-nth at 0 is an injection; without it, make-it-fail is inert. */
	TEST_ASSERT(reached ? n >= 1 && (mode == FROM || n == 1) : !n,
		    "fail-nth %s, but the kernel counted %ld injections",
		    reached ? "reached 0" : val, n);
	return n;
}

struct inject_stats {
	int points;	/* injection points the call reaches */
	int injected;	/* failures injected, as the kernel counted them */
	int failed;	/* calls that an injection made fail */
	int absorbed;	/* calls that survived their injections */
	int bad;	/* failures with an unexpected errno or state */
};

static void print_stats(const char *what, struct inject_stats *s)
{
	ksft_print_msg("[%s] %s: %d injection points, %d injections, %d failed the call, %d absorbed\n",
		       mode_names[mode], what, s->points, s->injected,
		       s->failed, s->absorbed);
}

/* Count a call that an injection made fail; it must fail with ENOMEM. */
static void count_failure(struct inject_stats *s, int k, int err)
{
	s->failed++;
	if (err != ENOMEM) {
		ksft_print_msg("injection %d: %s, expected ENOMEM\n", k,
			       strerror(err));
		s->bad++;
	}
}

/* -------- attribute model -------- */

struct range {
	uint64_t start, end;
};

#define MAX_RANGES	64
static struct range model[MAX_RANGES];
static int nr_model;

static bool model_private(uint64_t gpa)
{
	int i;

	for (i = 0; i < nr_model; i++)
		if (gpa >= model[i].start && gpa < model[i].end)
			return true;
	return false;
}

/* Apply [start, end) := attrs to @m; keeps the ranges sorted and merged. */
static void model_apply(struct range *m, int *nr, uint64_t start, uint64_t end,
			uint64_t attrs)
{
	struct range out[MAX_RANGES + 2];
	int i, n = 0;

	for (i = 0; i < *nr; i++) {
		if (m[i].end <= start || m[i].start >= end) {
			out[n++] = m[i];
			continue;
		}
		if (m[i].start < start)
			out[n++] = (struct range){ m[i].start, start };
		if (m[i].end > end)
			out[n++] = (struct range){ end, m[i].end };
	}
	if (attrs)
		out[n++] = (struct range){ start, end };
	/* Sort (insertion) and merge touching ranges. */
	for (i = 1; i < n; i++) {
		struct range r = out[i];
		int j = i - 1;

		while (j >= 0 && out[j].start > r.start) {
			out[j + 1] = out[j];
			j--;
		}
		out[j + 1] = r;
	}
	*nr = 0;
	for (i = 0; i < n; i++) {
		if (*nr && m[*nr - 1].end == out[i].start)
			m[*nr - 1].end = out[i].end;
		else
			m[(*nr)++] = out[i];
		TEST_ASSERT(*nr < MAX_RANGES, "Test bug: model too fragmented");
	}
}

/* -------- vCPU probes -------- */

struct mslot {
	int id;
	bool gmem;
	uint64_t gpa, size;
	void *hva;
	int fd;
};

static struct mslot mslots[3];

static struct mslot *slot_of(uint64_t gpa)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(mslots); i++)
		if (gpa >= mslots[i].gpa && gpa < mslots[i].gpa + mslots[i].size)
			return &mslots[i];
	return NULL;
}

/* The vCPU reads @gpa: true if it finds the page private. */
static bool probe_private(uint64_t gpa)
{
	struct mslot *s = slot_of(gpa);
	struct kvm_run *run = vcpu->run;
	struct ucall uc;
	enum gmem_run ret;

	ret = gmem_probe_read(vcpu, gpa, false, &uc);
	if (ret == GMEM_RUN_FAULT || ret == GMEM_RUN_ERROR) {
		TEST_ASSERT(ret == GMEM_RUN_FAULT,
			    "Probe of 0x%lx: KVM_RUN failed: %s, exit reason %u (%s)",
			    gpa, strerror(errno), run->exit_reason,
			    exit_reason_str(run->exit_reason));
		TEST_ASSERT(!s->gmem, "Probe of 0x%lx: memory fault exit in a guest_memfd memslot",
			    gpa);
		TEST_ASSERT(run->memory_fault.flags == KVM_MEMORY_EXIT_FLAG_PRIVATE &&
			    run->memory_fault.gpa == gpa &&
			    run->memory_fault.size == PAGE_SIZE,
			    "Probe of 0x%lx: memory fault flags 0x%llx gpa 0x%llx size 0x%llx",
			    gpa, run->memory_fault.flags, run->memory_fault.gpa,
			    run->memory_fault.size);
		/* Start the guest over rather than retry the faulting read. */
		vcpu_regs_set(vcpu, &initial_regs);
		return true;
	}
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT(uc.cmd == UCALL_SYNC, "Unexpected ucall %lu", uc.cmd);
	if (uc.args[1] == PATTERN(gpa))
		return false;
	TEST_ASSERT(s->gmem && !uc.args[1],
		    "Probe of 0x%lx read 0x%lx: neither shared nor private data",
		    gpa, uc.args[1]);
	return true;
}

#define MAX_PROBES	128
static uint64_t probes[MAX_PROBES];
static int nr_probes;

static void add_probe(uint64_t gpa)
{
	int i;

	if (!slot_of(gpa))
		return;
	for (i = 0; i < nr_probes; i++)
		if (probes[i] == gpa)
			return;
	TEST_ASSERT(nr_probes < MAX_PROBES, "Test bug: too many probes");
	probes[nr_probes++] = gpa;
}

/* Probe both sides of boundary @b. */
static void add_boundary(uint64_t b)
{
	add_probe(b - PAGE_SIZE);
	add_probe(b);
}

/* Probe every point against the model; print and count differences. */
static int check_model(const char *when)
{
	int i, bad = 0;

	for (i = 0; i < nr_probes; i++) {
		bool priv = probe_private(probes[i]);

		if (priv == model_private(probes[i]))
			continue;
		if (bad++ < 4)
			ksft_print_msg("%s: gpa 0x%lx is %s, expected %s\n", when,
				       probes[i], priv ? "private" : "shared",
				       priv ? "shared" : "private");
	}
	return bad;
}

/* -------- 1. KVM_SET_MEMORY_ATTRIBUTES -------- */

static int set_attrs(uint64_t start, uint64_t end, uint64_t attrs)
{
	struct kvm_memory_attributes a = {
		.address = start,
		.size = end - start,
		.attributes = attrs,
	};

	return __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) ? errno : 0;
}

/* Set the attributes of [start, end) as in @m, uninjected. */
static void restore(struct range *m, int nr, uint64_t start, uint64_t end)
{
	int i;

	TEST_ASSERT(!set_attrs(start, end, 0), "Restoring: clear failed");
	for (i = 0; i < nr; i++) {
		uint64_t s = max(m[i].start, start), e = min(m[i].end, end);

		if (s < e)
			TEST_ASSERT(!set_attrs(s, e, PRIV), "Restoring: set failed");
	}
}

struct change {
	const char *desc;
	uint64_t start, end, attrs;
};

/* The injections into the attribute changes of the current mode. */
static int set_attrs_injected;

static void test_change(const struct change *c)
{
	struct range before[MAX_RANGES];
	int nr_before = nr_model, k, err, bad = 0;
	struct inject_stats st = { 0 };
	char when[160];

	memcpy(before, model, sizeof(model));
	for (k = 1; k <= MAX_K; k++) {
		int injected;

		arm(k);
		err = set_attrs(c->start, c->end, c->attrs);
		injected = disarm();
		st.injected += injected;
		if (!injected) {
			st.points = k - 1;
			break;
		}
		snprintf(when, sizeof(when), "%s, injection %d", c->desc, k);
		if (!err) {
			/* Absorbed: check the new state, then undo it. */
			st.absorbed++;
			model_apply(model, &nr_model, c->start, c->end, c->attrs);
			bad += check_model(when);
			memcpy(model, before, sizeof(model));
			nr_model = nr_before;
			restore(model, nr_model, c->start, c->end);
			continue;
		}
		st.failed++;
		if (err != ENOMEM) {
			ksft_print_msg("%s: failed with %s, expected ENOMEM\n",
				       when, strerror(err));
			bad++;
		}
		bad += check_model(when);
	}
	TEST_ASSERT(k <= MAX_K, "%s: still failing after %d injections", c->desc, MAX_K);
	if (err)
		ksft_print_msg("%s: uninjected call failed: %s\n", c->desc,
			       strerror(err));
	model_apply(model, &nr_model, c->start, c->end, c->attrs);
	snprintf(when, sizeof(when), "%s, after success", c->desc);
	bad += check_model(when);
	print_stats(c->desc, &st);
	/* A change may not allocate; the changes of a mode together must. */
	set_attrs_injected += st.injected;
	ksft_test_result(!err && !bad,
			 "[%s] set-attributes %s: %d injected failures leave the attributes unchanged\n",
			 mode_names[mode], c->desc, st.failed);
}

static void add_slot(struct mslot *s, int id, bool gmem, uint64_t gpa,
		     uint64_t size)
{
	s->id = id;
	s->gmem = gmem;
	s->gpa = gpa;
	s->size = size;
	s->hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(s->hva != MAP_FAILED, "mmap() failed");
	gmem_fill_pattern(s->hva, size, gpa, PATTERN(0));
	s->fd = gmem ? vm_create_guest_memfd(vm, size, 0) : -1;
	vm_set_user_memory_region2(vm, id, gmem ? KVM_MEM_GUEST_MEMFD : 0,
				   gpa, size, s->hva, gmem ? s->fd : 0, 0);
	virt_map(vm, gpa, gpa, size / PAGE_SIZE);
}

static void test_set_attributes(void)
{
	const struct range initial[] = {
		{ X - 3 * SZ_1M, X - SZ_1M },			/* across X - 2M */
		{ X + 3 * PAGE_SIZE, X + SZ_1M },
		{ X + SZ_2M - 4 * PAGE_SIZE, X + SZ_2M + 4 * PAGE_SIZE },
		{ X + 3 * SZ_1M, E },				/* the large one */
	};
	struct range initial_model[MAX_RANGES];
	int nr_initial;
	const struct change changes[] = {
		{ "set across the 1 GiB boundary, merging two ranges",
		  X - SZ_1M, X + 3 * PAGE_SIZE, PRIV },
		{ "clear two pages at a 2 MiB boundary, splitting a range",
		  X - SZ_2M - PAGE_SIZE, X - SZ_2M + PAGE_SIZE, 0 },
		{ "clear one page inside a large entry",
		  X + 3 * SZ_1M + SZ_512K, X + 3 * SZ_1M + SZ_512K + PAGE_SIZE, 0 },
		{ "set one page in an empty area past the large range",
		  E + SZ_1M, E + SZ_1M + PAGE_SIZE, PRIV },
		{ "set a gap, merging three ranges",
		  X + SZ_1M, X + SZ_2M - 4 * PAGE_SIZE, PRIV },
		{ "clear from a 2 MiB boundary into the large range",
		  X + SZ_2M, E - SZ_1M, 0 },
		{ "set everything",
		  X - 4 * SZ_1M, E + SZ_2M, PRIV },
		{ "set an already private range",
		  X - SZ_1M, X + SZ_1M, PRIV },
		{ "clear one page on each side of the 1 GiB boundary",
		  X - PAGE_SIZE, X + PAGE_SIZE, 0 },
		{ "clear everything",
		  X - 4 * SZ_1M, E + SZ_2M, 0 },
		{ "set everything again, on an empty store",
		  X - 4 * SZ_1M, E + SZ_2M, PRIV },
		{ "clear everything again",
		  X - 4 * SZ_1M, E + SZ_2M, 0 },
	};
	int i;

	add_slot(&mslots[0], SLOT_A, false, X - 4 * SZ_1M, 4 * SZ_1M);
	add_slot(&mslots[1], SLOT_B, true, X, 4 * SZ_1M);
	add_slot(&mslots[2], SLOT_C, false, E - SZ_2M, 4 * SZ_1M);
	ksft_print_msg("memslots: plain [0x%lx, 0x%lx), guest_memfd [0x%lx, 0x%lx), plain [0x%lx, 0x%lx); large range %lu MiB\n",
		       mslots[0].gpa, mslots[0].gpa + mslots[0].size,
		       mslots[1].gpa, mslots[1].gpa + mslots[1].size,
		       mslots[2].gpa, mslots[2].gpa + mslots[2].size,
		       large_size >> 20);

	for (i = 0; i < ARRAY_SIZE(mslots); i++) {
		add_boundary(mslots[i].gpa + PAGE_SIZE);
		add_boundary(mslots[i].gpa + mslots[i].size - PAGE_SIZE);
		add_probe(mslots[i].gpa + mslots[i].size / 2);
	}
	for (i = 0; i < ARRAY_SIZE(initial); i++) {
		add_boundary(initial[i].start);
		add_boundary(initial[i].end);
		TEST_ASSERT(!set_attrs(initial[i].start, initial[i].end, PRIV),
			    "Initial set failed");
		model_apply(model, &nr_model, initial[i].start, initial[i].end, PRIV);
	}
	for (i = 0; i < ARRAY_SIZE(changes); i++) {
		add_boundary(changes[i].start);
		add_boundary(changes[i].end);
		add_probe((changes[i].start + changes[i].end) / 2 & ~(PAGE_SIZE - 1));
	}
	memcpy(initial_model, model, sizeof(model));
	nr_initial = nr_model;
	ksft_print_msg("%d probes\n", nr_probes);
	ksft_test_result(!check_model("initial state"),
			 "initial attributes as set\n");

	TEST_ASSERT(ARRAY_SIZE(changes) == NR_CHANGES, "Test bug: NR_CHANGES");
	for (mode = 0; mode < NR_MODES; mode++) {
		set_attrs_injected = 0;
		for (i = 0; i < ARRAY_SIZE(changes); i++)
			test_change(&changes[i]);
		ksft_test_result(set_attrs_injected > 0,
				 "[%s] set-attributes: %d failures injected into the %d changes\n",
				 mode_names[mode], set_attrs_injected, NR_CHANGES);
		/* Back to the initial state for the next mode. */
		restore(initial_model, nr_initial, X - 4 * SZ_1M, E + SZ_2M);
		memcpy(model, initial_model, sizeof(model));
		nr_model = nr_initial;
	}
}

/* -------- 2-4. guest_memfd calls -------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	TEST_ASSERT(d, "opendir(/proc/self/fd) failed");
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_create_gmem(void)
{
	struct inject_stats st = { 0 };
	int k, fd, err = 0, fds = count_fds();

	for (k = 1; k <= MAX_K; k++) {
		int injected;

		arm(k);
		fd = __vm_create_guest_memfd(vm, SZ_2M, 0);
		err = fd < 0 ? errno : 0;
		injected = disarm();
		st.injected += injected;
		if (!injected) {
			st.points = k - 1;
			break;
		}
		if (fd >= 0) {
			st.absorbed++;
			close(fd);
			continue;
		}
		count_failure(&st, k, err);
		if (count_fds() != fds) {
			ksft_print_msg("injection %d: %d fds open, %d before\n", k,
				       count_fds(), fds);
			st.bad++;
		}
	}
	if (fd >= 0)
		close(fd);
	print_stats("KVM_CREATE_GUEST_MEMFD", &st);
	ksft_test_result(!err && !st.bad && count_fds() == fds && st.injected,
			 "[%s] KVM_CREATE_GUEST_MEMFD: %d injected failures return ENOMEM and leave no fd\n",
			 mode_names[mode], st.failed);
}

/* The raw ioctl: the library's wrapper may open /dev/kvm while armed. */
static int bind(int slot, uint64_t gpa, void *hva, int fd)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = slot,
		.flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = gpa,
		.memory_size = SZ_2M,
		.userspace_addr = (uintptr_t)hva,
		.guest_memfd = fd,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION2, &r) ? errno : 0;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	TEST_ASSERT(!fstat(fd, &st), "fstat() failed");
	return st.st_size;
}

static void test_bind(void)
{
	struct inject_stats st = { 0 };
	const uint64_t gpa = 8ull * SZ_1G, check_gpa = 9ull * SZ_1G;
	void *hva = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int k, err = 0, fd = vm_create_guest_memfd(vm, SZ_2M, 0);

	TEST_ASSERT(hva != MAP_FAILED, "mmap() failed");
	if (!only_xarray_nodes(true)) {
		ksft_test_result_skip("[%s] bind: cannot limit failslab to xarray nodes\n",
				      mode_names[mode]);
		goto out;
	}
	for (k = 1; k <= MAX_K; k++) {
		int injected;

		arm(k);
		err = bind(SLOT_BIND, gpa, hva, fd);
		injected = disarm();
		st.injected += injected;
		if (!injected) {
			st.points = k - 1;
			break;
		}
		if (!err) {
			st.absorbed++;
			TEST_ASSERT(!__vm_set_user_memory_region2(vm, SLOT_BIND, 0, gpa, 0,
								  NULL, 0, 0),
				    "Deleting the memslot failed");
			continue;
		}
		count_failure(&st, k, err);
		/* Nothing half-done: the range binds elsewhere, the size holds. */
		err = bind(SLOT_CHECK, check_gpa, hva, fd);
		if (err || file_size(fd) != SZ_2M) {
			ksft_print_msg("injection %d: rebinding: %s, size 0x%lx\n",
				       k, strerror(err), file_size(fd));
			st.bad++;
		}
		if (!err)
			TEST_ASSERT(!__vm_set_user_memory_region2(vm, SLOT_CHECK, 0,
								  check_gpa, 0, NULL, 0, 0),
				    "Deleting the memslot failed");
	}
	only_xarray_nodes(false);
	print_stats("KVM_SET_USER_MEMORY_REGION2 (guest_memfd bind), xarray nodes", &st);
	ksft_test_result(!err && !st.bad && st.injected &&
			 bind(SLOT_CHECK, check_gpa, hva, fd) == EINVAL,
			 "[%s] bind: %d injected failures return ENOMEM and leave nothing bound\n",
			 mode_names[mode], st.failed);
	TEST_ASSERT(!__vm_set_user_memory_region2(vm, SLOT_BIND, 0, gpa, 0, NULL, 0, 0),
		    "Deleting the memslot failed");
out:
	close(fd);
	munmap(hva, SZ_2M);
}

static void test_fallocate(void)
{
	const uint64_t size = 16 * PAGE_SIZE, off = SZ_1M - 8 * PAGE_SIZE;
	const int punch = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
	struct inject_stats st = { 0 };
	int k, err = 0, fd = vm_create_guest_memfd(vm, SZ_2M, 0);

	if (access(fail_page_dir, F_OK)) {
		close(fd);
		ksft_test_result_skip("[%s] fallocate: no fail_page_alloc\n",
				      mode_names[mode]);
		return;
	}
	fail_page_alloc_count(true);
	for (k = 1; k <= MAX_K; k++) {
		int injected;

		arm(k);
		err = fallocate(fd, FALLOC_FL_KEEP_SIZE, off, size) ? errno : 0;
		injected = disarm();
		st.injected += injected;
		if (!injected) {
			st.points = k - 1;
			break;
		}
		if (!err) {
			st.absorbed++;
		} else {
			count_failure(&st, k, err);
			if (file_size(fd) != SZ_2M ||
			    fallocate(fd, FALLOC_FL_KEEP_SIZE, off, size)) {
				ksft_print_msg("injection %d: size 0x%lx, allocating again: %s\n",
					       k, file_size(fd), strerror(errno));
				st.bad++;
			}
		}
		TEST_ASSERT(!fallocate(fd, punch, off, size), "PUNCH_HOLE failed");
	}
	fail_page_alloc_count(false);
	print_stats("fallocate() of 16 pages", &st);
	ksft_test_result(!err && !st.bad && st.injected && file_size(fd) == SZ_2M,
			 "[%s] fallocate: %d injected failures return ENOMEM, the range allocates afterwards\n",
			 mode_names[mode], st.failed);
	close(fd);
}

static void print_usage(const char *name)
{
	printf("Usage: %s [-l SIZE]\n"
	       " -l: size of the large private range, with a k/m/g/t suffix (default 16M)\n",
	       name);
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	uint64_t limit;
	int opt;

	while ((opt = getopt(argc, argv, "l:h")) != -1) {
		switch (opt) {
		case 'l':
			large_size = parse_size(optarg);
			TEST_ASSERT(large_size >= 4 * SZ_1M && !(large_size % SZ_2M),
				    "-l: a multiple of 2M, at least 4M");
			break;
		default:
			gmem_usage_exit(opt, argv[0], print_usage);
		}
	}

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));
	if (!setup_fault_injection())
		ksft_exit_skip("no fault injection (%s, /proc/thread-self/fail-nth)\n",
			       failslab_dir);

	ksft_print_header();
	ksft_set_plan(1 + NR_MODES * (NR_CHANGES + 4));

	vm = __vm_create_shape_with_one_vcpu(shape, &vcpu, EXTRA_PAGES,
					     gmem_probe_guest_code);
	vcpu_regs_get(vcpu, &initial_regs);
	E = X + 3 * SZ_1M + large_size;
	limit = (vm->max_gfn + 1) << vm->page_shift;
	TEST_ASSERT(E + SZ_2M <= limit,
		    "The large range ends at 0x%lx, above the guest's 0x%lx",
		    E, limit);

	test_set_attributes();
	for (mode = 0; mode < NR_MODES; mode++) {
		test_create_gmem();
		test_bind();
		test_fallocate();
	}

	kvm_vm_free(vm);
	ksft_finished();
}
