// SPDX-License-Identifier: GPL-2.0

//! NUMA memory policies of files.
//!
//! A file may keep a memory policy per range of its pages, as shmem does: `mbind()` on a shared
//! mapping of it sets one through `vm_operations_struct::set_policy`, and it then governs the
//! node of every page allocated later in that range, whoever allocates it. Such a file has a
//! [`SharedPolicy`]; [`SharedPolicy::lookup`] gives the [`Mempolicy`] of one page, which
//! [`Mapping::grab_folio_mpol`] allocates a new folio by.
//!
//! Without `CONFIG_NUMA` there are no policies: every lookup finds none.
//!
//! C header: [`include/linux/mempolicy.h`](srctree/include/linux/mempolicy.h)
//!
//! [`Mapping::grab_folio_mpol`]: crate::filemap::Mapping::grab_folio_mpol

use crate::{bindings, types::Opaque};
use core::ptr::NonNull;

/// The memory policies of the ranges of a file, by page index: a C `struct shared_policy`.
///
/// # Invariants
///
/// A `&SharedPolicy` points to a shared policy that `mpol_shared_policy_init()` has initialised
/// and that `mpol_free_shared_policy()` will not free for the lifetime of the borrow.
///
/// # Examples
///
/// The node of a file's new page is the policy's choice if the page has one, the task's if not:
///
/// ```
/// use kernel::{filemap::Mapping, folio::LockedFolio, mm::mempolicy::SharedPolicy, prelude::*};
///
/// fn grab(mapping: &Mapping, policy: &SharedPolicy, index: usize) -> Result<LockedFolio> {
///     let mpol = policy.lookup(index);
///     mapping.grab_folio_mpol(index, mpol.as_ref(), index)
/// }
/// # let _ = grab;
/// ```
#[repr(transparent)]
pub struct SharedPolicy(Opaque<bindings::shared_policy>);

// SAFETY: A shared policy has its own lock (`sp->lock`), taken by every function that reads or
// changes it, so it may be used from any thread and from several at once.
unsafe impl Send for SharedPolicy {}

// SAFETY: See above.
unsafe impl Sync for SharedPolicy {}

impl SharedPolicy {
    /// Creates a reference to a shared policy from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` points to a shared policy that `mpol_shared_policy_init()` initialised and that is
    /// not freed for the whole lifetime `'a` (for example, the inode that holds it stays alive).
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::shared_policy) -> &'a Self {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `SharedPolicy` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// The policy of the page at `index` (`mpol_shared_policy_lookup`), or `None` if none is
    /// set there, in which case allocations follow the allocating task's policy.
    pub fn lookup(&self, index: usize) -> Option<Mempolicy> {
        #[cfg(CONFIG_NUMA)]
        {
            // SAFETY: By the type invariants the shared policy is initialised and alive. The
            // lookup takes its own lock and returns null or a policy with a new reference.
            let ptr = unsafe { bindings::mpol_shared_policy_lookup(self.0.get(), index) };
            // INVARIANT: The reference the lookup took goes to the `Mempolicy`.
            NonNull::new(ptr).map(Mempolicy)
        }
        #[cfg(not(CONFIG_NUMA))]
        {
            let _ = index;
            None
        }
    }
}

/// A NUMA memory policy that [`SharedPolicy::lookup`] found: a C `struct mempolicy` with a
/// reference on it, which dropping puts back (`mpol_cond_put`).
///
/// # Invariants
///
/// `self.0` points to a memory policy on which this object owns a reference.
pub struct Mempolicy(NonNull<bindings::mempolicy>);

impl Mempolicy {
    /// Returns a raw pointer to the C `struct mempolicy`, valid as long as `self` is.
    pub fn as_raw(&self) -> *mut bindings::mempolicy {
        self.0.as_ptr()
    }
}

impl Drop for Mempolicy {
    fn drop(&mut self) {
        // SAFETY: By the type invariants we own a reference on the policy, and give it back.
        // Lookups only return policies of shared policies, which `mpol_cond_put()` puts.
        unsafe { bindings::mpol_cond_put(self.0.as_ptr()) };
    }
}
