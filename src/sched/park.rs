//! Parking and readying: the one way anything in gort waits or wakes
//! (Go's `gopark`/`goready` in proc.go).
//!
//! `gopark(unlock, reason)` suspends the running goroutine. The `unlock`
//! callback runs on g0 *after* the goroutine's context is saved, so a lock
//! the goroutine held while registering itself as a waiter is released only
//! once it is safe to resume it: a waker that takes that lock, finds the
//! goroutine and calls `goready` can never race with the switch. If `unlock`
//! returns false the park is cancelled and the goroutine resumes at once.
//!
//! `goready(g)` makes a parked goroutine runnable: on the waker's own P's
//! `runnext` when the waker is a goroutine of the same runtime (the woken G
//! runs next, on a warm cache — this is what makes ping-pong cheap), else on
//! its runtime's global queue; then `wakep` so an idle P notices.
//!
//! The waiting side may also be a plain OS thread (a `JoinHandle::join` or
//! a channel receive from `main` or a `#[test]`). `Waiter` hides the
//! difference: `Waiter::current()` names whoever is running, `wake()` readies
//! a goroutine or unparks a thread. Each registered waiter is woken exactly
//! once, which is what lets a thread waiter use a one-shot `Note`.
//!
//! `WaitCell` packages the common pattern — a state under a lock, one
//! waiter, wait until a predicate holds — for the small runtime-internal
//! objects (join packets, scopes). User-facing modules build on `gopark`,
//! `goready` and `Waiter` the same way.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::g::{GPtr, GStatus, WaitReason};
use super::lock;
use super::m::{M, NoPreempt, Pending, current_m};
use super::schedule::mcall;
use super::timers::{Fire, start_timer};
use super::wakestate::WakeState;
use crate::os::Note;

/// Park the running goroutine; `unlock` runs on g0 once it is suspended and
/// returns whether to stay parked. Returns when someone `goready`s it.
/// On a goroutine only; `unlock` must not block or park.
///
/// `#[track_caller]` here and on every function between it and the public
/// blocking call records where the user's code waits (`G::parked_at`).
#[track_caller]
pub(crate) fn gopark<F: FnOnce() -> bool>(unlock: F, reason: WaitReason) {
    /// # Safety
    /// `data` points to a live `Option<F>` holding a value.
    unsafe fn call<F: FnOnce() -> bool>(data: *mut ()) -> bool {
        // SAFETY: by the contract, `data` is the `Option<F>` on the parked
        // goroutine's stack, alive because that stack is suspended.
        let f = unsafe { &mut *(data as *mut Option<F>) };
        (f.take().expect("park callback called twice"))()
    }
    let m = current_m().expect("gopark outside a goroutine");
    let g = m.curg.get().expect("gopark on g0");
    g.set_parked(
        reason,
        std::panic::Location::caller(),
        m.sched.coarse_now.load(Ordering::Relaxed),
    );
    let mut slot = Some(unlock);
    mcall(Pending::Park {
        unlock: call::<F>,
        data: &mut slot as *mut Option<F> as *mut (),
    });
}

/// How much of a goroutine's stack `goready` starts loading when the
/// poller wakes it: about the depth of a socket read's frames at its park.
const RESUME_PREFETCH_BYTES: usize = 1024;

/// Make parked goroutine `g` runnable. Any thread.
pub(crate) fn goready(g: GPtr) {
    debug_assert_eq!(g.status(), GStatus::Waiting);
    g.set_wait_reason(WaitReason::None);
    g.set_status(GStatus::Runnable);
    let sched = g.sched();
    let here = current_m();
    // The P's run queue is touched below.
    let _section = NoPreempt::on(here);
    let m = here.filter(|m| std::ptr::eq(&*m.sched, sched));
    let p = m.and_then(|m| m.p.get());
    // How long it was parked, by the coarse clock its park was stamped
    // with: two loads, no clock read (`histogram.rs`).
    let parked_ns = sched.coarse_now.load(Ordering::Relaxed).saturating_sub(g.parked().1);
    match p {
        Some(p) => p.histograms.park_durations.record_owned(parked_ns),
        None => sched.histograms.park_durations.record_shared(parked_ns),
    }
    g.stamp_runnable();
    // A goroutine waking a goroutine tests one M field here, whether or not
    // the tracer exists (`M::detoured`).
    if m.is_none_or(M::detoured) {
        crate::trace::ready(sched, m, g);
        if let Some(m) = m
            && m.collecting()
        {
            // A goroutine the poller wakes has usually been parked while the
            // kernel's network work evicted its stack from this core's
            // caches: start loading the frames it will resume through now,
            // while the rest of the poll's events are handled, instead of
            // stalling on them one by one once it runs.
            // SAFETY: `g` is parked, so its context was saved before it
            // became visible to us, and nothing resumes it until our batch
            // is queued.
            unsafe { (*g.ctx.get()).prefetch(RESUME_PREFETCH_BYTES) };
            let mut batch = m.ready_batch.take();
            batch.push(g);
            m.ready_batch.set(batch);
            return;
        }
    }
    let stealable = match p {
        Some(p) => sched.runqput(&p, g, true),
        None => {
            sched.globrunqput(g);
            true
        }
    };
    // A goroutine that only went into an empty `runnext` is the partner of
    // the one running here, which usually parks within nanoseconds and lets
    // it run: waking an idle M for it would cost a futex wake per hand-off
    // and an M that spins, finds nothing and sleeps again (tokio's LIFO
    // slot makes the same call). If the waker keeps running instead, an
    // already spinning M steals it after the grace, or sysmon ends the
    // slice it would otherwise wait for.
    if stealable {
        sched.wakep();
    }
}

/// Yield the processor: the running goroutine goes to the back of the
/// global queue and others run (Go's `Gosched`). On a plain thread,
/// `std::thread::yield_now`.
pub(crate) fn yield_now() {
    if current_m().is_some_and(|m| m.curg.get().is_some()) {
        // A goroutine back from a system call takes a P first (`mcall`).
        mcall(Pending::Yield);
    } else {
        std::thread::yield_now();
    }
}

/// Parks a plain OS thread: a one-shot note re-armed after each wake-up.
/// The note is shared with the deadlock check's registry of sleeping
/// threads, which reads it to tell a woken sleeper from a sleeping one.
pub(crate) struct ThreadParker {
    note: Arc<Note>,
}

impl ThreadParker {
    /// Sleep until woken, known meanwhile to the deadlock check as a thread
    /// that cannot wake anyone — until the note is set: from the moment of
    /// the wake-up, not from when the OS gets round to running us, the check
    /// counts us as a waker (`debug/threads.rs`).
    fn sleep_untimed(&self) {
        let _asleep = crate::debug::threads::Asleep::enter(&self.note);
        self.note.sleep();
    }
}

thread_local! {
    static PARKER: Arc<ThreadParker> = Arc::new(ThreadParker { note: Arc::new(Note::new()) });
    /// A plain thread's reusable `WaitToken`.
    static THREAD_TOKEN: std::cell::RefCell<Option<Arc<WaitToken>>> = const { std::cell::RefCell::new(None) };
}

/// Whoever waits: a goroutine or a plain thread.
#[derive(Clone)]
pub(crate) enum Waiter {
    Goroutine(GPtr),
    Thread(Arc<ThreadParker>),
}

impl Waiter {
    /// The running goroutine, or else the calling thread.
    pub(crate) fn current() -> Waiter {
        match current_m().and_then(|m| m.curg.get()) {
            Some(g) => Waiter::Goroutine(g),
            None => Waiter::Thread(PARKER.with(Arc::clone)),
        }
    }

    /// Wake this waiter. Each registered waiter is woken exactly once.
    pub(crate) fn wake(self) {
        match self {
            Waiter::Goroutine(g) => goready(g),
            // Setting the note is also what ends the thread's "asleep" for
            // the deadlock check, here, by the waker: the woken thread may
            // not run for a long while, and a report must never fire while
            // it is runnable (`debug/deadlock.rs`).
            Waiter::Thread(t) => t.note.wakeup(),
        }
    }
}

/// Suspend the caller — goroutine or thread — if `register()` returns true
/// (run once the caller is safe to wake: on g0 for a goroutine), until the
/// waiter it registered is woken. If it returns false, return at once.
/// This is the lock-free form of `park_releasing`: `register` is typically
/// a CAS that publishes "a waiter is here" unless the event already happened.
#[track_caller]
pub(crate) fn park_if(register: impl FnOnce() -> bool, reason: WaitReason) {
    if current_m().is_some_and(|m| m.curg.get().is_some()) {
        gopark(register, reason);
    } else if register() {
        PARKER.with(|t| {
            t.sleep_untimed();
            t.note.clear();
        });
    }
}

/// Suspend the caller — goroutine or thread — until its registered
/// `Waiter` is woken, releasing `guard` only once it is safe to be woken.
#[track_caller]
pub(crate) fn park_releasing<T>(guard: super::LockGuard<'_, T>, reason: WaitReason) {
    if current_m().is_some_and(|m| m.curg.get().is_some()) {
        gopark(
            move || {
                drop(guard);
                true
            },
            reason,
        );
    } else {
        drop(guard);
        PARKER.with(|t| {
            t.sleep_untimed();
            t.note.clear();
        });
    }
}

/// A state under a lock plus at most one waiter for it to change.
pub(crate) struct WaitCell<S> {
    inner: Mutex<Slot<S>>,
}

struct Slot<S> {
    state: S,
    waiter: Option<Waiter>,
}

impl<S> WaitCell<S> {
    pub(crate) fn new(state: S) -> WaitCell<S> {
        WaitCell {
            inner: Mutex::new(Slot { state, waiter: None }),
        }
    }

    /// Park until `ready` returns Some, re-checking after every wake-up.
    /// Only one caller may wait at a time.
    #[track_caller]
    pub(crate) fn wait<R>(&self, reason: WaitReason, mut ready: impl FnMut(&mut S) -> Option<R>) -> R {
        let mut slot = lock(&self.inner);
        loop {
            if let Some(r) = ready(&mut slot.state) {
                return r;
            }
            debug_assert!(slot.waiter.is_none(), "two waiters on one WaitCell");
            slot.waiter = Some(Waiter::current());
            park_releasing(slot, reason);
            slot = lock(&self.inner);
        }
    }

    /// Change the state; if `f` returns true, wake the waiter (if any).
    pub(crate) fn update(&self, f: impl FnOnce(&mut S) -> bool) {
        let waiter = {
            let mut slot = lock(&self.inner);
            if f(&mut slot.state) { slot.waiter.take() } else { None }
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

/// The winner's tag when a deadline, not an event, ended the wait.
pub(crate) const TIMED_OUT: usize = usize::MAX;

/// A one-shot wake-up for one waiter registered in possibly several places
/// at once — every channel of a `select`, a wait queue plus a deadline
/// timer — of which exactly one may win (Go's sudog plus `selectDone`).
///
/// A waker first `claim`s the token (a CAS: only one ever succeeds; the
/// others skip this waiter), then does its part of the hand-off (copy a
/// value into the waiter's slot, say), then calls `Claim::done`, which
/// resumes the waiter. The waiter announces that it is parked only on g0,
/// after its context is saved; the state machine (`wakestate.rs`, checked
/// with loom) makes sure a waiter is resumed exactly once, never before the
/// winner's hand-off is complete, and that no wake-up is lost.
pub(crate) struct WaitToken {
    state: WakeState,
    tag: AtomicUsize,
    waiter: Waiter,
}

/// The running goroutine's (or thread's) wait token, lent for one wait
/// by `WaitToken::lend`: it derefs to the `Arc` that queues and timers
/// clone, and goes back to its owner's cache when dropped. Lending it out
/// rather than handing out a clone of the cached `Arc` saves three atomic
/// read-modify-writes per wait — the clone, its drop, and `Arc::get_mut`'s
/// uniqueness check — which was an eighth of a channel hand-off's cost
/// (`pingpong` 240 → 212 ns per round trip, `ring` 108 → 95 ns per hop,
/// medians of 10 interleaved runs). Dropped by the goroutine or thread it
/// was made for; anywhere else the token is just released.
pub(crate) struct TokenLoan(ManuallyDrop<Arc<WaitToken>>);

impl Deref for TokenLoan {
    type Target = Arc<WaitToken>;

    fn deref(&self) -> &Arc<WaitToken> {
        &self.0
    }
}

impl Drop for TokenLoan {
    fn drop(&mut self) {
        // SAFETY: `self.0` is not touched again.
        let token = unsafe { ManuallyDrop::take(&mut self.0) };
        let (g, at_home) = match &token.waiter {
            Waiter::Goroutine(g) => (Some(*g), current_m().and_then(|m| m.curg.get()) == Some(*g)),
            // At thread exit the cache may be gone: then just release.
            Waiter::Thread(parker) => (None, PARKER.try_with(|ours| Arc::ptr_eq(ours, parker)) == Ok(true)),
        };
        if !at_home {
            return;
        }
        match g {
            Some(g) => {
                // SAFETY: only the running goroutine touches its own cached
                // token, and we are it.
                unsafe { &mut *g.token.get() }.get_or_insert(token);
            }
            None => {
                let _ = THREAD_TOKEN.try_with(|t| {
                    t.borrow_mut().get_or_insert(token);
                });
            }
        }
    }
}

/// The right — and the duty — to complete a waiter's wait, won by
/// `WaitToken::claim`. It owns the token, so it may outlive whatever queue
/// entry it was found in.
pub(crate) struct Claim {
    token: Arc<WaitToken>,
}

impl WaitToken {
    /// Whether a waker has claimed this token's current wait (its waiter is
    /// being woken or has been).
    pub(crate) fn is_claimed(&self) -> bool {
        self.state.is_claimed()
    }

    /// A token for the running goroutine (or thread). Each goroutine and
    /// thread keeps one and lends it out for each wait (`TokenLoan`),
    /// reusing it whenever nothing else refers to it any more (no queue
    /// entry, no timer), so waiting allocates only when an old wait's token
    /// is still referenced somewhere, or while a wait is already lent one.
    pub(crate) fn lend() -> TokenLoan {
        fn reuse_or_make(slot: &mut Option<Arc<WaitToken>>, waiter: impl FnOnce() -> Waiter) -> Arc<WaitToken> {
            match slot.take() {
                // No `Weak` to a token is ever made, so a strong count of
                // one means nobody else can reach it.
                Some(token) if Arc::strong_count(&token) == 1 => {
                    // The count was read Relaxed; Acquire pairs with the
                    // Release decrement of whoever dropped the last other
                    // reference, so their uses happen before the reset.
                    fence(Ordering::Acquire);
                    token.state.reset();
                    token.tag.store(0, Ordering::Relaxed);
                    token
                }
                _ => Arc::new(WaitToken {
                    state: WakeState::new(),
                    tag: AtomicUsize::new(0),
                    waiter: waiter(),
                }),
            }
        }
        let token = match current_m().and_then(|m| m.curg.get()) {
            // SAFETY: only the running goroutine touches its own cached token.
            Some(g) => reuse_or_make(unsafe { &mut *g.token.get() }, || Waiter::Goroutine(g)),
            None => {
                THREAD_TOKEN.with(|t| reuse_or_make(&mut t.borrow_mut(), || Waiter::Thread(PARKER.with(Arc::clone))))
            }
        };
        TokenLoan(ManuallyDrop::new(token))
    }

    /// Try to become the one who completes this wait; `tag` tells the
    /// waiter who it was (a select case index, or `TIMED_OUT`). Consumes a
    /// reference to the token (wakers usually hold one from a queue entry).
    /// Any thread.
    pub(crate) fn claim(token: Arc<WaitToken>, tag: usize) -> Option<Claim> {
        if !token.state.claim() {
            return None;
        }
        // Relaxed: published to the waiter by `complete`'s Release.
        token.tag.store(tag, Ordering::Relaxed);
        Some(Claim { token })
    }

    /// Park until a claim completes, or `deadline` passes; returns the
    /// winner's tag (`TIMED_OUT` for the deadline). The caller must have
    /// registered the token wherever a waker will look for it, and must
    /// withdraw the losing registrations afterwards.
    #[track_caller]
    pub(crate) fn wait(self: &Arc<Self>, deadline: Option<Instant>, reason: WaitReason) -> usize {
        match &self.waiter {
            Waiter::Goroutine(g) => {
                super::chaos::point();
                let timer = deadline.map(|d| {
                    // SAFETY: a token is waited on only by the goroutine it
                    // was made for (`new`), running now, and only the running
                    // goroutine touches its own timer slot.
                    let slot = unsafe { &mut *g.timer.get() };
                    start_timer(d, Fire::TimeOut(Arc::clone(self)), slot)
                });
                gopark(|| self.state.announce_parked(), reason);
                if let Some(t) = timer {
                    t.cancel();
                }
            }
            Waiter::Thread(parker) => {
                let woken = match deadline {
                    None => {
                        parker.sleep_untimed();
                        true
                    }
                    Some(d) => parker.note.sleep_until(d),
                };
                if !woken {
                    // Time is up: claim it ourselves, unless a waker beat us
                    // to it, in which case its wake-up is on the way.
                    match WaitToken::claim(Arc::clone(self), TIMED_OUT) {
                        Some(c) => c.done(),
                        None => parker.note.sleep(),
                    }
                }
                parker.note.clear();
            }
        }
        // `is_complete`'s Acquire pairs with `complete`'s Release: the
        // winner's hand-off (a value written into our slot) is visible.
        let complete = self.state.is_complete();
        debug_assert!(complete);
        self.tag.load(Ordering::Relaxed)
    }
}

impl Claim {
    /// The hand-off is complete: resume the waiter.
    pub(crate) fn done(self) {
        let parked = self.token.state.complete();
        // Let go of the token before resuming its waiter: one that finds
        // it still shared when it next waits has to make another (a woken
        // thread often does, its next wait beginning before we return).
        let waiter = self.token.waiter.clone();
        drop(self);
        match waiter {
            Waiter::Goroutine(_) if !parked => {}
            waiter => waiter.wake(),
        }
    }
}
