//! Timers: a 4-ary min-heap per P, run by the scheduler (Go 1.14+'s
//! design, time.go).
//!
//! A timer is a deadline and a callback. It lives in the heap of the P
//! that started it (a thread without a P uses P 0), under that heap's own
//! lock. The commonest callback, timing out a wait token (every sleep and
//! every deadline), is not boxed (`Fire`), and each goroutine keeps the
//! timer of its last timed wait for the next (`TimerSlot`, Go's `g.timer`):
//! a goroutine that sleeps in a loop allocates nothing. The earliest
//! deadline of each heap is mirrored in an atomic (`P::timer0`), so
//! `find_runnable` can tell without locking — and without reading the
//! clock when a P has no timers — whether anything is due.
//!
//! Who runs due timers: an M running its P's scheduler loop checks that P's
//! heap on every pass; an M that has found no work runs the due timers of
//! every P, idle ones included; and when every P is idle, one M — the
//! *sleeper*, `Locked::sleeper` — sleeps (in the network poll, or on its
//! note) exactly until the earliest deadline of all heaps (`sched/poll.rs`).
//! Starting a timer earlier than the sleeper's deadline wakes it to sleep
//! less (Go's `wakeNetPoller`).
//!
//! Callbacks run on g0 or on the thread that found them due, outside every
//! heap lock; they must not block or park (they ready goroutines, claim
//! wait tokens, send on buffered channels without blocking).
//!
//! Stopping is lazy: `TimerRef::cancel` flips the timer's state and drops
//! its callback, and its heap entry, which holds nothing else, is dropped
//! when it reaches the top, or by a sweep once more than half of a heap is
//! dead entries. Callbacks are never dropped under a heap lock: one may own
//! the last handle of something whose drop takes locks and readies
//! goroutines (a channel timer's sender).
//!
//! Dead means cancelled, or no longer wanted: a timer may come with a weak
//! handle on whoever would care that it fires (`Wanted`), and once that is
//! gone or says no, the sweep drops the entry as if it had been cancelled.
//! Channel timers use this for Go 1.23's rule that a timer nobody can
//! receive from any more is freed before it is due (`time.After` in a
//! `select` loop): the handle is on the channel, and their callback is
//! taken out of the timer too, as it owns the channel's sender, which owns
//! the timer's handle, a cycle that would otherwise keep both alive.
//!
//! Durations at the edges (one rule for every API that takes a timeout,
//! through `deadline_after`): zero is a deadline of now, due at once; a
//! deadline past the end of the clock — `Instant::now() + d` overflowing,
//! or beyond the 584 years `nanotime` counts — is *never*, `None`, and
//! nothing is armed for it: the wait has no timer. A channel timer for
//! never (`time::after(Duration::MAX)`) must still own its channel's
//! sender, or its receivers would see the channel disconnected, ready at
//! once: it is queued at `NEVER`, which no clock reaches, and freed with
//! its receivers like any other; a timer at `NEVER`, or any deadline
//! clamped to it, wakes no one (`has_pending`). Arithmetic on deadlines
//! saturates.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::m::current_m;
use super::p::PPtr;
use super::park::{TIMED_OUT, WaitToken};
use super::{MAX_PROCS, Sched, lock, lock_sched};

/// Most due timers `run_timers` takes out per heap lock.
const RUN_BATCH: usize = 16;

/// `P::timer0` when the heap is empty.
pub(crate) const NO_TIMER: u64 = u64::MAX;

/// The deadline of a timer that never fires (module header): `nanotime`
/// never gets there, and `nanotime_of` clamps every later instant to it.
const NEVER: u64 = NO_TIMER - 1;

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

/// What a timer does when it fires.
pub(crate) enum Fire {
    /// Time a wait out: claim the waiter's token for `TIMED_OUT` and resume
    /// it. Every sleep and every deadline is one, so it is not boxed.
    TimeOut(Arc<WaitToken>),
    /// Anything else (channel timers).
    Call(Box<dyn FnOnce() + Send>),
}

impl Fire {
    fn run(self) {
        match self {
            Fire::TimeOut(token) => {
                if let Some(claim) = WaitToken::claim(token, TIMED_OUT) {
                    claim.done();
                }
            }
            Fire::Call(f) => f(),
        }
    }
}

/// Whoever would care that a timer fires (module header).
pub(crate) trait Wanted: Send + Sync {
    /// Whether firing still matters to anyone. Once false, never true
    /// again. Called under a heap lock: no locks, no blocking. The heap
    /// upgrades its weak handle for the call, and the upgrade may turn out
    /// to be the last reference (the timer cancelled, its callback and
    /// owner dropped meanwhile), whose drop then runs under that lock: it
    /// must take no lock and wake no one (a channel's core with no sender
    /// or receiver left, which only frees memory).
    fn still_wanted(&self) -> bool;
}

struct TimerState {
    state: AtomicU8,
    /// Some while PENDING; taken by whoever moves `state` out of PENDING.
    f: UnsafeCell<Option<Fire>>,
    /// Fixed at creation; `None` for timers that are always wanted.
    wanted: Option<Weak<dyn Wanted>>,
}

impl TimerState {
    fn new(f: Fire, wanted: Option<Weak<dyn Wanted>>) -> Arc<TimerState> {
        Arc::new(TimerState {
            state: AtomicU8::new(PENDING),
            f: UnsafeCell::new(Some(f)),
            wanted,
        })
    }

    /// Pending, and wanted by someone.
    fn is_live(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PENDING
            && self
                .wanted
                .as_ref()
                .is_none_or(|w| w.upgrade().is_some_and(|w| w.still_wanted()))
    }

    /// Cancel the timer if it is pending, taking its callback, which will
    /// never run, for the caller to drop.
    fn cancel_taking_callback(&self) -> Option<Fire> {
        self.state
            .compare_exchange(PENDING, CANCELLED, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: we won the CAS out of PENDING, so `f` is ours alone.
        unsafe { (*self.f.get()).take() }
    }
}

// SAFETY: `f` is accessed only by the single winner of the CAS out of
// PENDING, or by whoever holds the only reference (a `TimerSlot` reusing
// it, or the last drop); Fire is Send, and `wanted` is immutable and
// Send + Sync.
unsafe impl Sync for TimerState {}

/// A started timer; `cancel` stops it if it has not fired.
pub(crate) struct TimerRef(Arc<TimerState>);

impl TimerRef {
    /// Stop the timer. Returns true if this prevented the callback, which
    /// is then dropped at once: it may hold what its owner wants to reuse
    /// (a wait token), and the heap entry may stay until a sweep.
    pub(crate) fn cancel(&self) -> bool {
        self.0.cancel_taking_callback().is_some()
    }
}

/// A timer kept by its owner for its next start (a goroutine's timed
/// waits, as Go's `g.timer`): reused once nothing else refers to it — it
/// fired, or its cancelled heap entry is gone — so a sleep allocates
/// nothing in the common case.
#[derive(Default)]
pub(crate) struct TimerSlot(Option<Arc<TimerState>>);

struct Entry {
    when: u64,
    seq: u64,
    timer: Arc<TimerState>,
}

impl Entry {
    fn key(&self) -> (u64, u64) {
        (self.when, self.seq)
    }
}

/// What a sweep took out of a heap, for the caller to drop once the heap
/// is unlocked: dead entries, and the callbacks of unwanted ones.
#[derive(Default)]
#[must_use]
pub(crate) struct Swept {
    entries: Vec<Entry>,
    callbacks: Vec<Fire>,
}

/// One P's timers.
#[derive(Default)]
pub(crate) struct TimerHeap {
    entries: Vec<Entry>,
    seq: u64,
    /// Pushes since the last look for cancelled entries: looking costs
    /// O(n), so it is done once per n/2 pushes (amortised O(1)). Not n: a
    /// heap that only grows would gain one entry per push and never catch up.
    pushes_since_sweep: usize,
}

impl TimerHeap {
    /// Add a timer; returns what was swept out meanwhile.
    fn push(&mut self, when: u64, timer: Arc<TimerState>) -> Swept {
        // Here, not only when timers run: far-off timers that are started
        // and cancelled (or abandoned) over and over — an I/O deadline per
        // read, a `time::after` per `select` — would otherwise pile up until
        // the first of them is due.
        let swept = self.sweep_if_mostly_dead();
        self.seq += 1;
        self.pushes_since_sweep += 1;
        self.entries.push(Entry {
            when,
            seq: self.seq,
            timer,
        });
        self.sift_up(self.entries.len() - 1);
        swept
    }

    fn pop(&mut self) -> Option<Entry> {
        let last = self.entries.pop()?;
        if self.entries.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.entries[0], last);
        self.sift_down(0);
        Some(top)
    }

    /// Entries, cancelled ones included (`schedtrace`).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether any entry may still fire for someone.
    fn has_pending(&self) -> bool {
        self.entries.iter().any(|e| e.when != NEVER && e.timer.is_live())
    }

    fn peek_when(&self) -> u64 {
        self.entries.first().map_or(NO_TIMER, |e| e.when)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.entries[i].key() >= self.entries[parent].key() {
                break;
            }
            self.entries.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.entries.len();
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let smallest = (first..(first + 4).min(n))
                .min_by_key(|&c| self.entries[c].key())
                .expect("at least one child");
            if self.entries[smallest].key() >= self.entries[i].key() {
                break;
            }
            self.entries.swap(i, smallest);
            i = smallest;
        }
    }

    /// Take out the dead entries if they are the majority, looking once
    /// per `entries.len() / 2` pushes.
    fn sweep_if_mostly_dead(&mut self) -> Swept {
        let mut swept = Swept::default();
        if self.entries.len() < 64 || 2 * self.pushes_since_sweep < self.entries.len() {
            return swept;
        }
        self.pushes_since_sweep = 0;
        if self.entries.iter().filter(|e| e.timer.is_live()).count() * 2 > self.entries.len() {
            return swept;
        }
        swept.entries = self.entries.extract_if(.., |e| !e.timer.is_live()).collect();
        for i in (0..self.entries.len()).rev() {
            self.sift_down(i);
        }
        swept.callbacks = swept
            .entries
            .iter()
            .filter_map(|e| e.timer.cancel_taking_callback())
            .collect();
        swept
    }
}

/// A heap goes with its runtime (`Sched::drop`, when no goroutine of it is
/// left): its pending timers will never fire, so their callbacks are
/// dropped now, not with the last handle on each timer. A channel timer's
/// callback owns the sending side that owns that handle (module header);
/// dropping it frees both, and a thread still receiving from the channel
/// sees it disconnected instead of waiting for good.
impl Drop for TimerHeap {
    fn drop(&mut self) {
        for e in &self.entries {
            drop(e.timer.cancel_taking_callback());
        }
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`: the timers' clock, and the runtime's
/// (park stamps, the poller's last poll, trace timestamps). It is the clock
/// std's `Instant` reads on Linux, read here directly: the scheduler asks
/// for it on every pass of a P with timers, and `Instant` arithmetic (its
/// checked `timespec` subtraction and 128-bit nanoseconds) cost more than
/// the read itself.
pub(crate) fn nanotime() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// One `Instant` pinned on the `nanotime` scale, for converting between the
/// two: `Instant` hides its raw value, so the clock is read just before and
/// just after it. `before <= raw(instant) <= after`, a few tens of
/// nanoseconds apart.
struct Epoch {
    before: u64,
    instant: Instant,
    after: u64,
}

fn epoch() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| {
        let before = nanotime();
        let instant = Instant::now();
        Epoch {
            before,
            instant,
            after: nanotime(),
        }
    })
}

/// The `nanotime` of instant `t` (a deadline the user gave), rounded late
/// by the epoch's uncertainty so that a timer never fires before its
/// `Instant`.
pub(crate) fn nanotime_of(t: Instant) -> u64 {
    let e = epoch();
    let nanos = match t.checked_duration_since(e.instant) {
        Some(later) => e.after.saturating_add(saturating_nanos(later)),
        None => e.after.saturating_sub(saturating_nanos(e.instant - t)),
    };
    nanos.min(NEVER)
}

/// The deadline `d` from now; `None` for never: past the end of `Instant`,
/// or beyond `nanotime`'s range (module header). Every timeout of the
/// runtime goes through here.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d).filter(|&t| nanotime_of(t) != NEVER)
}

/// `d` in nanoseconds, `u64::MAX` if it does not fit (584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The instant of a `nanotime` value, rounded late like `nanotime_of`
/// (a sleep until it never ends early).
pub(crate) fn instant_of(t: u64) -> Instant {
    let e = epoch();
    match t.checked_sub(e.before) {
        Some(later) => e
            .instant
            .checked_add(Duration::from_nanos(later))
            .unwrap_or_else(|| e.instant + Duration::from_secs(1 << 32)),
        None => e
            .instant
            .checked_sub(Duration::from_nanos(e.before - t))
            .unwrap_or(e.instant),
    }
}

/// Run `f` at (or soon after) `when` unless cancelled first, with the timer
/// kept in `slot` if it is free, else a new one that `slot` then keeps. Any
/// thread; on the current runtime (the caller's, else the default one).
pub(crate) fn start_timer(when: Instant, f: Fire, slot: &mut TimerSlot) -> TimerRef {
    crate::runtime::with_current(|sched| {
        let timer = match slot.0.as_mut().and_then(Arc::get_mut) {
            Some(unique) => {
                *unique.state.get_mut() = PENDING;
                *unique.f.get_mut() = Some(f);
                Arc::clone(slot.0.as_ref().expect("just reused"))
            }
            None => Arc::clone(slot.0.insert(TimerState::new(f, None))),
        };
        push_timer(sched, nanotime_of(when), timer)
    })
}

/// Run `f` at (or soon after) `when` on runtime `sched`, with a timer of its
/// own; `None`: never, though the timer is queued, holding `f`, until it is
/// cancelled or unwanted. The timer may be dropped unfired once `wanted` is
/// gone or says it is no longer wanted (module header).
pub(crate) fn start_timer_on(
    sched: &Sched,
    when: Option<Instant>,
    f: Fire,
    wanted: Option<Weak<dyn Wanted>>,
) -> TimerRef {
    push_timer(sched, when.map_or(NEVER, nanotime_of), TimerState::new(f, wanted))
}

/// Queue a pending `timer` on the caller's P if it is one of `sched`'s,
/// else on P 0.
fn push_timer(sched: &Sched, when: u64, timer: Arc<TimerState>) -> TimerRef {
    let p = current_m()
        .filter(|m| std::ptr::eq(&*m.sched, sched))
        .and_then(|m| m.p.get())
        .or_else(|| sched.p(0))
        .expect("a runtime has P 0");
    let swept = {
        let mut heap = lock(&p.timers);
        let swept = heap.push(when, Arc::clone(&timer));
        p.timer0.store(heap.peek_when(), Ordering::SeqCst);
        swept
    };
    drop(swept);
    // No M needs to wake for a timer that never fires.
    if when != NEVER {
        sched.wake_for_timer(when);
    }
    TimerRef(timer)
}

impl Sched {
    /// Run `p`'s due timers. Any thread that may run callbacks (g0 or a
    /// thread holding no runtime lock).
    pub(crate) fn run_timers(&self, p: &PPtr, now: u64) {
        loop {
            if p.timer0.load(Ordering::Relaxed) > now {
                return;
            }
            // Taken in batches into an array, not a Vec: a P whose goroutine
            // sleeps in a loop would otherwise allocate once per sleep.
            let mut due: [Option<Fire>; RUN_BATCH] = [const { None }; RUN_BATCH];
            let mut n = 0;
            {
                let mut heap = lock(&p.timers);
                while n < RUN_BATCH && heap.peek_when() <= now {
                    let e = heap.pop().expect("peeked");
                    if e.timer
                        .state
                        .compare_exchange(PENDING, FIRED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        // SAFETY: we won the PENDING→FIRED CAS, so `f` is
                        // ours alone.
                        due[n] = unsafe { (*e.timer.f.get()).take() };
                        n += 1;
                    }
                    // The entry goes here, under the lock: a fired or
                    // cancelled timer holds no callback (module header), and
                    // letting go of it before the callback runs leaves it
                    // free for the goroutine it resumes (`TimerSlot`).
                }
                p.timer0.store(heap.peek_when(), Ordering::SeqCst);
            }
            if n > 0 {
                self.events.timers_fired.fetch_add(n as u64, Ordering::Relaxed);
            }
            for f in due[..n].iter_mut().filter_map(Option::take) {
                f.run();
            }
            if n < RUN_BATCH {
                return;
            }
        }
    }

    /// Whether a timer anywhere may still fire: the deadlock check's "a
    /// timer will wake someone". O(timers); only for that rare check.
    pub(crate) fn has_pending_timers(&self) -> bool {
        self.all_ps().any(|p| lock(&p.timers).has_pending())
    }

    /// Entries in every P's heap, dead ones included (`Metrics`).
    pub(crate) fn timers_queued(&self) -> usize {
        self.all_ps().map(|p| lock(&p.timers).len()).sum()
    }

    /// Every P ever created (retired ones may still hold timers).
    fn all_ps(&self) -> impl Iterator<Item = PPtr> + '_ {
        (0..MAX_PROCS).map_while(|i| self.p(i))
    }

    /// The earliest deadline of every P's heap (`NO_TIMER`: none).
    pub(crate) fn earliest_timer(&self) -> u64 {
        // SeqCst: ordered after an idle-going M's `nmspinning`/`npidle`
        // updates, against a starter's `timer0` store then `wakep`
        // (`wake_for_timer`).
        self.all_ps()
            .map(|p| p.timer0.load(Ordering::SeqCst))
            .min()
            .unwrap_or(NO_TIMER)
    }

    /// Run the due timers of every P; returns the earliest deadline left.
    pub(crate) fn run_all_timers(&self) -> u64 {
        let mut next = self.earliest_timer();
        if next == NO_TIMER {
            return next;
        }
        let now = nanotime();
        if next <= now {
            for p in self.all_ps() {
                self.run_timers(&p, now);
            }
            next = self.earliest_timer();
        }
        next
    }

    /// A timer due at `when` was started: make sure some M will run it.
    pub(crate) fn wake_for_timer(&self, when: u64) {
        // SeqCst, after our `timer0` store: if we see no sleeper, one may
        // still register having scanned the heaps just before our timer
        // landed; `wakep` then starts an M, or finds one spinning or a P
        // busy — and an M that stops spinning or gives up its P reads the
        // heaps again before it sleeps (`find_runnable`), sees our timer and
        // sleeps no later than it (`sleep_until_work`). A sleeper due no
        // later than us needs nothing.
        match self.timer_sleep_until.load(Ordering::SeqCst) {
            NO_TIMER => return self.wakep(),
            until if until <= when => return,
            _ => {}
        }
        let l = lock_sched(&self.lock);
        if let Some(s) = l.sleeper {
            if s.until > when {
                self.wake_sleeper_locked(s);
            }
            return;
        }
        drop(l);
        // Nobody sleeps on the timers: if every P is idle, start an M so
        // that one becomes the timer sleeper; busy Ms check their heaps on
        // every scheduling pass anyway.
        self.wakep();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::super::m::current_m;
    use super::{Fire, TimerHeap, TimerRef, TimerState, Wanted, instant_of, nanotime, nanotime_of};

    fn timer() -> Arc<TimerState> {
        TimerState::new(Fire::Call(Box::new(|| {})), None)
    }

    /// Once most entries are cancelled, a push hands them back to its
    /// caller (who drops them unlocked) and the heap stays ordered.
    #[test]
    fn a_push_sweeps_out_a_cancelled_majority_and_keeps_the_order() {
        let mut heap = TimerHeap::default();
        let first: Vec<_> = (0..100).map(|_| timer()).collect();
        for (i, t) in first.iter().enumerate() {
            assert!(heap.push(1000 - i as u64, Arc::clone(t)).entries.is_empty());
        }
        for t in &first[..80] {
            assert!(TimerRef(Arc::clone(t)).cancel());
        }
        // The heap looks once per `len / 2` pushes (it looked last at 64).
        let swept: Vec<_> = (0..100).flat_map(|i| heap.push(5000 + i, timer()).entries).collect();
        assert_eq!(swept.len(), 80);
        assert!(swept.iter().all(|e| e.when > 920));
        assert_eq!(heap.len(), 120);
        let mut last = 0;
        while let Some(e) = heap.pop() {
            assert!(e.when >= last);
            last = e.when;
        }
    }

    /// Stopping a timer drops its callback at once, releasing what it
    /// holds (a goroutine's wait token, which it then reuses), although the
    /// heap entry stays until a sweep.
    #[test]
    fn cancel_drops_the_callback() {
        let held = Arc::new(());
        let in_callback = Arc::clone(&held);
        let t = TimerRef(TimerState::new(Fire::Call(Box::new(move || drop(in_callback))), None));
        let mut heap = TimerHeap::default();
        assert!(heap.push(1, Arc::clone(&t.0)).entries.is_empty());
        assert_eq!(Arc::strong_count(&held), 2);
        assert!(t.cancel());
        assert_eq!(Arc::strong_count(&held), 1);
        assert!(!t.cancel(), "only the first cancel stops it");
        assert_eq!(heap.len(), 1);
    }

    /// A goroutine's timed waits use one timer while each has fired and
    /// left the heap before the next starts (`TimerSlot`).
    #[test]
    fn a_goroutines_sleeps_reuse_its_timer() {
        /// The address of the running goroutine's kept timer (0: none).
        fn slot_timer() -> usize {
            let g = current_m().and_then(|m| m.curg.get()).expect("on a goroutine");
            // SAFETY: the running goroutine reads its own slot.
            unsafe { (*g.timer.get()).0.as_ref().map_or(0, |t| Arc::as_ptr(t) as usize) }
        }
        let (first, second) = crate::run(|| {
            crate::go(|| {
                crate::time::sleep(Duration::from_millis(1));
                let first = slot_timer();
                crate::time::sleep(Duration::from_millis(1));
                (first, slot_timer())
            })
            .join()
            .unwrap()
        });
        assert_ne!(first, 0);
        assert_eq!(first, second);
    }

    /// Someone who stops caring about a set of timers.
    struct Interest(AtomicBool);

    impl Wanted for Interest {
        fn still_wanted(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// Timers whose `Wanted` says no, or is gone, are swept like cancelled
    /// ones, and their callbacks (which own what they would fire for) are
    /// taken out of them; timers still wanted stay.
    #[test]
    fn a_sweep_drops_timers_nobody_wants_with_their_callbacks() {
        let interest = Arc::new(Interest(AtomicBool::new(true)));
        let gone = Arc::new(Interest(AtomicBool::new(true)));
        let fired = Arc::new(AtomicUsize::new(0));
        let timer_for = |who: &Arc<Interest>| {
            let fired = Arc::clone(&fired);
            let who: Arc<dyn Wanted> = who.clone();
            TimerState::new(
                Fire::Call(Box::new(move || {
                    fired.fetch_add(1, Ordering::Relaxed);
                })),
                Some(Arc::downgrade(&who)),
            )
        };
        let mut heap = TimerHeap::default();
        let unwanted: Vec<_> = (0..40).map(|_| timer_for(&interest)).collect();
        let orphaned: Vec<_> = (0..40).map(|_| timer_for(&gone)).collect();
        for (i, t) in unwanted.iter().chain(&orphaned).enumerate() {
            assert!(heap.push(i as u64, Arc::clone(t)).entries.is_empty());
        }
        interest.0.store(false, Ordering::Relaxed);
        drop(gone);
        let swept: Vec<_> = (0..100).map(|i| heap.push(1000 + i, timer())).collect();
        let entries: usize = swept.iter().map(|s| s.entries.len()).sum();
        let callbacks: usize = swept.iter().map(|s| s.callbacks.len()).sum();
        assert_eq!((entries, callbacks), (80, 80));
        assert_eq!(heap.len(), 100);
        assert!(unwanted.iter().chain(&orphaned).all(|t| !t.is_live()));
        assert!(
            !TimerRef(Arc::clone(&unwanted[0])).cancel(),
            "already cancelled by the sweep"
        );
        drop(swept);
        assert_eq!(fired.load(Ordering::Relaxed), 0, "dropped, not run");
    }

    /// A timer at `nanotime_of(t)` is due only once `Instant::now()` has
    /// reached `t`.
    #[test]
    fn a_deadline_converted_to_nanotime_is_never_early() {
        for offset_us in [0, 1, 50, 1000] {
            let t = Instant::now() + Duration::from_micros(offset_us);
            let when = nanotime_of(t);
            while nanotime() < when {
                std::hint::spin_loop();
            }
            assert!(Instant::now() >= t, "due {offset_us} µs deadline before its instant");
        }
    }

    /// A sleep until `instant_of(n)` ends only once `nanotime()` has reached `n`.
    #[test]
    fn a_nanotime_converted_to_an_instant_is_never_early() {
        for offset_ns in [0, 1_000, 50_000, 1_000_000] {
            let n = nanotime() + offset_ns;
            let until = instant_of(n);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            assert!(
                nanotime() >= n,
                "instant for +{offset_ns} ns reached before its nanotime"
            );
        }
    }

    #[test]
    fn conversions_round_trip_within_the_epochs_uncertainty() {
        let e = super::epoch();
        let slack = Duration::from_nanos(e.after - e.before);
        let t = Instant::now() + Duration::from_secs(3);
        let back = instant_of(nanotime_of(t));
        assert!(back >= t && back - t <= 2 * slack, "{t:?} came back as {back:?}");
        let far_past = e.instant - Duration::from_millis(5);
        assert!(instant_of(nanotime_of(far_past)) >= far_past);
    }
}
