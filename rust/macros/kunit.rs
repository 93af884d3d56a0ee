// SPDX-License-Identifier: GPL-2.0

//! The `#[kunit_tests]` attribute: a KUnit suite written as a module of `#[test]` functions.
//!
//! A backport to 6.12 of the attribute that Linux 6.15 added (with the KUnit-mapped `assert!`
//! and the `-> Result` cases of 6.16).  The suite is registered through
//! `kunit_unsafe_test_suite!` of `rust/kernel/kunit.rs`, which places it in the
//! `.kunit_test_suites` section like the C `kunit_test_suite()`.

use proc_macro::{Delimiter, Group, Span, TokenStream, TokenTree};
use std::fmt::Write;

/// KUnit stores a suite's name in `char name[256]`, NUL-terminated.
const MAX_NAME_LEN: usize = 255;

/// A `#[test]` function found in the module: its name and its `#[cfg]` attributes.
struct Case {
    name: String,
    cfgs: String,
}

/// Returns whether `group` is the attribute `[test]`.
fn is_test_attr(group: &Group) -> bool {
    let mut it = group.stream().into_iter();
    matches!(
        (it.next(), it.next()),
        (Some(TokenTree::Ident(ref i)), None) if i.to_string() == "test"
    )
}

/// Returns whether `group` is a `[cfg(...)]` attribute.
fn is_cfg_attr(group: &Group) -> bool {
    matches!(
        group.stream().into_iter().next(),
        Some(TokenTree::Ident(ref i)) if i.to_string() == "cfg"
    )
}

/// Drops the `#[test]` attributes from the items of `body`, and returns what remains with the
/// test functions they marked.
///
/// The tokens are kept as they are, spans included, so that the compiler and the assertions
/// name the lines of the source file.
fn take_cases(body: TokenStream) -> (Vec<TokenTree>, Vec<Case>) {
    let mut out = Vec::new();
    let mut cases = Vec::new();
    // The attributes seen since the last item ended.
    let mut test = false;
    let mut cfgs = String::new();
    let mut it = body.into_iter().peekable();
    while let Some(token) = it.next() {
        match token {
            TokenTree::Punct(ref p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = it.peek() {
                    if g.delimiter() == Delimiter::Bracket && is_test_attr(g) {
                        test = true;
                        it.next();
                        continue;
                    }
                    if g.delimiter() == Delimiter::Bracket && is_cfg_attr(g) {
                        write!(cfgs, "#{g} ").unwrap();
                    }
                }
                out.push(token);
            }
            TokenTree::Ident(ref i) if i.to_string() == "fn" => {
                out.push(token);
                if let Some(TokenTree::Ident(name)) = it.next() {
                    if test {
                        cases.push(Case {
                            name: name.to_string(),
                            cfgs: std::mem::take(&mut cfgs),
                        });
                    }
                    out.push(TokenTree::Ident(name));
                }
                test = false;
                cfgs.clear();
            }
            // The end of an item: `;` or a body.
            TokenTree::Punct(ref p) if p.as_char() == ';' => {
                out.push(token);
                test = false;
                cfgs.clear();
            }
            TokenTree::Group(ref g) if g.delimiter() == Delimiter::Brace => {
                out.push(token);
                test = false;
                cfgs.clear();
            }
            _ => out.push(token),
        }
    }
    (out, cases)
}

pub(crate) fn kunit_tests(attr: TokenStream, ts: TokenStream) -> TokenStream {
    let suite = attr.to_string();
    let mut attr_it = attr.into_iter();
    if !matches!(
        (attr_it.next(), attr_it.next()),
        (Some(TokenTree::Ident(_)), None)
    ) {
        panic!("`#[kunit_tests(suite_name)]` takes the name of the suite, an identifier");
    }
    if suite.len() > MAX_NAME_LEN {
        panic!("the suite name `{suite}` is longer than {MAX_NAME_LEN} bytes");
    }

    let mut tokens: Vec<TokenTree> = ts.into_iter().collect();
    let is_mod = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "mod"));
    let body = match tokens.pop() {
        Some(TokenTree::Group(g)) if is_mod && g.delimiter() == Delimiter::Brace => g,
        _ => panic!("`#[kunit_tests(suite_name)]` applies to a module with a body, `mod m {{ }}`"),
    };
    let (items, cases) = take_cases(body.stream());

    // Inside the module, `assert!` and `assert_eq!` fail the running KUnit case at the file and
    // line of the assertion instead of panicking.  The line is that of the outermost macro call,
    // the `assert!` in the test; the file is the one holding this attribute.
    let file = Span::call_site()
        .file()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut head = String::new();
    write!(
        head,
        r#"
        /// Fails the running KUnit case, at this place, unless the condition holds.
        #[allow(unused_macros)]
        macro_rules! assert {{
            ($cond:expr $(,)?) => {{{{
                ::kernel::kunit_assert!("{suite}", "{file}", 0, $cond);
            }}}};
        }}

        /// Fails the running KUnit case, at this place, unless both sides are equal.
        #[allow(unused_macros)]
        macro_rules! assert_eq {{
            ($left:expr, $right:expr $(,)?) => {{{{
                ::kernel::kunit_assert_eq!("{suite}", "{file}", 0, $left, $right);
            }}}};
        }}
        "#
    )
    .unwrap();

    // One `extern "C"` case function per test, the table of cases ending with an empty one, and
    // the suite.  A test left out by its `#[cfg]` is reported as skipped.
    let mut tail = String::new();
    let mut table = String::new();
    for Case { name, cfgs } in &cases {
        write!(
            tail,
            r#"
            /// Runs the test `{name}` as a KUnit case.
            ///
            /// # Safety
            ///
            /// `test` is the `struct kunit` that KUnit passes to the case.
            unsafe extern "C" fn __kunit_run_{name}(test: *mut ::kernel::bindings::kunit) {{
                // SAFETY: KUnit passes the valid `struct kunit` of this case, which nothing else
                // changes while the case runs.
                unsafe {{ (*test).status = ::kernel::bindings::kunit_status_KUNIT_SKIPPED }};
                {cfgs} {{
                    // SAFETY: As above.
                    unsafe {{ (*test).status = ::kernel::bindings::kunit_status_KUNIT_SUCCESS }};
                    assert!(::kernel::kunit::is_test_result_ok({name}()));
                }}
            }}
            "#
        )
        .unwrap();
        writeln!(
            table,
            "::kernel::kunit::kunit_case(::kernel::c_str!(\"{name}\"), __kunit_run_{name}),"
        )
        .unwrap();
    }
    write!(
        tail,
        r#"
        static mut __KUNIT_CASES: [::kernel::bindings::kunit_case; {n}] = [
            {table}
            ::kernel::kunit::kunit_case_null(),
        ];

        ::kernel::kunit_unsafe_test_suite!({suite}, __KUNIT_CASES);
        "#,
        n = cases.len() + 1,
    )
    .unwrap();

    let mut new_body: TokenStream = head.parse().unwrap();
    new_body.extend(items);
    new_body.extend(tail.parse::<TokenStream>().unwrap());

    // The suite exists only in kernels with KUnit built in, as `kunit_test_suite()` in C.
    let mut out: TokenStream = "#[cfg(CONFIG_KUNIT = \"y\")]".parse().unwrap();
    out.extend(tokens);
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, new_body))]);
    out
}
