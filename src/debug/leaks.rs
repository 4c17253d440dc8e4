//! Leak checks for tests (the goleak idea): after a test's work is done,
//! no goroutine but the caller should be left.
//!
//! `check_leaks(grace)` polls until only the caller is left or `grace` has
//! passed (goroutines that are finishing get that long to end), then
//! reports every goroutine still alive with its dump entry. A `grace` past
//! the end of the clock never passes (the `time` module's rule). It checks one
//! runtime; tests that run in parallel on the default runtime see each
//! other's goroutines, so they should build their own `Runtime` and call
//! `Runtime::check_leaks`.

use std::fmt;
use std::time::{Duration, Instant};

use super::dump::GoroutineInfo;
use crate::sched::{Sched, current_m};

/// How often `check_leaks` looks again while waiting out the grace period.
const POLL: Duration = Duration::from_millis(1);

/// Goroutines still alive after a leak check's grace period.
#[derive(Debug)]
pub struct Leaks {
    /// Each leaked goroutine, with its stack.
    pub goroutines: Vec<GoroutineInfo>,
}

/// The report: a count, then each goroutine's dump entry.
impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "found {} unexpected goroutine(s):\n", self.goroutines.len())?;
        for g in &self.goroutines {
            writeln!(f, "{g}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaks {}

impl Sched {
    pub(crate) fn check_leaks(&self, grace: Duration) -> Result<(), Leaks> {
        let me = current_m()
            .filter(|m| std::ptr::eq(&*m.sched, self))
            .and_then(|m| m.curg.get())
            .map(|g| g.id());
        let deadline = crate::sched::timers::deadline_after(grace);
        loop {
            let others = |with_stacks| -> Vec<GoroutineInfo> {
                let mut all = self.goroutines(with_stacks);
                all.retain(|g| Some(g.id) != me);
                all
            };
            if others(false).is_empty() {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let goroutines = others(true);
                return if goroutines.is_empty() {
                    Ok(())
                } else {
                    Err(Leaks { goroutines })
                };
            }
            if me.is_some() {
                crate::time::sleep(POLL);
            } else {
                std::thread::sleep(POLL);
            }
        }
    }
}
