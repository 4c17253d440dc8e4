//! Time (Go's package time, runtime/time.go): goroutine-aware sleeping, and
//! channel timers (`timer.rs`).
//!
//! `sleep` parks the calling goroutine on a `WaitToken` whose only waker is
//! a timer in its P's heap (`sched/timers.rs`); the thread runs other
//! goroutines meanwhile, and an idle runtime sleeps exactly until the next
//! deadline. A sleep never ends early: timers fire at or after their
//! deadline. From a plain OS thread, `sleep` is `std::thread::sleep`.
//!
//! Durations follow Go, here and in every API of the crate that takes a
//! timeout: zero (or a deadline in the past) expires at once, never hangs;
//! one whose deadline is past the end of the clock (`Instant::now() + d`
//! overflows, or lies beyond the timer clock's 584 years:
//! `Duration::MAX`) never expires, and arms no timer; nothing overflows or
//! panics. One rule, `sched::timers::deadline_after`, decides which.

use std::time::{Duration, Instant};

use crate::sched::timers::deadline_after;
use crate::sched::{WaitReason, WaitToken, current_m};

mod timer;

pub use timer::{Ticker, Timer, after, tick};

/// Pause the calling goroutine for at least `d` (Go's `time.Sleep`).
///
/// ```
/// let t = std::time::Instant::now();
/// gort::go(|| gort::time::sleep(std::time::Duration::from_millis(5))).join().unwrap();
/// assert!(t.elapsed() >= std::time::Duration::from_millis(5));
/// ```
#[track_caller]
pub fn sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    crate::sched::safe_point();
    match deadline_after(d) {
        Some(deadline) => sleep_from_now_until(deadline),
        None => park_forever(),
    }
}

/// Pause the calling goroutine until `deadline` (at least).
#[track_caller]
pub fn sleep_until(deadline: Instant) {
    crate::sched::safe_point();
    if Instant::now() >= deadline {
        return;
    }
    sleep_from_now_until(deadline);
}

/// Sleep until `deadline`, which the caller has just seen is in the
/// future: a goroutine's sleep reads the clock once.
#[track_caller]
fn sleep_from_now_until(deadline: Instant) {
    if !in_goroutine() {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        return;
    }
    WaitToken::lend().wait(Some(deadline), WaitReason::Sleep);
}

fn in_goroutine() -> bool {
    current_m().is_some_and(|m| m.curg.get().is_some())
}

/// A sleep longer than the clock can represent.
#[track_caller]
fn park_forever() {
    if in_goroutine() {
        WaitToken::lend().wait(None, WaitReason::Sleep);
    } else {
        loop {
            std::thread::park();
        }
    }
}
