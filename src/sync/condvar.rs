//! `Condvar`: wait for a condition under a `Mutex` (Go's sync/cond.go and
//! the `notifyList` of runtime/sema.go).
//!
//! A waiter registers in `waiters` *before* it unlocks the mutex, then
//! parks on its token. So a `notify_*` that runs after the waiter released
//! the mutex — which is every notify that could change the condition it
//! saw — finds it queued; a wake-up that arrives before the waiter has
//! actually parked cancels the park (see `sema.rs`). Go's notifyList gets
//! the same guarantee from tickets; registering under our own lock while
//! still holding the mutex makes tickets unnecessary.
//!
//! `notify_one` wakes the longest waiter (FIFO), skipping one whose
//! deadline fired meanwhile; `notify_all` wakes everyone queued at that
//! moment. A waiter whose deadline wins removes its own entry. Like std's
//! and Go's, a `Condvar` does not check that every waiter uses the same
//! mutex, and spurious wake-ups do not happen but callers should loop on
//! their condition anyway (`wait_while` does). A zero timeout times out at
//! once; one past the end of the clock never does (the `time` module's
//! rule).
//!
//! `waiters` is guarded by its internal lock, held only to push, pop or
//! remove an entry; it is never held while the mutex is taken.
//!
//! Poisoning: none (see `mutex.rs`), so `wait` returns the guard directly.

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::sema::{WaitQueue, lock};
use crate::sched::timers::deadline_after;
use crate::sched::{TIMED_OUT, WaitReason};

/// A condition variable: goroutines (or threads) wait on it, holding a
/// [`Mutex`](super::Mutex), until another notifies them.
///
/// ```
/// use std::sync::Arc;
/// use gort::sync::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// gort::go(move || {
///     let (ready, cv) = &*pair2;
///     *ready.lock() = true;
///     cv.notify_one();
/// });
/// let (ready, cv) = &*pair;
/// let guard = cv.wait_while(ready.lock(), |ready| !*ready);
/// assert!(*guard);
/// ```
pub struct Condvar {
    waiters: StdMutex<WaitQueue<()>>,
}

/// Whether a timed wait on a [`Condvar`] returned because time ran out.
///
/// ```
/// use std::time::Duration;
/// let (m, cv) = (gort::sync::Mutex::new(()), gort::sync::Condvar::new());
/// let (_guard, result) = cv.wait_timeout(m.lock(), Duration::from_millis(1));
/// assert!(result.timed_out());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended at its deadline rather than by a notify.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condition variable with no waiters; `const`, so it can be a
    /// `static`.
    ///
    /// ```
    /// static CV: gort::sync::Condvar = gort::sync::Condvar::new();
    /// CV.notify_all();
    /// ```
    pub const fn new() -> Condvar {
        Condvar {
            waiters: StdMutex::new(WaitQueue::new()),
        }
    }

    /// Unlock `guard`'s mutex, park until notified, and lock it again.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gort::sync::{Condvar, Mutex};
    ///
    /// let state = Arc::new((Mutex::new(0), Condvar::new()));
    /// let s = Arc::clone(&state);
    /// gort::go(move || {
    ///     *s.0.lock() = 1;
    ///     s.1.notify_all();
    /// });
    /// let mut n = state.0.lock();
    /// while *n == 0 {
    ///     n = state.1.wait(n);
    /// }
    /// assert_eq!(*n, 1);
    /// ```
    #[track_caller]
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Wait while `condition` holds for the data: returns with the mutex
    /// locked and `condition` false.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gort::sync::{Condvar, Mutex};
    ///
    /// let queue = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    /// let q = Arc::clone(&queue);
    /// gort::go(move || {
    ///     q.0.lock().push(7);
    ///     q.1.notify_one();
    /// });
    /// let items = queue.1.wait_while(queue.0.lock(), |items| items.is_empty());
    /// assert_eq!(*items, [7]);
    /// ```
    #[track_caller]
    pub fn wait_while<'a, T: ?Sized, F>(&self, mut guard: MutexGuard<'a, T>, mut condition: F) -> MutexGuard<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait`](Condvar::wait), but give up after `timeout`: the
    /// result says whether time ran out. The mutex is locked again either
    /// way.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gort::sync::{Condvar, Mutex};
    ///
    /// let (m, cv) = (Mutex::new(0), Condvar::new());
    /// let (guard, result) = cv.wait_timeout(m.lock(), Duration::from_millis(1));
    /// assert!(result.timed_out());
    /// assert_eq!(*guard, 0);
    /// ```
    #[track_caller]
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let (guard, timed_out) = self.wait_until(guard, deadline_after(timeout));
        (guard, WaitTimeoutResult(timed_out))
    }

    /// Wait while `condition` holds, for at most `timeout` in total. The
    /// result is timed-out if `condition` still held when time ran out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gort::sync::{Condvar, Mutex};
    ///
    /// let (m, cv) = (Mutex::new(false), Condvar::new());
    /// let (guard, result) = cv.wait_timeout_while(m.lock(), Duration::from_millis(1), |ready| !*ready);
    /// assert!(result.timed_out() && !*guard);
    /// ```
    #[track_caller]
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult)
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = deadline_after(timeout);
        while condition(&mut *guard) {
            let timed_out;
            (guard, timed_out) = self.wait_until(guard, deadline);
            if timed_out {
                let still = condition(&mut *guard);
                return (guard, WaitTimeoutResult(still));
            }
        }
        (guard, WaitTimeoutResult(false))
    }

    /// Wake the longest-waiting waiter, if any.
    ///
    /// ```
    /// let cv = gort::sync::Condvar::new();
    /// cv.notify_one(); // nobody waits: nothing happens
    /// ```
    pub fn notify_one(&self) {
        loop {
            let Some((wakeup, ())) = lock(&self.waiters).pop() else {
                return;
            };
            if wakeup.wake() {
                return;
            }
        }
    }

    /// Wake every waiter queued now.
    ///
    /// ```
    /// let cv = gort::sync::Condvar::new();
    /// cv.notify_all(); // nobody waits: nothing happens
    /// ```
    pub fn notify_all(&self) {
        std::mem::take(&mut *lock(&self.waiters)).wake_all();
    }

    /// The one wait: register, unlock, park until notified or `deadline`
    /// (`None`: no deadline), relock. Returns whether the deadline won.
    #[track_caller]
    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, bool) {
        let token = lock(&self.waiters).push((), false);
        let mutex = guard.mutex;
        drop(guard);
        let timed_out = token.wait(deadline, WaitReason::Condvar) == TIMED_OUT;
        if timed_out {
            lock(&self.waiters).remove(&token);
        }
        (mutex.lock(), timed_out)
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
