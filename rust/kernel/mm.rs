// SPDX-License-Identifier: GPL-2.0

//! Memory management: user mappings of files.
//!
//! What a file needs to be mapped into user space: [`virt::VmaNew`], the vma that
//! `file_operations::mmap` sets up, and [`fault::VmFault`], the page fault that
//! `vm_operations_struct::fault` resolves with a page of the file; and
//! [`mempolicy::SharedPolicy`], the NUMA policy of its pages that `mbind()` sets.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)

pub mod fault;
pub mod mempolicy;
pub mod virt;
