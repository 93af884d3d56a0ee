// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_bench
 *
 * Measurements of the guest_memfd / memory attributes paths of KVM.  Not a
 * test: it fails only when an ioctl does.  Every metric is printed as one
 * machine-readable line
 *
 *	metric <name> <unit> <median> <min> <max>
 *
 * over the runs (-r), plus human-readable "#" lines.  Metrics:
 *
 *   attr_set_<sz>, attr_clear_<sz> (us): KVM_SET_MEMORY_ATTRIBUTES setting
 *	PRIVATE on <sz> (4k, 2m, 1g, 16g) of a fresh KVM_X86_SW_PROTECTED_VM
 *	without memslots, then clearing it again;
 *   attr_set_4k_warm, attr_clear_4k_warm (us): the same 4 KiB change in a
 *	VM that has made such changes before, the common conversion: per run,
 *	the median of 400 sets and of the 400 clears after them, on pages
 *	2 MiB apart (each set allocates a leaf node, each clear frees it);
 *	attr_set_4k times the first change of a fresh VM, which costs 15-70
 *	us on either kernel whatever the store does;
 *   attr_mem_4g (bytes): the memory of the xarray nodes that the attribute
 *	store of such a VM allocates when the 2 MiB-aligned 4 GiB range
 *	[4 GiB, 8 GiB) is made PRIVATE: the growth of the radix_tree_node
 *	objects in use (/proc/slabinfo, after flushing the per-CPU slabs of
 *	the cache so that the count is exact), times their size;
 *   attr_mem_4g_unaligned (bytes): the same for a 4 GiB range that starts
 *	and ends at odd pages, [4 GiB + 4 KiB, 8 GiB + 4 KiB);
 *   attr_mem_4g_frag (bytes): the same range with one shared page, at an
 *	odd offset, in every 2 MiB (2048 holes), against the empty store;
 *   gmem_create_close (us): KVM_CREATE_GUEST_MEMFD of 2 MiB and close(),
 *	averaged over a batch of 1000 pairs;
 *   falloc_alloc_1g, falloc_punch_1g (GiB/s): fallocate() allocating a
 *	fresh 1 GiB guest_memfd, then punching it whole;
 *   fault_private_256m (pages/s): a guest writing one byte to each 4 KiB
 *	page of a 256 MiB PRIVATE guest_memfd memslot, from the first KVM_RUN
 *	to its done ucall;
 *   convert_4k, convert_2m (us): one conversion of a guest-driven round trip
 *	private -> shared -> private of the start of a 2 MiB PRIVATE
 *	guest_memfd memslot (KVM_HC_MAP_GPA_RANGE exits served by
 *	KVM_SET_MEMORY_ATTRIBUTES, plus PUNCH_HOLE when going shared), the
 *	guest writing the first byte of the range after each conversion;
 *   attr_lookup_slot_16g (us): KVM_SET_USER_MEMORY_REGION2 creating a
 *	16 GiB memslot (no guest_memfd) over a PRIVATE range, where x86 KVM
 *	computes the huge page "mixed" flags from the attributes of every
 *	2 MiB and 1 GiB block;
 *   mmap_touch_256m_gmem, mmap_touch_256m_anon (pages/s): the host writing
 *	one byte to each 4 KiB page of a fresh 256 MiB shared mapping of a
 *	GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED guest_memfd (6.18
 *	uAPI), and of private anonymous memory;
 *   fault_shared_256m_gmem, fault_shared_256m_anon (pages/s): as
 *	fault_private_256m, on a DEFAULT VM whose 256 MiB memslot is
 *	guest_memfd-only (an MMAP | INIT_SHARED guest_memfd, userspace_addr 0),
 *	and anonymous memory.
 *
 * The *_gmem metrics need the 6.18 flags (KVM_CAP_GUEST_MEMFD_FLAGS); a
 * kernel without them (the C guest_memfd) skips them with a "#" line.
 *
 * -m takes a comma-separated list of metric names or shell patterns
 * ("attr_set_*") and measures only those; -q is a quick smoke run: one run,
 * without the 1g and 16g attribute sizes, and the other metrics with
 * smaller sizes and batches (under the same names).  A metric that cannot
 * be measured (no /proc/slabinfo, say) fails the run rather than read 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <linux/kvm_para.h>
#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

/* Where the measured ranges start: above where guest RAM would be. */
#define BENCH_GPA	SZ_4G
#define MEM_SIZE	SZ_4G
/* The memslot of the metrics that need one, at BENCH_GPA. */
#define BENCH_SLOT	10

struct attr_size {
	const char *name;
	uint64_t size;
	bool quick;
};

static const struct attr_size attr_sizes[] = {
	{ "4k", SZ_4K, true },
	{ "2m", SZ_2M, true },
	{ "1g", SZ_1G, false },
	{ "16g", 16ull * SZ_1G, false },
};

/* The metrics other than attr_set_* and attr_clear_*, for -m checks. */
static const char * const other_metrics[] = {
	"attr_set_4k_warm",
	"attr_clear_4k_warm",
	"attr_mem_4g",
	"attr_mem_4g_unaligned",
	"attr_mem_4g_frag",
	"gmem_create_close",
	"falloc_alloc_1g",
	"falloc_punch_1g",
	"fault_private_256m",
	"convert_4k",
	"convert_2m",
	"attr_lookup_slot_16g",
	"mmap_touch_256m_gmem",
	"mmap_touch_256m_anon",
	"fault_shared_256m_gmem",
	"fault_shared_256m_anon",
};

static const struct vm_shape protected_shape = {
	.mode = VM_MODE_DEFAULT,
	.type = KVM_X86_SW_PROTECTED_VM,
};

static int nr_runs = 5;
static bool quick;
static char *filter;

static bool wanted(const char *name)
{
	char *list, *item, *save;
	bool match = false;

	if (!filter)
		return true;
	list = strdup(filter);
	TEST_ASSERT(list, "strdup() failed");
	for (item = strtok_r(list, ",", &save); item && !match;
	     item = strtok_r(NULL, ",", &save))
		match = !fnmatch(item, name, 0);
	free(list);
	return match;
}

/* Set @attributes on [@gpa, +@size); returns the time taken in us. */
static double set_range_attrs_us(struct kvm_vm *vm, uint64_t gpa, uint64_t size,
				 uint64_t attributes)
{
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = size,
		.attributes = attributes,
	};
	double t0, t1;
	int ret;

	t0 = gmem_now_us();
	ret = __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr);
	t1 = gmem_now_us();
	TEST_ASSERT(!ret, "KVM_SET_MEMORY_ATTRIBUTES(0x%llx, 0x%lx, 0x%lx) failed: %s",
		    attr.address, size, attributes, strerror(errno));
	return t1 - t0;
}

/* Set @attributes on [BENCH_GPA, +@size); returns the time taken in us. */
static double set_attrs_us(struct kvm_vm *vm, uint64_t size, uint64_t attributes)
{
	return set_range_attrs_us(vm, BENCH_GPA, size, attributes);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Print the summary of @n samples: a "#" line and the "metric" line. */
static void report(const char *name, const char *unit, double *v, int n)
{
	double median;
	int prec;

	qsort(v, n, sizeof(*v), cmp_double);
	median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	/* Throughputs in GiB/s are small numbers: give them more digits. */
	prec = strcmp(unit, "GiB/s") ? 1 : 3;
	printf("# %s: median %.*f %s (min %.*f, max %.*f, %d runs)\n",
	       name, prec, median, unit, prec, v[0], prec, v[n - 1], n);
	printf("metric %s %s %.*f %.*f %.*f\n", name, unit, prec, median,
	       prec, v[0], prec, v[n - 1]);
	fflush(stdout);
}

static double *alloc_samples(void)
{
	double *v = calloc(nr_runs, sizeof(*v));

	TEST_ASSERT(v, "calloc() failed");
	return v;
}

static struct kvm_vm *protected_vm(void)
{
	return vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
}

static void bench_attr_size(const struct attr_size *s)
{
	char set_name[32], clear_name[32];
	double *set_us, *clear_us;
	bool want_set, want_clear;
	struct kvm_vm *vm;
	int i;

	snprintf(set_name, sizeof(set_name), "attr_set_%s", s->name);
	snprintf(clear_name, sizeof(clear_name), "attr_clear_%s", s->name);
	want_set = wanted(set_name);
	want_clear = wanted(clear_name);
	if (!want_set && !want_clear)
		return;
	if (quick && !s->quick) {
		printf("# attr_{set,clear}_%s: skipped in quick mode\n", s->name);
		return;
	}

	set_us = alloc_samples();
	clear_us = alloc_samples();

	for (i = 0; i < nr_runs; i++) {
		vm = protected_vm();
		set_us[i] = set_attrs_us(vm, s->size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
		clear_us[i] = set_attrs_us(vm, s->size, 0);
		kvm_vm_free(vm);
		printf("# run %d: set %s %.1f us, clear %.1f us\n", i + 1,
		       s->name, set_us[i], clear_us[i]);
	}
	if (want_set)
		report(set_name, "us", set_us, nr_runs);
	if (want_clear)
		report(clear_name, "us", clear_us, nr_runs);
	free(set_us);
	free(clear_us);
}

/* attr_set_4k_warm, attr_clear_4k_warm: see the top of the file. */
static void bench_attr_warm(void)
{
	int nr = quick ? 40 : 400, i, j;
	double *set_us, *clear_us, *s, *c;
	bool want_set = wanted("attr_set_4k_warm"), want_clear = wanted("attr_clear_4k_warm");
	struct kvm_vm *vm;

	if (!want_set && !want_clear)
		return;
	set_us = alloc_samples();
	clear_us = alloc_samples();
	s = calloc(nr, sizeof(*s));
	c = calloc(nr, sizeof(*c));
	TEST_ASSERT(s && c, "calloc() failed");
	for (i = 0; i < nr_runs; i++) {
		vm = protected_vm();
		/* One change first: the fresh VM's cost is attr_set_4k's. */
		set_range_attrs_us(vm, BENCH_GPA + (uint64_t)nr * SZ_2M, SZ_4K,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE);
		for (j = 0; j < nr; j++) {
			s[j] = set_range_attrs_us(vm, BENCH_GPA + (uint64_t)j * SZ_2M, SZ_4K,
						  KVM_MEMORY_ATTRIBUTE_PRIVATE);
			c[j] = set_range_attrs_us(vm, BENCH_GPA + (uint64_t)j * SZ_2M, SZ_4K, 0);
		}
		kvm_vm_free(vm);
		qsort(s, nr, sizeof(*s), cmp_double);
		qsort(c, nr, sizeof(*c), cmp_double);
		set_us[i] = s[nr / 2];
		clear_us[i] = c[nr / 2];
		printf("# run %d: median of %d warm 4k sets %.2f us, clears %.2f us\n", i + 1, nr,
		       set_us[i], clear_us[i]);
	}
	if (want_set)
		report("attr_set_4k_warm", "us", set_us, nr_runs);
	if (want_clear)
		report("attr_clear_4k_warm", "us", clear_us, nr_runs);
	free(s);
	free(c);
	free(set_us);
	free(clear_us);
}

/* The slab cache of xarray nodes; never merged, it has a constructor. */
#define XA_NODE_CACHE	"radix_tree_node"

/*
 * Flush the cache's per-CPU slabs to the node lists: /proc/slabinfo counts
 * the free objects of a per-CPU slab as active, those of the node lists
 * not.
 */
static void flush_xa_node_cache(void)
{
	const char *path = "/sys/kernel/slab/" XA_NODE_CACHE "/shrink";
	int fd = open(path, O_WRONLY);

	TEST_ASSERT(fd >= 0, "Cannot open %s: %s", path, strerror(errno));
	TEST_ASSERT(write(fd, "1", 1) == 1, "Cannot write %s: %s", path,
		    strerror(errno));
	close(fd);
}

/* The xarray nodes in use, and their size in bytes in @objsize. */
static long read_xa_nodes(long *objsize)
{
	long active = -1, objs, num, size;
	char line[256], name[64];
	FILE *f;

	flush_xa_node_cache();
	f = fopen("/proc/slabinfo", "r");
	TEST_ASSERT(f, "Cannot open /proc/slabinfo (CONFIG_SLUB_DEBUG=y?): %s",
		    strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %ld %ld %ld", name, &objs, &num, &size) == 4 &&
		    !strcmp(name, XA_NODE_CACHE) && objs >= 0 && size > 0) {
			active = objs;
			*objsize = size;
			break;
		}
	}
	fclose(f);
	TEST_ASSERT(active >= 0, "No %s line in /proc/slabinfo", XA_NODE_CACHE);
	return active;
}

/*
 * The xarray nodes in use once their number has settled, i.e. read the
 * same three times in a row 50 ms apart (the nodes of an earlier run are
 * freed after an RCU grace period), or after 2 s.
 */
static long stable_xa_nodes(long *objsize)
{
	long n = -1, prev = -1;
	int same = 0, i;

	for (i = 0; i < 40 && same < 2; i++) {
		if (i)
			usleep(50 * 1000);
		n = read_xa_nodes(objsize);
		same = n == prev ? same + 1 : 0;
		prev = n;
	}
	return n;
}

/* The bytes of xarray nodes since @before nodes; 0 if fewer. */
static double xa_growth(long before, const char *what, uint64_t gpa,
		       uint64_t size, int run)
{
	long objsize, after = stable_xa_nodes(&objsize);

	printf("# run %d: %s [0x%lx, 0x%lx) private: %ld -> %ld %s objects of %ld bytes\n",
	       run, what, gpa, gpa + size, before, after, XA_NODE_CACHE,
	       objsize);
	return after > before ? (double)(after - before) * objsize : 0;
}

/*
 * Make a range of MEM_SIZE PRIVATE and count the xarray nodes it takes:
 * aligned at BENCH_GPA, unaligned one page above, and the latter with a
 * hole in each 2 MiB.  Quick mode uses 64 MiB.
 */
static void bench_attr_mem(void)
{
	const uint64_t size = quick ? SZ_64M : MEM_SIZE;
	const uint64_t unaligned = BENCH_GPA + PAGE_SIZE;
	/* The hole of each 2 MiB block: page 257 of it. */
	const uint64_t hole = 257 * PAGE_SIZE;
	bool want_aligned, want_unaligned, want_frag;
	double *aligned_b, *unaligned_b, *frag_b;
	long before, objsize;
	struct kvm_vm *vm;
	uint64_t gpa;
	int i;

	want_aligned = wanted("attr_mem_4g");
	want_unaligned = wanted("attr_mem_4g_unaligned");
	want_frag = wanted("attr_mem_4g_frag");
	if (!want_aligned && !want_unaligned && !want_frag)
		return;
	if (quick)
		printf("# attr_mem_4g*: quick mode, on 64 MiB instead of 4 GiB\n");

	aligned_b = alloc_samples();
	unaligned_b = alloc_samples();
	frag_b = alloc_samples();
	for (i = 0; i < nr_runs; i++) {
		if (want_aligned) {
			vm = protected_vm();
			before = stable_xa_nodes(&objsize);
			set_range_attrs_us(vm, BENCH_GPA, size,
					   KVM_MEMORY_ATTRIBUTE_PRIVATE);
			aligned_b[i] = xa_growth(before, "aligned", BENCH_GPA,
						 size, i + 1);
			set_range_attrs_us(vm, BENCH_GPA, size, 0);
			kvm_vm_free(vm);
		}
		if (!want_unaligned && !want_frag)
			continue;
		vm = protected_vm();
		before = stable_xa_nodes(&objsize);
		set_range_attrs_us(vm, unaligned, size,
				   KVM_MEMORY_ATTRIBUTE_PRIVATE);
		unaligned_b[i] = xa_growth(before, "unaligned", unaligned,
					   size, i + 1);
		if (want_frag) {
			for (gpa = BENCH_GPA; gpa < BENCH_GPA + size; gpa += SZ_2M)
				set_range_attrs_us(vm, gpa + hole, PAGE_SIZE, 0);
			frag_b[i] = xa_growth(before, "unaligned, a hole per 2 MiB,",
					      unaligned, size, i + 1);
		}
		set_range_attrs_us(vm, unaligned, size, 0);
		kvm_vm_free(vm);
	}
	if (want_aligned)
		report("attr_mem_4g", "bytes", aligned_b, nr_runs);
	if (want_unaligned)
		report("attr_mem_4g_unaligned", "bytes", unaligned_b, nr_runs);
	if (want_frag)
		report("attr_mem_4g_frag", "bytes", frag_b, nr_runs);
	free(aligned_b);
	free(unaligned_b);
	free(frag_b);
}

static void bench_gmem_create_close(void)
{
	const int batch = quick ? 100 : 1000;
	struct kvm_vm *vm;
	double *us, t0;
	int i, j, fd;

	if (!wanted("gmem_create_close"))
		return;

	us = alloc_samples();
	vm = protected_vm();
	for (i = 0; i < nr_runs; i++) {
		t0 = gmem_now_us();
		for (j = 0; j < batch; j++) {
			fd = __vm_create_guest_memfd(vm, SZ_2M, 0);
			TEST_ASSERT(fd >= 0,
				    KVM_IOCTL_ERROR(KVM_CREATE_GUEST_MEMFD, fd));
			close(fd);
		}
		us[i] = (gmem_now_us() - t0) / batch;
		printf("# run %d: %d guest_memfd create+close, %.1f us each\n",
		       i + 1, batch, us[i]);
	}
	kvm_vm_free(vm);
	report("gmem_create_close", "us", us, nr_runs);
	free(us);
}

static void bench_falloc(void)
{
	const uint64_t size = quick ? SZ_64M : SZ_1G;
	const double gib = (double)size / SZ_1G;
	bool want_alloc, want_punch;
	double *alloc, *punch;
	double t0, t1, t2;
	struct kvm_vm *vm;
	int i, fd, ret;

	want_alloc = wanted("falloc_alloc_1g");
	want_punch = wanted("falloc_punch_1g");
	if (!want_alloc && !want_punch)
		return;
	if (quick)
		printf("# falloc_*_1g: quick mode, on 64 MiB instead of 1 GiB\n");

	alloc = alloc_samples();
	punch = alloc_samples();
	vm = protected_vm();
	for (i = 0; i < nr_runs; i++) {
		fd = vm_create_guest_memfd(vm, size, 0);
		t0 = gmem_now_us();
		ret = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size);
		t1 = gmem_now_us();
		TEST_ASSERT(!ret, "fallocate(0x%lx) failed: %s", size,
			    strerror(errno));
		ret = fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
				0, size);
		t2 = gmem_now_us();
		TEST_ASSERT(!ret, "fallocate(PUNCH_HOLE, 0x%lx) failed: %s",
			    size, strerror(errno));
		close(fd);
		alloc[i] = gib / ((t1 - t0) / 1e6);
		punch[i] = gib / ((t2 - t1) / 1e6);
		printf("# run %d: allocate %.1f ms, punch %.1f ms\n", i + 1,
		       (t1 - t0) / 1e3, (t2 - t1) / 1e3);
	}
	kvm_vm_free(vm);
	if (want_alloc)
		report("falloc_alloc_1g", "GiB/s", alloc, nr_runs);
	if (want_punch)
		report("falloc_punch_1g", "GiB/s", punch, nr_runs);
	free(alloc);
	free(punch);
}

/*
 * A SW_PROTECTED VM with one vCPU running @guest_code and a guest_memfd
 * memslot of @size at BENCH_GPA, identity mapped with 2 MiB guest pages
 * and all PRIVATE.
 */
static struct kvm_vm *gmem_vm(struct kvm_vcpu **vcpu, void *guest_code,
			      uint64_t size)
{
	struct kvm_vm *vm;

	/* A few pages of slot 0 for the guest page tables of the memslot. */
	vm = __vm_create_shape_with_one_vcpu(protected_shape, vcpu, 16,
					     guest_code);
	vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, BENCH_GPA, BENCH_SLOT,
		   size / vm->page_size, KVM_MEM_GUEST_MEMFD, -1, 0);
	virt_map_level(vm, BENCH_GPA, BENCH_GPA, size, PG_LEVEL_2M);
	vm_mem_set_private(vm, BENCH_GPA, size);
	return vm;
}

/* Where the host's time serving KVM_HC_MAP_GPA_RANGE went, in us. */
static struct {
	double to_private, to_shared, punch;
} hc_us;

/* Serve a KVM_HC_MAP_GPA_RANGE exit like a VMM of a protected guest. */
static void handle_map_gpa_range(struct kvm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint64_t gpa = run->hypercall.args[0];
	uint64_t size = run->hypercall.args[1] * PAGE_SIZE;
	bool private = run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;
	double t0, t1, t2;

	TEST_ASSERT(run->hypercall.nr == KVM_HC_MAP_GPA_RANGE,
		    "Wanted MAP_GPA_RANGE (%u), got '%llu'",
		    KVM_HC_MAP_GPA_RANGE, run->hypercall.nr);
	t0 = gmem_now_us();
	vm_set_memory_attributes(vcpu->vm, gpa, size,
				 private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
	t1 = gmem_now_us();
	if (private) {
		hc_us.to_private += t1 - t0;
	} else {
		hc_us.to_shared += t1 - t0;
		vm_guest_mem_punch_hole(vcpu->vm, gpa, size);
		t2 = gmem_now_us();
		hc_us.punch += t2 - t1;
	}
	run->hypercall.ret = 0;
}

/*
 * Run @vcpu until its next UCALL_SYNC or UCALL_DONE, serving the
 * hypercall exits on the way; returns the ucall.
 */
static uint64_t run_to_ucall(struct kvm_vcpu *vcpu)
{
	return gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_SYNC) | BIT(UCALL_DONE),
				 handle_map_gpa_range);
}

static void guest_fault(uint64_t gpa, uint64_t size)
{
	uint64_t off;

	for (off = 0; off < size; off += PAGE_SIZE)
		WRITE_ONCE(*(uint8_t *)(gpa + off), 1);
	GUEST_DONE();
}

/*
 * Run @vcpu, whose guest (guest_fault) writes each page of [BENCH_GPA,
 * +@size) once, to its done ucall; print run @run and return its rate in
 * pages per second.  @what says which memory the pages are.
 */
static double fault_in_rate(struct kvm_vcpu *vcpu, uint64_t size, int run,
			    const char *what)
{
	const uint64_t pages = size / PAGE_SIZE;
	double t0, t1;
	uint64_t cmd;

	vcpu_args_set(vcpu, 2, BENCH_GPA, size);
	t0 = gmem_now_us();
	cmd = run_to_ucall(vcpu);
	t1 = gmem_now_us();
	TEST_ASSERT(cmd == UCALL_DONE, "Unexpected ucall %lu", cmd);
	printf("# run %d: %lu %s pages faulted in %.1f ms\n", run + 1, pages, what,
	       (t1 - t0) / 1e3);
	return pages / ((t1 - t0) / 1e6);
}

static void bench_fault(void)
{
	const uint64_t size = quick ? SZ_16M : SZ_256M;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	double *rate;
	int i;

	if (!wanted("fault_private_256m"))
		return;
	if (quick)
		printf("# fault_private_256m: quick mode, on 16 MiB instead of 256 MiB\n");

	rate = alloc_samples();
	for (i = 0; i < nr_runs; i++) {
		vm = gmem_vm(&vcpu, guest_fault, size);
		rate[i] = fault_in_rate(vcpu, size, i, "private");
		kvm_vm_free(vm);
	}
	report("fault_private_256m", "pages/s", rate, nr_runs);
	free(rate);
}

/*
 * Convert [gpa, gpa + size) to shared and back to private @n times,
 * writing its first byte after each conversion.  The range starts private;
 * the UCALL_SYNC marks the start of the measured loop.
 */
static void guest_convert(uint64_t gpa, uint64_t size, uint64_t n)
{
	uint64_t i;

	WRITE_ONCE(*(uint8_t *)gpa, 1);
	GUEST_SYNC(0);
	for (i = 0; i < n; i++) {
		kvm_hypercall_map_gpa_range(gpa, size,
					    KVM_MAP_GPA_RANGE_DECRYPTED);
		WRITE_ONCE(*(uint8_t *)gpa, 2);
		kvm_hypercall_map_gpa_range(gpa, size,
					    KVM_MAP_GPA_RANGE_ENCRYPTED);
		WRITE_ONCE(*(uint8_t *)gpa, 3);
	}
	GUEST_DONE();
}

static void bench_convert(const char *name, uint64_t size, uint64_t n)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	double *us, t0, t1;
	uint64_t cmd;
	int i;

	if (!wanted(name))
		return;

	us = alloc_samples();
	for (i = 0; i < nr_runs; i++) {
		vm = gmem_vm(&vcpu, guest_convert, SZ_2M);
		vm_enable_cap(vm, KVM_CAP_EXIT_HYPERCALL,
			      BIT(KVM_HC_MAP_GPA_RANGE));
		vcpu_args_set(vcpu, 3, BENCH_GPA, size, n);
		cmd = run_to_ucall(vcpu);
		TEST_ASSERT(cmd == UCALL_SYNC, "Unexpected ucall %lu", cmd);
		memset(&hc_us, 0, sizeof(hc_us));
		t0 = gmem_now_us();
		cmd = run_to_ucall(vcpu);
		t1 = gmem_now_us();
		TEST_ASSERT(cmd == UCALL_DONE, "Unexpected ucall %lu", cmd);
		kvm_vm_free(vm);
		us[i] = (t1 - t0) / (2 * n);
		printf("# run %d: %lu round trips in %.1f ms, %.1f us per conversion\n",
		       i + 1, n, (t1 - t0) / 1e3, us[i]);
		printf("# run %d: per round trip, attributes to private %.1f us, to shared %.1f us, punch %.1f us\n",
		       i + 1, hc_us.to_private / n, hc_us.to_shared / n,
		       hc_us.punch / n);
	}
	report(name, "us", us, nr_runs);
	free(us);
}

/*
 * Memslot creation over a PRIVATE range: the attributes of the range are
 * set once (slow on a per-page store), the memslot is then created (timed)
 * and deleted in each run.
 */
static void bench_attr_lookup(void)
{
	const uint64_t size = quick ? SZ_64M : 16ull * SZ_1G;
	double *us, t0, t1, set_us;
	struct kvm_vm *vm;
	void *map, *hva;
	int i;

	if (!wanted("attr_lookup_slot_16g"))
		return;
	if (quick)
		printf("# attr_lookup_slot_16g: quick mode, on 64 MiB instead of 16 GiB\n");

	/* Aligned like the GPA, so that huge pages are not disallowed. */
	map = mmap(NULL, size + SZ_1G, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	TEST_ASSERT(map != MAP_FAILED, "mmap() failed: %s", strerror(errno));
	hva = align_ptr_up(map, SZ_1G);

	us = alloc_samples();
	vm = protected_vm();
	set_us = set_attrs_us(vm, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	printf("# attr_lookup_slot_16g: PRIVATE set on [0x%lx, 0x%lx) in %.1f ms\n",
	       (uint64_t)BENCH_GPA, (uint64_t)BENCH_GPA + size, set_us / 1e3);
	for (i = 0; i < nr_runs; i++) {
		t0 = gmem_now_us();
		vm_set_user_memory_region2(vm, BENCH_SLOT, 0, BENCH_GPA, size,
					   hva, 0, 0);
		t1 = gmem_now_us();
		vm_set_user_memory_region2(vm, BENCH_SLOT, 0, BENCH_GPA, 0,
					   NULL, 0, 0);
		us[i] = t1 - t0;
		printf("# run %d: memslot created in %.1f us\n", i + 1, us[i]);
	}
	kvm_vm_free(vm);
	munmap(map, size + SZ_1G);
	report("attr_lookup_slot_16g", "us", us, nr_runs);
	free(us);
}

/* Names of all metrics, to catch -m patterns that match none. */
static bool filter_matches_something(const char *item)
{
	char name[32];
	int i;

	for (i = 0; i < ARRAY_SIZE(other_metrics); i++)
		if (!fnmatch(item, other_metrics[i], 0))
			return true;
	for (i = 0; i < ARRAY_SIZE(attr_sizes); i++) {
		snprintf(name, sizeof(name), "attr_set_%s", attr_sizes[i].name);
		if (!fnmatch(item, name, 0))
			return true;
		snprintf(name, sizeof(name), "attr_clear_%s", attr_sizes[i].name);
		if (!fnmatch(item, name, 0))
			return true;
	}
	return false;
}

static void check_filter(void)
{
	char *list, *item, *save;

	list = strdup(filter);
	TEST_ASSERT(list, "strdup() failed");
	for (item = strtok_r(list, ",", &save); item;
	     item = strtok_r(NULL, ",", &save))
		TEST_ASSERT(filter_matches_something(item),
			    "-m: '%s' matches no metric", item);
	free(list);
}

/* Whether guest_memfds can be mapped and start out shared (6.18 uAPI). */
static bool have_shared_gmem(const char *name)
{
	const uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

	if ((kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & flags) == flags)
		return true;
	printf("# %s: skipped: no GUEST_MEMFD_FLAG_MMAP | INIT_SHARED on this kernel\n", name);
	return false;
}

/*
 * Whether to measure the shared-memory metric @name (a guest_memfd one, @gmem,
 * needs the 6.18 flags); in quick mode, says that it runs on less.
 */
static bool measure_shared(const char *name, bool gmem)
{
	if (!wanted(name) || (gmem && !have_shared_gmem(name)))
		return false;
	if (quick)
		printf("# %s: quick mode, on 16 MiB instead of 256 MiB\n", name);
	return true;
}

/*
 * The host's first touch of a 256 MiB shared mapping: of a guest_memfd
 * (@gmem) or of private anonymous memory.
 */
static void bench_mmap_touch(bool gmem)
{
	const char *name = gmem ? "mmap_touch_256m_gmem" : "mmap_touch_256m_anon";
	const uint64_t size = quick ? SZ_16M : SZ_256M;
	const uint64_t pages = size / PAGE_SIZE;
	struct kvm_vm *vm;
	double *rate, t0, t1;
	uint64_t off;
	uint8_t *p;
	int i, fd;

	if (!measure_shared(name, gmem))
		return;

	rate = alloc_samples();
	for (i = 0; i < nr_runs; i++) {
		vm = vm_create_barebones();
		fd = -1;
		if (gmem) {
			fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP |
							     GUEST_MEMFD_FLAG_INIT_SHARED);
			p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		} else {
			p = mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		}
		TEST_ASSERT(p != MAP_FAILED, "mmap() for %s", name);
		t0 = gmem_now_us();
		for (off = 0; off < size; off += PAGE_SIZE)
			WRITE_ONCE(p[off], 1);
		t1 = gmem_now_us();
		TEST_ASSERT(!munmap(p, size), "munmap");
		if (fd >= 0)
			close(fd);
		kvm_vm_free(vm);
		rate[i] = pages / ((t1 - t0) / 1e6);
		printf("# run %d: %lu pages touched in %.1f ms\n", i + 1, pages, (t1 - t0) / 1e3);
	}
	report(name, "pages/s", rate, nr_runs);
	free(rate);
}

/*
 * A guest faulting in 256 MiB of shared memory of a DEFAULT VM: a
 * guest_memfd-only memslot (@gmem; userspace_addr 0) or anonymous memory.
 */
static void bench_fault_shared(bool gmem)
{
	const char *name = gmem ? "fault_shared_256m_gmem" : "fault_shared_256m_anon";
	const uint64_t size = quick ? SZ_16M : SZ_256M;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	double *rate;
	int i, fd;

	if (!measure_shared(name, gmem))
		return;

	rate = alloc_samples();
	for (i = 0; i < nr_runs; i++) {
		vm = __vm_create_shape_with_one_vcpu(VM_SHAPE_DEFAULT, &vcpu, 16, guest_fault);
		fd = -1;
		if (gmem) {
			fd = vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_MMAP |
							     GUEST_MEMFD_FLAG_INIT_SHARED);
			vm_set_user_memory_region2(vm, BENCH_SLOT, KVM_MEM_GUEST_MEMFD, BENCH_GPA,
						   size, NULL, fd, 0);
		} else {
			vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, BENCH_GPA, BENCH_SLOT,
				   size / vm->page_size, 0, -1, 0);
		}
		virt_map_level(vm, BENCH_GPA, BENCH_GPA, size, PG_LEVEL_2M);
		rate[i] = fault_in_rate(vcpu, size, i, "shared");
		if (fd >= 0)
			close(fd);
		kvm_vm_free(vm);
	}
	report(name, "pages/s", rate, nr_runs);
	free(rate);
}

static void print_usage(const char *name)
{
	printf("usage: %s [-r RUNS] [-q] [-m METRICS] [-h]\n"
	       " -r: runs per metric (default: 5)\n"
	       " -q: quick smoke run: 1 run, small sizes, no attr_*_{1g,16g}\n"
	       " -m: comma-separated metric names or patterns, e.g. 'attr_set_*,attr_mem_4g'\n"
	       "metrics: attr_set_{4k,2m,1g,16g} attr_clear_{4k,2m,1g,16g}\n"
	       "         attr_mem_4g attr_mem_4g_unaligned attr_mem_4g_frag\n"
	       "         gmem_create_close falloc_alloc_1g falloc_punch_1g\n"
	       "         fault_private_256m convert_4k convert_2m attr_lookup_slot_16g\n"
	       "         mmap_touch_256m_{gmem,anon} fault_shared_256m_{gmem,anon}\n",
	       name);
}

int main(int argc, char *argv[])
{
	struct utsname uts;
	int opt, i;

	while ((opt = getopt(argc, argv, "hm:qr:")) != -1) {
		switch (opt) {
		case 'm':
			filter = optarg;
			break;
		case 'q':
			quick = true;
			break;
		case 'r':
			nr_runs = atoi_positive("Number of runs", optarg);
			break;
		default:
			gmem_usage_exit(opt, argv[0], print_usage);
		}
	}
	if (quick)
		nr_runs = 1;
	if (filter)
		check_filter();

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));

	setvbuf(stdout, NULL, _IOLBF, 0);
	uname(&uts);
	printf("# guest_memfd_bench: %s %s, %d run(s)%s%s%s\n", uts.release,
	       uts.version, nr_runs, quick ? ", quick" : "",
	       filter ? ", metrics " : "", filter ? filter : "");

	for (i = 0; i < ARRAY_SIZE(attr_sizes); i++)
		bench_attr_size(&attr_sizes[i]);
	bench_attr_warm();
	bench_attr_mem();
	bench_gmem_create_close();
	bench_falloc();
	bench_fault();
	bench_convert("convert_4k", PAGE_SIZE, quick ? 20 : 500);
	bench_convert("convert_2m", SZ_2M, quick ? 5 : 100);
	bench_attr_lookup();
	bench_mmap_touch(true);
	bench_mmap_touch(false);
	bench_fault_shared(true);
	bench_fault_shared(false);

	return 0;
}
