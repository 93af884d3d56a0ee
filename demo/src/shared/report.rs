//! What the shared scenario observed and the checks derived from it.

use crate::layout::PAGE;
use crate::report::{Check, Stats};
use crate::shared::guest::{Code, DATA_PAGES, RESULT_PAGES};

/// Everything the run observed, as plain data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reports, in the order they arrived.
    pub reports: Vec<Code>,
    /// Guest: OR of (read ^ host pattern) over the data pages.
    pub data: Option<u64>,
    /// Host: (words of the guest's pattern it read back, words the guest
    /// said it wrote).
    pub results: Option<(u64, u64)>,
    /// Guest: OR of the page nobody wrote; host: it read all zeros there.
    pub untouched_guest: Option<u64>,
    pub untouched_host_zero: Option<bool>,
    /// Host: the page to punch held its data just before the punch.
    pub hole_before: Option<bool>,
    pub punched: bool,
    /// Guest: OR of the punched page; host: it read all zeros there.
    pub hole_guest: Option<u64>,
    pub hole_host_zero: Option<bool>,
    /// Host: the pages either side of the hole still hold its data.
    pub neighbours_host: Option<bool>,
    /// Guest: OR of (read ^ refill pattern) over the rewritten page.
    pub refill: Option<u64>,
    /// Guest: OR of (read ^ host pattern) over the data pages but the hole.
    pub neighbours_guest: Option<u64>,
    pub halted: bool,
}

fn check(ok: bool, text: String) -> Check {
    Check { ok, text }
}

/// Derives the checks from the outcome of a run of `program_reports`.
pub fn evaluate(o: &Outcome, stats: &Stats, program_reports: &[Code]) -> Vec<Check> {
    let words = RESULT_PAGES * PAGE / 8;
    let (read, wrote) = o.results.unwrap_or((0, 0));
    let mmio = program_reports.len() as u64;
    let exits_ok = stats.exits("mmio_write") == mmio
        && stats.exits("hlt") == 1
        && stats.total_exits() == mmio + 1;
    vec![
        check(
            o.reports.first() == Some(&Code::Start),
            "a. guest ran the page tables, GDT and code the VMM wrote through the mapping".into(),
        ),
        check(
            o.data == Some(0),
            format!("a. guest read the VMM's data ({DATA_PAGES} pages) from guest_memfd"),
        ),
        check(
            read == words && wrote == words,
            format!("b. host read the guest's results through the mapping ({read}/{words} words)"),
        ),
        check(
            o.untouched_guest == Some(0) && o.untouched_host_zero == Some(true),
            "b. memory nobody wrote reads 0 in the guest and through the mapping".into(),
        ),
        check(
            o.hole_before == Some(true) && o.punched && o.hole_guest == Some(0),
            "c. the page punched while the guest waited reads 0 in the guest".into(),
        ),
        check(
            o.hole_host_zero == Some(true)
                && o.neighbours_host == Some(true)
                && o.neighbours_guest == Some(0),
            "c. and 0 through the host mapping; the pages around it kept their data".into(),
        ),
        check(
            o.refill == Some(0),
            "c. host wrote the punched page again and the guest read it".into(),
        ),
        check(
            o.halted && o.reports == program_reports,
            format!(
                "d. guest ran to hlt ({} of {} reports, in order)",
                o.reports.len(),
                program_reports.len()
            ),
        ),
        check(exits_ok, "exit accounting adds up".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::verdict;
    use crate::shared::guest::build;

    fn good() -> (Outcome, Stats, Vec<Code>) {
        let reports = build(64 << 20).unwrap().reports;
        let mut st = Stats::default();
        for _ in &reports {
            st.exit("mmio_write");
        }
        st.exit("hlt");
        let words = RESULT_PAGES * PAGE / 8;
        let o = Outcome {
            reports: reports.clone(),
            data: Some(0),
            results: Some((words, words)),
            untouched_guest: Some(0),
            untouched_host_zero: Some(true),
            hole_before: Some(true),
            punched: true,
            hole_guest: Some(0),
            hole_host_zero: Some(true),
            neighbours_host: Some(true),
            refill: Some(0),
            neighbours_guest: Some(0),
            halted: true,
        };
        (o, st, reports)
    }

    #[test]
    fn perfect_run_passes() {
        let (o, st, r) = good();
        let c = evaluate(&o, &st, &r);
        assert!(c.iter().all(|c| c.ok), "{c:#?}");
        assert_eq!(
            verdict("shared", &c),
            "gmem-demo: shared: all 9 checks passed"
        );
        assert!(c[2].text.ends_with("(8192/8192 words)"));
    }

    /// Each way the kernel can get it wrong fails exactly its check.
    #[test]
    fn each_failure_fails_one_check() {
        type Mutation = fn(&mut Outcome);
        let cases: [(Mutation, usize); 9] = [
            (|o| o.data = Some(1), 1),
            (|o| o.results = Some((8191, 8192)), 2),
            (|o| o.untouched_host_zero = Some(false), 3),
            (|o| o.hole_guest = Some(0x686f), 4),
            (|o| o.punched = false, 4),
            (|o| o.hole_host_zero = Some(false), 5),
            (|o| o.neighbours_guest = None, 5),
            (|o| o.refill = Some(4), 6),
            (|o| o.halted = false, 7),
        ];
        for (f, want) in cases {
            let (mut o, st, r) = good();
            f(&mut o);
            let c = evaluate(&o, &st, &r);
            let failed: Vec<usize> = (0..c.len()).filter(|&i| !c[i].ok).collect();
            assert_eq!(failed, [want], "{c:#?}");
        }
        // A guest that never started fails the first and the last but one.
        let (mut o, st, r) = good();
        o.reports.clear();
        let c = evaluate(&o, &st, &r);
        assert_eq!(c.iter().filter(|c| !c.ok).count(), 2);
        assert!(!c[0].ok && !c[7].ok);
        // An extra exit fails the accounting.
        let (o, mut st, r) = good();
        st.exit("mmio_write");
        let c = evaluate(&o, &st, &r);
        assert_eq!(
            verdict("shared", &c),
            "gmem-demo: shared: 1 of 9 checks FAILED"
        );
        assert!(!c[8].ok);
    }
}
