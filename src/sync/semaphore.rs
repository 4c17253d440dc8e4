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
//! Bad input panics, as x/sync does or would: acquiring more than the
//! capacity (x/sync would block forever), releasing more than is held.

use std::fmt;
use std::sync::Mutex as StdMutex;

use super::sema::{WaitQueue, lock};
use crate::sched::WaitReason;

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
        let mut s = lock(&self.state);
        if self.capacity - s.cur >= n && s.waiters.is_empty() {
            s.cur += n;
            return;
        }
        if n > self.capacity {
            drop(s);
            panic!("semaphore: acquire more than capacity");
        }
        let token = s.waiters.push(n, false);
        drop(s);
        // `release` adds `n` to `cur` for us before it wakes us.
        token.wait(None, WaitReason::Semaphore);
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
        loop {
            let free = self.capacity - s.cur;
            let Some((wakeup, weight)) = s.waiters.pop_if(|&weight| weight <= free) else {
                return;
            };
            s.cur += weight;
            drop(s);
            // No deadline ever races for a semaphore waiter's token.
            wakeup.wake();
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
