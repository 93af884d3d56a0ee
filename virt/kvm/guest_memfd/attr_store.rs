// SPDX-License-Identifier: GPL-2.0

//! Per-gfn memory attributes as canonical multi-index XArray entries.
//!
//! The store maps every index (gfn) to a value, 0 meaning "no attributes".
//! It is kept in *canonical* form: each maximal run of indices with the same
//! non-zero value is stored as the fewest aligned power-of-two entries that
//! cover it (taken greedily from the left, see [`for_each_block`]), and
//! indices with value 0 hold no entry.  Memory is thus proportional to the
//! number of runs, not pages, and a change costs O(entries it touches).
//! Lookups are plain `xa_load()`s, which is what the C inline
//! `kvm_get_memory_attributes()` does on the fault path.
//!
//! A change of `[start, end)` to a value is done in two phases:
//!
//! 1. *Prepare*, the only phase that allocates or may be interrupted:
//!    every entry of the new canonical form around the range is made
//!    storable without allocating, by splitting larger entries that cover
//!    it ([`XArray::split_to`]) and reserving empty blocks
//!    ([`XArray::prepare_store`]).  No index changes value.  On failure
//!    (no memory, or the [`Update::checkpoint`] refuses) the preparation is
//!    undone and the store is exactly as before.
//! 2. *Store*: the new entries are stored (merging the entries they cover)
//!    and then the cleared blocks erased.  Nothing is allocated.
//!
//! Indices outside `[start, end)` keep their value at every moment, and
//! those inside read either the old or the new value, so lock-free readers
//! never see anything else.  Writers must be serialized by the caller (KVM
//! holds `slots_lock`).

use kernel::{
    alloc::Flags,
    error::code::EINVAL,
    prelude::*,
    xarray::{Slot, XArray, XaValue},
};

/// Calls `f(first, order)` for each block of the canonical form of
/// `[start, end)`: the largest aligned power-of-two block that starts at the
/// current index and fits, from left to right.
pub(crate) fn for_each_block(mut start: usize, end: usize, mut f: impl FnMut(usize, u32)) {
    while start < end {
        let align = start.trailing_zeros().min(usize::BITS - 1);
        let order = align.min((end - start).ilog2());
        f(start, order);
        start += 1usize << order;
    }
}

/// Returns the number of blocks of the canonical form of `[start, end)`.
pub(crate) fn block_count(start: usize, end: usize) -> usize {
    let mut n = 0;
    for_each_block(start, end, |_, _| n += 1);
    n
}

/// The caller's part in a change of the store.
pub(crate) trait Update {
    /// Called before each step of the preparation.  An error aborts the
    /// change with that error and the store unchanged.
    fn checkpoint(&mut self) -> Result {
        Ok(())
    }

    /// Called once the change is prepared, just before the store changes.
    fn before_store(&mut self) {}

    /// Called once the store has changed.
    fn after_store(&mut self) {}
}

/// An entry of the new canonical form around a change.
#[derive(Clone, Copy)]
struct Block {
    first: usize,
    order: u32,
    /// The new value; 0 erases the block.
    value: usize,
}

/// What the preparation did, to undo it.
#[derive(Clone, Copy)]
enum Undo {
    /// An entry that was split; storing it again merges the pieces.
    Split {
        first: usize,
        order: u32,
        value: XaValue,
    },
    /// A reservation to release.
    Reserved { first: usize, order: u32 },
}

/// A run of equal values: `[start, end)` holds `value`.
#[derive(Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    value: usize,
}

/// The attribute store of a VM: a view of its `mem_attr_array`.
pub(crate) struct AttrStore<'a> {
    xa: &'a XArray<XaValue>,
}

impl<'a> AttrStore<'a> {
    /// Wraps an XArray that holds only value entries in canonical form.
    pub(crate) fn new(xa: &'a XArray<XaValue>) -> Self {
        Self { xa }
    }

    /// Returns the value of `index`, 0 if it has none.
    pub(crate) fn get(&self, index: usize) -> usize {
        match self.xa.lookup(index) {
            Slot::Entry { entry, .. } => entry.get(),
            _ => 0,
        }
    }

    /// Returns whether every index of `[start, end)` has a value whose bits
    /// in `mask` are `attrs`.  As in C, `attrs == 0` asks for no value at all
    /// (the mask is then ignored), except for a single index.
    pub(crate) fn range_has(&self, start: usize, end: usize, mask: usize, attrs: usize) -> bool {
        if start >= end {
            return true;
        }
        if end - start == 1 {
            return self.get(start) & mask == attrs;
        }
        if attrs == 0 {
            return self.xa.find(start, end - 1).is_none();
        }
        let mut index = start;
        while index < end {
            match self.xa.lookup(index) {
                Slot::Entry {
                    first,
                    order,
                    entry,
                } if entry.get() & mask == attrs => match first.checked_add(1usize << order) {
                    Some(next) => index = next,
                    None => return true,
                },
                _ => return false,
            }
        }
        true
    }

    /// Returns the start of the run of `value` that contains the entry at
    /// `first`, walking left entry by entry.
    fn run_start(&self, mut first: usize, value: usize) -> usize {
        while first > 0 {
            match self.xa.lookup(first - 1) {
                Slot::Entry {
                    first: prev, entry, ..
                } if entry.get() == value => first = prev,
                _ => break,
            }
        }
        first
    }

    /// Returns the end of the run of `value` that contains the entry ending
    /// at `end`, walking right entry by entry.
    fn run_end(&self, mut end: usize, value: usize) -> usize {
        loop {
            match self.xa.lookup(end) {
                Slot::Entry {
                    first,
                    order,
                    entry,
                } if entry.get() == value => match first.checked_add(1usize << order) {
                    Some(next) => end = next,
                    None => return usize::MAX,
                },
                _ => return end,
            }
        }
    }

    /// The runs around `[start, end)` after setting it to `value`: the old
    /// runs that contain `start - 1` and `end`, which keep their values, and
    /// the new one, merged where the values are equal.  Outside their span
    /// nothing changes, and inside it the old entries do not cross its ends.
    fn new_runs(&self, start: usize, end: usize, value: usize) -> ([Run; 3], usize) {
        let left = match start.checked_sub(1).map(|i| self.xa.lookup(i)) {
            Some(Slot::Entry { first, entry, .. }) => Run {
                start: self.run_start(first, entry.get()),
                end: start,
                value: entry.get(),
            },
            _ => Run {
                start,
                end: start,
                value: 0,
            },
        };
        let right = match self.xa.lookup(end) {
            Slot::Entry {
                first,
                order,
                entry,
            } => Run {
                start: end,
                end: first
                    .checked_add(1usize << order)
                    .map_or(usize::MAX, |e| self.run_end(e, entry.get())),
                value: entry.get(),
            },
            _ => Run {
                start: end,
                end,
                value: 0,
            },
        };
        let empty = Run {
            start: 0,
            end: 0,
            value: 0,
        };
        let mut runs = [empty; 3];
        let mut n = 0;
        for run in [left, Run { start, end, value }, right] {
            if run.start == run.end {
                continue;
            }
            if n > 0 && runs[n - 1].value == run.value {
                runs[n - 1].end = run.end;
            } else {
                runs[n] = run;
                n += 1;
            }
        }
        (runs, n)
    }

    /// Sets the value of every index of `[start, end)` to `value` (0 clears
    /// them), allocating with `gfp`.
    ///
    /// Returns [`EINVAL`] for an empty range or a value above
    /// [`XaValue::MAX`], `ENOMEM` if memory runs out, or the error of
    /// `update.checkpoint()`; in all these cases the store is unchanged.
    pub(crate) fn set(
        &self,
        start: usize,
        end: usize,
        value: usize,
        gfp: Flags,
        update: &mut impl Update,
    ) -> Result {
        if start >= end {
            return Err(EINVAL);
        }
        XaValue::new(value)?;
        let (runs, n) = self.new_runs(start, end, value);
        let runs = &runs[..n];
        let count = runs.iter().map(|r| block_count(r.start, r.end)).sum();
        let mut blocks = KVec::with_capacity(count, GFP_KERNEL)?;
        for run in runs {
            for_each_block(run.start, run.end, |first, order| {
                // Within the capacity reserved above: never allocates.
                let _ = blocks.push(
                    Block {
                        first,
                        order,
                        value: run.value,
                    },
                    GFP_NOWAIT,
                );
            });
        }
        // At most one split and one reservation per block.
        let mut undo = KVec::with_capacity(2 * count, GFP_KERNEL)?;
        for block in blocks.iter() {
            if let Err(e) = self.prepare(block, gfp, update, &mut undo) {
                self.undo(&undo);
                return Err(e);
            }
        }
        update.before_store();
        // Stores first: an erase may shrink the tree and undo a preparation.
        for erase in [false, true] {
            for block in blocks.iter().filter(|b| (b.value == 0) == erase) {
                let entry = XaValue::new(block.value).ok().filter(|v| v.get() != 0);
                if let Err(e) = self.xa.store_block(block.first, block.order, entry, gfp) {
                    // Cannot happen: the block was prepared.
                    pr_err!(
                        "attributes: store of {:#x}+2^{} failed ({e:?})\n",
                        block.first,
                        block.order
                    );
                }
            }
        }
        // Reservations that were not stored over (the ones that only grew
        // the tree) are released now.
        for u in undo.iter().rev() {
            if let Undo::Reserved { first, order } = *u {
                self.xa.release_block(first, order);
            }
        }
        update.after_store();
        Ok(())
    }

    /// Makes `block` storable without allocating, recording what it did in
    /// `undo`.
    fn prepare(
        &self,
        block: &Block,
        gfp: Flags,
        update: &mut impl Update,
        undo: &mut KVec<Undo>,
    ) -> Result {
        update.checkpoint()?;
        if let Slot::Entry {
            first,
            order,
            entry,
        } = self.xa.lookup(block.first)
        {
            if order > block.order {
                // Record the entry before splitting it: a failure halfway
                // leaves it partly split.  Record only the largest one.
                let inside = undo.iter().any(|u| match *u {
                    Undo::Split {
                        first: f, order: o, ..
                    } => first >= f && first - f < (1usize << o),
                    Undo::Reserved { .. } => false,
                });
                if !inside {
                    undo.push(
                        Undo::Split {
                            first,
                            order,
                            value: entry,
                        },
                        GFP_KERNEL,
                    )?;
                }
                self.xa.split_to(block.first, block.order, gfp)?;
            }
        }
        if block.value != 0 {
            if let Some((first, order)) = self.xa.prepare_store(block.first, block.order, gfp)? {
                undo.push(Undo::Reserved { first, order }, GFP_KERNEL)?;
            }
        }
        Ok(())
    }

    /// Undoes a preparation: merges split entries back, then releases the
    /// reservations.  Allocates nothing.
    fn undo(&self, undo: &[Undo]) {
        for u in undo {
            if let Undo::Split {
                first,
                order,
                value,
            } = *u
            {
                // The entry's node is still there, so this does not allocate.
                if let Err(e) = self.xa.store_block(first, order, Some(value), GFP_NOWAIT) {
                    pr_err!("attributes: undo of {first:#x}+2^{order} failed ({e:?})\n");
                }
            }
        }
        for u in undo.iter().rev() {
            if let Undo::Reserved { first, order } = *u {
                self.xa.release_block(first, order);
            }
        }
    }
}
