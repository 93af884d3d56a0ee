/* SPDX-License-Identifier: GPL-2.0 */
/*
 * guest_memfd: KVM's guest-first memory.
 *
 * The entry points KVM calls, implemented either by virt/kvm/guest_memfd.c
 * or, with CONFIG_KVM_GUEST_MEMFD_RUST, by the Rust implementation in
 * virt/kvm/guest_memfd/.  The second half declares the C shim through which
 * the Rust implementation reaches KVM internals that are macros, inlines or
 * structure fields; it is also read by bindgen, so it only uses types that
 * need no KVM headers.
 */
#ifndef __LINUX_KVM_GMEM_H
#define __LINUX_KVM_GMEM_H

#include <linux/types.h>
#include <linux/kvm_types.h>

struct file;
struct kvm;
struct kvm_create_guest_memfd;
struct kvm_memory_attributes;
struct kvm_memory_slot;
struct module;
struct xarray;

#ifdef CONFIG_KVM_PRIVATE_MEM
void kvm_gmem_init(struct module *module);
int kvm_gmem_create(struct kvm *kvm, struct kvm_create_guest_memfd *args);
int kvm_gmem_bind(struct kvm *kvm, struct kvm_memory_slot *slot,
		  unsigned int fd, u64 offset);
void kvm_gmem_unbind(struct kvm_memory_slot *slot);
int kvm_gmem_get_pfn(struct kvm *kvm, struct kvm_memory_slot *slot,
		     gfn_t gfn, kvm_pfn_t *pfn, int *max_order);
#endif /* CONFIG_KVM_PRIVATE_MEM */

#ifdef CONFIG_KVM_GENERIC_PRIVATE_MEM
/**
 * kvm_gmem_populate() - Populate/prepare a GPA range with guest data
 *
 * @kvm: KVM instance
 * @gfn: starting GFN to be populated
 * @src: userspace-provided buffer containing data to copy into GFN range
 *       (passed to @post_populate, and incremented on each iteration
 *       if not NULL)
 * @npages: number of pages to copy from userspace-buffer
 * @post_populate: callback to issue for each gmem page that backs the GPA
 *                 range
 * @opaque: opaque data to pass to @post_populate callback
 *
 * This is primarily intended for cases where a gmem-backed GPA range needs
 * to be initialized with userspace-provided data prior to being mapped into
 * the guest as a private page. This should be called with the slots->lock
 * held so that caller-enforced invariants regarding the expected memory
 * attributes of the GPA range do not race with KVM_SET_MEMORY_ATTRIBUTES.
 *
 * Returns the number of pages that were populated.
 */
typedef int (*kvm_gmem_populate_cb)(struct kvm *kvm, gfn_t gfn, kvm_pfn_t pfn,
				    void __user *src, int order, void *opaque);

long kvm_gmem_populate(struct kvm *kvm, gfn_t gfn, void __user *src, long npages,
		       kvm_gmem_populate_cb post_populate, void *opaque);
#endif /* CONFIG_KVM_GENERIC_PRIVATE_MEM */

#if defined(CONFIG_KVM_GUEST_MEMFD_RUST) && \
	defined(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)
/*
 * KVM_CAP_MEMORY_ATTRIBUTES and KVM_SET_MEMORY_ATTRIBUTES, also in Rust
 * (attributes.rs), as is kvm_range_has_memory_attributes().
 */
u64 kvm_gmem_supported_mem_attributes(struct kvm *kvm);
int kvm_gmem_set_mem_attributes(struct kvm *kvm,
				const struct kvm_memory_attributes *attrs);
#endif

#ifdef CONFIG_KVM_GUEST_MEMFD_RUST
/* VM lifetime and locks. */
void kvm_gmem_shim_get_kvm(struct kvm *kvm);
void kvm_gmem_shim_put_kvm(struct kvm *kvm);
void kvm_gmem_shim_slots_lock(struct kvm *kvm);
void kvm_gmem_shim_slots_unlock(struct kvm *kvm);
void kvm_gmem_shim_assert_slots_locked(struct kvm *kvm);

/* Memslot fields. */
u64 kvm_gmem_shim_slot_base_gfn(const struct kvm_memory_slot *slot);
unsigned long kvm_gmem_shim_slot_npages(const struct kvm_memory_slot *slot);
unsigned long kvm_gmem_shim_slot_pgoff(const struct kvm_memory_slot *slot);
struct file *kvm_gmem_shim_slot_file(const struct kvm_memory_slot *slot);
struct file **kvm_gmem_shim_slot_file_slot(struct kvm_memory_slot *slot);
void kvm_gmem_shim_slot_set_binding(struct kvm_memory_slot *slot,
				    struct file *file, unsigned long pgoff);
bool kvm_gmem_shim_slot_can_be_private(const struct kvm_memory_slot *slot);
struct kvm_memory_slot *kvm_gmem_shim_gfn_to_memslot(struct kvm *kvm, u64 gfn);

/* Zapping private mappings: mmu_lock, invalidation and TLB flushes. */
void kvm_gmem_shim_mmu_lock(struct kvm *kvm);
void kvm_gmem_shim_mmu_unlock(struct kvm *kvm);
void kvm_gmem_shim_mmu_invalidate_begin(struct kvm *kvm);
void kvm_gmem_shim_mmu_invalidate_end(struct kvm *kvm);
bool kvm_gmem_shim_unmap_private(struct kvm *kvm, struct kvm_memory_slot *slot,
				 u64 start_gfn, u64 end_gfn);
void kvm_gmem_shim_flush_remote_tlbs(struct kvm *kvm);

/* Arch hooks (SEV-SNP); no-ops where the architecture has none. */
int kvm_gmem_shim_arch_prepare(struct kvm *kvm, u64 gfn, u64 pfn, int order);
void kvm_gmem_shim_arch_invalidate(u64 start_pfn, u64 end_pfn);

/* Memory attributes; the pre/post hooks are in kvm_main.c. */
bool kvm_gmem_shim_has_private_mem(struct kvm *kvm);
#ifdef CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES
struct xarray *kvm_gmem_shim_mem_attr_array(struct kvm *kvm);
void kvm_gmem_shim_attrs_pre_set(struct kvm *kvm, gfn_t start, gfn_t end,
				 unsigned long attrs);
void kvm_gmem_shim_attrs_post_set(struct kvm *kvm, gfn_t start, gfn_t end,
				  unsigned long attrs);
#endif

/* cond_resched() is a macro, fatal_signal_pending() an inline. */
void kvm_gmem_shim_cond_resched(void);
bool kvm_gmem_shim_fatal_signal_pending(void);
#endif /* CONFIG_KVM_GUEST_MEMFD_RUST */

#endif /* __LINUX_KVM_GMEM_H */
