// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the memory attribute store (`attr_store.rs`).
//!
//! The store is checked against a naive model that keeps one value per
//! page: thousands of random changes, each followed by lookups and range
//! queries, and regularly by a full comparison that also checks that the
//! entries are exactly the canonical ones (no leftover reservation, no
//! unmerged neighbours).  Changes that fail at every possible step must
//! leave the store as it was.  They need no KVM, so they also run under
//! UML; `#[kunit_tests]` registers them as the `gmem_rs_attr_store` suite.

use kernel::prelude::*;

/// The prefix of this crate's log messages.
const __LOG_PREFIX: &[u8] = b"gmem_rs_attr_store\0";

#[allow(dead_code)]
#[path = "attr_store.rs"]
mod attr_store;

#[kunit_tests(gmem_rs_attr_store)]
mod tests {
    use super::attr_store::{AttrStore, Update};
    use kernel::{
        error::code::{EINTR, ENOMEM},
        prelude::*,
        xarray::{
            multi::{Slot, XaValue},
            AllocKind, XArray,
        },
    };

    /// `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
    const PV: usize = 1 << 3;

    /// An [`Update`] that does nothing.
    struct Plain;

    impl Update for Plain {}

    /// Calls `f(first, order)` for each block of the canonical form of
    /// `[start, end)`, computed here independently of the store: from left to
    /// right, the largest power-of-two block aligned to its size that fits.
    fn for_each_block(mut start: usize, end: usize, mut f: impl FnMut(usize, u32)) {
        while start < end {
            let mut order = 0;
            while order < usize::BITS - 1 {
                let size = 1usize << (order + 1);
                if start % size != 0 || end - start < size {
                    break;
                }
                order += 1;
            }
            f(start, order);
            start += 1usize << order;
        }
    }

    /// Returns the number of blocks of the canonical form of `[start, end)`.
    fn block_count(start: usize, end: usize) -> usize {
        let mut n = 0;
        for_each_block(start, end, |_, _| n += 1);
        n
    }

    /// The top of the gfn space with 4 KiB pages and 64-bit addresses.
    const GFN_TOP: usize = 1 << 52;

    /// A deterministic pseudo-random generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// A number in `0..n`.
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The value of `index`, 0 if it has none.
    fn get(xa: &XArray<XaValue>, index: usize) -> usize {
        match xa.lookup(index) {
            Slot::Entry { entry, .. } => entry.get(),
            _ => 0,
        }
    }

    /// Returns a new empty array, or logs why there is none.
    fn new_array() -> Option<Pin<KBox<XArray<XaValue>>>> {
        match KBox::pin_init(XArray::new(AllocKind::Plain), GFP_KERNEL) {
            Ok(xa) => Some(xa),
            Err(_) => {
                pr_err!("cannot allocate an xarray\n");
                None
            }
        }
    }

    /// The entries of `xa` in `[from, to]`, as (first, order, value).
    fn entries(xa: &XArray<XaValue>, from: usize, to: usize) -> KVec<(usize, u32, usize)> {
        let mut out = KVec::new();
        let mut index = from;
        while let Some((i, _)) = xa.find(index, to) {
            let Slot::Entry {
                first,
                order,
                entry,
            } = xa.lookup(i)
            else {
                break;
            };
            if out.push((first, order, entry.get()), GFP_KERNEL).is_err() {
                break;
            }
            match first.checked_add(1usize << order) {
                Some(next) if next <= to => index = next,
                _ => break,
            }
        }
        out
    }

    /// A model of the store over the window `[base, base + len)`; every page
    /// outside it has no value.
    struct Model {
        base: usize,
        vals: KVec<u8>,
    }

    impl Model {
        fn new(base: usize, len: usize) -> Result<Self> {
            Ok(Self {
                base,
                vals: KVec::from_elem(0u8, len, GFP_KERNEL)?,
            })
        }

        fn len(&self) -> usize {
            self.vals.len()
        }

        fn set(&mut self, start: usize, end: usize, value: usize) {
            for v in &mut self.vals[start - self.base..end - self.base] {
                *v = value as u8;
            }
        }

        /// `range_has` as 6.12 defines it, page by page.
        fn range_has(&self, start: usize, end: usize, mask: usize, attrs: usize) -> bool {
            let vals = &self.vals[start - self.base..end - self.base];
            match vals.len() {
                0 => true,
                1 => usize::from(vals[0]) & mask == attrs,
                _ if attrs == 0 => vals.iter().all(|&v| v == 0),
                _ => vals.iter().all(|&v| usize::from(v) & mask == attrs),
            }
        }

        /// Compares everything: each page's value, no reservation left, no
        /// entry outside the window, and the entries exactly the canonical
        /// blocks of the model's runs.
        fn compare(&self, xa: &XArray<XaValue>) {
            let last = self.base + self.len() - 1;
            for (i, &v) in self.vals.iter().enumerate() {
                let index = self.base + i;
                assert!(get(xa, index) == usize::from(v));
                if v == 0 {
                    assert!(xa.lookup(index) == Slot::Empty);
                }
            }
            if self.base > 0 {
                assert!(xa.find(0, self.base - 1).is_none());
            }
            if last < usize::MAX {
                assert!(xa.find(last + 1, usize::MAX).is_none());
            }
            let mut expected = KVec::new();
            let mut i = 0;
            while i < self.len() {
                let v = self.vals[i];
                let mut j = i;
                while j < self.len() && self.vals[j] == v {
                    j += 1;
                }
                if v != 0 {
                    for_each_block(self.base + i, self.base + j, |first, order| {
                        let _ = expected.push((first, order, usize::from(v)), GFP_KERNEL);
                    });
                }
                i = j;
            }
            let actual = entries(xa, self.base, last);
            assert!(actual.len() == expected.len());
            assert!(actual.iter().zip(expected.iter()).all(|(a, e)| a == e));
        }
    }

    /// Runs `ops` random changes in the window of `len` pages from `base`.
    fn random_run(seed: u64, base: usize, len: usize, ops: usize) -> Result {
        let xa = new_array().ok_or(ENOMEM)?;
        let store = AttrStore::new(&xa);
        let mut model = Model::new(base, len)?;
        let mut rng = Rng(seed);
        let values = [0, 0, PV, PV, 1, PV | 1];
        for op in 0..ops {
            let start = rng.below(len);
            let max = match rng.below(10) {
                0..=5 => 16,
                6..=8 => 256,
                _ => len,
            };
            let end = (start + 1 + rng.below(max)).min(len);
            let value = values[rng.below(values.len())];
            model.set(base + start, base + end, value);
            let ret = store.set(base + start, base + end, value, GFP_KERNEL, &mut Plain);
            if ret.is_err() {
                pr_err!(
                    "set [{:#x}, {:#x}) = {} failed\n",
                    base + start,
                    base + end,
                    value
                );
            }
            assert!(ret.is_ok());
            for _ in 0..8 {
                let i = base + rng.below(len);
                assert!(get(&xa, i) == usize::from(model.vals[i - base]));
            }
            for _ in 0..4 {
                let s = base + rng.below(len);
                let e = (s + 1 + rng.below(64)).min(base + len);
                let mask = if rng.below(2) == 0 { !0 } else { PV };
                let attrs = values[rng.below(values.len())] & mask;
                assert!(store.range_has(s, e, mask, attrs) == model.range_has(s, e, mask, attrs));
            }
            if op % 64 == 63 || op == ops - 1 {
                model.compare(&xa);
            }
        }
        // Clearing everything leaves no entry at all.
        assert!(store
            .set(base, base + len, 0, GFP_KERNEL, &mut Plain)
            .is_ok());
        assert!(xa.is_empty());
        Ok(())
    }

    /// Random changes checked against the model, at gfn 0, across a 2^40
    /// boundary and at the top of the gfn space.
    #[test]
    fn attr_random_case() -> Result {
        let runs = [
            (1u64, 0usize, 2048usize),
            (2, (1 << 40) - 1024, 2048),
            (3, GFN_TOP - 2048, 2048),
            (4, 4096 - 3, 300),
        ];
        for (seed, base, len) in runs {
            random_run(seed, base, len, 3000)?;
        }
        Ok(())
    }

    /// Fails the `n`-th preparation step with `err`, and records whether the
    /// store was reached.
    struct FailAt {
        n: usize,
        err: Error,
        stored: bool,
    }

    impl Update for FailAt {
        fn checkpoint(&mut self) -> Result {
            if self.n == 0 {
                return Err(self.err);
            }
            self.n -= 1;
            Ok(())
        }

        fn before_store(&mut self) {
            self.stored = true;
        }
    }

    /// Changes that fail at every step leave the store exactly as before.
    #[test]
    fn attr_atomic_case() -> Result {
        let Some(xa) = new_array() else {
            return Err(ENOMEM);
        };
        let store = AttrStore::new(&xa);
        let (base, len) = (1usize << 30, 512usize);
        let mut model = Model::new(base, len)?;
        let mut rng = Rng(5);
        let values = [0, PV, PV, 1];
        for _ in 0..150 {
            let start = rng.below(len);
            let max = if rng.below(2) == 0 { 16 } else { len };
            let end = (start + 1 + rng.below(max)).min(len);
            let value = values[rng.below(values.len())];
            // A change to what the range holds already does nothing.
            let noop = model.range_has(base + start, base + end, !0, value);
            let mut n = 0;
            loop {
                let err = if n % 2 == 0 { ENOMEM } else { EINTR };
                let mut up = FailAt {
                    n,
                    err,
                    stored: false,
                };
                match store.set(base + start, base + end, value, GFP_KERNEL, &mut up) {
                    Err(e) => {
                        assert!(e == err);
                        assert!(!up.stored);
                        model.compare(&xa);
                        n += 1;
                    }
                    Ok(()) => {
                        assert!(up.stored != noop);
                        model.set(base + start, base + end, value);
                        model.compare(&xa);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The number of entries in the whole array.
    fn count(xa: &XArray<XaValue>) -> usize {
        entries(xa, 0, usize::MAX).len()
    }

    /// gfn 0, the top of the gfn space, one page inside a huge range, and
    /// unaligned ranges.
    #[test]
    fn attr_edges_case() -> Result {
        let Some(xa) = new_array() else {
            return Err(ENOMEM);
        };
        let Ok(pv) = XaValue::new(PV) else {
            return Err(EINVAL);
        };
        let s = AttrStore::new(&xa);
        let set = |start: usize, end: usize, v: usize| {
            assert!(s.set(start, end, v, GFP_KERNEL, &mut Plain).is_ok());
        };

        // 1 TiB from gfn 0 is one entry; one page cleared inside it costs two
        // entries per level, and setting it back merges them all again.
        let huge = 1usize << 28;
        set(0, huge, PV);
        let whole = Slot::Entry {
            first: 0,
            order: 28,
            entry: pv,
        };
        assert!(xa.lookup(12345) == whole);
        assert!(count(&xa) == 1);
        let mid = huge / 2 + 3;
        set(mid, mid + 1, 0);
        assert!(get(&xa, mid) == 0 && get(&xa, mid - 1) == PV && get(&xa, mid + 1) == PV);
        assert!(get(&xa, 0) == PV && get(&xa, huge - 1) == PV && get(&xa, huge) == 0);
        assert!(count(&xa) == block_count(0, mid) + block_count(mid + 1, huge));
        assert!(count(&xa) <= 2 * 28);
        assert!(s.range_has(0, mid, !0, PV) && !s.range_has(0, mid + 1, !0, PV));
        assert!(s.range_has(mid, mid + 1, !0, 0) && !s.range_has(mid - 1, mid + 1, !0, 0));
        set(mid, mid + 1, PV);
        assert!(count(&xa) == 1);
        set(0, huge, 0);
        assert!(xa.is_empty());

        // Single pages at gfn 0 and at the top of the gfn space.
        set(0, 1, PV);
        set(GFN_TOP - 1, GFN_TOP, PV);
        assert!(count(&xa) == 2);
        assert!(get(&xa, 0) == PV && get(&xa, 1) == 0);
        assert!(
            get(&xa, GFN_TOP - 2) == 0 && get(&xa, GFN_TOP - 1) == PV && get(&xa, GFN_TOP) == 0
        );
        // Growing the top page to a 1 GiB block merges it.
        set(GFN_TOP - (1 << 18), GFN_TOP - 1, PV);
        assert!(count(&xa) == 2);
        assert!(s.range_has(GFN_TOP - (1 << 18), GFN_TOP, !0, PV));
        set(0, GFN_TOP, 0);
        assert!(xa.is_empty());

        // The last indices of the array.
        let top = usize::MAX - (1 << 20);
        set(top, usize::MAX, 1);
        assert!(
            get(&xa, usize::MAX - 1) == 1 && get(&xa, usize::MAX) == 0 && get(&xa, top - 1) == 0
        );
        assert!(count(&xa) == block_count(top, usize::MAX));
        set(top, usize::MAX, 0);
        assert!(xa.is_empty());

        // Merging into a block that starts at 0 and spans the whole tree needs a
        // taller tree: the index that grows it is reserved, then released.
        set(0, 1, PV);
        set(1, 2, PV);
        assert!(count(&xa) == 1 && xa.lookup(2) == Slot::Empty);
        set(2, 64, PV);
        assert!(count(&xa) == 1 && xa.lookup(64) == Slot::Empty);
        set(64, 4096, PV);
        assert!(count(&xa) == 1 && xa.lookup(4096) == Slot::Empty);
        set(0, 4096, 0);
        assert!(xa.is_empty());

        // Unaligned ranges, neighbours with other values, merges on both sides.
        set(3, 1000, PV);
        assert!(count(&xa) == block_count(3, 1000));
        assert!(
            get(&xa, 2) == 0 && get(&xa, 3) == PV && get(&xa, 999) == PV && get(&xa, 1000) == 0
        );
        set(1000, 1024, 1);
        assert!(count(&xa) == block_count(3, 1000) + block_count(1000, 1024));
        set(1000, 1024, PV);
        assert!(count(&xa) == block_count(3, 1024));
        set(0, 3, PV);
        assert!(count(&xa) == 1);
        assert!(s.range_has(0, 1024, !0, PV) && s.range_has(0, 1024, PV, PV));
        assert!(!s.range_has(0, 1025, !0, PV));
        // attrs == 0 asks for no value at all, whatever the mask.
        assert!(!s.range_has(0, 2, 1, 0) && s.range_has(1024, 2048, 1, 0));
        assert!(s.range_has(0, 1, 1, 0));
        // Empty and inverted ranges are rejected.
        assert!(s.set(5, 5, PV, GFP_KERNEL, &mut Plain).is_err());
        assert!(s.set(6, 5, PV, GFP_KERNEL, &mut Plain).is_err());
        assert!(s.set(0, 1, usize::MAX, GFP_KERNEL, &mut Plain).is_err());
        set(0, 1024, 0);
        assert!(xa.is_empty());
        Ok(())
    }

    /// An [`Update`] whose every allocation fails, as with a failslab that
    /// fails them all: it counts the steps that would have allocated.
    struct NoMemory {
        refused: usize,
    }

    impl Update for NoMemory {
        fn alloc_fails(&mut self) -> bool {
            self.refused += 1;
            true
        }
    }

    /// A clear never fails for want of memory, even when every allocation
    /// fails: splitting the large entries it cuts is the only thing a clear
    /// allocates for, and it has a way that cannot fail.  A set may fail
    /// then, leaving the store as it was.
    #[test]
    fn attr_clear_nomem_case() -> Result {
        let Some(xa) = new_array() else {
            return Err(ENOMEM);
        };
        let s = AttrStore::new(&xa);
        let (base, len) = (1usize << 40, 4096usize);
        let mut model = Model::new(base, len)?;
        let clear = |a: usize, b: usize| s.set(a, b, 0, GFP_KERNEL, &mut NoMemory { refused: 0 });

        // The worst case: one page out of the middle of a 1 TiB entry (a
        // split at every level), then its edges.
        let huge = 1usize << 28;
        assert!(s.set(0, huge, PV, GFP_KERNEL, &mut Plain).is_ok());
        let mut up = NoMemory { refused: 0 };
        let mid = huge / 2 + 12345;
        let ret = s.set(mid, mid + 1, 0, GFP_KERNEL, &mut up);
        pr_info!(
            "clear of 1 page in a 1 TiB entry, every allocation failing: {:?} ({} refused)\n",
            ret,
            up.refused
        );
        assert!(ret.is_ok());
        assert!(get(&xa, mid) == 0 && get(&xa, mid - 1) == PV && get(&xa, mid + 1) == PV);
        assert!(count(&xa) == block_count(0, mid) + block_count(mid + 1, huge));
        for (a, b) in [(0, 1), (huge - 1, huge), (1, 7), (huge - 300, huge - 2)] {
            assert!(clear(a, b).is_ok());
            assert!(get(&xa, a) == 0 && get(&xa, b - 1) == 0);
        }
        assert!(clear(0, huge).is_ok());
        assert!(xa.is_empty());

        // Random states, then random clears with no memory at all; the sets
        // in between have memory.  Sets without memory fail or succeed as
        // they must, but never leave anything half done.
        let mut rng = Rng(7);
        let values = [PV, PV, 1, PV | 1];
        for op in 0..1500 {
            let start = rng.below(len);
            let max = if rng.below(3) == 0 { len } else { 64 };
            let end = (start + 1 + rng.below(max)).min(len);
            let (a, b) = (base + start, base + end);
            match op % 3 {
                0 | 1 => {
                    assert!(clear(a, b).is_ok());
                    model.set(a, b, 0);
                }
                _ => {
                    let value = values[rng.below(values.len())];
                    if rng.below(2) == 0 {
                        assert!(s.set(a, b, value, GFP_KERNEL, &mut Plain).is_ok());
                        model.set(a, b, value);
                    } else {
                        let mut up = NoMemory { refused: 0 };
                        match s.set(a, b, value, GFP_KERNEL, &mut up) {
                            Ok(()) => model.set(a, b, value),
                            Err(e) => assert!(e == ENOMEM && up.refused > 0),
                        }
                    }
                }
            }
            if op % 50 == 49 {
                model.compare(&xa);
            }
        }
        model.compare(&xa);
        assert!(clear(base, base + len).is_ok());
        assert!(xa.is_empty());
        Ok(())
    }

    /// A one-page change next to pages that have attributes walks the array
    /// from its root twice and takes its lock once: the check that the range
    /// has the value already, the neighbour lookups and the storability of
    /// the new entry share one lock-free walk, an entry that needs no memory
    /// needs no preparation, and the store walks again under the lock.  (C:
    /// a lookup, a reservation and a store, three walks and two locks.)
    #[test]
    fn attr_small_change_case() -> Result {
        let Some(xa) = new_array() else {
            return Err(ENOMEM);
        };
        let setup = AttrStore::new(&xa);
        assert!(setup.set(100, 110, PV, GFP_KERNEL, &mut Plain).is_ok());
        assert!(setup.set(120, 130, 1, GFP_KERNEL, &mut Plain).is_ok());
        let far = 1 << 20;
        assert!(setup.set(far, far + 1, 1, GFP_KERNEL, &mut Plain).is_ok());
        let cases = [
            // Grows a run (merging), alone, shrinks it; cuts a page out of a
            // 4-page entry, which must be split (in its node: no memory, but
            // locked steps), and merges it back.
            (110, 111, PV, true),
            (115, 116, PV, true),
            (110, 111, 0, true),
            (115, 116, 0, true),
            (119, 120, 1, true),
            (119, 120, 0, true),
            (105, 106, 1, false),
            (105, 106, PV, false),
        ];
        for (a, b, v, one) in cases {
            let s = AttrStore::new(&xa);
            assert!(s.set(a, b, v, GFP_KERNEL, &mut Plain).is_ok());
            let st = s.stats();
            pr_info!(
                "set [{a}, {b}) = {v}: {} root walks, {} lock round trips\n",
                st.root_walks,
                st.lock_trips
            );
            assert!(get(&xa, a) == v);
            assert!(!one || (st.root_walks == 2 && st.lock_trips == 1));
        }
        assert!(count(&xa) == block_count(100, 110) + block_count(120, 130) + 1);
        // A page with no neighbour in a node of its own: one walk to see
        // that, one to reserve the node (locked), and the store.
        let s = AttrStore::new(&xa);
        assert!(s
            .set(1 << 30, (1 << 30) + 1, PV, GFP_KERNEL, &mut Plain)
            .is_ok());
        let st = s.stats();
        pr_info!(
            "set of an isolated page: {} root walks, {} lock round trips\n",
            st.root_walks,
            st.lock_trips
        );
        assert!(st.lock_trips == 2);
        assert!(setup.set(0, usize::MAX, 0, GFP_KERNEL, &mut Plain).is_ok());
        assert!(xa.is_empty());
        Ok(())
    }

    /// Setting a fragmented range as a whole frees its old nodes a bounded
    /// number at a time: the longest hold of the array's lock is printed
    /// (UML timings are rough), and the number of locked sections shows
    /// that the nodes went a few dozen at a time.
    #[test]
    fn attr_lock_hold_case() -> Result {
        let Some(xa) = new_array() else {
            return Err(ENOMEM);
        };
        let s = AttrStore::new(&xa);
        // 1 TiB, of which the first 16 GiB have one page set in every 64:
        // 65536 leaf nodes, one entry each, and the nodes above them.
        let (huge, frag, step) = (1usize << 28, 1usize << 22, 64);
        let mut i = 0;
        while i < frag {
            assert!(s.set(i + 7, i + 8, PV, GFP_KERNEL, &mut Plain).is_ok());
            // 65536 changes: slow under KASAN, so let RCU and others run.
            kernel::task::cond_resched();
            i += step;
        }
        assert!(count(&xa) == frag / step);
        let s = AttrStore::new_timed(&xa);
        let t0 = kernel::time::Ktime::ktime_get();
        assert!(s.set(0, huge, PV, GFP_KERNEL, &mut Plain).is_ok());
        let total = (kernel::time::Ktime::ktime_get() - t0).to_ns();
        let st = s.stats();
        pr_info!(
            "set of a fragmented 1 TiB range ({} leaf nodes): longest locked store {} us, {} lock round trips, {} us in all\n",
            frag / step,
            st.max_store_ns / 1000,
            st.lock_trips,
            total / 1000
        );
        assert!(count(&xa) == 1);
        assert!(st.lock_trips > frag / step / 64);
        // The same for a clear.
        let mut i = 0;
        while i < frag {
            assert!(s.set(i + 7, i + 8, 0, GFP_KERNEL, &mut Plain).is_ok());
            kernel::task::cond_resched();
            i += step;
        }
        let s = AttrStore::new_timed(&xa);
        let t0 = kernel::time::Ktime::ktime_get();
        assert!(s.set(0, huge, 0, GFP_KERNEL, &mut Plain).is_ok());
        let total = (kernel::time::Ktime::ktime_get() - t0).to_ns();
        let st = s.stats();
        pr_info!(
            "clear of the same range: longest locked erase {} us, {} lock round trips, {} us in all\n",
            st.max_store_ns / 1000,
            st.lock_trips,
            total / 1000
        );
        assert!(xa.is_empty());
        // Bounded: the old nodes went a few dozen per locked section, one
        // section for each node of the level above the leaves at least (a
        // timing assertion would be flaky on a busy machine).
        assert!(st.lock_trips > frag / step / 64);
        Ok(())
    }
}
