//! The runtime lock (Go's lock_futex.go): a mutex for the runtime's own
//! short critical sections — a channel's state, say — that a goroutine
//! holds for tens of nanoseconds and never across a park.
//!
//! std's mutex spins only briefly before putting the thread to sleep in the
//! kernel. Here the holder is another M that is running (the sections are
//! short and never block), so it is worth spinning much longer before
//! sleeping: a futex round trip costs microseconds, and a sleeping M holds
//! its P hostage. After the spin the thread yields a few times, and only
//! then sleeps on the futex.
//!
//! A spinning waiter looks at the lock word only every `PAUSES_PER_ROUND`
//! PAUSEs (about 0.7 µs here; Go's `lock2` waits 30 too). Each look pulls
//! the word's cache line — which a channel's lock shares with its buffer
//! indices — away from the holder, whose next lock and unlock must then
//! fetch it back: looking every 4 PAUSEs made `chan_mpmc` (4 senders and 4
//! receivers on one channel, 2 Ps) take 46.8 ns per message against 29.9
//! with 30 (medians of 12 interleaved runs), with `pingpong`, `ring` and
//! `skynet` unchanged.
//!
//! State: 0 unlocked, 1 locked, 2 locked with (possible) sleepers.

use std::sync::atomic::{AtomicU32, Ordering};

use super::m::NoPreempt;
use crate::os;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const SLEEPING: u32 = 2;
/// Spin rounds before yielding the thread: about 10 µs of spinning.
const SPINS: u32 = 14;
/// PAUSEs between two looks at the lock word (module header).
const PAUSES_PER_ROUND: u32 = 30;
/// Thread yields before sleeping on the futex.
const YIELDS: u32 = 4;

pub(crate) struct RuntimeLock {
    state: AtomicU32,
}

/// Proof that a `RuntimeLock` is held; unlocks on drop.
pub(crate) struct RuntimeLockGuard<'a> {
    lock: &'a RuntimeLock,
    /// Not preempted while holding it (see `sched::LockGuard`); dropped
    /// after the unlock in `Drop`.
    _section: NoPreempt,
}

impl RuntimeLock {
    pub(crate) const fn new() -> RuntimeLock {
        RuntimeLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    /// Acquire the lock. Any thread; never parks a goroutine.
    #[inline]
    pub(crate) fn lock(&self) -> RuntimeLockGuard<'_> {
        let section = NoPreempt::enter();
        // Acquire pairs with the Release in `unlock`.
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        RuntimeLockGuard {
            lock: self,
            _section: section,
        }
    }

    #[cold]
    fn lock_contended(&self) {
        for round in 0..SPINS + YIELDS {
            let s = self.state.load(Ordering::Relaxed);
            // Acquire pairs with the Release in `unlock`.
            if s == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            if round < SPINS {
                for _ in 0..PAUSES_PER_ROUND {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        // Sleep. Marking SLEEPING makes the unlocker wake someone; we take
        // the lock as SLEEPING too, since others may still be asleep.
        // Acquire pairs with the Release in `unlock`.
        while self.state.swap(SLEEPING, Ordering::Acquire) != UNLOCKED {
            os::futex_wait(&self.state, SLEEPING, None);
        }
    }

    fn unlock(&self) {
        // Release pairs with the Acquires in `lock`.
        if self.state.swap(UNLOCKED, Ordering::Release) == SLEEPING {
            os::futex_wake(&self.state);
        }
    }
}

impl Drop for RuntimeLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}
