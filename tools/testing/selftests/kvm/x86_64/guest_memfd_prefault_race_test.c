// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_prefault_race_test
 *
 * KVM_PRE_FAULT_MEMORY racing the deletion of its memslot.
 *
 * Upstream found that a pre-fault spins forever when userspace deletes or
 * moves the memslot under it: the deletion marks the memslot invalid and
 * waits in synchronize_srcu() for the pre-fault, which holds kvm->srcu and
 * retries the invalid memslot (RET_PF_RETRY) until it goes away.  The fix
 * ("KVM: x86/mmu: Return -EAGAIN if userspace deletes/moves memslot during
 * prefault") makes the pre-fault fail with EAGAIN.  6.12.117 does not have
 * it: there the pre-fault only leaves the loop when a signal is pending
 * (EINTR) and the deletion waits until then.  Our series carries an
 * equivalent fix (patches/0015), which this test checks.
 *
 * A thread loops KVM_PRE_FAULT_MEMORY over a private (guest_memfd) and a
 * shared range of a memslot while another deletes and re-creates the
 * memslot and, in the last phase, a third converts part of the range to
 * shared, punches it and converts it back.  A pre-fault that runs for
 * HANG_MS is a hang and fails the test.  With -k (for kernels without the
 * fix), a watchdog instead sends the pre-faulting thread a signal whenever
 * the deletion has been blocked for longer than KICK_MS, which bounds the
 * livelock, and counts those kicks.  Every result must be one the source
 * allows:
 *
 *   0            with progress (range.size decreased), and only then;
 *                with range.size left over if an error stopped it after
 *                some progress (then the error is not returned);
 *   ENOENT       shared GPA without a memslot (RET_PF_EMULATE);
 *   EFAULT       private GPA without a memslot, or the attributes changed
 *                between the pre-fault's lookup and the fault;
 *   EAGAIN       memslot deleted during the pre-fault (kernels with the fix);
 *   EINTR        a signal, the watchdog's (-k only).
 *
 * The pre-fault holds kvm->srcu for the whole ioctl, so a deletion cannot
 * complete under it: a pre-fault that met a deletion in flight sees the
 * memslot marked invalid and returns EAGAIN, or 0 with range.size left
 * over if it had made progress (also when a conversion stopped it, in the
 * last phase), or EINTR if the watchdog kicked it (-k).  ENOENT and EFAULT
 * only say that the pre-fault started while the memslot was gone.  A
 * phase passes only if each of its ranges met the deletion at least once
 * in one of the first three ways.
 *
 * Afterwards the memslot is re-created, a full pre-fault must succeed and a
 * guest must read zeros from the private range and the host's data from the
 * shared one.  No call may hang, and the kernel log must stay clean.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define SLOT			10
#define GPA_BASE		SZ_4G
#define SLOT_SIZE		(4ull * SZ_1M)
#define SLOT_NPAGES		(SLOT_SIZE / PAGE_SIZE)
/* The first half of the memslot is private, the second half shared. */
#define PRIVATE_OFF		0
#define SHARED_OFF		SZ_2M
#define HALF_SIZE		SZ_2M
/* What the converter thread converts and punches, inside the private half. */
#define CONV_OFF		(SZ_1M - SZ_64K)
#define CONV_SIZE		SZ_128K

#define SHARED(gpa)		((uint64_t)0x54a12ed000000000ull | (gpa))

/* A deletion blocked for this long is taken as stuck behind a pre-fault. */
#define KICK_MS			100
/* A pre-fault still running this long after a kick is a hang. */
#define HANG_MS			10000

enum kind { KIND_PRIVATE, KIND_SHARED, NR_KINDS };

enum outcome {
	RES_OK,
	RES_PARTIAL,
	RES_ENOENT,
	RES_EFAULT,
	RES_EAGAIN,
	RES_EINTR,
	RES_BAD_ERRNO,
	RES_NO_PROGRESS,
	RES_PROGRESS_ON_ERROR,
	NR_OUTCOMES,
};

static const char * const outcome_names[NR_OUTCOMES] = {
	"ok", "ok partial", "ENOENT", "EFAULT", "EAGAIN", "EINTR", "other errno",
	"0 without progress", "error with progress",
};

struct phase {
	const char *desc;
	bool kinds[NR_KINDS];
	bool convert;
	/* Results, filled in by the threads. */
	uint64_t results[NR_KINDS][NR_OUTCOMES];
	uint64_t deletions, conversions, kicks, max_delete_us, max_release_us;
	int bad_errno;
};

static struct phase phases[] = {
	{ "private range vs. memslot deletion", { true, false }, false },
	{ "shared range vs. memslot deletion", { false, true }, false },
	{ "both ranges vs. deletion and conversion", { true, true }, true },
};

#define NR_PHASES	ARRAY_SIZE(phases)

static struct kvm_vm *vm;
static struct kvm_vcpu *vcpu;
static int gmem_fd;
static uint64_t *alias;
static struct phase *cur;
static bool stop;
static bool kick;

/* CLOCK_MONOTONIC ns at which a thread entered its ioctl, 0 outside. */
static uint64_t prefault_since, delete_since;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static void create_slot(void)
{
	vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA_BASE,
				   SLOT_SIZE, alias, gmem_fd, 0);
}

static void delete_slot(void)
{
	vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA_BASE, 0,
				   NULL, gmem_fd, 0);
}

static enum outcome classify(int ret, int err, uint64_t before, uint64_t after)
{
	if (!ret && after >= before)
		return RES_NO_PROGRESS;
	if (!ret)
		return after ? RES_PARTIAL : RES_OK;
	if (after != before)
		return RES_PROGRESS_ON_ERROR;
	switch (err) {
	case ENOENT: return RES_ENOENT;
	case EFAULT: return RES_EFAULT;
	case EAGAIN: return RES_EAGAIN;
	case EINTR:
		return kick ? RES_EINTR : RES_BAD_ERRNO;
	default: return RES_BAD_ERRNO;
	}
}

static void *prefault_thread(void *arg)
{
	int k = 0;

	while (!stopping()) {
		struct phase *p = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
		struct kvm_pre_fault_memory range = { .flags = 0 };
		enum outcome o;
		int ret, err;

		k = (k + 1) % NR_KINDS;
		if (!p->kinds[k])
			continue;
		range.gpa = GPA_BASE + (k == KIND_PRIVATE ? PRIVATE_OFF : SHARED_OFF);
		range.size = HALF_SIZE;

		__atomic_store_n(&prefault_since, now_ns(), __ATOMIC_RELEASE);
		ret = __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range);
		err = errno;
		__atomic_store_n(&prefault_since, 0, __ATOMIC_RELEASE);

		o = classify(ret, err, HALF_SIZE, range.size);
		if (o == RES_BAD_ERRNO && !p->bad_errno)
			p->bad_errno = err;
		p->results[k][o]++;
	}
	return NULL;
}

static void *delete_thread(void *arg)
{
	while (!stopping()) {
		struct phase *p = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
		uint64_t t0 = now_ns(), us;

		__atomic_store_n(&delete_since, t0, __ATOMIC_RELEASE);
		delete_slot();
		__atomic_store_n(&delete_since, 0, __ATOMIC_RELEASE);
		us = (now_ns() - t0) / 1000;
		if (us > p->max_delete_us)
			p->max_delete_us = us;
		p->deletions++;
		usleep(200);
		create_slot();
		usleep(1000 + rand() % 2000);
	}
	return NULL;
}

static void *convert_thread(void *arg)
{
	while (!stopping()) {
		struct phase *p = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
		int ret;

		if (!p->convert) {
			usleep(1000);
			continue;
		}
		vm_mem_set_shared(vm, GPA_BASE + CONV_OFF, CONV_SIZE);
		ret = fallocate(gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
				PRIVATE_OFF + CONV_OFF, CONV_SIZE);
		TEST_ASSERT(!ret, "PUNCH_HOLE failed: %s", strerror(errno));
		vm_mem_set_private(vm, GPA_BASE + CONV_OFF, CONV_SIZE);
		p->conversions++;
		usleep(500 + rand() % 1000);
	}
	return NULL;
}

static void kick_handler(int sig)
{
}

/* Print the kernel stacks of this process's threads (if the kernel has them). */
static void dump_stacks(void)
{
	char path[64], line[256];
	struct dirent *de;
	DIR *d = opendir("/proc/self/task");
	FILE *f;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stack", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		ksft_print_msg("kernel stack of thread %s:\n", de->d_name);
		while (fgets(line, sizeof(line), f))
			ksft_print_msg("  %s", line);
		fclose(f);
	}
	if (d)
		closedir(d);
}

/* Run one phase for @ms; kick the pre-faulting thread when needed. */
static void watch(pthread_t prefaulter, struct phase *p, uint64_t ms)
{
	uint64_t end = now_ns() + ms * 1000000, kicked_at = 0;

	while (now_ns() < end) {
		uint64_t del = __atomic_load_n(&delete_since, __ATOMIC_ACQUIRE);
		uint64_t pf = __atomic_load_n(&prefault_since, __ATOMIC_ACQUIRE);
		uint64_t now = now_ns();

		if (del && pf && now - del > KICK_MS * 1000000ull && kick) {
			pthread_kill(prefaulter, SIGUSR1);
			if (!kicked_at)
				p->kicks++;
			kicked_at = kicked_at ?: now;
		}
		if (kicked_at && !del) {
			/* How long the deletion took to finish after the kick. */
			p->max_release_us = max(p->max_release_us,
						(now - kicked_at) / 1000);
		}
		if (!del || !pf)
			kicked_at = 0;
		if (pf && now - pf >= HANG_MS * 1000000ull)
			dump_stacks();
		TEST_ASSERT(!pf || now - pf < HANG_MS * 1000000ull,
			    "KVM_PRE_FAULT_MEMORY running for %lu ms (%s); kicked %lu ms ago",
			    (now - pf) / 1000000,
			    del ? "a memslot deletion waits for it" : "no deletion pending",
			    kicked_at ? (now - kicked_at) / 1000000 : 0);
		usleep(5000);
	}
}

/* Results of a pre-fault that met a memslot deletion (or conversion). */
static uint64_t raced(struct phase *p, int k)
{
	return p->results[k][RES_EAGAIN] + p->results[k][RES_PARTIAL] +
	       p->results[k][RES_EINTR];
}

static void report_phase(struct phase *p)
{
	static const char * const kind_names[] = { "private", "shared" };
	bool ok = true, met = true;
	char line[512];
	int k, o, n;

	for (k = 0; k < NR_KINDS; k++) {
		if (!p->kinds[k])
			continue;
		n = snprintf(line, sizeof(line), "%s:", kind_names[k]);
		for (o = 0; o < NR_OUTCOMES; o++)
			if (p->results[k][o])
				n += snprintf(line + n, sizeof(line) - n, " %s %lu,",
					      outcome_names[o], p->results[k][o]);
		line[n - 1] = '\0';
		ksft_print_msg("  %s\n", line);
		if (!p->results[k][RES_OK] && !p->results[k][RES_PARTIAL]) {
			ksft_print_msg("  %s: no pre-fault succeeded\n", kind_names[k]);
			ok = false;
		}
		for (o = RES_BAD_ERRNO; o < NR_OUTCOMES; o++)
			ok &= !p->results[k][o];
		ksft_print_msg("  %s: %lu pre-faults met a deletion%s in flight (EAGAIN, ok partial%s)\n",
			       kind_names[k], raced(p, k),
			       p->convert ? " or conversion" : "",
			       kick ? ", EINTR" : "");
		met &= raced(p, k) > 0;
	}
	if (p->bad_errno)
		ksft_print_msg("  unexpected errno: %s\n", strerror(p->bad_errno));
	ksft_print_msg("  %lu deletions (longest %lu us), %lu conversions\n",
		       p->deletions, p->max_delete_us, p->conversions);
	ksft_print_msg("  %lu deletions blocked for over %d ms were freed by a signal to the pre-fault (the latest after %lu us)\n",
		       p->kicks, KICK_MS, p->max_release_us);
	ok &= p->deletions > 0;
	ksft_test_result(ok, "%s: every result in {0 with progress, ENOENT, EFAULT, EAGAIN%s}\n",
			 p->desc, kick ? ", EINTR" : "");
	ksft_test_result(met, "%s: the pre-fault of every range met a deletion\n",
			 p->desc);
}

static void guest_code(void)
{
	uint64_t a;

	for (a = GPA_BASE + PRIVATE_OFF; a < GPA_BASE + PRIVATE_OFF + HALF_SIZE; a += 8)
		__GUEST_ASSERT(!READ_ONCE(*(uint64_t *)a),
			       "private gpa 0x%lx reads 0x%lx, not 0", a,
			       READ_ONCE(*(uint64_t *)a));
	for (a = GPA_BASE + SHARED_OFF; a < GPA_BASE + SHARED_OFF + HALF_SIZE; a += 8)
		__GUEST_ASSERT(READ_ONCE(*(uint64_t *)a) == SHARED(a),
			       "shared gpa 0x%lx reads 0x%lx, not 0x%lx", a,
			       READ_ONCE(*(uint64_t *)a), SHARED(a));
	GUEST_DONE();
}

static void test_after(void)
{
	struct kvm_pre_fault_memory range = {
		.gpa = GPA_BASE,
		.size = SLOT_SIZE,
	};
	int ret;

	/* The guest never wrote the private half; drop what it may hold. */
	ret = fallocate(gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			PRIVATE_OFF, HALF_SIZE);
	TEST_ASSERT(!ret, "PUNCH_HOLE failed: %s", strerror(errno));
	do {
		ret = __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range);
	} while (!ret && range.size);
	ksft_test_result(!ret && !range.size,
			 "the whole memslot pre-faults afterwards (%s)\n",
			 ret ? strerror(errno) : "success");

	gmem_run_to_ucall(vcpu, NULL, BIT(UCALL_DONE), NULL);
	ksft_test_result_pass("guest reads zeros from the private half and the host's data from the shared half\n");
}

static void print_usage(const char *name)
{
	printf("Usage: %s [-t SECONDS] [-k]\n"
	       " -t: total time of the races (default 9)\n"
	       " -k: signal a pre-fault that blocks a deletion (kernels without\n"
	       "     the EAGAIN fix hang otherwise)\n",
	       name);
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct sigaction sa = { .sa_handler = kick_handler };
	pthread_t threads[3];
	uint64_t secs = 9, i;
	int opt;

	while ((opt = getopt(argc, argv, "t:kh")) != -1) {
		switch (opt) {
		case 't':
			secs = atoi_positive("Seconds", optarg);
			break;
		case 'k':
			kick = true;
			break;
		default:
			gmem_usage_exit(opt, argv[0], print_usage);
		}
	}

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_PRE_FAULT_MEMORY));

	ksft_print_header();
	ksft_set_plan(2 * NR_PHASES + 2);

	/* No SA_RESTART: the signal makes the pre-fault return EINTR. */
	TEST_ASSERT(!sigaction(SIGUSR1, &sa, NULL), "sigaction() failed");

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);
	gmem_fd = vm_create_guest_memfd(vm, SLOT_SIZE, 0);
	alias = mmap(NULL, SLOT_SIZE, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(alias != MAP_FAILED, "mmap() failed");
	gmem_fill_pattern(alias, SLOT_SIZE, GPA_BASE, SHARED(0));
	create_slot();
	virt_map(vm, GPA_BASE, GPA_BASE, SLOT_NPAGES);
	vm_mem_set_private(vm, GPA_BASE + PRIVATE_OFF, HALF_SIZE);

	cur = &phases[0];
	pthread_create(&threads[0], NULL, prefault_thread, NULL);
	pthread_create(&threads[1], NULL, delete_thread, NULL);
	pthread_create(&threads[2], NULL, convert_thread, NULL);

	for (i = 0; i < NR_PHASES; i++) {
		__atomic_store_n(&cur, &phases[i], __ATOMIC_RELEASE);
		ksft_print_msg("phase %lu: %s\n", i + 1, phases[i].desc);
		watch(threads[0], &phases[i], secs * 1000 / NR_PHASES);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	/* Keep kicking until the threads are out. */
	for (i = 0; i < 3; i++) {
		while (pthread_tryjoin_np(threads[i], NULL))
			watch(threads[0], &phases[NR_PHASES - 1], 10);
	}
	for (i = 0; i < NR_PHASES; i++) {
		ksft_print_msg("phase %lu: %s\n", i + 1, phases[i].desc);
		report_phase(&phases[i]);
	}

	/* The delete thread always leaves the memslot in place. */
	test_after();

	kvm_vm_free(vm);
	close(gmem_fd);
	munmap(alias, SLOT_SIZE);
	ksft_finished();
}
