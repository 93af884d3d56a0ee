// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_close_race_test
 *
 * Race the last close() of a guest_memfd against changes to the memslot
 * bound to it, the window in which kvm_gmem_release() and kvm_gmem_unbind()
 * both look at the binding (syzbot found a use-after-free there).  Each
 * iteration creates a guest_memfd and binds it to a memslot, then one
 * thread closes the guest_memfd while another deletes the memslot; a
 * second flavour races binding the memslot against the close.  Both
 * flavours also run with a vCPU that keeps faulting the private memory in
 * and out, so that the SPTE zapping of release and unbind meets in-flight
 * faults.
 *
 * Every syscall must return what the uAPI allows: close() 0, the deletion
 * 0, the bind 0 or EBADF (fd already closed), KVM_RUN either a guest exit
 * or EFAULT with a KVM_EXIT_MEMORY_FAULT for the private range.  Anything
 * the kernel logs (KASAN, lockdep, WARN) fails the run outside this test.
 *
 * A race that never happened proves nothing, so each flavour also fails
 * unless close() and the memslot change overlapped at least once: their
 * TSC intervals, each taken around the syscall, must share more than a
 * null syscall takes (calibrated at the start), so that some of the
 * shared time was spent inside both syscalls.  A race that has seen fewer
 * than MIN_OVERLAPS overlaps when its time is up goes on for up to
 * MAX_EXTENSION times as long.
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

#include <linux/falloc.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define DATA_SLOT		10
#define DATA_GPA		(1ull << 32)
#define DATA_NPAGES		8
#define DATA_SIZE		(DATA_NPAGES * PAGE_SIZE)

#define DEFAULT_SECONDS		2
#define DEFAULT_ITERATIONS	2000
/*
 * A race that saw fewer overlaps goes on past its time, up to this many
 * times as long (a loaded host may schedule the two threads apart).
 */
#define MIN_OVERLAPS		10
#define MAX_EXTENSION		5
/* Bounds of the racing delay, in busy-loop iterations. */
#define MAX_DELAY		(1l << 24)
#define MIN_JITTER		16
/* How long the vCPU may take to get through its memory. */
#define VCPU_PROGRESS_TIMEOUT_S	30

enum race_op {
	OP_DELETE,
	OP_BIND,
};

static struct kvm_vm *vm;
static void *data_hva;

/* Handshake between the main thread and the racer thread. */
static struct {
	uint32_t go;		/* bumped by main to start an iteration */
	uint32_t done;		/* set to go by the racer when finished */
	bool quit;
	enum race_op op;
	int gmem_fd;
	unsigned long delay;
	uint64_t start;		/* TSC when the racer's operation began */
	uint64_t end;		/* and when it returned */
	int err;
} race;

/*
 * Each side delays its operation so that, on average, both start at the
 * same time, give or take a random jitter as wide as the operations take.
 * Kept as moving averages, in busy-loop iterations.
 */
static struct {
	double loops_per_cycle;	/* busy-loop iterations per TSC cycle */
	uint64_t null_syscall;	/* TSC cycles around a syscall doing nothing */
	double latency;		/* from "go" to the racer's start */
	double window;		/* duration of the two operations */
} balance;

static bool vcpu_stop;
static uint64_t vcpu_passes;
static uint64_t vcpu_fault_exits;

static void guest_code(uint64_t gpa, uint64_t size)
{
	uint64_t pass, off;

	for (pass = 0; ; pass++) {
		for (off = 0; off < size; off += PAGE_SIZE) {
			uint64_t *p = (uint64_t *)(gpa + off);

			WRITE_ONCE(*p, pass);
			/* The memory may have been replaced: no check. */
			(void)READ_ONCE(p[1]);
		}
		GUEST_SYNC(pass);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The median time around getppid(): what the entry into and the return
 * from the kernel add to a syscall's interval as the racers measure it.
 */
static void calibrate_null_syscall(void)
{
	uint64_t t[101], start;
	int i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		start = rdtsc();
		getppid();
		t[i] = rdtsc() - start;
	}
	qsort(t, ARRAY_SIZE(t), sizeof(t[0]), cmp_u64);
	balance.null_syscall = t[ARRAY_SIZE(t) / 2];
}

static void wait_for(uint32_t *p, uint32_t val)
{
	unsigned long spins = 0;

	while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != val) {
		if (++spins % 64)
			cpu_relax();
		else
			sched_yield();
	}
}

static int set_slot(uint64_t size, int gmem_fd)
{
	int r;

	r = __vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD,
					 DATA_GPA, size, data_hva, gmem_fd, 0);
	return r ? errno : 0;
}

static void *racer_fn(void *arg)
{
	uint32_t seen = 0, seq;
	unsigned long spins;

	for (;;) {
		spins = 0;
		while ((seq = __atomic_load_n(&race.go, __ATOMIC_ACQUIRE)) == seen) {
			if (++spins % 64)
				cpu_relax();
			else
				sched_yield();
		}
		seen = seq;
		if (READ_ONCE(race.quit))
			return NULL;

		gmem_busy_delay(race.delay);
		race.start = rdtsc();
		race.err = set_slot(race.op == OP_DELETE ? 0 : DATA_SIZE,
				    race.gmem_fd);
		race.end = rdtsc();
		__atomic_store_n(&race.done, seq, __ATOMIC_RELEASE);
	}
}

static void *vcpu_fn(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct kvm_run *run = vcpu->run;
	struct ucall uc;
	int r;

	while (!READ_ONCE(vcpu_stop)) {
		r = _vcpu_run(vcpu);
		if (r) {
			/* No memslot, or no guest_memfd behind it (any more). */
			TEST_ASSERT(errno == EFAULT,
				    "KVM_RUN failed with errno %d (%s), expected EFAULT",
				    errno, strerror(errno));
			TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MEMORY_FAULT);
			TEST_ASSERT_EQ(run->memory_fault.flags,
				       KVM_MEMORY_EXIT_FLAG_PRIVATE);
			TEST_ASSERT(run->memory_fault.gpa >= DATA_GPA &&
				    run->memory_fault.gpa < DATA_GPA + DATA_SIZE &&
				    run->memory_fault.size == PAGE_SIZE,
				    "memory fault exit for gpa 0x%llx size 0x%llx",
				    run->memory_fault.gpa, run->memory_fault.size);
			__atomic_add_fetch(&vcpu_fault_exits, 1, __ATOMIC_RELAXED);
			continue;
		}

		gmem_get_ucall(vcpu, &uc, BIT(UCALL_SYNC));
		__atomic_add_fetch(&vcpu_passes, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Wait until the vCPU has gone through all of the memory at least once. */
static void wait_for_vcpu_pass(void)
{
	uint64_t start = __atomic_load_n(&vcpu_passes, __ATOMIC_ACQUIRE);
	time_t deadline = time(NULL) + VCPU_PROGRESS_TIMEOUT_S;

	/* The pass in progress may have started before the bind. */
	while (__atomic_load_n(&vcpu_passes, __ATOMIC_ACQUIRE) < start + 2) {
		TEST_ASSERT(time(NULL) < deadline,
			    "vCPU made no progress in %d s", VCPU_PROGRESS_TIMEOUT_S);
		sched_yield();
	}
}

static int create_gmem(bool populate)
{
	int fd = vm_create_guest_memfd(vm, DATA_SIZE, 0);

	if (populate)
		TEST_ASSERT(!fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, DATA_SIZE),
			    "fallocate() failed: %s", strerror(errno));
	return fd;
}

struct race_stats {
	unsigned long iterations;
	unsigned long overlaps;	/* both operations were in the kernel at once */
	uint64_t max_overlap;	/* the longest overlap, in TSC cycles */
	int64_t ms;		/* how long the race ran */
	unsigned long bound;
	unsigned long ebadf;
};

/*
 * Start the racer on @op and close @fd, each after its share of the
 * balancing delay, so that both orders and the overlap get exercised.
 * Returns the racer's errno (0 on success).
 */
static int race_close(enum race_op op, int fd, unsigned int *seed,
		      struct race_stats *st)
{
	long jitter = max_t(long, balance.window, MIN_JITTER);
	long delay = (long)balance.latency + rand_r(seed) % (2 * jitter) - jitter;
	uint32_t seq = race.go + 1;
	uint64_t start, end, first_end, last_start;
	double lag;
	int r;

	delay = min(max(delay, -MAX_DELAY), MAX_DELAY);

	race.op = op;
	race.gmem_fd = fd;
	race.delay = delay < 0 ? -delay : 0;
	__atomic_store_n(&race.go, seq, __ATOMIC_RELEASE);

	gmem_busy_delay(delay > 0 ? delay : 0);
	start = rdtsc();
	r = close(fd);
	end = rdtsc();
	TEST_ASSERT(!r, "close(guest_memfd) failed: %s", strerror(errno));

	wait_for(&race.done, seq);

	/* The racer started lag after us, having waited delay less. */
	lag = (double)(int64_t)(race.start - start) * balance.loops_per_cycle;
	balance.latency += (lag + delay - balance.latency) / 8;
	balance.window += ((end - start + race.end - race.start) *
			   balance.loops_per_cycle - balance.window) / 8;
	/* Both intervals include the entry and exit: a null syscall's worth. */
	first_end = min(end, race.end);
	last_start = max(start, race.start);
	if (first_end > last_start + balance.null_syscall) {
		st->overlaps++;
		st->max_overlap = max(st->max_overlap, first_end - last_start);
	}

	return race.err;
}

static bool keep_going(struct race_stats *st, unsigned long max_iters,
		       int64_t start, int seconds)
{
	int64_t elapsed = gmem_now_ms() - start;

	st->ms = elapsed;
	if (st->iterations >= max_iters)
		return false;
	if (elapsed < seconds * 1000ll)
		return true;
	return st->overlaps < MIN_OVERLAPS &&
	       elapsed < seconds * 1000ll * MAX_EXTENSION;
}

/* close(guest_memfd) in one thread, delete its memslot in another. */
static void race_close_delete(bool with_vcpu, unsigned long max_iters,
			      int seconds, unsigned int *seed,
			      struct race_stats *st)
{
	int64_t start = gmem_now_ms();
	int fd, err;

	for (st->iterations = 0; keep_going(st, max_iters, start, seconds);
	     st->iterations++) {
		fd = create_gmem(!with_vcpu || (st->iterations & 2));
		err = set_slot(DATA_SIZE, fd);
		TEST_ASSERT(!err, "binding guest_memfd failed: %s", strerror(err));

		/* Half of the time, race against live mappings. */
		if (with_vcpu && (st->iterations & 1))
			wait_for_vcpu_pass();

		err = race_close(OP_DELETE, fd, seed, st);
		TEST_ASSERT(!err, "deleting the memslot failed: %s",
			    strerror(err));
	}
}

/* close(guest_memfd) in one thread, bind it to a new memslot in another. */
static void race_close_bind(bool with_vcpu, unsigned long max_iters,
			    int seconds, unsigned int *seed,
			    struct race_stats *st)
{
	int64_t start = gmem_now_ms();
	int fd, err;

	for (st->iterations = 0; keep_going(st, max_iters, start, seconds);
	     st->iterations++) {
		fd = create_gmem(st->iterations & 1);

		err = race_close(OP_BIND, fd, seed, st);
		if (err) {
			TEST_ASSERT(err == EBADF,
				    "binding a guest_memfd being closed failed with %s, expected EBADF",
				    strerror(err));
			st->ebadf++;
			continue;
		}
		st->bound++;

		/* The memslot outlived its guest_memfd: unbind is a no-op. */
		err = set_slot(0, fd);
		TEST_ASSERT(!err, "deleting the memslot of a closed guest_memfd failed: %s",
			    strerror(err));
	}
}

static void report(struct race_stats *st, const char *name)
{
	ksft_print_msg("%s: %lu iterations in %ld ms, %lu with both operations in flight (the longest %lu TSC cycles)\n",
		       name, st->iterations, st->ms, st->overlaps,
		       st->max_overlap);
	if (!st->overlaps)
		ksft_print_msg("%s: the two operations never overlapped\n", name);
	ksft_test_result(st->overlaps > 0, "%s\n", name);
}

static void help(const char *name)
{
	printf("usage: %s [-h] [-i iterations] [-s seconds]\n", name);
	printf(" -i: maximum iterations of each race (default %d)\n",
	       DEFAULT_ITERATIONS);
	printf(" -s: seconds for each race (default %d), up to %d times as long\n"
	       "     while it has seen fewer than %d overlaps\n",
	       DEFAULT_SECONDS, MAX_EXTENSION, MIN_OVERLAPS);
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	unsigned long max_iters = DEFAULT_ITERATIONS;
	int seconds = DEFAULT_SECONDS;
	pthread_t racer, vcpu_thread;
	struct race_stats st = { 0 };
	struct kvm_vcpu *vcpu;
	unsigned int seed;
	uint64_t faults;
	int opt, fd;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	while ((opt = getopt(argc, argv, "hi:s:")) != -1) {
		switch (opt) {
		case 'i':
			max_iters = atoi_positive("Iterations", optarg);
			break;
		case 's':
			seconds = atoi_positive("Seconds", optarg);
			break;
		default:
			gmem_usage_exit(opt, argv[0], help);
		}
	}

	ksft_print_header();
	ksft_set_plan(4);

	seed = time(NULL) ^ getpid();
	ksft_print_msg("seed %u, up to %lu iterations or %d s per race (%d s if fewer than %d overlaps)\n",
		       seed, max_iters, seconds, seconds * MAX_EXTENSION,
		       MIN_OVERLAPS);

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);
	data_hva = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(data_hva != MAP_FAILED, "mmap() failed");
	vm_mem_set_private(vm, DATA_GPA, DATA_SIZE);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_NPAGES);
	vcpu_args_set(vcpu, 2, DATA_GPA, DATA_SIZE);

	balance.loops_per_cycle = gmem_busy_loops_per_cycle();
	calibrate_null_syscall();
	ksft_print_msg("a null syscall takes %lu TSC cycles\n",
		       balance.null_syscall);
	pthread_create(&racer, NULL, racer_fn, NULL);

	race_close_delete(false, max_iters, seconds, &seed, &st);
	report(&st, "close vs. memslot deletion");

	pthread_create(&vcpu_thread, NULL, vcpu_fn, vcpu);

	memset(&st, 0, sizeof(st));
	race_close_delete(true, max_iters, seconds, &seed, &st);
	report(&st, "close vs. memslot deletion, vCPU faulting");

	memset(&st, 0, sizeof(st));
	race_close_bind(true, max_iters, seconds, &seed, &st);
	ksft_print_msg("%lu bound before the close, %lu EBADF\n",
		       st.bound, st.ebadf);
	report(&st, "close vs. memslot creation, vCPU faulting");

	/* The VM must still work: bind a fresh guest_memfd and use it. */
	fd = create_gmem(false);
	TEST_ASSERT(!set_slot(DATA_SIZE, fd), "binding guest_memfd failed");
	wait_for_vcpu_pass();
	faults = __atomic_load_n(&vcpu_fault_exits, __ATOMIC_RELAXED);
	ksft_print_msg("%lu vCPU passes, %lu memory fault exits in all\n",
		       vcpu_passes, faults);
	ksft_test_result_pass("VM still runs on a fresh guest_memfd\n");

	WRITE_ONCE(vcpu_stop, true);
	pthread_join(vcpu_thread, NULL);
	WRITE_ONCE(race.quit, true);
	__atomic_add_fetch(&race.go, 1, __ATOMIC_RELEASE);
	pthread_join(racer, NULL);

	TEST_ASSERT(!set_slot(0, fd), "deleting the memslot failed");
	close(fd);
	kvm_vm_free(vm);
	munmap(data_hva, DATA_SIZE);

	ksft_finished();
}
