// SPDX-License-Identifier: GPL-2.0

//! Virtual memory areas being mapped.
//!
//! [`VmaNew`] is the `struct vm_area_struct` that `file_operations::mmap` receives: a mapping of
//! the file that is not yet visible to anyone, whose flags the callback checks and whose
//! operations it installs.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)

use crate::{bindings, mm::fault::VmOperations, types::Opaque};

/// The flags of a vma (`vm_flags_t`).
pub type VmFlags = bindings::vm_flags_t;

/// Flags of a vma (`VM_*`).
pub mod flags {
    use super::VmFlags;
    use crate::bindings;

    /// The mapping may be read.
    pub const READ: VmFlags = bindings::VM_READ as VmFlags;

    /// The mapping may be written.
    pub const WRITE: VmFlags = bindings::VM_WRITE as VmFlags;

    /// Writes reach the file and every other shared mapping of it (`MAP_SHARED` of a file
    /// opened for writing).
    pub const SHARED: VmFlags = bindings::VM_SHARED as VmFlags;

    /// The mapping was asked for with `MAP_SHARED`.
    pub const MAYSHARE: VmFlags = bindings::VM_MAYSHARE as VmFlags;
}

/// A virtual memory area being created by `mmap()`, as `file_operations::mmap` sees it.
///
/// Nobody else can see the vma yet, and the caller holds the mmap lock for writing, so the
/// callback may change it.
///
/// # Invariants
///
/// A `&VmaNew` points to a valid `struct vm_area_struct` that is being set up by `mmap()` for
/// the lifetime of the borrow: it is not yet in the address space of its process.
///
/// # Examples
///
/// The `mmap` callback of a file that allows shared mappings only:
///
/// ```
/// use kernel::mm::virt::{flags, VmaNew};
///
/// fn check(vma: &VmaNew) -> Result {
///     if vma.flags() & (flags::SHARED | flags::MAYSHARE) != flags::SHARED | flags::MAYSHARE {
///         return Err(EINVAL);
///     }
///     Ok(())
/// }
///
/// // SAFETY: All-zeroes is a valid `vm_area_struct` for reading its fields.
/// let mut raw: kernel::bindings::vm_area_struct = unsafe { core::mem::zeroed() };
/// raw.__bindgen_anon_1.__bindgen_anon_1 =
///     kernel::bindings::vm_area_struct__bindgen_ty_1__bindgen_ty_1 {
///         vm_start: 0x10000,
///         vm_end: 0x13000,
///     };
/// raw.vm_pgoff = 2;
/// raw.__bindgen_anon_2.vm_flags = flags::READ | flags::WRITE | flags::SHARED | flags::MAYSHARE;
/// // SAFETY: `raw` is a vma that nothing else uses, valid for the borrow.
/// let vma = unsafe { VmaNew::from_raw(&mut raw) };
/// assert_eq!((vma.start(), vma.end(), vma.pgoff()), (0x10000, 0x13000, 2));
/// assert!(check(vma).is_ok());
/// raw.__bindgen_anon_2.vm_flags = flags::READ;
/// // SAFETY: As above.
/// assert_eq!(check(unsafe { VmaNew::from_raw(&mut raw) }), Err(EINVAL));
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct VmaNew(Opaque<bindings::vm_area_struct>);

impl VmaNew {
    /// Borrows the vma that `ptr` points to.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct vm_area_struct` that `mmap()` is setting up, with the
    /// mmap lock held for writing, for the lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::vm_area_struct) -> &'a Self {
        // SAFETY: `VmaNew` is `repr(transparent)` over the C struct; the caller guarantees
        // validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the vma.
    pub fn as_raw(&self) -> *mut bindings::vm_area_struct {
        self.0.get()
    }

    /// Returns the vma's flags (`vm_flags`).
    pub fn flags(&self) -> VmFlags {
        // SAFETY: By the type invariants the vma is valid; `vm_flags` is the readable view of the
        // flags union.
        unsafe { (*self.as_raw()).__bindgen_anon_2.vm_flags }
    }

    /// Returns the first address of the mapping (`vm_start`).
    pub fn start(&self) -> usize {
        // SAFETY: By the type invariants the vma is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.__bindgen_anon_1.vm_start as usize }
    }

    /// Returns the address just past the mapping (`vm_end`).
    pub fn end(&self) -> usize {
        // SAFETY: By the type invariants the vma is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.__bindgen_anon_1.vm_end as usize }
    }

    /// Returns the file page mapped at [`VmaNew::start`] (`vm_pgoff`).
    pub fn pgoff(&self) -> usize {
        // SAFETY: By the type invariants the vma is valid.
        unsafe { (*self.as_raw()).vm_pgoff as usize }
    }

    /// Installs the operations of the mapping (`vm_ops`); their `fault` callback then supplies
    /// its pages.
    ///
    /// # Safety
    ///
    /// The callbacks of `ops` must be sound for this vma: they may rely on what they document
    /// about the vma and its file (for example, that the file's private data has some type).
    pub unsafe fn set_ops(&self, ops: &'static VmOperations) {
        // SAFETY: By the type invariants the vma is valid and only `mmap()` uses it, under the
        // mmap lock held for writing; `ops` lives forever.
        unsafe { (*self.as_raw()).vm_ops = ops.as_ptr() };
    }
}
