// SPDX-License-Identifier: GPL-2.0

//! Per-gfn memory attributes as canonical multi-index XArray entries.
//!
//! The store maps every index (gfn) to a value, 0 meaning "no attributes".
//! It is kept in *canonical* form: each maximal run of indices with the same
//! non-zero value is stored as the fewest aligned power-of-two entries that
//! cover it (taken greedily from the left, see [`Blocks`]), and
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
    warn_on,
    xarray::{
        multi::{Slot, XaReader, XaValue},
        XArray,
    },
};

/// Returns the order of the largest aligned block that starts at `first` and
/// ends at or before `end`.
fn block_order(first: usize, end: usize) -> u32 {
    let align = first.trailing_zeros().min(usize::BITS - 1);
    align.min((end - first).ilog2())
}

/// Returns the last index of the aligned block of order `order` at `first`.
fn last_index(first: usize, order: u32) -> usize {
    first + ((1usize << order) - 1)
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

/// A run of equal values: `[start, end)` holds `value`.
#[derive(Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    value: usize,
}

/// The blocks of the canonical form of contiguous runs, from left to right.
struct Blocks<'r> {
    runs: &'r [Run],
    run: usize,
    next: usize,
}

impl<'r> Blocks<'r> {
    fn new(runs: &'r [Run]) -> Self {
        Self {
            runs,
            run: 0,
            next: runs.first().map_or(0, |r| r.start),
        }
    }
}

impl Iterator for Blocks<'_> {
    type Item = Block;

    fn next(&mut self) -> Option<Block> {
        loop {
            let run = self.runs.get(self.run)?;
            if self.next >= run.end {
                self.run += 1;
                self.next = self.runs.get(self.run).map_or(0, |r| r.start);
                continue;
            }
            let order = block_order(self.next, run.end);
            let block = Block {
                first: self.next,
                order,
                value: run.value,
            };
            self.next += 1usize << order;
            return Some(block);
        }
    }
}

/// An old entry that a change splits: it straddles `boundary`, one end of
/// the range.
#[derive(Clone, Copy)]
struct Straddler {
    first: usize,
    order: u32,
    value: XaValue,
    boundary: usize,
}

impl Straddler {
    /// Whether the entry lies over the whole of `block`.
    fn contains(&self, block: &Block) -> bool {
        self.first <= block.first
            && last_index(block.first, block.order) <= last_index(self.first, self.order)
    }

    /// Whether `other` is the same old entry (straddling the other end).
    fn same_entry(&self, other: &Straddler) -> bool {
        self.first == other.first && self.order == other.order
    }
}

/// What a change does: the runs of the span it rewrites, and the old entries
/// it splits.
struct Plan {
    runs: [Run; 3],
    n: usize,
    split: [Option<Straddler>; 2],
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

    /// Returns whether every index of `[start, end)` has a value whose bits
    /// in `mask` are `attrs`.  As in C, `attrs == 0` asks for no value at all
    /// (the mask is then ignored), except for a single index.
    pub(crate) fn range_has(&self, start: usize, end: usize, mask: usize, attrs: usize) -> bool {
        self.has(&self.xa.reader(), start, end, mask, attrs)
    }

    /// [`AttrStore::range_has`] with a reader.
    fn has(
        &self,
        r: &XaReader<'_, XaValue>,
        start: usize,
        end: usize,
        mask: usize,
        attrs: usize,
    ) -> bool {
        if start >= end {
            return true;
        }
        if end - start == 1 {
            let value = match r.lookup(start) {
                // The store never holds an entry for "no attributes".
                Slot::Entry { entry, .. } if !warn_on!(entry.get() == 0) => entry.get(),
                _ => 0,
            };
            return value & mask == attrs;
        }
        if attrs == 0 {
            return self.xa.find(start, end - 1).is_none();
        }
        let mut index = start;
        while index < end {
            match r.lookup(index) {
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
    fn run_start(r: &XaReader<'_, XaValue>, mut first: usize, value: usize) -> usize {
        while first > 0 {
            match r.lookup(first - 1) {
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
    fn run_end(r: &XaReader<'_, XaValue>, mut end: usize, value: usize) -> usize {
        loop {
            match r.lookup(end) {
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

    /// Plans setting `[start, end)` to `value`: returns the runs of the span
    /// it changes and the old entries it splits.
    ///
    /// The runs are the old ones that contain `start - 1` and `end`, which
    /// keep their values, and the new one, merged where the values are
    /// equal; outside their span nothing changes, and no old entry crosses
    /// its ends.  Every old entry inside the span lies inside a block of the
    /// new canonical form (which holds all maximal aligned blocks of each
    /// run), except those straddling `start` or `end`: only these are split.
    ///
    /// Returns `None` if the range already has `value` (as
    /// [`AttrStore::range_has`] with mask `!0` sees it): nothing to do.
    fn plan(&self, start: usize, end: usize, value: usize) -> Option<Plan> {
        let r = self.xa.reader();
        if self.has(&r, start, end, !0, value) {
            return None;
        }
        let before = start.checked_sub(1).map(|i| r.lookup(i));
        let after = r.lookup(end);
        let mut low = None;
        let left = match before {
            Some(Slot::Entry {
                first,
                order,
                entry,
            }) => {
                if last_index(first, order) >= start {
                    low = Some(Straddler {
                        first,
                        order,
                        value: entry,
                        boundary: start,
                    });
                }
                Run {
                    start: Self::run_start(&r, first, entry.get()),
                    end: start,
                    value: entry.get(),
                }
            }
            _ => Run {
                start,
                end: start,
                value: 0,
            },
        };
        let mut high = None;
        let right = match after {
            Slot::Entry {
                first,
                order,
                entry,
            } => {
                if first < end {
                    high = Some(Straddler {
                        first,
                        order,
                        value: entry,
                        boundary: end,
                    });
                }
                Run {
                    start: end,
                    end: first
                        .checked_add(1usize << order)
                        .map_or(usize::MAX, |e| Self::run_end(&r, e, entry.get())),
                    value: entry.get(),
                }
            }
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
        let mut plan = Plan {
            runs: [empty; 3],
            n: 0,
            split: [low, high],
        };
        for run in [left, Run { start, end, value }, right] {
            if run.start == run.end {
                continue;
            }
            if plan.n > 0 && plan.runs[plan.n - 1].value == run.value {
                plan.runs[plan.n - 1].end = run.end;
            } else {
                plan.runs[plan.n] = run;
                plan.n += 1;
            }
        }
        Some(plan)
    }

    /// Sets the value of every index of `[start, end)` to `value` (0 clears
    /// them), allocating with `gfp`.
    ///
    /// Does nothing, not even calling `update`, if the range has the value
    /// already.  Returns [`EINVAL`] for an empty range or a value above
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
        let Some(plan) = self.plan(start, end, value) else {
            // The range has the value already: no hook runs, as in C.
            return Ok(());
        };
        let (runs, split) = (&plan.runs[..plan.n], plan.split);

        // The index reserved to grow the tree, if a block needed it; only a
        // block at index 0 can (see `XArray::prepare_store`), so one at most.
        let mut grown = None;
        for (prepared, block) in Blocks::new(runs).enumerate() {
            match self.prepare(&block, &split, gfp, update) {
                Ok(Some(g)) => grown = Some(g),
                Ok(None) => {}
                Err(e) => {
                    // The failed step may have done part of its work.
                    self.undo(runs, prepared + 1, &split, grown);
                    return Err(e);
                }
            }
        }
        update.before_store();
        // Stores first: an erase may shrink the tree and undo a preparation.
        for erase in [false, true] {
            for block in Blocks::new(runs).filter(|b| (b.value == 0) == erase) {
                let entry = XaValue::new(block.value).ok().filter(|v| v.get() != 0);
                if let Err(e) = self.xa.store_block(block.first, block.order, entry, gfp) {
                    // Cannot happen: the block was prepared (C: KVM_BUG_ON).
                    pr_err!(
                        "attributes: store of {:#x}+2^{} failed ({e:?})\n",
                        block.first,
                        block.order
                    );
                    warn_on!(true);
                }
            }
        }
        // All reserved blocks were stored over; the index reserved to grow
        // the tree, if any, is released.
        if let Some((first, order)) = grown {
            self.xa.release_block(first, order);
        }
        update.after_store();
        Ok(())
    }

    /// Makes `block` storable without allocating and without affecting the
    /// indices outside it.  Returns the reservation made to grow the tree,
    /// if any, which lies outside the block.
    ///
    /// An entry straddling an end of the range is split only where it
    /// straddles: once the entries covering that index are no larger than
    /// the block there, every other old entry of the span is an aligned
    /// block inside one run, so inside one block of its canonical form.
    /// For the same reason a block inside a straddling entry needs no node:
    /// the entry's own nodes hold it.
    fn prepare(
        &self,
        block: &Block,
        split: &[Option<Straddler>],
        gfp: Flags,
        update: &mut impl Update,
    ) -> Result<Option<(usize, u32)>> {
        update.checkpoint()?;
        let last = last_index(block.first, block.order);
        for s in split.iter().flatten() {
            if s.order > block.order && block.first <= s.boundary && s.boundary <= last {
                self.xa.split_to(s.boundary, block.order, gfp)?;
            }
        }
        if block.value == 0 || split.iter().flatten().any(|s| s.contains(block)) {
            return Ok(None);
        }
        let reserved = self.xa.prepare_store(block.first, block.order, gfp)?;
        Ok(reserved.filter(|&r| r != (block.first, block.order)))
    }

    /// Undoes the preparation of the first `count` blocks of `runs`: merges
    /// the split entries back, then releases the reservations, `grown`
    /// included.  Allocates nothing.
    fn undo(
        &self,
        runs: &[Run],
        count: usize,
        split: &[Option<Straddler>],
        grown: Option<(usize, u32)>,
    ) {
        let high = split[1].filter(|h| !split[0].is_some_and(|l| l.same_entry(h)));
        for s in [split[0], high].iter().flatten() {
            // The entry's node is still there, so this does not allocate.
            if let Err(e) = self
                .xa
                .store_block(s.first, s.order, Some(s.value), GFP_NOWAIT)
            {
                pr_err!(
                    "attributes: undo of {:#x}+2^{} failed ({e:?})\n",
                    s.first,
                    s.order
                );
                warn_on!(true);
            }
        }
        for block in Blocks::new(runs).take(count).filter(|b| b.value != 0) {
            self.xa.release_block(block.first, block.order);
        }
        if let Some((first, order)) = grown {
            self.xa.release_block(first, order);
        }
    }
}
