// SPDX-License-Identifier: GPL-2.0

//! Check counting for the Rust KUnit tests of this directory, which 6.12
//! registers from C (`*_kunit.c`): each test returns its number of failed
//! checks, and each failure is logged with its file and line.  Included by
//! the test crates with `#[macro_use] #[path = "kunit_check.rs"] mod`.

use kernel::prelude::*;

/// Counts and logs failed checks; stops logging after ten.
pub(crate) struct Checker {
    name: &'static str,
    failed: i32,
}

impl Checker {
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, failed: 0 }
    }

    /// Records the check at `file:line`; returns `ok`.
    pub(crate) fn check(&mut self, file: &str, line: u32, ok: bool) -> bool {
        if !ok {
            if self.failed < 10 {
                pr_err!("{}: check at {}:{} failed\n", self.name, file, line);
            }
            self.failed += 1;
        }
        ok
    }

    /// The number of failed checks.
    pub(crate) fn done(self) -> i32 {
        self.failed
    }
}

/// `check!(checker, condition)`: records a check with its place.
macro_rules! check {
    ($c:expr, $cond:expr) => {
        $c.check(file!(), line!(), $cond)
    };
}
