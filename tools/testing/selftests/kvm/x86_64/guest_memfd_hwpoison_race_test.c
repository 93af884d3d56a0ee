// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_hwpoison_race_test
 *
 * Memory errors in guest_memfd pages racing the operations that change or
 * walk the memslots bound to the guest_memfd.  A poisoner thread injects
 * memory errors through debugfs hwpoison/corrupt-pfn, filtered to the
 * superblock that guest_memfd inodes live on (as guest_memfd_hwpoison_test
 * does), walking the PFNs of System RAM and counting the writes that hit a
 * guest_memfd page (EBUSY: the callback reported MF_DELAYED).
 *
 * -m punch: the poisoner against a thread that allocates and punches the
 *   whole of a large guest_memfd.  Memory-failure handling calls the
 *   guest_memfd with the folio locked; a punch holds the invalidate lock
 *   while it waits for the folio locks of the pages it truncates.  If the
 *   memory-error callback takes the invalidate lock (as the C guest_memfd of
 *   6.12 does), the two deadlock: both threads stop in D state, and so does
 *   this test (the watchdog reports it, then the test cannot exit).
 *
 * -m close: the poisoner against the last close() of a guest_memfd racing
 *   the deletion of its memslot, with a vCPU faulting the memory.  When the
 *   deletion finds the file already being released, it must still unbind
 *   under the locks memory errors exclude: a memory error that began an MMU
 *   invalidation on the slot and misses it at the end leaves the
 *   invalidation in progress forever, and vCPU faults on that range retry
 *   forever (checked at the end, on a fresh guest_memfd at the same GPA),
 *   or walks a freed memslot (KASAN on a debug kernel).  The close and the
 *   deletion are balanced to overlap as in guest_memfd_close_race_test,
 *   and the poisoner first finds a page of the new guest_memfd, then hits
 *   the pages that follow it during the race.  The window is narrow: a
 *   kernel with the bug fails within a minute only when its memory-error
 *   callback is slowed down between the begin and the end of its
 *   invalidation.
 *
 * Every poisoned page is lost to the test VM: -p bounds the hits of each
 * race.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <linux/falloc.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define DATA_SLOT		10
#define DATA_GPA		(1ull << 32)

/* -m close: the memslot the vCPU faults in and out. */
#define CLOSE_NPAGES		2048
#define CLOSE_SIZE		(CLOSE_NPAGES * PAGE_SIZE)
/* Hits the poisoner may make in one close iteration. */
#define HITS_PER_ITERATION	32
/* How long the poisoner may look for a page of the new guest_memfd. */
#define LOCATE_TIMEOUT_MS	2000

/* -m punch: a large file, so that its pages are dense in RAM. */
#define PUNCH_NPAGES		4096
#define PUNCH_SIZE		(PUNCH_NPAGES * PAGE_SIZE)

#define DEFAULT_SECONDS		10
#define DEFAULT_HITS		1024
/* No progress for this long is a deadlock. */
#define STALL_TIMEOUT_S		30

#define MAX_RAM_RANGES		64

static struct {
	uint64_t start, end;	/* PFNs, inclusive */
} ram[MAX_RAM_RANGES];
static int nr_ram;

/* The poisoner's state, shared with the racing threads. */
static struct {
	bool quit;
	bool armed;		/* inject only while set */
	uint64_t max_hits;	/* stop injecting at this many hits */
	uint64_t hits;		/* writes that hit a guest_memfd page */
	uint64_t again;		/* already poisoned, or gone meanwhile */
	uint64_t writes;
	uint64_t lowest_hit;	/* lowest PFN hit since the last rewind */
	bool rewind;		/* go back to just below lowest_hit */
	bool locate;		/* walk to the next hit, then disarm */
	int cur_range;
	uint64_t pfn;
} poisoner;

static struct kvm_vm *vm;
static void *data_hva;

static void read_ram_ranges(void)
{
	uint64_t start, end;
	char line[256];
	FILE *f;

	f = fopen("/proc/iomem", "r");
	TEST_ASSERT(f, "open(/proc/iomem) failed: %s", strerror(errno));
	while (fgets(line, sizeof(line), f) && nr_ram < MAX_RAM_RANGES) {
		if (line[0] == ' ' || !strstr(line, ": System RAM"))
			continue;
		TEST_ASSERT(sscanf(line, "%lx-%lx", &start, &end) == 2,
			    "cannot parse /proc/iomem line '%s'", line);
		TEST_ASSERT(end > start, "/proc/iomem shows no addresses (not root?)");
		ram[nr_ram].start = start >> PAGE_SHIFT;
		ram[nr_ram].end = end >> PAGE_SHIFT;
		nr_ram++;
	}
	fclose(f);
	TEST_ASSERT(nr_ram, "no System RAM in /proc/iomem");
	poisoner.pfn = ram[0].start;
}

/* The next PFN of System RAM, wrapping around. */
static void next_pfn(void)
{
	if (++poisoner.pfn <= ram[poisoner.cur_range].end)
		return;
	poisoner.cur_range = (poisoner.cur_range + 1) % nr_ram;
	poisoner.pfn = ram[poisoner.cur_range].start;
}

/*
 * Freed guest_memfd pages tend to come back to the next guest_memfd: start
 * again a little below the lowest page hit since the last rewind.
 */
static void rewind_pfn(void)
{
	uint64_t pfn = poisoner.lowest_hit;
	int i;

	poisoner.lowest_hit = UINT64_MAX;
	if (pfn == UINT64_MAX)
		return;
	pfn = pfn > 256 ? pfn - 256 : 0;
	for (i = 0; i < nr_ram; i++) {
		if (pfn <= ram[i].end) {
			poisoner.cur_range = i;
			poisoner.pfn = max(pfn, ram[i].start);
			return;
		}
	}
}

static void *poisoner_fn(void *arg)
{
	char buf[32];
	int fd, len;

	fd = open(CORRUPT_PFN, O_WRONLY);
	TEST_ASSERT(fd >= 0, "open(%s) failed: %s", CORRUPT_PFN, strerror(errno));

	while (!READ_ONCE(poisoner.quit)) {
		if (READ_ONCE(poisoner.rewind)) {
			rewind_pfn();
			WRITE_ONCE(poisoner.rewind, false);
		}
		if (!READ_ONCE(poisoner.armed) ||
		    READ_ONCE(poisoner.hits) >= READ_ONCE(poisoner.max_hits)) {
			sched_yield();
			continue;
		}
		len = snprintf(buf, sizeof(buf), "%lu\n", poisoner.pfn);
		__atomic_add_fetch(&poisoner.writes, 1, __ATOMIC_RELAXED);
		if (write(fd, buf, len) != len) {
			if (errno == EBUSY) {
				poisoner.lowest_hit = min(poisoner.lowest_hit,
							  poisoner.pfn);
				if (READ_ONCE(poisoner.locate)) {
					WRITE_ONCE(poisoner.armed, false);
					WRITE_ONCE(poisoner.locate, false);
				}
				__atomic_add_fetch(&poisoner.hits, 1, __ATOMIC_RELEASE);
			} else if (errno != ENXIO) {
				poisoner.again++;
			}
		}
		next_pfn();
	}
	close(fd);
	return NULL;
}

static void gmem_fallocate(int fd, int mode, uint64_t size)
{
	int r = fallocate(fd, mode, 0, size);

	TEST_ASSERT(!r, "fallocate(%s) failed: %s",
		    mode & FALLOC_FL_PUNCH_HOLE ? "PUNCH_HOLE" : "ALLOCATE",
		    strerror(errno));
}

static int set_slot(uint64_t size, int fd)
{
	return __vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
					    DATA_GPA, size, data_hva, fd, 0) ?
	       errno : 0;
}

/* Fails the test if none of @counters moved for STALL_TIMEOUT_S. */
struct watchdog {
	uint64_t *counters[2];
	uint64_t last[2];
	int64_t since;
	const char *what;
};

static void watchdog_check(struct watchdog *w)
{
	bool moved = false;
	int i;

	for (i = 0; i < 2; i++) {
		uint64_t v = __atomic_load_n(w->counters[i], __ATOMIC_ACQUIRE);

		moved |= v != w->last[i];
		w->last[i] = v;
	}
	if (moved) {
		w->since = gmem_now_ms();
		return;
	}
	if (gmem_now_ms() - w->since > STALL_TIMEOUT_S * 1000ll) {
		ksft_print_msg("%s: no progress in %d s: deadlocked (the test cannot exit now)\n",
			       w->what, STALL_TIMEOUT_S);
		ksft_test_result_fail("%s\n", w->what);
		ksft_exit_fail();
	}
}

/* -m punch */
static uint64_t punches;
static bool punch_stop;

static void *puncher_fn(void *arg)
{
	int fd = (int)(long)arg;

	while (!READ_ONCE(punch_stop)) {
		gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE, PUNCH_SIZE);
		gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			       PUNCH_SIZE);
		__atomic_add_fetch(&punches, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void race_punch(int seconds, uint64_t max_hits)
{
	struct watchdog w = { { &punches, &poisoner.writes }, { 0 }, 0,
			      "memory errors vs. punch hole" };
	uint64_t hits0 = poisoner.hits;
	int64_t end;
	pthread_t t;
	int fd;

	data_hva = mmap(NULL, PUNCH_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(data_hva != MAP_FAILED, "mmap() failed");
	fd = vm_create_guest_memfd(vm, PUNCH_SIZE, 0);
	/* Bound, so that the punches zap and the errors walk a memslot. */
	TEST_ASSERT(!set_slot(PUNCH_SIZE, fd), "binding guest_memfd failed");

	WRITE_ONCE(poisoner.max_hits, hits0 + max_hits);
	WRITE_ONCE(poisoner.armed, true);
	pthread_create(&t, NULL, puncher_fn, (void *)(long)fd);

	w.since = gmem_now_ms();
	end = gmem_now_ms() + seconds * 1000ll;
	while (gmem_now_ms() < end) {
		usleep(100 * 1000);
		watchdog_check(&w);
	}
	/* Never stop short of a hit while the punches run. */
	while (poisoner.hits == hits0 && poisoner.writes < 4 * 1024 * 1024) {
		usleep(100 * 1000);
		watchdog_check(&w);
	}

	WRITE_ONCE(poisoner.armed, false);
	WRITE_ONCE(punch_stop, true);
	while (pthread_tryjoin_np(t, NULL)) {
		usleep(100 * 1000);
		watchdog_check(&w);
	}

	ksft_print_msg("punch: %lu allocate+punch rounds, %lu memory errors in guest_memfd pages (%lu corrupt-pfn writes)\n",
		       punches, poisoner.hits - hits0, poisoner.writes);
	ksft_test_result(poisoner.hits > hits0, "memory errors vs. punch hole\n");

	TEST_ASSERT(!set_slot(0, fd), "deleting the memslot failed");
	close(fd);
	munmap(data_hva, PUNCH_SIZE);
}

/* -m close */
static uint64_t vcpu_passes;
static uint64_t close_iterations;
static bool vcpu_stop;

static void guest_code(uint64_t gpa, uint64_t size)
{
	uint64_t pass, off;

	for (pass = 0;; pass++) {
		for (off = 0; off < size; off += PAGE_SIZE)
			WRITE_ONCE(*(uint64_t *)(gpa + off), pass);
		GUEST_SYNC(pass);
	}
}

static void *vcpu_fn(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct ucall uc;

	while (!READ_ONCE(vcpu_stop)) {
		switch (gmem_try_run(vcpu, &uc)) {
		case GMEM_RUN_UCALL:
			TEST_ASSERT(uc.cmd == UCALL_SYNC, "unexpected ucall %lu",
				    uc.cmd);
			__atomic_add_fetch(&vcpu_passes, 1, __ATOMIC_RELEASE);
			break;
		case GMEM_RUN_FAULT:
			/* No memslot, or its guest_memfd is gone. */
			break;
		case GMEM_RUN_ERROR:
			/* A poisoned page of the guest_memfd. */
			TEST_ASSERT(errno == EHWPOISON,
				    "KVM_RUN failed: %s", strerror(errno));
			break;
		default:
			TEST_FAIL("unexpected exit %u",
				  vcpu->run->exit_reason);
		}
	}
	return NULL;
}

static struct {
	uint32_t go, done;
	bool quit;
	unsigned long delay;
	uint64_t start, end;	/* TSC around the deletion */
} racer;

/*
 * Each side delays its operation so that, on average, both start at the
 * same time, give or take a random jitter as wide as the operations take
 * (as guest_memfd_close_race_test does).  In busy-loop iterations.
 */
static struct {
	double loops_per_cycle;
	double latency;		/* from "go" to the racer's start */
	double window;		/* duration of the two operations */
} balance;

static void *racer_fn(void *arg)
{
	uint32_t seen = 0, seq;
	unsigned long spins;
	int err;

	for (;;) {
		spins = 0;
		while ((seq = __atomic_load_n(&racer.go, __ATOMIC_ACQUIRE)) == seen) {
			if (++spins % 64)
				cpu_relax();
			else
				sched_yield();
		}
		seen = seq;
		if (READ_ONCE(racer.quit))
			return NULL;
		gmem_busy_delay(racer.delay);
		racer.start = rdtsc();
		err = set_slot(0, -1);
		racer.end = rdtsc();
		TEST_ASSERT(!err, "deleting the memslot failed: %s", strerror(err));
		__atomic_store_n(&racer.done, seq, __ATOMIC_RELEASE);
	}
}

/*
 * Start the deletion of the memslot in the racer and close @fd here, each
 * after its share of the balancing delay.  Returns whether the two
 * syscalls overlapped.
 */
static bool race_close_delete(int fd, unsigned int *seed, struct watchdog *w)
{
	long jitter = max_t(long, balance.window, 16);
	long delay = (long)balance.latency + rand_r(seed) % (2 * jitter) - jitter;
	uint32_t seq = racer.go + 1;
	uint64_t start, end;
	double lag;

	delay = min(max(delay, -(1l << 24)), 1l << 24);
	racer.delay = delay < 0 ? -delay : 0;
	__atomic_store_n(&racer.go, seq, __ATOMIC_RELEASE);

	gmem_busy_delay(delay > 0 ? delay : 0);
	start = rdtsc();
	TEST_ASSERT(!close(fd), "close(guest_memfd) failed: %s", strerror(errno));
	end = rdtsc();

	while (__atomic_load_n(&racer.done, __ATOMIC_ACQUIRE) != seq) {
		sched_yield();
		watchdog_check(w);
	}

	lag = (double)(int64_t)(racer.start - start) * balance.loops_per_cycle;
	balance.latency += (lag + delay - balance.latency) / 8;
	balance.window += ((end - start + racer.end - racer.start) *
			   balance.loops_per_cycle - balance.window) / 8;
	return min(end, racer.end) > max(start, racer.start);
}

static void race_close(struct kvm_vcpu *vcpu, int seconds, uint64_t max_hits)
{
	struct watchdog w = { { &vcpu_passes, &close_iterations }, { 0 }, 0,
			      "memory errors vs. close and memslot deletion" };
	uint64_t hits0 = poisoner.hits, start_passes, overlaps = 0;
	unsigned int seed = time(NULL) ^ getpid();
	pthread_t vcpu_thread, racer_thread;
	int64_t end, locate_end;
	int fd;

	data_hva = mmap(NULL, CLOSE_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(data_hva != MAP_FAILED, "mmap() failed");
	vm_mem_set_private(vm, DATA_GPA, CLOSE_SIZE);
	virt_map(vm, DATA_GPA, DATA_GPA, CLOSE_NPAGES);
	vcpu_args_set(vcpu, 2, DATA_GPA, CLOSE_SIZE);

	balance.loops_per_cycle = gmem_busy_loops_per_cycle();
	pthread_create(&vcpu_thread, NULL, vcpu_fn, vcpu);
	pthread_create(&racer_thread, NULL, racer_fn, NULL);

	end = gmem_now_ms() + seconds * 1000ll;
	w.since = gmem_now_ms();
	while (poisoner.hits - hits0 < max_hits &&
	       (gmem_now_ms() < end || poisoner.hits == hits0)) {
		fd = vm_create_guest_memfd(vm, CLOSE_SIZE, 0);
		gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE, CLOSE_SIZE);
		TEST_ASSERT(!set_slot(CLOSE_SIZE, fd), "binding guest_memfd failed");

		/*
		 * Find a page of this file (freed guest_memfd pages tend to
		 * come back to the next one, so start near the last ones):
		 * its neighbours are likely pages of the file too.
		 */
		WRITE_ONCE(poisoner.max_hits, hits0 + max_hits);
		WRITE_ONCE(poisoner.rewind, true);
		WRITE_ONCE(poisoner.locate, true);
		WRITE_ONCE(poisoner.armed, true);
		locate_end = gmem_now_ms() + LOCATE_TIMEOUT_MS;
		while (READ_ONCE(poisoner.armed) && gmem_now_ms() < locate_end)
			usleep(100);
		WRITE_ONCE(poisoner.armed, false);
		WRITE_ONCE(poisoner.locate, false);

		/* Then a burst of errors in the following pages, around the race. */
		WRITE_ONCE(poisoner.max_hits,
			   min(poisoner.hits + HITS_PER_ITERATION, hits0 + max_hits));
		WRITE_ONCE(poisoner.armed, true);

		overlaps += race_close_delete(fd, &seed, &w);
		WRITE_ONCE(poisoner.armed, false);
		__atomic_add_fetch(&close_iterations, 1, __ATOMIC_RELEASE);
	}

	/*
	 * A fresh guest_memfd at the same GPA: an MMU invalidation that a
	 * memory error left in progress over it would make the vCPU retry
	 * its faults forever.
	 */
	fd = vm_create_guest_memfd(vm, CLOSE_SIZE, 0);
	TEST_ASSERT(!set_slot(CLOSE_SIZE, fd), "binding guest_memfd failed");
	start_passes = __atomic_load_n(&vcpu_passes, __ATOMIC_ACQUIRE);
	w.since = gmem_now_ms();
	while (__atomic_load_n(&vcpu_passes, __ATOMIC_ACQUIRE) < start_passes + 2) {
		usleep(10 * 1000);
		TEST_ASSERT(gmem_now_ms() - w.since < STALL_TIMEOUT_S * 1000ll,
			    "vCPU made no progress on a fresh guest_memfd in %d s: an MMU invalidation was left in progress",
			    STALL_TIMEOUT_S);
	}

	WRITE_ONCE(vcpu_stop, true);
	pthread_join(vcpu_thread, NULL);
	WRITE_ONCE(racer.quit, true);
	__atomic_add_fetch(&racer.go, 1, __ATOMIC_RELEASE);
	pthread_join(racer_thread, NULL);

	ksft_print_msg("close: %lu iterations, %lu with close and deletion in flight together, %lu memory errors in guest_memfd pages, %lu vCPU passes\n",
		       close_iterations, overlaps, poisoner.hits - hits0,
		       vcpu_passes);
	ksft_test_result(poisoner.hits > hits0 && overlaps,
			 "memory errors vs. close and memslot deletion, vCPU faulting\n");

	TEST_ASSERT(!set_slot(0, fd), "deleting the memslot failed");
	close(fd);
	munmap(data_hva, CLOSE_SIZE);
}

static void help(const char *name)
{
	printf("usage: %s [-h] [-m punch|close|all] [-s seconds] [-p hits]\n", name);
	printf(" -m: which race (default all)\n");
	printf(" -s: seconds for each race (default %d)\n", DEFAULT_SECONDS);
	printf(" -p: memory errors in guest_memfd pages per race, at most (default %d)\n",
	       DEFAULT_HITS);
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	bool do_punch = true, do_close = true;
	int seconds = DEFAULT_SECONDS, opt, fd;
	uint64_t max_hits = DEFAULT_HITS;
	struct kvm_vcpu *vcpu;
	pthread_t t;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	__TEST_REQUIRE(!access(CORRUPT_PFN, W_OK) && !access(FILTER_ENABLE, W_OK),
		       "no %s (needs CONFIG_HWPOISON_INJECT, debugfs mounted and root): %s",
		       CORRUPT_PFN, strerror(errno));

	while ((opt = getopt(argc, argv, "hm:s:p:")) != -1) {
		switch (opt) {
		case 'm':
			do_punch = !strcmp(optarg, "punch") || !strcmp(optarg, "all");
			do_close = !strcmp(optarg, "close") || !strcmp(optarg, "all");
			TEST_ASSERT(do_punch || do_close, "unknown race '%s'", optarg);
			break;
		case 's':
			seconds = atoi_positive("Seconds", optarg);
			break;
		case 'p':
			max_hits = atoi_positive("Hits", optarg);
			break;
		default:
			gmem_usage_exit(opt, argv[0], help);
		}
	}

	ksft_print_header();
	ksft_set_plan(do_punch + do_close);

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);

	fd = vm_create_guest_memfd(vm, PAGE_SIZE, 0);
	gmem_hwpoison_filter_fd(fd);
	close(fd);
	read_ram_ranges();
	poisoner.lowest_hit = UINT64_MAX;
	pthread_create(&t, NULL, poisoner_fn, NULL);

	if (do_punch)
		race_punch(seconds, max_hits);
	if (do_close)
		race_close(vcpu, seconds, max_hits);

	WRITE_ONCE(poisoner.quit, true);
	pthread_join(t, NULL);
	ksft_print_msg("%lu corrupt-pfn writes, %lu hits, %lu on pages already poisoned or gone\n",
		       poisoner.writes, poisoner.hits, poisoner.again);
	gmem_hwpoison_reset_filter();
	kvm_vm_free(vm);
	ksft_finished();
}
