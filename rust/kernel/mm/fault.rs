// SPDX-License-Identifier: GPL-2.0

//! Page faults on user mappings of files.
//!
//! [`VmOperations`] is the `struct vm_operations_struct` that `file_operations::mmap` installs
//! (see [`VmaNew::set_ops`]); its `fault` callback receives a [`VmFault`] and answers with a
//! [`VmFaultReason`]: a locked page of the file ([`VmFault::set_locked_folio`]), or why the
//! fault fails.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! [`VmaNew::set_ops`]: crate::mm::virt::VmaNew::set_ops

use crate::{
    bindings,
    error::{code::ENOMEM, Error},
    folio::LockedFolio,
    fs::file::LocalFile,
    types::Opaque,
};

/// The operations of a file's user mappings, a C `struct vm_operations_struct` that can be put
/// in a `static`.
///
/// C code only reads the table, and nothing writes it after its creation.
#[repr(transparent)]
pub struct VmOperations(bindings::vm_operations_struct);

// SAFETY: The table holds function pointers that nobody writes after its creation; reading them
// from several threads is fine.
unsafe impl Sync for VmOperations {}

impl VmOperations {
    /// Wraps an operations table.
    pub const fn new(ops: bindings::vm_operations_struct) -> Self {
        Self(ops)
    }

    /// Returns a pointer to the C table, to give it to C code; valid forever.
    pub fn as_ptr(&'static self) -> *const bindings::vm_operations_struct {
        &self.0
    }
}

/// What a fault handler answers (`vm_fault_t`): [`VmFaultReason::LOCKED`] when it hands over a
/// locked page, or the reason why there is no page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFaultReason(bindings::vm_fault_t);

impl VmFaultReason {
    /// The page is in the fault, locked, with a reference (`VM_FAULT_LOCKED`).
    pub const LOCKED: Self = Self(bindings::vm_fault_reason_VM_FAULT_LOCKED);

    /// The access is not allowed: the task gets `SIGBUS` (`VM_FAULT_SIGBUS`).
    pub const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);

    /// Memory ran out (`VM_FAULT_OOM`).
    pub const OOM: Self = Self(bindings::vm_fault_reason_VM_FAULT_OOM);

    /// The page is poisoned by a memory error (`VM_FAULT_HWPOISON`).
    pub const HWPOISON: Self = Self(bindings::vm_fault_reason_VM_FAULT_HWPOISON);

    /// The answer to a failure with `err`, as C's `vmf_error()` gives it: [`VmFaultReason::OOM`]
    /// for `ENOMEM`, [`VmFaultReason::SIGBUS`] otherwise.
    pub fn from_error(err: Error) -> Self {
        if err == ENOMEM {
            Self::OOM
        } else {
            Self::SIGBUS
        }
    }

    /// Returns the C value.
    pub fn as_raw(self) -> bindings::vm_fault_t {
        self.0
    }
}

/// A page fault on a file's user mapping, as `vm_operations_struct::fault` receives it.
///
/// # Invariants
///
/// A `&VmFault` points to a valid `struct vm_fault` for the lifetime of the borrow, whose vma is
/// a mapping of a file, kept alive (with its file) by the fault: the mmap lock or the vma's lock
/// is held.
///
/// # Examples
///
/// A fault handler that maps page `pgoff` of a file's page cache, zeroed when it is new:
///
/// ```
/// use core::ptr::NonNull;
/// use kernel::{
///     bindings, c_str,
///     filemap::Mapping,
///     folio::LockedFolio,
///     fs::file::{anon_inode_create_getfile, flags::O_RDWR, FileOperations},
///     mm::fault::{VmFault, VmFaultReason},
/// };
///
/// fn fault(mapping: &Mapping, vmf: &VmFault) -> VmFaultReason {
///     let index = vmf.pgoff();
///     match mapping.grab_folio(index) {
///         Ok(folio) => {
///             if !folio.test_uptodate() {
///                 folio.zero();
///                 folio.mark_uptodate();
///             }
///             vmf.set_locked_folio(folio, index)
///         }
///         Err(e) => VmFaultReason::from_error(e),
///     }
/// }
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
/// // SAFETY: `FOPS` has no callbacks that could look at the private data.
/// let file = unsafe { anon_inode_create_getfile(c_str!("[rust-fault]"), &FOPS, (), O_RDWR)? };
///
/// let mut raw = bindings::vm_fault::default();
/// raw.__bindgen_anon_1.pgoff = 5;
/// // SAFETY: `raw` is valid for the borrow; only its page offset and page are used here.
/// let vmf = unsafe { VmFault::from_raw(&mut raw) };
/// assert_eq!(fault(file.mapping(), vmf), VmFaultReason::LOCKED);
/// // The fault holds the locked folio of page 5 and a reference on it; give them back, as the
/// // fault path does once the page is mapped.
/// // SAFETY: `page` is the first page of a folio, which `set_locked_folio` handed over locked
/// // with a reference; nothing else uses them.
/// let folio = unsafe { LockedFolio::from_raw(NonNull::new(raw.page.cast()).ok_or(EINVAL)?) };
/// assert_eq!(folio.index(), 5);
/// assert!(folio.test_uptodate());
/// drop(folio);
///
/// // A page that is not in the folio is refused.
/// let folio = file.mapping().grab_folio(6)?;
/// assert_eq!(vmf.set_locked_folio(folio, 7), VmFaultReason::SIGBUS);
///
/// assert_eq!(VmFaultReason::from_error(ENOMEM), VmFaultReason::OOM);
/// assert_eq!(VmFaultReason::from_error(EIO), VmFaultReason::SIGBUS);
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct VmFault(Opaque<bindings::vm_fault>);

impl VmFault {
    /// Borrows the fault that `ptr` points to.
    ///
    /// # Safety
    ///
    /// `ptr` must point to the valid `struct vm_fault` of a fault on a file mapping that is
    /// being handled, with its vma kept alive, for the lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::vm_fault) -> &'a Self {
        // SAFETY: `VmFault` is `repr(transparent)` over the C struct; the caller guarantees
        // validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the fault.
    pub fn as_raw(&self) -> *mut bindings::vm_fault {
        self.0.get()
    }

    /// Returns the page of the file that the faulting address maps (`pgoff`).
    pub fn pgoff(&self) -> usize {
        // SAFETY: By the type invariants the fault is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.pgoff as usize }
    }

    /// Returns the faulting address, page aligned (`address`).
    pub fn address(&self) -> usize {
        // SAFETY: By the type invariants the fault is valid.
        unsafe { (*self.as_raw()).__bindgen_anon_1.address as usize }
    }

    /// Returns the file that the faulting vma maps (`vm_file`).
    pub fn file(&self) -> &LocalFile {
        // SAFETY: By the type invariants the fault and its vma are valid, and the vma is a
        // mapping of a file.
        let file = unsafe { (*(*self.as_raw()).__bindgen_anon_1.vma).vm_file };
        // SAFETY: The vma holds a reference on its file, and the vma outlives the borrow of the
        // fault (type invariants).
        unsafe { LocalFile::from_raw_file(file) }
    }

    /// Resolves the fault with the page of `folio` that holds file page `index`: hands the
    /// folio, its lock and one reference over to the fault, which maps the page and then
    /// unlocks the folio.  Returns [`VmFaultReason::LOCKED`], the answer of the fault handler.
    ///
    /// Returns [`VmFaultReason::SIGBUS`], dropping the folio, if `index` is not one of its pages.
    pub fn set_locked_folio(&self, folio: LockedFolio, index: usize) -> VmFaultReason {
        if index < folio.index() || index >= folio.next_index() {
            return VmFaultReason::SIGBUS;
        }
        let n = index - folio.index();
        let folio = folio.into_raw();
        // SAFETY: `folio` is valid (we hold a reference) and `n` is one of its pages.
        let page = unsafe { bindings::folio_page(folio.as_ptr(), n) };
        // SAFETY: By the type invariants the fault is valid; the handler of a fault sets its
        // page. The lock and the reference taken out of the `LockedFolio` go with the page: with
        // `VM_FAULT_LOCKED` the fault path unlocks the page and drops the reference.
        unsafe { (*self.as_raw()).page = page };
        VmFaultReason::LOCKED
    }
}
