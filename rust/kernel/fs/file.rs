// SPDX-License-Identifier: GPL-2.0

//! Open files, file descriptors and anonymous inodes.
//!
//! [`File`] wraps a C `struct file`; [`ARef<File>`] owns a reference to it. [`FdReservation`]
//! reserves a file descriptor in the current task's table and installs a file in it.
//! [`anon_inode_create_getfile`] creates a file with a new inode of its own, for file-like objects
//! that live in memory only.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h),
//! [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    bindings,
    error::{code::EBADF, from_err_ptr, to_result, Result},
    ffi::c_void,
    filemap::Mapping,
    str::CStr,
    types::{ARef, AlwaysRefCounted, Opaque},
};
use core::{
    cell::UnsafeCell,
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::{self, addr_of, addr_of_mut, NonNull},
};

/// Flags of open files (`f_flags`) and of file descriptors (`O_*`).
pub mod flags {
    use crate::bindings;

    /// Mask of the access mode bits: [`O_RDONLY`], [`O_WRONLY`] or [`O_RDWR`].
    pub const O_ACCMODE: u32 = bindings::O_ACCMODE;

    /// Open for reading only.
    pub const O_RDONLY: u32 = bindings::O_RDONLY;

    /// Open for writing only.
    pub const O_WRONLY: u32 = bindings::O_WRONLY;

    /// Open for reading and writing.
    pub const O_RDWR: u32 = bindings::O_RDWR;

    /// Offsets may exceed 2 GiB (set on all files opened by 64-bit tasks).
    pub const O_LARGEFILE: u32 = bindings::O_LARGEFILE;

    /// Close the file descriptor on `execve`.
    pub const O_CLOEXEC: u32 = bindings::O_CLOEXEC;

    /// Non-blocking I/O.
    pub const O_NONBLOCK: u32 = bindings::O_NONBLOCK;
}

/// An open file, a C `struct file`.
///
/// References are always real ones (taken with `get_file`, `fget` or `get_file_active`): this
/// abstraction never uses the "light" references of `fdget`, so an [`ARef<File>`] may be sent to
/// other threads.
///
/// # Invariants
///
/// A `&File` only exists while a reference on the file is held (by the owner of the borrow), so
/// the file stays open for the lifetime of the borrow.
///
/// # Examples
///
/// ```
/// use kernel::c_str;
/// use kernel::fs::file::{
///     anon_inode_create_getfile, flags::*, FdReservation, File, FileOperations,
/// };
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
///
/// let private = 0x1000 as *mut kernel::ffi::c_void;
/// // SAFETY: `FOPS` has no callbacks that could look at the private data.
/// let file = unsafe {
///     anon_inode_create_getfile(c_str!("[rust-file]"), FOPS.as_raw(), private, O_RDWR)?
/// };
/// assert!(core::ptr::eq(file.fops(), FOPS.as_raw()));
/// assert_eq!(file.private_data(), private);
/// assert_eq!(file.flags() & O_ACCMODE, O_RDWR);
/// assert_eq!(file.flags() & O_LARGEFILE, 0);
/// file.set_flags(O_LARGEFILE);
/// assert_eq!(file.flags() & O_LARGEFILE, O_LARGEFILE);
/// assert_eq!(file.size(), 0);
/// assert!(file.modified().is_ok());
///
/// // The page cache of the file is the one of its inode.
/// // SAFETY: The inode is alive as long as the file.
/// let i_mapping = unsafe { (*file.inode_raw()).i_mapping };
/// assert!(core::ptr::eq(file.mapping().as_raw(), i_mapping));
///
/// // A reservation that is dropped gives the file descriptor back.
/// let reservation = FdReservation::get_unused(O_CLOEXEC)?;
/// let fd = reservation.fd();
/// drop(reservation);
/// assert_eq!(File::fget(fd).err(), Some(EBADF));
///
/// // An installed file can be looked up by its file descriptor.
/// let fd = FdReservation::get_unused(O_CLOEXEC)?.install(file.clone());
/// let found = File::fget(fd)?;
/// assert!(core::ptr::eq(found.as_raw(), file.as_raw()));
/// // SAFETY: `fd` was installed by this test, nothing else uses it.
/// assert_eq!(unsafe { kernel::bindings::close_fd(fd) }, 0);
/// assert_eq!(File::fget(fd).err(), Some(EBADF));
///
/// // A pointer to a file that is open, and null.
/// let mut slot = file.as_raw();
/// // SAFETY: `slot` points to an open file, on which we hold a reference during the call.
/// let active = unsafe { File::get_active(&mut slot) };
/// assert!(active.is_some_and(|f| core::ptr::eq(f.as_raw(), file.as_raw())));
/// slot = core::ptr::null_mut();
/// // SAFETY: `slot` is null.
/// assert!(unsafe { File::get_active(&mut slot) }.is_none());
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct File(Opaque<bindings::file>);

// SAFETY: The reference count of a file is atomic, and `fput` may be called from any thread (it
// defers the final release to a task work or a work item).
unsafe impl Send for File {}

// SAFETY: The methods taking `&self` either read fields that are set before the file is
// published, or use the file's own locking, so they may be called from several threads at once.
unsafe impl Sync for File {}

// SAFETY: All files are reference counted: `get_file` and `fput` increment and decrement the
// count, and the file is released only when it drops to zero.
unsafe impl AlwaysRefCounted for File {
    fn inc_ref(&self) {
        // SAFETY: By the type invariants the file is open, so its count is not zero.
        unsafe { bindings::get_file(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference on the file, which it gives up here. `File` is
        // `repr(transparent)`, so the pointer cast is valid.
        unsafe { bindings::fput(obj.cast().as_ptr()) };
    }
}

impl File {
    /// Takes a reference to the file open at file descriptor `fd` of the current task (`fget`).
    ///
    /// Returns [`EBADF`] if there is none.
    pub fn fget(fd: u32) -> Result<ARef<Self>> {
        // SAFETY: `fget` may be called with any number; it returns null or a file with a new
        // reference.
        let ptr = NonNull::new(unsafe { bindings::fget(fd) }).ok_or(EBADF)?;
        // SAFETY: We own the reference taken by `fget`. `File` is `repr(transparent)`, so the
        // pointer cast is valid.
        Ok(unsafe { ARef::from_raw(ptr.cast()) })
    }

    /// Takes a reference to the file `*slot` points to, unless it is null or its last reference
    /// is being dropped (`get_file_active`).
    ///
    /// This is for pointers to files that are not backed by a reference, which the file's release
    /// code clears (KVM's `slot->gmem.file`, for example).
    ///
    /// # Safety
    ///
    /// - `slot` must be valid for reads for the duration of the call; writes to `*slot` that run
    ///   concurrently must be atomic (`WRITE_ONCE`).
    /// - `*slot` must be null or point to a `struct file` that was opened, and it must be changed
    ///   (to null or another such file) before that file is freed: no later than in its release
    ///   callback. Files are freed from a `SLAB_TYPESAFE_BY_RCU` cache, so looking at a file whose
    ///   last reference is gone is fine as long as the pointer is cleared in time, but a pointer
    ///   left behind could end up designating an unrelated file that reused the memory.
    pub unsafe fn get_active(slot: *mut *mut bindings::file) -> Option<ARef<Self>> {
        // SAFETY: The caller guarantees that `slot` is valid and that `*slot` is a file pointer
        // `get_file_active` may look at under RCU.
        let ptr = NonNull::new(unsafe { bindings::get_file_active(slot) })?;
        // SAFETY: We own the reference taken by `get_file_active`. `File` is
        // `repr(transparent)`, so the pointer cast is valid.
        Some(unsafe { ARef::from_raw(ptr.cast()) })
    }

    /// Creates a reference to a file from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an open `struct file` on which a reference is held for the whole
    /// lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::file) -> &'a Self {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `File` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the C `struct file`.
    pub fn as_raw(&self) -> *mut bindings::file {
        self.0.get()
    }

    /// Returns the file operations of the file (`f_op`).
    pub fn fops(&self) -> *const bindings::file_operations {
        // SAFETY: By the type invariants the file is valid; `f_op` is set when the file is
        // opened.
        unsafe { *addr_of!((*self.as_raw()).f_op) }
    }

    /// Returns the private data of the file (`private_data`).
    ///
    /// What it points to, if anything, is up to the code that created the file.
    pub fn private_data(&self) -> *mut c_void {
        // SAFETY: By the type invariants the file is valid; `private_data` is set when the file
        // is opened.
        unsafe { *addr_of!((*self.as_raw()).private_data) }
    }

    /// Returns the page cache the file reads and writes (`f_mapping`).
    pub fn mapping(&self) -> &Mapping {
        // SAFETY: By the type invariants the file is valid; `f_mapping` is set when the file is
        // opened.
        let mapping = unsafe { *addr_of!((*self.as_raw()).f_mapping) };
        // SAFETY: `f_mapping` points into the file's inode (or a device's), which stays alive at
        // least as long as the file, hence as long as `&self`.
        unsafe { Mapping::from_raw(mapping) }
    }

    /// Returns the inode of the file (`f_inode`, `file_inode`).
    ///
    /// The inode stays valid as long as the file.
    pub fn inode_raw(&self) -> *mut bindings::inode {
        // SAFETY: By the type invariants the file is valid; `f_inode` is set when the file is
        // opened.
        unsafe { *addr_of!((*self.as_raw()).f_inode) }
    }

    /// Returns the size of the file's inode in bytes (`i_size_read(file_inode(file))`).
    pub fn size(&self) -> i64 {
        // SAFETY: The inode of an open file is valid. `i_size_read` reads the size consistently
        // without a lock.
        unsafe { bindings::i_size_read(self.inode_raw()) }
    }

    /// Returns the file's flags (`f_flags`, [`flags`]).
    pub fn flags(&self) -> u32 {
        // SAFETY: By the type invariants the file is valid. The field may be changed under
        // `f_lock` concurrently, so read it once with a volatile read (`READ_ONCE`).
        unsafe { ptr::read_volatile(addr_of!((*self.as_raw()).f_flags)) }
    }

    /// Adds `add` to the file's flags (`f_flags |= add`, [`flags`]).
    ///
    /// This is for flags that code creating a file sets before it installs it, such as
    /// [`flags::O_LARGEFILE`]. The update happens under `f_lock`, like `fcntl(F_SETFL)`.
    pub fn set_flags(&self, add: u32) {
        let file = self.as_raw();
        // SAFETY: By the type invariants the file is valid, so is its `f_lock`.
        unsafe { bindings::spin_lock(addr_of_mut!((*file).f_lock)) };
        // SAFETY: Writers of `f_flags` hold `f_lock`, which we hold. Lockless readers use
        // `READ_ONCE`, so write it with a single volatile store.
        unsafe {
            let flags = addr_of_mut!((*file).f_flags);
            ptr::write_volatile(flags, ptr::read_volatile(flags) | add);
        }
        // SAFETY: We took the lock above.
        unsafe { bindings::spin_unlock(addr_of_mut!((*file).f_lock)) };
    }

    /// Updates the file's modification times and removes its set-user-ID and similar privileges
    /// after it was changed (`file_modified`).
    ///
    /// May sleep.
    pub fn modified(&self) -> Result {
        // SAFETY: By the type invariants the file is valid.
        to_result(unsafe { bindings::file_modified(self.as_raw()) })
    }
}

/// A `file_operations` table that can be put in a `static`.
///
/// The C structure holds raw pointers, so it is not [`Sync`] by itself; this wrapper is, because
/// the table is only changed before it is first used ([`FileOperations::set_owner`]), and the C
/// code only reads it.
///
/// # Examples
///
/// ```
/// use kernel::fs::file::FileOperations;
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
///
/// assert!(FOPS.as_raw().owner.is_null());
/// // A module of our own: the table is never given to C code, so its owner is never used.
/// let owner = core::ptr::NonNull::<kernel::bindings::module>::dangling().as_ptr();
/// // SAFETY: `FOPS` was not used yet, and no other thread uses it.
/// unsafe { FOPS.set_owner(owner) };
/// assert_eq!(FOPS.as_raw().owner, owner);
/// assert!(FOPS.as_raw().release.is_none());
/// ```
#[repr(transparent)]
pub struct FileOperations(UnsafeCell<bindings::file_operations>);

// SAFETY: The table is only written by `set_owner`, whose callers guarantee that nothing reads it
// at the same time; afterwards it is immutable, and reading function pointers and the module
// pointer from several threads is fine.
unsafe impl Sync for FileOperations {}

impl FileOperations {
    /// Wraps a `file_operations` table.
    pub const fn new(fops: bindings::file_operations) -> Self {
        Self(UnsafeCell::new(fops))
    }

    /// Sets the module that owns the table and its callbacks (`fops.owner`), as C code does when
    /// it learns its `THIS_MODULE` at init time (`kvm_gmem_init()`, for example).
    ///
    /// Files created with the table hold a reference on the module while they are open.
    ///
    /// # Safety
    ///
    /// No other thread may use the table at the same time, and [`FileOperations::as_raw`] must
    /// not have been called yet: the table must not have been given to any C code.
    pub unsafe fn set_owner(&'static self, owner: *mut bindings::module) {
        // SAFETY: The caller guarantees that nothing else accesses the table, so writing to it is
        // not a data race and no shared reference to it exists.
        unsafe { (*self.0.get()).owner = owner };
    }

    /// Returns the C table, for [`anon_inode_create_getfile`] and the like.
    pub fn as_raw(&'static self) -> &'static bindings::file_operations {
        // SAFETY: The table is only written by `set_owner`, whose callers guarantee that this was
        // not called before; from now on the table is immutable.
        unsafe { &*self.0.get() }
    }
}

/// A file descriptor reserved in the current task's table (`get_unused_fd_flags`).
///
/// The descriptor is not usable until a file is installed in it ([`FdReservation::install`]);
/// dropping the reservation gives it back (`put_unused_fd`).
///
/// # Invariants
///
/// `fd` was reserved in the file table of the task that created the reservation, which is the
/// current task (the reservation is not [`Send`]), and nothing was installed in it yet.
pub struct FdReservation {
    fd: u32,
    /// The descriptor belongs to the file table of the creating task.
    _not_send: PhantomData<*mut ()>,
}

impl FdReservation {
    /// Reserves an unused file descriptor, with descriptor flags `flags` (for example
    /// [`flags::O_CLOEXEC`]).
    ///
    /// Returns `EMFILE` if the task's table is full.
    pub fn get_unused(flags: u32) -> Result<Self> {
        // SAFETY: `get_unused_fd_flags` may be called with any flags from task context.
        let fd = unsafe { bindings::get_unused_fd_flags(flags) };
        to_result(fd)?;
        // INVARIANT: `get_unused_fd_flags` reserved `fd` in the current task's table.
        Ok(Self {
            // CAST: `fd` is not negative, checked above.
            fd: fd as u32,
            _not_send: PhantomData,
        })
    }

    /// Returns the reserved file descriptor.
    pub fn fd(&self) -> u32 {
        self.fd
    }

    /// Installs `file` in the reserved descriptor (`fd_install`) and returns the descriptor.
    ///
    /// The file is visible to user space from then on; its reference goes to the file table.
    pub fn install(self, file: ARef<File>) -> u32 {
        let this = ManuallyDrop::new(self);
        // SAFETY: By the type invariants `this.fd` is reserved in the current task's table and
        // empty. `fd_install` takes over the reference we give up. `this` is not dropped, so
        // the descriptor is not given back.
        unsafe { bindings::fd_install(this.fd, ARef::into_raw(file).as_ptr().cast()) };
        this.fd
    }
}

impl Drop for FdReservation {
    fn drop(&mut self) {
        // SAFETY: By the type invariants `self.fd` is reserved in the current task's table and
        // nothing was installed in it.
        unsafe { bindings::put_unused_fd(self.fd) };
    }
}

/// Creates a file with a new anonymous inode (`anon_inode_create_getfile`).
///
/// The file is named `name` (in `/proc/<pid>/fd`, for example), uses the file operations `fops`,
/// has `private` as its private data, and is opened with the access mode and
/// [`flags::O_NONBLOCK`] of `flags`. Unlike `anon_inode_getfile`, it gets an inode of its own,
/// with its own page cache ([`File::mapping`]), and the security hooks for anonymous inodes
/// are run for it.
///
/// On failure nothing refers to `private` and no callback of `fops` has run.
///
/// # Safety
///
/// - The callbacks of `fops` must be sound to call on a file whose private data is `private`: in
///   particular, if `fops.release` takes ownership of what `private` points to, `private` must be
///   owned by the caller and is handed over to the file on success.
/// - `fops.owner` must be the module that contains `fops` and its callbacks, or null if they are
///   built into the kernel, so that they outlive the file.
pub unsafe fn anon_inode_create_getfile(
    name: &CStr,
    fops: &'static bindings::file_operations,
    private: *mut c_void,
    flags: u32,
) -> Result<ARef<File>> {
    // CAST: The C parameter is an `int` of `O_*` flags, which all fit in its low 31 bits.
    let flags = flags as crate::ffi::c_int;
    // SAFETY: `name` is a valid C string (its contents are copied), `fops` lives forever, and the
    // caller guarantees that `private` is what `fops` expects. The context inode is optional.
    let ptr = from_err_ptr(unsafe {
        bindings::anon_inode_create_getfile(name.as_char_ptr(), fops, private, flags, ptr::null())
    })?;
    // `anon_inode_create_getfile` returns a file or an error, never null.
    let ptr = NonNull::new(ptr).ok_or(crate::error::code::ENOMEM)?;
    // SAFETY: A new file comes with one reference, which goes to the `ARef`. `File` is
    // `repr(transparent)`, so the pointer cast is valid.
    Ok(unsafe { ARef::from_raw(ptr.cast()) })
}
