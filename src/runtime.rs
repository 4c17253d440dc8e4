//! Runtimes: building one, running a main goroutine on it, shutting it
//! down, and the process-wide default runtime; plus the `runtime::`
//! introspection functions (Go's package runtime: `GOMAXPROCS`,
//! `NumGoroutine`, `Stack`; goleak's leak check), implemented in `debug/`.
//!
//! The default runtime is created on first use — by `gort::run`, by
//! `gort::go` outside any goroutine, or by a `runtime::` query — with
//! `GORT_PROCS` Ps if that variable is set, else one per available CPU. It
//! lives until the process exits. Functions here act on the *current*
//! runtime: the one whose goroutine calls them, else the default one.
//!
//! Cost of the queries. [`metrics`] is O(Ps) and makes no system call, so
//! it may be read per request; [`stack_bytes_resident`] asks the kernel
//! about every stack page (O(stack address space)) and the dumps and
//! snapshots ([`goroutines`], [`dump`], [`check_leaks`]) read every
//! goroutine: those are for diagnostics, once in a while.
//!
//! Dropping a built `Runtime` stops it: no new goroutine starts, each M
//! exits at its next pass through the scheduler (a goroutine that never
//! calls into the runtime keeps its thread, and the drop waits for it), and
//! the drop joins every thread. Goroutines that never started are dropped
//! unrun, and their `join` returns an error. If goroutines are still alive
//! then (parked forever), their memory is deliberately leaked rather than
//! freed, because something outside the runtime (a channel shared with
//! another runtime, say) may still name them. Dropping a runtime from one of
//! its own goroutines does not wait for its threads.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::debug;
pub use crate::debug::{AllocCheck, Frame, GoroutineInfo, GoroutineState, Leaks};
use crate::goroutine::{JoinHandle, spawn_on, spawned};
use crate::sched::{Config, MAX_PROCS, Sched, current_m};
pub use crate::sched::{DurationHistogram, Metrics};
use crate::stack;

/// Default bound on OS threads per runtime (Go's default `SetMaxThreads`).
const DEFAULT_MAX_THREADS: usize = 10_000;
/// How long an idle M lingers (tokio's blocking-pool keep-alive).
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Go's `forcePreemptNS`.
const DEFAULT_PREEMPT_SLICE: Duration = Duration::from_millis(10);
/// Shorter slices would have sysmon signalling faster than it can pace.
const MIN_PREEMPT_SLICE: Duration = Duration::from_micros(100);

/// An error building a runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `procs` outside `1..=1024`.
    InvalidProcs(usize),
    /// A stack size below the minimum or beyond what can be reserved.
    InvalidStackSize(String),
    /// `max_threads(0)`.
    InvalidMaxThreads,
    /// A preempt slice below 100 µs.
    InvalidPreemptSlice(Duration),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidProcs(n) => write!(f, "procs must be between 1 and {MAX_PROCS}, got {n}"),
            Error::InvalidStackSize(why) => write!(f, "invalid stack size: {why}"),
            Error::InvalidMaxThreads => write!(f, "max_threads must be at least 1"),
            Error::InvalidPreemptSlice(d) => write!(f, "preempt_slice must be at least 100µs, got {d:?}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = gort::Runtime::builder().procs(2).stack_size(64 * 1024).name("worker").build()?;
/// assert_eq!(rt.block_on(|| 6 * 7), 42);
/// # Ok::<(), gort::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    procs: Option<usize>,
    stack_size: usize,
    name: String,
    max_threads: usize,
    preempt_slice: Duration,
    keep_alive: Duration,
    detect_deadlocks: bool,
    unjoined_panic_exits: bool,
    chaos: Option<u64>,
}

impl Builder {
    /// Number of Ps — goroutines running in parallel (Go's `GOMAXPROCS`).
    /// Default: `GORT_PROCS`, else the available parallelism.
    pub fn procs(mut self, n: usize) -> Builder {
        self.procs = Some(n);
        self
    }

    /// Default stack reservation of this runtime's goroutines, in bytes
    /// (default 256 KiB; only touched pages cost memory).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Name of the runtime; its threads are called `<name>-m<N>`.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = name.into();
        self
    }

    /// Upper bound on OS threads (default 10,000, as Go).
    pub fn max_threads(mut self, n: usize) -> Builder {
        self.max_threads = n;
        self
    }

    /// How long an idle thread waits for work before it exits (default
    /// 10 s, as tokio's blocking pool). Threads that sysmon started for a
    /// burst of blocking calls go away afterwards; new ones are started
    /// when needed. Zero: an idle thread exits at once; past the end of the
    /// clock (`Duration::MAX`): idle threads never exit.
    pub fn thread_keep_alive(mut self, keep_alive: Duration) -> Builder {
        self.keep_alive = keep_alive;
        self
    }

    /// How long a goroutine may run while others wait before sysmon
    /// preempts it (default 10 ms, as Go). Must be at least 100 µs;
    /// `Duration::MAX` (or any slice past the end of the clock) never ends.
    pub fn preempt_slice(mut self, slice: Duration) -> Builder {
        self.preempt_slice = slice;
        self
    }

    /// Whether to stop the program with Go's `fatal error: all goroutines
    /// are asleep - deadlock!`, a goroutine dump and exit status 2 when
    /// every goroutine waits for another and nothing outside can wake them
    /// (default true; `GORTDEBUG=deadlock=0` turns it off for every runtime).
    pub fn detect_deadlocks(mut self, on: bool) -> Builder {
        self.detect_deadlocks = on;
        self
    }

    /// Go's rule for panics nobody handles (default false): when a
    /// goroutine of this runtime panics and its [`JoinHandle`] has been
    /// dropped without `join` — before the panic or after it — the process
    /// prints `fatal error: unjoined goroutine N panicked`, a goroutine dump of
    /// every runtime, and exits with status 2, as a Go program does for
    /// any goroutine's panic. Off, such a panic is printed and forgotten,
    /// like a detached std thread's. Goroutines of a [`scope`](crate::scope)
    /// and [`block_on`](Runtime::block_on)'s are always joined, so never
    /// end the process this way.
    ///
    /// ```
    /// let rt = gort::Runtime::builder().unjoined_panic_exits(true).build()?;
    /// // Joined: the panic is the caller's to handle, as always.
    /// let joined = rt.block_on(|| gort::go(|| panic!("handled")).join());
    /// assert!(joined.is_err());
    /// # Ok::<(), gort::Error>(())
    /// ```
    pub fn unjoined_panic_exits(mut self, on: bool) -> Builder {
        self.unjoined_panic_exits = on;
        self
    }

    /// Run this runtime under the chaos scheduler, a test mode: goroutines
    /// are made to yield at random runtime calls (channel operations,
    /// `sync` locks, spawn, join, sleep, socket I/O, every wait), the
    /// scheduler picks among runnable goroutines at random now and then
    /// instead of in its usual order, and goroutines are preempted — often
    /// by signal — long before their slice ends. Programs stay correct
    /// under it; a test that fails under chaos has a race the usual
    /// schedule hides. The cost is throughput: don't benchmark it.
    ///
    /// `GORTDEBUG=chaos=SEED` does the same for every runtime of the
    /// process, the default one included; this call overrides it for one
    /// runtime.
    ///
    /// What a seed reproduces: every decision is drawn from a random stream
    /// per thread, seeded from `seed` and the thread's number, so a runtime
    /// with one P whose goroutines wait for no timer, socket or blocking
    /// call makes the same decisions on every run of a deterministic
    /// program — e.g. goroutines spawned on `procs(1)` first run in the same
    /// shuffled order — as long as no preemption by the watchdog thread
    /// (which is driven by the clock) lands in between. With several Ps, or
    /// timers, sockets and preemptions, the interleaving also depends on
    /// thread timing: the seed then picks the kind of chaos, not a replay.
    ///
    /// ```
    /// let rt = gort::Runtime::builder().procs(2).chaos(7).build()?;
    /// let sum: u64 = rt.block_on(|| {
    ///     let (tx, rx) = gort::chan::bounded(0);
    ///     let h = gort::go(move || (1..=100u64).for_each(|i| tx.send(i).unwrap()));
    ///     let sum = rx.iter().sum();
    ///     h.join().unwrap();
    ///     sum
    /// });
    /// assert_eq!(sum, 5050);
    /// # Ok::<(), gort::Error>(())
    /// ```
    pub fn chaos(mut self, seed: u64) -> Builder {
        self.chaos = Some(seed);
        self
    }

    /// Build the runtime. No thread starts until a goroutine is spawned.
    pub fn build(self) -> Result<Runtime, Error> {
        let procs = self.procs.unwrap_or_else(default_procs);
        if !(1..=MAX_PROCS).contains(&procs) {
            return Err(Error::InvalidProcs(procs));
        }
        let stack_size = stack::check_stack_size(self.stack_size).map_err(Error::InvalidStackSize)?;
        if self.max_threads == 0 {
            return Err(Error::InvalidMaxThreads);
        }
        if self.preempt_slice < MIN_PREEMPT_SLICE {
            return Err(Error::InvalidPreemptSlice(self.preempt_slice));
        }
        stack::install_overflow_handler(crate::goroutine::describe_overflow);
        crate::goroutine::install_panic_hook();
        crate::sched::install_preemption();
        debug::install_sigquit();
        debug::threads::note_user();
        let sched = Sched::new(Config {
            name: self.name,
            procs,
            stack_size,
            max_threads: self.max_threads,
            preempt_slice: self.preempt_slice,
            keep_alive: self.keep_alive,
            detect_deadlocks: self.detect_deadlocks,
            unjoined_panic_exits: self.unjoined_panic_exits,
            chaos: self.chaos,
        });
        debug::register(&sched);
        debug::http::start_from_env(&sched);
        Ok(Runtime { sched })
    }
}

/// `GORT_PROCS` if set to a number of Ps from 1 to `MAX_PROCS`, else one
/// per available CPU. A value it cannot use is named in a warning on
/// stderr, once per process: a number above `MAX_PROCS` gives `MAX_PROCS`,
/// anything else (0, not a whole number) is ignored. Empty is unset.
fn default_procs() -> usize {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let cpus = || {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_PROCS)
    };
    let Some(value) = std::env::var_os("GORT_PROCS").filter(|v| !v.is_empty()) else {
        return cpus();
    };
    let text = value.to_string_lossy();
    let (procs, problem) = match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PROCS).contains(&n) => return n,
        Ok(n) if n > MAX_PROCS => (MAX_PROCS, "too many"),
        _ => (cpus(), "ignored"),
    };
    WARNED.call_once(|| {
        eprintln!(
            "gort: GORT_PROCS={text:?}: {problem}; accepted: a whole number of Ps from 1 to {MAX_PROCS}; using {procs}"
        );
    });
    procs
}

/// A gort runtime: its Ps, Ms and goroutines.
pub struct Runtime {
    sched: Arc<Sched>,
}

impl Runtime {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder {
            procs: None,
            stack_size: stack::DEFAULT_STACK_SIZE,
            name: "gort".to_string(),
            max_threads: DEFAULT_MAX_THREADS,
            preempt_slice: DEFAULT_PREEMPT_SLICE,
            keep_alive: DEFAULT_KEEP_ALIVE,
            detect_deadlocks: true,
            unjoined_panic_exits: false,
            chaos: None,
        }
    }

    /// Run `f` as a goroutine of this runtime and block the calling thread
    /// (or park the calling goroutine) until it returns its value. A panic
    /// in `f` is resumed in the caller.
    ///
    /// ```
    /// let rt = gort::Runtime::builder().procs(1).build().unwrap();
    /// let n = rt.block_on(|| gort::go(|| 2 + 2).join().unwrap());
    /// assert_eq!(n, 4);
    /// ```
    ///
    /// # Panics
    /// If `f` panics, or if no stack can be had for its goroutine (as
    /// [`go`](crate::go)).
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = spawned(spawn_on(&self.sched, f, Some("main".into()), self.sched.stack_size()));
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Spawn a goroutine on this runtime from anywhere.
    ///
    /// # Panics
    /// If no stack can be had for it, as [`go`](crate::go).
    #[track_caller]
    pub fn go<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawned(spawn_on(&self.sched, f, None, self.sched.stack_size()))
    }

    /// Number of Ps (Go's `GOMAXPROCS(0)`).
    pub fn procs(&self) -> usize {
        self.sched.gomaxprocs()
    }

    /// Change the number of Ps while goroutines run; returns the old number.
    ///
    /// # Panics
    /// If `n` is 0 or above 1024.
    pub fn set_procs(&self, n: usize) -> usize {
        self.sched.set_procs(n)
    }

    /// Goroutines alive on this runtime.
    pub fn num_goroutine(&self) -> usize {
        self.sched.num_goroutine()
    }

    /// What the scheduler has done so far; O(Ps), see [`metrics`].
    pub fn metrics(&self) -> Metrics {
        self.sched.metrics()
    }

    /// This runtime's resident stack memory; costly, see
    /// [`stack_bytes_resident`].
    pub fn stack_bytes_resident(&self) -> usize {
        self.sched.stack_bytes_resident()
    }

    /// A snapshot of this runtime's goroutines; see [`goroutines`].
    pub fn goroutines(&self) -> Vec<GoroutineInfo> {
        self.sched.goroutines(true)
    }

    /// Write a dump of this runtime's goroutines; see [`dump`].
    pub fn dump(&self, w: &mut impl Write) -> io::Result<()> {
        self.sched.dump(w)
    }

    /// Write the grouped dump of this runtime's goroutines; see [`dump_grouped`].
    pub fn dump_grouped(&self, w: &mut impl Write) -> io::Result<()> {
        self.sched.dump_grouped(w)
    }

    /// Check that no goroutine of this runtime but the caller is left; see
    /// [`check_leaks`]. Tests that run in parallel should each use their
    /// own runtime and this method.
    pub fn check_leaks(&self, grace: Duration) -> Result<(), Leaks> {
        self.sched.check_leaks(grace)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.sched.begin_shutdown();
        let inside = current_m().is_some_and(|m| Arc::ptr_eq(&m.sched, &self.sched));
        if !inside {
            self.sched.join_threads();
            self.sched.abandon_unstarted();
        }
        if inside || self.sched.has_live_goroutines() {
            // See the module header: leak rather than free what may be named.
            std::mem::forget(Arc::clone(&self.sched));
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.sched.name)
            .field("procs", &self.procs())
            .finish_non_exhaustive()
    }
}

static DEFAULT: OnceLock<Runtime> = OnceLock::new();

/// The process-wide default runtime, created on first use.
pub(crate) fn default_runtime() -> &'static Runtime {
    DEFAULT.get_or_init(|| {
        Runtime::builder()
            .build()
            .expect("the default runtime configuration is valid")
    })
}

/// The default runtime's scheduler, which lives as long as the process.
pub(crate) fn default_sched() -> &'static Sched {
    &default_runtime().sched
}

/// Run `f` with the current runtime's scheduler: the caller's, if it is a
/// goroutine, else the default runtime's.
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<Sched>) -> R) -> R {
    match current_m() {
        Some(m) => f(&m.sched),
        None => f(&default_runtime().sched),
    }
}

/// Run `f` as the main goroutine of the default runtime and block the
/// calling thread until it returns. Several threads may call `run` at once.
///
/// ```
/// let sum: u64 = gort::run(|| {
///     let hs: Vec<_> = (1..=10u64).map(|i| gort::go(move || i * i)).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).sum()
/// });
/// assert_eq!(sum, 385);
/// ```
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_runtime().block_on(f)
}

/// Number of Ps of the current runtime (Go's `runtime.GOMAXPROCS(0)`).
pub fn procs() -> usize {
    with_current(|s| s.gomaxprocs())
}

/// Set the number of Ps of the current runtime while goroutines run (Go's
/// `runtime.GOMAXPROCS(n)`); returns the previous number. Goroutines queued
/// on a retired P move to the others.
///
/// ```
/// let old = gort::runtime::set_procs(1);
/// assert_eq!(gort::runtime::procs(), 1);
/// gort::runtime::set_procs(old);
/// ```
///
/// # Panics
/// If `n` is 0 or above 1024.
pub fn set_procs(n: usize) -> usize {
    with_current(|s| s.set_procs(n))
}

/// Number of live goroutines of the current runtime (Go's `runtime.NumGoroutine`).
pub fn num_goroutine() -> usize {
    with_current(|s| s.num_goroutine())
}

/// What the current runtime's scheduler has done so far.
///
/// Cheap: O(Ps), no system call, whatever the number of goroutines (see
/// [`Metrics`]' "Cost"), so it can be read on every request.
///
/// ```
/// gort::go(|| ()).join().unwrap();
/// assert!(gort::runtime::metrics().goroutines_created >= 1);
/// ```
pub fn metrics() -> Metrics {
    with_current(|s| s.metrics())
}

/// Goroutine stack memory of the current runtime resident in RAM, in
/// bytes: the pages of its stacks that were touched and not yet given back
/// to the kernel, whether their goroutine runs, waits, or has ended and
/// left the stack cached for reuse. The nearest Go figure is
/// `/memory/classes/heap/stacks:bytes` (Go's stacks are committed whole;
/// gort's only as far as they are touched).
///
/// Exact, and costly: it asks the kernel (`mincore`) about every page of
/// every stack slot ever carved, so its cost grows with the stack address
/// space, not with the number of Ps. Measured (release build, default
/// 256 KiB stacks, 2 shared cores): 0.3 to 2 ms per call with 1,000
/// goroutines parked, 28 to 83 ms with 100,000. For diagnostics and tests, not per request: the cheap figures
/// are [`Metrics::stacks_allocated`] and [`Metrics::stack_bytes_reserved`].
///
/// ```
/// let (started_tx, started) = gort::chan::bounded::<()>(1);
/// let (release, rx) = gort::chan::bounded::<()>(0);
/// let parked = gort::go(move || {
///     started_tx.send(()).unwrap();
///     rx.recv()
/// });
/// started.recv().unwrap();
/// // The parked goroutine's stack has at least its frames resident.
/// assert!(gort::runtime::stack_bytes_resident() > 0);
/// drop(release);
/// let _ = parked.join();
/// ```
pub fn stack_bytes_resident() -> usize {
    with_current(|s| s.stack_bytes_resident())
}

/// A snapshot of every goroutine of the current runtime, by id: state,
/// wait reason and duration, where it parked and where it was spawned, and
/// its stack (Go's `runtime.Stack(buf, true)`, as data).
///
/// ```
/// let (tx, rx) = gort::chan::bounded::<()>(0);
/// let waiter = gort::go(move || rx.recv());
/// while !gort::runtime::goroutines().iter().any(|g| g.wait_reason == Some("chan receive")) {
///     gort::yield_now();
/// }
/// drop(tx);
/// assert!(waiter.join().unwrap().is_err());
/// ```
pub fn goroutines() -> Vec<GoroutineInfo> {
    with_current(|s| s.goroutines(true))
}

/// Write a dump of every goroutine of the current runtime to `w`, in Go's
/// format (`goroutine 7 [chan receive, 2 minutes]:`, frames, `created by`),
/// one blank-line separated entry each. SIGQUIT writes the same dump of
/// every runtime to stderr and the program goes on (`GORTDEBUG=sigquitexit=1`
/// exits with status 2 afterwards, as Go does; `GORTDEBUG=sigquit=grouped`
/// prints [`dump_grouped`]'s form, `none` only counts, see
/// `docs/diagnostics.md`).
///
/// Stacks of goroutines that are not running are unwound from their saved
/// registers (DWARF call-frame information, see `docs/diagnostics.md`); goroutines
/// running on other threads show none.
pub fn dump(w: &mut impl Write) -> io::Result<()> {
    with_current(|s| s.dump(w))
}

/// Like [`dump`], with goroutines that have the same state, stack and spawn
/// site printed once, with their count and ids (Go's `debug=1` goroutine
/// profile): the readable form for a million goroutines.
pub fn dump_grouped(w: &mut impl Write) -> io::Result<()> {
    with_current(|s| s.dump_grouped(w))
}

/// Check that every goroutine of the current runtime except the caller has
/// ended, waiting up to `grace` for stragglers (goleak's `VerifyNone`). The
/// error lists every goroutine left, with its dump entry; its `Display` is
/// the report. A zero `grace` looks once; one past the end of the clock
/// (`Duration::MAX`) waits for as long as it takes.
///
/// ```
/// #[test]
/// fn workers_finish() {
///     no_leaks_after_work();
/// }
///
/// fn no_leaks_after_work() {
///     gort::run(|| {
///         let (tx, rx) = gort::chan::bounded(0);
///         gort::go(move || tx.send(42).unwrap());
///         assert_eq!(rx.recv(), Ok(42));
///     });
///     gort::runtime::check_leaks(std::time::Duration::from_millis(100)).unwrap();
/// }
/// # no_leaks_after_work();
/// ```
///
/// It checks one runtime: tests that run in parallel should each build
/// their own and call [`Runtime::check_leaks`].
#[allow(clippy::test_attr_in_doctest, reason = "the example is the test it is meant for")]
pub fn check_leaks(grace: Duration) -> Result<(), Leaks> {
    with_current(|s| s.check_leaks(grace))
}

/// Wire the calling goroutine to its current OS thread (Go's
/// `runtime.LockOSThread`): until a matching [`unlock_os_thread`], it runs
/// only on this thread and the thread runs no other goroutine, so
/// thread-local state and thread-affine APIs stay valid across runtime
/// calls. Calls nest. A goroutine that exits while locked takes its thread
/// with it (the thread exits instead of being reused). On a plain thread,
/// nothing to do.
///
/// ```
/// gort::run(|| {
///     gort::runtime::lock_os_thread();
///     let before = std::thread::current().id();
///     gort::yield_now();
///     gort::time::sleep(std::time::Duration::from_millis(1));
///     assert_eq!(std::thread::current().id(), before);
///     gort::runtime::unlock_os_thread();
/// });
/// ```
pub fn lock_os_thread() {
    crate::sched::lock_os_thread();
}

/// Undo one [`lock_os_thread`]; after the last, the goroutine may migrate
/// again. Without a matching lock, nothing happens.
pub fn unlock_os_thread() {
    crate::sched::unlock_os_thread();
}
