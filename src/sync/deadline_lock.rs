//! `DeadlineLock`: a lock for the runtime's own use whose waiters may give
//! up at a deadline. `net/fd.rs` takes one per socket direction whenever a
//! call has to wait, and a caller queued behind a waiter with a later
//! deadline, or none, must still time out at its own (std's
//! `set_read_timeout` promises each call at most that long).
//!
//! It is on the path of every socket wait — each round trip of an echo
//! server — so the uncontended case is what it is built for: `lock` and
//! `unlock` are one CAS each on `state`, as with `sync::Mutex`. (Built on
//! a one-unit `Sema` instead, every wait took and released the semaphore's
//! internal lock twice: 955 → 1,110 user instructions per `tcp_echo` round
//! trip.)
//!
//! `state` is `LOCKED`, plus `QUEUED` while `waiters` holds someone. A
//! contender registers under `waiters`' lock and sets `QUEUED` there with
//! a CAS from a locked state; if the holder let go meanwhile, the CAS sees
//! it and takes the lock instead, so no release goes unseen. An `unlock`
//! that finds `QUEUED` takes `waiters`' lock and hands the lock to the
//! longest waiter whose token it can claim: `state` stays `LOCKED`, FIFO,
//! no barging (contention here is rare: goroutines reading one socket
//! together). A waiter whose deadline claimed its token first is skipped;
//! it withdraws its registration and clears `QUEUED` if it was the last.
//!
//! Invariants: `QUEUED` implies `LOCKED`, and both `QUEUED` and the queue
//! change only under `waiters`' lock, where `QUEUED` is set exactly when
//! the queue is not empty.
//!
//! Lock order: `waiters` is level 2 of the order in `sched/mod.rs` (a
//! user-facing object's lock); waiters are resumed after it is released.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::sema::{WaitQueue, lock};
use crate::sched::{TIMED_OUT, WaitReason};

const LOCKED: u32 = 1;
const QUEUED: u32 = 2;

/// A FIFO lock whose waiters give up at their deadlines (module header).
/// Any goroutine or thread.
pub(crate) struct DeadlineLock {
    state: AtomicU32,
    waiters: StdMutex<WaitQueue<()>>,
}

/// Holds a `DeadlineLock`; dropping it hands the lock to the next waiter.
pub(crate) struct DeadlineLockGuard<'a>(&'a DeadlineLock);

impl DeadlineLock {
    pub(crate) const fn new() -> DeadlineLock {
        DeadlineLock {
            state: AtomicU32::new(0),
            waiters: StdMutex::new(WaitQueue::new()),
        }
    }

    /// Take the lock, waiting (as `reason`) until `deadline` at most (None:
    /// for good); None if the deadline passed first.
    #[track_caller]
    pub(crate) fn lock_until(&self, deadline: Option<Instant>, reason: WaitReason) -> Option<DeadlineLockGuard<'_>> {
        // Acquire pairs with `unlock`'s Release.
        let taken = self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            || self.lock_slow(deadline, reason);
        // Lazily: a guard made and dropped would unlock a lock not ours.
        taken.then(|| DeadlineLockGuard(self))
    }

    /// Take the lock if it is free.
    #[cfg(feature = "hook-io")]
    pub(crate) fn try_lock(&self) -> Option<DeadlineLockGuard<'_>> {
        // Acquire pairs with `unlock`'s Release.
        self.state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then(|| DeadlineLockGuard(self))
    }

    #[track_caller]
    fn lock_slow(&self, deadline: Option<Instant>, reason: WaitReason) -> bool {
        let token = {
            let mut waiters = lock(&self.waiters);
            let mut state = self.state.load(Ordering::Relaxed);
            loop {
                let (new, queue) = if state == 0 {
                    (LOCKED, false)
                } else {
                    (state | QUEUED, true)
                };
                // Acquire pairs with `unlock`'s Release (when it takes the lock).
                match self
                    .state
                    .compare_exchange_weak(state, new, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) if queue => break waiters.push((), false),
                    Ok(_) => return true,
                    Err(now) => state = now,
                }
            }
        };
        // A hand-off (the token's completion is a Release/Acquire pair with
        // the unlocker) leaves the lock ours; a deadline leaves it to others.
        if token.wait(deadline, reason) != TIMED_OUT {
            return true;
        }
        let mut waiters = lock(&self.waiters);
        // Still queued unless an unlock popped us and skipped us.
        waiters.remove(&token);
        if waiters.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::Relaxed);
        }
        false
    }

    fn unlock(&self) {
        // Release: the next holder sees what this one did.
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.hand_off();
        }
    }

    /// `unlock` with waiters queued: the lock goes to the longest one whose
    /// token it can claim, or is released if their deadlines claimed all.
    fn hand_off(&self) {
        let claim = {
            let mut waiters = lock(&self.waiters);
            loop {
                let Some((wakeup, ())) = waiters.pop() else {
                    self.state.store(0, Ordering::Release);
                    break None;
                };
                if let Some(claim) = wakeup.claim() {
                    if waiters.is_empty() {
                        self.state.store(LOCKED, Ordering::Relaxed);
                    }
                    break Some(claim);
                }
            }
        };
        if let Some(claim) = claim {
            claim.done();
        }
    }
}

impl Drop for DeadlineLockGuard<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::DeadlineLock;
    use crate::sched::WaitReason;

    #[test]
    fn holders_never_overlap_while_waiters_time_out() {
        // Sixteen goroutines on two Ps take the lock, some with deadlines
        // that expire while they queue, and hold it across a yield so that
        // others do queue: never two holders, every call either takes the
        // lock or gives up, and the lock ends free with nobody queued.
        const GOROUTINES: u32 = 16;
        const ROUNDS: u32 = 300;
        let rt = crate::Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            let lock = Arc::new(DeadlineLock::new());
            let inside = Arc::new(AtomicBool::new(false));
            let calls = Arc::new(AtomicU32::new(0));
            let workers: Vec<_> = (0..GOROUTINES)
                .map(|i| {
                    let (lock, inside, calls) = (Arc::clone(&lock), Arc::clone(&inside), Arc::clone(&calls));
                    crate::go(move || {
                        for round in 0..ROUNDS {
                            let patience = Duration::from_micros(u64::from((i + round) % 4) * 20);
                            let deadline = (round % 3 != 0).then(|| Instant::now() + patience);
                            if let Some(_held) = lock.lock_until(deadline, WaitReason::Mutex) {
                                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                                crate::yield_now();
                                inside.store(false, Ordering::SeqCst);
                            }
                            calls.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            workers.into_iter().for_each(|w| w.join().unwrap());
            assert_eq!(calls.load(Ordering::Relaxed), GOROUTINES * ROUNDS);
            assert_eq!(lock.state.load(Ordering::Relaxed), 0, "left locked or queued");
            assert!(super::lock(&lock.waiters).is_empty());
        });
    }
}
