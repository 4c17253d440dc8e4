//! The goroutine scheduler (Go's proc.go, runtime2.go).
//!
//! # Model
//!
//! Three kinds of object, named as in Go:
//!
//! - **G** (`g.rs`): a goroutine — a closure, a stack, a saved context, a
//!   status. Gs are recycled through free lists and never freed while their
//!   runtime lives, so a `GPtr` held by any runtime structure stays valid.
//! - **M** (`m.rs`): an OS thread. Its own native stack is its `g0`: the
//!   scheduler code in this module runs there, never on a goroutine stack.
//! - **P** (`p.rs`): a processor, the right to run goroutines. There are
//!   exactly `gomaxprocs` usable Ps; an M must hold one to run a G. Each P
//!   owns a 256-slot lock-free run queue plus a `runnext` slot (`runq.rs`),
//!   a cache of dead Gs, and a cache of their stacks.
//!
//! # Scheduling
//!
//! An M loops in `schedule` (`schedule.rs`): `find_runnable` picks a G —
//! every 61st tick the global queue first (so it cannot starve behind a
//! P that keeps its local queue full), then `runnext`, the local queue, the
//! global queue, and finally half of another P's queue, victims tried from a
//! random start — and `execute` switches to it. The G runs until it calls
//! back into the runtime: `gopark` to wait (`park.rs`), `yield_now`, or its
//! end. Each of those switches to g0 and leaves g0 a note (`m.pending`) of
//! what to do now that the G's stack is no longer in use: put it on the
//! global queue, run its park callback, or recycle it.
//!
//! A newly spawned or readied G goes into the current P's `runnext`, so a
//! producer and its consumer alternate on one P without a trip through the
//! queue; the old `runnext` is kicked to the tail.
//!
//! # Idle Ms and spinning (`idle.rs`)
//!
//! An M with nothing to run first *spins*: it keeps its P and looks for work
//! to steal. At most half of the busy Ps may have a spinning M, so idle Ms
//! do not eat the CPU that running Ms need. An M that finds nothing gives
//! back its P and parks on its futex `Note`. Whoever makes work available
//! (`newproc`, `goready`, an overflowing local queue) calls `wakep`, which
//! starts an M on an idle P only if no M is spinning already: a spinning M
//! will find the work, and when it does it calls `wakep` in turn, so
//! parallelism ramps up one M at a time without thundering herds.
//!
//! The one delicate race — a spinner giving up just as work arrives — is
//! closed by ordering: the submitter publishes its G and then reads
//! `nmspinning` (SeqCst), the spinner decrements `nmspinning` and then
//! re-reads every run queue (SeqCst). At least one of them sees the other.
//!
//! # The network and the sleeper (`poll.rs`, `netpoll/`)
//!
//! An M that finds no work steals; it does not poll the network first
//! (unlike Go; `poll.rs` says why). An M that goes idle while timers are
//! pending or sockets are registered, and no other M sleeps for the
//! runtime yet, becomes the *sleeper*: it blocks in `epoll_wait` until
//! the earliest timer (on its futex note if no socket was ever made), and
//! the goroutines a poll readies are queued in one batch. With no idle M,
//! `startm` hands a P to the sleeper before it creates a thread.
//!
//! # sysmon, preemption, system calls (`sysmon.rs`, `preempt.rs`, `syscall.rs`)
//!
//! A thread of its own, without a P, watches the Ps: it retakes Ps from
//! goroutines in system calls (annotated with `gort::blocking`, or detected
//! from `/proc` when a thread sleeps in the kernel), and preempts goroutines
//! that run past their slice while others wait — cooperatively at their
//! next runtime call (`safe_point`), or by SIGURG. A goroutine preempted by
//! signal keeps its thread: it waits in the global queue *locked* to its M
//! (`G::lockedm`), which sleeps; whoever picks it hands that M a P
//! (`startlockedm`). `lock_os_thread` uses the same wiring. Code that holds
//! a runtime lock or touches its P's private state from a goroutine stack
//! runs in a `NoPreempt` section, which a signal never interrupts.
//!
//! # Lock order
//!
//! Runtime locks, outermost first. A thread holding one may take only those
//! below it:
//!
//! 0. `Sched::allm` (every live M; held by sysmon through a whole cycle,
//!    which may queue goroutines, hand off Ps and fire timers), and
//!    `Sched::poller_init` (creating the poller wakes the sleeper; shutting
//!    it down readies its waiters);
//! 1. a channel-timer's arming lock (`time/timer.rs`);
//! 2. a user-facing object's lock: a channel's runtime lock, a `sync`
//!    primitive's wait-queue lock, a scope's `WaitCell`, a context's
//!    cancellation state (`context/cancel.rs`: one node's at a time, never
//!    two, and never across closing its channel). A waiter registers
//!    its `WaitToken` under it and releases it before parking (the token's
//!    handshake makes that safe); only `WaitCell` hands its lock to g0
//!    through `gopark`'s callback;
//! 3. `Sched::lock` (global run queue, idle Ps, idle Ms, the timer sleeper);
//! 4. `Sched::gfree` (global free list of dead Gs);
//! 5. `Sched::allgs`, a P's timer heap, the stack caches' and allocator's
//!    locks, the job-block lists, `Sched::threads`, the poller's descriptor
//!    cache, the execution trace's buffers and registries (`trace/`)
//!    (leaves). Timer callbacks run with none of 1–5 held.
//!
//! Every runtime lock is also a critical section (`NoPreempt`): an M holding
//! one is never preempted asynchronously, so no thread ever waits for a lock
//! whose holder waits for a P.
//!
//! # What may allocate where
//!
//! A preemption signal can stop a goroutine anywhere in the program's own
//! code — inside a statically linked allocator (jemalloc, mimalloc, a
//! user's `GlobalAlloc` on a spin lock) holding its lock. Until that
//! goroutine runs again, any thread that allocates or frees may wait for
//! it. So the path that lets it run again never allocates:
//!
//! - nothing allocates or frees under `Sched::lock` or `Sched::allm`
//!   (`lock_sched`): the global run queue and the idle M list are linked
//!   through the Gs and Ms (`links.rs`), `pidle` is sized for `MAX_PROCS`,
//!   and lists behind other runtime locks grow unlocked
//!   (`push_growing_unlocked`);
//! - sysmon's cycle (which holds `allm`) allocates nothing, and waits for
//!   no lock but those two: it queues a preempted goroutine and hands its
//!   P on without running timers or starting threads;
//! - the preemption hook only releases its P and sleeps;
//! - only the spawner thread starts threads (`spawner.rs`), and a P with
//!   no M to run it goes first to an M that sleeps waiting to run its own
//!   goroutine — the preempted one, taken out of the global queue — so no
//!   goroutine ever waits for a thread that cannot start.
//!
//! `runtime::AllocCheck` aborts a process that breaks the first three
//! (tests/alloc_rules.rs runs the scheduler under it). Other runtime locks
//! (a channel's, a timer heap's, `allgs`) may allocate: a thread waiting
//! for one of them waits for a thread that runs, or that sysmon can
//! retake a P from. `GORTDEBUG=schedtrace` and execution traces allocate
//! in sysmon when they report: debugging switches, outside the rule.
//!
//! Several locks of level 2 are never held at once except by `select`, which
//! takes them in address order (and says so).
//!
//! # Invariants
//!
//! - A G is owned by exactly one party at a time: a run queue, the M running
//!   it, or the object it is parked on. Ownership passes only through the
//!   run queues (release/acquire), `Sched::lock`, and park/ready. The
//!   non-atomic fields of a G are touched only by its owner.
//! - A P is in `pidle` (status `Idle`), held by one M (`Running`), or
//!   retired by `set_procs` (`Dead`, in neither).
//! - Runtime code never keeps a reference to its M across a switch: after a
//!   G resumes it may be on another thread, so it calls `current_m()` again.
//! - g0 never runs user code: only the runtime's own `gopark` callbacks
//!   (which release a lock or flip a token's state, and never block) and
//!   timer callbacks (which ready goroutines or `try_send`). User values are
//!   dropped on goroutine stacks (or the spawner's, when `newproc` finds no
//!   stack for a goroutine) — with one exception: the closure of a goroutine
//!   that cannot get a stack at its first run is dropped on g0
//!   (`give_stack`).

mod blocks;
mod chaos;
mod g;
mod histogram;
mod idle;
mod links;
mod lock;
mod m;
mod p;
mod park;
mod poll;
mod preempt;
mod runq;
mod schedule;
mod spawner;
mod syscall;
mod sysmon;
pub(crate) mod timers;
mod trace;
mod wakestate;

pub(crate) use blocks::{BlockClass, alloc_block, free_block};
pub(crate) use chaos::point as chaos_point;
pub(crate) use g::{GPtr, GStatus, Task, WaitReason};
pub use histogram::DurationHistogram;
pub(crate) use lock::{RuntimeLock, RuntimeLockGuard};
pub(crate) use m::NoPreempt;
pub(crate) use m::current_m;
pub(crate) use m::{M, Pending};
pub(crate) use p::P;
pub(crate) use park::{Claim, TIMED_OUT, TokenLoan, WaitCell, WaitToken, Waiter, park_if, yield_now};
pub(crate) use preempt::{install as install_preemption, safe_point};
pub(crate) use schedule::{lock_os_thread, newproc, unlock_os_thread};
pub(crate) use syscall::blocking;
pub(crate) use timers::nanotime;

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;

use crate::netpoll::Poller;
use crate::stack::StackPool;
use m::MPtr;
use p::PPtr;

/// Upper bound of `gomaxprocs`; `allp` is allocated once at this size so
/// stealers can read it without a lock.
pub(crate) const MAX_PROCS: usize = 1024;

/// Configuration a runtime is built with (validated by `runtime::Builder`).
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) procs: usize,
    pub(crate) stack_size: usize,
    pub(crate) max_threads: usize,
    pub(crate) preempt_slice: std::time::Duration,
    pub(crate) keep_alive: std::time::Duration,
    pub(crate) detect_deadlocks: bool,
    /// `Builder::unjoined_panic_exits`.
    pub(crate) unjoined_panic_exits: bool,
    /// `Builder::chaos`'s seed; `GORTDEBUG=chaos=SEED` applies when `None`.
    pub(crate) chaos: Option<u64>,
}

/// State of one runtime's scheduler (Go's `schedt` plus `allp`).
pub(crate) struct Sched {
    pub(crate) name: String,
    /// This runtime's number in execution traces (`trace/`).
    pub(crate) trace_id: u32,
    /// This runtime itself, for the threads it starts to hold on to.
    me: Weak<Sched>,
    /// Every P ever created, index = P id; slots past `gomaxprocs` may hold
    /// retired Ps. Written only under `lock`, read lock-free by stealers.
    allp: Box<[AtomicPtr<P>]>,
    gomaxprocs: AtomicUsize,
    lock: Mutex<Locked>,
    /// Length of `Locked::runq`, readable without the lock: a hint used to
    /// skip locking when the global queue is empty.
    runqsize: AtomicUsize,
    npidle: AtomicUsize,
    /// The sleeper's deadline (`Locked::sleeper`), `NO_TIMER` if none:
    /// lets a timer start skip `lock` in the common case.
    timer_sleep_until: AtomicU64,
    nmspinning: AtomicUsize,
    gfree: Mutex<Vec<GPtr>>,
    /// Every G ever allocated, for shutdown (and later, dumps).
    allgs: Mutex<Vec<GPtr>>,
    pub(crate) stacks: StackPool,
    max_threads: usize,
    goidgen: AtomicU64,
    /// Goroutines spawned from outside the runtime, and abandoned unrun;
    /// the rest are counted per P (`P::created`, `P::exited`).
    created_outside: AtomicU64,
    exited_outside: AtomicU64,
    /// Ms currently alive; `mnext` hands out ids.
    mcount: AtomicUsize,
    mnext: AtomicU64,
    steals: AtomicU64,
    /// How long a goroutine may run while others wait (`sysmon.rs`).
    preempt_slice: std::time::Duration,
    /// How long an idle M waits for work before its thread exits.
    keep_alive: std::time::Duration,
    /// `GORTDEBUG` (`trace.rs`), read when the runtime is built.
    debug: trace::DebugFlags,
    /// The chaos scheduler's seed, if it is on (`chaos.rs`).
    chaos: Option<u64>,
    /// Counters of rare events (`Metrics`).
    pub(crate) events: EventCounters,
    /// Scheduling latencies and park durations recorded outside any P of
    /// this runtime (`histogram.rs`); the rest are per P.
    pub(crate) histograms: histogram::SchedHistograms,
    /// Every live M, for sysmon; an M leaves before its struct dies.
    allm: Mutex<Vec<MPtr>>,
    /// sysmon and the spawner have been started (`spawner.rs`).
    helpers_started: std::sync::Once,
    /// Ps taken by an M (`acquirep`): with `P::ran`, what a preempted
    /// goroutine watches for progress (`preempt.rs`).
    p_acquires: AtomicU64,
    /// Threads asked of the spawner.
    spawns: spawner::Spawns,
    /// The spawner's thread id (0 until it starts): one of the deadlock
    /// check's "own" threads.
    spawner_tid: std::sync::atomic::AtomicI32,
    /// sysmon sleeps on this between cycles; `wake_sysmon` cuts it short.
    sysmon_note: crate::os::Note,
    /// sysmon sleeps longer than a system call should go unwatched: the
    /// next goroutine to enter one wakes it (`nudge_sysmon`).
    sysmon_dozing: std::sync::atomic::AtomicBool,
    /// sysmon's counters (`Metrics`).
    preempt_requests: AtomicU64,
    preempt_signals: AtomicU64,
    syscall_handoffs: AtomicU64,
    blocked_detections: AtomicU64,
    /// `nanotime` as of sysmon's last look: the clock parks stamp
    /// `G::wait_since` with, for the price of a load (dumps show waits in
    /// milliseconds and minutes, so sysmon's pacing is precise enough).
    pub(crate) coarse_now: AtomicU64,
    /// Run the deadlock check (`debug/deadlock.rs`)?
    detect_deadlocks: bool,
    /// End the process when a detached goroutine panics (`goroutine/panic.rs`).
    unjoined_panic_exits: bool,
    /// sysmon's thread id (0 until it starts): one of the deadlock check's
    /// "own" threads.
    sysmon_tid: std::sync::atomic::AtomicI32,
    /// The network poller, created by the first socket (`poll.rs`).
    poller: OnceLock<Arc<Poller>>,
    /// Serialises the poller's creation; true once `begin_shutdown` has
    /// passed, after which none is created.
    poller_init: Mutex<bool>,
    shutdown: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The part of `Sched` guarded by `Sched::lock`.
pub(crate) struct Locked {
    runq: links::GQueue,
    /// Allocated for `MAX_PROCS` up front: pushing never allocates.
    pidle: Vec<PPtr>,
    midle: links::MStack,
    /// The M sleeping (in the network poll or on its note) until the
    /// earliest timer while every P is idle (`poll.rs`).
    sleeper: Option<poll::Sleeper>,
    thread_limit_warned: bool,
    preempt_limit_warned: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> LockGuard<'_, T> {
    let section = NoPreempt::enter();
    // Runtime critical sections never panic while holding a lock, and if a
    // user closure run under one did, its state is still consistent.
    let guard = m.lock().unwrap_or_else(PoisonError::into_inner);
    LockGuard {
        guard,
        _no_alloc: None,
        _section: section,
    }
}

/// `lock` for the scheduler's own locks, `Sched::lock` and `Sched::allm`,
/// under which nothing allocates or frees (module header), checked by
/// `runtime::AllocCheck`.
pub(crate) fn lock_sched<T>(m: &Mutex<T>) -> LockGuard<'_, T> {
    let mut guard = lock(m);
    guard._no_alloc = Some(crate::debug::NoAlloc::enter());
    guard
}

/// Push `item` onto the `Vec` behind runtime lock `m` without allocating
/// while the lock is held (the rule in the module header): a full `Vec` is
/// swapped for a larger one allocated before the lock is taken again, and
/// the old buffer is freed after it is let go.
pub(crate) fn push_growing_unlocked<T>(m: &Mutex<Vec<T>>, item: T) {
    let mut spare: Vec<T> = Vec::new();
    loop {
        let mut v = lock(m);
        if v.len() < v.capacity() {
            v.push(item);
            return;
        }
        if spare.capacity() > v.len() {
            spare.append(&mut v);
            std::mem::swap(&mut *v, &mut spare);
            v.push(item);
            drop(v);
            // `spare` now holds the old, empty buffer: freed here, unlocked.
            return;
        }
        let want = (v.len() + 1).next_power_of_two().max(8);
        drop(v);
        spare = Vec::with_capacity(want);
    }
}

/// A runtime lock held by the current M, which is not preempted while it
/// holds one (a preempted holder would make everyone else wait for its
/// thread to get a P back). Fields drop in order: unlock, then end the
/// sections.
pub(crate) struct LockGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    _no_alloc: Option<crate::debug::NoAlloc>,
    _section: NoPreempt,
}

impl<T> std::ops::Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl Sched {
    pub(crate) fn new(cfg: Config) -> Arc<Sched> {
        #[cfg(feature = "hook-io")]
        crate::hook::install();
        let debug = trace::DebugFlags::from_env();
        let chaos = cfg.chaos.or(debug.chaos);
        if chaos.is_some() {
            chaos::enable();
        }
        let allp: Box<[AtomicPtr<P>]> = (0..MAX_PROCS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
        let debug = trace::DebugFlags::from_env();
        let trace_id = crate::trace::register_runtime(&cfg.name);
        let sched = Arc::new_cyclic(|me| Sched {
            name: cfg.name,
            trace_id,
            me: me.clone(),
            allp,
            gomaxprocs: AtomicUsize::new(0),
            lock: Mutex::new(Locked {
                runq: links::GQueue::default(),
                pidle: Vec::with_capacity(MAX_PROCS),
                midle: links::MStack::default(),
                sleeper: None,
                thread_limit_warned: false,
                preempt_limit_warned: false,
            }),
            runqsize: AtomicUsize::new(0),
            npidle: AtomicUsize::new(0),
            timer_sleep_until: AtomicU64::new(timers::NO_TIMER),
            nmspinning: AtomicUsize::new(0),
            gfree: Mutex::new(Vec::new()),
            allgs: Mutex::new(Vec::new()),
            stacks: StackPool::new(cfg.stack_size),
            max_threads: cfg.max_threads,
            goidgen: AtomicU64::new(0),
            created_outside: AtomicU64::new(0),
            exited_outside: AtomicU64::new(0),
            mcount: AtomicUsize::new(0),
            mnext: AtomicU64::new(0),
            steals: AtomicU64::new(0),
            preempt_slice: cfg.preempt_slice,
            keep_alive: cfg.keep_alive,
            debug,
            chaos,
            events: EventCounters::default(),
            histograms: histogram::SchedHistograms::default(),
            allm: Mutex::new(Vec::new()),
            helpers_started: std::sync::Once::new(),
            p_acquires: AtomicU64::new(0),
            spawns: spawner::Spawns::new(),
            spawner_tid: std::sync::atomic::AtomicI32::new(0),
            sysmon_note: crate::os::Note::new(),
            sysmon_dozing: std::sync::atomic::AtomicBool::new(false),
            preempt_requests: AtomicU64::new(0),
            preempt_signals: AtomicU64::new(0),
            syscall_handoffs: AtomicU64::new(0),
            blocked_detections: AtomicU64::new(0),
            coarse_now: AtomicU64::new(timers::nanotime()),
            detect_deadlocks: cfg.detect_deadlocks && !debug.deadlock_off,
            unjoined_panic_exits: cfg.unjoined_panic_exits,
            sysmon_tid: std::sync::atomic::AtomicI32::new(0),
            poller: OnceLock::new(),
            poller_init: Mutex::new(false),
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        sched.procresize(cfg.procs);
        sched
    }

    /// `set_procs`: resize, then let new Ps pick up waiting work.
    pub(crate) fn set_procs(&self, n: usize) -> usize {
        let old = self.procresize(n);
        for _ in old..n {
            self.wakep();
        }
        old
    }

    /// Whether any goroutine is still alive (parked, runnable or running).
    pub(crate) fn has_live_goroutines(&self) -> bool {
        self.num_goroutine() > 0
    }

    /// Stack bytes a goroutine gets unless its spawn says otherwise.
    pub(crate) fn stack_size(&self) -> usize {
        self.stacks.default_size()
    }

    pub(crate) fn gomaxprocs(&self) -> usize {
        self.gomaxprocs.load(Ordering::Relaxed)
    }

    /// P number `id`, if it was ever created.
    fn p(&self, id: usize) -> Option<PPtr> {
        // Acquire pairs with the Release store in `procresize`: the P's
        // fields are initialised before its pointer is seen.
        PPtr::from_raw(self.allp[id].load(Ordering::Acquire))
    }

    /// Put `g` at the tail of the global run queue. Any thread.
    pub(crate) fn globrunqput(&self, g: GPtr) {
        let mut l = lock_sched(&self.lock);
        l.runq.push_back(g);
        self.runqsize.store(l.runq.len(), Ordering::Relaxed);
    }

    pub(crate) fn num_goroutine(&self) -> usize {
        // Exits first: a goroutine seen exited was created before, so the
        // difference does not go negative except through counter staleness.
        let (created, exited) = self.goroutine_totals();
        created.saturating_sub(exited) as usize
    }

    /// Goroutines (ever created, ever exited), summed over every P ever made.
    fn goroutine_totals(&self) -> (u64, u64) {
        let ps: Vec<PPtr> = (0..MAX_PROCS).map_while(|i| self.p(i)).collect();
        let exited = self.exited_outside.load(Ordering::Relaxed)
            + ps.iter().map(|p| p.exited.load(Ordering::Relaxed)).sum::<u64>();
        let created = self.created_outside.load(Ordering::Relaxed)
            + ps.iter().map(|p| p.created.load(Ordering::Relaxed)).sum::<u64>();
        (created, exited)
    }

    /// `GORTDEBUG` as this runtime read it.
    pub(crate) fn debug_flags(&self) -> trace::DebugFlags {
        self.debug
    }

    pub(crate) fn detect_deadlocks(&self) -> bool {
        self.detect_deadlocks
    }

    pub(crate) fn unjoined_panic_exits(&self) -> bool {
        self.unjoined_panic_exits
    }

    /// Nothing runs or waits to run: every P idle, no M spinning, every
    /// run queue empty. A snapshot; the deadlock check confirms it twice.
    pub(crate) fn is_quiescent(&self) -> bool {
        let n = self.gomaxprocs();
        self.npidle.load(Ordering::SeqCst) == n
            && self.nmspinning.load(Ordering::SeqCst) == 0
            && self.runqsize.load(Ordering::SeqCst) == 0
            && (0..n).filter_map(|i| self.p(i)).all(|p| p.runq.is_empty())
    }

    /// Moves whenever anything is scheduled: goroutines created and exited,
    /// and time slices started on every P.
    pub(crate) fn progress_stamp(&self) -> (u64, u64, u64) {
        let (created, exited) = self.goroutine_totals();
        let ticks = (0..MAX_PROCS)
            .map_while(|i| self.p(i))
            .map(|p| u64::from(p.schedtick.load(Ordering::Relaxed)))
            .sum();
        (created, exited, ticks)
    }

    /// This runtime's threads: its Ms, sysmon and the spawner. The set is
    /// built outside `allm`, under which nothing allocates.
    pub(crate) fn own_threads(&self) -> std::collections::HashSet<libc::pid_t> {
        let mut own = std::collections::HashSet::with_capacity(self.mcount.load(Ordering::Relaxed) + 8);
        let mut at = 0;
        loop {
            // A few at a time into a fixed buffer, so that the set grows
            // between two holds of the lock.
            let mut batch = [0 as libc::pid_t; 64];
            let n = {
                let allm = lock_sched(&self.allm);
                let more = allm.iter().skip(at).take(batch.len());
                let mut n = 0;
                for (slot, m) in batch.iter_mut().zip(more) {
                    *slot = m.get().tid;
                    n += 1;
                }
                n
            };
            own.extend(&batch[..n]);
            at += n;
            if n < batch.len() {
                break;
            }
        }
        own.insert(self.sysmon_tid.load(Ordering::Relaxed));
        own.insert(self.spawner_tid.load(Ordering::Relaxed));
        own
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// Counters of events too rare to need per-P counters — preemptions, fired
/// timers, chaos decisions — bumped by whichever thread sees one. Aligned
/// so that they share no cache line with the fields every M reads on its
/// hot path (`runqsize`, `npidle`, `nmspinning`).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct EventCounters {
    /// Goroutines that yielded at a runtime call because of a preemption
    /// request.
    pub(crate) preempts_cooperative: AtomicU64,
    /// Goroutines a preemption signal stopped.
    pub(crate) preempts_async: AtomicU64,
    /// Timer callbacks run.
    pub(crate) timers_fired: AtomicU64,
    /// Decisions the chaos scheduler changed.
    pub(crate) chaos_injections: AtomicU64,
    /// sysmon's looks for a deadlock that read every goroutine.
    pub(crate) deadlock_looks: AtomicU64,
    /// Preempted goroutines that took themselves back from a runtime in
    /// which no P switched goroutines for a while (`preempt.rs`).
    pub(crate) preempt_escapes: AtomicU64,
}

impl EventCounters {
    /// Count one event. Any thread.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Scheduler counters and gauges (Go's runtime/metrics where it has a
/// name for the same thing), from `gort::runtime::metrics()`.
///
/// Counters only grow: compare two readings. They are read without
/// stopping anything, so one reading is only roughly consistent with itself.
///
/// # Cost
///
/// A reading is O(Ps), whatever the number of goroutines or stacks: one
/// pass over every P ever created (atomic loads, and each P's timer-heap
/// lock for `timers_queued`), the scheduler lock once (`threads_idle`),
/// two small vectors, and no system call. Measured (release build, 2 Ps,
/// a loaded 2-core machine): 0.1 to 3 µs per reading with 1,000 or with
/// 100,000 goroutines parked, against 380 µs and 40 ms when the reading
/// also counted resident stack pages. Cheap enough to read per request. The resident stack memory, which
/// costs a walk over every stack page, is a call of its own:
/// [`stack_bytes_resident`](crate::runtime::stack_bytes_resident).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Metrics {
    /// Goroutines ever spawned (`/sched/goroutines-created:goroutines`).
    pub goroutines_created: u64,
    /// Goroutines alive now (`/sched/goroutines:goroutines`).
    pub goroutines_live: usize,
    /// Ms (OS threads) alive now (`/sched/threads/total:threads`).
    pub threads_live: usize,
    /// Ms parked on the idle list with no P and no work (the `idlethreads`
    /// of `GORTDEBUG=schedtrace`). The runtime's sleeper, blocked until the
    /// next timer or socket event, is not counted.
    pub threads_idle: usize,
    /// Ms ever started.
    pub threads_started: u64,
    /// Successful steals from another P's run queue.
    pub steals: u64,
    /// Goroutine switches by Ms: each time an M switched from its scheduler
    /// to a goroutine, on every P ever made. A goroutine resuming after an
    /// asynchronous preemption returns to its thread without one.
    pub context_switches: u64,
    /// Goroutines sysmon asked to yield because they ran past their slice
    /// while others waited (under chaos, also at random).
    pub preempt_requests: u64,
    /// Preemption signals (SIGURG) sysmon sent because a request was not
    /// honoured at a runtime call in time (under chaos, also at random).
    /// The chaos scheduler's own requests and signals at runtime calls are
    /// counted in `chaos_injections` only, so these two say whether the
    /// clock-driven watchdog intervened in a run.
    pub preempt_signals: u64,
    /// Preemption requests honoured cooperatively: the goroutine yielded at
    /// a runtime call (spawn, join, sleep, socket I/O, the end of
    /// `blocking`) because its flag was set.
    pub preempts_cooperative: u64,
    /// Goroutines a preemption signal actually stopped (Go's asynchronous
    /// preemptions). Fewer than `preempt_signals`: a signal that finds its
    /// goroutine already switched out, or on a stack it must not touch,
    /// stops nothing, and one that finds it in a runtime critical section
    /// waits for the section's end.
    pub preempts_async: u64,
    /// Ps sysmon took from goroutines in system calls and handed to other Ms.
    pub syscall_handoffs: u64,
    /// Threads sysmon found blocked in the kernel in un-annotated calls.
    pub blocked_detections: u64,
    /// Polls of the network poller, blocking or not (`epoll_wait` calls).
    pub netpoll_polls: u64,
    /// Waiters (goroutines, or plain threads) the poller woke because
    /// their socket became ready.
    pub netpoll_wakeups: u64,
    /// Timer callbacks run: sleeps and deadlines ending, `Timer`s, `after`
    /// and `tick` firing.
    pub timers_fired: u64,
    /// Timer entries queued in the P's heaps: pending timers, plus
    /// cancelled or abandoned ones not yet swept out. Sweeps run as timers
    /// are started, and leave up to about twice as many leftovers as
    /// pending timers (or 64); with no new timers, leftovers stay until
    /// due (`sched/timers.rs`).
    pub timers_queued: usize,
    /// Scheduling decisions the chaos scheduler made differently
    /// (`Builder::chaos`); 0 without chaos.
    pub chaos_injections: u64,
    /// Looks sysmon took for a deadlock (Go's `checkdead`) while every P
    /// was idle. Each reads every goroutine, so after one that finds none
    /// the next waits longer and longer, up to a second.
    pub deadlock_looks: u64,
    /// Goroutines stopped by a preemption signal that took themselves back
    /// because no P switched goroutines for four slices while they waited
    /// (the runtime was stuck behind them: they may have been stopped
    /// inside the allocator holding its lock). 0 in a healthy program.
    pub preempt_escapes: u64,
    /// Time slices run on each current P, by P id.
    pub ran_per_p: Vec<u64>,
    /// Goroutines waiting in each current P's local run queue, by P id.
    pub local_run_queues: Vec<usize>,
    /// Goroutines waiting in the global run queue.
    pub global_run_queue: usize,
    /// Address space reserved for goroutine stacks: virtual, not memory
    /// (pages are committed on first touch; see
    /// [`stack_bytes_resident`](crate::runtime::stack_bytes_resident)).
    pub stack_bytes_reserved: usize,
    /// Stacks allocated: in use by goroutines (each holds one from its
    /// spawn to its end) or cached for reuse.
    pub stacks_allocated: usize,
    /// How long goroutines waited from becoming runnable (spawned, readied
    /// or yielding) to running (Go's `/sched/latencies:seconds`). Sampled:
    /// one in 8 of each goroutine's transitions is timed, with the real
    /// clock.
    pub sched_latency: DurationHistogram,
    /// How long goroutines stayed parked before something readied them,
    /// by sysmon's coarse clock: accurate to its pacing (20 µs to 10 ms).
    /// Every wake-up counts; goroutines still parked do not (yet).
    pub park_durations: DurationHistogram,
}

impl Sched {
    pub(crate) fn metrics(&self) -> Metrics {
        let ps: Vec<PPtr> = (0..self.gomaxprocs()).filter_map(|i| self.p(i)).collect();
        let every_p = (0..MAX_PROCS).map_while(|i| self.p(i));
        let (netpoll_polls, netpoll_wakeups) = self.poller.get().map_or((0, 0), |p| p.counts());
        // Its own statement: the guard of a temporary would live on through
        // the allocations below, and nothing allocates under this lock.
        let threads_idle = lock_sched(&self.lock).midle.len();
        let mut sched_latency = DurationHistogram::default();
        let mut park_durations = DurationHistogram::default();
        for p in (0..MAX_PROCS).map_while(|i| self.p(i)) {
            p.histograms.sched_latency.add_to(&mut sched_latency);
            p.histograms.park_durations.add_to(&mut park_durations);
        }
        self.histograms.sched_latency.add_to(&mut sched_latency);
        self.histograms.park_durations.add_to(&mut park_durations);
        Metrics {
            goroutines_created: self.goroutine_totals().0,
            goroutines_live: self.num_goroutine(),
            threads_live: self.mcount.load(Ordering::Relaxed),
            threads_idle,
            threads_started: self.mnext.load(Ordering::Relaxed),
            steals: self.steals.load(Ordering::Relaxed),
            context_switches: every_p.map(|p| p.ran.load(Ordering::Relaxed)).sum(),
            preempt_requests: self.preempt_requests.load(Ordering::Relaxed),
            preempt_signals: self.preempt_signals.load(Ordering::Relaxed),
            preempts_cooperative: self.events.preempts_cooperative.load(Ordering::Relaxed),
            preempts_async: self.events.preempts_async.load(Ordering::Relaxed),
            syscall_handoffs: self.syscall_handoffs.load(Ordering::Relaxed),
            blocked_detections: self.blocked_detections.load(Ordering::Relaxed),
            netpoll_polls,
            netpoll_wakeups,
            timers_fired: self.events.timers_fired.load(Ordering::Relaxed),
            timers_queued: self.timers_queued(),
            chaos_injections: self.events.chaos_injections.load(Ordering::Relaxed),
            deadlock_looks: self.events.deadlock_looks.load(Ordering::Relaxed),
            preempt_escapes: self.events.preempt_escapes.load(Ordering::Relaxed),
            ran_per_p: ps.iter().map(|p| p.ran.load(Ordering::Relaxed)).collect(),
            local_run_queues: ps.iter().map(|p| p.runq.len()).collect(),
            global_run_queue: self.runqsize.load(Ordering::Relaxed),
            stack_bytes_reserved: self.stacks.reserved_bytes(),
            stacks_allocated: self.stacks.allocated(),
            sched_latency,
            park_durations,
        }
    }

    /// `runtime::stack_bytes_resident`: O(stack pages), see there.
    pub(crate) fn stack_bytes_resident(&self) -> usize {
        self.stacks.resident_bytes()
    }
}

impl Drop for Sched {
    /// Runs when the last handle is gone: every M has exited (each holds an
    /// `Arc`), so Gs and Ps can be freed. Stacks go with the allocator.
    fn drop(&mut self) {
        self.free_all_gs();
        self.free_all_ps();
    }
}
