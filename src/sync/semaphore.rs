//! `Semaphore`: a weighted semaphore (golang.org/x/sync/semaphore, the same
//! algorithm, with `Acquire`'s context replaced by parking).
//!
//! State, all under the internal lock `state`: `cur`, the units held, and
//! `waiters`, the parked requests with their weights, in arrival order.
//! `capacity` is fixed.
//!
//! Invariants: `cur <= capacity`; a request is granted only when it fits
//! *and* nobody is queued ahead of it, so service is strictly FIFO — a large
//! request at the head blocks smaller ones behind it, which therefore
//! cannot starve it. `release` grants head requests, adding their weight to
//! `cur` on the waiters' behalf under the lock, then wakes each one after
//! dropping the lock: a woken waiter already holds its units.
//!
//! A bounded acquire (`acquire_timeout`, `acquire_ctx`) races its deadline
//! or context against `release` for its token. So `release` claims a
//! waiter's token under the lock before it counts the units as the
//! waiter's: a waiter whose deadline won is skipped, and withdraws itself
//! afterwards, then grants on behalf of those behind it (it may have been
//! the head that blocked them: x/sync's `notifyWaiters` on cancellation).
//! The tag tells a waiter which side won, so a grant is never lost nor
//! doubled.
//!
//! Bad input panics, as x/sync does or would: acquiring more than the
//! capacity (x/sync would block forever), releasing more than is held.

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::sema::{WaitQueue, lock};
use crate::context::{CTX_DONE, Context};
use crate::sched::{LockGuard, TIMED_OUT, WaitReason};

/// A semaphore of `capacity` units that goroutines acquire and release in
/// any amounts; waiters are served in FIFO order.
///
/// ```
/// use std::sync::Arc;
/// use gort::sync::Semaphore;
///
/// // At most 2 of the 6 jobs run at once.
/// let sem = Arc::new(Semaphore::new(2));
/// let handles: Vec<_> = (0..6)
///     .map(|i| {
///         let sem = Arc::clone(&sem);
///         gort::go(move || {
///             sem.acquire(1);
///             let r = i * 2;
///             sem.release(1);
///             r
///         })
///     })
///     .collect();
/// let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 30);
/// ```
pub struct Semaphore {
    capacity: usize,
    state: StdMutex<State>,
}

struct State {
    /// Units held.
    cur: usize,
    /// Parked requests and their weights, oldest first.
    waiters: WaitQueue<usize>,
}

impl Semaphore {
    /// A semaphore with `capacity` units, all free; `const`, so it can be a
    /// `static`.
    ///
    /// ```
    /// static CONNECTIONS: gort::sync::Semaphore = gort::sync::Semaphore::new(64);
    /// assert!(CONNECTIONS.try_acquire(64));
    /// CONNECTIONS.release(64);
    /// ```
    pub const fn new(capacity: usize) -> Semaphore {
        Semaphore {
            capacity,
            state: StdMutex::new(State {
                cur: 0,
                waiters: WaitQueue::new(),
            }),
        }
    }

    /// Acquire `n` units, parking until they are free and every earlier
    /// waiter has been served.
    ///
    /// # Panics
    /// If `n` exceeds the capacity: "semaphore: acquire more than capacity".
    ///
    /// ```
    /// let sem = gort::sync::Semaphore::new(10);
    /// sem.acquire(7);
    /// assert!(!sem.try_acquire(4));
    /// sem.release(7);
    /// ```
    #[track_caller]
    pub fn acquire(&self, n: usize) {
        self.acquire_until(n, None, None)
            .expect("an unbounded acquire ends only when granted");
    }

    /// Like [`acquire`](Semaphore::acquire), giving up after `timeout`:
    /// true if the units were acquired, false if the time ran out first
    /// (nothing is held then).
    ///
    /// # Panics
    /// As `acquire`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = gort::sync::Semaphore::new(1);
    /// assert!(sem.acquire_timeout(1, Duration::from_secs(60)));
    /// assert!(!sem.acquire_timeout(1, Duration::from_millis(1)));
    /// ```
    #[track_caller]
    pub fn acquire_timeout(&self, n: usize, timeout: Duration) -> bool {
        self.acquire_until(n, crate::sched::timers::deadline_after(timeout), None)
            .is_ok()
    }

    /// Like [`acquire`](Semaphore::acquire), giving up when `ctx` is done,
    /// with the reason (x/sync's `Acquire(ctx, n)`); nothing is held then.
    ///
    /// # Panics
    /// As `acquire`.
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// use std::time::Duration;
    /// let sem = gort::sync::Semaphore::new(2);
    /// sem.acquire(2);
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(1));
    /// assert_eq!(sem.acquire_ctx(&ctx, 1), Err(Error::DeadlineExceeded));
    /// sem.release(2);
    /// assert_eq!(sem.acquire_ctx(&Context::background(), 2), Ok(()));
    /// ```
    #[track_caller]
    pub fn acquire_ctx(&self, ctx: &Context, n: usize) -> Result<(), crate::context::Error> {
        self.acquire_until(n, None, Some(ctx))
            .map_err(|_| ctx.err().expect("an acquire ends early only for a done context"))
    }

    /// Acquire until `deadline` or `ctx`; `Err` carries the tag that ended
    /// the wait early (`TIMED_OUT` or `CTX_DONE`).
    #[track_caller]
    fn acquire_until(&self, n: usize, deadline: Option<Instant>, ctx: Option<&Context>) -> Result<(), usize> {
        let mut s = lock(&self.state);
        if self.capacity - s.cur >= n && s.waiters.is_empty() {
            s.cur += n;
            return Ok(());
        }
        if n > self.capacity {
            drop(s);
            panic!("semaphore: acquire more than capacity");
        }
        let token = s.waiters.push(n, false);
        drop(s);
        // `release` adds `n` to `cur` for us before it wakes us.
        let tag = crate::context::wait(ctx, &token, deadline, WaitReason::Semaphore);
        if tag != TIMED_OUT && tag != CTX_DONE {
            return Ok(());
        }
        let mut s = lock(&self.state);
        s.waiters.remove(&token);
        self.grant(s);
        Err(tag)
    }

    /// Acquire `n` units if they are free and nobody waits; never parks.
    ///
    /// ```
    /// let sem = gort::sync::Semaphore::new(1);
    /// assert!(sem.try_acquire(1));
    /// assert!(!sem.try_acquire(1));
    /// ```
    pub fn try_acquire(&self, n: usize) -> bool {
        let mut s = lock(&self.state);
        let ok = self.capacity - s.cur >= n && s.waiters.is_empty();
        if ok {
            s.cur += n;
        }
        ok
    }

    /// Release `n` units, then grant waiting requests in FIFO order while
    /// the head one fits.
    ///
    /// # Panics
    /// If fewer than `n` units are held: "semaphore: released more than
    /// held".
    ///
    /// ```
    /// let sem = gort::sync::Semaphore::new(3);
    /// sem.acquire(3);
    /// sem.release(2);
    /// sem.release(1);
    /// assert!(sem.try_acquire(3));
    /// ```
    pub fn release(&self, n: usize) {
        let mut s = lock(&self.state);
        if n > s.cur {
            drop(s);
            panic!("semaphore: released more than held");
        }
        s.cur -= n;
        self.grant(s);
    }

    /// Grant waiting requests in FIFO order while the head one fits,
    /// skipping waiters whose deadline or context won their token (module
    /// header); takes the lock, and releases it to wake each.
    fn grant<'a>(&'a self, mut s: LockGuard<'a, State>) {
        loop {
            let free = self.capacity - s.cur;
            let Some((wakeup, weight)) = s.waiters.pop_if(|&weight| weight <= free) else {
                return;
            };
            let Some(claim) = wakeup.claim() else { continue };
            s.cur += weight;
            drop(s);
            claim.done();
            s = lock(&self.state);
        }
    }

    /// The number of units, as given to `new`.
    ///
    /// ```
    /// assert_eq!(gort::sync::Semaphore::new(5).capacity(), 5);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("Semaphore")
            .field("capacity", &self.capacity)
            .field("held", &s.cur)
            .finish_non_exhaustive()
    }
}
