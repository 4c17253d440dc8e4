//! A spawned goroutine's job: its closure, its result slot and an optional
//! exit hook, in one reference-counted allocation shared by the scheduler's
//! `Task` (one reference) and the `JoinHandle` (the other).
//!
//! The allocation is a job block from the spawning P's cache
//! (`sched/blocks.rs`) when the job fits, else a `Box`; whoever drops the
//! last reference drops the contents and frees the memory. That is usually
//! the goroutine itself, on its own stack, right after it finished — never
//! g0, which must not run user destructors.
//!
//! The result slot (`Packet`) is a lock-free one-shot: the goroutine writes
//! the result, then swaps the state to `DONE`; a joiner stores its waiter,
//! then moves `EMPTY` to `WAITING` — on g0, after it is parked (`park_if`)
//! — unless the result is already there. Exactly one of them sees the
//! other, so the joiner is woken exactly once, or never parks.
//!
//! An async joiner (`JoinFuture`, polled by an executor) stores its task's
//! `Waker` the same way. Polled again, maybe with another waker, it first
//! takes the slot back by moving `WAITING` to `EMPTY`: whoever of it and
//! the goroutine moves the state first owns the slot, so the goroutine
//! either wakes the waker it found or never looks at the slot, and the new
//! waker is stored and published by `EMPTY -> WAITING` again. A wake is
//! never lost (a failed CAS means `DONE`: the poll returns the result), and
//! a replaced waker is never woken.
//!
//! The exit hook (used by `scope`) runs after the goroutine has released
//! its reference, so when it signals "finished", nothing of the closure or
//! (if the handle is gone) the result remains.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering, fence};
use std::task::{Poll, Waker};

use crate::sched::{BlockClass, Task, WaitReason, Waiter, alloc_block, free_block, park_if};

/// Called once when a goroutine is finished (or dropped unrun), with
/// whether its handle gets an `Err`: it panicked, or it never ran.
pub(crate) type ExitHook<'a> = Box<dyn FnOnce(bool) + Send + 'a>;

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

/// `Packet::orphan` bits: the handle was dropped unjoined; the body panicked.
const HANDLE_GONE: u8 = 1;
const PANICKED: u8 = 2;

pub(crate) struct Packet<T> {
    state: AtomicU8,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    waiter: UnsafeCell<Option<Joiner>>,
    /// The runtime's `unjoined_panic_exits`, set before the job is queued.
    fatal_if_orphaned: AtomicBool,
    /// `HANDLE_GONE | PANICKED`, each set once by its side with a
    /// read-modify-write, so exactly one side sees both and ends the process.
    orphan: AtomicU8,
}

/// Who waits for a goroutine's result.
enum Joiner {
    /// `join`: a parked goroutine or a blocked thread.
    Parked(Waiter),
    /// A `JoinFuture`'s task.
    Task(Waker),
}

impl<T> Packet<T> {
    fn new() -> Packet<T> {
        Packet {
            state: AtomicU8::new(EMPTY),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
            fatal_if_orphaned: AtomicBool::new(false),
            orphan: AtomicU8::new(0),
        }
    }

    /// Spawner side, before the job is queued: a panic nobody joins ends
    /// the process (`Builder::unjoined_panic_exits`).
    fn set_fatal_if_orphaned(&self) {
        self.fatal_if_orphaned.store(true, Ordering::Relaxed);
    }

    /// One side's event; whether the other side's had already happened,
    /// i.e. the panic is now an orphan's. Always false unless fatal.
    fn orphan_event(&self, bit: u8) -> bool {
        self.fatal_if_orphaned.load(Ordering::Relaxed) && self.orphan.fetch_or(bit, Ordering::AcqRel) != 0
    }

    /// Handle side, when the handle is dropped without `join`.
    fn detach(&self) -> bool {
        self.orphan_event(HANDLE_GONE)
    }

    /// Goroutine side, once.
    fn complete(&self, result: std::thread::Result<T>) {
        // SAFETY: until the swap below publishes DONE, only this side
        // touches `result`.
        unsafe { *self.result.get() = Some(result) };
        // AcqRel: Release publishes `result` to the joiner; Acquire pairs
        // with the joiner's CAS, making its `waiter` write visible.
        if self.state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: WAITING means the joiner stored its waiter and will
            // not touch it again until woken.
            let waiter = unsafe { (*self.waiter.get()).take() };
            match waiter.expect("WAITING without a waiter") {
                Joiner::Parked(w) => w.wake(),
                Joiner::Task(w) => w.wake(),
            }
        }
    }

    /// Whether the result is there (std's `is_finished`).
    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// Handle side, from a `JoinFuture`'s polls (see the module header).
    pub(crate) fn poll_join(&self, waker: &Waker) -> Poll<std::thread::Result<T>> {
        // Acquire (every load and CAS here) pairs with `complete`'s swap,
        // for the result.
        match self.state.load(Ordering::Acquire) {
            DONE => return Poll::Ready(self.take()),
            // Take the slot back from the goroutine, unless it finished.
            WAITING
                if self
                    .state
                    .compare_exchange(WAITING, EMPTY, Ordering::Acquire, Ordering::Acquire)
                    .is_err() =>
            {
                return Poll::Ready(self.take());
            }
            _ => {}
        }
        // SAFETY: the state is EMPTY and only we move it to WAITING, so
        // the goroutine does not touch `waiter` before our CAS below.
        let slot = unsafe { &mut *self.waiter.get() };
        if !matches!(slot, Some(Joiner::Task(w)) if w.will_wake(waker)) {
            *slot = Some(Joiner::Task(waker.clone()));
        }
        // AcqRel: Release publishes `waiter`; Acquire (on failure too)
        // pairs with `complete`'s swap.
        if self
            .state
            .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Poll::Pending;
        }
        // Finished before seeing our waker; it is still ours to drop.
        // SAFETY: the goroutine swapped EMPTY to DONE, so never reads it.
        unsafe { *self.waiter.get() = None };
        Poll::Ready(self.take())
    }

    /// A `JoinFuture` is dropped unfinished: take its waker back, so the
    /// task it belongs to is not kept alive (or woken) by the goroutine.
    pub(crate) fn forget_join(&self) {
        if self
            .state
            .compare_exchange(WAITING, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: EMPTY again, by our CAS: the goroutine will not read it.
            unsafe { *self.waiter.get() = None };
        }
    }

    /// The result, once `DONE` has been seen with Acquire.
    fn take(&self) -> std::thread::Result<T> {
        // SAFETY: DONE was published with Release after the write, and the
        // caller read it with Acquire; only the handle side takes it, once.
        unsafe { (*self.result.get()).take() }.expect("goroutine result taken twice")
    }

    /// Handle side, once (the handle is consumed by `join`).
    #[track_caller]
    pub(crate) fn join(&self) -> std::thread::Result<T> {
        if self.state.load(Ordering::Acquire) != DONE {
            // SAFETY: before our CAS succeeds the goroutine side never reads
            // `waiter`; if the CAS fails it never will.
            unsafe { *self.waiter.get() = Some(Joiner::Parked(Waiter::current())) };
            park_if(
                // AcqRel: Release publishes `waiter`; Acquire (on failure
                // too) pairs with `complete`'s swap.
                || {
                    self.state
                        .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                },
                WaitReason::Join,
            );
        }
        // DONE was read with Acquire above, in the failed CAS, or through
        // the wake-up, which orders like a lock hand-off.
        self.take()
    }
}

struct Job<'a, F, T> {
    packet: Packet<T>,
    /// Taken by exactly one of `run_job`/`abandon_job`.
    body: UnsafeCell<Option<(F, Option<ExitHook<'a>>)>>,
}

// SAFETY: `body` is touched once, by whichever of run/abandon the scheduler
// calls; `packet` is the synchronised hand-off above; F and T are Send.
unsafe impl<F: Send, T: Send> Sync for Job<'_, F, T> {}

/// What a join handle needs of a job, whatever its closure type.
pub(crate) trait JoinTarget<T>: Send + Sync {
    fn packet(&self) -> &Packet<T>;
}

impl<F: Send, T: Send> JoinTarget<T> for Job<'_, F, T> {
    fn packet(&self) -> &Packet<T> {
        &self.packet
    }
}

/// The allocation: a reference count, where it lives, and the job.
struct JobBox<J: ?Sized> {
    refs: AtomicUsize,
    /// The job-block class the box lives in; `None`: a `Box`.
    block: Option<BlockClass>,
    job: J,
}

/// A counted reference to a job (a minimal `Arc` whose memory may be a job block).
pub(crate) struct Shared<J: ?Sized>(NonNull<JobBox<J>>);

// SAFETY: like Arc<J>: the pointee is shared, so it must be Send + Sync.
unsafe impl<J: ?Sized + Send + Sync> Send for Shared<J> {}
// SAFETY: as above.
unsafe impl<J: ?Sized + Send + Sync> Sync for Shared<J> {}

impl<J> Shared<J> {
    fn new(job: J) -> Shared<J> {
        let block = BlockClass::for_layout(std::alloc::Layout::new::<JobBox<J>>());
        let value = JobBox {
            refs: AtomicUsize::new(1),
            block,
            job,
        };
        match block {
            Some(class) => {
                let block = alloc_block(class).cast::<JobBox<J>>();
                // SAFETY: the block is fresh, and its class is large and
                // aligned enough for a JobBox<J> (`for_layout`).
                unsafe { block.write(value) };
                Shared(block)
            }
            None => Shared(NonNull::from(Box::leak(Box::new(value)))),
        }
    }

    fn into_raw(self) -> NonNull<()> {
        std::mem::ManuallyDrop::new(self).0.cast()
    }

    /// # Safety
    /// `p` came from `into_raw` of a `Shared<J>` and its reference is
    /// handed back here once.
    unsafe fn from_raw(p: NonNull<()>) -> Shared<J> {
        Shared(p.cast())
    }
}

impl<J: ?Sized> Shared<J> {
    fn get(&self) -> &J {
        // SAFETY: we hold a reference, so the box is alive.
        unsafe { &self.0.as_ref().job }
    }

    fn inner(&self) -> &JobBox<J> {
        // SAFETY: as above.
        unsafe { self.0.as_ref() }
    }
}

impl<J: ?Sized> Clone for Shared<J> {
    fn clone(&self) -> Shared<J> {
        // Relaxed: a new reference is made from an existing one (Arc's argument).
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        Shared(self.0)
    }
}

impl<J: ?Sized> Drop for Shared<J> {
    fn drop(&mut self) {
        // Release pairs with the Acquire fence of whoever drops last, so all
        // uses through other references happen before the contents die.
        if self.inner().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let block = self.inner().block;
        // SAFETY: we held the last reference. A block-backed box is dropped
        // in place and its block returned to its class; a Box-backed one
        // was made by `Box::new` with this (possibly unsized-coerced) type.
        unsafe {
            match block {
                Some(class) => {
                    std::ptr::drop_in_place(self.0.as_ptr());
                    free_block(self.0.cast(), class);
                }
                None => drop(Box::from_raw(self.0.as_ptr())),
            }
        }
    }
}

/// A job's handle side.
pub(crate) type JobHandle<'a, T> = Shared<dyn JoinTarget<T> + 'a>;

impl<T> JobHandle<'_, T> {
    #[track_caller]
    pub(crate) fn join(&self) -> std::thread::Result<T> {
        self.get().packet().join()
    }

    pub(crate) fn packet(&self) -> &Packet<T> {
        self.get().packet()
    }

    /// See `Packet::set_fatal_if_orphaned`.
    pub(crate) fn set_fatal_if_orphaned(&self) {
        self.get().packet().set_fatal_if_orphaned();
    }

    /// The handle is dropped unjoined; true if its goroutine's panic is
    /// now an orphan's (`Packet::detach`).
    pub(crate) fn detach(&self) -> bool {
        self.get().packet().detach()
    }
}

/// Package `f` (and an exit hook) as a job: the scheduler's `Task` and the
/// handle's reference to the same allocation.
///
/// # Safety
/// If `f`, `T` or the hook borrow for `'a`, the caller must not let `'a`
/// end before the task has run or been dropped and the hook has been
/// called (`scope` waits for the hook).
pub(crate) unsafe fn job<'a, F, T>(f: F, on_exit: Option<ExitHook<'a>>) -> (Task, JobHandle<'a, T>)
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    let job = Shared::new(Job {
        packet: Packet::new(),
        body: UnsafeCell::new(Some((f, on_exit))),
    });
    let handle: JobHandle<'a, T> = {
        let j = job.clone();
        let p = std::mem::ManuallyDrop::new(j).0;
        Shared(p)
    };
    // SAFETY: run_job/abandon_job::<F, T> take back exactly the reference
    // `into_raw` gives up, once; the job is Send + Sync, so either may be
    // called on any thread; lifetimes are the caller's contract.
    let task = unsafe { Task::new(job.into_raw(), run_job::<F, T>, abandon_job::<F, T>) };
    (task, handle)
}

/// # Safety
/// `p` is the task reference of a `Job<F, T>` made by `job`, used once.
unsafe fn run_job<F: FnOnce() -> T + Send, T: Send>(p: NonNull<()>) {
    // SAFETY: by the contract.
    let job = unsafe { Shared::<Job<'_, F, T>>::from_raw(p) };
    // SAFETY: run is called once and never together with abandon.
    let (f, on_exit) = unsafe { (*job.get().body.get()).take() }.expect("goroutine body run twice");
    let result = catch_unwind(AssertUnwindSafe(f));
    // Goroutine-locals go before the result is published, so a joiner sees
    // their destructors done; a panicking destructor counts as a panic.
    let result = match (result, super::local::drop_goroutine_locals()) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    let panicked = result.is_err();
    job.get().packet.complete(result);
    if panicked && job.get().packet.orphan_event(PANICKED) {
        super::panic::unjoined_panic(&super::current());
    }
    drop(job);
    if let Some(hook) = on_exit {
        hook(panicked);
    }
}

/// # Safety
/// As `run_job`.
unsafe fn abandon_job<F: FnOnce() -> T + Send, T: Send>(p: NonNull<()>) {
    // SAFETY: by the contract.
    let job = unsafe { Shared::<Job<'_, F, T>>::from_raw(p) };
    // SAFETY: abandon is called once and never together with run.
    let body = unsafe { (*job.get().body.get()).take() };
    let on_exit = body.and_then(|(f, on_exit)| {
        drop(f);
        on_exit
    });
    let why: Box<dyn Any + Send> = Box::new("goroutine never ran: no stack, or its runtime shut down");
    job.get().packet.complete(Err(why));
    drop(job);
    if let Some(hook) = on_exit {
        // Counted like a panic: its handle's `join` sees an `Err` too, and
        // unjoined, its work silently left undone must not pass unnoticed.
        hook(true);
    }
}
