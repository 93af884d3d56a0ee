/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C shim of the Rust guest_memfd (shim.c): the KVM internals it needs
 * that are macros, static inlines or structure fields.  Private to
 * virt/kvm/; read by bindgen through rust/bindings/bindings_helper.h, so it
 * only uses types that need no KVM headers.  The attribute hooks are
 * defined in kvm_main.c, next to what they call.
 */
#ifndef __KVM_GMEM_SHIM_H
#define __KVM_GMEM_SHIM_H

#include <linux/fs.h>
#include <linux/types.h>
#include <linux/kvm_types.h>

struct address_space;
struct file;
struct inode;
struct kvm;
struct kvm_memory_slot;
struct mempolicy;
struct shared_policy;
struct vm_area_struct;
struct xarray;

/* VM lifetime and locks. */
void kvm_gmem_shim_get_kvm(struct kvm *kvm);
void kvm_gmem_shim_put_kvm(struct kvm *kvm);
void kvm_gmem_shim_slots_lock(struct kvm *kvm);
void kvm_gmem_shim_slots_unlock(struct kvm *kvm);
void kvm_gmem_shim_assert_slots_locked(struct kvm *kvm);
void kvm_gmem_shim_bindings_lock(void);
void kvm_gmem_shim_bindings_unlock(void);

/* Memslot fields. */
u64 kvm_gmem_shim_slot_base_gfn(const struct kvm_memory_slot *slot);
unsigned long kvm_gmem_shim_slot_npages(const struct kvm_memory_slot *slot);
unsigned long kvm_gmem_shim_slot_pgoff(const struct kvm_memory_slot *slot);
struct file *kvm_gmem_shim_slot_file(const struct kvm_memory_slot *slot);
struct address_space *kvm_gmem_shim_slot_file_mapping(const struct kvm_memory_slot *slot);
struct file **kvm_gmem_shim_slot_file_slot(struct kvm_memory_slot *slot);
void kvm_gmem_shim_slot_set_binding(struct kvm_memory_slot *slot,
				    struct file *file, unsigned long pgoff);
void kvm_gmem_shim_slot_set_gmem_only(struct kvm_memory_slot *slot);
bool kvm_gmem_shim_slot_can_be_private(const struct kvm_memory_slot *slot);
struct kvm_memory_slot *kvm_gmem_shim_gfn_to_memslot(struct kvm *kvm, u64 gfn);

/* Zapping guest mappings: mmu_lock, invalidation and TLB flushes. */
void kvm_gmem_shim_mmu_lock(struct kvm *kvm);
void kvm_gmem_shim_mmu_unlock(struct kvm *kvm);
void kvm_gmem_shim_mmu_invalidate_begin(struct kvm *kvm);
void kvm_gmem_shim_mmu_invalidate_end(struct kvm *kvm);
bool kvm_gmem_shim_unmap(struct kvm *kvm, struct kvm_memory_slot *slot,
			 u64 start_gfn, u64 end_gfn, bool shared);
void kvm_gmem_shim_flush_remote_tlbs(struct kvm *kvm);

/* Arch hooks (SEV-SNP); no-ops where the architecture has none. */
int kvm_gmem_shim_arch_prepare(struct kvm *kvm, u64 gfn, u64 pfn, int order);
bool kvm_gmem_shim_prepare_warn_ratelimit(void);
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

/*
 * The guest_memfd pseudo-filesystem (fs.c): files on new inodes of its
 * mount, with anon_inode_create_getfile()'s contract, and each inode's
 * shared NUMA memory policy.
 */
struct file *kvm_gmem_fs_getfile(const char *name,
				 const struct file_operations *fops,
				 void *priv, int flags,
				 const struct inode *context_inode);
struct shared_policy *kvm_gmem_fs_inode_policy(struct inode *inode);
#ifdef CONFIG_NUMA
int kvm_gmem_fs_set_policy(struct vm_area_struct *vma, struct mempolicy *mpol);
struct mempolicy *kvm_gmem_fs_get_policy(struct vm_area_struct *vma,
					 unsigned long addr, pgoff_t *ilx);
#endif

#endif /* __KVM_GMEM_SHIM_H */
