//! One direction (read or write) of a poll descriptor: the state machine
//! that makes readiness and parking race safely (Go's `pollDesc.rg`/`wg`),
//! kept apart from tokens and epoll so that loom can check it.
//!
//! The slot is one word: `EMPTY`, `READY` (an edge arrived that no waiter
//! has consumed), or a waiter — the address of an `Arc<WaitToken>` whose
//! reference the slot owns. Transitions:
//!
//! - waiter: `take_ready` (READY → EMPTY: retry the system call), else
//!   `register` (EMPTY → waiter; if an edge slipped in since, it fails and
//!   the waiter retries instead of parking);
//! - poller: `fire` (anything → READY; returns the waiter it displaced,
//!   whose reference passes to the poller, which wakes it);
//! - waiter after waking: `withdraw` (its own address → EMPTY), which fails
//!   when a poller already took it out.
//!
//! Whoever moves a waiter's address out of the slot owns that reference;
//! exactly one party does. An edge is never lost: it either finds a waiter
//! to wake, or stays as READY for the next `take_ready`/`register`.
//! At most one waiter per slot at a time (the caller serialises: `net/fd.rs`).

#[cfg(gort_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

const EMPTY: usize = 0;
const READY: usize = 1;

pub(crate) struct Slot(AtomicUsize);

/// Why `register` did not install the waiter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WasReady;

impl Slot {
    pub(crate) fn new() -> Slot {
        Slot(AtomicUsize::new(EMPTY))
    }

    /// Consume a pending edge, if there is one.
    pub(crate) fn take_ready(&self) -> bool {
        // Acquire pairs with `fire`'s Release: the poller's view of the fd
        // (nothing to see, but the edge's order) precedes our retry.
        self.0
            .compare_exchange(READY, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Install waiter `w` (an address, never 0 or 1). On `WasReady` the edge
    /// is consumed and `w` is not installed.
    pub(crate) fn register(&self, w: usize) -> Result<(), WasReady> {
        debug_assert!(w > READY);
        // SeqCst: ordered with the closing flag (`PollDesc::close` stores it,
        // then fires; the waiter registers, then loads it).
        match self.0.compare_exchange(EMPTY, w, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => Ok(()),
            Err(READY) => {
                self.take_ready();
                Err(WasReady)
            }
            Err(_) => unreachable!("two waiters on one poll slot"),
        }
    }

    /// Record an edge; returns the waiter it displaced, if any.
    pub(crate) fn fire(&self) -> Option<usize> {
        // AcqRel: Acquire pairs with `register` (the waiter's token is
        // initialised before its address is seen); Release with `take_ready`.
        // SeqCst for the closing-flag ordering described in `register`.
        match self.0.swap(READY, Ordering::SeqCst) {
            EMPTY | READY => None,
            w => Some(w),
        }
    }

    /// Remove waiter `w` if it is still installed (a deadline, not an edge,
    /// ended its wait). False means a poller took it out and owns it.
    pub(crate) fn withdraw(&self, w: usize) -> bool {
        self.0
            .compare_exchange(w, EMPTY, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Forget a pending edge (the descriptor is being reused).
    pub(crate) fn reset(&self) {
        self.0.store(EMPTY, Ordering::Relaxed);
    }
}

#[cfg(all(test, gort_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicU32};
    use loom::sync::{Arc, Notify};

    /// A reader retries or parks while an edge arrives: it is never left
    /// parked with the edge unseen.
    #[test]
    fn edge_racing_with_park_is_never_lost() {
        loom::model(|| {
            let slot = Arc::new(Slot::new());
            let woken = Arc::new(AtomicBool::new(false));
            let poller = {
                let (slot, woken) = (Arc::clone(&slot), Arc::clone(&woken));
                loom::thread::spawn(move || {
                    if let Some(w) = slot.fire() {
                        assert_eq!(w, 8);
                        woken.store(true, Ordering::Release);
                    }
                })
            };
            // The waiter: its read failed with EAGAIN.
            let parked = !slot.take_ready() && slot.register(8).is_ok();
            poller.join().unwrap();
            if parked {
                // It parked: the poller must have woken it.
                assert!(woken.load(Ordering::Acquire));
                assert!(!slot.withdraw(8));
            } else {
                // It retried the read, which now sees the data.
                assert!(!woken.load(Ordering::Acquire));
            }
        });
    }

    /// A deadline and an edge race to end a wait: exactly one side owns the
    /// waiter's reference afterwards.
    #[test]
    fn withdraw_and_fire_never_both_own_the_waiter() {
        loom::model(|| {
            let slot = Arc::new(Slot::new());
            slot.register(8).unwrap();
            let poller = {
                let slot = Arc::clone(&slot);
                loom::thread::spawn(move || slot.fire().is_some())
            };
            let withdrew = slot.withdraw(8);
            let fired = poller.join().unwrap();
            assert!(withdrew ^ fired);
        });
    }

    /// Two waiters on one direction (`net/fd.rs`): B waits in the slot,
    /// holding the direction's lock; C made its system call and queues for
    /// the lock (which it gets when B is done). One edge brings two items
    /// (two connections). C, which retries under the lock if the edge
    /// count moved since its call, never ends up registered — asleep, with
    /// no edge to come — beside an item.
    #[test]
    fn a_waiter_queued_behind_another_is_never_left_beside_an_item() {
        const B: usize = 8;
        const C: usize = 16;
        fn take(queued: &AtomicUsize) -> bool {
            queued
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
        loom::model(|| {
            let slot = Arc::new(Slot::new());
            let edges = Arc::new(AtomicU32::new(0));
            let queued = Arc::new(AtomicUsize::new(0));
            // B's token: a flag, and a `Notify` to sleep on (which may
            // wake spuriously).
            let b_woken = Arc::new((AtomicBool::new(false), Notify::new()));
            slot.register(B).unwrap();
            let b = {
                let (slot, queued, b_woken) = (Arc::clone(&slot), Arc::clone(&queued), Arc::clone(&b_woken));
                loom::thread::spawn(move || {
                    while !b_woken.0.load(Ordering::Acquire) {
                        b_woken.1.wait();
                    }
                    slot.take_ready();
                    assert!(take(&queued));
                })
            };
            let poller = {
                let (slot, edges, queued) = (Arc::clone(&slot), Arc::clone(&edges), Arc::clone(&queued));
                loom::thread::spawn(move || {
                    queued.fetch_add(2, Ordering::SeqCst);
                    edges.fetch_add(1, Ordering::SeqCst);
                    if slot.fire() == Some(B) {
                        b_woken.0.store(true, Ordering::Release);
                        b_woken.1.notify();
                    }
                })
            };
            // C, as `NetFd::io_from` runs it.
            let mut empty_at = None;
            let mut b = Some(b);
            let parked = loop {
                let seen = edges.load(Ordering::SeqCst);
                if empty_at != Some(seen) {
                    if take(&queued) {
                        break false;
                    }
                    empty_at = Some(seen);
                }
                if let Some(b) = b.take() {
                    b.join().unwrap();
                    continue;
                }
                if !slot.take_ready() && slot.register(C).is_ok() {
                    break true;
                }
                empty_at = None;
            };
            if let Some(b) = b {
                b.join().unwrap();
            }
            poller.join().unwrap();
            if parked {
                assert_eq!(queued.load(Ordering::SeqCst), 0, "C sleeps beside an item");
            }
        });
    }

    /// `close` (store the closing flag, then fire) races a waiter that
    /// installs itself and then checks the flag (`Registration::wait`): the
    /// waiter sees the flag and takes itself back, or the fire wakes it —
    /// never both (a double release of its reference), never neither (a
    /// goroutine parked forever on a closed socket).
    #[test]
    fn close_racing_with_park_wakes_or_warns_the_waiter() {
        loom::model(|| {
            let slot = Arc::new(Slot::new());
            let closing = Arc::new(AtomicBool::new(false));
            let closer = {
                let (slot, closing) = (Arc::clone(&slot), Arc::clone(&closing));
                loom::thread::spawn(move || {
                    closing.store(true, Ordering::SeqCst);
                    slot.fire()
                })
            };
            let installed = slot.register(8).is_ok();
            let withdrew = installed && closing.load(Ordering::SeqCst) && slot.withdraw(8);
            let fired = closer.join().unwrap();
            if installed {
                assert!(withdrew ^ (fired == Some(8)));
            } else {
                // The close's edge was there first: the retry sees the flag.
                assert!(closing.load(Ordering::SeqCst));
                assert_eq!(fired, None);
            }
        });
    }
}
