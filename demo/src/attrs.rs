//! The VMM's own record of which guest pages are private.
//!
//! KVM has no "get memory attributes" ioctl, so the VMM tracks every change
//! it makes and cross-checks the record against what the guest observes.

use crate::layout::PAGE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    base: u64,
    private: Vec<bool>,
}

impl Attrs {
    /// Tracks [base, base+len), all pages private or all shared.
    pub fn new(base: u64, len: u64, private: bool) -> Self {
        Attrs {
            base,
            private: vec![private; (len / PAGE) as usize],
        }
    }

    fn pages(&self, gpa: u64, len: u64) -> Option<std::ops::Range<usize>> {
        if !gpa.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) || gpa < self.base {
            return None;
        }
        let first = ((gpa - self.base) / PAGE) as usize;
        let end = first.checked_add((len / PAGE) as usize)?;
        (end <= self.private.len()).then_some(first..end)
    }

    /// Records a change; false (and no change) if the range is not tracked.
    pub fn set(&mut self, gpa: u64, len: u64, private: bool) -> bool {
        match self.pages(gpa, len) {
            Some(r) => {
                self.private[r].fill(private);
                true
            }
            None => false,
        }
    }

    pub fn is_private(&self, gpa: u64) -> Option<bool> {
        let r = self.pages(gpa & !(PAGE - 1), PAGE)?;
        Some(self.private[r.start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (private pages, shared pages)
    fn count(a: &Attrs) -> (u64, u64) {
        let p = a.private.iter().filter(|&&p| p).count() as u64;
        (p, a.private.len() as u64 - p)
    }

    #[test]
    fn track_changes() {
        let mut a = Attrs::new(0x20_0000, 16 * PAGE, true);
        assert_eq!(count(&a), (16, 0));
        assert!(a.set(0x20_0000 + 2 * PAGE, 3 * PAGE, false));
        assert_eq!(count(&a), (13, 3));
        assert_eq!(a.is_private(0x20_0000 + 2 * PAGE + 5), Some(false));
        assert_eq!(a.is_private(0x20_0000 + 5 * PAGE), Some(true));
        assert!(a.set(0x20_0000 + 3 * PAGE, PAGE, true));
        assert_eq!(count(&a), (14, 2));
    }

    #[test]
    fn rejects_untracked_ranges() {
        let mut a = Attrs::new(0x20_0000, 16 * PAGE, true);
        assert!(!a.set(0x1f_f000, PAGE, false));
        assert!(!a.set(0x20_0000 + 15 * PAGE, 2 * PAGE, false));
        assert!(!a.set(0x20_0001, PAGE, false));
        assert!(!a.set(0x20_0000, 100, false));
        assert!(!a.set(!(PAGE - 1), PAGE, false));
        assert_eq!(count(&a), (16, 0));
        assert_eq!(a.is_private(0x20_0000 + 16 * PAGE), None);
    }
}
