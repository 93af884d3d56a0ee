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
//!    undone and the store is exactly as before.  An entry that is in the
//!    store already, or whose node is (the walk of the plan saw it), needs
//!    no preparation: a one-page change next to pages with attributes plans
//!    with one lock-free walk from the root and stores with one locked walk,
//!    its only lock round trip.
//! 2. *Store*: the new entries are stored (merging the entries they cover)
//!    and then the cleared blocks erased.  Nothing is allocated.  The nodes
//!    an entry replaces are freed a bounded number per locked section (see
//!    [`AttrStore::store`]).
//!
//! A change of one index that leaves every other entry as it is (its entry,
//! if any, has order 0 and no neighbour has the new value) skips the plan:
//! see [`AttrStore::set_page`].
//!
//! A clear never fails for want of memory: its only allocations are the
//! splits of the (at most two) entries that straddle its ends, a bounded
//! number of nodes, which it makes with `__GFP_NOFAIL` if the normal
//! allocation fails (see [`AttrStore::split`]).
//!
//! Indices outside `[start, end)` keep their value at every moment, and
//! those inside read either the old or the new value, so lock-free readers
//! never see anything else.  Writers must be serialized by the caller (KVM
//! holds `slots_lock`); the plan relies on it, and so do the extents that
//! [`AttrStore::range_has`] reads.

use core::cell::Cell;
use kernel::{
    alloc::Flags,
    error::code::{EINVAL, ENOMEM},
    prelude::*,
    task,
    time::Ktime,
    warn_on,
    xarray::{
        multi::{Slot, XaReader, XaValue, LEVEL_SHIFT},
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

    /// Called before each step of the preparation that may allocate memory;
    /// if it returns `true`, the step fails as if memory ran out.  A fault
    /// injection point for tests.
    fn alloc_fails(&mut self) -> bool {
        false
    }
}

/// Debugging statistics of the changes made through one [`AttrStore`].
///
/// The KUnit suite reads them; KVM does not.
#[allow(dead_code)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats {
    /// Walks of the array from its root: lookups that could not start from
    /// the node of the previous one, searches, and the walk of each locked
    /// operation (two for a preparation, one for a split, which takes one or
    /// two per level it splits).
    pub(crate) root_walks: usize,
    /// Round trips of the array's lock.
    pub(crate) lock_trips: usize,
    /// The longest locked store or erase, in nanoseconds, lock taking
    /// included.
    pub(crate) max_store_ns: i64,
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

/// The most blocks a plan has: three runs, each at most two per order.
const MAX_BLOCKS: usize = 3 * 2 * usize::BITS as usize;

/// A set of the blocks of a plan, by their position in [`Blocks`].
#[derive(Default)]
struct BlockSet([u64; MAX_BLOCKS / 64]);

impl BlockSet {
    fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// What a change does: the runs of the span it rewrites, the old entries it
/// splits, and what needs no work.
struct Plan {
    runs: [Run; 3],
    n: usize,
    split: [Option<Straddler>; 2],
    /// The blocks that are old entries already, with their value: neither
    /// prepared nor stored.
    keep: BlockSet,
    /// The blocks whose node is in the array: stored without preparation.
    ready: BlockSet,
}

/// The attribute store of a VM: a view of its `mem_attr_array`.
pub(crate) struct AttrStore<'a> {
    xa: &'a XArray<XaValue>,
    stats: Cell<Stats>,
    /// Whether stores are timed for [`Stats::max_store_ns`]: reading the
    /// clock costs more than a small store, so only tests ask for it.
    timed: bool,
}

impl<'a> AttrStore<'a> {
    /// Wraps an XArray that holds only value entries in canonical form.
    pub(crate) fn new(xa: &'a XArray<XaValue>) -> Self {
        Self {
            xa,
            stats: Cell::new(Stats::default()),
            timed: false,
        }
    }

    /// [`AttrStore::new`], timing each locked store for
    /// [`Stats::max_store_ns`].
    #[allow(dead_code)]
    pub(crate) fn new_timed(xa: &'a XArray<XaValue>) -> Self {
        Self {
            timed: true,
            ..Self::new(xa)
        }
    }

    /// Returns the statistics of the changes made through this view.
    #[allow(dead_code)]
    pub(crate) fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// Counts `walks` walks from the root and `locks` lock round trips.
    #[inline]
    fn count(&self, walks: usize, locks: usize) {
        let mut st = self.stats.get();
        st.root_walks += walks;
        st.lock_trips += locks;
        self.stats.set(st);
    }

    /// [`XArray::store_block`], counted, and timed if asked.
    fn store_block(&self, first: usize, order: u32, entry: Option<XaValue>, gfp: Flags) -> Result {
        let t0 = self.timed.then(Ktime::ktime_get);
        let ret = self.xa.store_block(first, order, entry, gfp);
        let mut st = self.stats.get();
        if let Some(t0) = t0 {
            st.max_store_ns = st.max_store_ns.max((Ktime::ktime_get() - t0).to_ns());
        }
        st.root_walks += 1;
        st.lock_trips += 1;
        self.stats.set(st);
        ret
    }

    /// Returns whether every index of `[start, end)` has a value whose bits
    /// in `mask` are `attrs`.  As in C, `attrs == 0` asks for no value at all
    /// (the mask is then ignored), except for a single index.
    ///
    /// Writers must be excluded: the answer walks entries by their extents,
    /// which a concurrent split or merge may make the lookup misreport (see
    /// the exactness of [`XaReader`]).  KVM's callers all hold `slots_lock`,
    /// as a change does: `KVM_SET_MEMORY_ATTRIBUTES` itself, x86's huge page
    /// checks (`kvm_arch_post_set_memory_attributes()` asserts it, and
    /// `kvm_mmu_init_memslot_memory_attributes()` runs in a memslot update)
    /// and `kvm_gmem_populate()`.  A single index needs no exclusion: its
    /// value is read once.
    pub(crate) fn range_has(&self, start: usize, end: usize, mask: usize, attrs: usize) -> bool {
        let r = self.xa.reader();
        let has = self.has(&r, start, end, mask, attrs);
        self.count(r.root_walks(), 0);
        has
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
            self.count(1, 0);
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
    ///
    /// All lookups go through one reader, which starts each from the node of
    /// the previous one when that node spans the index: for a small change,
    /// the check, the neighbours, the runs' ends and the state of the new
    /// entries are one walk from the root.
    fn plan(&self, start: usize, end: usize, value: usize) -> Option<Plan> {
        let r = self.xa.reader();
        let plan = self.plan_with(&r, start, end, value);
        self.count(r.root_walks(), 0);
        plan
    }

    /// [`AttrStore::plan`] with a reader.
    fn plan_with(
        &self,
        r: &XaReader<'_, XaValue>,
        start: usize,
        end: usize,
        value: usize,
    ) -> Option<Plan> {
        if self.has(r, start, end, !0, value) {
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
                    start: Self::run_start(r, first, entry.get()),
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
                        .map_or(usize::MAX, |e| Self::run_end(r, e, entry.get())),
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
            keep: BlockSet::default(),
            ready: BlockSet::default(),
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
        // Writers are excluded, so what the reader sees of the new entries
        // holds until the store phase.  A block inside a straddling entry is
        // held by that entry's nodes once split (see `prepare`).
        for (i, block) in Blocks::new(&plan.runs[..plan.n]).enumerate() {
            if block.value == 0 || plan.split.iter().flatten().any(|s| s.contains(&block)) {
                continue;
            }
            match r.lookup(block.first) {
                Slot::Entry {
                    first,
                    order,
                    entry,
                } if first == block.first && order == block.order && entry.get() == block.value => {
                    plan.keep.insert(i)
                }
                _ if r.storable(block.first, block.order) => plan.ready.insert(i),
                _ => {}
            }
        }
        Some(plan)
    }

    /// Sets the value of every index of `[start, end)` to `value` (0 clears
    /// them), allocating with `gfp`.
    ///
    /// Does nothing, not even calling `update`, if the range has the value
    /// already.  Returns [`EINVAL`] for an empty range or a value above
    /// [`XaValue::MAX`], `ENOMEM` if memory runs out (never for a clear,
    /// `value == 0`), or the error of `update.checkpoint()`; in all these
    /// cases the store is unchanged.
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
        let new = XaValue::new(value)?;
        if end - start == 1 {
            if let Some(ret) = self.set_page(start, new, gfp, update) {
                return ret;
            }
        }
        let Some(plan) = self.plan(start, end, value) else {
            // The range has the value already: no hook runs, as in C.
            return Ok(());
        };
        let (runs, split) = (&plan.runs[..plan.n], plan.split);
        let clear = value == 0;

        // The index reserved to grow the tree, if a block needed it; only a
        // block at index 0 can (see `XArray::prepare_store`), so one at most.
        let mut grown = None;
        for (i, block) in Blocks::new(runs).enumerate() {
            let ready = plan.keep.contains(i) || plan.ready.contains(i);
            match self.prepare(&block, ready, &split, clear, gfp, update) {
                Ok(Some(g)) => grown = Some(g),
                Ok(None) => {}
                Err(e) => {
                    // The failed step may have done part of its work.
                    self.undo(runs, i + 1, &split, grown);
                    return Err(e);
                }
            }
        }
        update.before_store();
        // Stores first: an erase may shrink the tree and undo a preparation.
        for erase in [false, true] {
            for (i, block) in Blocks::new(runs).enumerate() {
                if (block.value == 0) != erase || plan.keep.contains(i) {
                    continue;
                }
                let entry = XaValue::new(block.value).ok().filter(|v| v.get() != 0);
                self.store(&block, entry, gfp);
            }
        }
        // All reserved blocks were stored over; the index reserved to grow
        // the tree, if any, is released.
        if let Some((first, order)) = grown {
            self.count(1, 1);
            self.xa.release_block(first, order);
        }
        update.after_store();
        Ok(())
    }

    /// [`AttrStore::set`] of the one index `index`, when the change leaves
    /// every other entry as it is: the canonical form then has an entry of
    /// order 0 for `index` (none for 0), and the runs on either side keep
    /// theirs.  Returns `None`, having changed nothing, when the change is
    /// not of that kind and needs [`AttrStore::plan`].
    ///
    /// That is the case when the entry at `index`, if any, has order 0 and
    /// no neighbour has `value` (a clear merges with nothing).  The greedy
    /// form of a run that has a block of order 0 at `index` is the greedy
    /// form of the part left of `index`, that block, and the greedy form of
    /// the part right of it; so taking that block out of the run, or putting
    /// it between two runs of other values, changes no other block.
    ///
    /// This is the common conversion of one page, so it does what C does and
    /// no more: one lock-free walk for the entry and its neighbours, a
    /// reservation if the entry's node is missing, and the store.  It calls
    /// no [`Update::checkpoint`]: one page is not worth a reschedule point,
    /// and C cannot be interrupted there either.
    fn set_page(
        &self,
        index: usize,
        value: XaValue,
        gfp: Flags,
        update: &mut impl Update,
    ) -> Option<Result> {
        let new = value.get();
        let ready = {
            let r = self.xa.reader();
            let old = match r.lookup(index) {
                Slot::Empty => 0,
                Slot::Entry {
                    order: 0, entry, ..
                } => entry.get(),
                // Part of a larger entry (or a reservation, which only a
                // change in progress has): that needs splitting.
                _ => return None,
            };
            if old == new {
                // Nothing to do; no hook runs, as in C.
                self.count(r.root_walks(), 0);
                return Some(Ok(()));
            }
            // An entry's node holds its replacement; an erase needs no node.
            let ready = old != 0 || new == 0 || r.storable(index, 0);
            if new != 0 {
                // Without the leaf node of `index` (`!ready`), the other indices of that leaf
                // hold nothing: an entry of order below `LEVEL_SHIFT` would be in the leaf, a
                // larger one would cover `index`. Only neighbours beyond it need a look.
                let leaf = |i: usize| i >> LEVEL_SHIFT == index >> LEVEL_SHIFT;
                let merges = |i: Option<usize>| {
                    i.is_some_and(|i| {
                        (ready || !leaf(i)) && r.load(i).is_some_and(|e| e.get() == new)
                    })
                };
                if merges(index.checked_sub(1)) || merges(index.checked_add(1)) {
                    return None;
                }
            }
            self.count(r.root_walks(), 0);
            ready
        };
        // Nothing straddles the page, so at most the reservation.  A change
        // of one page is too short to need a reschedule point or to be
        // interrupted (C has neither): no checkpoint.
        let grown = if ready {
            None
        } else {
            match self.reserve(index, 0, gfp, update) {
                Ok(grown) => grown,
                Err(e) => {
                    // As `undo`: the failed reservation may have been made.
                    self.xa.release_block(index, 0);
                    return Some(Err(e));
                }
            }
        };
        update.before_store();
        self.store_checked(index, 0, (new != 0).then_some(value), gfp);
        if let Some((first, order)) = grown {
            self.count(1, 1);
            self.xa.release_block(first, order);
        }
        update.after_store();
        Some(Ok(()))
    }

    /// Stores `entry` into `block` (erases it for `None`), which was
    /// prepared, freeing the nodes it replaces a bounded number at a time.
    ///
    /// Storing an entry over smaller ones frees all the nodes below it in
    /// the locked section of the store (`xas_store()` calls
    /// `xas_free_nodes()`), tens of thousands of them for a fragmented 1 TiB
    /// range.  So the levels below a large block are merged first, bottom
    /// up: each chunk of order `k * LEVEL_SHIFT` (k >= 2, below the block's
    /// order) that holds smaller entries is stored as one entry, which frees
    /// at most one node and its children (a node's worth of leaves) in the
    /// first pass, one node in the later ones, whose levels below are merged
    /// already; `cond_resched()` runs between chunks.  The block's own store
    /// then frees at most one node per slot it takes.
    ///
    /// A chunk lies inside the block, so its indices go from the old value to
    /// the new one (or keep it, in a neighbouring run); its node is in the
    /// array (it holds the smaller entries found), so the store allocates
    /// nothing.  For the first chunk of a block at 0 that node may be the
    /// root only if the tree lies within the chunk: erasing it then erases
    /// the tree, and a stored block at 0 was prepared with a tree taller
    /// than the block.
    fn store(&self, block: &Block, entry: Option<XaValue>, gfp: Flags) {
        let last = last_index(block.first, block.order);
        let mut level = 2 * LEVEL_SHIFT;
        while level < block.order {
            let mut index = block.first;
            loop {
                self.count(1, 0);
                let Some((found, _)) = self.xa.find(index, last) else {
                    break;
                };
                self.count(1, 0);
                let next = match self.xa.lookup(found) {
                    Slot::Entry { order, .. } if order < level => {
                        // Smaller entries, so a node below the chunk's slot.
                        let chunk = found & !((1usize << level) - 1);
                        self.store_checked(chunk, level, entry, gfp);
                        task::cond_resched();
                        chunk.checked_add(1usize << level)
                    }
                    Slot::Entry { first, order, .. } | Slot::Reserved { first, order } => {
                        first.checked_add(1usize << order)
                    }
                    Slot::Empty => found.checked_add(1),
                };
                match next {
                    Some(next) if next <= last => index = next,
                    _ => break,
                }
            }
            level += LEVEL_SHIFT;
        }
        self.store_checked(block.first, block.order, entry, gfp);
    }

    /// Stores into a block that needs no memory.
    fn store_checked(&self, first: usize, order: u32, entry: Option<XaValue>, gfp: Flags) {
        if let Err(e) = self.store_block(first, order, entry, gfp) {
            // Cannot happen: the block was prepared (C: KVM_BUG_ON).
            pr_err!("attributes: store of {first:#x}+2^{order} failed ({e:?})\n");
            warn_on!(true);
        }
    }

    /// Splits the entry covering `index` down to order `order`
    /// ([`XArray::split_to`]).
    ///
    /// For a clear (`clear`), it never fails for want of memory: if the
    /// allocation with `gfp` fails, it allocates with `__GFP_NOFAIL`
    /// ([`XArray::split_to_nofail`]).  That is bounded: a change splits at
    /// most the two entries straddling its ends, one node per level, so at
    /// most `2 * (BITS_PER_LONG / XA_CHUNK_SHIFT + 1)` = 22 nodes of 576
    /// bytes; it runs in process context with no spinlock held (KVM holds
    /// `slots_lock`, a mutex); and the first try has already failed, so it
    /// only runs under memory pressure.  Nothing else in a clear allocates:
    /// the entries it stores are old entries or inside a split one, and
    /// erasing allocates nothing.
    fn split(
        &self,
        index: usize,
        order: u32,
        clear: bool,
        gfp: Flags,
        update: &mut impl Update,
    ) -> Result {
        // At least one walk and one lock round trip; one or two per level.
        self.count(1, 1);
        let ret = if update.alloc_fails() {
            Err(ENOMEM)
        } else {
            self.xa.split_to(index, order, gfp)
        };
        match ret {
            Err(e) if e == ENOMEM && clear => {
                self.xa.split_to_nofail(index, order, gfp);
                Ok(())
            }
            ret => ret,
        }
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
        ready: bool,
        split: &[Option<Straddler>],
        clear: bool,
        gfp: Flags,
        update: &mut impl Update,
    ) -> Result<Option<(usize, u32)>> {
        let last = last_index(block.first, block.order);
        let splits = |s: &&Straddler| {
            s.order > block.order && block.first <= s.boundary && s.boundary <= last
        };
        let contained = split.iter().flatten().any(|s| s.contains(block));
        let reserve = block.value != 0 && !contained && !ready;
        if !reserve && !split.iter().flatten().any(|s| splits(&s)) {
            // Nothing to do for this block: no step.
            return Ok(None);
        }
        update.checkpoint()?;
        for s in split.iter().flatten().filter(splits) {
            self.split(s.boundary, block.order, clear, gfp, update)?;
        }
        if !reserve {
            return Ok(None);
        }
        self.reserve(block.first, block.order, gfp, update)
    }

    /// Reserves the aligned block of order `order` at `first`
    /// ([`XArray::prepare_store`]) so that storing into it allocates
    /// nothing.  Returns the reservation made to grow the tree, if any,
    /// which lies outside the block.
    fn reserve(
        &self,
        first: usize,
        order: u32,
        gfp: Flags,
        update: &mut impl Update,
    ) -> Result<Option<(usize, u32)>> {
        if update.alloc_fails() {
            return Err(ENOMEM);
        }
        self.count(2, 1);
        let reserved = self.xa.prepare_store(first, order, gfp)?;
        Ok(reserved.filter(|&r| r != (first, order)))
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
