// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_security_test
 *
 * The two promises guest_memfd makes to a confidential guest:
 *
 * 1. Host userspace cannot read, write or map private memory by any path.
 *    A guest of a KVM_X86_SW_PROTECTED_VM writes a secret pattern into
 *    every page of a guest_memfd-backed memslot; the host then tries
 *    read(), pread(), readv(), preadv(), write(), pwrite(), shared and
 *    private mmap(), sendfile(), splice() and copy_file_range() on the
 *    guest_memfd, reads the memslot's shared alias (userspace_addr)
 *    directly, through /proc/self/mem and, from a forked child, through
 *    process_vm_readv() and /proc/PPID/mem.  Each file operation must fail
 *    with the errno of the stock 6.12 kernel, no output buffer, pipe or
 *    file may ever hold a word of the secret, the alias must read back
 *    exactly the host's own shared data, and the guest must find its
 *    secret intact afterwards.  Pages converted to shared show the shared
 *    alias, to the guest and to the host, never the private data.
 *
 * 2. Every page reaches a guest zeroed.  The guest checks every qword of
 *    pages faulted in fresh by a read or by a write (no fallocate()),
 *    pages preallocated with fallocate(KEEP_SIZE) and never touched, and
 *    pages of the secret after PUNCH_HOLE: two pages straddling a 2 MiB
 *    boundary, a whole 2 MiB-aligned range and an unaligned range across
 *    another 2 MiB boundary, plus a page punched while shared, after a
 *    shared/private round trip.  guest_memfd_punch_zero_test covers small
 *    punch and re-allocate patterns; this test covers what it does not.
 *
 * The results, errnos included, must be the same on the C and the Rust
 * guest_memfd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <linux/falloc.h>
#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define SLOT			10
#define GPA_BASE		SZ_4G
#define GMEM_SIZE		(8ull * SZ_1M)
#define GMEM_NPAGES		(GMEM_SIZE / PAGE_SIZE)
#define QWORDS_PER_PAGE		(PAGE_SIZE / sizeof(uint64_t))

/*
 * The guest's secret and the host's shared data: a magic in the top 28
 * bits, the qword's GPA in the rest, so that any word of either is
 * recognised wherever it turns up.
 */
#define MAGIC_MASK		0xfffffff000000000ull
#define SECRET_MAGIC		0x5ec12e7000000000ull
#define SHARED_MAGIC		0x54a12ed000000000ull
#define SECRET(gpa)		(SECRET_MAGIC | (gpa))
#define SHARED(gpa)		(SHARED_MAGIC | (gpa))

/* Offsets into the guest_memfd (and the memslot). */
#define FRESH_READ		0			/* [0, 2M): read first */
#define PREALLOC		SZ_2M			/* [2M, 4M): fallocate()d */
#define FRESH_WRITE		(4 * SZ_1M)		/* [4M, 6M): written first */
#define MIXED			(6 * SZ_1M)		/* [6M, 8M): partly fallocate()d */
#define MIXED_ALLOC		(MIXED + PAGE_SIZE)
#define MIXED_ALLOC_SIZE	(SZ_1M - PAGE_SIZE)
/* A page and a range converted to shared and back, inside the next punch. */
#define CONV_PAGE		(FRESH_WRITE + 5 * PAGE_SIZE)
#define CONV_RANGE		(FRESH_WRITE + SZ_1M)
#define CONV_RANGE_SIZE		(16 * PAGE_SIZE)

struct hole {
	uint64_t offset;
	uint64_t size;
	const char *desc;
};

static const struct hole holes[] = {
	{ SZ_2M - PAGE_SIZE, 2 * PAGE_SIZE, "two pages straddling the 2 MiB boundary" },
	{ 4 * SZ_1M, SZ_2M, "the whole 2 MiB range [4M, 6M)" },
	{ 6 * SZ_1M - 3 * PAGE_SIZE, SZ_1M + 4 * PAGE_SIZE,
	  "[6M - 12K, 7M + 4K), across the 6 MiB boundary" },
};

enum guest_op {
	OP_CHECK_ZERO = 1,
	OP_WRITE_CHECK_ZERO,
	OP_FILL_SECRET,
	OP_CHECK_SECRET,
	OP_CHECK_SHARED,
};

struct guest_cmd {
	uint64_t op;
	uint64_t gpa;
	uint64_t npages;
};

static struct guest_cmd cmd;

/* Check every qword of [gpa, gpa + npages pages); report the first bad one. */
static void guest_check(uint64_t op, uint64_t gpa, uint64_t npages)
{
	uint64_t end = gpa + npages * PAGE_SIZE, bad = 0, bad_gpa = 0, bad_val = 0;
	uint64_t a;

	for (a = gpa; a < end; a += 8) {
		uint64_t *p = (uint64_t *)a;
		uint64_t want, val;

		if (op == OP_WRITE_CHECK_ZERO && !(a & (PAGE_SIZE - 1))) {
			/* The first access to the page is a write of its last qword. */
			WRITE_ONCE(*(uint64_t *)(a + PAGE_SIZE - 8),
				   SECRET(a + PAGE_SIZE - 8));
		}
		switch (op) {
		case OP_CHECK_SECRET:
			want = SECRET(a);
			break;
		case OP_CHECK_SHARED:
			want = SHARED(a);
			break;
		case OP_WRITE_CHECK_ZERO:
			want = (a & (PAGE_SIZE - 1)) == PAGE_SIZE - 8 ? SECRET(a) : 0;
			break;
		default:
			want = 0;
			break;
		}
		val = READ_ONCE(*p);
		if (val != want) {
			if (!bad++) {
				bad_gpa = a;
				bad_val = val;
			}
		}
	}
	GUEST_SYNC4(op, bad, bad_gpa, bad_val);
}

static void guest_code(void)
{
	for (;;) {
		uint64_t op = READ_ONCE(cmd.op), gpa = READ_ONCE(cmd.gpa);
		uint64_t npages = READ_ONCE(cmd.npages);
		uint64_t a;

		if (op == OP_FILL_SECRET) {
			for (a = gpa; a < gpa + npages * PAGE_SIZE; a += 8)
				WRITE_ONCE(*(uint64_t *)a, SECRET(a));
			GUEST_SYNC4(op, 0, 0, 0);
		} else {
			guest_check(op, gpa, npages);
		}
	}
}

static struct kvm_vm *vm;
static struct kvm_vcpu *vcpu;
static int gmem_fd;
static uint64_t *alias;

static const char *op_name(uint64_t op)
{
	switch (op) {
	case OP_CHECK_ZERO: return "zeros";
	case OP_WRITE_CHECK_ZERO: return "zeros after a first write";
	case OP_CHECK_SECRET: return "the secret";
	case OP_CHECK_SHARED: return "the shared data";
	default: return "?";
	}
}

/*
 * The guest runs @op over @size bytes at memslot offset @offset; returns
 * the number of qwords that were not as expected (0 for a fill).
 */
static uint64_t guest_do(uint64_t op, uint64_t offset, uint64_t size)
{
	struct ucall uc;

	cmd.op = op;
	cmd.gpa = GPA_BASE + offset;
	cmd.npages = size / PAGE_SIZE;
	sync_global_to_guest(vm, cmd);

	gmem_run_to_ucall(vcpu, &uc, BIT(UCALL_SYNC), NULL);
	TEST_ASSERT(uc.args[0] == op, "Guest did op %lu, expected %lu",
		    uc.args[0], op);
	if (uc.args[1])
		ksft_print_msg("guest: %lu qwords of [0x%lx, 0x%lx) not %s, first at gpa 0x%lx: 0x%lx\n",
			       uc.args[1], cmd.gpa, cmd.gpa + size,
			       op_name(op), uc.args[2], uc.args[3]);
	return uc.args[1];
}

static bool guest_expect(uint64_t op, uint64_t offset, uint64_t size)
{
	return !guest_do(op, offset, size);
}

/* Qwords of the secret in @buf. */
static uint64_t count_secret(const void *buf, size_t len)
{
	const uint64_t *q = buf;
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < len / 8; i++)
		n += (q[i] & MAGIC_MASK) == SECRET_MAGIC;
	return n;
}

/* Qwords of @buf, a copy of the alias at @offset, that are not SHARED(). */
static uint64_t count_not_shared(const void *buf, uint64_t offset, size_t len)
{
	return gmem_count_unlike(buf, len, GPA_BASE + offset, SHARED_MAGIC);
}

static int err_of(long ret)
{
	return ret < 0 ? errno : 0;
}

static const char *errname(int err)
{
	return err ? strerrorname_np(err) : "success";
}

/* One host access to the guest_memfd: errno as on stock 6.12, no secret. */
static void report_access(const char *what, int err, int want, uint64_t leaked)
{
	if (err != want)
		ksft_print_msg("%s: got %s, expected %s\n", what, errname(err),
			       errname(want));
	if (leaked)
		ksft_print_msg("%s: %lu qwords of the secret reached the host\n",
			       what, leaked);
	ksft_test_result(err == want && !leaked, "host %s -> %s, no secret\n",
			 what, errname(want));
}

/* Host buffer for all reads; not in .bss, which the guest image includes. */
#define BUF_SIZE		SZ_1M
static char *buf;

static void test_file_reads(void)
{
	struct iovec iov[2] = {
		{ buf, BUF_SIZE / 2 }, { buf + BUF_SIZE / 2, BUF_SIZE / 2 },
	};
	int err;

	memset(buf, 0, BUF_SIZE);
	err = err_of(read(gmem_fd, buf, BUF_SIZE));
	report_access("read()", err, EINVAL, count_secret(buf, BUF_SIZE));
	err = err_of(pread(gmem_fd, buf, BUF_SIZE, PREALLOC));
	report_access("pread()", err, ESPIPE, count_secret(buf, BUF_SIZE));
	err = err_of(readv(gmem_fd, iov, 2));
	report_access("readv()", err, EINVAL, count_secret(buf, BUF_SIZE));
	err = err_of(preadv(gmem_fd, iov, 2, FRESH_READ));
	report_access("preadv()", err, ESPIPE, count_secret(buf, BUF_SIZE));
}

static void test_file_writes(void)
{
	int err;

	memset(buf, 0, BUF_SIZE);
	err = err_of(write(gmem_fd, buf, PAGE_SIZE));
	report_access("write()", err, EINVAL, 0);
	err = err_of(pwrite(gmem_fd, buf, PAGE_SIZE, PREALLOC));
	report_access("pwrite()", err, ESPIPE, 0);
}

static void test_file_mmap(void)
{
	static const struct { int flags; const char *what; } maps[] = {
		{ MAP_SHARED, "mmap(MAP_SHARED)" },
		{ MAP_PRIVATE, "mmap(MAP_PRIVATE)" },
		{ MAP_SHARED_VALIDATE, "mmap(MAP_SHARED_VALIDATE)" },
	};
	int i;

	for (i = 0; i < ARRAY_SIZE(maps); i++) {
		void *p = mmap(NULL, GMEM_SIZE, PROT_READ, maps[i].flags,
			       gmem_fd, 0);
		uint64_t leaked = 0;
		int err = p == MAP_FAILED ? errno : 0;

		if (p != MAP_FAILED) {
			leaked = count_secret(p, GMEM_SIZE);
			munmap(p, GMEM_SIZE);
		}
		report_access(maps[i].what, err, ENODEV, leaked);
	}
}

/* Whatever a failed transfer left in the pipe. */
static uint64_t drain_pipe(int fd)
{
	uint64_t leaked = 0;
	ssize_t n;

	while ((n = read(fd, buf, BUF_SIZE)) > 0)
		leaked += count_secret(buf, n);
	return leaked;
}

static void test_file_transfers(void)
{
	loff_t off, off_out;
	int pfd[2], out, err;
	uint64_t leaked;
	ssize_t n;

	TEST_ASSERT(!pipe2(pfd, O_NONBLOCK), "pipe2() failed");
	out = memfd_create("gmem_security_out", 0);
	TEST_ASSERT(out >= 0, "memfd_create() failed");

	err = err_of(sendfile(pfd[1], gmem_fd, NULL, SZ_64K));
	report_access("sendfile() to a pipe", err, EINVAL, drain_pipe(pfd[0]));
	off = PREALLOC;
	err = err_of(sendfile(pfd[1], gmem_fd, &off, SZ_64K));
	report_access("sendfile() at an offset", err, ESPIPE, drain_pipe(pfd[0]));
	err = err_of(sendfile(out, gmem_fd, NULL, SZ_64K));
	report_access("sendfile() to a memfd", err, EINVAL, 0);

	err = err_of(splice(gmem_fd, NULL, pfd[1], NULL, SZ_64K, SPLICE_F_NONBLOCK));
	report_access("splice() to a pipe", err, EINVAL, drain_pipe(pfd[0]));
	off = PREALLOC;
	err = err_of(splice(gmem_fd, &off, pfd[1], NULL, SZ_64K, SPLICE_F_NONBLOCK));
	report_access("splice() at an offset", err, EINVAL, drain_pipe(pfd[0]));

	off = PREALLOC;
	off_out = 0;
	err = err_of(copy_file_range(gmem_fd, &off, out, &off_out, SZ_64K, 0));
	report_access("copy_file_range() to a memfd", err, EXDEV, 0);
	err = err_of(copy_file_range(gmem_fd, NULL, out, NULL, SZ_64K, 0));
	report_access("copy_file_range() at the file position", err, EXDEV, 0);

	/* Whatever reached the memfd. */
	leaked = 0;
	off = 0;
	while ((n = pread(out, buf, BUF_SIZE, off)) > 0) {
		leaked += count_secret(buf, n);
		off += n;
	}
	ksft_test_result(!leaked, "nothing of the secret in the memfd (%ld bytes)\n",
			 (long)off);

	close(out);
	close(pfd[0]);
	close(pfd[1]);
}

/* Read the alias through a /proc/PID/mem file: qwords not SHARED() and leaked. */
static int scan_proc_mem(const char *path, uint64_t *bad, uint64_t *leaked)
{
	uint64_t off;
	int fd = open(path, O_RDONLY);

	*bad = *leaked = 0;
	if (fd < 0)
		return errno;
	for (off = 0; off < GMEM_SIZE; off += BUF_SIZE) {
		ssize_t n = pread(fd, buf, BUF_SIZE,
				  (off_t)(uintptr_t)alias + off);

		if (n != BUF_SIZE) {
			close(fd);
			return n < 0 ? errno : EIO;
		}
		*bad += count_not_shared(buf, off, n);
		*leaked += count_secret(buf, n);
	}
	close(fd);
	return 0;
}

static void report_alias(const char *what, int err, uint64_t bad, uint64_t leaked)
{
	if (err)
		ksft_print_msg("%s: %s\n", what, strerror(err));
	if (bad || leaked)
		ksft_print_msg("%s: %lu qwords not the shared data, %lu of the secret\n",
			       what, bad, leaked);
	ksft_test_result(!err && !bad && !leaked,
			 "%s of the whole shared alias reads the shared data only\n",
			 what);
}

static void test_alias_self(const char *when)
{
	uint64_t bad, leaked;
	char what[128];
	int err;

	snprintf(what, sizeof(what), "%s: direct read", when);
	report_alias(what, 0, count_not_shared(alias, 0, GMEM_SIZE),
		     count_secret(alias, GMEM_SIZE));
	err = scan_proc_mem("/proc/self/mem", &bad, &leaked);
	snprintf(what, sizeof(what), "%s: /proc/self/mem", when);
	report_alias(what, err, bad, leaked);
}

struct child_report {
	bool vm_unavailable;
	int vm_err, mem_err;
	uint64_t vm_bad, vm_leaked, mem_bad, mem_leaked;
};

/* In a forked child: read the parent's alias with process_vm_readv(). */
static void child_scan(pid_t parent, struct child_report *rep)
{
	struct iovec self_local = { buf, 8 }, self_remote = { &rep->vm_bad, 8 };
	char path[64];
	uint64_t off;

	/* Can the child read its own memory this way at all? */
	if (process_vm_readv(getpid(), &self_local, 1, &self_remote, 1, 0) != 8) {
		rep->vm_unavailable = true;
		rep->vm_err = errno;
	}
	for (off = 0; !rep->vm_unavailable && off < GMEM_SIZE; off += BUF_SIZE) {
		struct iovec local = { buf, BUF_SIZE };
		struct iovec remote = { (char *)alias + off, BUF_SIZE };
		ssize_t n = process_vm_readv(parent, &local, 1, &remote, 1, 0);

		if (n != BUF_SIZE) {
			rep->vm_err = n < 0 ? errno : EIO;
			break;
		}
		rep->vm_bad += count_not_shared(buf, off, n);
		rep->vm_leaked += count_secret(buf, n);
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", parent);
	rep->mem_err = scan_proc_mem(path, &rep->mem_bad, &rep->mem_leaked);
}

static void test_alias_child(void)
{
	struct child_report rep = { 0 };
	int pfd[2], status;
	pid_t pid;

	TEST_ASSERT(!pipe(pfd), "pipe() failed");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed");
	if (!pid) {
		close(pfd[0]);
		child_scan(getppid(), &rep);
		if (write(pfd[1], &rep, sizeof(rep)) != sizeof(rep))
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	TEST_ASSERT(read(pfd[0], &rep, sizeof(rep)) == sizeof(rep),
		    "no report from the child");
	close(pfd[0]);
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    !WEXITSTATUS(status), "child failed");
	/* process_vm_readv() needs CONFIG_CROSS_MEMORY_ATTACH. */
	if (rep.vm_unavailable)
		ksft_test_result_skip("child: process_vm_readv() unavailable: %s\n",
				      strerror(rep.vm_err));
	else
		report_alias("child: process_vm_readv() of the parent",
			     rep.vm_err, rep.vm_bad, rep.vm_leaked);
	report_alias("child: /proc/PPID/mem of the parent", rep.mem_err,
		     rep.mem_bad, rep.mem_leaked);
}

static void set_attrs(uint64_t offset, uint64_t size, bool private)
{
	if (private)
		vm_mem_set_private(vm, GPA_BASE + offset, size);
	else
		vm_mem_set_shared(vm, GPA_BASE + offset, size);
}

static int gmem_fallocate(int mode, uint64_t offset, uint64_t size)
{
	return fallocate(gmem_fd, mode, offset, size) ? errno : 0;
}

static void punch(uint64_t offset, uint64_t size)
{
	int err = gmem_fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
				 offset, size);

	TEST_ASSERT(!err, "PUNCH_HOLE [0x%lx, 0x%lx) failed: %s", offset,
		    offset + size, strerror(err));
}

static void test_fresh_pages(void)
{
	int err;

	err = gmem_fallocate(0, PREALLOC, SZ_2M);
	ksft_test_result(err == EOPNOTSUPP,
			 "fallocate(mode 0) -> %s (expected EOPNOTSUPP)\n",
			 errname(err));

	ksft_test_result(guest_expect(OP_CHECK_ZERO, FRESH_READ, SZ_2M),
			 "2 MiB of fresh private pages, first access a read, read zeros\n");
	ksft_test_result(guest_expect(OP_WRITE_CHECK_ZERO, FRESH_WRITE, SZ_2M),
			 "2 MiB of fresh private pages, first access a write, hold zeros elsewhere\n");

	err = gmem_fallocate(FALLOC_FL_KEEP_SIZE, PREALLOC, SZ_2M);
	err = err ?: gmem_fallocate(FALLOC_FL_KEEP_SIZE, MIXED_ALLOC,
				    MIXED_ALLOC_SIZE);
	ksft_test_result(!err && guest_expect(OP_CHECK_ZERO, PREALLOC, SZ_2M),
			 "2 MiB preallocated with fallocate(KEEP_SIZE), never touched, read zeros\n");
	ksft_test_result(guest_expect(OP_CHECK_ZERO, MIXED, SZ_2M),
			 "2 MiB partly preallocated at unaligned offsets, partly fresh, read zeros\n");
}

static void test_host_access(void)
{
	guest_do(OP_FILL_SECRET, 0, GMEM_SIZE);
	ksft_test_result(guest_expect(OP_CHECK_SECRET, 0, GMEM_SIZE),
			 "guest wrote the secret into all %llu private pages\n",
			 GMEM_NPAGES);

	test_file_reads();
	test_file_writes();
	test_file_mmap();
	test_file_transfers();
	test_alias_self("private");
	test_alias_child();

	ksft_test_result(guest_expect(OP_CHECK_SECRET, 0, GMEM_SIZE),
			 "the guest's secret is intact after the host's attempts\n");
}

static void test_conversions(void)
{
	bool ok;

	set_attrs(CONV_PAGE, PAGE_SIZE, false);
	set_attrs(CONV_RANGE, CONV_RANGE_SIZE, false);
	ok = guest_expect(OP_CHECK_SHARED, CONV_PAGE, PAGE_SIZE);
	ok &= guest_expect(OP_CHECK_SHARED, CONV_RANGE, CONV_RANGE_SIZE);
	ksft_test_result(ok, "pages converted to shared show the guest the shared data, not the secret\n");
	test_alias_self("after private -> shared");

	/*
	 * 6.12 does not touch guest_memfd content on conversion: back to
	 * private, the guest finds its old data (a VMM punches to discard it).
	 */
	set_attrs(CONV_PAGE, PAGE_SIZE, true);
	set_attrs(CONV_RANGE, CONV_RANGE_SIZE, true);
	ksft_test_result(guest_expect(OP_CHECK_SECRET, FRESH_WRITE, SZ_2M),
			 "back to private without a punch, the guest finds its data\n");

	set_attrs(CONV_PAGE, PAGE_SIZE, false);
	punch(CONV_PAGE, PAGE_SIZE);
	set_attrs(CONV_PAGE, PAGE_SIZE, true);
	ok = guest_expect(OP_CHECK_ZERO, CONV_PAGE, PAGE_SIZE);
	ok &= guest_expect(OP_CHECK_SECRET, CONV_PAGE - PAGE_SIZE, PAGE_SIZE);
	ok &= guest_expect(OP_CHECK_SECRET, CONV_PAGE + PAGE_SIZE, PAGE_SIZE);
	ksft_test_result(ok, "a page punched while shared reads zeros once private again, its neighbours keep the secret\n");
}

static bool punched(uint64_t offset)
{
	int i;

	if (offset == CONV_PAGE)
		return true;
	for (i = 0; i < ARRAY_SIZE(holes); i++)
		if (offset >= holes[i].offset &&
		    offset < holes[i].offset + holes[i].size)
			return true;
	return false;
}

static void test_punched_pages(void)
{
	uint64_t off, start;
	bool ok = true;
	int i;

	for (i = 0; i < ARRAY_SIZE(holes); i++) {
		punch(holes[i].offset, holes[i].size);
		ksft_test_result(guest_expect(OP_CHECK_ZERO, holes[i].offset,
					      holes[i].size),
				 "punched %s: every qword reads zero\n",
				 holes[i].desc);
	}

	/* Everything else still holds the secret, in runs of like pages. */
	for (start = 0; start < GMEM_SIZE; start = off) {
		bool zero = punched(start);

		for (off = start; off < GMEM_SIZE && punched(off) == zero;
		     off += PAGE_SIZE)
			;
		ok &= guest_expect(zero ? OP_CHECK_ZERO : OP_CHECK_SECRET,
				   start, off - start);
	}
	ksft_test_result(ok, "after the punches, exactly the punched pages read zero\n");
	test_alias_self("after the punches");
}

#define NR_TESTS	(5 + 1 + 4 + 2 + 3 + 7 + 1 + 2 + 2 + 1 + \
			 1 + 2 + 1 + 1 + ARRAY_SIZE(holes) + 1 + 2)

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) &
		     BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));

	buf = malloc(BUF_SIZE);
	TEST_ASSERT(buf, "malloc() failed");

	ksft_print_header();
	ksft_set_plan(NR_TESTS);

	vm = __vm_create_shape_with_one_vcpu(shape, &vcpu, 64, guest_code);
	gmem_fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);
	alias = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(alias != MAP_FAILED, "mmap() failed");
	gmem_fill_pattern(alias, GMEM_SIZE, GPA_BASE, SHARED_MAGIC);

	vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA_BASE,
				   GMEM_SIZE, alias, gmem_fd, 0);
	virt_map(vm, GPA_BASE, GPA_BASE, GMEM_NPAGES);
	set_attrs(0, GMEM_SIZE, true);

	test_fresh_pages();
	test_host_access();
	test_conversions();
	test_punched_pages();

	kvm_vm_free(vm);
	close(gmem_fd);
	munmap(alias, GMEM_SIZE);
	free(buf);
	ksft_finished();
}
