//! The scheduler's trace hooks: one call per place where something worth
//! tracing happens, each a single line in `sched/`.
//!
//! Every hook is an inlined test of `ENABLED` (a relaxed load of a static,
//! a branch the CPU predicts) in front of an out-of-line `#[cold]`
//! recording function, so tracing costs the scheduler next to nothing while
//! it is off and the clock is read only while it is on. The hooks are left
//! to LLVM to inline rather than marked `#[inline]`: an `#[inline]` function
//! may be inlined into other crates, which makes rustc export the static it
//! reads, and an exported static is read through the GOT (two dependent
//! loads instead of one).
//!
//! The three on the hot path of every goroutine switch cost less still.
//! `execute` tests `ENABLED` once per slice and runs in one of two
//! variants (a const parameter), the untraced one without the slice's
//! hooks (`slice_begin`, `slice_end`) at all. `goready` tests no flag of
//! its own but the M's `detoured` byte pair, which it reads anyway for
//! network polls: a traced slice sets the M's `tracing` byte, and so does
//! `find_runnable` while tracing, before it runs timers on g0; the first
//! `ready` after tracing stops clears it. So a trace that starts mid-slice
//! is seen from each M's next slice on, and from its next timers.
//!
//! Slices: a goroutine's stretch on a P begins when `execute` switches to
//! it, or when a running goroutine's M takes a P (`acquirep`: back from a
//! system call whose P was retaken, or resumed after an asynchronous
//! preemption); it ends when it switches back to g0, when a running
//! goroutine's M lets its P go (`releasep` in the preemption hook), or when
//! sysmon retakes the P from a system call. A quick system call keeps the
//! slice open: the P was the goroutine's all along. Which goroutine has a
//! slice open is kept with the P's buffer, so that the end can be recorded
//! by whoever ends it.
//!
//! Context rules: hooks on a P's buffer run as that P's owner; the three that
//! run in the asynchronous preemption hook (`acquired`, `released`,
//! `preempted`) never allocate (`Alloc::No`). No hook runs in a signal
//! handler.

use std::sync::atomic::Ordering;

use super::buffer::{Alloc, ENABLED, Track, record_global};
use super::event::{Event, Preemption, Reason};
use crate::sched::{GPtr, M, P, Pending, Sched, current_m};

/// Whether tracing is on: `execute` asks once per slice and runs a variant
/// with or without the slice hooks below.
#[inline(always)]
pub(crate) fn on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `execute` on `m`, tracing, is about to run `g` on `p`; `m` notes that
/// it traces, for `goready`'s `ready` events.
pub(crate) fn slice_begin(m: &M, p: &P, g: GPtr) {
    m.set_tracing(true);
    begin(p, g, Alloc::Yes);
}

/// The goroutine `g`, traced from `slice_begin`, switched back to g0 to do
/// `pending`: its slice on `p` ends, and a park or yield is recorded (on g0,
/// before a park's callback runs). An exit needs no event of its own.
pub(crate) fn slice_end(p: &P, g: GPtr, pending: &Pending) {
    end(p, Alloc::Yes);
    let goid = g.id();
    let event = match pending {
        Pending::Park { .. } => Event::Park {
            goid,
            reason: Reason::of(g.wait_reason()),
        },
        Pending::Yield if p.preempt.load(Ordering::Relaxed) => Event::Preempt {
            goid,
            how: Preemption::Cooperative,
        },
        Pending::Yield => Event::Yield { goid },
        Pending::Exit | Pending::None => return,
    };
    p.trace.record(Alloc::Yes, |r| r.emit(event));
}

/// `m` took `p` (`acquirep`); if it runs a goroutine, that one now runs on `p`.
pub(crate) fn acquired(m: &M, p: &P) {
    if on() {
        acquired_cold(m, p);
    }
}

/// `m` let `p` go (`releasep`); if it runs a goroutine, that one stops running on `p`.
pub(crate) fn released(m: &M, p: &P) {
    if on() {
        released_cold(m, p);
    }
}

/// SIGURG stopped `g` on `p` (in the preemption hook: no allocation).
pub(crate) fn preempted(p: &P, g: GPtr) {
    if on() {
        preempted_cold(p, g);
    }
}

/// `g` was spawned on `sched`, by the goroutine running on `m` if any.
pub(crate) fn spawn(sched: &Sched, m: Option<&M>, g: GPtr) {
    if on() {
        spawn_cold(sched, m, g);
    }
}

/// Parked `g` of `sched` was made runnable, from `m` if the waker is an M of `sched`.
/// Called only off `goready`'s fast path (`M::detoured`).
pub(crate) fn ready(sched: &Sched, m: Option<&M>, g: GPtr) {
    if on() {
        ready_cold(sched, m, g);
    } else if let Some(m) = m {
        // Tracing stopped after `m`'s last traced slice: back to the fast path.
        m.set_tracing(false);
    }
}

/// `p` stole goroutines from P `from` (now on `p`'s queue, plus the one returned).
pub(crate) fn steal(p: &P, from: usize) {
    if on() {
        steal_cold(p, from);
    }
}

/// The goroutine on `m` enters a system call, keeping `p` loosely.
pub(crate) fn syscall_enter(p: &P, m: &M) {
    if on() {
        syscall_enter_cold(p, m);
    }
}

/// The running goroutine is back from the call of `gort::blocking` (its
/// P still loosely held, or already retaken).
pub(crate) fn syscall_exit() {
    if on() {
        syscall_exit_cold();
    }
}

/// sysmon retook `p` from a goroutine in a system call (it owns `p` now).
pub(crate) fn syscall_handoff(p: &P) {
    if on() {
        syscall_handoff_cold(p);
    }
}

/// sysmon asked the goroutine on `p` to yield.
pub(crate) fn preempt_request(sched: &Sched, p: &P) {
    if on() {
        sysmon_cold(sched, p, Event::PreemptRequest);
    }
}

/// sysmon sent SIGURG to stop the goroutine on `p`.
pub(crate) fn preempt_signal(sched: &Sched, p: &P) {
    if on() {
        sysmon_cold(sched, p, Event::PreemptSignal);
    }
}

/// sysmon found `p`'s thread blocked in the kernel.
pub(crate) fn blocked(sched: &Sched, p: &P) {
    if on() {
        sysmon_cold(sched, p, Event::Blocked);
    }
}

/// A network poll by `m` made `ready` goroutines runnable.
pub(crate) fn netpoll(sched: &Sched, m: &M, ready: usize) {
    if on() && ready > 0 {
        on_m(sched, Some(m), Event::Netpoll { ready: ready as u64 });
    }
}

/// The goroutine `m` runs (0 for none: g0, or a plain thread).
fn goid_on(m: Option<&M>) -> u64 {
    m.and_then(|m| m.curg.get()).map_or(0, |g| g.id())
}

/// `g`'s name, or "" if it has none.
fn name_of(g: &GPtr) -> &str {
    // SAFETY: hooks read a goroutine's name only while it runs or is owned
    // by the M running the hook; the name changes only at spawn and exit.
    unsafe { (*g.name.get()).as_deref() }.unwrap_or("")
}

/// Record `event` on the P of `m`, or on `sched`'s "no P" track.
#[cold]
#[inline(never)]
fn on_m(sched: &Sched, m: Option<&M>, event: Event<'_>) {
    match m.and_then(|m| m.p.get()) {
        Some(p) => p.trace.record(Alloc::Yes, |r| r.emit(event)),
        None => record_global(sched.trace_id, Track::NoP, event),
    }
}

#[cold]
#[inline(never)]
fn begin(p: &P, g: GPtr, alloc: Alloc) {
    p.trace.record(alloc, |r| {
        let goid = g.id();
        r.set_open_slice(goid);
        r.emit(Event::SliceBegin {
            goid,
            name: name_of(&g),
        });
    });
}

#[cold]
#[inline(never)]
fn end(p: &P, alloc: Alloc) {
    p.trace.record(alloc, |r| {
        let goid = r.open_slice();
        if goid != 0 {
            r.set_open_slice(0);
            r.emit(Event::SliceEnd { goid });
        }
    });
}

#[cold]
#[inline(never)]
fn acquired_cold(m: &M, p: &P) {
    if let Some(g) = m.curg.get() {
        begin(p, g, Alloc::No);
    }
}

#[cold]
#[inline(never)]
fn released_cold(m: &M, p: &P) {
    if m.curg.get().is_some() {
        end(p, Alloc::No);
    }
}

#[cold]
#[inline(never)]
fn preempted_cold(p: &P, g: GPtr) {
    let goid = g.id();
    let event = Event::Preempt {
        goid,
        how: Preemption::Signal,
    };
    p.trace.record(Alloc::No, |r| r.emit(event));
}

#[cold]
#[inline(never)]
fn spawn_cold(sched: &Sched, m: Option<&M>, g: GPtr) {
    let event = Event::Spawn {
        goid: g.id(),
        parent: g.parent(),
    };
    on_m(sched, m, event);
}

#[cold]
#[inline(never)]
fn ready_cold(sched: &Sched, m: Option<&M>, g: GPtr) {
    let event = Event::Ready {
        goid: g.id(),
        by: goid_on(m),
    };
    on_m(sched, m, event);
}

#[cold]
#[inline(never)]
fn steal_cold(p: &P, from: usize) {
    let event = Event::Steal {
        from: from as u64,
        count: 1 + p.runq.len() as u64,
    };
    p.trace.record(Alloc::Yes, |r| r.emit(event));
}

#[cold]
#[inline(never)]
fn syscall_enter_cold(p: &P, m: &M) {
    let goid = goid_on(Some(m));
    p.trace.record(Alloc::Yes, |r| r.emit(Event::SyscallEnter { goid }));
}

#[cold]
#[inline(never)]
fn syscall_exit_cold() {
    if let Some(m) = current_m() {
        on_m(&m.sched, Some(m), Event::SyscallExit { goid: goid_on(Some(m)) });
    }
}

#[cold]
#[inline(never)]
fn syscall_handoff_cold(p: &P) {
    p.trace.record(Alloc::Yes, |r| {
        let goid = match r.open_slice() {
            // A slice begun before the trace is not open here; the P still
            // knows whose call it is.
            0 => p.syscall_goid.load(Ordering::Relaxed),
            open => {
                r.set_open_slice(0);
                r.emit(Event::SliceEnd { goid: open });
                open
            }
        };
        r.emit(Event::SyscallHandoff { goid });
    });
}

#[cold]
#[inline(never)]
fn sysmon_cold(sched: &Sched, p: &P, event: Event<'_>) {
    record_global(sched.trace_id, Track::P(p.id as u32), event);
}
