//! Time (Go's package time, runtime/time.go): goroutine-aware sleeping,
//! channel timers (`timer.rs`), functions run after a delay
//! (`after_func.rs`), and `sleep_ctx`, a sleep a `context` can cut short.
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

use crate::context::{CTX_DONE, Context};
use crate::sched::timers::deadline_after;
use crate::sched::{WaitReason, WaitToken, current_m};

mod after_func;
mod timer;

pub use after_func::{AfterFunc, after_func};
pub(crate) use after_func::{after_func_at, go_on};
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

/// Pause for at least `d`, or until `ctx` is done, whichever comes
/// first: `Ok` after the full sleep, else why the context is done (the
/// shape of Go's `select { case <-time.After(d): case <-ctx.Done(): }`,
/// without the channel). A context done already returns at once. Works
/// from a plain thread too.
///
/// ```
/// use gort::context::{Context, Error};
/// use std::time::Duration;
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(2));
/// assert_eq!(gort::time::sleep_ctx(&ctx, Duration::from_secs(3600)), Err(Error::DeadlineExceeded));
/// assert_eq!(gort::time::sleep_ctx(&Context::background(), Duration::from_millis(1)), Ok(()));
/// ```
#[track_caller]
pub fn sleep_ctx(ctx: &Context, d: Duration) -> Result<(), crate::context::Error> {
    if let Some(e) = ctx.err() {
        return Err(e);
    }
    if d.is_zero() {
        return Ok(());
    }
    crate::sched::safe_point();
    let token = WaitToken::lend();
    match crate::context::wait(Some(ctx), &token, deadline_after(d), WaitReason::Sleep) {
        CTX_DONE => Err(ctx.err().expect("woken by its context, which is done")),
        _ => Ok(()),
    }
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
