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
//! writes before `park.wakeup()`; the note's release/acquire orders them.

use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;
use std::sync::Arc;

use super::Sched;
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
    /// While this M polls the network (`collecting`), `goready` collects
    /// the goroutines it readies in `ready_batch` instead of queueing them
    /// one by one (`sched/poll.rs`).
    pub(crate) collecting: Cell<bool>,
    pub(crate) ready_batch: Cell<Vec<GPtr>>,
}

// SAFETY: all fields but `nextp`/`spinning` are touched only by the M's own
// thread; those two are written by a waker strictly before `park.wakeup()`
// and read by the M after `park.sleep()` returns (release/acquire in Note).
unsafe impl Sync for M {}

impl M {
    pub(crate) fn new(id: u64, sched: Arc<Sched>) -> M {
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
            collecting: Cell::new(false),
            ready_batch: Cell::new(Vec::new()),
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

    /// The P this M holds. Only on an M that holds one (running a G or in
    /// `find_runnable` before it releases its P).
    pub(crate) fn p(&self) -> PPtr {
        self.p.get().expect("M without a P")
    }
}

/// A pointer to an M kept on the idle list while its thread sleeps.
#[derive(Clone, Copy)]
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
