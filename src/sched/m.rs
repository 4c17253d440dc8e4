//! M: an OS thread that runs goroutines (Go's `m` in runtime2.go).
//!
//! The M struct lives on its own thread's native stack (the g0 stack) for
//! the thread's whole life, and the thread-local `CURRENT_M` points to it.
//! Code running on a goroutine reaches its M only through `current_m()`,
//! which is `#[inline(never)]` and must be called afresh after anything that
//! may switch: a goroutine that parks may resume on another thread, and a
//! cached `&M` would then name the wrong one.
//!
//! Field ownership: everything is written by the M's own thread, except
//! `nextp` and `spinning`, which the thread waking a parked M (`startm`)
//! writes before `park.wakeup()` — the note's release/acquire orders them —
//! or, for the sleeper (`poll.rs`), under `Sched::lock`, which the sleeper
//! takes before reading them.

use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::Sched;
use super::chaos::ChaosRng;
use super::g::GPtr;
use super::p::PPtr;
use crate::arch::Context;
use crate::os::Note;

/// What g0 does with the G that just switched to it (the `fn` Go passes
/// to `mcall`).
pub(crate) enum Pending {
    /// Nothing: g0 is entered only through a `Pending`.
    None,
    /// `yield_now`: back to the global run queue.
    Yield,
    /// `gopark`: call `unlock(data)`; if it returns false, resume the G at once.
    Park {
        unlock: unsafe fn(*mut ()) -> bool,
        data: *mut (),
    },
    /// The goroutine returned: recycle the G.
    Exit,
}

/// The reasons for `goready` on an M to leave its fast path, kept side by
/// side so that the fast path tests them all with one load: the tracer
/// costs a goroutine-to-goroutine wake-up nothing while it is off.
#[derive(Clone, Copy, Default)]
#[repr(C, align(2))]
struct Detours {
    /// This M polls the network: `goready` collects the goroutines it
    /// readies in `ready_batch` instead of queueing them one by one
    /// (`sched/poll.rs`).
    collecting: bool,
    /// This M has traced a slice or looked for work while tracing, since
    /// tracing last stopped: `goready` records ready events
    /// (`trace::ready` checks `ENABLED` again and clears this once tracing
    /// is off).
    tracing: bool,
}

pub(crate) struct M {
    pub(crate) sched: Arc<Sched>,
    /// Where g0 was suspended when it switched to `curg`.
    pub(crate) g0: UnsafeCell<Context>,
    pub(crate) curg: Cell<Option<GPtr>>,
    pub(crate) p: Cell<Option<PPtr>>,
    /// The P a waker hands this M with its wake-up.
    pub(crate) nextp: Cell<Option<PPtr>>,
    pub(crate) spinning: Cell<bool>,
    /// Parked here while idle (`stopm`).
    pub(crate) park: Note,
    pub(crate) pending: Cell<Pending>,
    /// xorshift state for victim selection.
    rng: Cell<u64>,
    /// The chaos scheduler's decisions for this M (`chaos.rs`); off unless
    /// the runtime has chaos.
    pub(crate) chaos: ChaosRng,
    /// Why `goready`, called on this M, must leave its fast path.
    detours: Cell<Detours>,
    pub(crate) ready_batch: Cell<Vec<GPtr>>,
    /// The kernel's id of this thread: sysmon signals it and reads its state.
    pub(crate) tid: libc::pid_t,
    /// Runtime critical sections entered and not yet left (Go's `m.locks`,
    /// `NoPreempt`): while non-zero the M is not preempted asynchronously.
    /// Own thread and its signal handler only.
    pub(crate) locks: Cell<u32>,
    /// A preemption signal arrived while `locks > 0`; it is raised again
    /// when the last section ends.
    pub(crate) preempt_pending: Cell<bool>,
    /// The goroutine this M is locked to (`lock_os_thread`, or an async
    /// preemption in progress), and `lock_os_thread`'s nesting depth.
    pub(crate) lockedg: Cell<Option<GPtr>>,
    pub(crate) locked_count: Cell<u32>,
    /// During a system call (`syscall.rs`): the P held loosely.
    pub(crate) oldp: Cell<Option<PPtr>>,
    /// Inside an annotated `gort::blocking` call, from `entersyscall` until
    /// the goroutine takes a P back: no signal of gort's may reach the
    /// thread (`syscall.rs`). Written by the M's own thread; read by the
    /// signal senders (`preempt::signal`, sysmon) and the handler.
    pub(crate) in_blocking: AtomicBool,
    /// `timers::nanotime` when the running goroutine entered a system call
    /// (annotated or detected) and gave up its P; 0 otherwise. Read by sysmon.
    pub(crate) syscall_since: AtomicU64,
    /// What sysmon wants from the SIGURG it sends (`preempt.rs`); taken by
    /// the handler.
    pub(crate) signal_request: AtomicU8,
    /// Preemption signals the handler refused, since sysmon last reset the
    /// count, because they found the goroutine where it cannot be stopped
    /// in place (computing in a shared library, too near the bottom of its
    /// stack, or on a thread without an alternate signal stack): sysmon
    /// spaces its signals by it (`sysmon.rs`).
    pub(crate) foreign_refusals: AtomicU32,
    /// Set by the async preemption hook for sysmon: this M's goroutine, and
    /// the P it let go of (`handoff_p`, written before `handoff`), are to be
    /// queued and handed on (`preempt.rs`).
    pub(crate) handoff: AtomicBool,
    pub(crate) handoff_p: Cell<Option<PPtr>>,
    /// The next M on the idle list (`links.rs`); only under `Sched::lock`.
    pub(crate) schedlink: Cell<Option<MPtr>>,
    /// This thread's `/proc` stat file, opened by the thread itself when it
    /// starts (sysmon's cycle opens nothing: it allocates nothing), for
    /// sysmon to tell whether it sleeps in the kernel.
    stat: Option<crate::os::ThreadStat>,
    /// sysmon's spacing of its signals to this M; only sysmon, under
    /// `Sched::allm`.
    pub(crate) signal_pace: Cell<super::sysmon::SignalPace>,
}

/// Go's `acquirem`/`releasem`: a runtime critical section on the current
/// M. While one is open the M's goroutine is not preempted asynchronously,
/// so the section may hold runtime locks and P-owned data. Sections never
/// park. A preemption that arrived during the section is re-raised when the
/// outermost one closes.
pub(crate) struct NoPreempt {
    m: Option<&'static M>,
}

impl NoPreempt {
    #[inline]
    pub(crate) fn enter() -> NoPreempt {
        NoPreempt::on(current_m())
    }

    /// `enter` for a caller that has just read `current_m()` itself.
    #[inline]
    pub(crate) fn on(m: Option<&'static M>) -> NoPreempt {
        if let Some(m) = m {
            m.locks.set(m.locks.get() + 1);
            // The signal handler runs on this thread: a compiler fence is
            // all it takes for it to see the count.
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        }
        NoPreempt { m }
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        if let Some(m) = self.m {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            let n = m.locks.get() - 1;
            m.locks.set(n);
            if n == 0 && m.preempt_pending.get() {
                m.preempt_pending.set(false);
                super::preempt::raise_again(m);
            }
        }
    }
}

// SAFETY: all fields but `nextp`/`spinning`, `handoff_p`/`curg` and the
// atomics are touched only by the M's own thread. `nextp`/`spinning` are
// written by a waker strictly before `park.wakeup()` (or under
// `Sched::lock`) and read by the M after `park.sleep()` returns
// (release/acquire in Note) or under that lock. `handoff_p` and `curg` are
// read by sysmon only after the `handoff` flag's Release/Acquire, while the
// M sleeps and touches neither. `schedlink` is touched only under
// `Sched::lock`, while the M sleeps on the idle list; `signal_pace` only by
// sysmon under `Sched::allm`; `stat` is read-only after construction.
unsafe impl Sync for M {}

impl M {
    pub(crate) fn new(id: u64, sched: Arc<Sched>) -> M {
        let chaos = ChaosRng::new(sched.chaos, id);
        M {
            sched,
            g0: UnsafeCell::new(Context::empty()),
            curg: Cell::new(None),
            p: Cell::new(None),
            nextp: Cell::new(None),
            spinning: Cell::new(false),
            park: Note::new(),
            pending: Cell::new(Pending::None),
            rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ (id.wrapping_add(1)).wrapping_mul(0xbf58_476d_1ce4_e5b9)),
            chaos,
            detours: Cell::new(Detours::default()),
            ready_batch: Cell::new(Vec::new()),
            tid: crate::os::gettid(),
            locks: Cell::new(0),
            preempt_pending: Cell::new(false),
            lockedg: Cell::new(None),
            locked_count: Cell::new(0),
            oldp: Cell::new(None),
            in_blocking: AtomicBool::new(false),
            syscall_since: AtomicU64::new(0),
            signal_request: AtomicU8::new(0),
            foreign_refusals: AtomicU32::new(0),
            handoff: AtomicBool::new(false),
            handoff_p: Cell::new(None),
            schedlink: Cell::new(None),
            stat: crate::os::ThreadStat::open(crate::os::gettid()).ok(),
            signal_pace: Cell::new(Default::default()),
        }
    }

    /// A pseudo-random number (xorshift64*): cheap and good enough to pick
    /// a victim to steal from.
    pub(crate) fn fastrand(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Whether `goready` on this M must leave its fast path (it collects,
    /// or may trace). One two-byte load.
    #[inline]
    pub(crate) fn detoured(&self) -> bool {
        let d = self.detours.get();
        u16::from_ne_bytes([d.collecting as u8, d.tracing as u8]) != 0
    }

    /// Whether this M is collecting the goroutines a poll readies.
    pub(crate) fn collecting(&self) -> bool {
        self.detours.get().collecting
    }

    /// Start or stop collecting (around a poll, `sched/poll.rs`).
    pub(crate) fn set_collecting(&self, collecting: bool) {
        self.detours.set(Detours {
            collecting,
            ..self.detours.get()
        });
    }

    /// Note whether this M traces (`trace::slice_begin`, `trace::ready`).
    pub(crate) fn set_tracing(&self, tracing: bool) {
        self.detours.set(Detours {
            tracing,
            ..self.detours.get()
        });
    }

    /// Whether this M's thread sleeps in the kernel (sysmon's probe; a
    /// thread whose stat file could not be opened counts as running).
    pub(crate) fn thread_blocked(&self) -> bool {
        self.stat.as_ref().is_some_and(crate::os::ThreadStat::is_blocked)
    }

    /// The P this M holds. Only on an M that holds one (running a G or in
    /// `find_runnable` before it releases its P).
    pub(crate) fn p(&self) -> PPtr {
        self.p.get().expect("M without a P")
    }
}

/// A pointer to an M kept on the idle list while its thread sleeps (or
/// named by a G locked to it, or by sysmon under `Sched::allm`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct MPtr(NonNull<M>);

// SAFETY: an M on the idle list is asleep in `stopm` and its struct lives on
// its thread's stack until it is woken; only `nextp`, `spinning` and `park`
// are used through this pointer (see `M`'s Sync impl).
unsafe impl Send for MPtr {}

impl MPtr {
    pub(crate) fn new(m: &M) -> MPtr {
        MPtr(NonNull::from(m))
    }

    pub(crate) fn get(&self) -> &M {
        // SAFETY: see the Send impl: the M outlives its stay on the idle list,
        // and whoever took it off the list is the only one using it.
        unsafe { self.0.as_ref() }
    }
}

thread_local! {
    static CURRENT_M: Cell<*const M> = const { Cell::new(std::ptr::null()) };
}

/// The M of the calling thread, if it is one of a runtime's threads.
/// Never keep the result across a call that may park or yield.
#[inline(never)]
pub(crate) fn current_m() -> Option<&'static M> {
    let m = CURRENT_M.with(Cell::get);
    // SAFETY: CURRENT_M is set by `set_current_m` to the M on this thread's
    // stack for exactly as long as that M lives, and reset before it dies.
    // 'static is a lie the caller must honour by not keeping the reference
    // across a switch (module header).
    unsafe { m.as_ref() }
}

pub(crate) fn set_current_m(m: Option<&M>) {
    CURRENT_M.with(|c| c.set(m.map_or(std::ptr::null(), |m| m as *const M)));
}
