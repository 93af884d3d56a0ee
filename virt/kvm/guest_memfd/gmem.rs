// SPDX-License-Identifier: GPL-2.0

//! guest_memfd in Rust: KVM's guest-first memory.
//!
//! A guest_memfd is a file bound to one VM whose pages back
//! the VM's private memory.  Host userspace cannot read or write it; it can
//! size it at creation, allocate and punch holes with `fallocate()`, and
//! bind ranges of it to memslots.  KVM's private-fault path gets pfns from
//! it with `kvm_gmem_get_pfn()`.  Beyond 6.12, a guest_memfd created with
//! the 6.18 flags can be mapped by the host and fault in shared pages
//! (`host_map.rs`).
//!
//! This crate replaces `virt/kvm/guest_memfd.c` when
//! `CONFIG_KVM_GUEST_MEMFD_RUST` is set, with the same behaviour and errnos.
//! See `Documentation/virt/kvm/guest-memfd-rust.rst` for its structure and
//! locking.

/// The prefix of this crate's log messages, as C's guest_memfd.c prints them.
const __LOG_PREFIX: &[u8] = b"gmem\0";

#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
mod attr_store;
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
mod attributes;
mod bind;
mod fault;
pub mod ffi;
mod gmem_file;
mod host_map;
mod kvm;
mod placement;
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
mod populate;
mod range;
