// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_hwpoison_test
 *
 * A memory error in a guest_memfd page must not take the host down: the
 * page stays in the file, its mappings are zapped, and the vCPU that
 * touches it next gets KVM_RUN = -1 with errno EHWPOISON and a
 * KVM_EXIT_MEMORY_FAULT exit for the page (private flag, gpa, size).  The
 * other pages of the file keep working, and punching a hole over the
 * poisoned page gives the guest a fresh, zeroed page there.
 *
 * guest_memfd cannot be mmapped in 6.12, so MADV_HWPOISON is not an
 * option.  The error is injected through debugfs instead: the hwpoison
 * filter is restricted to page-cache pages of the superblock guest_memfd
 * inodes live on (the anon-inode superblock, st_dev of the guest_memfd;
 * other anon inodes have no page cache), and every PFN of System RAM is
 * written to corrupt-pfn until one page got poisoned.
 *
 * One vCPU per page: vCPU i writes page i of the guest_memfd (allocating
 * it), then reads it back and reports how many qwords match and how many
 * are zero, then writes it again, and so on.  The vCPU whose page got
 * poisoned is stuck on its read until the hole is punched.
 */
#include <errno.h>
#include <fcntl.h>
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

#define GMEM_SLOT		10
#define GMEM_GPA		(1ull << 32)
#define NR_PAGES		4
#define GMEM_SIZE		(NR_PAGES * PAGE_SIZE)
#define QWORDS_PER_PAGE		((uint64_t)(PAGE_SIZE / sizeof(uint64_t)))

/* Check HardwareCorrupted at least this often while walking PFNs. */
#define MEMINFO_CHECK_PFNS	4096

enum {
	STAGE_WRITTEN = 1,
	STAGE_READ,
};

static uint64_t page_gpa(int page)
{
	return GMEM_GPA + page * PAGE_SIZE;
}

static uint64_t pattern(uint64_t page, uint64_t gen, uint64_t qword)
{
	return (0xa5ull << 56) | (gen << 40) | (page << 32) | qword;
}

/*
 * vCPU @page: write generation gen of the pattern into page @page, then
 * read it back and report the qwords that match and the qwords that are 0.
 */
static void guest_code(uint64_t page)
{
	uint64_t *mem = (uint64_t *)page_gpa(page);
	uint64_t gen, q, val, match, zero;

	for (gen = 1;; gen++) {
		for (q = 0; q < QWORDS_PER_PAGE; q++)
			WRITE_ONCE(mem[q], pattern(page, gen, q));
		GUEST_SYNC_ARGS(STAGE_WRITTEN, page, gen, 0, 0);

		match = 0;
		zero = 0;
		for (q = 0; q < QWORDS_PER_PAGE; q++) {
			val = READ_ONCE(mem[q]);
			match += val == pattern(page, gen, q);
			zero += val == 0;
		}
		GUEST_SYNC_ARGS(STAGE_READ, page, gen, match, zero);
	}
}

struct sync {
	uint64_t stage, page, gen, match, zero;
};

/* The GUEST_SYNC vCPU @page exited with must be @stage of @gen. */
static struct sync get_sync(struct kvm_vcpu *vcpu, int page, uint64_t stage,
			    uint64_t gen)
{
	struct ucall uc;
	struct sync s;

	gmem_get_ucall(vcpu, &uc, BIT(UCALL_SYNC));
	s = (struct sync){ uc.args[1], uc.args[2], uc.args[3], uc.args[4],
			   uc.args[5] };
	TEST_ASSERT(s.stage == stage && s.page == page && s.gen == gen,
		    "vCPU %d: got stage %lu page %lu gen %lu, expected stage %lu page %d gen %lu",
		    page, s.stage, s.page, s.gen, stage, page, gen);
	return s;
}

/* Run vCPU @page to its next GUEST_SYNC, which must be @stage of @gen. */
static struct sync run_to_sync(struct kvm_vcpu *vcpu, int page,
			       uint64_t stage, uint64_t gen)
{
	vcpu_run(vcpu);
	return get_sync(vcpu, page, stage, gen);
}

static void assert_intact(struct sync s)
{
	TEST_ASSERT(s.match == QWORDS_PER_PAGE,
		    "page %lu gen %lu: %lu of %lu qwords intact (%lu zero)",
		    s.page, s.gen, s.match, QWORDS_PER_PAGE, s.zero);
}

/* The read of @page must find generation @gen intact. */
static void run_to_intact_read(struct kvm_vcpu *vcpu, int page, uint64_t gen)
{
	assert_intact(run_to_sync(vcpu, page, STAGE_READ, gen));
}

/* KVM_RUN failed with EHWPOISON: the exit must describe private @page. */
static void assert_hwpoison_exit(struct kvm_vcpu *vcpu, int page)
{
	struct kvm_run *run = vcpu->run;

	TEST_ASSERT(run->exit_reason == KVM_EXIT_MEMORY_FAULT,
		    "page %d: exit reason %u (%s), expected KVM_EXIT_MEMORY_FAULT",
		    page, run->exit_reason, exit_reason_str(run->exit_reason));
	TEST_ASSERT_EQ(run->memory_fault.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	TEST_ASSERT_EQ(run->memory_fault.gpa, page_gpa(page));
	TEST_ASSERT_EQ(run->memory_fault.size, PAGE_SIZE);
}

/* KVM_RUN of the vCPU touching poisoned @page must fail with EHWPOISON. */
static void assert_run_hwpoison(struct kvm_vcpu *vcpu, int page)
{
	int r = __vcpu_run(vcpu);

	TEST_ASSERT(r == -1 && errno == EHWPOISON,
		    "page %d: KVM_RUN returned %d (%s), expected -1 (EHWPOISON)",
		    page, r, r ? strerror(errno) : "no error");
	assert_hwpoison_exit(vcpu, page);
}

/* KVM_PRE_FAULT_MEMORY of @page: 0 or -errno. */
static int pre_fault_page(struct kvm_vcpu *vcpu, int page)
{
	struct kvm_pre_fault_memory range = {
		.gpa = page_gpa(page),
		.size = PAGE_SIZE,
	};

	return __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range) ? -errno : 0;
}

static void gmem_fallocate(int fd, int mode, int page)
{
	int r = fallocate(fd, mode, page * PAGE_SIZE, PAGE_SIZE);

	TEST_ASSERT(!r, "fallocate(%s) of page %d failed: %s",
		    mode & FALLOC_FL_PUNCH_HOLE ? "PUNCH_HOLE" : "ALLOCATE",
		    page, strerror(errno));
}

/* HardwareCorrupted from /proc/meminfo, in kB. */
static uint64_t hw_corrupted_kb(void)
{
	char line[128];
	uint64_t kb;
	FILE *f;

	f = fopen("/proc/meminfo", "r");
	TEST_ASSERT(f, "open(/proc/meminfo) failed: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HardwareCorrupted: %lu kB", &kb) == 1) {
			fclose(f);
			return kb;
		}
	}
	fclose(f);
	TEST_FAIL("no HardwareCorrupted in /proc/meminfo");
}

struct poison_result {
	uint64_t pfn;
	int err;		/* errno of the write that poisoned it, or 0 */
	uint64_t walked;
	uint64_t nr_ok, nr_enxio;
};

/*
 * Write the PFNs of System RAM to corrupt-pfn, lowest first, until the
 * HardwareCorrupted count grows.  With the filter set up, a write returns
 * 0 for a page it skips (not on the LRU, or not in the guest_memfd
 * superblock), ENXIO for a PFN without a struct page, and what
 * memory_failure() returns for a page of the guest_memfd.
 */
static struct poison_result poison_one_page(uint64_t hwc_before)
{
	struct poison_result res = { 0 };
	char line[256], buf[32];
	uint64_t start, end, pfn, since_check = 0;
	FILE *iomem;
	int fd, len;

	fd = open(CORRUPT_PFN, O_WRONLY);
	TEST_ASSERT(fd >= 0, "open(%s) failed: %s", CORRUPT_PFN, strerror(errno));
	iomem = fopen("/proc/iomem", "r");
	TEST_ASSERT(iomem, "open(/proc/iomem) failed: %s", strerror(errno));

	while (fgets(line, sizeof(line), iomem)) {
		/* Top-level "start-end : System RAM" lines only. */
		if (line[0] == ' ' || !strstr(line, ": System RAM"))
			continue;
		TEST_ASSERT(sscanf(line, "%lx-%lx", &start, &end) == 2,
			    "cannot parse /proc/iomem line '%s'", line);
		TEST_ASSERT(end > start, "/proc/iomem shows no addresses (not root?)");

		for (pfn = start >> PAGE_SHIFT; pfn <= end >> PAGE_SHIFT; pfn++) {
			bool check;

			len = snprintf(buf, sizeof(buf), "%lu\n", pfn);
			res.walked++;
			if (write(fd, buf, len) == len) {
				res.nr_ok++;
				res.err = 0;
				check = ++since_check >= MEMINFO_CHECK_PFNS;
			} else if (errno == ENXIO) {
				res.nr_enxio++;
				continue;
			} else {
				res.err = errno;
				check = true;
			}
			if (!check)
				continue;

			since_check = 0;
			if (hw_corrupted_kb() != hwc_before) {
				TEST_ASSERT(res.err,
					    "a page up to pfn %#lx got poisoned, but corrupt-pfn returned 0 for it",
					    pfn);
				res.pfn = pfn;
				goto out;
			}
			TEST_ASSERT(!res.err,
				    "corrupt-pfn %#lx: %s, but nothing was poisoned",
				    pfn, strerror(res.err));
		}
	}
	TEST_ASSERT(hw_corrupted_kb() == hwc_before,
		    "a page got poisoned, but corrupt-pfn returned 0 for it");
	TEST_FAIL("walked %lu PFNs (%lu written, %lu ENXIO), no guest_memfd page got poisoned",
		  res.walked, res.nr_ok, res.nr_enxio);
out:
	fclose(iomem);
	close(fd);
	return res;
}

int main(int argc, char *argv[])
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct kvm_vcpu *vcpus[NR_PAGES];
	struct poison_result res;
	struct timespec start, end;
	uint64_t hwc_before, hwc_after;
	bool pre_fault;
	struct kvm_vm *vm;
	dev_t dev;
	struct sync s;
	int fd, i, r, poisoned = -1;
	void *hva;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	__TEST_REQUIRE(!access(CORRUPT_PFN, W_OK) && !access(FILTER_ENABLE, W_OK),
		       "no %s (needs CONFIG_HWPOISON_INJECT, debugfs mounted and root): %s",
		       CORRUPT_PFN, strerror(errno));
	pre_fault = kvm_check_cap(KVM_CAP_PRE_FAULT_MEMORY);

	ksft_print_header();
	ksft_set_plan(7);

	vm = __vm_create_with_vcpus(shape, NR_PAGES, 0, guest_code, vcpus);
	for (i = 0; i < NR_PAGES; i++)
		vcpu_args_set(vcpus[i], 1, (uint64_t)i);

	fd = vm_create_guest_memfd(vm, GMEM_SIZE, 0);
	hva = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(hva != MAP_FAILED, "mmap() failed");
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD,
				   GMEM_GPA, GMEM_SIZE, hva, fd, 0);
	vm_mem_set_private(vm, GMEM_GPA, GMEM_SIZE);
	virt_map(vm, GMEM_GPA, GMEM_GPA, NR_PAGES);

	/* Each vCPU allocates its page by writing it, and reads it back. */
	for (i = 0; i < NR_PAGES; i++) {
		run_to_sync(vcpus[i], i, STAGE_WRITTEN, 1);
		run_to_intact_read(vcpus[i], i, 1);
		run_to_sync(vcpus[i], i, STAGE_WRITTEN, 2);
	}
	ksft_test_result_pass("%d vCPUs wrote and read back their private page\n",
			      NR_PAGES);

	/* Only page-cache pages of the guest_memfd's superblock. */
	dev = gmem_hwpoison_filter_fd(fd);
	ksft_print_msg("hwpoison filter on dev %u:%u\n", major(dev), minor(dev));

	hwc_before = hw_corrupted_kb();
	clock_gettime(CLOCK_MONOTONIC, &start);
	res = poison_one_page(hwc_before);
	clock_gettime(CLOCK_MONOTONIC, &end);
	hwc_after = hw_corrupted_kb();
	ksft_print_msg("walked %lu PFNs in %.2f s: %lu written (0), %lu ENXIO, then pfn %#lx: %s\n",
		       res.walked, (end.tv_sec - start.tv_sec) +
		       (end.tv_nsec - start.tv_nsec) / 1e9, res.nr_ok,
		       res.nr_enxio, res.pfn,
		       res.err ? strerror(res.err) : "success");
	/* stock C: memory_failure() reports MF_DELAYED as a failure */
	TEST_ASSERT(res.err == EBUSY,
		    "corrupt-pfn %#lx poisoned the page but returned %s, expected EBUSY",
		    res.pfn, res.err ? strerror(res.err) : "success");
	TEST_ASSERT(hwc_after - hwc_before == PAGE_SIZE / 1024,
		    "HardwareCorrupted grew by %lu kB, expected %llu",
		    hwc_after - hwc_before, PAGE_SIZE / 1024);
	ksft_test_result_pass("poisoned pfn %#lx: corrupt-pfn EBUSY, HardwareCorrupted +%lu kB\n",
			      res.pfn, hwc_after - hwc_before);

	/*
	 * Which one?  Every vCPU reads its page: exactly one must fail, and
	 * keep failing, the others must find their data intact.
	 */
	for (i = 0; i < NR_PAGES; i++) {
		r = __vcpu_run(vcpus[i]);
		if (r == -1 && errno == EHWPOISON) {
			TEST_ASSERT(poisoned < 0, "pages %d and %d both poisoned",
				    poisoned, i);
			assert_hwpoison_exit(vcpus[i], i);
			poisoned = i;
			continue;
		}
		TEST_ASSERT(!r, "page %d: KVM_RUN failed: %s", i, strerror(errno));
		assert_intact(get_sync(vcpus[i], i, STAGE_READ, 2));
	}
	TEST_ASSERT(poisoned >= 0, "no vCPU got EHWPOISON");
	ksft_test_result_pass("exactly one page poisoned: page %d; the %d others read back intact\n",
			      poisoned, NR_PAGES - 1);

	assert_run_hwpoison(vcpus[poisoned], poisoned);
	ksft_test_result_pass("page %d: KVM_RUN -1/EHWPOISON (twice), KVM_EXIT_MEMORY_FAULT flags PRIVATE gpa %#llx size %#llx\n",
			      poisoned, vcpus[poisoned]->run->memory_fault.gpa,
			      PAGE_SIZE);

	/* The other pages keep working, for writes and reads. */
	for (i = 0; i < NR_PAGES; i++) {
		if (i == poisoned)
			continue;
		run_to_sync(vcpus[i], i, STAGE_WRITTEN, 3);
		run_to_intact_read(vcpus[i], i, 3);
	}
	ksft_test_result_pass("the %d other pages still write and read back\n",
			      NR_PAGES - 1);

	/* ALLOCATE over the poisoned page succeeds and leaves it poisoned. */
	gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE, poisoned);
	assert_run_hwpoison(vcpus[poisoned], poisoned);
	if (pre_fault) {
		r = pre_fault_page(vcpus[poisoned], poisoned);
		TEST_ASSERT(r == -EHWPOISON,
			    "KVM_PRE_FAULT_MEMORY of the poisoned page: %s, expected EHWPOISON",
			    r ? strerror(-r) : "success");
	}
	ksft_test_result_pass("page %d stays poisoned: fallocate(ALLOCATE) 0, KVM_RUN EHWPOISON again%s\n",
			      poisoned,
			      pre_fault ? ", KVM_PRE_FAULT_MEMORY EHWPOISON" : "");

	/*
	 * Punching the poisoned page drops it from the file: the stuck read
	 * completes on a fresh zeroed page, which then works like the others.
	 */
	gmem_fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, poisoned);
	s = run_to_sync(vcpus[poisoned], poisoned, STAGE_READ, 2);
	TEST_ASSERT(s.zero == QWORDS_PER_PAGE,
		    "page %d after PUNCH_HOLE: %lu of %lu qwords zero (%lu old data)",
		    poisoned, s.zero, QWORDS_PER_PAGE, s.match);
	run_to_sync(vcpus[poisoned], poisoned, STAGE_WRITTEN, 3);
	run_to_intact_read(vcpus[poisoned], poisoned, 3);
	if (pre_fault) {
		r = pre_fault_page(vcpus[poisoned], poisoned);
		TEST_ASSERT(!r, "KVM_PRE_FAULT_MEMORY after PUNCH_HOLE: %s",
			    strerror(-r));
	}
	TEST_ASSERT_EQ(hw_corrupted_kb(), hwc_after);
	ksft_test_result_pass("fallocate(PUNCH_HOLE) over page %d: 0; the guest reads zeros, then writes and reads back\n",
			      poisoned);

	gmem_hwpoison_reset_filter();
	TEST_ASSERT_EQ(gmem_read_u64(FILTER_ENABLE), 0);

	kvm_vm_free(vm);
	close(fd);
	munmap(hva, GMEM_SIZE);

	ksft_finished();
}
