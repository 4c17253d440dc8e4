//! G: a goroutine's state, and its life cycle from allocation to recycling
//! (Go's `g` in runtime2.go; `malg`, `gfput`, `gfget` in proc.go).
//!
//! A G is allocated once and then recycled: when its goroutine ends, its
//! stack goes back to the P's stack cache (`stack/cache.rs`) and the G
//! itself on the P's free list, and the next spawn on that P reuses it. A P
//! keeps at most `LOCAL_FREE_MAX` dead Gs; beyond that it moves a batch to
//! the runtime's global list. Gs are freed only when their runtime is
//! dropped, so a `GPtr` never dangles while the runtime lives.
//!
//! Field ownership: `status` is atomic (read by anyone); every other field
//! is touched only by the G's current owner (see `sched/mod.rs`), which is
//! why `G` can be `Sync` although it uses `Cell`s — except what dumps read
//! from other threads (`debug/dump.rs`): the id, parent, wait reason, park
//! and spawn locations and wait start are relaxed atomics (plain moves on
//! x86-64; a dump is a snapshot and may be stale), and the name is written
//! under the `allgs` lock when it changes (`Sched::set_g_name`), which the
//! dump holds while it copies names.

use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use super::m::MPtr;
use super::p::P;
use super::park::WaitToken;
use super::timers::TimerSlot;
use super::{Sched, lock};
use crate::arch::{Context, SuspendedRegs};
use crate::goroutine::LocalMap;
use crate::stack::Stack;

/// Dead Gs a P keeps before spilling half to the global list.
const LOCAL_FREE_MAX: usize = 64;
/// Dead Gs a P refills its empty list with from the global one.
const LOCAL_FREE_REFILL: usize = 32;

/// A goroutine's status (Go's `_Gidle`, `_Grunnable`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum GStatus {
    /// Allocated, never used.
    Idle = 0,
    /// On a run queue, not running.
    Runnable,
    /// Running user code on an M.
    Running,
    /// In a system call (issue 5).
    Syscall,
    /// Parked in `gopark`.
    Waiting,
    /// Stopped by asynchronous preemption (issue 5).
    Preempted,
    /// Finished; on a free list.
    Dead,
}

/// Why a goroutine is parked (shown by dumps).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum WaitReason {
    None,
    /// `JoinHandle::join`.
    Join,
    /// The end of `scope`, waiting for its goroutines.
    Scope,
    /// `WaitGroup::wait`.
    WaitGroup,
    /// Sending on a channel.
    ChanSend,
    /// Receiving from a channel.
    ChanReceive,
    /// `select!` with no ready case.
    Select,
    /// `time::sleep`.
    Sleep,
    /// `sync::Mutex` (and `RwLock`'s writers and readers).
    Mutex,
    RwLockRead,
    RwLockWrite,
    /// `sync::Condvar::wait`.
    Condvar,
    /// `sync::Semaphore::acquire`.
    Semaphore,
    /// `sync::Barrier::wait`.
    Barrier,
    /// `sync::Once` / `OnceLock` initialisation by another goroutine.
    Once,
    /// Waiting for a socket (`net`).
    IoWait,
    /// `block_on`: a future returned `Pending`; its waker readies us.
    Future,
}

impl WaitReason {
    /// Indexed by discriminant.
    const ALL: [WaitReason; 17] = [
        WaitReason::None,
        WaitReason::Join,
        WaitReason::Scope,
        WaitReason::WaitGroup,
        WaitReason::ChanSend,
        WaitReason::ChanReceive,
        WaitReason::Select,
        WaitReason::Sleep,
        WaitReason::Mutex,
        WaitReason::RwLockRead,
        WaitReason::RwLockWrite,
        WaitReason::Condvar,
        WaitReason::Semaphore,
        WaitReason::Barrier,
        WaitReason::Once,
        WaitReason::IoWait,
        WaitReason::Future,
    ];

    /// The reason's one-byte code (its discriminant): how the G and the
    /// execution trace store it.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The reason whose code is `code`, if any.
    pub(crate) fn from_code(code: u8) -> Option<WaitReason> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The words a dump shows, Go's where Go has the same wait.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WaitReason::None => "waiting",
            WaitReason::Join => "join",
            WaitReason::Scope => "scope wait",
            WaitReason::WaitGroup => "sync.WaitGroup.Wait",
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::Select => "select",
            WaitReason::Sleep => "sleep",
            WaitReason::Mutex => "sync.Mutex.Lock",
            WaitReason::RwLockRead => "sync.RWMutex.RLock",
            WaitReason::RwLockWrite => "sync.RWMutex.Lock",
            WaitReason::Condvar => "sync.Cond.Wait",
            WaitReason::Semaphore => "semacquire",
            WaitReason::Barrier => "barrier wait",
            WaitReason::Once => "sync.Once",
            WaitReason::IoWait => "IO wait",
            WaitReason::Future => "future",
        }
    }
}

/// A goroutine's body as the scheduler sees it: a type-erased pointer with
/// two operations, exactly one of which is ever called, once — `run` on the
/// goroutine's stack when it starts, or `abandon` (by dropping the `Task`)
/// if it never can (no stack, runtime shut down), which still completes its
/// join handle. Built by `goroutine/job.rs`.
pub(crate) struct Task {
    ptr: NonNull<()>,
    run: unsafe fn(NonNull<()>),
    abandon: unsafe fn(NonNull<()>),
}

// SAFETY: `Task::new`'s contract: the pointee may be run or abandoned from
// any thread.
unsafe impl Send for Task {}

impl Task {
    /// # Safety
    /// `run(ptr)` and `abandon(ptr)` must be sound to call once, from any
    /// thread, for whichever of the two is called.
    pub(crate) unsafe fn new(ptr: NonNull<()>, run: unsafe fn(NonNull<()>), abandon: unsafe fn(NonNull<()>)) -> Task {
        Task { ptr, run, abandon }
    }

    pub(crate) fn run(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: consumed here, so neither `run` nor `abandon` is called again.
        unsafe { (this.run)(this.ptr) }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: a dropped Task was never run (`run` forgets it).
        unsafe { (self.abandon)(self.ptr) }
    }
}

/// Three cache lines at most: a run of goroutines (a ring of channel peers,
/// say) is touched G after G, so every byte here costs. The dump's fields
/// (`parked_at`, `wait_since`, `parent`, `interrupted`) are written at
/// every park, spawn or asynchronous preemption and read only by dumps.
const _: () = assert!(std::mem::size_of::<G>() <= 192);

fn stack_size_u32(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("stack sizes are checked to be at most 1 GiB")
}

/// A goroutine.
pub(crate) struct G {
    pub(crate) ctx: UnsafeCell<Context>,
    id: AtomicU64,
    status: AtomicU8,
    /// The runtime this G belongs to; fixed at allocation.
    pub(crate) sched: NonNull<Sched>,
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    /// Usable stack bytes this goroutine asked for.
    /// (u32: at most 1 GiB, `stack::MAX_STACK_SIZE`; it keeps G at 128 bytes.)
    pub(crate) stack_size: Cell<u32>,
    pub(crate) entry: UnsafeCell<Option<Task>>,
    pub(crate) name: UnsafeCell<Option<Arc<str>>>,
    spawned_at: AtomicPtr<Location<'static>>,
    /// The id of the goroutine that spawned this one; 0 for a plain thread.
    parent: AtomicU64,
    wait_reason: AtomicU8,
    /// Where the goroutine's code called the blocking function it is parked
    /// in (`#[track_caller]` through every public blocking call).
    parked_at: AtomicPtr<Location<'static>>,
    /// When it parked, in the runtime's coarse clock (`Sched::coarse_now`).
    wait_since: AtomicU64,
    /// Where an asynchronous preemption stopped it (ip, sp, bp; ip 0: not
    /// stopped so): its stack trace starts there, not at `ctx`, which the
    /// preemption does not save into.
    interrupted: [AtomicUsize; 3],
    /// The goroutine's reusable wait token (`WaitToken::lend`).
    pub(crate) token: UnsafeCell<Option<Arc<WaitToken>>>,
    /// The goroutine's reusable timer for timed waits (`TimerSlot`).
    pub(crate) timer: UnsafeCell<TimerSlot>,
    /// Goroutine-local values (`gort::local!`), created on first use.
    pub(crate) locals: UnsafeCell<Option<Box<LocalMap>>>,
    /// The M this goroutine must run on (`lock_os_thread`, or an async
    /// preemption that keeps its thread): whoever picks it from a run
    /// queue hands that M a P instead of running it (`startlockedm`).
    pub(crate) lockedm: Cell<Option<MPtr>>,
    /// The next G on the global run queue (`links.rs`); only under
    /// `Sched::lock`, while the queue owns this G.
    pub(crate) schedlink: Cell<Option<GPtr>>,
}

// SAFETY: `status` is atomic; every other field is accessed only by the G's
// single owner at a time, and ownership changes hands only through the run
// queues, `Sched::lock` and park/ready, all of which order memory
// (release/acquire). See the invariants in `sched/mod.rs`.
unsafe impl Sync for G {}
// SAFETY: as above; a G is handed between threads only by those channels.
unsafe impl Send for G {}

impl G {
    pub(crate) fn status(&self) -> GStatus {
        match self.status.load(Ordering::Acquire) {
            0 => GStatus::Idle,
            1 => GStatus::Runnable,
            2 => GStatus::Running,
            3 => GStatus::Syscall,
            4 => GStatus::Waiting,
            5 => GStatus::Preempted,
            _ => GStatus::Dead,
        }
    }

    /// Release pairs with the Acquire load in `status`: a reader that sees
    /// the new status also sees what the owner wrote before.
    pub(crate) fn set_status(&self, s: GStatus) {
        self.status.store(s as u8, Ordering::Release);
    }

    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// The goroutine that spawned this one (0: a plain thread).
    pub(crate) fn parent(&self) -> u64 {
        self.parent.load(Ordering::Relaxed)
    }

    /// Name a fresh G for a new goroutine. Owner only.
    pub(crate) fn set_identity(&self, id: u64, parent: u64, spawned_at: &'static Location<'static>) {
        self.id.store(id, Ordering::Relaxed);
        self.parent.store(parent, Ordering::Relaxed);
        self.spawned_at.store(location_ptr(spawned_at), Ordering::Relaxed);
    }

    pub(crate) fn spawned_at(&self) -> &'static Location<'static> {
        // SAFETY: only ever stored from a `&'static Location`.
        unsafe { &*self.spawned_at.load(Ordering::Relaxed) }
    }

    pub(crate) fn wait_reason(&self) -> WaitReason {
        WaitReason::from_code(self.wait_reason.load(Ordering::Relaxed)).unwrap_or(WaitReason::None)
    }

    pub(crate) fn set_wait_reason(&self, reason: WaitReason) {
        self.wait_reason.store(reason.code(), Ordering::Relaxed);
    }

    /// Where and since when (coarse `nanotime`) the goroutine waits.
    pub(crate) fn parked(&self) -> (&'static Location<'static>, u64) {
        // SAFETY: only ever stored from a `&'static Location`.
        let at = unsafe { &*self.parked_at.load(Ordering::Relaxed) };
        (at, self.wait_since.load(Ordering::Relaxed))
    }

    /// Record a park: why, where, when. Owner only.
    pub(crate) fn set_parked(&self, reason: WaitReason, at: &'static Location<'static>, since: u64) {
        self.set_wait_reason(reason);
        self.parked_at.store(location_ptr(at), Ordering::Relaxed);
        self.wait_since.store(since, Ordering::Relaxed);
    }

    /// Record where an asynchronous preemption stopped the goroutine (`None`:
    /// it resumed). Its own thread, signal handler included.
    pub(crate) fn set_interrupted(&self, regs: Option<SuspendedRegs>) {
        let regs = regs.unwrap_or(SuspendedRegs { ip: 0, sp: 0, bp: 0 });
        self.interrupted[1].store(regs.sp, Ordering::Relaxed);
        self.interrupted[2].store(regs.bp, Ordering::Relaxed);
        self.interrupted[0].store(regs.ip, Ordering::Relaxed);
    }

    /// Where an asynchronous preemption stopped the goroutine, if it did and
    /// it has not resumed. Any thread (a snapshot, possibly stale).
    pub(crate) fn interrupted(&self) -> Option<SuspendedRegs> {
        let ip = self.interrupted[0].load(Ordering::Relaxed);
        (ip != 0).then(|| SuspendedRegs {
            ip,
            sp: self.interrupted[1].load(Ordering::Relaxed),
            bp: self.interrupted[2].load(Ordering::Relaxed),
        })
    }

    /// The stack range, for the overflow report. Signal-handler safe.
    ///
    /// # Safety
    /// Only the thread running this G (or its signal handler) may call it.
    pub(crate) unsafe fn stack_ref(&self) -> Option<&Stack> {
        // SAFETY: the caller is the G's owner, so nothing writes `stack` now.
        unsafe { (*self.stack.get()).as_ref() }
    }
}

fn location_ptr(at: &'static Location<'static>) -> *mut Location<'static> {
    (at as *const Location<'static>).cast_mut()
}

/// A pointer to a G of a live runtime. Copy, Send: it is a name, not an owner.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct GPtr(NonNull<G>);

// SAFETY: a GPtr is only a reference to a G, which is Sync; Gs are never
// freed while their runtime lives (module header).
unsafe impl Send for GPtr {}
// SAFETY: as above.
unsafe impl Sync for GPtr {}

impl std::ops::Deref for GPtr {
    type Target = G;
    fn deref(&self) -> &G {
        // SAFETY: Gs are freed only by `Sched::drop`, after every M has
        // exited; no runtime structure holding a GPtr outlives that.
        unsafe { self.0.as_ref() }
    }
}

impl GPtr {
    pub(crate) fn as_non_null(self) -> NonNull<G> {
        self.0
    }

    pub(crate) fn from_non_null(p: NonNull<G>) -> GPtr {
        GPtr(p)
    }

    pub(crate) fn sched(&self) -> &Sched {
        // SAFETY: a G never outlives its Sched (module header).
        unsafe { self.sched.as_ref() }
    }
}

impl Sched {
    /// A G (without a stack) for a new goroutine wanting `stack_size` bytes: from `p`'s
    /// free list, refilled from the global one, or newly allocated.
    /// Owner of `p` only (or `p` is None: a thread outside the runtime).
    pub(crate) fn gfget(&self, p: Option<&P>, stack_size: usize) -> GPtr {
        let g = match p {
            Some(p) => {
                // SAFETY: the caller holds `p`, so it owns its free list.
                let local = unsafe { &mut *p.gfree.get() };
                if local.is_empty() {
                    let mut global = lock(&self.gfree);
                    let n = global.len().min(LOCAL_FREE_REFILL);
                    let at = global.len() - n;
                    local.extend(global.drain(at..));
                }
                local.pop()
            }
            None => lock(&self.gfree).pop(),
        };
        match g {
            Some(g) => {
                g.stack_size.set(stack_size_u32(stack_size));
                g
            }
            None => self.malg(stack_size),
        }
    }

    /// Recycle a dead G, its stack already taken. Owner of `p` only.
    pub(crate) fn gfput(&self, p: &P, g: GPtr) {
        debug_assert_eq!(g.status(), GStatus::Dead);
        // SAFETY: the caller holds `p`, so it owns its free list.
        let local = unsafe { &mut *p.gfree.get() };
        local.push(g);
        if local.len() > LOCAL_FREE_MAX {
            let mut global = lock(&self.gfree);
            global.extend(local.drain(LOCAL_FREE_REFILL..));
        }
    }

    /// Set the name of a G its caller owns. The `allgs` lock is taken only
    /// when a name comes or goes, so unnamed spawns stay lock-free while a
    /// dump (which holds that lock) can read names safely.
    pub(crate) fn set_g_name(&self, g: GPtr, name: Option<Arc<str>>) {
        // SAFETY: the caller owns g; reads by dumps hold `allgs`, and we only
        // read here.
        let had_name = unsafe { (*g.name.get()).is_some() };
        if had_name || name.is_some() {
            let _dumps = lock(&self.allgs);
            // SAFETY: owner, and dumps are excluded by `allgs`.
            unsafe { *g.name.get() = name };
        }
    }

    /// Every G of this runtime: a copy of the list, so that nobody who
    /// spawns waits while the caller looks at them.
    pub(crate) fn all_gs(&self) -> Vec<GPtr> {
        lock(&self.allgs).clone()
    }

    /// Every G of this runtime with its name, read under the `allgs` lock
    /// (see `set_g_name`). For dumps; the status of each may change at any time.
    pub(crate) fn all_gs_named(&self) -> Vec<(GPtr, Option<Arc<str>>)> {
        let allgs = lock(&self.allgs);
        allgs
            .iter()
            // SAFETY: names are written only under the lock we hold.
            .map(|&g| (g, unsafe { (*g.name.get()).clone() }))
            .collect()
    }

    /// Allocate a brand-new G (Go's `malg`); it gets a stack from `newproc`
    /// or when it first runs.
    fn malg(&self, stack_size: usize) -> GPtr {
        let g = Box::new(G {
            ctx: UnsafeCell::new(Context::empty()),
            id: AtomicU64::new(0),
            status: AtomicU8::new(GStatus::Idle as u8),
            sched: NonNull::from(self),
            stack: UnsafeCell::new(None),
            stack_size: Cell::new(stack_size_u32(stack_size)),
            entry: UnsafeCell::new(None),
            name: UnsafeCell::new(None),
            spawned_at: AtomicPtr::new(location_ptr(Location::caller())),
            parent: AtomicU64::new(0),
            parked_at: AtomicPtr::new(location_ptr(Location::caller())),
            wait_since: AtomicU64::new(0),
            interrupted: [const { AtomicUsize::new(0) }; 3],
            wait_reason: AtomicU8::new(WaitReason::None as u8),
            locals: UnsafeCell::new(None),
            token: UnsafeCell::new(None),
            timer: UnsafeCell::new(TimerSlot::default()),
            lockedm: Cell::new(None),
            schedlink: Cell::new(None),
        });
        let g = GPtr(NonNull::from(Box::leak(g)));
        super::push_growing_unlocked(&self.allgs, g);
        g
    }

    /// Abandon every goroutine that was spawned but never started, so that
    /// its join handle reports the shutdown instead of waiting forever.
    /// Only after every M of this runtime has exited.
    pub(crate) fn abandon_unstarted(&self) {
        for g in self.all_gs() {
            // SAFETY: no M is left, so this thread is the only one touching
            // any G of this runtime. A G with a task has never started (the
            // task is taken when it starts).
            let task = unsafe { (*g.entry.get()).take() };
            if let Some(task) = task {
                g.set_status(GStatus::Dead);
                self.exited_outside.fetch_add(1, Ordering::Relaxed);
                drop(task);
            }
        }
    }

    /// Free every G. Only from `Sched::drop`, when no M runs any more.
    pub(crate) fn free_all_gs(&mut self) {
        let allgs = std::mem::take(&mut *lock(&self.allgs));
        for g in allgs {
            // SAFETY: no thread of this runtime is left, so we own every G;
            // each was leaked from a Box in `malg` and is freed once here.
            // A stack still attached goes with the allocator's regions.
            drop(unsafe { Box::from_raw(g.0.as_ptr()) });
        }
    }
}
