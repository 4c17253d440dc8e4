//! P: a processor, the right to run Go code (Go's `p` in runtime2.go), and
//! `procresize`, which changes how many there are while goroutines run.
//!
//! A P owns a local run queue, a free list of dead Gs and a stack cache. Its status says
//! who has it: `Idle` (on the idle list, `Sched::lock`), `Running` (held by
//! exactly one M, which alone pushes to and pops from its queue), or `Dead`
//! (retired by `set_procs`, on no list).
//!
//! Unlike Go, `procresize` does not stop the world. Growing creates (or
//! revives) Ps and puts them on the idle list. Shrinking lowers
//! `gomaxprocs` at once — stealers then ignore the surplus Ps — and takes
//! idle surplus Ps off the idle list; a surplus P that an M holds is retired
//! by that M itself at its next pass through `find_runnable`, which moves
//! the P's queued goroutines to the global queue before letting the P go;
//! sysmon preempts a goroutine running there (or retakes the P from its
//! system call) so that the pass comes soon.
//! Ps are never freed before their runtime, so `allp` can be read without a
//! lock.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::blocks::BlockCache;
use super::g::{G, GPtr};
use super::histogram::SchedHistograms;
use super::m::M;
use super::runq::RunQueue;
use super::timers::{NO_TIMER, TimerHeap};
use super::{Locked, MAX_PROCS, Sched, lock_sched};
use crate::stack::LocalStacks;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum PStatus {
    Idle = 0,
    Running,
    /// Held loosely by an M in a system call (`syscall.rs`): sysmon may
    /// take it (CAS to `Idle`), or the M takes it back (CAS to `Running`).
    Syscall,
    Dead,
}

/// Laid out in order (`repr(C)`) so that what other threads read often —
/// status, holder, timer0, preempt — does not share a cache line with the
/// counters the holder writes on every switch; the 128-byte-aligned run
/// queue sits between the two groups.
#[repr(C)]
pub(crate) struct P {
    pub(crate) id: usize,
    status: AtomicU8,
    /// Sysmon asks the goroutine running here to yield at its next runtime
    /// call (Go's `gp.preempt`; kept on the P, which sysmon can find).
    pub(crate) preempt: AtomicBool,
    /// The goroutine that last put this P in the system-call state, for the
    /// trace of its hand-off: sysmon, which hands the P off, may not read
    /// the M's `curg`, and the P's trace has no open slice to name it when
    /// the slice began before the trace did.
    pub(crate) syscall_goid: AtomicU64,
    /// The M holding this P, while one does (for sysmon's signals).
    pub(crate) holder: AtomicPtr<M>,
    /// The earliest deadline in `timers` (`timers::NO_TIMER` if none),
    /// readable without the lock.
    pub(crate) timer0: AtomicU64,
    pub(crate) runq: RunQueue<G>,
    /// Incremented on every new time slice; every 61st looks at the global
    /// queue first. Written by the holder; sysmon reads it to tell how long
    /// one goroutine has been running.
    pub(crate) schedtick: AtomicU32,
    /// Goroutine slices run on this P.
    pub(crate) ran: AtomicU64,
    /// Goroutines spawned and finished on this P. Per P rather than shared,
    /// so that spawning on one P and exiting on another does not bounce a
    /// cache line on every goroutine (Go derives its count the same way).
    pub(crate) created: AtomicU64,
    pub(crate) exited: AtomicU64,
    /// The id of the goroutine running here (0: none), for the dashboard
    /// (`debug/http/dashboard.rs`). Written by the holder at each switch,
    /// beside `ran`; read by anyone, a snapshot.
    pub(crate) running: AtomicU64,
    /// Ready-to-running waits of goroutines run here, and park durations
    /// of goroutines readied here (`histogram.rs`). Holder only.
    pub(crate) histograms: SchedHistograms,
    /// Dead Gs kept for reuse. Holder of the P only.
    pub(crate) gfree: UnsafeCell<Vec<GPtr>>,
    /// Stacks of dead goroutines, kept warm for the next ones. Holder only.
    pub(crate) stacks: UnsafeCell<LocalStacks>,
    /// Free memory blocks for goroutine jobs. Holder only.
    pub(crate) blocks: BlockCache,
    /// Timers started on this P.
    pub(crate) timers: Mutex<TimerHeap>,
    /// Execution-trace events recorded on this P. Holder only.
    pub(crate) trace: crate::trace::PTrace,
}

// SAFETY: `runq` is built for concurrent stealers; `status` and the
// counters are atomic; `gfree`, `stacks` and `blocks` are touched only by the M holding the P,
// and a P changes hands only under `Sched::lock` or through an M's note.
unsafe impl Sync for P {}

impl P {
    fn new(id: usize, runtime: u32) -> P {
        P {
            id,
            status: AtomicU8::new(PStatus::Idle as u8),
            runq: RunQueue::new(),
            schedtick: AtomicU32::new(0),
            preempt: AtomicBool::new(false),
            syscall_goid: AtomicU64::new(0),
            holder: AtomicPtr::new(std::ptr::null_mut()),
            gfree: UnsafeCell::new(Vec::new()),
            stacks: UnsafeCell::new(Vec::new()),
            blocks: BlockCache::new(),
            timers: Mutex::new(TimerHeap::default()),
            timer0: AtomicU64::new(NO_TIMER),
            ran: AtomicU64::new(0),
            created: AtomicU64::new(0),
            exited: AtomicU64::new(0),
            running: AtomicU64::new(0),
            histograms: SchedHistograms::default(),
            trace: crate::trace::PTrace::new(runtime, id),
        }
    }

    pub(crate) fn status(&self) -> PStatus {
        match self.status.load(Ordering::Relaxed) {
            0 => PStatus::Idle,
            1 => PStatus::Running,
            2 => PStatus::Syscall,
            _ => PStatus::Dead,
        }
    }

    fn set_status(&self, s: PStatus) {
        self.status.store(s as u8, Ordering::SeqCst);
    }

    /// Move the status from `from` to `to` if it is `from` (the syscall
    /// hand-off between an M and sysmon). SeqCst: one total order for
    /// both parties' claims.
    pub(crate) fn cas_status(&self, from: PStatus, to: PStatus) -> bool {
        self.status
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The holder enters a system call: the P stays with it loosely
    /// (`syscall.rs`). SeqCst: sysmon's retaking CAS is ordered after it.
    pub(crate) fn set_syscall(&self) {
        self.holder.store(std::ptr::null_mut(), Ordering::Relaxed);
        self.set_status(PStatus::Syscall);
    }

    /// Mark a P nobody holds (retaken by sysmon) idle or retired.
    pub(crate) fn set_idle(&self) {
        self.set_status(PStatus::Idle);
    }

    pub(crate) fn set_dead(&self) {
        self.set_status(PStatus::Dead);
    }

    /// This P's scheduling tick. Any thread.
    pub(crate) fn tick(&self) -> u32 {
        self.schedtick.load(Ordering::Relaxed)
    }

    /// Add one to one of this P's counters. Holder only: a plain load and
    /// store, no locked instruction; readers see a slightly stale value.
    pub(crate) fn count(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct PPtr(NonNull<P>);

// SAFETY: P is Sync and lives as long as its runtime (module header).
unsafe impl Send for PPtr {}
// SAFETY: as above.
unsafe impl Sync for PPtr {}

impl std::ops::Deref for PPtr {
    type Target = P;
    fn deref(&self) -> &P {
        // SAFETY: Ps are freed only in `Sched::drop`, after every M exited.
        unsafe { self.0.as_ref() }
    }
}

impl PPtr {
    pub(crate) fn from_raw(p: *mut P) -> Option<PPtr> {
        NonNull::new(p).map(PPtr)
    }
}

impl Sched {
    /// Make `m` the holder of `p` (Go's `acquirep`).
    pub(crate) fn acquirep(&self, m: &M, p: PPtr) {
        debug_assert!(m.p.get().is_none());
        // Holding a P, `m` no longer computes without one (sysmon watches
        // such Ms, `syscall.rs`).
        m.syscall_since.store(0, Ordering::Relaxed);
        // Progress as a preempted goroutine counts it: a P changing hands
        // resumes goroutines that `execute` never sees (`preempt.rs`).
        self.p_acquires.fetch_add(1, Ordering::Relaxed);
        p.holder.store(m as *const M as *mut M, Ordering::Release);
        p.set_status(PStatus::Running);
        m.p.set(Some(p));
        crate::trace::acquired(m, &p);
    }

    /// Detach `m` from its P and return it (Go's `releasep`).
    pub(crate) fn releasep(&self, m: &M) -> PPtr {
        let p = m.p.take().expect("releasep without a P");
        crate::trace::released(m, &p);
        p.holder.store(std::ptr::null_mut(), Ordering::Release);
        p.set_status(PStatus::Idle);
        p
    }

    /// Put an idle P on the idle list. `Sched::lock` held.
    /// Move the goroutines queued on `p` to the global queue, for a P that
    /// goes idle or away with work on it. `Sched::lock` held; `p` not
    /// running goroutines.
    pub(crate) fn runq_to_global(&self, l: &mut Locked, p: &P) {
        p.runq.drain(|g| l.runq.push_back(GPtr::from_non_null(g)));
        self.runqsize.store(l.runq.len(), Ordering::Relaxed);
    }

    pub(crate) fn pidleput(&self, l: &mut Locked, p: PPtr) {
        debug_assert!(p.runq.is_empty());
        l.pidle.push(p);
        self.npidle.store(l.pidle.len(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Take an idle P. `Sched::lock` held.
    pub(crate) fn pidleget(&self, l: &mut Locked) -> Option<PPtr> {
        let p = l.pidle.pop()?;
        self.npidle.store(l.pidle.len(), std::sync::atomic::Ordering::SeqCst);
        Some(p)
    }

    /// Give `m`'s P back to the idle list, or retire it if `set_procs` has
    /// made it surplus. `Sched::lock` held.
    pub(crate) fn release_idle_p(&self, l: &mut Locked, m: &M) {
        let p = self.releasep(m);
        if p.id < self.gomaxprocs() {
            self.pidleput(l, p);
        } else {
            p.set_status(PStatus::Dead);
        }
    }

    pub(crate) fn lock_pidleget(&self) -> Option<PPtr> {
        self.pidleget(&mut lock_sched(&self.lock))
    }

    /// `m`'s P was retired by `set_procs`: move its goroutines to the global
    /// queue, retire it, and try to continue on an idle P instead. Returns
    /// false if there was none (the caller then parks the M).
    pub(crate) fn retire_p(&self, m: &M) -> bool {
        let p = m.p();
        let mut l = lock_sched(&self.lock);
        self.runq_to_global(&mut l, &p);
        self.release_idle_p(&mut l, m);
        match self.pidleget(&mut l) {
            Some(np) => {
                self.acquirep(m, np);
                true
            }
            None => false,
        }
    }

    /// Set the number of Ps to `n` (1..=MAX_PROCS); Go's `procresize`.
    /// Any thread. Returns the previous number. New Ps start idle: the
    /// caller wakes Ms for them if there is work (`wakep`).
    pub(crate) fn procresize(&self, n: usize) -> usize {
        assert!(
            (1..=MAX_PROCS).contains(&n),
            "procs must be between 1 and {MAX_PROCS}, got {n}"
        );
        // Made before the lock, under which nothing allocates; one that a
        // concurrent call made first is freed after it.
        let mut fresh: Vec<(usize, Option<Box<P>>)> = (0..n)
            .filter(|&id| self.p(id).is_none())
            .map(|id| (id, Some(Box::new(P::new(id, self.trace_id)))))
            .collect();
        let mut l = lock_sched(&self.lock);
        let old = self.gomaxprocs();
        for id in old..n {
            match self.p(id) {
                None => {
                    let made = fresh.iter_mut().find(|(at, _)| *at == id).and_then(|(_, p)| p.take());
                    let made = made.expect("made above: P slots are only ever filled");
                    let p = Box::into_raw(made);
                    // Release pairs with the Acquire load in `Sched::p`.
                    self.allp[id].store(p, Ordering::Release);
                    let p = PPtr::from_raw(p).expect("Box is non-null");
                    self.pidleput(&mut l, p);
                }
                // Retired earlier and let go by its M: revive it.
                Some(p) if p.status() == PStatus::Dead => {
                    p.set_status(PStatus::Idle);
                    self.pidleput(&mut l, p);
                }
                // Still held by an M that has not noticed the earlier
                // shrink: it simply keeps it.
                Some(_) => {}
            }
        }
        self.gomaxprocs.store(n, Ordering::SeqCst);
        if n < old {
            l.pidle.retain(|p| {
                let keep = p.id < n;
                if !keep {
                    p.set_status(PStatus::Dead);
                }
                keep
            });
            self.npidle.store(l.pidle.len(), Ordering::SeqCst);
        }
        drop(l);
        drop(fresh);
        old
    }

    /// Free every P. Only from `Sched::drop`.
    pub(crate) fn free_all_ps(&mut self) {
        for slot in self.allp.iter() {
            let p = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: every non-null slot came from `Box::into_raw` in
                // `procresize` and is freed once, here, with no M left.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// What the dashboard shows of one P (`debug/http/dashboard.rs`): a
/// snapshot, each field read on its own.
pub(crate) struct PView {
    pub(crate) id: usize,
    /// `idle`, `running`, `syscall` or `retired`.
    pub(crate) status: &'static str,
    /// The goroutine running there, 0 if none.
    pub(crate) running: u64,
    /// Goroutines in its local run queue.
    pub(crate) runq: usize,
    /// Time slices run there.
    pub(crate) slices: u64,
}

impl Sched {
    /// A view of each current P. O(Ps), no lock.
    pub(crate) fn p_views(&self) -> Vec<PView> {
        (0..self.gomaxprocs())
            .filter_map(|i| self.p(i))
            .map(|p| {
                let status = p.status();
                PView {
                    id: p.id,
                    status: match status {
                        PStatus::Idle => "idle",
                        PStatus::Running => "running",
                        PStatus::Syscall => "syscall",
                        PStatus::Dead => "retired",
                    },
                    running: if status == PStatus::Idle {
                        0
                    } else {
                        p.running.load(Ordering::Relaxed)
                    },
                    runq: p.runq.len(),
                    slices: p.ran.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
