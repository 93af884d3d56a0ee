//! Command-line parsing, by hand.

pub const USAGE: &str = "\
usage: gmem-demo [--scenario private|shared|all] [--mem SIZE] [--conversions N] [-h]

private: runs a tiny guest in a KVM_X86_SW_PROTECTED_VM whose RAM is
guest_memfd-backed private memory, converts a buffer between private and
shared with the KVM_HC_MAP_GPA_RANGE hypercall, and checks what the host can
and cannot see.
shared: runs a tiny guest in a DEFAULT VM whose whole RAM is one guest_memfd
created with MMAP | INIT_SHARED and mapped by the VMM, as QEMU 11 does, and
checks that guest and host see each other's writes and a punched hole.

  --scenario S       private, shared or all (both, in that order; default all)
  --mem SIZE         guest memory, a multiple of 2M from 8M to 3G (K/M/G suffix; default 64M)
  --conversions N    private: shared/private round trips of the buffer, 0 to 4096 (default 4)
  -h, --help         show this help

Exit status: 0 if every check passed, 1 if one failed, 2 for bad arguments,
4 if the one scenario asked for was skipped (shared on a kernel without
mmap-able guest_memfd); with --scenario all a skipped scenario counts as
neither passed nor failed.";

const MIB: u64 = 1 << 20;
pub const DEFAULT_MEM: u64 = 64 * MIB;
pub const MIN_MEM: u64 = 8 * MIB;
/// Below the MMIO report address (0xd000_0000) in the 4 GiB identity map.
pub const MAX_MEM: u64 = 3 << 30;
pub const MAX_CONVERSIONS: u32 = 4096;

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A KVM_X86_SW_PROTECTED_VM with private memory.
    Private,
    /// A DEFAULT VM whose RAM is one mmap-able guest_memfd.
    Shared,
    /// Private, then shared.
    All,
}

impl Scenario {
    pub fn private(self) -> bool {
        self != Scenario::Shared
    }
    pub fn shared(self) -> bool {
        self != Scenario::Private
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub scenario: Scenario,
    pub mem: u64,
    pub conversions: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scenario: Scenario::All,
            mem: DEFAULT_MEM,
            conversions: 4,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses "64M", "1G", "8192K" or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{s}' (examples: 64M, 1G)");
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut opts = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--mem" => opts.mem = parse_size(&value("--mem")?)?,
            "--scenario" => {
                opts.scenario = match value("--scenario")?.as_str() {
                    "private" => Scenario::Private,
                    "shared" => Scenario::Shared,
                    "all" => Scenario::All,
                    v => {
                        return Err(format!(
                            "--scenario must be private, shared or all, not '{v}'"
                        ))
                    }
                }
            }
            "--conversions" => {
                let v = value("--conversions")?;
                opts.conversions = v
                    .parse()
                    .map_err(|_| format!("invalid number of conversions '{v}'"))?;
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    if !(MIN_MEM..=MAX_MEM).contains(&opts.mem) || opts.mem % (2 * MIB) != 0 {
        return Err(format!(
            "--mem must be a multiple of 2M between 8M and 3G, not {} bytes",
            opts.mem
        ));
    }
    if opts.conversions > MAX_CONVERSIONS {
        return Err(format!("--conversions must be at most {MAX_CONVERSIONS}"));
    }
    Ok(Command::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8192K"), Ok(8 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12T").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999999999G").is_err());
    }

    #[test]
    fn defaults_and_options() {
        assert_eq!(run(&[]), Ok(Command::Run(Options::default())));
        assert_eq!(
            run(&["--mem", "256M", "--conversions", "32"]),
            Ok(Command::Run(Options {
                mem: 256 << 20,
                conversions: 32,
                ..Options::default()
            }))
        );
        assert_eq!(
            run(&["--mem=8M", "--conversions=0"]),
            Ok(Command::Run(Options {
                scenario: Scenario::All,
                mem: 8 << 20,
                conversions: 0
            }))
        );
        for (arg, want) in [
            ("private", Scenario::Private),
            ("shared", Scenario::Shared),
            ("all", Scenario::All),
        ] {
            let Ok(Command::Run(o)) = run(&["--scenario", arg, "--mem=16M"]) else {
                panic!("--scenario {arg}");
            };
            assert_eq!((o.scenario, o.mem, o.conversions), (want, 16 << 20, 4));
            let Ok(Command::Run(o)) = run(&[&format!("--scenario={arg}")]) else {
                panic!("--scenario={arg}");
            };
            assert_eq!(o.scenario, want);
        }
        assert!(Scenario::All.private() && Scenario::All.shared());
        assert!(Scenario::Private.private() && !Scenario::Private.shared());
        assert!(!Scenario::Shared.private() && Scenario::Shared.shared());
        assert_eq!(run(&["--mem", "64M", "-h"]), Ok(Command::Help));
        assert_eq!(run(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(run(&["--mem"]).is_err());
        assert!(run(&["--mem", "4M"]).is_err());
        assert!(run(&["--mem", "4G"]).is_err());
        assert!(run(&["--mem", "9M"]).is_err());
        assert!(run(&["--conversions", "x"]).is_err());
        assert!(run(&["--conversions", "5000"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--scenario"]).is_err());
        assert!(run(&["--scenario", "both"]).is_err());
        assert!(run(&["--scenario", "Private"]).is_err());
        assert!(run(&["extra"]).is_err());
    }
}
