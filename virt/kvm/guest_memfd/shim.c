// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of the Rust guest_memfd: the KVM internals it needs that are
 * macros, static inlines or structure fields, and the symbol exports.
 * Nothing here makes a decision; the logic lives in the Rust files.
 */
#include <linux/kvm_host.h>
#include <linux/kvm_gmem.h>
#include <linux/ratelimit.h>

#include "shim.h"

#include "../kvm_mm.h"

void kvm_gmem_shim_get_kvm(struct kvm *kvm)
{
	kvm_get_kvm(kvm);
}

void kvm_gmem_shim_put_kvm(struct kvm *kvm)
{
	kvm_put_kvm(kvm);
}

void kvm_gmem_shim_slots_lock(struct kvm *kvm)
{
	mutex_lock(&kvm->slots_lock);
}

void kvm_gmem_shim_slots_unlock(struct kvm *kvm)
{
	mutex_unlock(&kvm->slots_lock);
}

void kvm_gmem_shim_assert_slots_locked(struct kvm *kvm)
{
	lockdep_assert_held(&kvm->slots_lock);
}

/*
 * The lock of the bindings of every guest_memfd against memory errors: see
 * "Locking" in Documentation/virt/kvm/guest-memfd-rust.rst.  It lives here,
 * not in the guest_memfd's state, because it also guards that state's
 * lifetime as seen from the mapping.
 */
static DEFINE_MUTEX(kvm_gmem_bindings_mutex);

void kvm_gmem_shim_bindings_lock(void)
{
	mutex_lock(&kvm_gmem_bindings_mutex);
}

void kvm_gmem_shim_bindings_unlock(void)
{
	mutex_unlock(&kvm_gmem_bindings_mutex);
}

u64 kvm_gmem_shim_slot_base_gfn(const struct kvm_memory_slot *slot)
{
	return slot->base_gfn;
}

unsigned long kvm_gmem_shim_slot_npages(const struct kvm_memory_slot *slot)
{
	return slot->npages;
}

unsigned long kvm_gmem_shim_slot_pgoff(const struct kvm_memory_slot *slot)
{
	return slot->gmem.pgoff;
}

struct file *kvm_gmem_shim_slot_file(const struct kvm_memory_slot *slot)
{
	return READ_ONCE(slot->gmem.file);
}

struct address_space *kvm_gmem_shim_slot_file_mapping(const struct kvm_memory_slot *slot)
{
	struct file *file = READ_ONCE(slot->gmem.file);

	return file ? file->f_mapping : NULL;
}

struct file **kvm_gmem_shim_slot_file_slot(struct kvm_memory_slot *slot)
{
	return &slot->gmem.file;
}

void kvm_gmem_shim_slot_set_binding(struct kvm_memory_slot *slot,
				    struct file *file, unsigned long pgoff)
{
	slot->gmem.pgoff = pgoff;
	WRITE_ONCE(slot->gmem.file, file);
}

void kvm_gmem_shim_slot_set_gmem_only(struct kvm_memory_slot *slot)
{
	slot->flags |= KVM_MEMSLOT_GMEM_ONLY;
}

bool kvm_gmem_shim_slot_can_be_private(const struct kvm_memory_slot *slot)
{
	return kvm_slot_can_be_private(slot);
}

struct kvm_memory_slot *kvm_gmem_shim_gfn_to_memslot(struct kvm *kvm, u64 gfn)
{
	return gfn_to_memslot(kvm, gfn);
}

void kvm_gmem_shim_mmu_lock(struct kvm *kvm)
{
	KVM_MMU_LOCK(kvm);
}

void kvm_gmem_shim_mmu_unlock(struct kvm *kvm)
{
	KVM_MMU_UNLOCK(kvm);
}

void kvm_gmem_shim_mmu_invalidate_begin(struct kvm *kvm)
{
	kvm_mmu_invalidate_begin(kvm);
}

void kvm_gmem_shim_mmu_invalidate_end(struct kvm *kvm)
{
	kvm_mmu_invalidate_end(kvm);
}

bool kvm_gmem_shim_unmap(struct kvm *kvm, struct kvm_memory_slot *slot,
			 u64 start_gfn, u64 end_gfn, bool shared)
{
	struct kvm_gfn_range range = {
		.start = start_gfn,
		.end = end_gfn,
		.slot = slot,
		.may_block = true,
		.attr_filter = shared ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE,
	};

	return kvm_mmu_unmap_gfn_range(kvm, &range);
}

void kvm_gmem_shim_flush_remote_tlbs(struct kvm *kvm)
{
	kvm_flush_remote_tlbs(kvm);
}

int kvm_gmem_shim_arch_prepare(struct kvm *kvm, u64 gfn, u64 pfn, int order)
{
#ifdef CONFIG_HAVE_KVM_ARCH_GMEM_PREPARE
	return kvm_arch_gmem_prepare(kvm, gfn, pfn, order);
#else
	return 0;
#endif
}

/*
 * The rate limit of the warning about a failed prepare hook, which C's
 * guest_memfd prints with pr_warn_ratelimited(): a static ratelimit_state
 * per call site is a macro.
 */
bool kvm_gmem_shim_prepare_warn_ratelimit(void)
{
	static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL,
				      DEFAULT_RATELIMIT_BURST);

	return __ratelimit(&rs);
}

void kvm_gmem_shim_arch_invalidate(u64 start_pfn, u64 end_pfn)
{
#ifdef CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE
	kvm_arch_gmem_invalidate(start_pfn, end_pfn);
#endif
}

bool kvm_gmem_shim_has_private_mem(struct kvm *kvm)
{
	return kvm_arch_has_private_mem(kvm);
}

#ifdef CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES
struct xarray *kvm_gmem_shim_mem_attr_array(struct kvm *kvm)
{
	return &kvm->mem_attr_array;
}
#endif

/*
 * These entry points are Rust functions (ffi.rs), declared in kvm_gmem.h;
 * kvm-amd uses them.  As in rust/exports.c, the export cannot follow a C
 * definition.
 */
#define GMEM_EXPORT_RUST_GPL(sym) EXPORT_SYMBOL_GPL(sym)

GMEM_EXPORT_RUST_GPL(kvm_gmem_get_pfn);
#ifdef CONFIG_KVM_GENERIC_PRIVATE_MEM
GMEM_EXPORT_RUST_GPL(kvm_gmem_populate);
#endif
