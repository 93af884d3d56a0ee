/* SPDX-License-Identifier: GPL-2.0 */
/*
 * guest_memfd: KVM's guest-first memory.
 *
 * The entry points KVM calls, implemented either by virt/kvm/guest_memfd.c
 * or, with CONFIG_KVM_GUEST_MEMFD_RUST, by the Rust implementation in
 * virt/kvm/guest_memfd/.  It is also read by bindgen, which checks the Rust
 * definitions against these prototypes, so it only uses types that need no
 * KVM headers.
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

#if defined(CONFIG_KVM_GUEST_MEMFD_RUST) && defined(CONFIG_KVM_PRIVATE_MEM)
/*
 * KVM_CAP_GUEST_MEMFD_FLAGS (6.18 uAPI, Rust only): the GUEST_MEMFD_FLAG_*
 * that KVM_CREATE_GUEST_MEMFD accepts for @kvm, or that this kernel
 * supports when @kvm is NULL.
 */
u64 kvm_gmem_supported_flags(struct kvm *kvm);
#endif

#if defined(CONFIG_KVM_GUEST_MEMFD_RUST) && defined(CONFIG_KVM_PRIVATE_MEM)
/*
 * The guest_memfd pseudo-filesystem (6.19's semantics; Rust only,
 * virt/kvm/guest_memfd/fs.c): kvm_init() mounts it, kvm_exit() unmounts it.
 */
int kvm_gmem_fs_init(void);
void kvm_gmem_fs_exit(void);
#elif defined(CONFIG_KVM_PRIVATE_MEM)
static inline int kvm_gmem_fs_init(void)
{
	return 0;
}

static inline void kvm_gmem_fs_exit(void)
{
}
#endif

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

#endif /* __LINUX_KVM_GMEM_H */
