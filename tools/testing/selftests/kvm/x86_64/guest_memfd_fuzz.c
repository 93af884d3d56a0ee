// SPDX-License-Identifier: GPL-2.0
/*
 * guest_memfd_fuzz
 *
 * A seeded differential fuzzer for guest_memfd: runs a random sequence of
 * KVM_CREATE_VM, KVM_CREATE_GUEST_MEMFD, KVM_SET_USER_MEMORY_REGION(2),
 * KVM_SET_MEMORY_ATTRIBUTES, fallocate() and other file calls on the
 * guest_memfd, KVM_CHECK_EXTENSION, KVM_PRE_FAULT_MEMORY and guest probes
 * (a vCPU of a KVM_X86_SW_PROTECTED_VM reads, or writes and reads, one GPA)
 * and prints one line per operation:
 *
 *	<index> <op> <args...> = <result> <ERRNO name or OK>
 *
 * Handles are named by their creation index (vm2, gmem5), host addresses
 * relative to the shared host buffer (h+0x1000), so that the trace depends
 * only on the seed and on the kernel's behaviour: running the same seed on
 * two kernels and diffing the traces compares them errno for errno, and the
 * probes compare the state (attributes, bindings, guest_memfd contents).
 *
 * One operation, gmem_mmap, covers 6.18's host mappings and
 * guest_memfd-only memslots, where the kernels differ by design: it checks
 * each kernel against a model instead (see op_gmem_mmap()).
 *
 * Usage: guest_memfd_fuzz [-s SEED] [-S FIRST,COUNT | -S A,B,C...] [-n OPS] [-q]
 * Every seed starts from a clean state and ends with a line
 * "## seed S end: N ops, hash H" (FNV-1a of its trace lines); -q prints only
 * those lines.  The last line is "# fuzz: seed S, N ops, <per-op counts>".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/fiemap.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <linux/sizes.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "guest_memfd_common.h"

#define MAX_VMS		4
#define MAX_GMEMS	10
#define MAX_SLOTS	12
#define MAX_SEEDS	256

/* Guest physical window that probe VMs map 1:1 and most memslots use. */
#define WIN_GPA		SZ_4G
#define WIN_SIZE	(64ull << 20)
/*
 * Host buffer behind memslots, at the start of a PROT_NONE reservation
 * that no memslot reaches past, so that no access depends on the address
 * space layout.
 */
#define HOST_SIZE	(16ull << 20)
#define HOST_RESERVE	(4ull << 30)
/* Page-table pages for the window in the probe VM's memslot 0. */
#define PROBE_EXTRA	512
#define PROBE_PORT	0x5e
/* Valid allocating fallocate() and attribute changes are at most this big. */
#define MAX_ALLOC	SZ_2M
/* Allocating fallocate() only below this offset (or near the end). */
#define ALLOC_WINDOW	(8ull << 20)

/* KVM_USER_MEM_SLOTS of x86: SHRT_MAX less 3 internal memslots. */
#define USER_MEM_SLOTS	32764
#define PRIV		KVM_MEMORY_ATTRIBUTE_PRIVATE
#define TWO63		(1ull << 63)

enum op {
	OP_CREATE_VM,
	OP_CLOSE_VM,
	OP_CREATE_GMEM,
	OP_CLOSE_GMEM,
	OP_SET_REGION,
	OP_SET_ATTR,
	OP_FALLOCATE,
	OP_FTRUNCATE,
	OP_RW,
	OP_MMAP,
	OP_LSEEK,
	OP_FSTAT,
	OP_FCNTL,
	OP_IOCTL,
	OP_CHECK_EXT,
	OP_PROBE,
	OP_PREFAULT,
	OP_SCAN,
	OP_GMEM_MMAP,
	NR_OPS,
	/* OP_CREATE_VM of a VM with a vCPU, for a probe */
	OP_CREATE_PROBE_VM = NR_OPS,
};

static const char * const op_names[NR_OPS] = {
	"create_vm", "close_vm", "create_gmem", "close_gmem", "set_region",
	"set_attr", "fallocate", "ftruncate", "rw", "mmap", "lseek", "fstat",
	"fcntl", "ioctl", "check_ext", "probe", "prefault",
	"scan", "gmem_mmap",
};

/* Relative weights of the operations. */
static const int op_weights[NR_OPS] = {
	[OP_CREATE_VM] = 3,
	[OP_CLOSE_VM] = 1,
	[OP_CREATE_GMEM] = 8,
	[OP_CLOSE_GMEM] = 4,
	[OP_SET_REGION] = 22,
	[OP_SET_ATTR] = 16,
	[OP_FALLOCATE] = 14,
	[OP_FTRUNCATE] = 1,
	[OP_RW] = 2,
	[OP_MMAP] = 1,
	[OP_LSEEK] = 1,
	[OP_FSTAT] = 3,
	[OP_FCNTL] = 2,
	[OP_IOCTL] = 2,
	[OP_CHECK_EXT] = 2,
	[OP_PROBE] = 14,
	[OP_PREFAULT] = 4,
	[OP_SCAN] = 3,
	[OP_GMEM_MMAP] = 3,
};

struct mslot {
	bool live;
	uint32_t id;
	uint32_t flags;
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;
};

struct fvm {
	bool live;
	int name;
	int fd;
	uint32_t type;
	bool maybe_private;
	struct kvm_vm *kv;
	struct kvm_vcpu *vcpu;
	struct kvm_regs regs0;
	struct mslot slots[MAX_SLOTS];
};

struct fgmem {
	bool live;
	int name;
	int fd;
	int vm_name;
	uint64_t size;
};

static struct fvm vms[MAX_VMS];
static struct fgmem gmems[MAX_GMEMS];
static int kvm_fd;
static uint8_t *host;
static int next_vm_name, next_gmem_name;
static unsigned long op_counts[NR_OPS], op_ok[NR_OPS];
static bool quiet;

/* Guest side of the probes. */
static uint64_t probe_gpa, probe_val;
static int probe_write;

static void guest_code(void)
{
	for (;;) {
		uint64_t gpa = READ_ONCE(probe_gpa), val;

		if (READ_ONCE(probe_write))
			WRITE_ONCE(*(uint64_t *)gpa, READ_ONCE(probe_val));
		val = READ_ONCE(*(uint64_t *)gpa);
		asm volatile("outl %%eax, %%dx"
			     : : "a"(0), "d"(PROBE_PORT), "D"(gpa), "S"(val)
			     : "memory");
	}
}

/* splitmix64 */
static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rn(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* True with probability pct percent. */
static bool pct(int p)
{
	return rn(100) < (uint64_t)p;
}

static uint64_t pick(const uint64_t *v, int n)
{
	return v[rn(n)];
}

#define PICK(...) ({							\
	const uint64_t __v[] = { __VA_ARGS__ };							\
	pick(__v, ARRAY_SIZE(__v));					\
})

/* The trace line being built, and the running hash of the seed. */
static char line[1024];
static int line_len;
static uint64_t trace_hash;
static unsigned long seed_ops;

static void __printf(1, 2) out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	line_len += vsnprintf(line + line_len, sizeof(line) - line_len, fmt, ap);
	va_end(ap);
	if (line_len >= (int)sizeof(line))
		line_len = sizeof(line) - 1;
}

static void end_line(void)
{
	int i;

	line[line_len++] = '\n';
	line[line_len] = 0;
	for (i = 0; i < line_len; i++)
		trace_hash = (trace_hash ^ (uint8_t)line[i]) * 0x100000001b3ull;
	if (!quiet)
		fputs(line, stdout);
	line_len = 0;
}

static const char *errname(int e)
{
	const char *s = strerrorname_np(e);
	static char buf[16];

	if (s)
		return s;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* Record a syscall's result: "= R OK" or "= -1 ENAME". */
static long result(int op, long r)
{
	if (r < 0) {
		out(" = %ld %s", r, errname(errno));
	} else {
		out(" = %ld OK", r);
		op_ok[op]++;
	}
	return r;
}

static void result_name(int op, long r, const char *what, int name)
{
	if (r < 0) {
		out(" = -1 %s", errname(errno));
	} else {
		out(" = %s%d OK", what, name);
		op_ok[op]++;
	}
}

static const char *uaddr_str(uint64_t a)
{
	static char buf[2][40];
	static int n;
	char *s = buf[n++ & 1];
	uint64_t base = (uint64_t)host;

	if (a >= base && a < base + HOST_RESERVE + SZ_1G)
		snprintf(s, sizeof(buf[0]), "h+0x%lx", a - base);
	else
		snprintf(s, sizeof(buf[0]), "0x%lx", a);
	return s;
}

static struct fvm *random_vm(void)
{
	int i, n = 0, idx[MAX_VMS];

	for (i = 0; i < MAX_VMS; i++)
		if (vms[i].live)
			idx[n++] = i;
	return n ? &vms[idx[rn(n)]] : NULL;
}

static struct fvm *random_vm_of_type(uint32_t type)
{
	int i, n = 0, idx[MAX_VMS];

	for (i = 0; i < MAX_VMS; i++)
		if (vms[i].live && vms[i].type == type)
			idx[n++] = i;
	return n ? &vms[idx[rn(n)]] : NULL;
}

static struct fgmem *random_gmem(void)
{
	int i, n = 0, idx[MAX_GMEMS];

	for (i = 0; i < MAX_GMEMS; i++)
		if (gmems[i].live)
			idx[n++] = i;
	return n ? &gmems[idx[rn(n)]] : NULL;
}

/* A guest_memfd of @vm if there is one (or any, sometimes). */
static struct fgmem *gmem_of(struct fvm *vm)
{
	int i, n = 0, idx[MAX_GMEMS];

	for (i = 0; i < MAX_GMEMS; i++)
		if (gmems[i].live && gmems[i].vm_name == vm->name)
			idx[n++] = i;
	if (!n || pct(5))
		return random_gmem();
	return &gmems[idx[rn(n)]];
}

static struct mslot *random_slot(struct fvm *vm)
{
	int i, n = 0, idx[MAX_SLOTS];

	for (i = 0; i < MAX_SLOTS; i++)
		if (vm->slots[i].live)
			idx[n++] = i;
	return n ? &vm->slots[idx[rn(n)]] : NULL;
}

static struct mslot *find_slot(struct fvm *vm, uint32_t id)
{
	int i;

	for (i = 0; i < MAX_SLOTS; i++)
		if (vm->slots[i].live && vm->slots[i].id == id)
			return &vm->slots[i];
	return NULL;
}

static const char *vm_type_str(uint32_t type)
{
	static char buf[16];

	switch (type) {
	case KVM_X86_DEFAULT_VM:
		return "default";
	case KVM_X86_SW_PROTECTED_VM:
		return "swprot";
	}
	snprintf(buf, sizeof(buf), "0x%x", type);
	return buf;
}

/* ---- operations ---- */

static void close_vm(struct fvm *vm);

static void op_create_vm(int op, bool want_probe)
{
	struct fvm *vm = NULL;
	bool probe;
	uint32_t type;
	int i, fd;

	for (i = 0; i < MAX_VMS; i++)
		if (!vms[i].live)
			vm = &vms[i];
	if (pct(12))
		type = PICK(2, 3, 4, 5, 0x100, 0x80000000, 0xffffffff);
	else
		type = pct(65) ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM;
	probe = type == KVM_X86_SW_PROTECTED_VM && pct(50);
	if (want_probe) {
		type = KVM_X86_SW_PROTECTED_VM;
		probe = true;
	}
	if (!vm) {
		/* Full: a random VM makes room. */
		vm = &vms[rn(MAX_VMS)];
		out(" replace=vm%d", vm->name);
		close_vm(vm);
	}
	out(" %s%s", vm_type_str(type), probe ? " vcpu" : "");
	memset(vm, 0, sizeof(*vm));
	if (probe) {
		const struct vm_shape shape = {
			.mode = VM_MODE_DEFAULT,
			.type = type,
		};

		vm->kv = __vm_create_shape_with_one_vcpu(shape, &vm->vcpu, PROBE_EXTRA,
							 guest_code);
		virt_map(vm->kv, WIN_GPA, WIN_GPA, WIN_SIZE / PAGE_SIZE);
		vcpu_regs_get(vm->vcpu, &vm->regs0);
		fd = vm->kv->fd;
	} else {
		fd = ioctl(kvm_fd, KVM_CREATE_VM, (unsigned long)type);
	}
	if (fd >= 0) {
		vm->live = true;
		vm->fd = fd;
		vm->type = type;
		vm->name = next_vm_name++;
	}
	result_name(op, fd, "vm", vm->name);
}

static void close_vm(struct fvm *vm)
{
	if (vm->kv)
		kvm_vm_free(vm->kv);
	else
		close(vm->fd);
	vm->live = false;
}

static void op_close_vm(int op)
{
	struct fvm *vm = random_vm();

	out(" vm%d", vm->name);
	close_vm(vm);
	result(op, 0);
}

static uint64_t gmem_size(void)
{
	if (pct(80))
		return PICK(SZ_4K, SZ_8K, SZ_64K, SZ_2M, SZ_4M, SZ_8M, SZ_1G,
			    1ull << 40, 1ull << 62, TWO63 - SZ_4K) +
		       (pct(20) ? rn(64) * SZ_4K : 0);
	if (pct(50))
		return (1 + rn(2048)) * SZ_4K;
	return PICK(0, 1, SZ_4K - 1, SZ_4K + 1, SZ_2M + 512, -(uint64_t)SZ_4K,
		    TWO63, -1ull, 1ull << 62 | 1);
}

static void op_create_gmem(int op)
{
	struct kvm_create_guest_memfd args = { 0 };
	struct fgmem *g = NULL;
	struct fvm *vm = random_vm();
	int i, fd;

	for (i = 0; i < MAX_GMEMS; i++)
		if (!gmems[i].live)
			g = &gmems[i];
	if (!g) {
		/* Full: a random guest_memfd makes room. */
		g = &gmems[rn(MAX_GMEMS)];
		out(" replace=gmem%d", g->name);
		close(g->fd);
		g->live = false;
	}
	if (pct(70) && random_vm_of_type(KVM_X86_SW_PROTECTED_VM))
		vm = random_vm_of_type(KVM_X86_SW_PROTECTED_VM);
	args.size = gmem_size();
	/*
	 * Flags only 6.12 refuses too: the Rust guest_memfd accepts 6.18's
	 * MMAP and INIT_SHARED (bits 0 and 1) alone, so each pick has another
	 * bit set (a deliberate difference; guest_memfd_mmap_test checks them).
	 */
	args.flags = pct(88) ? 0 : PICK(4, 1ull << 63, 5, 7, rnd() | 4);
	if (pct(10))
		args.reserved[rn(6)] = rnd();
	out(" vm%d size=0x%llx flags=0x%llx", vm->name, args.size, args.flags);
	fd = ioctl(vm->fd, KVM_CREATE_GUEST_MEMFD, &args);
	if (fd >= 0) {
		g->live = true;
		g->fd = fd;
		g->size = args.size;
		g->vm_name = vm->name;
		g->name = next_gmem_name++;
	}
	result_name(op, fd, "gmem", g->name);
}

static void op_close_gmem(int op)
{
	struct fgmem *g = random_gmem();

	out(" gmem%d", g->name);
	result(op, close(g->fd));
	g->live = false;
}

/* A GPA for a memslot or an attribute range, mostly in the window. */
static uint64_t rand_gpa(void)
{
	/* Half of them in the first 4 MiB, so that ranges overlap. */
	if (pct(45))
		return WIN_GPA + rn(SZ_4M / SZ_4K) * SZ_4K;
	if (pct(60))
		return WIN_GPA + rn(WIN_SIZE / SZ_4K) * SZ_4K;
	if (pct(50))
		return rn(1ull << 20) * SZ_4K;
	return PICK(0, 1, WIN_GPA + 8, (1ull << 52) - SZ_4K, 1ull << 52,
		    TWO63, -(uint64_t)SZ_4K, -(uint64_t)SZ_8K, (1ull << 46) - SZ_2M,
		    (1ull << 48) - SZ_4K);
}

static uint64_t rand_npages_size(void)
{
	if (pct(70))
		return (1 + rn(32)) * SZ_4K;
	return PICK(SZ_64K, SZ_1M, SZ_2M, SZ_2M + SZ_4K, SZ_4M, SZ_16M);
}

static uint64_t junk_size(void)
{
	return PICK(0, 1, SZ_4K - 1, SZ_4K + 1, 1ull << 43, (1ull << 43) + SZ_4K,
		    1ull << 52, TWO63, -(uint64_t)SZ_4K, SZ_1G);
}

static const char *fd_name(int fd, struct fgmem *g, struct fvm *vm)
{
	static char buf[32];

	if (g) {
		snprintf(buf, sizeof(buf), "gmem%d", g->name);
		return buf;
	}
	if (fd == kvm_fd)
		return "kvmfd";
	if (vm && fd == vm->fd) {
		snprintf(buf, sizeof(buf), "vm%d", vm->name);
		return buf;
	}
	snprintf(buf, sizeof(buf), "%d", fd);
	return buf;
}

static void op_set_region(int op)
{
	struct kvm_userspace_memory_region2 r = { 0 };
	struct fvm *vm = random_vm();
	struct mslot *s = NULL, *old;
	struct fgmem *g = NULL;
	int kind = rn(100), i, ret;
	bool v1 = pct(4);
	uint64_t off;

	if (kind < 35 && pct(75) && random_vm_of_type(KVM_X86_SW_PROTECTED_VM))
		vm = random_vm_of_type(KVM_X86_SW_PROTECTED_VM);
	r.slot = vm->kv ? 1 + rn(7) : rn(8);
	/* New memslots mostly take a free id. */
	for (i = 0; kind < 60 && i < 8 && find_slot(vm, r.slot) && pct(90); i++)
		r.slot = vm->kv ? 1 + rn(7) : rn(8);
	if (kind < 35) {
		/* a new guest_memfd memslot */
		r.flags = KVM_MEM_GUEST_MEMFD;
		if (pct(8))
			r.flags |= PICK(KVM_MEM_READONLY, KVM_MEM_LOG_DIRTY_PAGES);
		g = gmem_of(vm);
		r.memory_size = rand_npages_size();
		if (g && g->size < r.memory_size && pct(70))
			r.memory_size = g->size;
		if (g && pct(75) && g->size <= (1ull << 40) && g->size >= r.memory_size)
			r.guest_memfd_offset = rn((g->size - r.memory_size) / SZ_4K + 1) * SZ_4K;
		else if (g && pct(50))
			r.guest_memfd_offset = g->size - r.memory_size;
		else
			r.guest_memfd_offset = PICK(0, SZ_4K, 2048, SZ_2M, TWO63 - SZ_4K,
						    TWO63, -(uint64_t)SZ_4K, 1ull << 62,
						    g ? g->size : 0);
		r.guest_phys_addr = rand_gpa();
	} else if (kind < 60) {
		/* a new plain memslot */
		r.flags = pct(70) ? 0 : PICK(KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY);
		r.memory_size = pct(3) ? SZ_1G : rand_npages_size();
		r.guest_phys_addr = rand_gpa();
	} else if (kind < 75) {
		/* delete */
		s = random_slot(vm);
		if (s)
			r.slot = s->id;
	} else if (kind < 88) {
		/* move or change flags of an existing one */
		s = random_slot(vm);
		if (s) {
			r.slot = s->id;
			r.flags = s->flags;
			r.memory_size = s->size;
			r.guest_phys_addr = s->gpa;
			r.userspace_addr = s->uaddr;
			if (pct(50))
				r.guest_phys_addr = rand_gpa();
			else
				r.flags ^= PICK(KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
						KVM_MEM_GUEST_MEMFD);
			if (r.flags & KVM_MEM_GUEST_MEMFD) {
				g = gmem_of(vm);
				r.guest_memfd_offset = 0;
			}
		}
	} else {
		/* junk */
		r.flags = pct(50) ? PICK(0, KVM_MEM_GUEST_MEMFD) :
			  PICK(1u << 3, 1u << 31, KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY |
			       KVM_MEM_LOG_DIRTY_PAGES, rnd());
		if (pct(50))
			r.slot = PICK(USER_MEM_SLOTS - 1, USER_MEM_SLOTS, 32767,
				      0x10000 | 1, 0x20000, -1u, 0x8001);
		r.memory_size = pct(50) ? junk_size() : rand_npages_size();
		r.guest_phys_addr = pct(50) ? rand_gpa() :
				    PICK(1, -(uint64_t)SZ_4K, TWO63, 1ull << 52,
					 -(uint64_t)SZ_2M);
		if (r.flags & KVM_MEM_GUEST_MEMFD) {
			g = gmem_of(vm);
			r.guest_memfd_offset = pct(50) ? 0 :
				PICK(1, SZ_4K, TWO63 - SZ_4K, -(uint64_t)SZ_4K,
				     TWO63 + SZ_4K);
		}
	}
	if (kind < 60 || (kind >= 88 && !r.userspace_addr)) {
		off = (r.guest_phys_addr - WIN_GPA) % HOST_SIZE & ~(SZ_4K - 1ull);
		r.userspace_addr = (uint64_t)host + off;
		if (pct(6))
			r.userspace_addr = PICK((uint64_t)host + 8,
						(uint64_t)host + HOST_RESERVE / 2 - SZ_4K,
						0xffff800000000000ull,
						(1ull << 47) - SZ_4K);
	}
	/* Large slots with dirty logging would allocate a big bitmap. */
	if (r.memory_size > SZ_16M && r.memory_size < (1ull << 43))
		r.flags &= ~KVM_MEM_LOG_DIRTY_PAGES;
	/*
	 * The Rust guest_memfd binds guest_memfds to DEFAULT VMs too (6.18's
	 * guest_memfd-only memslots), the C one of 6.12 refuses the flag there:
	 * on those VMs keep it only with flags that both refuse (a deliberate
	 * difference; guest_memfd_mmap_test covers it).
	 */
	if (!v1 && vm->type != KVM_X86_SW_PROTECTED_VM && r.flags == KVM_MEM_GUEST_MEMFD)
		r.flags = 0;
	if (r.flags & KVM_MEM_GUEST_MEMFD) {
		if (pct(8) || !g) {
			r.guest_memfd = PICK(-1, 999, kvm_fd, vm->fd, 0x7fffffff);
			g = NULL;
		} else {
			r.guest_memfd = g->fd;
		}
	} else if (pct(5)) {
		/* ignored without the flag */
		r.guest_memfd = 999;
		r.guest_memfd_offset = rnd();
	}
	out(" vm%d%s slot=0x%x flags=0x%x gpa=0x%llx size=0x%llx ua=%s", vm->name,
	    v1 ? " v1" : "", r.slot, r.flags, r.guest_phys_addr, r.memory_size,
	    uaddr_str(r.userspace_addr));
	if (r.flags & KVM_MEM_GUEST_MEMFD || r.guest_memfd)
		out(" fd=%s off=0x%llx", fd_name(r.guest_memfd, g, vm),
		    r.guest_memfd_offset);
	if (v1)
		ret = ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r);
	else
		ret = ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION2, &r);
	result(op, ret);
	if (ret)
		return;
	old = find_slot(vm, r.slot);
	if (!r.memory_size) {
		if (old)
			old->live = false;
		return;
	}
	if (!old) {
		for (i = 0; i < MAX_SLOTS && !old; i++)
			if (!vm->slots[i].live)
				old = &vm->slots[i];
		if (!old)
			return;
	}
	old->live = true;
	old->id = r.slot;
	old->flags = r.flags;
	old->gpa = r.guest_phys_addr;
	old->size = r.memory_size;
	old->uaddr = r.userspace_addr;
}

static void op_set_attr(int op)
{
	struct kvm_memory_attributes a = { 0 };
	struct fvm *vm = random_vm();
	struct mslot *s;
	uint64_t supported;
	bool valid;
	int ret;

	s = random_slot(vm);
	if (s && pct(35)) {
		a.address = s->gpa + rn(s->size / SZ_4K) * SZ_4K;
		a.size = (1 + rn(8)) * SZ_4K;
	} else if (pct(85)) {
		a.address = rand_gpa();
		a.size = pct(20) ? junk_size() : rand_npages_size();
	} else {
		a.address = PICK(0, SZ_4K, 1ull << 52, -(uint64_t)SZ_4K,
				 -(uint64_t)SZ_8K, TWO63);
		a.size = PICK(SZ_4K, TWO63, -(uint64_t)SZ_4K, SZ_2M, 1ull << 52);
	}
	if (pct(6))
		a.address += PICK(1, 8, 2048);
	a.attributes = pct(45) ? PRIV : pct(80) ? 0 :
		       PICK(1, 1ull << 4, PRIV | 1ull << 63, -1ull, PRIV | 1);
	a.flags = pct(94) ? 0 : PICK(1, 1ull << 63, PRIV);
	/* Keep the probe VM's code and data in memslot 0 shared. */
	if (vm->kv && a.attributes && a.address < WIN_GPA)
		a.address += WIN_GPA;
	/*
	 * The C attribute store costs O(pages): bound the size of a change
	 * that passes the argument checks (a clear is free when nothing is
	 * private).
	 */
	supported = vm->type == KVM_X86_SW_PROTECTED_VM ? PRIV : 0;
	valid = !a.flags && !(a.attributes & ~supported) && a.size &&
		a.address + a.size >= a.address &&
		!(a.address & (SZ_4K - 1)) && !(a.size & (SZ_4K - 1));
	if (valid && a.size > MAX_ALLOC && (a.attributes || vm->maybe_private))
		a.size = MAX_ALLOC;
	out(" vm%d addr=0x%llx size=0x%llx attr=0x%llx flags=0x%llx", vm->name,
	    a.address, a.size, a.attributes, a.flags);
	ret = ioctl(vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &a);
	result(op, ret);
	if (!ret && a.attributes)
		vm->maybe_private = true;
}

static void op_fallocate(int op)
{
	struct fgmem *g = random_gmem();
	int mode, ret;
	int64_t offset, len;
	bool alloc;

	if (pct(85))
		mode = PICK(0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_KEEP_SIZE,
			    FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			    FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			    FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE);
	else
		mode = PICK(FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,
			    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			    FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE,
			    FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
			    FALLOC_FL_NO_HIDE_STALE | FALLOC_FL_KEEP_SIZE |
			    FALLOC_FL_PUNCH_HOLE, rn(256));
	if (pct(70))
		offset = rn(min_t(uint64_t, g->size, ALLOC_WINDOW) / SZ_4K) * SZ_4K;
	else if (pct(50))
		offset = g->size - rn(16) * SZ_4K;
	else
		offset = PICK(2048, 1, -(uint64_t)SZ_4K, 1ull << 62, TWO63 - SZ_4K,
			      g->size + SZ_4K);
	if (pct(75))
		len = (1 + rn(pct(80) ? 16 : 512)) * SZ_4K;
	else
		len = PICK(0, 1, SZ_4K + 1, -(uint64_t)SZ_4K, 1ull << 62,
			   TWO63 - SZ_4K, g->size, g->size - offset, SZ_8M);
	/* Allocations stay small; punching holes is cheap at any size. */
	alloc = mode == FALLOC_FL_KEEP_SIZE;
	if (alloc && len > (int64_t)MAX_ALLOC)
		len = MAX_ALLOC;
	if (alloc && offset > (int64_t)ALLOC_WINDOW &&
	    offset < (int64_t)g->size - 64 * SZ_4K)
		offset = 0;
	out(" gmem%d mode=0x%x off=0x%lx len=0x%lx", g->name, mode, offset, len);
	ret = fallocate(g->fd, mode, offset, len);
	result(op, ret);
}

static void op_ftruncate(int op)
{
	struct fgmem *g = random_gmem();
	int64_t len = PICK(0, SZ_4K, g->size, g->size * 2, -1, SZ_2M);

	out(" gmem%d len=0x%lx", g->name, len);
	result(op, ftruncate(g->fd, len));
}

static void op_rw(int op)
{
	struct fgmem *g = random_gmem();
	static char buf[SZ_4K];
	size_t len = PICK(0, 1, 8, SZ_4K);
	int64_t off = PICK(0, SZ_4K, -1);
	int which = rn(6);
	void *p = pct(10) ? NULL : buf;
	static const char * const names[] = {
		"read", "write", "pread", "pwrite", "readv", "sendfile",
	};
	struct iovec iov = { p, len };
	long r = 0;

	out(" gmem%d %s len=%zu off=%ld%s", g->name, names[which], len, off,
	    p ? "" : " buf=NULL");
	switch (which) {
	case 0:
		r = read(g->fd, p, len);
		break;
	case 1:
		r = write(g->fd, p, len);
		break;
	case 2:
		r = pread(g->fd, p, len, off);
		break;
	case 3:
		r = pwrite(g->fd, p, len, off);
		break;
	case 4:
		r = readv(g->fd, &iov, 1);
		break;
	case 5:
		r = sendfile(kvm_fd, g->fd, NULL, len);
		break;
	}
	result(op, r);
}

static void op_mmap(int op)
{
	struct fgmem *g = random_gmem();
	size_t len = PICK(0, SZ_4K, SZ_2M);
	int prot = PICK(PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE);
	int flags = PICK(MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_SHARED | MAP_POPULATE);
	int64_t off = PICK(0, SZ_4K, 2048);
	void *p;

	out(" gmem%d len=0x%zx prot=%d flags=0x%x off=0x%lx", g->name, len, prot, flags, off);
	p = mmap(NULL, len, prot, flags, g->fd, off);
	if (p == MAP_FAILED) {
		result(op, -1);
	} else {
		result(op, 0);
		munmap(p, len);
	}
}

static void op_lseek(int op)
{
	struct fgmem *g = random_gmem();
	int64_t off = PICK(0, SZ_4K, -1);
	int whence = PICK(SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE, 7);

	out(" gmem%d off=%ld whence=%d", g->name, off, whence);
	result(op, lseek(g->fd, off, whence));
}

static void op_fstat(int op)
{
	struct fgmem *g = random_gmem();
	struct stat st;
	int r;

	out(" gmem%d", g->name);
	r = fstat(g->fd, &st);
	result(op, r);
	if (!r)
		out(" size=0x%lx mode=0%o blocks=%ld blksize=%ld nlink=%lu uid=%u",
		    st.st_size, st.st_mode, st.st_blocks, st.st_blksize,
		    (unsigned long)st.st_nlink, st.st_uid);
}

static void op_fcntl(int op)
{
	struct fgmem *g = random_gmem();
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = SZ_4K };
	int cmd = PICK(F_GETFL, F_SETFL, F_GETFD, F_SETLK, F_GETLK, F_GET_SEALS,
		       F_ADD_SEALS, F_GETLEASE, F_SETLEASE, F_GETPIPE_SZ, 0x7777);
	long arg = 0, r;

	if (cmd == F_SETFL)
		arg = PICK(0, O_NONBLOCK, O_APPEND, O_DIRECT, O_NOATIME);
	else if (cmd == F_ADD_SEALS)
		arg = PICK(F_SEAL_WRITE, F_SEAL_GROW);
	else if (cmd == F_SETLEASE)
		arg = PICK(F_RDLCK, F_UNLCK);
	out(" gmem%d cmd=%d arg=0x%lx", g->name, cmd, arg);
	if (cmd == F_SETLK || cmd == F_GETLK)
		r = fcntl(g->fd, cmd, &fl);
	else
		r = fcntl(g->fd, cmd, arg);
	result(op, r);
	if (cmd == F_GETLK && !r)
		out(" type=%d", fl.l_type);
	/* F_SETFL is undone so that later calls see the same file. */
	if (cmd == F_SETFL)
		fcntl(g->fd, F_SETFL, 0);
}

static void op_ioctl(int op)
{
	struct fgmem *g = random_gmem();
	struct {
		struct fiemap fm;
		struct fiemap_extent ext[4];
	} fm = { .fm = { .fm_length = -1ull, .fm_extent_count = 4 } };
	unsigned long cmd = PICK(FIGETBSZ, FIONREAD, FS_IOC_FIEMAP, FIBMAP,
				 FS_IOC_GETFLAGS, FS_IOC_FSGETXATTR, FIONBIO,
				 KVM_CREATE_GUEST_MEMFD, KVM_SET_MEMORY_ATTRIBUTES,
				 KVM_CHECK_EXTENSION, 0x1234, FICLONE, FIDEDUPERANGE);
	int val = 0;
	long r;

	out(" gmem%d cmd=0x%lx", g->name, cmd);
	if (cmd == FS_IOC_FIEMAP)
		r = ioctl(g->fd, cmd, &fm);
	else if (cmd == FS_IOC_FSGETXATTR || cmd == FIDEDUPERANGE)
		r = ioctl(g->fd, cmd, &fm);
	else if (cmd == FICLONE)
		r = ioctl(g->fd, cmd, g->fd);
	else if (cmd == KVM_CHECK_EXTENSION)
		r = ioctl(g->fd, cmd, KVM_CAP_GUEST_MEMFD);
	else
		r = ioctl(g->fd, cmd, &val);
	result(op, r);
	if (!r && (cmd == FIGETBSZ || cmd == FIONREAD || cmd == FIBMAP))
		out(" val=%d", val);
	if (!r && cmd == FS_IOC_FIEMAP)
		out(" extents=%u", fm.fm.fm_mapped_extents);
}

static void op_check_ext(int op)
{
	struct fvm *vm = pct(70) ? random_vm() : NULL;
	long cap = pct(90) ? 231 + rn(6) : PICK(0, KVM_CAP_NR_MEMSLOTS,
						 KVM_CAP_MULTI_ADDRESS_SPACE,
						 KVM_CAP_READONLY_MEM, 1000);

	/*
	 * KVM_CAP_GUEST_MEMFD is 1 on every VM of the Rust guest_memfd (6.18),
	 * on VMs with private memory only in 6.12's C one.
	 */
	if (vm && vm->type != KVM_X86_SW_PROTECTED_VM && cap == KVM_CAP_GUEST_MEMFD)
		cap = KVM_CAP_VM_TYPES;
	if (vm)
		out(" vm%d cap=%ld", vm->name, cap);
	else
		out(" kvm cap=%ld", cap);
	result(op, ioctl(vm ? vm->fd : kvm_fd, KVM_CHECK_EXTENSION, cap));
}

static struct fvm *random_probe_vm(void)
{
	int i, n = 0, idx[MAX_VMS];

	for (i = 0; i < MAX_VMS; i++)
		if (vms[i].live && vms[i].vcpu)
			idx[n++] = i;
	return n ? &vms[idx[rn(n)]] : NULL;
}

/* A GPA in the window, mostly in one of the VM's memslots. */
static uint64_t probe_target(struct fvm *vm)
{
	struct mslot *s = random_slot(vm);
	uint64_t gpa;

	if (s && pct(92)) {
		gpa = s->gpa + rn(min_t(uint64_t, s->size, WIN_SIZE) / 8) * 8;
		if (gpa >= WIN_GPA && gpa < WIN_GPA + WIN_SIZE)
			return gpa;
	}
	return WIN_GPA + rn(WIN_SIZE / 8) * 8;
}

enum probe_result {
	PROBE_VALUE,	/* the guest read a value, *val */
	PROBE_FAULT,	/* KVM_RUN failed with a memory fault exit */
	PROBE_ERROR,	/* KVM_RUN failed otherwise */
	PROBE_EXIT,	/* an unexpected exit */
};

/*
 * The guest of @vm writes @wval to @gpa if @write, then reads @gpa; MMIO
 * exits are completed with zeros.  Describes what happened with out().
 */
static enum probe_result probe_run(struct fvm *vm, uint64_t gpa, bool write,
				   uint64_t wval, uint64_t *val)
{
	struct kvm_vcpu *vcpu = vm->vcpu;
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	int i, ret;

	probe_gpa = gpa;
	probe_write = write;
	probe_val = wval;
	sync_global_to_guest(vm->kv, probe_gpa);
	sync_global_to_guest(vm->kv, probe_val);
	sync_global_to_guest(vm->kv, probe_write);
	vcpu_regs_set(vcpu, &vm->regs0);
	for (i = 0; i < 4; i++) {
		ret = __vcpu_run(vcpu);
		if (ret) {
			out(" -1 %s exit=%u", errname(errno), run->exit_reason);
			if (run->exit_reason != KVM_EXIT_MEMORY_FAULT)
				return PROBE_ERROR;
			out(" mf=0x%llx/0x%llx/0x%llx", run->memory_fault.flags,
			    run->memory_fault.gpa, run->memory_fault.size);
			return PROBE_FAULT;
		}
		if (run->exit_reason == KVM_EXIT_MMIO) {
			out(" mmio-%s@0x%llx/%u", run->mmio.is_write ? "w" : "r",
			    run->mmio.phys_addr, run->mmio.len);
			if (run->mmio.is_write)
				out(":0x%lx", *(uint64_t *)run->mmio.data);
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			continue;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == PROBE_PORT) {
			vcpu_regs_get(vcpu, &regs);
			*val = regs.rsi;
			out(" val=0x%lx", *val);
			return PROBE_VALUE;
		}
		out(" exit=%u", run->exit_reason);
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			out(":%u", run->internal.suberror);
		return PROBE_EXIT;
	}
	out(" loop");
	return PROBE_EXIT;
}

static void op_probe(int op, int index)
{
	struct fvm *vm = random_probe_vm();
	uint64_t gpa = probe_target(vm), val;
	uint64_t wval = 0x5a00000000000000ull | ((uint64_t)index << 16) | vm->name;
	bool write = pct(30);

	out(" vm%d gpa=0x%lx", vm->name, gpa);
	if (write)
		out(" write=0x%lx", wval);
	out(" =");
	if (probe_run(vm, gpa, write, wval, &val) == PROBE_VALUE) {
		out(" OK");
		op_ok[op]++;
	}
}

/*
 * Reads one word of each of up to 64 consecutive pages of a memslot (or
 * of the window): one letter per page, 0 for zero, h for the host's
 * pattern, w for a value a guest wrote, v for another value, F for a
 * private memory fault, E for another KVM_RUN error, X for an unexpected
 * exit, and lower case m before it for an MMIO exit; then a hash of all
 * the details.  Compares attributes and contents over whole ranges.
 */
static void op_scan(int op)
{
	struct fvm *vm = random_probe_vm();
	struct mslot *s = random_slot(vm);
	uint64_t gpa, end, val, h = 0xcbf29ce484222325ull;
	char code[2 * 64 + 1];
	int n = 0, saved, i, k;

	gpa = probe_target(vm) & ~(SZ_4K - 1ull);
	end = gpa + 16 * SZ_4K;
	if (s && s->gpa >= WIN_GPA && s->gpa < WIN_GPA + WIN_SIZE && pct(80)) {
		gpa = s->gpa;
		end = s->gpa + s->size + (pct(20) ? SZ_4K : 0);
	}
	end = min_t(uint64_t, end, gpa + 64 * SZ_4K);
	end = min_t(uint64_t, end, (WIN_GPA + WIN_SIZE));
	gpa += rn(SZ_4K / 8) * 8;
	out(" vm%d gpa=0x%lx pages=%lu =", vm->name, gpa, (end - gpa + SZ_4K - 1) / SZ_4K);
	for (; gpa < end; gpa += SZ_4K) {
		enum probe_result r;

		saved = line_len;
		r = probe_run(vm, gpa, false, 0, &val);
		for (i = saved; i < line_len; i++)
			h = (h ^ (uint8_t)line[i]) * 0x100000001b3ull;
		if (strstr(line + saved, "mmio"))
			code[n++] = 'm';
		line_len = saved;
		line[line_len] = 0;
		if (r == PROBE_VALUE)
			k = !val ? '0' : val >> 56 == 0xa5 ? 'h' : val >> 56 == 0x5a ? 'w' : 'v';
		else
			k = r == PROBE_FAULT ? 'F' : r == PROBE_ERROR ? 'E' : 'X';
		code[n++] = k;
	}
	code[n] = 0;
	out(" %s hash=%016lx OK", code, h);
	op_ok[op]++;
}

static void op_prefault(int op)
{
	struct fvm *vm = random_probe_vm();
	struct kvm_pre_fault_memory p = { 0 };
	int ret;

	p.gpa = pct(85) ? probe_target(vm) & ~(SZ_4K - 1ull) :
		PICK(0, WIN_GPA + 1, 1ull << 52, -(uint64_t)SZ_4K);
	p.size = pct(85) ? (1 + rn(16)) * SZ_4K : PICK(0, 1, -(uint64_t)SZ_4K);
	p.flags = pct(95) ? 0 : 1;
	out(" vm%d gpa=0x%llx size=0x%llx flags=0x%llx", vm->name, p.gpa, p.size,
	    p.flags);
	ret = __vcpu_ioctl(vm->vcpu, KVM_PRE_FAULT_MEMORY, &p);
	result(op, ret);
	out(" left=0x%llx@0x%llx", p.size, p.gpa);
}

/*
 * ---- gmem_mmap: 6.18's host mappings, checked against a model ----
 *
 * GUEST_MEMFD_FLAG_MMAP and GUEST_MEMFD_FLAG_INIT_SHARED (6.18) exist in
 * the Rust guest_memfd, and the C one of 6.12 refuses them: here the
 * kernels differ by design, so each is checked against the model of its
 * own uAPI instead of against the other: 6.18's if /dev/kvm reports
 * KVM_CAP_GUEST_MEMFD_FLAGS, else 6.12's (the capability 0, every such
 * flag EINVAL).  One operation creates a guest_memfd with such flags and
 * runs a script on it: mappings (shared and private), host reads and
 * writes through the mapping (SIGBUS without INIT_SHARED and past the end
 * of the file), punches and allocations, a memslot bound to it and, on a
 * VM with a vCPU, guest reads and writes through that guest_memfd-only
 * memslot.  The model holds one qword per page.  Everything is undone at
 * the end, so the VM is left as it was.  The script is drawn before it
 * runs, so both kernels draw the same random numbers, and the trace line
 * holds the script and "= 0 OK", or the first step the model did not
 * predict.
 */
#define GM_MAX_PAGES	8
#define GM_MAX_STEPS	24
#define GM_MMAP		GUEST_MEMFD_FLAG_MMAP
#define GM_SHARED	GUEST_MEMFD_FLAG_INIT_SHARED

enum gm_kind {
	GM_MAP,		/* M: mmap(MAP_SHARED) of all pages and one past the end */
	GM_MAP_PRIVATE,	/* P: mmap(MAP_PRIVATE) */
	GM_UNMAP,	/* U */
	GM_READ,	/* r<page>: host read through the mapping */
	GM_WRITE,	/* w<page> */
	GM_PUNCH,	/* p<page>+<n> */
	GM_ALLOC,	/* a<page>+<n> */
	GM_BIND,	/* b: a memslot bound to the guest_memfd */
	GM_GUEST_READ,	/* g<page>: a guest read through that memslot */
	GM_GUEST_WRITE,	/* G<page> */
	NR_GM_KINDS,
};

/* Relative weights of the steps after the first two (a mapping, a bind). */
static const int gm_weights[NR_GM_KINDS] = {
	[GM_MAP] = 2, [GM_MAP_PRIVATE] = 1, [GM_UNMAP] = 1,
	[GM_READ] = 8, [GM_WRITE] = 8, [GM_PUNCH] = 4, [GM_ALLOC] = 2,
	[GM_BIND] = 1, [GM_GUEST_READ] = 6, [GM_GUEST_WRITE] = 6,
};

struct gm_step {
	enum gm_kind kind;
	int page, n;
};

static enum gm_kind gm_random_kind(void)
{
	int total = 0, i, r;

	for (i = 0; i < NR_GM_KINDS; i++)
		total += gm_weights[i];
	r = rn(total);
	for (i = 0; i < NR_GM_KINDS - 1; i++) {
		r -= gm_weights[i];
		if (r < 0)
			break;
	}
	return i;
}

/* The model and the kernel's objects of one gmem_mmap. */
struct gm_state {
	struct fvm *vm;
	uint64_t flags;
	int npages, fd, slot;
	uint64_t gpa;
	uint64_t *map;
	uint64_t val[GM_MAX_PAGES];
};

static bool has_gmem_flags;
/* What gmem_mmap checked: host touches, of them SIGBUS, guest accesses, binds. */
static unsigned long gm_host, gm_sigbus, gm_guest, gm_binds;

/* The flags 6.18 allows on @vm: INIT_SHARED only without private memory. */
static uint64_t gm_valid_flags(struct fvm *vm)
{
	if (!has_gmem_flags)
		return 0;
	return vm->type == KVM_X86_SW_PROTECTED_VM ? GM_MMAP : GM_MMAP | GM_SHARED;
}

/* A free memslot id and a free window GPA for @size bytes on @vm. */
static bool gm_find_room(struct fvm *vm, uint64_t size, int *slot, uint64_t *gpa)
{
	uint64_t g;
	int i, id;

	for (id = 100; find_slot(vm, id); id++)
		;
	for (g = WIN_GPA; g + size <= WIN_GPA + WIN_SIZE; g += SZ_2M) {
		for (i = 0; i < MAX_SLOTS; i++) {
			struct mslot *s = &vm->slots[i];

			if (s->live && s->gpa < g + size && g < s->gpa + s->size)
				break;
		}
		if (i == MAX_SLOTS) {
			*slot = id;
			*gpa = g;
			return true;
		}
	}
	return false;
}

static int gm_set_slot(struct gm_state *st, uint64_t size)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = st->slot,
		.flags = size ? KVM_MEM_GUEST_MEMFD : 0,
		.guest_phys_addr = st->gpa,
		.memory_size = size,
		.guest_memfd = st->fd,
	};

	return ioctl(st->vm->fd, KVM_SET_USER_MEMORY_REGION2, &r);
}

/*
 * Runs one step on the kernel and the model; returns NULL if they agree,
 * else what the kernel did that the model did not predict.
 */
static const char *gm_step(struct gm_state *st, const struct gm_step *t, uint64_t wval)
{
	static char why[96];
	bool shared = st->flags & GM_SHARED, mmap_ok = st->flags & GM_MMAP;
	size_t len = (st->npages + 1) * SZ_4K;
	uint64_t got = 0, *p;
	int i, r, saved;
	bool ok;

	switch (t->kind) {
	case GM_MAP:
	case GM_MAP_PRIVATE:
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 t->kind == GM_MAP ? MAP_SHARED : MAP_PRIVATE, st->fd, 0);
		/* 6.18: ENODEV without MMAP, then EINVAL for a private mapping. */
		r = !mmap_ok ? ENODEV : t->kind == GM_MAP_PRIVATE ? EINVAL : 0;
		if (p == MAP_FAILED ? errno != r : r != 0) {
			snprintf(why, sizeof(why), "mmap %s, want %s",
				 p == MAP_FAILED ? errname(errno) : "OK", r ? errname(r) : "OK");
			if (p != MAP_FAILED)
				munmap(p, len);
			return why;
		}
		if (p == MAP_FAILED)
			return NULL;
		if (st->map)
			munmap(st->map, len);
		st->map = p;
		return NULL;
	case GM_UNMAP:
		if (st->map)
			munmap(st->map, len);
		st->map = NULL;
		return NULL;
	case GM_READ:
	case GM_WRITE:
		if (!st->map)
			return NULL;
		ok = gmem_touch(st->map + t->page * SZ_4K / 8, t->kind == GM_WRITE, wval, &got);
		if (ok != (shared && t->page < st->npages)) {
			snprintf(why, sizeof(why), "host %s of page %d: %s", t->kind == GM_WRITE ?
				 "write" : "read", t->page, ok ? "no SIGBUS" : "SIGBUS");
			return why;
		}
		gm_host++;
		if (!ok) {
			gm_sigbus++;
			return NULL;
		}
		if (t->kind == GM_WRITE) {
			st->val[t->page] = wval;
		} else if (got != st->val[t->page]) {
			snprintf(why, sizeof(why), "host read 0x%lx from page %d, want 0x%lx",
				 got, t->page, st->val[t->page]);
			return why;
		}
		return NULL;
	case GM_PUNCH:
	case GM_ALLOC:
		r = fallocate(st->fd, FALLOC_FL_KEEP_SIZE |
			      (t->kind == GM_PUNCH ? FALLOC_FL_PUNCH_HOLE : 0),
			      t->page * SZ_4K, t->n * SZ_4K);
		if (r) {
			snprintf(why, sizeof(why), "fallocate %s", errname(errno));
			return why;
		}
		for (i = t->page; t->kind == GM_PUNCH && i < t->page + t->n; i++)
			st->val[i] = 0;
		return NULL;
	case GM_BIND:
		if (st->slot >= 0 || !gm_find_room(st->vm, st->npages * SZ_4K, &st->slot, &st->gpa))
			return NULL;
		/* 6.18 binds a guest_memfd on every VM type. */
		if (gm_set_slot(st, st->npages * SZ_4K)) {
			snprintf(why, sizeof(why), "bind %s", errname(errno));
			st->slot = -1;
			return why;
		}
		gm_binds++;
		return NULL;
	case GM_GUEST_READ:
	case GM_GUEST_WRITE:
		if (st->slot < 0 || !st->vm->vcpu)
			return NULL;
		/*
		 * guest_memfd-only: private or shared, the guest's access maps
		 * the guest_memfd's page.  probe_run()'s description is not
		 * part of the trace.
		 */
		saved = line_len;
		r = probe_run(st->vm, st->gpa + t->page * SZ_4K, t->kind == GM_GUEST_WRITE,
			      wval, &got);
		line_len = saved;
		line[line_len] = 0;
		gm_guest++;
		if (t->kind == GM_GUEST_WRITE)
			st->val[t->page] = wval;
		if (r != PROBE_VALUE || got != st->val[t->page]) {
			snprintf(why, sizeof(why), "guest %s of page %d: %s 0x%lx, want 0x%lx",
				 t->kind == GM_GUEST_WRITE ? "write" : "read", t->page,
				 r == PROBE_VALUE ? "value" : "no value", got, st->val[t->page]);
			return why;
		}
		return NULL;
	default:
		return NULL;
	}
}

static void op_gmem_mmap(int op, int index)
{
	static const char letters[NR_GM_KINDS] = "MPUrwpabgG";
	struct kvm_create_guest_memfd args = { 0 };
	struct gm_step steps[GM_MAX_STEPS];
	struct gm_state st = { .fd = -1, .slot = -1 };
	const char *why = NULL;
	int nsteps, i, fd;
	long cap, want;

	/* Guest accesses need a vCPU, host ones INIT_SHARED (a DEFAULT VM). */
	st.vm = pct(50) ? random_probe_vm() : random_vm_of_type(KVM_X86_DEFAULT_VM);
	if (!st.vm)
		st.vm = random_vm();
	/* Mostly flags the VM takes (an error ends the operation early). */
	if (pct(80))
		st.flags = st.vm->type == KVM_X86_SW_PROTECTED_VM ? GM_MMAP :
			   PICK(GM_MMAP | GM_SHARED, GM_MMAP | GM_SHARED, GM_MMAP, GM_SHARED);
	else
		st.flags = PICK(GM_MMAP, GM_SHARED, GM_MMAP | GM_SHARED);
	st.npages = 1 + rn(GM_MAX_PAGES);
	nsteps = 8 + rn(GM_MAX_STEPS - 7);
	out(" vm%d flags=0x%lx pages=%d", st.vm->name, st.flags, st.npages);
	for (i = 0; i < nsteps; i++) {
		struct gm_step *t = &steps[i];

		t->kind = i == 0 ? GM_MAP : i == 1 ? GM_BIND : gm_random_kind();
		/* Host accesses reach one page past the end of the file. */
		t->page = rn(st.npages + (t->kind == GM_READ || t->kind == GM_WRITE));
		t->n = 1 + rn(st.npages - t->page);
		out(i ? ",%c" : " script=%c", letters[t->kind]);
		if (t->kind >= GM_READ && t->kind != GM_BIND)
			out("%d", t->page);
		if (t->kind == GM_PUNCH || t->kind == GM_ALLOC)
			out("+%d", t->n);
	}

	/* The capability of this VM, then the creation. */
	cap = ioctl(st.vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	want = gm_valid_flags(st.vm);
	if (cap != want) {
		out(" = -1 MISMATCH cap=%ld want=%ld", cap, want);
		return;
	}
	args.size = st.npages * SZ_4K;
	args.flags = st.flags;
	fd = ioctl(st.vm->fd, KVM_CREATE_GUEST_MEMFD, &args);
	if (st.flags & ~want) {
		if (fd >= 0 || errno != EINVAL) {
			out(" = -1 MISMATCH create %s, want EINVAL",
			    fd >= 0 ? "OK" : errname(errno));
			if (fd >= 0)
				close(fd);
			return;
		}
		out(" = 0 OK");
		op_ok[op]++;
		return;
	}
	if (fd < 0) {
		out(" = -1 MISMATCH create %s, want OK", errname(errno));
		return;
	}
	st.fd = fd;
	for (i = 0; i < nsteps && !why; i++)
		why = gm_step(&st, &steps[i],
			      0x6d00000000000000ull | (uint64_t)index << 16 | i);
	if (st.map)
		munmap(st.map, (st.npages + 1) * SZ_4K);
	if (st.slot >= 0 && gm_set_slot(&st, 0) && !why)
		why = "memslot deletion failed";
	close(st.fd);
	if (why) {
		out(" = -1 MISMATCH step %d: %s", i, why);
		return;
	}
	out(" = 0 OK");
	op_ok[op]++;
}

/* ---- the driver ---- */

static int choose_op(void)
{
	int total = 0, i, r;
	bool have_vm = random_vm() != NULL;
	bool have_gmem = false, have_probe = false;

	for (i = 0; i < MAX_GMEMS; i++)
		have_gmem |= gmems[i].live;
	for (i = 0; i < MAX_VMS; i++)
		have_probe |= vms[i].live && vms[i].vcpu;
	for (i = 0; i < NR_OPS; i++)
		total += op_weights[i];
	r = rn(total);
	for (i = 0; i < NR_OPS; i++) {
		r -= op_weights[i];
		if (r < 0)
			break;
	}
	if (!have_vm)
		return OP_CREATE_VM;
	if ((i == OP_PROBE || i == OP_PREFAULT || i == OP_SCAN) && !have_probe)
		return OP_CREATE_PROBE_VM;
	if (i >= OP_CLOSE_GMEM && i <= OP_IOCTL && i != OP_SET_REGION &&
	    i != OP_SET_ATTR && !have_gmem)
		return OP_CREATE_GMEM;
	return i;
}

static void run_op(int index)
{
	int op = choose_op();
	bool want_probe = op == OP_CREATE_PROBE_VM;

	if (want_probe)
		op = OP_CREATE_VM;
	op_counts[op]++;
	out("%d %s", index, op_names[op]);
	switch (op) {
	case OP_CREATE_VM:
		op_create_vm(op, want_probe);
		break;
	case OP_CLOSE_VM:
		op_close_vm(op);
		break;
	case OP_CREATE_GMEM:
		op_create_gmem(op);
		break;
	case OP_CLOSE_GMEM:
		op_close_gmem(op);
		break;
	case OP_SET_REGION:
		op_set_region(op);
		break;
	case OP_SET_ATTR:
		op_set_attr(op);
		break;
	case OP_FALLOCATE:
		op_fallocate(op);
		break;
	case OP_FTRUNCATE:
		op_ftruncate(op);
		break;
	case OP_RW:
		op_rw(op);
		break;
	case OP_MMAP:
		op_mmap(op);
		break;
	case OP_LSEEK:
		op_lseek(op);
		break;
	case OP_FSTAT:
		op_fstat(op);
		break;
	case OP_FCNTL:
		op_fcntl(op);
		break;
	case OP_IOCTL:
		op_ioctl(op);
		break;
	case OP_CHECK_EXT:
		op_check_ext(op);
		break;
	case OP_PROBE:
		op_probe(op, index);
		break;
	case OP_PREFAULT:
		op_prefault(op);
		break;
	case OP_SCAN:
		op_scan(op);
		break;
	case OP_GMEM_MMAP:
		op_gmem_mmap(op, index);
		break;
	}
	end_line();
}

static void run_seed(uint64_t seed, unsigned long nr_ops)
{
	unsigned long i;

	rng_state = seed;
	trace_hash = 0xcbf29ce484222325ull;
	next_vm_name = next_gmem_name = 0;
	seed_ops = 0;
	if (!quiet)
		printf("## seed %lu begin\n", seed);
	for (i = 0; i < nr_ops; i++) {
		run_op(i);
		seed_ops++;
	}
	for (i = 0; i < MAX_GMEMS; i++) {
		if (gmems[i].live)
			close(gmems[i].fd);
		gmems[i].live = false;
	}
	for (i = 0; i < MAX_VMS; i++)
		if (vms[i].live)
			close_vm(&vms[i]);
	printf("## seed %lu end: %lu ops, hash %016lx\n", seed, seed_ops, trace_hash);
	fflush(stdout);
}

static void fill_host(void)
{
	uint64_t *w;

	host = mmap(NULL, HOST_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		    MAP_NORESERVE, -1, 0);
	TEST_ASSERT(host != MAP_FAILED, "mmap reserve");
	w = mmap(host, HOST_SIZE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	TEST_ASSERT(w == (void *)host, "mmap host buffer");
	gmem_fill_pattern(w, HOST_SIZE, 0, 0xa500000000000000ull);
}

static void print_usage(const char *name)
{
	printf("Usage: %s [-s SEED] [-S A,B,...|-S FIRST+COUNT] [-n OPS] [-q]\n"
	       " -s: one seed (default 1); -S: several seeds, run in sequence\n"
	       " -n: operations per seed (default 1000)\n"
	       " -q: print only the per-seed summary lines\n", name);
}

int main(int argc, char *argv[])
{
	uint64_t seeds[MAX_SEEDS] = { 1 };
	unsigned long nr_ops = 1000, total = 0;
	int nr_seeds = 1, opt, i;
	struct timespec t0, t1;
	double secs;
	char *p, *end;

	while ((opt = getopt(argc, argv, "s:S:n:qh")) != -1) {
		switch (opt) {
		case 's':
			seeds[0] = strtoull(optarg, NULL, 0);
			nr_seeds = 1;
			break;
		case 'S':
			nr_seeds = 0;
			p = optarg;
			if (strchr(p, '+')) {
				uint64_t first = strtoull(p, &end, 0);
				int n = strtol(end + 1, NULL, 0);

				for (i = 0; i < n && i < MAX_SEEDS; i++)
					seeds[nr_seeds++] = first + i;
				break;
			}
			while (*p && nr_seeds < MAX_SEEDS) {
				seeds[nr_seeds++] = strtoull(p, &end, 0);
				p = *end ? end + 1 : end;
			}
			break;
		case 'n':
			nr_ops = strtoul(optarg, NULL, 0);
			break;
		case 'q':
			quiet = true;
			break;
		default:
			gmem_usage_exit(opt, argv[0], print_usage);
		}
	}

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));

	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	kvm_fd = open_kvm_dev_path_or_exit();
	has_gmem_flags = kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) != 0;
	fill_host();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < nr_seeds; i++) {
		run_seed(seeds[i], nr_ops);
		total += nr_ops;
	}
	printf("# gmem_mmap checked %lu host touches (%lu SIGBUS), %lu guest accesses, %lu binds\n",
	       gm_host, gm_sigbus, gm_guest, gm_binds);
	printf("# fuzz: seed%s", nr_seeds > 1 ? "s" : "");
	for (i = 0; i < nr_seeds; i++)
		printf("%s%lu", i ? "," : " ", seeds[i]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf(", %lu ops in %.1f s (%.0f ops/s), ok/run per op:", total, secs,
	       total / secs);
	for (i = 0; i < NR_OPS; i++)
		printf(" %s %lu/%lu", op_names[i], op_ok[i], op_counts[i]);
	printf("\n");
	return 0;
}
