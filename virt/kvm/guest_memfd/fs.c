// SPDX-License-Identifier: GPL-2.0
/*
 * The guest_memfd pseudo-filesystem of the Rust guest_memfd (6.19's
 * semantics): every guest_memfd file gets a new inode of this internal
 * mount instead of one of the anonymous-inode filesystem, so that the inode
 * can carry what belongs to the memory rather than to one VM's view of it:
 * its shared NUMA memory policy, which mbind() on a host mapping sets and
 * every later allocation of the file's pages follows.
 *
 * This is VFS plumbing, C because it is made of C structure layouts and
 * callbacks; the guest_memfd logic, including where a new page is placed,
 * is in the Rust files (policy.rs).  The files it creates have the same
 * security context as anon_inode_create_getfile()'s: the LSM sees an
 * anonymous inode of class "[kvm-gmem]".
 */
#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kvm_gmem.h>
#include <linux/magic.h>
#include <linux/mempolicy.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>
#include <linux/slab.h>

#include "shim.h"

/* A guest_memfd inode: the VFS inode and the memory's NUMA policy. */
struct kvm_gmem_inode {
	struct shared_policy policy;
	struct inode vfs_inode;
};

static struct kmem_cache *kvm_gmem_inode_cachep;
static struct vfsmount *kvm_gmem_mnt;

static struct kvm_gmem_inode *KVM_GMEM_I(struct inode *inode)
{
	return container_of(inode, struct kvm_gmem_inode, vfs_inode);
}

/* Only what holds for every use of the object: the slab constructor. */
static void kvm_gmem_inode_once(void *obj)
{
	struct kvm_gmem_inode *gi = obj;

	inode_init_once(&gi->vfs_inode);
}

static struct inode *kvm_gmem_alloc_inode(struct super_block *sb)
{
	struct kvm_gmem_inode *gi;

	gi = alloc_inode_sb(sb, kvm_gmem_inode_cachep, GFP_KERNEL);
	if (!gi)
		return NULL;

	/* No policy: allocations follow the allocating task's. */
	mpol_shared_policy_init(&gi->policy, NULL);
	return &gi->vfs_inode;
}

static void kvm_gmem_destroy_inode(struct inode *inode)
{
	mpol_free_shared_policy(&KVM_GMEM_I(inode)->policy);
}

static void kvm_gmem_free_inode(struct inode *inode)
{
	kmem_cache_free(kvm_gmem_inode_cachep, KVM_GMEM_I(inode));
}

static const struct super_operations kvm_gmem_sops = {
	.statfs		= simple_statfs,
	.alloc_inode	= kvm_gmem_alloc_inode,
	.destroy_inode	= kvm_gmem_destroy_inode,
	.free_inode	= kvm_gmem_free_inode,
};

static int kvm_gmem_init_fs_context(struct fs_context *fc)
{
	struct pseudo_fs_context *ctx = init_pseudo(fc, GUEST_MEMFD_MAGIC);

	if (!ctx)
		return -ENOMEM;
	ctx->ops = &kvm_gmem_sops;
	return 0;
}

static struct file_system_type kvm_gmem_fs_type = {
	.name		 = "guest_memfd",
	.init_fs_context = kvm_gmem_init_fs_context,
	.kill_sb	 = kill_anon_super,
};

int kvm_gmem_fs_init(void)
{
	struct kmem_cache_args args = { .ctor = kvm_gmem_inode_once };

	kvm_gmem_inode_cachep = kmem_cache_create("kvm_gmem_inode_cache",
						  sizeof(struct kvm_gmem_inode),
						  &args, SLAB_ACCOUNT);
	if (!kvm_gmem_inode_cachep)
		return -ENOMEM;

	kvm_gmem_mnt = kern_mount(&kvm_gmem_fs_type);
	if (IS_ERR(kvm_gmem_mnt)) {
		int r = PTR_ERR(kvm_gmem_mnt);

		kvm_gmem_mnt = NULL;
		kmem_cache_destroy(kvm_gmem_inode_cachep);
		return r;
	}
	kvm_gmem_mnt->mnt_flags |= MNT_NOEXEC;
	return 0;
}

void kvm_gmem_fs_exit(void)
{
	kern_unmount(kvm_gmem_mnt);
	kvm_gmem_mnt = NULL;
	/* Inodes are freed after an RCU grace period. */
	rcu_barrier();
	kmem_cache_destroy(kvm_gmem_inode_cachep);
}

/*
 * anon_inode_create_getfile() on the guest_memfd mount: a new file on a new
 * inode of ours, with the security context of an anonymous inode named
 * @name.  The same contract, step by step, as the function it replaces.
 */
struct file *kvm_gmem_fs_getfile(const char *name,
				 const struct file_operations *fops,
				 void *priv, int flags,
				 const struct inode *context_inode)
{
	struct inode *inode;
	struct file *file;

	if (fops->owner && !try_module_get(fops->owner))
		return ERR_PTR(-ENOENT);

	inode = anon_inode_make_secure_inode(kvm_gmem_mnt->mnt_sb, name,
					     context_inode);
	if (IS_ERR(inode)) {
		file = ERR_CAST(inode);
		goto err;
	}

	file = alloc_file_pseudo(inode, kvm_gmem_mnt, name,
				 flags & (O_ACCMODE | O_NONBLOCK), fops);
	if (IS_ERR(file))
		goto err_iput;

	file->f_mapping = inode->i_mapping;
	file->private_data = priv;
	return file;

err_iput:
	iput(inode);
err:
	module_put(fops->owner);
	return file;
}

struct shared_policy *kvm_gmem_fs_inode_policy(struct inode *inode)
{
	return &KVM_GMEM_I(inode)->policy;
}

#ifdef CONFIG_NUMA
/* vm_operations_struct::set_policy: mbind() on a guest_memfd mapping. */
int kvm_gmem_fs_set_policy(struct vm_area_struct *vma, struct mempolicy *mpol)
{
	struct inode *inode = file_inode(vma->vm_file);

	return mpol_set_shared_policy(&KVM_GMEM_I(inode)->policy, vma, mpol);
}

/*
 * vm_operations_struct::get_policy: the policy set for the page at @addr,
 * or NULL if mbind() set none, which get_mempolicy() reports as the default
 * policy rather than the task's.  Interleaving is biased by the inode
 * number, as new pages are (policy.rs).
 */
struct mempolicy *kvm_gmem_fs_get_policy(struct vm_area_struct *vma,
					 unsigned long addr, pgoff_t *ilx)
{
	struct inode *inode = file_inode(vma->vm_file);

	*ilx = inode->i_ino;
	return mpol_shared_policy_lookup(&KVM_GMEM_I(inode)->policy,
					 linear_page_index(vma, addr));
}
#endif
