//! The wait queue every primitive in `sync` parks on, and the counting
//! semaphore `Mutex` and `RwLock` build on (Go's runtime/sema.go:
//! `semacquire`, `semrelease`, and the `notifyList` that `sync.Cond` uses).
//!
//! `WaitQueue<T>` is a FIFO of parked waiters — goroutines or plain threads
//! — each with a payload `T` (a `Semaphore` request's weight, say). It has
//! no lock of its own: the primitive keeps it behind a short internal
//! `std::sync::Mutex` together with whatever state decides who may pass, so
//! "check the state, else register" is one critical section.
//!
//! Waiting is two steps. Under that lock, `push` registers a `WaitToken` for
//! the caller; the caller releases the lock and then calls
//! `WaitToken::wait`. A waker that pops the entry in between finds the token
//! and completes it; the token notices the waiter has not parked yet and
//! the park is cancelled (see `sched/park.rs`), so no wake-up is lost
//! although the lock is not held across the switch. A waker pops under the
//! lock and calls `Wakeup::wake` after releasing it, so the lock is never
//! held across `goready` or a futex wake.
//!
//! A waiter with a deadline (`Condvar::wait_timeout`) races the deadline
//! timer for its token: exactly one of the two claims it. A popped waiter
//! whose token the timer claimed reports `false` from `wake`, and the waker
//! moves on to the next one; a timed-out waiter `remove`s its own entry if
//! it is still queued.
//!
//! `Sema` is Go's runtime semaphore: a count plus a `WaitQueue`, both under
//! `Sema::inner`. A release hands its unit straight to the longest waiter,
//! or banks it in `count` when nobody is queued yet (a waiter counted in a
//! mutex's state word but not yet here takes it on arrival). Invariant:
//! `count > 0` implies the queue is empty.
//!
//! Lock order: a primitive's internal lock is level 1 of the order in
//! `sched/mod.rs`; no two of them are ever held at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};

pub(super) use crate::sched::lock;
use crate::sched::{Claim, WaitReason, WaitToken};

/// A FIFO of parked waiters with a payload each. Guarded by the owning
/// primitive's internal lock.
pub(super) struct WaitQueue<T> {
    entries: VecDeque<(Arc<WaitToken>, T)>,
}

/// A waiter taken off a `WaitQueue`, to be woken once the queue's lock is
/// released.
pub(super) struct Wakeup(Arc<WaitToken>);

impl<T> WaitQueue<T> {
    pub(super) const fn new() -> WaitQueue<T> {
        WaitQueue {
            entries: VecDeque::new(),
        }
    }

    /// Register the caller (goroutine or thread) with payload `data`, at the
    /// tail, or at the head if `front`. The caller then releases the lock
    /// and calls `wait` on the returned token.
    pub(super) fn push(&mut self, data: T, front: bool) -> crate::sched::TokenLoan {
        let token = WaitToken::lend();
        if front {
            self.entries.push_front((Arc::clone(&token), data));
        } else {
            self.entries.push_back((Arc::clone(&token), data));
        }
        token
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Take the longest waiter off the queue if `admit` accepts its payload.
    pub(super) fn pop_if(&mut self, admit: impl FnOnce(&T) -> bool) -> Option<(Wakeup, T)> {
        if !admit(&self.entries.front()?.1) {
            return None;
        }
        self.entries.pop_front().map(|(token, data)| (Wakeup(token), data))
    }

    /// Take the longest waiter off the queue.
    pub(super) fn pop(&mut self) -> Option<(Wakeup, T)> {
        self.pop_if(|_| true)
    }

    /// Withdraw `token`'s registration, if it is still queued (a waiter
    /// whose deadline won the race for its token); whether it was.
    pub(super) fn remove(&mut self, token: &Arc<WaitToken>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(t, _)| !Arc::ptr_eq(t, token));
        self.entries.len() != before
    }

    /// Wake every waiter. Call on a queue taken out of its lock
    /// (`std::mem::take`), so the lock is not held while waking.
    pub(super) fn wake_all(self) {
        for (token, _) in self.entries {
            Wakeup(token).wake();
        }
    }
}

impl<T> Default for WaitQueue<T> {
    fn default() -> WaitQueue<T> {
        WaitQueue::new()
    }
}

impl Wakeup {
    /// Resume the waiter. False if its deadline had claimed it already: it
    /// is resuming as timed out, and the caller should wake someone else.
    pub(super) fn wake(self) -> bool {
        match self.claim() {
            Some(claim) => {
                claim.done();
                true
            }
            None => false,
        }
    }

    /// The first half of `wake`, for a caller that must know whether the
    /// waiter is its to resume while it still holds the queue's lock: the
    /// claim decides it, and `Claim::done` resumes the waiter after.
    pub(super) fn claim(self) -> Option<Claim> {
        WaitToken::claim(self.0, 0)
    }
}

/// Go's runtime semaphore: `acquire` takes a unit or waits in FIFO order
/// for one; `release` hands units to waiters or banks them.
pub(super) struct Sema {
    inner: StdMutex<SemaState>,
}

struct SemaState {
    /// Banked units; nonzero only while `waiters` is empty.
    count: u32,
    waiters: WaitQueue<()>,
}

impl Sema {
    pub(super) const fn new() -> Sema {
        Sema {
            inner: StdMutex::new(SemaState {
                count: 0,
                waiters: WaitQueue::new(),
            }),
        }
    }

    /// Take one unit, parking until one is released to the caller. `lifo`
    /// queues at the head: a waiter that was woken once already and lost
    /// the race for the lock it was woken for goes back to the front (Go's
    /// `queueLifo`).
    #[track_caller]
    pub(super) fn acquire(&self, lifo: bool, reason: WaitReason) {
        let mut s = lock(&self.inner);
        if s.count > 0 {
            s.count -= 1;
            return;
        }
        let token = s.waiters.push((), lifo);
        drop(s);
        token.wait(None, reason);
    }

    /// Release `n` units: each goes to the longest waiter, or is banked if
    /// nobody waits.
    pub(super) fn release(&self, mut n: u32) {
        while n > 0 {
            let wakeup = {
                let mut s = lock(&self.inner);
                match s.waiters.pop() {
                    Some((w, ())) => w,
                    None => {
                        s.count += n;
                        return;
                    }
                }
            };
            n -= 1;
            // No deadline ever races for a semaphore waiter's token.
            wakeup.wake();
        }
    }
}
