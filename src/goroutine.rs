//! Goroutines as users see them: `go`, `goroutine::Builder`, `JoinHandle`,
//! `scope`, `current`, `yield_now` (std::thread's shape, Go's semantics).
//!
//! A spawn makes one allocation, a `Job`: the closure, a lock-free result
//! `Packet`, and an exit hook (used by `scope`), shared by the scheduler's
//! `Task` and the `JoinHandle`. The body runs inside `catch_unwind`, so a
//! panic is printed by the panic hook (like a std thread's), stored as
//! `Err`, and the runtime goes on. If the body is dropped without running
//! (its stack could not be allocated, or its runtime shut down first), the
//! job is abandoned: the packet gets an `Err`, so `join` never hangs.
//!
//! `scope` borrows like `std::thread::scope`: every goroutine spawned in it
//! has finished — its closure and result dropped — before `scope` returns,
//! so they may borrow from the enclosing stack frame.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU8, Ordering};

use crate::runtime::with_current;
use crate::sched::{Runnable, Sched, Task, WaitCell, WaitReason, Waiter, current_m, newproc, park_if};
use crate::stack::{SignalBuf, check_stack_size};

/// One-shot result slot between a goroutine and its handle: lock-free.
/// The goroutine writes the result, then swaps the state to `DONE`; a joiner
/// stores its waiter, then moves `EMPTY` to `WAITING` — on g0, after it is
/// parked (`park_if`) — unless the result is already there. Exactly one of
/// them sees the other, so the joiner is woken exactly once or not parked.
struct Packet<T> {
    state: AtomicU8,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    waiter: UnsafeCell<Option<Waiter>>,
}

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

impl<T> Packet<T> {
    fn new() -> Packet<T> {
        Packet {
            state: AtomicU8::new(EMPTY),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
        }
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
            waiter.expect("WAITING without a waiter").wake();
        }
    }

    /// Handle side, once (the handle is consumed by `join`).
    fn join(&self) -> std::thread::Result<T> {
        if self.state.load(Ordering::Acquire) != DONE {
            // SAFETY: before our CAS succeeds the goroutine side never reads
            // `waiter`; if the CAS fails it never will.
            unsafe { *self.waiter.get() = Some(Waiter::current()) };
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
        debug_assert_eq!(self.state.load(Ordering::Acquire), DONE);
        // SAFETY: DONE was published with Release after the write, and
        // we read it with Acquire (above, or in the CAS failure, or through
        // the wake-up, which orders like a lock hand-off).
        unsafe { (*self.result.get()).take() }.expect("result taken twice")
    }
}

/// A goroutine's body, result and exit hook in one allocation.
struct Job<F, T, X> {
    packet: Packet<T>,
    /// The body and the exit hook: taken by exactly one of `run`/`abandon`.
    body: UnsafeCell<Option<(F, X)>>,
}

// SAFETY: `body` is touched once, by whichever of run/abandon the scheduler
// calls (one, once); `packet` is the synchronised hand-off above. F, T, X
// are Send, so moving them to the goroutine's or joiner's thread is fine.
unsafe impl<F: Send, T: Send, X: Send> Sync for Job<F, T, X> {}

impl<F, T, X> Runnable for Job<F, T, X>
where
    F: FnOnce() -> T + Send,
    T: Send,
    X: FnOnce(bool) + Send,
{
    fn run(self: Arc<Self>) {
        // SAFETY: run is called once and never together with abandon.
        let (f, on_exit) = unsafe { (*self.body.get()).take() }.expect("goroutine body run twice");
        let result = catch_unwind(AssertUnwindSafe(f));
        let panicked = result.is_err();
        self.packet.complete(result);
        // The exit hook runs after our reference (and so maybe the result)
        // is gone: `scope` relies on it.
        drop(self);
        on_exit(panicked);
    }

    fn abandon(self: Arc<Self>) {
        // SAFETY: abandon is called once and never together with run.
        let body = unsafe { (*self.body.get()).take() };
        if let Some((f, on_exit)) = body {
            drop(f);
            let why: Box<dyn Any + Send> = Box::new("goroutine never ran: no stack, or its runtime shut down");
            self.packet.complete(Err(why));
            drop(self);
            on_exit(false);
        }
    }
}

/// What a join handle needs of a job, whatever its body type.
trait JoinTarget<T>: Send + Sync {
    fn packet(&self) -> &Packet<T>;
}

impl<F: Send, T: Send, X: Send> JoinTarget<T> for Job<F, T, X> {
    fn packet(&self) -> &Packet<T> {
        &self.packet
    }
}

/// Package `f` (and an exit hook) as a job: the scheduler's `Task` and the
/// handle's view of the same allocation.
fn job<'a, F, T, X>(f: F, on_exit: X) -> (Arc<dyn Runnable + 'a>, Arc<dyn JoinTarget<T> + 'a>)
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
    X: FnOnce(bool) + Send + 'a,
{
    let job = Arc::new(Job {
        packet: Packet::new(),
        body: UnsafeCell::new(Some((f, on_exit))),
    });
    (job.clone(), job)
}

/// Spawn `f` on `sched`. Used by every spawning entry point.
#[track_caller]
pub(crate) fn spawn_on<F, T>(sched: &Sched, f: F, name: Option<Arc<str>>, stack_size: usize) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_located(sched, f, name, stack_size, Location::caller())
}

fn spawn_located<F, T>(
    sched: &Sched,
    f: F,
    name: Option<Arc<str>>,
    stack_size: usize,
    location: &'static Location<'static>,
) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (task, target) = job(f, |_| {});
    let id = newproc(sched, Task::new(task), name.clone(), stack_size, location);
    JoinHandle {
        target,
        goroutine: Goroutine { id, name },
    }
}

/// Spawn a goroutine running `f` on the current runtime (the caller's, or
/// the default one, started on first use). Go's `go f()`.
///
/// ```
/// let h = gort::go(|| "hello from a goroutine".len());
/// assert_eq!(h.join().unwrap(), 22);
/// ```
#[track_caller]
pub fn go<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    with_current(|s| spawn_on(s, f, None, s.stack_size()))
}

/// An owned permission to join a goroutine (std's `JoinHandle`). Dropping
/// it detaches the goroutine.
pub struct JoinHandle<T> {
    target: Arc<dyn JoinTarget<T>>,
    goroutine: Goroutine,
}

impl<T> JoinHandle<T> {
    /// Wait for the goroutine to finish: a goroutine parks, a plain thread
    /// blocks. `Err` carries the panic payload if it panicked.
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        self.target.packet().join()
    }

    /// The goroutine this handle joins.
    pub fn goroutine(&self) -> &Goroutine {
        &self.goroutine
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("goroutine", &self.goroutine)
            .finish_non_exhaustive()
    }
}

/// Goroutine configuration (std's `thread::Builder`).
///
/// ```
/// let h = gort::goroutine::Builder::new()
///     .name("deep")
///     .stack_size(4 << 20)
///     .spawn(|| gort::current().name().map(str::to_owned))
///     .unwrap();
/// assert_eq!(h.join().unwrap().as_deref(), Some("deep"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Name shown by `current().name()` (and, later, goroutine dumps).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Stack reservation for this goroutine, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawn the goroutine. Fails with `InvalidInput` for a bad stack size.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let location = Location::caller();
        with_current(|s| {
            let size = match self.stack_size {
                Some(n) => check_stack_size(n).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?,
                None => s.stack_size(),
            };
            Ok(spawn_located(s, f, self.name.map(Arc::from), size, location))
        })
    }
}

/// A goroutine's identity: its id (unique per runtime; the first goroutine
/// of a runtime is 1) and optional name.
#[derive(Clone, Debug)]
pub struct Goroutine {
    id: u64,
    name: Option<Arc<str>>,
}

impl Goroutine {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// The calling goroutine.
///
/// ```
/// let id = gort::go(|| gort::current().id()).join().unwrap();
/// assert!(id >= 1);
/// ```
///
/// # Panics
/// When called outside a goroutine.
pub fn current() -> Goroutine {
    let g = current_m()
        .and_then(|m| m.curg.get())
        .expect("gort::current() called outside a goroutine");
    // SAFETY: the running goroutine owns its own fields.
    let name = unsafe { (*g.name.get()).clone() };
    Goroutine { id: g.id.get(), name }
}

/// Let other goroutines run; the caller goes to the back of the global
/// queue (Go's `runtime.Gosched`). On a plain thread, `std::thread::yield_now`.
///
/// ```
/// gort::run(gort::yield_now);
/// ```
pub fn yield_now() {
    crate::sched::yield_now();
}

/// The overflow report for the SIGSEGV handler: true if `addr` hits the
/// guard page of the goroutine running on this thread. Signal handler:
/// no allocation, no locks.
pub(crate) fn describe_overflow(addr: usize, out: &mut SignalBuf) -> bool {
    use std::fmt::Write;
    let Some(g) = current_m().and_then(|m| m.curg.get()) else {
        return false;
    };
    // SAFETY: we are on the thread running g (in its signal handler).
    let Some(stack) = (unsafe { g.stack_ref() }) else {
        return false;
    };
    if !stack.guard().contains(&addr) {
        return false;
    }
    // SAFETY: as above; the name is not being written while g runs.
    let name = unsafe { (*g.name.get()).as_deref() }.unwrap_or("");
    let _ = write!(
        out,
        "goroutine {} [{}] stack overflow (stack {} KiB, spawned at {})",
        g.id.get(),
        name,
        stack.size() / 1024,
        g.spawned_at.get()
    );
    true
}

/// A scope for goroutines that borrow (std's `thread::Scope`).
pub struct Scope<'scope, 'env: 'scope> {
    state: Arc<ScopeState>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

struct ScopeState {
    running: WaitCell<usize>,
    /// Panicked goroutines minus those whose panic was taken by `join`.
    /// Transiently negative when a join sees the panic before the body's
    /// own increment; settled once `running` is zero.
    unjoined_panics: AtomicIsize,
}

/// Run `f` with a [`Scope`] whose goroutines may borrow non-`'static` data;
/// returns once all of them have finished. If any of them panicked and was
/// not joined, `scope` panics after they all finished (std's rule).
///
/// ```
/// let mut words = vec!["a", "b"];
/// let total = std::sync::atomic::AtomicUsize::new(0);
/// gort::scope(|s| {
///     s.go(|| total.fetch_add(words.len(), std::sync::atomic::Ordering::Relaxed));
///     s.go(|| total.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
/// });
/// words.push("c");
/// assert_eq!(total.into_inner(), 3);
/// ```
#[track_caller]
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        state: Arc::new(ScopeState {
            running: WaitCell::new(0),
            unjoined_panics: AtomicIsize::new(0),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    scope.state.running.wait(WaitReason::Scope, |n| (*n == 0).then_some(()));
    match result {
        Err(e) => resume_unwind(e),
        Ok(_) if scope.state.unjoined_panics.load(Ordering::Relaxed) > 0 => {
            panic!("a scoped goroutine panicked")
        }
        Ok(v) => v,
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawn a goroutine that may borrow from outside the scope.
    #[track_caller]
    pub fn go<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let location = Location::caller();
        self.state.running.update(|n| {
            *n += 1;
            false
        });
        let state = Arc::clone(&self.state);
        let (task, target) = job(f, move |panicked| {
            if panicked {
                state.unjoined_panics.fetch_add(1, Ordering::Relaxed);
            }
            state.running.update(|n| {
                *n -= 1;
                *n == 0
            });
        });
        // SAFETY: `scope` does not return before `running` drops to zero,
        // which the exit hook does only after the body has run (or been
        // dropped unrun) and the job's reference from the goroutine side is
        // gone; what remains is the handle's, which cannot outlive 'scope.
        // So nothing borrowed for 'scope is used after 'scope ends.
        let task: Arc<dyn Runnable + 'static> = unsafe { std::mem::transmute(task) };
        let id = with_current(|s| newproc(s, Task::new(task), None, s.stack_size(), location));
        ScopedJoinHandle {
            target,
            goroutine: Goroutine { id, name: None },
            state: Arc::clone(&self.state),
            scope: PhantomData,
        }
    }
}

/// A handle to join a scoped goroutine.
pub struct ScopedJoinHandle<'scope, T> {
    target: Arc<dyn JoinTarget<T> + 'scope>,
    goroutine: Goroutine,
    state: Arc<ScopeState>,
    scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Wait for the goroutine; `Err` carries its panic. A joined panic does
    /// not make `scope` panic.
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        let result = self.target.packet().join();
        if result.is_err() {
            self.state.unjoined_panics.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    /// The goroutine this handle joins.
    pub fn goroutine(&self) -> &Goroutine {
        &self.goroutine
    }
}
