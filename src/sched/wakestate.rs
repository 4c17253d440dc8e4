//! The state machine behind `WaitToken` (park.rs), kept apart from parking
//! and threads so that loom can check it exhaustively.
//!
//! Three bits. `CLAIMED`: a waker won the right to complete the wait (one
//! CAS; everyone else loses). `DONE`: the winner finished its hand-off.
//! `PARKED`: the waiter's context is saved and it is off its thread (set on
//! g0 by the park callback). Whichever of `complete` and `announce_parked`
//! runs second sees the other's bit: if the waiter parked first, the winner
//! must ready it; if the winner finished first, the waiter must not park.
//! Exactly one of the two outcomes happens, so the waiter resumes exactly
//! once and never before the hand-off is complete.

#[cfg(gort_loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicU8, Ordering};

const PARKED: u8 = 1;
const CLAIMED: u8 = 2;
const DONE: u8 = 4;

pub(crate) struct WakeState(AtomicU8);

impl WakeState {
    pub(crate) fn new() -> WakeState {
        WakeState(AtomicU8::new(0))
    }

    /// Make a completed state fresh for the next wait. Only for a state
    /// nobody else can reach any more (its token is unique): a shared
    /// reference here only because proving uniqueness to the compiler
    /// (`Arc::get_mut`) costs an atomic read-modify-write per wait.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Waker: try to win the right to complete the wait. Any thread.
    pub(crate) fn claim(&self) -> bool {
        let mut s = self.0.load(Ordering::Relaxed);
        loop {
            if s & CLAIMED != 0 {
                return false;
            }
            // Acquire pairs with the waiter's Release in `announce_parked`
            // (and with what it published before registering anywhere).
            match self
                .0
                .compare_exchange_weak(s, s | CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Winner: the hand-off is done. Returns true if the waiter has already
    /// parked and must now be readied.
    pub(crate) fn complete(&self) -> bool {
        debug_assert!(self.is_claimed());
        // Release publishes the hand-off to the waiter; Acquire pairs with
        // `announce_parked`'s Release.
        self.0.fetch_or(DONE, Ordering::AcqRel) & PARKED != 0
    }

    /// Waiter, once suspended: returns true if it must stay parked (the
    /// winner will ready it), false if the wait is already complete.
    pub(crate) fn announce_parked(&self) -> bool {
        // Release pairs with `claim`'s Acquire; Acquire pairs with
        // `complete`'s Release, making the hand-off visible.
        self.0.fetch_or(PARKED, Ordering::AcqRel) & DONE == 0
    }

    pub(crate) fn is_claimed(&self) -> bool {
        self.0.load(Ordering::Acquire) & CLAIMED != 0
    }

    /// Whether the winner has completed (the waiter may proceed).
    pub(crate) fn is_complete(&self) -> bool {
        // Acquire pairs with `complete`'s Release.
        self.0.load(Ordering::Acquire) & DONE != 0
    }
}

#[cfg(all(test, gort_loom))]
mod loom_tests {
    use super::WakeState;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;

    /// Two wakers race a parking waiter: exactly one wins, the waiter is
    /// resumed exactly once (by not parking, or by being readied), and it
    /// sees the winner's hand-off.
    #[test]
    fn exactly_one_winner_and_one_resumption() {
        loom::model(|| {
            let state = Arc::new(WakeState::new());
            let slot = Arc::new(AtomicUsize::new(0));
            let wakers: Vec<_> = (1..=2)
                .map(|id| {
                    let (state, slot) = (Arc::clone(&state), Arc::clone(&slot));
                    thread::spawn(move || {
                        if !state.claim() {
                            return (false, false);
                        }
                        slot.store(id, Ordering::Relaxed);
                        (true, state.complete())
                    })
                })
                .collect();
            let stays_parked = state.announce_parked();
            let seen_if_not_parked = (!stays_parked).then(|| slot.load(Ordering::Relaxed));
            let results: Vec<(bool, bool)> = wakers.into_iter().map(|w| w.join().unwrap()).collect();
            let winners = results.iter().filter(|(won, _)| *won).count();
            let readied = results.iter().filter(|(_, ready)| *ready).count();
            assert_eq!(winners, 1);
            // Resumed exactly once: either it never parked, or one ready.
            assert_eq!(usize::from(!stays_parked) + readied, 1);
            if let Some(v) = seen_if_not_parked {
                assert_ne!(v, 0, "resumed without seeing the hand-off");
            }
            assert!(state.is_complete());
        });
    }
}
