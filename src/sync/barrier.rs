//! `Barrier`: `n` goroutines wait until all have arrived (std's
//! `std::sync::Barrier`; Go has no such type, its users build it from a
//! `sync.Cond`).
//!
//! State, all under the internal lock `state`: `arrived`, the goroutines
//! of the current round that have called `wait`, and `waiters`, those of
//! them that are parked. The `n`th arrival is the round's leader: it resets
//! `arrived` and takes the whole queue out from under the lock, then wakes
//! it. So the barrier is immediately reusable: arrivals of the next round
//! queue afresh, and a woken waiter never looks at the state again (each
//! registered waiter is woken exactly once), so a fast goroutine that
//! re-enters cannot be confused with a slow one of the previous round.

use std::fmt;
use std::sync::Mutex as StdMutex;

use super::sema::{WaitQueue, lock};
use crate::sched::WaitReason;

/// Lets `n` goroutines (or threads) wait until all `n` have arrived; then
/// all proceed, and the barrier is ready for the next round.
///
/// ```
/// use std::sync::Arc;
/// use gort::sync::Barrier;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3)
///     .map(|_| {
///         let barrier = Arc::clone(&barrier);
///         gort::go(move || barrier.wait().is_leader())
///     })
///     .collect();
/// let leaders = handles.into_iter().map(|h| h.join().unwrap()).filter(|&leader| leader).count();
/// assert_eq!(leaders, 1);
/// ```
pub struct Barrier {
    n: usize,
    state: StdMutex<State>,
}

struct State {
    /// Arrivals in the current round, `< n` between rounds.
    arrived: usize,
    /// The parked arrivals of the current round.
    waiters: WaitQueue<()>,
}

/// What [`Barrier::wait`] returns: whether this caller was the round's
/// leader (exactly one per round).
///
/// ```
/// let result = gort::sync::Barrier::new(1).wait();
/// assert!(result.is_leader());
/// ```
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one caller per round: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` goroutines.
    ///
    /// # Panics
    /// If `n` is 0: "Barrier::new: n must be at least 1".
    ///
    /// ```
    /// let barrier = gort::sync::Barrier::new(1);
    /// assert!(barrier.wait().is_leader());
    /// ```
    pub const fn new(n: usize) -> Barrier {
        assert!(n > 0, "Barrier::new: n must be at least 1");
        Barrier {
            n,
            state: StdMutex::new(State {
                arrived: 0,
                waiters: WaitQueue::new(),
            }),
        }
    }

    /// Park until `n` callers have called `wait` in this round. The last to
    /// arrive is the leader; it wakes the others and does not park.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let barrier = Arc::new(gort::sync::Barrier::new(2));
    /// let b = Arc::clone(&barrier);
    /// let other = gort::go(move || b.wait().is_leader());
    /// let me = barrier.wait().is_leader();
    /// assert!(me ^ other.join().unwrap());
    /// ```
    #[track_caller]
    pub fn wait(&self) -> BarrierWaitResult {
        let mut s = lock(&self.state);
        s.arrived += 1;
        if s.arrived < self.n {
            let token = s.waiters.push((), false);
            drop(s);
            token.wait(None, WaitReason::Barrier);
            return BarrierWaitResult(false);
        }
        s.arrived = 0;
        let round = std::mem::take(&mut s.waiters);
        drop(s);
        round.wake_all();
        BarrierWaitResult(true)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish_non_exhaustive()
    }
}

impl fmt::Debug for BarrierWaitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWaitResult").field("is_leader", &self.0).finish()
    }
}
