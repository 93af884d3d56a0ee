// SPDX-License-Identifier: GPL-2.0

//! Reports of kernel bugs that the kernel survives.
//!
//! C header: [`include/asm-generic/bug.h`](srctree/include/asm-generic/bug.h)

/// Reports a kernel bug, as C's `WARN_ON()` does, if `cond` holds; evaluates to `cond`.
///
/// The report is a `WARNING:` line with the registers and a backtrace in the kernel log (the
/// backtrace names the Rust caller), and it taints the kernel with `TAINT_WARN`; test harnesses
/// and `panic_on_warn` treat it as a failure. Use it for states that the code rules out, where
/// C would use `WARN_ON()` or `WARN_ON_ONCE()`, never for conditions that userspace can cause.
///
/// # Examples
///
/// ```
/// use kernel::warn_on;
///
/// fn next_index(index: usize) -> Option<usize> {
///     let next = index.wrapping_add(1);
///     // The caller never passes the last index.
///     if warn_on!(next == 0) {
///         return None;
///     }
///     Some(next)
/// }
///
/// assert_eq!(next_index(41), Some(42));
/// assert!(!warn_on!(false));
/// ```
#[macro_export]
macro_rules! warn_on {
    ($cond:expr $(,)?) => {{
        let cond: bool = $cond;
        if cond {
            // SAFETY: `WARN_ON` only prints a report and taints the kernel; it may be called in
            // any context.
            unsafe { $crate::bindings::WARN_ON(true) };
        }
        cond
    }};
}
