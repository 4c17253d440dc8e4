//! Which Tokio runtime the bridge's tasks run on: the one the program
//! hands in, or one gort starts at first use.
//!
//! The choice is made once per process and never changes: a `OnceLock`
//! holds either the program's `Handle` ([`set_handle`]) or gort's own
//! `Runtime`, whichever comes first. Changing it later would split the
//! program's tasks between two runtimes, and gort's would have to be shut
//! down under tasks that may still run on it; so a late [`set_handle`] is
//! an error that says what happened, not a switch.
//!
//! gort's own runtime lives in the static and so is never dropped: its
//! threads end with the process. Nothing in it needs a clean stop (it
//! holds no files to flush), and a runtime shut down under a goroutine
//! still waiting would turn that wait into a panic. Idle, it costs one
//! thread asleep in `epoll_wait`.

use std::fmt;
use std::sync::OnceLock;

use ::tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads of the runtime gort starts when the program hands in
/// none (the module header says why one).
pub const WORKER_THREADS: usize = 1;

/// The name of the threads of the runtime gort starts (workers and
/// blocking pool alike), as `/proc/self/task/*/comm` and debuggers show it.
pub const THREAD_NAME: &str = "gort-tokio";

/// Where the bridge's tasks run, decided at the first `set_handle` or
/// `handle`.
enum Source {
    /// Handed in by the program.
    Given(Handle),
    /// Started by gort.
    Own(Runtime),
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Make the bridge ([`spawn`](super::spawn), [`block_on`](super::block_on))
/// run its tasks on the runtime of `handle` instead of starting its own.
/// Call it before the first of them; the runtime stays the program's to
/// run and to shut down (tasks still waited for then end in a panic that
/// says so).
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-tokio")
///     .enable_all()
///     .build()
///     .unwrap();
/// gort::tokio::set_handle(rt.handle().clone()).unwrap();
/// let name = gort::run(|| {
///     gort::tokio::block_on(async { std::thread::current().name().map(str::to_owned) })
/// });
/// assert_eq!(name.as_deref(), Some("my-tokio"));
/// // Decided once: a second runtime is refused.
/// assert!(gort::tokio::set_handle(rt.handle().clone()).is_err());
/// ```
///
/// # Errors
/// [`SetHandleError`] when the bridge already has a runtime: one handed in
/// earlier, or gort's own, started by an earlier `spawn`.
pub fn set_handle(handle: Handle) -> Result<(), SetHandleError> {
    SOURCE.set(Source::Given(handle)).map_err(|_| SetHandleError {
        own: matches!(SOURCE.get(), Some(Source::Own(_))),
    })
}

/// The handle of the runtime the bridge's tasks run on: the one given to
/// [`set_handle`], or else gort's own, started by the first call — a
/// multi-threaded runtime of [`WORKER_THREADS`] worker named
/// [`THREAD_NAME`], with IO and timers enabled, that runs until the
/// process exits.
///
/// For the program's own use too, say to `spawn` a task it does not wait
/// for. It is not for `Handle::enter` on a goroutine, which would leave
/// Tokio's context on a thread the goroutine may leave at its next park.
///
/// ```
/// let handle = gort::tokio::handle();
/// let task = gort::tokio::spawn_on(handle, async { 1 + 1 });
/// assert_eq!(gort::run(move || task.join()), 2);
/// ```
///
/// # Panics
/// When gort has to start its runtime and the system refuses (no thread or
/// no epoll instance can be created); a later call tries again.
pub fn handle() -> &'static Handle {
    match SOURCE.get_or_init(|| Source::Own(start())) {
        Source::Given(handle) => handle,
        Source::Own(runtime) => runtime.handle(),
    }
}

/// Start gort's own runtime.
fn start() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("gort::tokio: cannot start a Tokio runtime: {e}"))
}

/// [`set_handle`] came after the bridge already had a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetHandleError {
    /// The runtime in use is gort's own, started by an earlier `spawn`
    /// (otherwise a handle was given earlier).
    pub own: bool,
}

impl fmt::Display for SetHandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.own {
            f.write_str(
                "gort::tokio::set_handle: gort already started its own Tokio runtime at an earlier spawn; \
                 call set_handle before the first spawn or block_on",
            )
        } else {
            f.write_str("gort::tokio::set_handle: a Tokio handle was already set; the runtime is chosen once")
        }
    }
}

impl std::error::Error for SetHandleError {}
