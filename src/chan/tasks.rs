//! A channel's async waiters: the tasks of `recv_async` futures waiting for
//! a value, and the values of `send_async` futures waiting for a receiver or
//! room. Lives inside the channel's `State`, so every method here runs under
//! the channel lock; wakers are handed back to be woken (or dropped) after
//! it is released, since a waker's code may touch the channel again.
//!
//! # Why the two sides differ
//!
//! A parked goroutine takes part in the sudog hand-off: a sender writes the
//! value straight into its slot. A future cannot: it may be dropped at any
//! `.await` between the hand-off and its next poll, and a value already in
//! its slot would be lost with it. So a receive future never receives by
//! hand-off: it registers its waker (`recv`) and, when woken, takes the value
//! itself under the lock — whoever takes a value owns it at that instant, and
//! a future that took one returns it from that same poll.
//!
//! A send future can take part, because its value is still its own until a
//! receiver takes it: it leaves the value here as an `Offer`, which receivers
//! (goroutines, selects, futures) take under the lock like a parked sender's
//! value. A send future dropped while its offer is here withdraws it (the
//! value is dropped with the future); one whose offer is gone has sent. So
//! two futures can meet on an unbuffered channel, and nothing offered is
//! lost or duplicated.
//!
//! # Waking receive futures: one per value, handed on
//!
//! Each event that makes one value available to a receiver (a value
//! buffered, a goroutine sender parked with its value, an offer made) pops
//! and wakes ONE registered receive future (`notify_recv`), not all: N
//! futures waiting on a busy channel would otherwise all be polled for each
//! value. A woken future that loses the value to another receiver goes back
//! to the front of the line; one dropped after being woken, before taking a
//! value, hands the wake to the next (`cancel_recv`), so a wake is never
//! lost with a dropped future. Closing the channel wakes every one (each
//! then sees the disconnection once the buffer is drained).
//!
//! A registered future re-polled with another waker replaces its waker in
//! place, keeping its position. Keys are per channel and never reused, so a
//! future finds its own entry whatever happened to the others.

use std::collections::VecDeque;
use std::task::Waker;

/// A `send_async` value waiting to be taken.
pub(super) struct Offer<T> {
    key: u64,
    value: T,
    waker: Waker,
}

/// A channel's async waiters (module header). Empty, and never touched, on
/// channels no future has waited on — but `has_recv` on each buffered send.
pub(super) struct Tasks<T> {
    next_key: u64,
    /// Registered receive futures, first to be woken first.
    recv: VecDeque<(u64, Waker)>,
    /// Pending send futures' values, oldest first.
    offers: VecDeque<Offer<T>>,
}

/// What a dropped receive future leaves behind.
pub(super) enum Cancelled {
    /// It was still registered: its waker, to drop after unlocking.
    Registered(Waker),
    /// It had been woken and did not take a value: the next future's
    /// waker, to wake in its place (if any is registered).
    HandOn(Option<Waker>),
}

impl<T> Tasks<T> {
    pub(super) const fn new() -> Tasks<T> {
        Tasks {
            next_key: 0,
            recv: VecDeque::new(),
            offers: VecDeque::new(),
        }
    }

    /// A key no other future of this channel has.
    pub(super) fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// Whether any receive future waits (the one check a send makes).
    #[inline]
    pub(super) fn has_recv(&self) -> bool {
        !self.recv.is_empty()
    }

    /// Register a receive future with `waker` (giving it a key if it has
    /// none), or give the entry it still has the new waker. Returns the
    /// waker replaced, to drop after unlocking. A new future joins the back
    /// of the line; one woken earlier (its entry gone) the front: it was
    /// first in line and lost the value to another receiver.
    pub(super) fn register_recv(&mut self, key: &mut Option<u64>, waker: Waker) -> Option<Waker> {
        let Some(k) = *key else {
            let k = self.key();
            *key = Some(k);
            self.recv.push_back((k, waker));
            return None;
        };
        match self.recv.iter_mut().find(|(e, _)| *e == k) {
            Some((_, w)) => Some(std::mem::replace(w, waker)),
            None => {
                self.recv.push_front((k, waker));
                None
            }
        }
    }

    /// One value became available to receivers: the first registered
    /// receive future's waker, removed from the line.
    pub(super) fn notify_recv(&mut self) -> Option<Waker> {
        self.recv.pop_front().map(|(_, w)| w)
    }

    /// Receive future `key` completed: its entry, if it is still
    /// registered (it was polled without being woken).
    pub(super) fn done_recv(&mut self, key: u64) -> Option<Waker> {
        let i = self.recv.iter().position(|(k, _)| *k == key)?;
        self.recv.remove(i).map(|(_, w)| w)
    }

    /// Receive future `key` is dropped unfinished (see `Cancelled`).
    pub(super) fn cancel_recv(&mut self, key: u64) -> Cancelled {
        match self.done_recv(key) {
            Some(w) => Cancelled::Registered(w),
            None => Cancelled::HandOn(self.notify_recv()),
        }
    }

    /// The channel closed: every receive future's waker.
    pub(super) fn take_recv(&mut self) -> VecDeque<(u64, Waker)> {
        std::mem::take(&mut self.recv)
    }

    /// Whether any send future's value waits here.
    pub(super) fn has_offers(&self) -> bool {
        !self.offers.is_empty()
    }

    /// Leave a send future's value to be taken; the caller then notifies
    /// a receive future.
    pub(super) fn offer(&mut self, key: u64, value: T, waker: Waker) {
        self.offers.push_back(Offer { key, value, waker });
    }

    /// Take the oldest offered value, with its future's waker to wake.
    pub(super) fn take_offer(&mut self) -> Option<(T, Waker)> {
        self.offers.pop_front().map(|o| (o.value, o.waker))
    }

    /// Whether send future `key` still has its value here; if so, give it
    /// `waker` and return the one replaced.
    pub(super) fn renew_offer(&mut self, key: u64, waker: Waker) -> Result<Waker, Waker> {
        match self.offers.iter_mut().find(|o| o.key == key) {
            Some(o) => Ok(std::mem::replace(&mut o.waker, waker)),
            None => Err(waker),
        }
    }

    /// Take back send future `key`'s value and waker, if no receiver took it.
    pub(super) fn withdraw_offer(&mut self, key: u64) -> Option<(T, Waker)> {
        let i = self.offers.iter().position(|o| o.key == key)?;
        self.offers.remove(i).map(|o| (o.value, o.waker))
    }

    /// The channel closed or lost its receivers: the wakers of every send
    /// future with a value here (the values stay, for each future to take
    /// back). Each is replaced by a no-op waker, so none is woken twice.
    pub(super) fn wake_offers(&mut self) -> Vec<Waker> {
        self.offers
            .iter_mut()
            .map(|o| std::mem::replace(&mut o.waker, Waker::noop().clone()))
            .collect()
    }
}
