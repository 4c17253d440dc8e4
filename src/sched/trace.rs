//! The `GORTDEBUG` flags, and `schedtrace=MS[,scheddetail=1]`: Go's `SCHED` lines
//! (`schedtrace` in proc.go), printed to stderr by sysmon every MS
//! milliseconds.
//!
//! ```text
//! SCHED 1004ms: gomaxprocs=2 idleprocs=1 threads=4 spinningthreads=0 idlethreads=2 runqueue=0 [3 0]
//! ```
//!
//! With `scheddetail=1`, one line per P follows (status, schedtick, the
//! holding M's thread id, local queue length, timers) and one per M
//! (thread id, P, spinning, whether it runs a goroutine). The numbers are
//! read without stopping anything, so they are a snapshot only roughly
//! consistent with each other, as in Go.
//!
//! `GORTDEBUG=chaos=SEED` (any `u64`, 0 included) turns on the chaos
//! scheduler (`chaos.rs`) for every runtime built afterwards that does not
//! set its own with `Builder::chaos`.
//!
//! An item gort cannot use — an unknown key, a value that is not a whole
//! number (`schedtrace=1s`), no `=` at all (`schedtrace:1000`) — is
//! ignored, and named in one warning on stderr, once per process, that
//! lists the forms accepted: a typo must not silently turn a switch off.
//! (`GORT_PROCS` and `GORTTRACE` warn the same way where they are read.)

use std::fmt::Write as _;
use std::sync::Once;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Sched;
use super::lock;
use super::p::PStatus;
pub(crate) use crate::debug::SigquitDump;

/// What `GORTDEBUG` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DebugFlags {
    pub(crate) schedtrace: Option<Duration>,
    pub(crate) scheddetail: bool,
    /// `deadlock=0`: no deadlock check (`debug/deadlock.rs`) in any runtime.
    pub(crate) deadlock_off: bool,
    /// `sigquitexit=1`: after the SIGQUIT dump, exit with status 2 as Go does.
    pub(crate) sigquit_exit: bool,
    /// `sigquit=none|grouped|all|auto`: what the SIGQUIT dump prints.
    pub(crate) sigquit: SigquitDump,
    pub(crate) chaos: Option<u64>,
    /// `http=ADDR`: serve the diagnostics endpoints there (`debug/http`).
    pub(crate) http: Option<std::net::SocketAddr>,
}

/// The items `GORTDEBUG` accepts, for the warning about those it cannot use.
const GORTDEBUG_FORMS: &str = "comma-separated schedtrace=MS (0: off), scheddetail=0|1, deadlock=0|1, \
     sigquit=none|grouped|all|auto, sigquitexit=0|1, chaos=SEED, http=ADDR (a loopback IP:PORT, or a PORT)";

impl DebugFlags {
    /// Parse a `GORTDEBUG` value: comma-separated `key=value`, each value a
    /// whole number. Returns the flags and the items it could not use
    /// (ignored otherwise); empty items are no mistake.
    pub(crate) fn parse(value: &str) -> (DebugFlags, Vec<&str>) {
        let mut d = DebugFlags::default();
        let mut unusable = Vec::new();
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Some(addr) = item.strip_prefix("http=") {
                match http_addr(addr.trim()) {
                    Some(addr) => d.http = Some(addr),
                    None => unusable.push(item),
                }
                continue;
            }
            if let Some(("sigquit", level)) = item.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                match SigquitDump::parse(level) {
                    Some(level) => d.sigquit = level,
                    None => unusable.push(item),
                }
                continue;
            }
            let parsed = item
                .split_once('=')
                .and_then(|(key, val)| Some((key.trim(), val.trim().parse::<u64>().ok()?)));
            match parsed {
                Some(("schedtrace", ms)) => d.schedtrace = (ms > 0).then(|| Duration::from_millis(ms)),
                Some(("scheddetail", n)) => d.scheddetail = n != 0,
                Some(("deadlock", n)) => d.deadlock_off = n == 0,
                Some(("sigquitexit", n)) => d.sigquit_exit = n != 0,
                Some(("chaos", seed)) => d.chaos = Some(seed),
                _ => unusable.push(item),
            }
        }
        (d, unusable)
    }

    /// From the environment, warning once per process about what cannot be
    /// used (module header).
    pub(crate) fn from_env() -> DebugFlags {
        static WARNED: Once = Once::new();
        let Some(value) = std::env::var_os("GORTDEBUG") else {
            return DebugFlags::default();
        };
        let text = value.to_string_lossy();
        let (flags, unusable) = DebugFlags::parse(&text);
        if !unusable.is_empty() {
            WARNED.call_once(|| {
                eprintln!("gort: GORTDEBUG={text:?}: ignoring {unusable:?}; accepted: {GORTDEBUG_FORMS}");
            });
        }
        flags
    }
}

/// `GORTDEBUG`'s `http=` value: `IP:PORT`, `localhost:PORT`, or a bare
/// `PORT` on 127.0.0.1. Whether the address may be bound is the server's
/// call (loopback only).
fn http_addr(value: &str) -> Option<std::net::SocketAddr> {
    let loopback = |port: &str| Some(std::net::SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    if let Some(port) = value.strip_prefix("localhost:") {
        return loopback(port);
    }
    value.parse().ok().or_else(|| loopback(value))
}

impl Sched {
    /// One `SCHED` report, `elapsed` after the runtime started. sysmon only.
    pub(crate) fn schedtrace(&self, elapsed: Duration, detail: bool) -> String {
        let n = self.gomaxprocs();
        let ps: Vec<_> = (0..n).filter_map(|i| self.p(i)).collect();
        let (threads, idle) = {
            let l = lock(&self.lock);
            (self.mcount.load(Ordering::Relaxed), l.midle.len())
        };
        let mut out = format!(
            "SCHED {}ms: gomaxprocs={n} idleprocs={} threads={threads} spinningthreads={} idlethreads={idle} runqueue={} [",
            elapsed.as_millis(),
            self.npidle.load(Ordering::Relaxed),
            self.nmspinning.load(Ordering::Relaxed),
            self.runqsize.load(Ordering::Relaxed),
        );
        let lens: Vec<String> = ps.iter().map(|p| p.runq.len().to_string()).collect();
        out.push_str(&lens.join(" "));
        out.push_str("]\n");
        if detail {
            let allm = lock(&self.allm);
            for p in &ps {
                let holder = p.holder.load(Ordering::Acquire);
                // SAFETY: a non-null holder is a live M while `allm` is held
                // (an M leaves `allm` before it dies, and releases its P first).
                let m = unsafe { holder.as_ref() }.map_or(-1, |m| i64::from(m.tid));
                let status = match p.status() {
                    PStatus::Idle => 0,
                    PStatus::Running => 1,
                    PStatus::Syscall => 2,
                    PStatus::Dead => 4,
                };
                let _ = writeln!(
                    out,
                    "  P{}: status={status} schedtick={} m={m} runqsize={} timerslen={}",
                    p.id,
                    p.tick(),
                    p.runq.len(),
                    lock(&p.timers).len(),
                );
            }
            for mp in allm.iter() {
                let m = mp.get();
                let in_syscall = m.syscall_since.load(Ordering::Relaxed) != 0;
                let _ = writeln!(out, "  M{}: syscall={in_syscall}", m.tid);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gortdebug_values_parse() {
        let flags = |v| DebugFlags::parse(v).0;
        assert_eq!(DebugFlags::parse(""), (DebugFlags::default(), vec![]));
        let d = flags("schedtrace=1000,scheddetail=1");
        assert_eq!(d.schedtrace, Some(Duration::from_millis(1000)));
        assert!(d.scheddetail);
        // 0 means off; empty items are no mistake.
        assert_eq!(DebugFlags::parse("schedtrace=0,,"), (DebugFlags::default(), vec![]));
        // Every u64 is a chaos seed, 0 included.
        assert_eq!(flags("schedtrace=5, chaos=42").chaos, Some(42));
        assert_eq!(flags("chaos=0").chaos, Some(0));
        assert_eq!(flags("chaos=18446744073709551615").chaos, Some(u64::MAX));
        let lo = |port| Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        assert_eq!(flags("http=127.0.0.1:6060").http, lo(6060));
        assert_eq!(flags("http=6060").http, lo(6060));
        assert_eq!(flags("http=localhost:0,chaos=1").http, lo(0));
        assert_eq!(flags("http=[::1]:7").http, "[::1]:7".parse().ok());
        assert_eq!(DebugFlags::parse("http=nowhere").1, ["http=nowhere"]);
        // The SIGQUIT dump's level is a word; auto by default.
        assert_eq!(DebugFlags::default().sigquit, SigquitDump::Auto);
        assert_eq!(flags("sigquit=grouped").sigquit, SigquitDump::Grouped);
        assert_eq!(flags("sigquit=none,sigquitexit=1").sigquit, SigquitDump::None);
        assert_eq!(flags(" sigquit = all ").sigquit, SigquitDump::All);
        assert_eq!(flags("sigquit=all,sigquit=auto").sigquit, SigquitDump::Auto);
    }

    #[test]
    fn gortdebug_items_it_cannot_use_are_named() {
        // Unknown keys, malformed values and items without `=` are ignored
        // and reported; the others still apply.
        let (d, unusable) = DebugFlags::parse(
            "madeup=7, schedtrace=1s,scheddetail=1,schedtrace:1000,chaos=-1,deadlock,sigquit=2,sigquit=single",
        );
        assert_eq!(
            d,
            DebugFlags {
                scheddetail: true,
                ..DebugFlags::default()
            }
        );
        assert_eq!(
            unusable,
            [
                "madeup=7",
                "schedtrace=1s",
                "schedtrace:1000",
                "chaos=-1",
                "deadlock",
                "sigquit=2",
                "sigquit=single"
            ]
        );
    }
}
