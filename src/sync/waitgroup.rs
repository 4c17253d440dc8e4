//! `WaitGroup`: wait for a collection of goroutines to finish (Go's
//! sync.WaitGroup).
//!
//! The counter and the number of waiters share one atomic word (counter in
//! the high 32 bits, waiters in the low 32), so `done` on the hot path is a
//! single `fetch_sub` and touches the waiter queue only when it brings the
//! counter to zero with waiters present. A waiter registers in `waiters`
//! (the shared `WaitQueue`, see `sema.rs`, behind its internal lock) with a
//! CAS, under that lock, that also checks the counter is still nonzero; the
//! `done` that reaches zero takes the same lock before waking, so it either
//! finds the waiter queued or the waiter's CAS fails and it re-reads a zero
//! counter. A waiter woken before it has parked does not park. No wake-up
//! is lost.
//!
//! Reuse: the counter may go up again once it has reached zero, but only
//! after the waiters of that zero are on their way. Between the `done` that
//! reaches zero and its taking the queue, the word reads "counter zero,
//! waiters present"; an `add` that lands there would let a new `wait` join
//! the queue about to be woken and return while the new counter is not
//! zero. Go calls that misuse and panics ("Add called concurrently with
//! Wait"); so does `add`, which sees exactly that state in the word its
//! `fetch_add` returns.
//!
//! Bounded waits (`wait_timeout`, `wait_ctx`) race a deadline or a context
//! against the `done` that reaches zero for their token (`sched/park.rs`).
//! One that loses withdraws itself under `waiters`' lock: if its entry is
//! still queued, it removes it and takes its count back out of the word;
//! if not, that `done` has already taken the queue and cleared the count.
//! Either way the word's waiter count stays the number of queued entries.
//!
//! `go` and `guard` are Go 1.25's `wg.Go` and the `defer wg.Done()` idiom:
//! an `add(1)` paired with a `done` that runs however the task ends,
//! panicking included, so a panicking task cannot leave `wait` hanging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sema::{WaitQueue, lock};
use crate::context::{CTX_DONE, Context};
use crate::sched::{TIMED_OUT, WaitReason};

const COUNTER_ONE: u64 = 1 << 32;
const WAITERS_MASK: u64 = COUNTER_ONE - 1;

/// Waits for a number of tasks to call [`done`](WaitGroup::done).
///
/// ```
/// use std::sync::Arc;
/// let wg = Arc::new(gort::sync::WaitGroup::new());
/// for _ in 0..10 {
///     wg.add(1);
///     let wg = Arc::clone(&wg);
///     gort::go(move || wg.done());
/// }
/// wg.wait();
/// ```
pub struct WaitGroup {
    state: AtomicU64,
    waiters: Mutex<WaitQueue<()>>,
}

impl WaitGroup {
    /// A WaitGroup with a zero counter; `const`, so it can be a `static`.
    pub const fn new() -> WaitGroup {
        WaitGroup {
            state: AtomicU64::new(0),
            waiters: Mutex::new(WaitQueue::new()),
        }
    }

    /// Add `n` to the counter.
    ///
    /// # Panics
    /// If the counter would exceed `u32::MAX`; if it goes up from zero
    /// while the waiters of that zero are still being woken (the group is
    /// reused before an earlier `wait` has returned: see the module header).
    ///
    /// ```
    /// let wg = gort::sync::WaitGroup::new();
    /// let jobs = vec!["a", "b"];
    /// wg.add(jobs.len());
    /// jobs.iter().for_each(|_| wg.done());
    /// wg.wait();
    /// ```
    pub fn add(&self, n: usize) {
        let Ok(n) = u32::try_from(n) else {
            panic!("WaitGroup counter overflow");
        };
        // Release pairs with the Acquire in `wait`/`done`.
        let old = self.state.fetch_add(u64::from(n) << 32, Ordering::Release);
        assert!(
            (old >> 32) + u64::from(n) <= u64::from(u32::MAX),
            "WaitGroup counter overflow"
        );
        assert!(
            n == 0 || old >> 32 != 0 || old & WAITERS_MASK == 0,
            "WaitGroup misuse: add called concurrently with wait (reused before an earlier wait returned)"
        );
    }

    /// Decrement the counter; at zero, wake every waiter.
    ///
    /// ```
    /// let wg = gort::sync::WaitGroup::new();
    /// wg.add(1);
    /// wg.done();
    /// wg.wait(); // returns at once
    /// ```
    ///
    /// # Panics
    /// If the counter is already zero (Go: "negative WaitGroup counter").
    pub fn done(&self) {
        // AcqRel: Release publishes this task's work to the waiter; Acquire
        // pairs with the waiters' registering CAS.
        let old = self.state.fetch_sub(COUNTER_ONE, Ordering::AcqRel);
        if old >> 32 == 0 {
            self.state.fetch_add(COUNTER_ONE, Ordering::Relaxed);
            panic!("negative WaitGroup counter");
        }
        if old >> 32 == 1 && old & WAITERS_MASK != 0 {
            let woken = {
                let mut waiters = lock(&self.waiters);
                self.state.fetch_and(!WAITERS_MASK, Ordering::Relaxed);
                std::mem::take(&mut *waiters)
            };
            woken.wake_all();
        }
    }

    /// Block until the counter is zero.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let wg = Arc::new(gort::sync::WaitGroup::new());
    /// wg.add(1);
    /// let w = Arc::clone(&wg);
    /// gort::go(move || w.done());
    /// wg.wait();
    /// ```
    #[track_caller]
    pub fn wait(&self) {
        self.wait_until(None, None)
            .expect("an unbounded wait ends only at zero");
    }

    /// Like [`wait`](WaitGroup::wait), giving up after `timeout`: true if
    /// the counter reached zero, false if the time ran out first.
    ///
    /// ```
    /// use std::time::Duration;
    /// let wg = gort::sync::WaitGroup::new();
    /// wg.add(1);
    /// assert!(!wg.wait_timeout(Duration::from_millis(1)));
    /// wg.done();
    /// assert!(wg.wait_timeout(Duration::from_secs(60)));
    /// ```
    #[track_caller]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(crate::sched::timers::deadline_after(timeout), None)
            .is_ok()
    }

    /// Like [`wait`](WaitGroup::wait), giving up when `ctx` is done, with
    /// the reason.
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// let wg = gort::sync::WaitGroup::new();
    /// wg.add(1);
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// cancel.cancel();
    /// assert_eq!(wg.wait_ctx(&ctx), Err(Error::Canceled));
    /// wg.done();
    /// assert_eq!(wg.wait_ctx(&Context::background()), Ok(()));
    /// ```
    #[track_caller]
    pub fn wait_ctx(&self, ctx: &Context) -> Result<(), crate::context::Error> {
        self.wait_until(None, Some(ctx))
            .map_err(|_| ctx.err().expect("a wait ends early only for a done context"))
    }

    /// Wait for zero until `deadline` or `ctx`; `Err` carries the tag that
    /// ended the wait early (`TIMED_OUT` or `CTX_DONE`).
    #[track_caller]
    fn wait_until(&self, deadline: Option<Instant>, ctx: Option<&Context>) -> Result<(), usize> {
        loop {
            // Acquire pairs with `done`'s Release: the tasks' work is visible.
            let s = self.state.load(Ordering::Acquire);
            if s >> 32 == 0 {
                return Ok(());
            }
            let mut waiters = lock(&self.waiters);
            if self
                .state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let token = waiters.push((), false);
                drop(waiters);
                let tag = crate::context::wait(ctx, &token, deadline, WaitReason::WaitGroup);
                if tag != TIMED_OUT && tag != CTX_DONE {
                    return Ok(());
                }
                // Withdraw (module header).
                if lock(&self.waiters).remove(&token) {
                    self.state.fetch_sub(1, Ordering::Relaxed);
                }
                return Err(tag);
            }
        }
    }

    /// Run `f` on a new goroutine, counted: `add(1)` now, `done` when `f`
    /// returns or panics (Go 1.25's `WaitGroup.Go`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let wg = Arc::new(gort::sync::WaitGroup::new());
    /// let hits = Arc::new(AtomicU32::new(0));
    /// for _ in 0..8 {
    ///     let hits = Arc::clone(&hits);
    ///     wg.go(move || {
    ///         hits.fetch_add(1, Ordering::Relaxed);
    ///     });
    /// }
    /// wg.wait();
    /// assert_eq!(hits.load(Ordering::Relaxed), 8);
    /// ```
    #[track_caller]
    pub fn go(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        let guard = self.guard();
        crate::go(move || {
            let _guard = guard;
            f();
        });
    }

    /// `add(1)`, returning a guard that calls `done` when dropped — at the
    /// end of a task, or while a panic unwinds it (Go's `defer wg.Done()`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let wg = Arc::new(gort::sync::WaitGroup::new());
    /// let guard = wg.guard();
    /// let h = gort::go(move || {
    ///     let _guard = guard;
    ///     panic!("the task fails");
    /// });
    /// wg.wait(); // the guard's drop ran during the unwind
    /// assert!(h.join().is_err());
    /// ```
    pub fn guard(self: &Arc<Self>) -> WaitGroupGuard {
        self.add(1);
        WaitGroupGuard { wg: Arc::clone(self) }
    }
}

/// Calls [`WaitGroup::done`] when dropped; made by [`WaitGroup::guard`].
#[must_use = "dropping the guard calls done at once"]
pub struct WaitGroupGuard {
    wg: Arc<WaitGroup>,
}

impl Drop for WaitGroupGuard {
    fn drop(&mut self) {
        self.wg.done();
    }
}

impl std::fmt::Debug for WaitGroupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitGroupGuard").field("wg", &self.wg).finish()
    }
}

impl WaitGroup {
    /// The counter now (for `ErrGroup::set_limit`'s check).
    pub(super) fn count(&self) -> u64 {
        self.state.load(Ordering::Relaxed) >> 32
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl std::fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitGroup").field("counter", &self.count()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{COUNTER_ONE, WaitGroup};
    use std::sync::atomic::Ordering;

    /// The window a reuse can hit is too short to reach from outside, so
    /// the word is put in its state directly: the `done` that brought the
    /// counter to zero has one waiter still to wake.
    #[test]
    fn add_while_the_last_zero_is_being_announced_panics() {
        let wg = WaitGroup::new();
        wg.state.store(1, Ordering::Relaxed);
        let reuse = std::panic::catch_unwind(|| wg.add(1)).expect_err("add must refuse");
        let message = reuse.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("WaitGroup misuse"), "{message}");
    }

    /// Going up from zero with nobody waiting, or while the counter is
    /// nonzero with waiters, is ordinary use.
    #[test]
    fn add_from_zero_without_waiters_and_add_with_waiters_are_fine() {
        let wg = WaitGroup::new();
        wg.add(1);
        wg.state.fetch_add(1, Ordering::Relaxed);
        wg.add(2);
        assert_eq!(wg.state.load(Ordering::Relaxed), 3 * COUNTER_ONE + 1);
    }
}
