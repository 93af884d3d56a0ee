// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_mmap_race_test
 *
 * Host faults through a mapping of a guest_memfd and hole punches race a
 * vCPU faulting the same pages through a guest_memfd-only memslot (the
 * 6.18 uAPI of the Rust guest_memfd).
 *
 * A DEFAULT VM has a guest_memfd created with GUEST_MEMFD_FLAG_MMAP |
 * GUEST_MEMFD_FLAG_INIT_SHARED bound to a memslot at 4 GiB with
 * userspace_addr 0.  For -t seconds:
 *  - the vCPU reads and writes every page of it, round after round;
 *  - host threads read and write random pages through their own mappings,
 *    which they also map and unmap again;
 *  - a host thread punches random ranges and allocates others.
 * Everyone writes a qword tagged with its writer, so every read must find
 * 0 (a punched or new page) or a tagged value.  At the end the host
 * punches the whole file: the host mapping and the vCPU must read zeros.
 * The kernel log (KASAN, lockdep, WARN) is checked outside this test.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "guest_memfd_common.h"

#define GPA		(4ull << 30)
#define SLOT		10
#define NR_PAGES	64
#define TAG_GUEST	0x6775657374ull	/* "guest" */
#define TAG_HOST	0x686f7374ull	/* "host" */
#define TAG_SHIFT	24

static size_t page_size;
static int gmem_fd;
static bool stop;
static uint64_t nr_host_touches, nr_punches, nr_maps;

/* Set by the host between two rounds of the vCPU: check zeros, then done. */
static bool guest_stop;

static bool tagged(uint64_t v)
{
	return !v || v >> TAG_SHIFT == TAG_GUEST || v >> TAG_SHIFT == TAG_HOST;
}

static void guest_code(uint64_t gpa, uint64_t npages)
{
	uint64_t round, i, n = 0;

	for (round = 0; !READ_ONCE(guest_stop); round++) {
		for (i = 0; i < npages; i++) {
			uint64_t *p = (uint64_t *)(gpa + i * 4096 + (round % 512) * 8);
			uint64_t v = READ_ONCE(*p);

			GUEST_ASSERT(tagged(v));
			WRITE_ONCE(*p, TAG_GUEST << TAG_SHIFT | (++n & 0xffffff));
		}
		GUEST_SYNC(round);
	}
	for (i = 0; i < npages; i++)
		for (round = 0; round < 512; round++)
			GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + i * 4096 + round * 8)), 0);
	GUEST_DONE();
}

static void *toucher_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state((uintptr_t)arg);
	size_t size = NR_PAGES * page_size;
	uint64_t n = 0, *p = NULL;

	while (!READ_ONCE(stop)) {
		uint64_t page = guest_random_u32(&rng) % NR_PAGES;
		uint64_t off = guest_random_u32(&rng) % 512;
		uint64_t v;

		if (!p || !(n % 256)) {
			/* A fresh mapping now and then. */
			if (p)
				TEST_ASSERT(!munmap(p, size), "munmap");
			p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, gmem_fd, 0);
			TEST_ASSERT(p != MAP_FAILED, "mmap");
			__atomic_add_fetch(&nr_maps, 1, __ATOMIC_RELAXED);
		}
		v = READ_ONCE(p[page * page_size / 8 + off]);
		TEST_ASSERT(tagged(v), "host read 0x%lx from page %lu", v, page);
		WRITE_ONCE(p[page * page_size / 8 + off], TAG_HOST << TAG_SHIFT | (++n & 0xffffff));
		__atomic_add_fetch(&nr_host_touches, 1, __ATOMIC_RELAXED);
	}
	if (p)
		TEST_ASSERT(!munmap(p, size), "munmap");
	return NULL;
}

static void *puncher_fn(void *arg)
{
	struct guest_random_state rng = new_guest_random_state((uintptr_t)arg);

	while (!READ_ONCE(stop)) {
		uint64_t first = guest_random_u32(&rng) % NR_PAGES;
		uint64_t n = 1 + guest_random_u32(&rng) % (NR_PAGES - first);
		int mode = FALLOC_FL_KEEP_SIZE;

		if (guest_random_u32(&rng) % 4)
			mode |= FALLOC_FL_PUNCH_HOLE;
		TEST_ASSERT(!fallocate(gmem_fd, mode, first * page_size, n * page_size),
			    "fallocate(0x%x, page %lu, %lu pages)", mode, first, n);
		__atomic_add_fetch(&nr_punches, 1, __ATOMIC_RELAXED);
		usleep(guest_random_u32(&rng) % 2000);
	}
	return NULL;
}

static void help(const char *name)
{
	printf("usage: %s [-t SECONDS] [-s SEED]\n"
	       " -t: how long the threads race (default 5)\n"
	       " -s: the seed of the host threads' choices\n", name);
}

int main(int argc, char *argv[])
{
	uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	int opt, seconds = 5, i, nr_rounds = 0;
	pthread_t threads[3];
	struct kvm_vcpu *vcpu;
	uint64_t start, *p;
	uint32_t seed = 1;
	struct kvm_vm *vm;
	struct ucall uc;

	while ((opt = getopt(argc, argv, "ht:s:")) != -1) {
		switch (opt) {
		case 't':
			seconds = atoi_positive("Seconds", optarg);
			break;
		case 's':
			seed = atoi_non_negative("Seed", optarg);
			break;
		default:
			gmem_usage_exit(opt, argv[0], help);
		}
	}
	TEST_REQUIRE((kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & flags) == flags);
	page_size = getpagesize();

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	gmem_fd = vm_create_guest_memfd(vm, NR_PAGES * page_size, flags);
	vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA, NR_PAGES * page_size,
				   NULL, gmem_fd, 0);
	virt_map(vm, GPA, GPA, NR_PAGES);
	vcpu_args_set(vcpu, 2, GPA, NR_PAGES);

	ksft_print_header();
	ksft_set_plan(2);

	pthread_create(&threads[0], NULL, toucher_fn, (void *)(uintptr_t)(seed * 3 + 1));
	pthread_create(&threads[1], NULL, toucher_fn, (void *)(uintptr_t)(seed * 3 + 2));
	pthread_create(&threads[2], NULL, puncher_fn, (void *)(uintptr_t)(seed * 3 + 3));
	start = gmem_now_ms();
	while (gmem_now_ms() - start < seconds * 1000ull) {
		TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, &uc, BIT(UCALL_SYNC), NULL), UCALL_SYNC);
		nr_rounds++;
	}
	WRITE_ONCE(stop, true);
	for (i = 0; i < 3; i++)
		pthread_join(threads[i], NULL);
	TEST_ASSERT(nr_rounds && nr_host_touches && nr_punches,
		    "every role worked: %d vCPU rounds, %lu host touches, %lu fallocates",
		    nr_rounds, nr_host_touches, nr_punches);
	ksft_test_result_pass("%d vCPU rounds, %lu host touches through %lu mappings, %lu fallocates: every read was 0 or tagged\n",
			      nr_rounds, nr_host_touches, nr_maps, nr_punches);

	/* Punch it all: zeros for the host and for the vCPU. */
	TEST_ASSERT(!fallocate(gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0,
			       NR_PAGES * page_size), "punch all");
	p = mmap(NULL, NR_PAGES * page_size, PROT_READ, MAP_SHARED, gmem_fd, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap");
	for (i = 0; i < NR_PAGES * page_size / 8; i++)
		TEST_ASSERT(!p[i], "qword %d not zero after the punch", i);
	TEST_ASSERT(!munmap(p, NR_PAGES * page_size), "munmap");
	guest_stop = true;
	sync_global_to_guest(vm, guest_stop);
	TEST_ASSERT_EQ(gmem_run_to_ucall(vcpu, &uc, BIT(UCALL_DONE), NULL), UCALL_DONE);
	ksft_test_result_pass("after punching the whole file the host and the vCPU read zeros\n");

	close(gmem_fd);
	kvm_vm_free(vm);
	ksft_finished();
}
