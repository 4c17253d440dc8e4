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

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Sched;
use super::lock;
use super::p::PStatus;

/// What `GORTDEBUG` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DebugFlags {
    pub(crate) schedtrace: Option<Duration>,
    pub(crate) scheddetail: bool,
    /// `deadlock=0`: no deadlock check (`debug/deadlock.rs`) in any runtime.
    pub(crate) deadlock_off: bool,
    /// `sigquitexit=1`: after the SIGQUIT dump, exit with status 2 as Go does.
    pub(crate) sigquit_exit: bool,
    pub(crate) chaos: Option<u64>,
}

impl DebugFlags {
    /// Parse a `GORTDEBUG` value: comma-separated `key=value`; unknown
    /// keys are ignored (other issues add them), bad values too.
    pub(crate) fn parse(value: &str) -> DebugFlags {
        let mut d = DebugFlags::default();
        for item in value.split(',') {
            let Some((key, val)) = item.split_once('=') else {
                continue;
            };
            match (key.trim(), val.trim().parse::<u64>()) {
                ("schedtrace", Ok(ms)) if ms > 0 => d.schedtrace = Some(Duration::from_millis(ms)),
                ("scheddetail", Ok(n)) => d.scheddetail = n != 0,
                ("deadlock", Ok(n)) => d.deadlock_off = n == 0,
                ("sigquitexit", Ok(n)) => d.sigquit_exit = n != 0,
                ("chaos", Ok(seed)) => d.chaos = Some(seed),
                _ => {}
            }
        }
        d
    }

    /// From the environment.
    pub(crate) fn from_env() -> DebugFlags {
        std::env::var("GORTDEBUG")
            .map(|v| DebugFlags::parse(&v))
            .unwrap_or_default()
    }
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
        assert_eq!(DebugFlags::parse(""), DebugFlags::default());
        let d = DebugFlags::parse("schedtrace=1000,scheddetail=1");
        assert_eq!(d.schedtrace, Some(Duration::from_millis(1000)));
        assert!(d.scheddetail);
        // Unknown keys and bad values are ignored; 0 means off.
        let d = DebugFlags::parse("madeup=7, schedtrace=x,scheddetail=0,chaos=-1");
        assert_eq!(d, DebugFlags::default());
        assert_eq!(DebugFlags::parse("schedtrace=0").schedtrace, None);
        // Every u64 is a chaos seed, 0 included.
        assert_eq!(DebugFlags::parse("schedtrace=5, chaos=42").chaos, Some(42));
        assert_eq!(DebugFlags::parse("chaos=0").chaos, Some(0));
        assert_eq!(DebugFlags::parse("chaos=18446744073709551615").chaos, Some(u64::MAX));
    }
}
