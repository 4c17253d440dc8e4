//! Channel timers: `after`, `tick`, `Timer`, `Ticker` (Go's time.After,
//! time.Tick, time.Timer, time.Ticker, with Go 1.23's semantics).
//!
//! Each is a runtime timer (`sched/timers.rs`) whose callback sends the
//! current `Instant` on a one-slot channel with `try_send`: callbacks run on
//! a scheduler thread and must never block, and a receiver that is slow
//! simply misses ticks, as in Go. A `Ticker` re-arms its timer from the
//! callback, one period after the previous deadline, so ticks do not drift;
//! after a stall it skips to the next deadline still ahead.
//!
//! Stop and reset never let a stale value through (Go 1.23): every arming
//! has a generation number; the callback sends only if its generation is
//! still current, and `stop`/`reset` bump the generation and empty the
//! channel — all three under the timer's own small lock, so a callback
//! racing with `stop` either delivers before `stop` empties the channel or
//! not at all. `stop` and `reset` return whether the timer was pending,
//! which, as in Go 1.23, includes a value sent that nobody received yet:
//! for the program the timer had not fired. Pending also covers the
//! moment between the heap taking a timer out as fired and its callback
//! sending: `Armed::timer` is cleared only by the callback that sends, under
//! the lock, so a `stop` that still finds it there suppresses the send and
//! says true — false only if a value was received, so `if !t.stop() {
//! t.receiver().recv() }` never blocks for ever (Go's golang/go#69312).
//!
//! A timer nobody can receive from any more (every `Receiver` of its
//! channel dropped: an `after` in a `select` that took another case, a
//! `Timer` dropped without `stop`) is no longer wanted, and the runtime's
//! timer heap drops it unfired at its next sweep (`sched/timers.rs`), as Go
//! 1.23 frees unreferenced timers.
//!
//! Durations follow Go: zero fires at once; one whose deadline is past the
//! end of the clock (`Duration::MAX`) never fires, yet the timer is pending
//! (`stop` says true) and its channel stays connected — its heap entry, due
//! never, owns the sender (`sched/timers.rs`) — so a `select` arm on
//! `after(Duration::MAX)` is never ready. `tick` of zero, Go's nil
//! channel, is such a timer.
//!
//! A timer belongs to the runtime current when it was made (the caller's,
//! else the default one), as sockets do: a ticker re-arms itself there,
//! whichever thread runs its callback (sysmon runs some), and stops when
//! that runtime is gone.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::chan::{Receiver, Sender, TrySendError, bounded};
use crate::sched::timers::{Fire, TimerRef, deadline_after, start_timer_on};
use crate::sched::{LockGuard, Sched, lock};

/// Receive the current time once, after `d` (Go's `time.After`): at once
/// for zero, never for a `d` past the end of the clock (`Duration::MAX`).
///
/// ```
/// let rx = gort::time::after(std::time::Duration::from_millis(2));
/// let fired = gort::go(move || rx.recv().unwrap()).join().unwrap();
/// assert!(fired.elapsed() < std::time::Duration::from_secs(60));
/// ```
pub fn after(d: Duration) -> Receiver<Instant> {
    Timer::new(d).into_receiver()
}

/// Receive the time every `d` (Go's `time.Tick`); ticks a slow receiver
/// misses are dropped. For a zero `d`, as Go's nil channel, a receiver
/// that never delivers.
///
/// ```
/// let rx = gort::time::tick(std::time::Duration::ZERO);
/// assert!(rx.recv_timeout(std::time::Duration::from_millis(1)).is_err());
/// ```
pub fn tick(d: Duration) -> Receiver<Instant> {
    if d.is_zero() {
        return Shared::start(None, None).1;
    }
    Ticker::new(d).into_receiver()
}

/// What the timer callback needs: the sending side and the arming state.
/// The callback holds a strong reference, so a timer whose handle is gone
/// (`after`, `tick`) still delivers; a ticker stops re-arming once every
/// receiver is gone.
struct Shared {
    tx: Sender<Instant>,
    armed: Mutex<Armed>,
    /// The runtime every arming goes to.
    runtime: Weak<Sched>,
}

struct Armed {
    generation: u64,
    /// The current arming's heap timer, until its callback has sent (or
    /// `disarm` took it): while it is here, nothing of this arming was
    /// delivered.
    timer: Option<TimerRef>,
    /// `Some(period)` for a ticker.
    period: Option<Duration>,
}

impl Shared {
    /// A new timer (or ticker, with `period`) armed to fire at `when`
    /// (`None`: never).
    fn start(when: Option<Instant>, period: Option<Duration>) -> (Arc<Shared>, Receiver<Instant>) {
        let (tx, rx) = bounded(1);
        let shared = Arc::new(Shared {
            tx,
            armed: Mutex::new(Armed {
                generation: 0,
                timer: None,
                period,
            }),
            runtime: crate::runtime::with_current(Arc::downgrade),
        });
        shared.arm(&mut shared.lock(), when);
        (shared, rx)
    }

    /// A runtime lock (a `NoPreempt` section): the callback takes it on a
    /// scheduler thread — sysmon among them, before it queues an
    /// asynchronously preempted goroutine — so a goroutine must never be
    /// stopped by signal while it holds it in `stop` or `reset`.
    fn lock(&self) -> LockGuard<'_, Armed> {
        lock(&self.armed)
    }

    /// Arm for `when` in a new generation, unless the runtime is gone.
    /// Lock held (`armed`). A timer for never (`None`) is armed too: its
    /// heap entry owns the sender that keeps `rx` connected, until the
    /// timer is stopped or nobody can receive any more (module header).
    fn arm(self: &Arc<Self>, armed: &mut Armed, when: Option<Instant>) {
        armed.generation += 1;
        let generation = armed.generation;
        let Some(runtime) = self.runtime.upgrade() else { return };
        let this = Arc::clone(self);
        armed.timer = Some(start_timer_on(
            &runtime,
            when,
            Fire::Call(Box::new(move || this.fire(generation, when))),
            Some(self.tx.receivers_wanted()),
        ));
    }

    /// The timer callback (scheduler context: never blocks).
    fn fire(self: &Arc<Self>, generation: u64, when: Option<Instant>) {
        let mut armed = self.lock();
        if armed.generation != generation {
            return;
        }
        let receivers_gone = matches!(self.tx.try_send(Instant::now()), Err(TrySendError::Disconnected(_)));
        armed.timer = None;
        if let Some(period) = armed.period
            && !receivers_gone
            && let Some(next) = when.and_then(|when| next_tick(when, period, Instant::now()))
        {
            self.arm(&mut armed, Some(next));
        }
    }

    /// Disarm; empty `rx`; report whether the timer was pending or had
    /// sent a value nobody received.
    fn disarm(&self, armed: &mut Armed, rx: &Receiver<Instant>) -> bool {
        armed.generation += 1;
        // Not `cancel()`'s answer: the heap marks a timer fired before its
        // callback sends, and the generation bump suppresses that send, so
        // a timer still held here has delivered nothing (module header).
        let pending = match armed.timer.take() {
            Some(timer) => {
                timer.cancel();
                true
            }
            None => false,
        };
        let mut unreceived = false;
        while rx.try_recv().is_ok() {
            unreceived = true;
        }
        pending || unreceived
    }
}

/// The ticker deadline after `when`: one `period` later, or, if that has
/// passed already (the callback ran late), the first later one on the same
/// grid, so that ticks missed in a stall are skipped rather than fired back
/// to back (as Go's ticker does). None past the end of time.
fn next_tick(when: Instant, period: Duration, now: Instant) -> Option<Instant> {
    let next = when.checked_add(period)?;
    if next > now {
        return Some(next);
    }
    let periods = now.duration_since(when).as_nanos() / period.as_nanos() + 1;
    let ahead = u64::try_from(periods * period.as_nanos()).ok()?;
    when.checked_add(Duration::from_nanos(ahead))
}

/// A single event at a deadline, delivered on a channel (Go's time.Timer).
///
/// ```
/// use std::time::Duration;
/// let t = gort::time::Timer::new(Duration::from_secs(3600));
/// assert!(t.stop()); // it was pending
/// assert!(t.receiver().try_recv().is_err()); // and nothing will arrive
/// ```
pub struct Timer {
    shared: Arc<Shared>,
    rx: Receiver<Instant>,
}

impl Timer {
    /// A timer that fires once after `d`: at once for zero, never for a
    /// `d` past the end of the clock (`Duration::MAX`), though it is
    /// pending until stopped.
    pub fn new(d: Duration) -> Timer {
        let (shared, rx) = Shared::start(deadline_after(d), None);
        Timer { shared, rx }
    }

    /// The channel the time is delivered on.
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.rx
    }

    fn into_receiver(self) -> Receiver<Instant> {
        self.rx
    }

    /// Stop the timer; true if it was pending — armed, or fired with its
    /// value not yet received (Go 1.23). False only if the value was
    /// received, or the timer was stopped already: `if !t.stop() {
    /// t.receiver().recv() }` is safe. After `stop` returns, no value from
    /// before it will be received.
    pub fn stop(&self) -> bool {
        let mut armed = self.shared.lock();
        self.shared.disarm(&mut armed, &self.rx)
    }

    /// Re-arm the timer to fire after `d`; true if it was pending (as for
    /// `stop`). No value from the earlier arming will be received
    /// afterwards.
    pub fn reset(&self, d: Duration) -> bool {
        let mut armed = self.shared.lock();
        let pending = self.shared.disarm(&mut armed, &self.rx);
        self.shared.arm(&mut armed, deadline_after(d));
        pending
    }
}

/// Periodic events on a channel (Go's time.Ticker).
///
/// ```
/// let t = gort::time::Ticker::new(std::time::Duration::from_millis(1));
/// let got = gort::go(move || { t.receiver().recv().unwrap(); t.receiver().recv().unwrap() < std::time::Instant::now() + std::time::Duration::from_secs(1) });
/// assert!(got.join().unwrap());
/// ```
pub struct Ticker {
    shared: Arc<Shared>,
    rx: Receiver<Instant>,
}

impl Ticker {
    /// A ticker with period `d` (one past the end of the clock never
    /// ticks).
    ///
    /// # Panics
    /// If `d` is zero (Go: "non-positive interval for NewTicker").
    pub fn new(d: Duration) -> Ticker {
        assert!(!d.is_zero(), "non-positive interval for Ticker::new");
        let (shared, rx) = Shared::start(deadline_after(d), Some(d));
        Ticker { shared, rx }
    }

    /// The channel ticks are delivered on.
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.rx
    }

    /// The ticker goes on for as long as some receiver exists.
    fn into_receiver(self) -> Receiver<Instant> {
        self.rx
    }

    /// Stop the ticker; no tick from before it will be received.
    pub fn stop(&self) {
        let mut armed = self.shared.lock();
        self.shared.disarm(&mut armed, &self.rx);
    }

    /// Change the period and restart the ticker from now.
    ///
    /// # Panics
    /// If `d` is zero.
    pub fn reset(&self, d: Duration) {
        assert!(!d.is_zero(), "non-positive interval for Ticker::reset");
        let mut armed = self.shared.lock();
        self.shared.disarm(&mut armed, &self.rx);
        armed.period = Some(d);
        self.shared.arm(&mut armed, deadline_after(d));
    }
}

#[cfg(test)]
mod tests {
    use super::next_tick;
    use crate::chan::{TryRecvError, bounded};
    use std::time::{Duration, Instant};

    /// A timer heap upgrades a channel timer's handle under its lock, and
    /// that upgrade may be the last reference (`timers::Wanted`): it must
    /// not keep the sender, whose drop wakes receivers, so that drop never
    /// runs under the heap lock.
    #[test]
    fn the_handle_a_timer_heap_upgrades_does_not_hold_the_sender() {
        let (tx, rx) = bounded::<Instant>(1);
        let handle = tx.receivers_wanted();
        let upgraded = handle.upgrade().expect("the channel is alive");
        assert!(upgraded.still_wanted());
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        drop(rx);
        assert!(!upgraded.still_wanted());
        drop(upgraded);
        assert!(handle.upgrade().is_none());
    }

    #[test]
    fn a_late_ticker_skips_to_the_next_deadline_on_its_grid() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // On time: one period on.
        assert_eq!(next_tick(t0, ms(10), t0 + ms(3)), Some(t0 + ms(10)));
        // 25 ms late: the 10 and 20 ms ticks are skipped, not fired at once.
        assert_eq!(next_tick(t0, ms(10), t0 + ms(25)), Some(t0 + ms(30)));
        // Exactly on a grid point that has come: the next one.
        assert_eq!(next_tick(t0, ms(10), t0 + ms(20)), Some(t0 + ms(30)));
    }
}
