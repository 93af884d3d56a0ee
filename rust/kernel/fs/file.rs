// SPDX-License-Identifier: GPL-2.0

//! Open files, file descriptors and anonymous inodes.
//!
//! [`File`] and [`LocalFile`] wrap a C `struct file`; [`ARef<File>`] owns a reference to it.
//! [`FileDescriptorReservation`] reserves a file descriptor in the current task's table and
//! installs a file in it. [`anon_inode_create_getfile`] creates a file with a new inode of its
//! own, for file-like objects that live in memory only; [`create_getfile`] takes that inode from
//! another [`InodeSource`], such as a pseudo-filesystem whose inodes hold more.
//!
//! The names and shapes of `File`, `LocalFile`, `BadFdError` and `FileDescriptorReservation`
//! follow upstream Linux 6.13, with only the methods we use; [`File::get_active`], the private
//! data accessors, [`FileOperations`], [`anon_inode_create_getfile`] and [`create_getfile`] are
//! additions of ours.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h),
//! [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    bindings,
    error::{code::EBADF, from_err_ptr, to_result, Error, Result},
    filemap::Mapping,
    fs::{inode::Inode, OpsTable},
    str::CStr,
    types::{ARef, AlwaysRefCounted, ForeignOwnable, Opaque},
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::Deref,
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

/// An open file, a C `struct file`, that may be shared between threads.
///
/// This is upstream's `File` (Linux 6.13, `kernel::fs::file`): references to it are real
/// ones (taken with `get_file`, `fget` or `get_file_active`, never the "light" references of
/// `fdget`), so an [`ARef<File>`] may be sent to other threads. It dereferences to [`LocalFile`],
/// which has the methods that do not care which thread calls them.
///
/// [`File::get_active`] and [`anon_inode_create_getfile`] are ours: upstream has neither.
///
/// # Invariants
///
/// A `&File` only exists while a reference on the file is held (by the owner of the borrow), so
/// the file stays open for the lifetime of the borrow, and that reference is not an `fdget` one.
///
/// # Examples
///
/// ```
/// use kernel::c_str;
/// use kernel::fs::file::{
///     anon_inode_create_getfile, flags::*, File, FileDescriptorReservation, FileOperations,
///     LocalFile,
/// };
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
///
/// let private = KBox::new(0x1000u32, GFP_KERNEL)?;
/// // SAFETY: `FOPS` has no callbacks that could look at the private data.
/// let file = unsafe { anon_inode_create_getfile(c_str!("[rust-file]"), &FOPS, private, O_RDWR)? };
/// assert!(file.has_operations(&FOPS));
/// // SAFETY: The file's private data is the `KBox<u32>` given above.
/// assert_eq!(*unsafe { file.private_data::<KBox<u32>>() }, 0x1000);
/// assert_eq!(file.flags() & O_ACCMODE, O_RDWR);
/// assert_eq!(file.flags() & O_LARGEFILE, 0);
/// file.set_flags(O_LARGEFILE);
/// assert_eq!(file.flags() & O_LARGEFILE, O_LARGEFILE);
/// assert_eq!(file.size(), 0);
/// assert!(file.modified().is_ok());
///
/// // A reservation that is dropped gives the file descriptor back.
/// let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
/// let fd = reservation.reserved_fd();
/// drop(reservation);
/// assert!(LocalFile::fget(fd).is_err());
///
/// // An installed file can be looked up by its file descriptor.
/// let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
/// let fd = reservation.reserved_fd();
/// reservation.fd_install(file.clone());
/// let found = LocalFile::fget(fd)?;
/// assert!(core::ptr::eq(found.as_ptr(), file.as_ptr()));
/// // SAFETY: `fd` was installed by this test, nothing else uses it.
/// assert_eq!(unsafe { kernel::bindings::close_fd(fd) }, 0);
/// assert_eq!(LocalFile::fget(fd).err().map(Error::from), Some(EBADF));
///
/// // A pointer to a file that is open, and null.
/// let mut slot = file.as_ptr();
/// // SAFETY: `slot` points to an open file, on which we hold a reference during the call.
/// let active = unsafe { File::get_active(&mut slot) };
/// assert!(active.is_some_and(|f| core::ptr::eq(f.as_ptr(), file.as_ptr())));
/// slot = core::ptr::null_mut();
/// // SAFETY: `slot` is null.
/// assert!(unsafe { File::get_active(&mut slot) }.is_none());
///
/// // The last reference gives the private data back; nothing else frees it here, as `FOPS`
/// // has no release callback.
/// // SAFETY: No borrow of the private data is left.
/// drop(unsafe { file.take_private_data::<KBox<u32>>() });
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct File {
    inner: Opaque<bindings::file>,
}

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
        unsafe { bindings::get_file(self.inner.get()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference on the file, which it gives up here. `File` is
        // `repr(transparent)`, so the pointer cast is valid.
        unsafe { bindings::fput(obj.cast().as_ptr()) };
    }
}

impl File {
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

    /// Creates a reference to a [`File`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an open `struct file` on which a reference that is not an `fdget` one
    /// is held for the whole lifetime `'a`.
    pub unsafe fn from_raw_file<'a>(ptr: *const bindings::file) -> &'a File {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `File` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }
}

impl Deref for File {
    type Target = LocalFile;

    fn deref(&self) -> &LocalFile {
        // SAFETY: `LocalFile` has the same layout as `File`, and what a `&File` guarantees is
        // more than what a `&LocalFile` needs.
        unsafe { LocalFile::from_raw_file(self.inner.get()) }
    }
}

/// An open file, a C `struct file`, that may be tied to the thread that looked it up.
///
/// This is upstream's `LocalFile` (Linux 6.13): the methods that every file has. Ours are the
/// ones the Rust guest_memfd needs; [`LocalFile::fget`] returns a `LocalFile`, as upstream's does.
///
/// # Invariants
///
/// A `&LocalFile` only exists while a reference on the file is held (by the owner of the
/// borrow), so the file stays open for the lifetime of the borrow.
#[repr(transparent)]
pub struct LocalFile {
    inner: Opaque<bindings::file>,
}

// SAFETY: All files are reference counted: `get_file` and `fput` increment and decrement the
// count, and the file is released only when it drops to zero. An `ARef<LocalFile>` is not
// `Send`, so it is dropped by the thread that took it.
unsafe impl AlwaysRefCounted for LocalFile {
    fn inc_ref(&self) {
        // SAFETY: By the type invariants the file is open, so its count is not zero.
        unsafe { bindings::get_file(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference on the file, which it gives up here.
        // `LocalFile` is `repr(transparent)`, so the pointer cast is valid.
        unsafe { bindings::fput(obj.cast().as_ptr()) };
    }
}

/// The error of [`LocalFile::fget`]: there is no open file at that descriptor (`EBADF`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BadFdError;

impl From<BadFdError> for Error {
    fn from(_: BadFdError) -> Error {
        EBADF
    }
}

impl LocalFile {
    /// Takes a reference to the file open at file descriptor `fd` of the current task (`fget`).
    pub fn fget(fd: u32) -> core::result::Result<ARef<LocalFile>, BadFdError> {
        // SAFETY: `fget` may be called with any number; it returns null or a file with a new
        // reference.
        let ptr = NonNull::new(unsafe { bindings::fget(fd) }).ok_or(BadFdError)?;
        // SAFETY: We own the reference taken by `fget`. `LocalFile` is `repr(transparent)`, so
        // the pointer cast is valid.
        Ok(unsafe { ARef::from_raw(ptr.cast()) })
    }

    /// Creates a reference to a [`LocalFile`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an open `struct file` on which a reference is held for the whole
    /// lifetime `'a`.
    pub unsafe fn from_raw_file<'a>(ptr: *const bindings::file) -> &'a LocalFile {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `LocalFile` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the C `struct file`.
    pub fn as_ptr(&self) -> *mut bindings::file {
        self.inner.get()
    }

    /// Returns whether the file was opened with the operations `fops` (`f_op`).
    pub fn has_operations(&self, fops: &'static FileOperations) -> bool {
        // SAFETY: By the type invariants the file is valid; `f_op` is set when the file is
        // opened.
        let f_op = unsafe { *addr_of!((*self.as_ptr()).f_op) };
        ptr::eq(f_op, fops.as_ptr())
    }

    /// Borrows the private data of the file (`private_data`) as the `T` it holds.
    ///
    /// # Safety
    ///
    /// The private data must be a `T` handed over with [`ForeignOwnable::into_foreign`] (as
    /// [`anon_inode_create_getfile`] does) that is only taken back in the file's release: the
    /// caller checks that this is a file of the code that does so, for example with
    /// [`LocalFile::has_operations`].
    pub unsafe fn private_data<T: ForeignOwnable>(&self) -> T::Borrowed<'_> {
        // SAFETY: By the type invariants the file is valid; `private_data` is set when the file
        // is opened.
        let data = unsafe { *addr_of!((*self.as_ptr()).private_data) };
        // SAFETY: The caller guarantees that `data` came from `T::into_foreign`, and it is only
        // taken back in the release, which cannot run while we hold a reference.
        unsafe { T::borrow(data) }
    }

    /// Takes the private data of the file back (`private_data`), for the file's release.
    ///
    /// # Safety
    ///
    /// As for [`LocalFile::private_data`]; in addition this is the release of the file (or the
    /// last user of the private data), no borrow of it is left and it is not used after this.
    pub unsafe fn take_private_data<T: ForeignOwnable>(&self) -> T {
        // SAFETY: By the type invariants the file is valid.
        let data = unsafe { *addr_of!((*self.as_ptr()).private_data) };
        // SAFETY: The caller guarantees that `data` came from `T::into_foreign` and that this
        // is its only `from_foreign`.
        unsafe { T::from_foreign(data) }
    }

    /// Returns the page cache the file reads and writes (`f_mapping`).
    pub fn mapping(&self) -> &Mapping {
        // SAFETY: By the type invariants the file is valid; `f_mapping` is set when the file is
        // opened.
        let mapping = unsafe { *addr_of!((*self.as_ptr()).f_mapping) };
        // SAFETY: `f_mapping` points into the file's inode (or a device's), which stays alive at
        // least as long as the file, hence as long as `&self`.
        unsafe { Mapping::from_raw(mapping) }
    }

    /// Returns the inode of the file (`f_inode`, `file_inode`).
    pub fn inode(&self) -> &Inode {
        // SAFETY: By the type invariants the file is valid; `f_inode` is set when the file is
        // opened.
        let inode = unsafe { *addr_of!((*self.as_ptr()).f_inode) };
        // SAFETY: The inode of an open file stays alive at least as long as the file.
        unsafe { Inode::from_raw(inode) }
    }

    /// Returns the size of the file's inode in bytes (`i_size_read(file_inode(file))`).
    pub fn size(&self) -> i64 {
        self.inode().size()
    }

    /// Returns the file's flags (`f_flags`, [`flags`]).
    pub fn flags(&self) -> u32 {
        // SAFETY: By the type invariants the file is valid. The field may be changed under
        // `f_lock` concurrently, so read it once with a volatile read (`READ_ONCE`).
        unsafe { ptr::read_volatile(addr_of!((*self.as_ptr()).f_flags)) }
    }

    /// Adds `add` to the file's flags (`f_flags |= add`, [`flags`]).
    ///
    /// This is for flags that code creating a file sets before it installs it, such as
    /// [`flags::O_LARGEFILE`]. The update happens under `f_lock`, like `fcntl(F_SETFL)`.
    pub fn set_flags(&self, add: u32) {
        let file = self.as_ptr();
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
        to_result(unsafe { bindings::file_modified(self.as_ptr()) })
    }
}

/// A `file_operations` table that can be put in a `static`; [`FileOperations::set_owner`] may
/// set its owner before it is first used.
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
/// // A module of our own: the table is never given to C code, so its owner is never used.
/// let owner = core::ptr::NonNull::<kernel::bindings::module>::dangling().as_ptr();
/// // SAFETY: `FOPS` was not used yet, and no other thread uses it.
/// unsafe { FOPS.set_owner(owner) };
/// // SAFETY: Nothing writes the table now.
/// let fops = unsafe { &*FOPS.as_ptr() };
/// assert_eq!(fops.owner, owner);
/// assert!(fops.release.is_none());
/// ```
pub type FileOperations = OpsTable<bindings::file_operations>;

impl FileOperations {
    /// Sets the module that owns the table and its callbacks (`fops.owner`), as C code does when
    /// it learns its `THIS_MODULE` at init time (`kvm_gmem_init()`, for example, which runs
    /// again each time a KVM vendor module is loaded).
    ///
    /// Files created with the table hold a reference on the module while they are open.
    ///
    /// # Safety
    ///
    /// No file created with the table may be open, and no other thread may read or write the
    /// table at the same time (no file is being created with it).
    pub unsafe fn set_owner(&'static self, owner: *mut bindings::module) {
        // SAFETY: The caller guarantees that nothing else accesses the table, so writing to it is
        // not a data race; C code only holds pointers to it, no Rust reference exists.
        unsafe { (*self.as_mut_ptr()).owner = owner };
    }
}

/// A file descriptor reserved in the current task's table (`get_unused_fd_flags`).
///
/// This is upstream's `FileDescriptorReservation` (Linux 6.13). The descriptor is not usable
/// until a file is installed in it ([`FileDescriptorReservation::fd_install`]); dropping the
/// reservation gives it back (`put_unused_fd`).
///
/// # Invariants
///
/// `fd` was reserved in the file table of the task that created the reservation, which is the
/// current task (the reservation is not [`Send`]), and nothing was installed in it yet.
pub struct FileDescriptorReservation {
    fd: u32,
    /// The descriptor belongs to the file table of the creating task.
    _not_send: PhantomData<*mut ()>,
}

impl FileDescriptorReservation {
    /// Reserves an unused file descriptor, with descriptor flags `flags` (for example
    /// [`flags::O_CLOEXEC`]).
    ///
    /// Returns `EMFILE` if the task's table is full.
    pub fn get_unused_fd_flags(flags: u32) -> Result<Self> {
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
    pub fn reserved_fd(&self) -> u32 {
        self.fd
    }

    /// Installs `file` in the reserved descriptor (`fd_install`).
    ///
    /// The file is visible to user space from then on; its reference goes to the file table.
    pub fn fd_install(self, file: ARef<File>) {
        let this = ManuallyDrop::new(self);
        // SAFETY: By the type invariants `this.fd` is reserved in the current task's table and
        // empty. `fd_install` takes over the reference we give up. `this` is not dropped, so
        // the descriptor is not given back.
        unsafe { bindings::fd_install(this.fd, ARef::into_raw(file).as_ptr().cast()) };
    }
}

impl Drop for FileDescriptorReservation {
    fn drop(&mut self) {
        // SAFETY: By the type invariants `self.fd` is reserved in the current task's table and
        // nothing was installed in it.
        unsafe { bindings::put_unused_fd(self.fd) };
    }
}

/// Creates a file with a new anonymous inode (`anon_inode_create_getfile`), whose private data is
/// `data`.
///
/// The file is named `name` (in `/proc/<pid>/fd`, for example), uses the file operations `fops`,
/// and is opened with the access mode and [`flags::O_NONBLOCK`] of `flags`. Unlike
/// `anon_inode_getfile`, it gets an inode of its own, with its own page cache
/// ([`LocalFile::mapping`]), and the security hooks for anonymous inodes are run for it.
///
/// On success `data` belongs to the file: [`LocalFile::private_data`] borrows it and the file's
/// release takes it back with [`LocalFile::take_private_data`]. On failure it is dropped and no
/// callback of `fops` has run.
///
/// # Safety
///
/// - The callbacks of `fops` must treat the file's private data as a `T`, and its release must
///   take it back (or leak it).
/// - `fops.owner` must be the module that contains `fops` and its callbacks, or null if they are
///   built into the kernel, so that they outlive the file.
pub unsafe fn anon_inode_create_getfile<T: ForeignOwnable>(
    name: &CStr,
    fops: &'static FileOperations,
    data: T,
    flags: u32,
) -> Result<ARef<File>> {
    // SAFETY: The caller guarantees what `create_getfile` requires of `fops` and `T`.
    unsafe { create_getfile(&InodeSource::ANON, name, fops, data, flags) }
}

/// A C function that creates a file on a new inode of some filesystem, with the arguments, the
/// result and the contract of `anon_inode_create_getfile()`: name, file operations, private data,
/// `O_*` flags and an optional inode to inherit the security context from; a new file with one
/// reference, whose private data is the one given, or an `ERR_PTR` and nothing created.
pub type CreateGetfileFn = unsafe extern "C" fn(
    *const crate::ffi::c_char,
    *const bindings::file_operations,
    *mut crate::ffi::c_void,
    crate::ffi::c_int,
    *const bindings::inode,
) -> *mut bindings::file;

/// Where [`create_getfile`] gets the new inode of a file from: the anonymous-inode filesystem, or
/// a pseudo-filesystem of the caller's whose inodes hold more than a plain inode does.
pub struct InodeSource(CreateGetfileFn);

impl InodeSource {
    /// New inodes of the anonymous-inode filesystem (`anon_inode_create_getfile`).
    pub const ANON: Self = Self(bindings::anon_inode_create_getfile);

    /// New inodes made by `create`.
    ///
    /// # Safety
    ///
    /// `create` has the contract of `anon_inode_create_getfile()` (see [`CreateGetfileFn`]) and
    /// stays callable as long as the `InodeSource` is used.
    pub const unsafe fn new(create: CreateGetfileFn) -> Self {
        Self(create)
    }
}

/// [`anon_inode_create_getfile`] with the new inode taken from `source`: a file whose private
/// data is `data`, with the same rules for `name`, `fops`, `flags` and `data`.
///
/// # Safety
///
/// As for [`anon_inode_create_getfile`].
pub unsafe fn create_getfile<T: ForeignOwnable>(
    source: &InodeSource,
    name: &CStr,
    fops: &'static FileOperations,
    data: T,
    flags: u32,
) -> Result<ARef<File>> {
    // CAST: The C parameter is an `int` of `O_*` flags, which all fit in its low 31 bits.
    let flags = flags as crate::ffi::c_int;
    let private = data.into_foreign();
    // SAFETY: `name` is a valid C string (its contents are copied), `fops` lives forever, and the
    // caller guarantees that `private` is what `fops` expects. The context inode is optional.
    // `source` has the contract of `anon_inode_create_getfile` (`InodeSource::new`).
    let ptr = from_err_ptr(unsafe {
        (source.0)(
            name.as_char_ptr(),
            fops.as_ptr(),
            private.cast_mut(),
            flags,
            ptr::null(),
        )
    });
    // A `CreateGetfileFn` returns a file or an error, never null.
    match ptr.map(NonNull::new) {
        // SAFETY: A new file comes with one reference, which goes to the `ARef`. `File` is
        // `repr(transparent)`, so the pointer cast is valid.
        Ok(Some(ptr)) => Ok(unsafe { ARef::from_raw(ptr.cast()) }),
        res => {
            // SAFETY: No file was created, so `private` still belongs to us.
            drop(unsafe { T::from_foreign(private) });
            Err(res.err().unwrap_or(crate::error::code::ENOMEM))
        }
    }
}
