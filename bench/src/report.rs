//! The output protocol of the peers suite: `# ` info lines, one final
//! result line, self-check failures on stderr with exit status 1.

use std::fmt::Display;
use std::io::Write;

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Print the result line and exit 0 without tearing the runtime down
/// (it may still own parked goroutines).
pub fn emit(name: &str, value: f64, unit: &str) -> ! {
    finish(&format!("{name} {} {unit}", fmt_value(value)))
}

/// Print `<name> n/a <reason>` and exit 0.
pub fn not_available(name: &str, reason: &str) -> ! {
    finish(&format!("{name} n/a {reason}"))
}

fn finish(line: &str) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    std::process::exit(0)
}

pub fn info(name: &str, msg: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "# {name} {msg}");
    let _ = out.flush();
}

pub fn check(name: &str, ok: bool, msg: impl FnOnce() -> String) {
    if !ok {
        eprintln!("{name}: FAILED: {}", msg());
        std::process::exit(1);
    }
}

/// A `kB` field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident set size (VmHWM) of this process.
pub fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// Resident set size (VmRSS) of this process.
pub fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}
