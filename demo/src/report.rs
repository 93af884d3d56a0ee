//! What happened, the checks derived from it, and the printed report.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::guest::{probe_marker, IO_PAGES};

/// Exits by kind and conversions by cause.
#[derive(Debug, Default)]
pub struct Stats {
    exits: BTreeMap<&'static str, u64>,
    /// Conversions the guest asked for with KVM_HC_MAP_GPA_RANGE.
    pub explicit: u64,
    /// Conversions the VMM made on a KVM_EXIT_MEMORY_FAULT.
    pub implicit: u64,
}

impl Stats {
    pub fn exit(&mut self, kind: &'static str) {
        *self.exits.entry(kind).or_default() += 1;
    }
    pub fn exits(&self, kind: &str) -> u64 {
        self.exits.get(kind).copied().unwrap_or(0)
    }
    pub fn total_exits(&self) -> u64 {
        self.exits.values().sum()
    }
}

/// One probe read: the page, what the VMM's record says, what the guest read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub gpa: u64,
    pub tracked_private: bool,
    pub read: u64,
}

/// What a page is, judged from the guest's sweep write to it: private if the
/// write faulted (a private page without guest_memfd) or did not reach the
/// host's memory (guest_memfd), shared if it did; None for anything else
/// (a fault in the guest_memfd slot, a write both faulting and landing, a
/// write to the plain slot that went nowhere).
pub fn classify(has_gmem: bool, faulted: bool, landed: bool) -> Option<bool> {
    match (has_gmem, faulted, landed) {
        (_, false, true) => Some(false),
        (false, true, false) | (true, false, false) => Some(true),
        _ => None,
    }
}

/// The pages of the sweep, as the kernel treated the guest's accesses
/// (not as the VMM recorded its conversions).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Pages the sweep covers (from the layout).
    pub pages: u64,
    pub private: u64,
    pub shared: u64,
    /// Pages classify() could not place.
    pub odd: Vec<u64>,
    /// Pages the kernel treats otherwise than the VMM's record says.
    pub differ: Vec<u64>,
    /// Private memory faults during the sweep (each resumed past the page).
    pub faults: u64,
    /// What the guest reported at the end: the OR of written ^ read back.
    pub readback: Option<u64>,
    /// The VMM's record over the same pages: (private, shared).
    pub recorded: (u64, u64),
}

/// Everything the run observed, as plain data.
#[derive(Debug, Default)]
pub struct Outcome {
    pub secret_stored: bool,
    pub hc_rets: Vec<u64>,
    /// Per conversion: the host found message i in the shared alias.
    pub messages_seen: Vec<bool>,
    pub readbacks: Vec<u64>,
    /// Private-access memory faults in the I/O window: (gpa, size).
    pub io_faults: Vec<(u64, u64)>,
    pub io_pattern_seen: Option<bool>,
    pub secret_checks: Vec<u64>,
    pub done: bool,
    pub halted: bool,
    pub full_scans: u64,
    pub range_scans: u64,
    /// Where the secret was found in host-visible memory.
    pub leaks: Vec<String>,
    /// MMIO reports the main program makes (before the probe).
    pub main_reports: u64,
    pub probes: Vec<Probe>,
    pub probe_faulted: bool,
    /// The pages of slots 1-2 at the end, swept by the guest.
    pub sweep: Sweep,
}

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    /// A check failed.
    Failed,
    /// It could not run to its checks (an ioctl failed, the guest went astray).
    Error,
    /// The kernel lacks what it needs.
    Skipped,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::Error => "ERROR",
            Status::Skipped => "skipped",
        }
    }
}

/// The exit status of the demo after `runs` (scenario, how it ended), and
/// the closing line when there was more than one: 0 if none failed or
/// errored (a skipped scenario does not fail a run of several), 1 if one
/// did, 4 (kselftest's "skip") if the one scenario asked for was skipped.
pub fn summary(runs: &[(&str, Status)]) -> (u8, Option<String>) {
    let bad = runs
        .iter()
        .any(|(_, s)| matches!(s, Status::Failed | Status::Error));
    let code = match runs {
        _ if bad => 1,
        [(_, Status::Skipped)] => 4,
        _ => 0,
    };
    let line = (runs.len() > 1).then(|| {
        let each: Vec<String> = runs
            .iter()
            .map(|(name, s)| format!("{name} {}", s.word()))
            .collect();
        format!("gmem-demo: {}", each.join(", "))
    });
    (code, line)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub text: String,
}

fn check(ok: bool, text: String) -> Check {
    Check { ok, text }
}

fn all_zero(v: &[u64], want: usize) -> bool {
    v.len() == want && v.iter().all(|&x| x == 0)
}

/// Derives the checks from the outcome of a run with `n` conversions.
pub fn evaluate(o: &Outcome, stats: &Stats, n: u32) -> Vec<Check> {
    let n = n as usize;
    let reports = o.main_reports;
    let seen = o.messages_seen.iter().filter(|&&s| s).count();
    let zeros = o.readbacks.iter().filter(|&&r| r == 0).count();
    let probe_ok = |(k, p): (usize, &Probe)| {
        p.read
            == if p.tracked_private {
                0
            } else {
                probe_marker(k)
            }
    };
    let probes_ok = o.probes.iter().enumerate().filter(|&x| probe_ok(x)).count();
    let probe_shared = o.probes.iter().filter(|p| !p.tracked_private).count();
    let sw = &o.sweep;
    let sweep_reports = u64::from(sw.readback.is_some());
    let faults = IO_PAGES + 1 + sw.faults;
    let mmio = reports + o.probes.len() as u64 + sweep_reports;
    let exits_ok = stats.exits("hypercall") == 2 * n as u64
        && stats.exits("memory_fault") == faults
        && stats.exits("mmio_write") == mmio
        && stats.exits("hlt") == 2
        && stats.total_exits() == 2 * n as u64 + faults + mmio + 2
        && stats.explicit == 2 * n as u64
        && stats.implicit == IO_PAGES;
    let sweep_ok = sw.readback == Some(0)
        && sw.odd.is_empty()
        && sw.differ.is_empty()
        && sw.private + sw.shared == sw.pages
        && sw.shared == IO_PAGES;
    let mut sweep_notes = String::new();
    match sw.readback {
        None => sweep_notes.push_str("; the sweep did NOT finish"),
        Some(0) => {}
        Some(x) => {
            let _ = write!(
                sweep_notes,
                "; a page did NOT read back its write (diff {x:#x})"
            );
        }
    }
    if let Some(gpa) = sw.odd.first() {
        let _ = write!(
            sweep_notes,
            "; {} pages neither private nor shared, first {gpa:#x}",
            sw.odd.len()
        );
    }
    if let Some(gpa) = sw.differ.first() {
        let _ = write!(sweep_notes, ", first {gpa:#x}");
    }
    vec![
        check(
            o.secret_stored,
            "a. guest wrote a 16-byte secret to private (guest_memfd) memory".into(),
        ),
        check(
            all_zero(&o.hc_rets, 2 * n),
            format!(
                "b. MAP_GPA_RANGE hypercalls answered 0 ({}/{})",
                o.hc_rets.iter().filter(|&&r| r == 0).count(),
                2 * n
            ),
        ),
        check(
            o.messages_seen.len() == n && seen == n,
            format!("b. host read each guest message in the shared mapping ({seen}/{n})"),
        ),
        check(
            o.readbacks.len() == n && zeros == n,
            format!("b. re-privatised buffer reads 0 in the guest ({zeros}/{n})"),
        ),
        check(
            o.io_faults.len() as u64 == IO_PAGES,
            format!(
                "c. private access to the I/O window faulted and was converted ({} faults)",
                o.io_faults.len()
            ),
        ),
        check(
            o.io_pattern_seen == Some(true),
            "c. I/O-window pattern visible to the host".into(),
        ),
        check(
            all_zero(&o.secret_checks, 2),
            "d. secret intact in private memory at the end".into(),
        ),
        check(o.done && o.halted, "d. guest ran to hlt".into()),
        check(
            o.leaks.is_empty() && o.full_scans >= 3 && o.range_scans == n as u64,
            format!(
                "secret never in host-visible memory ({} full scans of slots 0-2, {} of shared ranges){}",
                o.full_scans,
                o.range_scans,
                o.leaks.first().map(|l| format!(": found {l}")).unwrap_or_default()
            ),
        ),
        check(
            probes_ok == o.probes.len() && o.probes.len() >= 2 && o.probe_faulted,
            format!(
                "attributes as tracked: {probes_ok}/{} probes read host data if shared ({probe_shared}) or 0 if private, private page w/o guest_memfd {}",
                o.probes.len(),
                if o.probe_faulted { "faulted" } else { "did NOT fault" }
            ),
        ),
        check(
            sweep_ok,
            format!(
                "pages at the end, as the guest's writes found them: {} private, {} shared of {} (expected {IO_PAGES} shared; {} differ from the VMM's record{sweep_notes})",
                sw.private,
                sw.shared,
                sw.pages,
                sw.differ.len()
            ),
        ),
        check(exits_ok, "exit and conversion accounting adds up".into()),
    ]
}

/// The closing line of scenario `name`.
pub fn verdict(name: &str, checks: &[Check]) -> String {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        format!("gmem-demo: {name}: all {} checks passed", checks.len())
    } else {
        format!(
            "gmem-demo: {name}: {failed} of {} checks FAILED",
            checks.len()
        )
    }
}

/// One "  [ok] ..." or "  [FAIL] ..." line per check.
pub fn render_checks(s: &mut String, checks: &[Check]) {
    for c in checks {
        let _ = writeln!(s, "  [{}] {}", if c.ok { "ok" } else { "FAIL" }, c.text);
    }
}

/// "exits: kind n, ... (n in all)"
pub fn render_exits(s: &mut String, stats: &Stats) {
    let exits: Vec<String> = stats
        .exits
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "exits: {} ({} in all)",
        exits.join(", "),
        stats.total_exits()
    );
}

/// The report after the header: checks, counts, time and verdict.
pub fn render(checks: &[Check], stats: &Stats, sweep: &Sweep, wall: Duration) -> String {
    let mut s = String::new();
    render_checks(&mut s, checks);
    let _ = writeln!(
        s,
        "conversions: {} explicit (MAP_GPA_RANGE hypercall), {} implicit (memory fault)",
        stats.explicit, stats.implicit
    );
    render_exits(&mut s, stats);
    let _ = writeln!(
        s,
        "pages swept at the end: {} private, {} shared; the VMM's record of them: {} private, {} shared",
        sweep.private, sweep.shared, sweep.recorded.0, sweep.recorded.1
    );
    let _ = writeln!(s, "wall time: {:.2} s", wall.as_secs_f64());
    s.push_str(&verdict("private", checks));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a perfect run with n conversions and `reports` reports looks like.
    fn good(n: u32, reports: u64) -> (Outcome, Stats) {
        let n64 = u64::from(n);
        let mut st = Stats::default();
        for _ in 0..2 * n {
            st.exit("hypercall");
        }
        for _ in 0..reports + 3 {
            st.exit("mmio_write");
        }
        for _ in 0..IO_PAGES + 1 + 5 {
            st.exit("memory_fault");
        }
        st.exit("hlt");
        st.exit("hlt");
        st.explicit = 2 * n64;
        st.implicit = IO_PAGES;
        let o = Outcome {
            secret_stored: true,
            hc_rets: vec![0; 2 * n as usize],
            messages_seen: vec![true; n as usize],
            readbacks: vec![0; n as usize],
            io_faults: vec![(0x3e0_0000, 4096), (0x3e0_1000, 4096)],
            io_pattern_seen: Some(true),
            secret_checks: vec![0, 0],
            done: true,
            halted: true,
            full_scans: 4,
            range_scans: n64,
            leaks: vec![],
            main_reports: reports,
            probes: vec![
                Probe {
                    gpa: 0x20_0000,
                    tracked_private: true,
                    read: 0,
                },
                Probe {
                    gpa: 0x3e0_0000,
                    tracked_private: false,
                    read: probe_marker(1),
                },
            ],
            probe_faulted: true,
            sweep: Sweep {
                pages: 102,
                private: 100,
                shared: IO_PAGES,
                odd: vec![],
                differ: vec![],
                faults: 5,
                readback: Some(0),
                recorded: (100, IO_PAGES),
            },
        };
        (o, st)
    }

    #[test]
    fn perfect_run_passes() {
        let (o, st) = good(4, 21);
        let c = evaluate(&o, &st, 4);
        assert!(c.iter().all(|c| c.ok), "{c:#?}");
        assert_eq!(
            verdict("private", &c),
            "gmem-demo: private: all 12 checks passed"
        );
        assert_eq!(st.total_exits(), 2 * 4 + 24 + 8 + 2);
    }

    #[test]
    fn failures_are_counted() {
        let (mut o, st) = good(4, 21);
        o.readbacks[2] = 0xdead;
        o.leaks.push("slot 1 + 0x100000".into());
        o.probes[1].read = 0;
        let c = evaluate(&o, &st, 4);
        let failed: Vec<_> = c.iter().filter(|c| !c.ok).map(|c| c.text.clone()).collect();
        assert_eq!(failed.len(), 3, "{failed:#?}");
        assert!(failed[0].contains("(3/4)"));
        assert!(failed[1].contains("found slot 1 + 0x100000"));
        assert_eq!(
            verdict("private", &c),
            "gmem-demo: private: 3 of 12 checks FAILED"
        );
    }

    #[test]
    fn summaries() {
        use Status::*;
        assert_eq!(summary(&[("private", Passed)]), (0, None));
        assert_eq!(summary(&[("shared", Failed)]), (1, None));
        assert_eq!(summary(&[("shared", Error)]), (1, None));
        assert_eq!(summary(&[("shared", Skipped)]), (4, None));
        let both = summary(&[("private", Passed), ("shared", Passed)]);
        assert_eq!(
            both,
            (0, Some("gmem-demo: private passed, shared passed".into()))
        );
        let skip = summary(&[("private", Passed), ("shared", Skipped)]);
        assert_eq!(
            skip,
            (0, Some("gmem-demo: private passed, shared skipped".into()))
        );
        let fail = summary(&[("private", Error), ("shared", Skipped)]);
        assert_eq!(
            fail,
            (1, Some("gmem-demo: private ERROR, shared skipped".into()))
        );
        assert_eq!(summary(&[("private", Passed), ("shared", Failed)]).0, 1);
    }

    #[test]
    fn classify_pages() {
        // guest_memfd slot: the write reached the host (shared) or not (private).
        assert_eq!(classify(true, false, true), Some(false));
        assert_eq!(classify(true, false, false), Some(true));
        assert_eq!(classify(true, true, false), None);
        // plain slot: the write faulted (private) or reached the host (shared).
        assert_eq!(classify(false, true, false), Some(true));
        assert_eq!(classify(false, false, true), Some(false));
        assert_eq!(classify(false, false, false), None);
        assert_eq!(classify(false, true, true), None);
    }

    /// The pages check is the kernel's view: a conversion the kernel lost
    /// fails it although the VMM's record (and so its count) is right.
    #[test]
    fn lost_conversion_fails_the_page_check() {
        let (mut o, st) = good(4, 21);
        o.sweep.private -= 2;
        o.sweep.shared += 2;
        o.sweep.differ = vec![0x30_0000, 0x30_1000];
        let c = evaluate(&o, &st, 4);
        let failed: Vec<_> = c.iter().filter(|c| !c.ok).map(|c| c.text.clone()).collect();
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(
            failed[0].contains("98 private, 4 shared of 102 (expected 2 shared; 2 differ from the VMM's record, first 0x300000)"),
            "{failed:#?}"
        );
        // An unfinished sweep, or a page neither private nor shared, fails it too.
        for f in [
            |s: &mut Sweep| s.readback = None,
            |s: &mut Sweep| s.readback = Some(1),
            |s: &mut Sweep| s.odd.push(0x3e0_2000),
            |s: &mut Sweep| s.private -= 1,
        ] {
            let (mut o, st) = good(4, 21);
            f(&mut o.sweep);
            let c = evaluate(&o, &st, 4);
            assert_eq!(
                c.iter().filter(|c| !c.ok).count(),
                1 + usize::from(o.sweep.readback.is_none())
            );
        }
    }

    #[test]
    fn exit_accounting() {
        let (o, mut st) = good(2, 13);
        st.exit("hypercall");
        let c = evaluate(&o, &st, 2);
        assert_eq!(c.iter().filter(|c| !c.ok).count(), 1);
        assert!(!c.last().unwrap().ok);
        let text = render(&c, &st, &o.sweep, Duration::from_millis(1500));
        assert!(
            text.contains("exits: hlt 2, hypercall 5, memory_fault 8, mmio_write 16 (31 in all)")
        );
        assert!(text.contains(
            "pages swept at the end: 100 private, 2 shared; the VMM's record of them: 100 private, 2 shared"
        ));
        assert!(text.contains("wall time: 1.50 s"));
        assert!(text.ends_with("gmem-demo: private: 1 of 12 checks FAILED"));
    }
}
