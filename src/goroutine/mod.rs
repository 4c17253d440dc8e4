//! Goroutines as users see them: `go`, `goroutine::Builder`, `JoinHandle`,
//! `scope`, `current`, `yield_now` (std::thread's shape, Go's semantics).
//!
//! A spawn makes one allocation, a job (`job.rs`): the closure, a
//! lock-free result slot and an exit hook, shared by the scheduler's `Task`
//! and the `JoinHandle`. The body runs inside `catch_unwind`, so a panic is
//! printed by the panic hook (like a std thread's), stored as `Err`, and the
//! runtime goes on. If the body is dropped without running (its stack could
//! not be allocated, or its runtime shut down first), the job is abandoned:
//! its handle gets an `Err`, so `join` never hangs.
//!
//! Running out of stacks. A goroutine normally gets its stack when it first
//! runs, but once stacks are scarce — under `RLIMIT_AS`, less than a
//! region's worth (about a thousand default stacks) can still be made —
//! it takes it when spawned (`sched::newproc`). So a spawn that cannot have
//! one creates nothing: the closure is dropped on the spawner's stack and
//! the spawner is told, as std tells a thread spawner: [`Builder::spawn`]
//! returns the `io::Error` (`OutOfMemory`, naming what ran out), and `go`,
//! `Runtime::go`, `Runtime::block_on` and `Scope::go`, which have no
//! `Result` to return, panic with it. The runtime itself is unaffected:
//! goroutines already spawned keep running, and as they end their stacks
//! are handed out again. One case still ends in abandonment (a line on
//! stderr, `Err` from `join`): a burst of spawns queued while stacks were
//! plentiful that outruns what is left by the time they run, or an
//! exhaustion the allocator could not foresee (no `RLIMIT_AS`: overcommit
//! accounting, or mprotect guards reaching `vm.max_map_count`).
//!
//! `scope` borrows like `std::thread::scope`: every goroutine spawned in it
//! has finished — its closure and result dropped — before `scope` returns,
//! so they may borrow from the enclosing stack frame.

use std::any::Any;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::runtime::with_current;
use crate::sched::{Sched, WaitCell, WaitReason, current_m, newproc};
use job::{ExitHook, JobHandle};
pub use local::LocalKey;
pub(crate) use local::{LocalMap, with_map};

mod job;
mod local;
use crate::stack::{SignalBuf, check_stack_size};

/// Spawn `f` on `sched`. Used by every spawning entry point. The error:
/// no stack could be had (see the module header).
#[track_caller]
pub(crate) fn spawn_on<F, T>(
    sched: &Sched,
    f: F,
    name: Option<Arc<str>>,
    stack_size: usize,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_located(sched, f, name, stack_size, Location::caller())
}

/// The spawn's handle, or the panic of a spawning function that has no
/// `Result` to return (std's `thread::spawn` words it the same way).
#[track_caller]
pub(crate) fn spawned<H>(result: io::Result<H>) -> H {
    match result {
        Ok(handle) => handle,
        Err(e) => panic!("failed to spawn goroutine: {e}"),
    }
}

fn spawn_located<F, T>(
    sched: &Sched,
    f: F,
    name: Option<Arc<str>>,
    stack_size: usize,
    location: &'static Location<'static>,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: everything is 'static.
    let (task, job) = unsafe { job::job(f, None) };
    let id = newproc(sched, task, name.clone(), stack_size, location)?;
    Ok(JoinHandle {
        job,
        goroutine: Goroutine { id, name },
    })
}

/// Spawn a goroutine running `f` on the current runtime (the caller's, or
/// the default one, started on first use). Go's `go f()`.
///
/// ```
/// let h = gort::go(|| "hello from a goroutine".len());
/// assert_eq!(h.join().unwrap(), 22);
/// ```
///
/// # Panics
/// If no stack can be had for the goroutine (the address space left under
/// `RLIMIT_AS` is used up; see the module header). The message carries the
/// allocator's error; the runtime goes on. [`Builder::spawn`] returns that
/// error instead.
#[track_caller]
pub fn go<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let at = Location::caller();
    spawned(with_current(|s| spawn_located(s, f, None, s.stack_size(), at)))
}

/// An owned permission to join a goroutine (std's `JoinHandle`). Dropping
/// it detaches the goroutine.
pub struct JoinHandle<T> {
    job: JobHandle<'static, T>,
    goroutine: Goroutine,
}

impl<T> JoinHandle<T> {
    /// Wait for the goroutine to finish: a goroutine parks, a plain thread
    /// blocks. `Err` carries the panic payload if it panicked.
    #[track_caller]
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        crate::sched::safe_point();
        self.job.join()
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
    /// A builder with the runtime's defaults (no name, the runtime's stack size).
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

    /// Spawn the goroutine. Fails with `InvalidInput` for a bad stack size,
    /// and with the stack allocator's error when no stack can be had (see
    /// the module header for when that is known at the spawn): the kind is
    /// `OutOfMemory` and the message names what ran out. On failure nothing
    /// was spawned, `f` has been dropped, and the runtime goes on; spawning
    /// succeeds again once ending goroutines have given back their stacks.
    ///
    /// ```
    /// let err = gort::goroutine::Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
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
            spawn_located(s, f, self.name.map(Arc::from), size, location)
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
    /// The goroutine's id: unique within its runtime, never reused; the
    /// first goroutine of a runtime is 1 (Go's goid).
    ///
    /// ```
    /// let a = gort::go(|| gort::current().id()).join().unwrap();
    /// let b = gort::go(|| gort::current().id()).join().unwrap();
    /// assert_ne!(a, b);
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name given with `goroutine::Builder::name`, if any.
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
    Goroutine { id: g.id(), name }
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
        g.id(),
        name,
        stack.size() / 1024,
        g.spawned_at()
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
    /// Panicked (or abandoned unrun) goroutines minus those whose `Err`
    /// was taken by `join`.
    /// Transiently negative when a join sees the panic before the body's
    /// own increment; settled once `running` is zero.
    unjoined_panics: AtomicIsize,
}

/// Run `f` with a [`Scope`] whose goroutines may borrow non-`'static` data;
/// returns once all of them have finished. If any of them panicked, or
/// never ran (no stack could be allocated for it at its first run), and was
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
    ///
    /// # Panics
    /// As [`go`], if no stack can be had; `scope` then waits for the
    /// goroutines already spawned in it before passing the panic on.
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
        let on_exit: ExitHook<'scope> = Box::new(move |panicked| {
            if panicked {
                state.unjoined_panics.fetch_add(1, Ordering::Relaxed);
            }
            state.running.update(|n| {
                *n -= 1;
                *n == 0
            });
        });
        // SAFETY: `scope` does not return before `running` drops to zero,
        // which only the exit hook does, after the task has run or been
        // dropped unrun. The handle's reference cannot outlive 'scope.
        let (task, job) = unsafe { job::job(f, Some(on_exit)) };
        let id = spawned(with_current(|s| newproc(s, task, None, s.stack_size(), location)));
        ScopedJoinHandle {
            job,
            goroutine: Goroutine { id, name: None },
            state: Arc::clone(&self.state),
            scope: PhantomData,
        }
    }
}

/// A handle to join a scoped goroutine.
pub struct ScopedJoinHandle<'scope, T> {
    job: JobHandle<'scope, T>,
    goroutine: Goroutine,
    state: Arc<ScopeState>,
    scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Wait for the goroutine; `Err` carries its panic. A joined panic does
    /// not make `scope` panic.
    #[track_caller]
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        let result = self.job.join();
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

/// Run `f`, a call that may block its thread for a long time (a blocking
/// driver, a heavy file operation, a foreign library), without stalling
/// other goroutines: the goroutine's P is held loosely meanwhile, and if
/// the call lasts more than about 20 µs while other goroutines wait, sysmon
/// hands the P to another thread (Go's `entersyscall`/`exitsyscall`).
/// Afterwards the goroutine takes a P back — its own if it is still free —
/// possibly waiting for one. On a plain thread, just calls `f`.
///
/// Un-annotated blocking calls are detected too, a little later (see the
/// docs/design.md); `blocking` makes the hand-off prompt.
///
/// ```
/// let n = gort::run(|| gort::blocking(|| std::fs::read_to_string("Cargo.toml").map(|s| s.len())))?;
/// assert!(n > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    crate::sched::blocking(f)
}
