//! System calls: `entersyscall`/`exitsyscall` (Go's proc.go), for calls
//! annotated with `gort::blocking` and for blocking calls sysmon detects.
//!
//! Entering a system call, the M keeps its P *loosely*: the P's status
//! becomes `Syscall` and the M remembers it in `oldp`, but no longer uses
//! it. If the call is quick, the M takes the P straight back (a CAS
//! `Syscall → Running`: the fast path, no other thread involved). If it
//! takes long, sysmon retakes the P (a CAS `Syscall → Idle`) and hands it
//! to another M so the P's goroutines keep running (`handoffp`). Exactly
//! one of the two CASes wins.
//!
//! Coming back without a P (`reacquire_p`): an idle P if there is one;
//! else the goroutine waits for a P keeping its thread (`wait_for_turn`,
//! the same path an async preemption takes).
//!
//! Un-annotated calls (`std::thread::sleep`, `std::fs`, a std `Mutex`):
//! sysmon sees a P whose goroutine has run past `BLOCKED_AFTER` while its
//! thread sleeps in the kernel (`/proc/self/task/<tid>/stat`), and asks the
//! thread itself, by signal, to enter the system-call state
//! (`enter_from_signal`): the handler interrupts only goroutine code outside
//! runtime critical sections, so the P is never taken from under a runtime
//! operation. The goroutine comes back through `reacquire_p` at its next
//! runtime call (`preempt::safe_point`); if it computes instead, sysmon
//! preempts it like any other, so no more than `procs` goroutines run user
//! code at once for longer than a slice.
//!
//! A goroutine that a preemption signal finds where it cannot be stopped
//! in place — computing inside a shared library, or too near the bottom of
//! its stack for the preemption frame — enters the system-call state the
//! same way (`preempt.rs`): like Go's cgo calls, a long call into C costs
//! its goroutine the P, not the P's other goroutines their turn.
//!
//! The rule for signals: **no signal of gort's reaches code inside
//! `gort::blocking`.** There the goroutine has given its P up, so it may
//! run as long as it likes, like any thread: nothing is gained by stopping
//! it, and a signal would cost the call `EINTR` (poll, and socket reads
//! with a timeout, are never restarted after a handler), or stop a long
//! computation until a P is free. The M says so in `M::in_blocking` from
//! `enter` until the goroutine takes a P back (`reacquire_p`, at the end
//! of the call or at a runtime call inside it); `preempt::signal` withdraws
//! any request to such an M instead of sending it, sysmon does not ask
//! (`sysmon.rs`), and the handler ignores a signal that finds the flag set.
//! The flag and a request in flight are ordered both ways (SeqCst store,
//! then load, on each side): before `f` runs, `blocking` waits for a
//! request it sees to be delivered or withdrawn, so a signal sysmon decided
//! on just before the flag went up lands before the call, not inside it.
//! An un-annotated call that sysmon detects (`enter_from_signal`) does not
//! set the flag: after it the goroutine may compute on without a P, and
//! must still be preempted.

use std::sync::atomic::Ordering;

use super::m::{M, NoPreempt, current_m};
use super::p::{PPtr, PStatus};
use super::preempt::signal_pending;
use super::{Sched, timers};

/// Run `f`, a call that may block its thread for a long time, letting
/// other goroutines use this goroutine's P meanwhile (Go's
/// `entersyscall`/`exitsyscall`). On a plain thread, just runs `f`.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let Some(m) = current_m().filter(|m| m.curg.get().is_some()) else {
        return f();
    };
    let entered = enter(m);
    // A request sent before the flag went up is delivered now (the handler
    // takes it) or withdrawn by its sender, not during `f`. One a critical
    // section deferred is not on its way: it is raised when the section
    // ends (module header).
    while signal_pending(m) && !m.preempt_pending.get() {
        std::thread::yield_now();
    }
    let r = f();
    // `m` may be stale: a runtime call in `f` may have switched. It took a
    // P back first, which cleared the flag on the M that set it; this
    // clears it on the M we are on, whichever that is.
    if let Some(m) = current_m() {
        m.in_blocking.store(false, Ordering::Relaxed);
    }
    if entered {
        crate::trace::syscall_exit();
    }
    super::preempt::safe_point();
    r
}

/// `entersyscall`: mark the M as inside `blocking` and loosen its hold on
/// its P. Returns false if it held none (the goroutine lost it in an
/// earlier call sysmon detected, and computes on without one): the closure
/// is an annotated call all the same, and marked. On a goroutine.
fn enter(m: &M) -> bool {
    let _section = NoPreempt::enter();
    // SeqCst: ordered before `blocking`'s load of the signal request, as
    // `preempt::signal` orders its request before its load of this flag.
    // (Up while the M still holds its P: a signal withdrawn now would only
    // have stopped a goroutine that is giving its P up anyway.)
    m.in_blocking.store(true, Ordering::SeqCst);
    let Some(p) = m.p.take() else { return false };
    m.oldp.set(Some(p));
    m.syscall_since.store(timers::nanotime().max(1), Ordering::Relaxed);
    crate::trace::syscall_enter(&p, m);
    mark_syscall(m, &p);
    m.sched.nudge_sysmon();
    true
}

/// The SIGURG handler's half of blocked-thread detection, and of
/// preempting a goroutine that computes in a shared library: the same
/// state change as `enter`, made by the thread on itself while it is
/// stopped in goroutine code (so it cannot be using its P). Signal
/// context: atomics and this thread's `Cell`s only.
pub(crate) fn enter_from_signal(m: &M) {
    if let Some(p) = m.p.take() {
        m.oldp.set(Some(p));
        m.syscall_since.store(timers::nanotime().max(1), Ordering::Relaxed);
        mark_syscall(m, &p);
    }
}

/// Put `p`, which `m` has just let go of loosely, in the system-call state,
/// naming the goroutine for the trace (`P::syscall_goid`). Signal-safe.
fn mark_syscall(m: &M, p: &PPtr) {
    let goid = m.curg.get().map_or(0, |g| g.id());
    // Relaxed: published to sysmon by the SeqCst status store below.
    p.syscall_goid.store(goid, Ordering::Relaxed);
    // SeqCst (in `set_status`): after this store sysmon may take the P.
    p.set_syscall();
}

impl Sched {
    /// `exitsyscall`: make sure the running goroutine's M holds a P again —
    /// its old one if sysmon did not take it, else an idle one, else wait
    /// for one keeping the thread. On the goroutine, at a safe point.
    pub(crate) fn reacquire_p(&self, m: &M) {
        // Not preempted while it changes `m`'s P (a preemption would hand
        // it a P of its own halfway through). A preemption that arrives
        // meanwhile is moot once the goroutine has a fresh turn.
        m.locks.set(m.locks.get() + 1);
        // With a P it is an ordinary goroutine again, to be preempted as
        // any (a runtime call inside `blocking`'s closure comes here too).
        m.in_blocking.store(false, Ordering::Relaxed);
        self.reacquire_p_locked(m);
        m.locks.set(m.locks.get() - 1);
        m.preempt_pending.set(false);
        m.signal_request.store(super::preempt::REQUEST_NONE, Ordering::Relaxed);
    }

    fn reacquire_p_locked(&self, m: &M) {
        let g = m.curg.get().expect("reacquire_p on g0");
        if let Some(p) = m.oldp.take() {
            m.syscall_since.store(0, Ordering::Relaxed);
            // Leave a P that is not ours alone: the loser of the two CASes
            // must not touch the P afterwards.
            if p.cas_status(PStatus::Syscall, PStatus::Running) {
                p.holder.store(m as *const M as *mut M, Ordering::Release);
                m.p.set(Some(p));
                return;
            }
        }
        if m.p.get().is_some() {
            return;
        }
        if let Some(p) = self.lock_pidleget() {
            self.acquirep(m, p);
            return;
        }
        self.wait_for_turn(m, g);
    }
}
