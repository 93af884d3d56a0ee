/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the guest_memfd selftests of this directory: running
 * a vCPU to its next ucall, the probe guest that reads one qword and
 * reports it, filling and checking memory with a per-qword pattern, and
 * the end of a getopt() loop.
 */
#ifndef SELFTEST_KVM_GUEST_MEMFD_COMMON_H
#define SELFTEST_KVM_GUEST_MEMFD_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "ucall_common.h"

/*
 * Get the ucall @vcpu exited with: a guest assertion is reported, and the
 * exit must be KVM_EXIT_IO with a ucall in @want, a mask of BIT(UCALL_*).
 * Returns the ucall's command.
 */
static inline uint64_t gmem_get_ucall(struct kvm_vcpu *vcpu, struct ucall *uc,
				      uint64_t want)
{
	uint64_t cmd;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	cmd = get_ucall(vcpu, uc);
	if (cmd == UCALL_ABORT)
		REPORT_GUEST_ASSERT(*uc);
	if (cmd >= 64 || !(want & BIT_ULL(cmd)))
		TEST_FAIL("Unexpected ucall %lu", cmd);
	return cmd;
}

/*
 * Run @vcpu to its next ucall, which must be in @want (see
 * gmem_get_ucall()); KVM_EXIT_HYPERCALL exits on the way are served by
 * @hypercall, unless it is NULL.  @uc may be NULL.  Returns the command.
 */
static inline uint64_t
gmem_run_to_ucall(struct kvm_vcpu *vcpu, struct ucall *uc, uint64_t want,
		  void (*hypercall)(struct kvm_vcpu *vcpu))
{
	struct ucall local;

	if (!uc)
		uc = &local;
	for (;;) {
		vcpu_run(vcpu);
		if (hypercall && vcpu->run->exit_reason == KVM_EXIT_HYPERCALL) {
			hypercall(vcpu);
			continue;
		}
		return gmem_get_ucall(vcpu, uc, want);
	}
}

/* What one KVM_RUN of gmem_try_run() ended with. */
enum gmem_run {
	GMEM_RUN_UCALL,		/* a ucall other than UCALL_ABORT, in *uc */
	GMEM_RUN_FAULT,		/* EFAULT with a KVM_EXIT_MEMORY_FAULT exit */
	GMEM_RUN_ERROR,		/* another failure; errno says which */
	GMEM_RUN_EXIT,		/* an exit other than KVM_EXIT_IO */
};

/*
 * Run @vcpu once, for callers that handle faults and unexpected exits
 * themselves; only a guest assertion is fatal.
 */
static inline enum gmem_run gmem_try_run(struct kvm_vcpu *vcpu,
					 struct ucall *uc)
{
	struct kvm_run *run = vcpu->run;

	if (_vcpu_run(vcpu)) {
		if (errno == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT)
			return GMEM_RUN_FAULT;
		return GMEM_RUN_ERROR;
	}
	if (run->exit_reason != KVM_EXIT_IO)
		return GMEM_RUN_EXIT;
	if (get_ucall(vcpu, uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(*uc);
	return GMEM_RUN_UCALL;
}

/*
 * The probe guest reads the qword at gmem_probe_gpa (identity mapped) and
 * reports the address and the value with GUEST_SYNC2(), forever.
 */
static uint64_t gmem_probe_gpa __maybe_unused;

static inline void gmem_probe_guest_code(void)
{
	for (;;) {
		uint64_t gpa = READ_ONCE(gmem_probe_gpa);

		GUEST_SYNC2(gpa, READ_ONCE(*(uint64_t *)gpa));
	}
}

/*
 * Let the probe guest of @vcpu read @gpa or, with @again, complete its
 * read of @gpa that faulted before.  On GMEM_RUN_UCALL with UCALL_SYNC,
 * uc->args[1] is the value the guest read.
 */
static inline enum gmem_run gmem_probe_read(struct kvm_vcpu *vcpu,
					    uint64_t gpa, bool again,
					    struct ucall *uc)
{
	enum gmem_run ret;

	if (!again) {
		gmem_probe_gpa = gpa;
		sync_global_to_guest(vcpu->vm, gmem_probe_gpa);
	}
	ret = gmem_try_run(vcpu, uc);
	if (ret == GMEM_RUN_UCALL && uc->cmd == UCALL_SYNC)
		TEST_ASSERT(uc->args[0] == gpa,
			    "Guest read 0x%lx, expected it to read 0x%lx",
			    uc->args[0], gpa);
	return ret;
}

static sigjmp_buf gmem_sigbus_jmp __maybe_unused;

static inline void gmem_on_sigbus(int sig)
{
	siglongjmp(gmem_sigbus_jmp, 1);
}

/*
 * Reads the qword at @p into *@got (if not NULL), or writes @val there if
 * @write, through a host mapping of a guest_memfd; returns false if the
 * access raised SIGBUS (the memory is the guest's, or past the end of the
 * file).  The SIGBUS handler is installed for the access only.
 */
static inline bool gmem_touch(uint64_t *p, bool write, uint64_t val, uint64_t *got)
{
	struct sigaction sa = { .sa_handler = gmem_on_sigbus }, old;
	bool ok = true;

	TEST_ASSERT(!sigaction(SIGBUS, &sa, &old), "sigaction(SIGBUS)");
	if (sigsetjmp(gmem_sigbus_jmp, 1))
		ok = false;
	else if (write)
		WRITE_ONCE(*p, val);
	else if (got)
		*got = READ_ONCE(*p);
	else
		(void)READ_ONCE(*p);
	TEST_ASSERT(!sigaction(SIGBUS, &old, NULL), "sigaction(SIGBUS)");
	return ok;
}

/*
 * The pattern of memory that backs @gpa: each qword holds @magic ORed with
 * the GPA of the qword, so that a qword shows where it belongs.
 */
static inline void gmem_fill_pattern(uint64_t *mem, uint64_t size,
				     uint64_t gpa, uint64_t magic)
{
	uint64_t i;

	for (i = 0; i < size / 8; i++)
		mem[i] = magic | (gpa + 8 * i);
}

/* The qwords of @size bytes at @mem that do not hold gmem_fill_pattern()'s. */
static inline uint64_t gmem_count_unlike(const uint64_t *mem, uint64_t size,
					 uint64_t gpa, uint64_t magic)
{
	uint64_t i, n = 0;

	for (i = 0; i < size / 8; i++)
		n += mem[i] != (magic | (gpa + 8 * i));
	return n;
}

/* CLOCK_MONOTONIC in microseconds, for timings. */
static inline double gmem_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* CLOCK_MONOTONIC in whole milliseconds, for deadlines. */
static inline int64_t gmem_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

/*
 * The default case of a getopt() loop: print the usage and exit, with 0
 * for -h and KSFT_FAIL for a bad option.
 */
static inline void __noreturn gmem_usage_exit(int opt, const char *name,
					      void (*usage)(const char *name))
{
	usage(name);
	exit(opt == 'h' ? KSFT_PASS : KSFT_FAIL);
}

/*
 * Memory-error injection through debugfs (CONFIG_HWPOISON_INJECT): writing
 * a pfn to corrupt-pfn poisons it, and the corrupt-filter-* files restrict
 * that to the page cache of one device.
 */
#define HWPOISON_DIR		"/sys/kernel/debug/hwpoison"
#define CORRUPT_PFN		HWPOISON_DIR "/corrupt-pfn"
#define FILTER_ENABLE		HWPOISON_DIR "/corrupt-filter-enable"
#define FILTER_DEV_MAJOR	HWPOISON_DIR "/corrupt-filter-dev-major"
#define FILTER_DEV_MINOR	HWPOISON_DIR "/corrupt-filter-dev-minor"
/* What the filter files hold when they filter nothing. */
#define FILTER_DEV_ANY		0xffffffffu

/* Writes @val in decimal to the file @path; 0 or a negative errno. */
static inline int gmem_write_u64(const char *path, uint64_t val)
{
	char buf[32];
	int fd, len, r;

	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%lu\n", val);
	r = write(fd, buf, len) == len ? 0 : -errno;
	close(fd);
	return r;
}

/* Reads the decimal number in the file @path. */
static inline uint64_t gmem_read_u64(const char *path)
{
	uint64_t val;
	FILE *f;

	f = fopen(path, "r");
	TEST_ASSERT(f, "open(%s) failed: %s", path, strerror(errno));
	TEST_ASSERT(fscanf(f, "%lu", &val) == 1, "cannot parse %s", path);
	fclose(f);
	return val;
}

/* Writes @val to the file @path, which must then read @val. */
static inline void gmem_set_u64(const char *path, uint64_t val)
{
	int r = gmem_write_u64(path, val);

	TEST_ASSERT(!r, "write %lu to %s: %s", val, path, strerror(-r));
	TEST_ASSERT_EQ(gmem_read_u64(path), val);
}

/* Back to the defaults: no filtering, corrupt-pfn disarmed for us. */
static inline void gmem_hwpoison_reset_filter(void)
{
	gmem_write_u64(FILTER_ENABLE, 0);
	gmem_write_u64(FILTER_DEV_MAJOR, FILTER_DEV_ANY);
	gmem_write_u64(FILTER_DEV_MINOR, FILTER_DEV_ANY);
}

/*
 * Restricts corrupt-pfn to the page cache of the superblock of guest_memfd
 * @fd, until gmem_hwpoison_reset_filter() (also run at exit); returns that
 * superblock's device.
 */
static inline dev_t gmem_hwpoison_filter_fd(int fd)
{
	struct stat st;

	TEST_ASSERT(!fstat(fd, &st), "fstat(guest_memfd) failed: %s",
		    strerror(errno));
	atexit(gmem_hwpoison_reset_filter);
	gmem_set_u64(FILTER_ENABLE, 0);
	gmem_set_u64(FILTER_DEV_MAJOR, major(st.st_dev));
	gmem_set_u64(FILTER_DEV_MINOR, minor(st.st_dev));
	gmem_set_u64(FILTER_ENABLE, 1);
	return st.st_dev;
}

/*
 * A busy loop of @loops iterations, to delay one side of a race.  Not
 * cpu_relax(): under TCG, PAUSE leaves the translated code.
 */
static inline void gmem_busy_delay(unsigned long loops)
{
	while (loops--)
		asm volatile("" ::: "memory");
}

/* How many gmem_busy_delay() iterations run per TSC cycle. */
static inline double gmem_busy_loops_per_cycle(void)
{
	const unsigned long loops = 1 << 20;
	uint64_t start = rdtsc();

	gmem_busy_delay(loops);
	return (double)loops / (rdtsc() - start + 1);
}

#endif /* SELFTEST_KVM_GUEST_MEMFD_COMMON_H */
