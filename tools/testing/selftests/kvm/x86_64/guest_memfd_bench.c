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
 *   attr_mem_4g (bytes): growth of the kernel's slab memory (Slab: in
 *	/proc/meminfo) when 4 GiB of such a VM are made PRIVATE.
 *
 * -m takes a comma-separated list of metric names or shell patterns
 * ("attr_set_*") and measures only those; -q is a quick smoke run: one run,
 * without the 1g and 16g sizes.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

/* Where the measured ranges start: above where guest RAM would be. */
#define BENCH_GPA	SZ_4G
#define MEM_SIZE	SZ_4G

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

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Set @attributes on [BENCH_GPA, +@size); returns the time taken in us. */
static double set_attrs_us(struct kvm_vm *vm, uint64_t size, uint64_t attributes)
{
	struct kvm_memory_attributes attr = {
		.address = BENCH_GPA,
		.size = size,
		.attributes = attributes,
	};
	double t0, t1;
	int ret;

	t0 = now_us();
	ret = __vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &attr);
	t1 = now_us();
	TEST_ASSERT(!ret, "KVM_SET_MEMORY_ATTRIBUTES(0x%llx, 0x%lx, 0x%lx) failed: %s",
		    attr.address, size, attributes, strerror(errno));
	return t1 - t0;
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

	qsort(v, n, sizeof(*v), cmp_double);
	median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("# %s: median %.1f %s (min %.1f, max %.1f, %d runs)\n",
	       name, median, unit, v[0], v[n - 1], n);
	printf("metric %s %s %.1f %.1f %.1f\n", name, unit, median, v[0],
	       v[n - 1]);
	fflush(stdout);
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
	if ((quick && !s->quick) || (!want_set && !want_clear))
		return;

	set_us = calloc(nr_runs, sizeof(*set_us));
	clear_us = calloc(nr_runs, sizeof(*clear_us));
	TEST_ASSERT(set_us && clear_us, "calloc() failed");

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

/* Fold the per-CPU vmstat deltas into the global counters, if allowed. */
static void refresh_vmstat(void)
{
	FILE *f = fopen("/proc/sys/vm/stat_refresh", "w");

	if (!f)
		return;
	fputs("1\n", f);
	fclose(f);
}

static long read_slab_kb(void)
{
	char line[128];
	long kb = -1;
	FILE *f;

	refresh_vmstat();
	f = fopen("/proc/meminfo", "r");
	TEST_ASSERT(f, "Cannot open /proc/meminfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Slab: %ld kB", &kb) == 1)
			break;
	fclose(f);
	TEST_ASSERT(kb >= 0, "No Slab: line in /proc/meminfo");
	return kb;
}

/*
 * Slab: once it has settled, i.e. read the same three times in a row 50 ms
 * apart (RCU-freed objects of an earlier run may still be going away), or
 * after 2 s.
 */
static long stable_slab_kb(void)
{
	long kb = -1, prev = -1;
	int same = 0, i;

	sync();
	for (i = 0; i < 40 && same < 2; i++) {
		if (i)
			usleep(50 * 1000);
		kb = read_slab_kb();
		same = kb == prev ? same + 1 : 0;
		prev = kb;
	}
	return kb;
}

static void bench_attr_mem(void)
{
	long before, after;
	struct kvm_vm *vm;
	double *bytes;
	int i;

	if (!wanted("attr_mem_4g"))
		return;

	bytes = calloc(nr_runs, sizeof(*bytes));
	TEST_ASSERT(bytes, "calloc() failed");
	for (i = 0; i < nr_runs; i++) {
		vm = protected_vm();
		before = stable_slab_kb();
		set_attrs_us(vm, MEM_SIZE, KVM_MEMORY_ATTRIBUTE_PRIVATE);
		after = stable_slab_kb();
		set_attrs_us(vm, MEM_SIZE, 0);
		kvm_vm_free(vm);
		bytes[i] = after > before ? (after - before) * 1024.0 : 0;
		printf("# run %d: Slab %ld kB -> %ld kB with 4 GiB private\n",
		       i + 1, before, after);
	}
	report("attr_mem_4g", "bytes", bytes, nr_runs);
	free(bytes);
}

/* Names of all metrics, to catch -m patterns that match none. */
static bool filter_matches_something(const char *item)
{
	char name[32];
	int i;

	if (!fnmatch(item, "attr_mem_4g", 0))
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

static void print_usage(const char *name)
{
	printf("usage: %s [-r RUNS] [-q] [-m METRICS] [-h]\n"
	       " -r: runs per metric (default: 5)\n"
	       " -q: quick smoke run: 1 run, no 1g and 16g sizes\n"
	       " -m: comma-separated metric names or patterns, e.g. 'attr_set_*,attr_mem_4g'\n"
	       "metrics: attr_set_{4k,2m,1g,16g} attr_clear_{4k,2m,1g,16g} attr_mem_4g\n",
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
		case 'h':
		default:
			print_usage(argv[0]);
			exit(opt == 'h' ? 0 : KSFT_FAIL);
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
	bench_attr_mem();

	return 0;
}
