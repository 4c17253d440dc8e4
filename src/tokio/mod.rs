//! Tokio-bound futures from goroutines (cargo feature `tokio`).
//!
//! `gort::block_on` drives any future that only needs its `Waker`. Most of
//! the async network ecosystem (reqwest, hyper, tokio-postgres, sqlx,
//! tonic) needs more: Tokio's reactor and timers, which a future finds
//! through a thread-local context set on Tokio's own threads. A goroutine
//! cannot provide that context: it may resume on another OS thread after
//! every park, so a context entered before a park (`Handle::enter`) would
//! be left on a thread that now runs someone else, and missing on the
//! thread the goroutine runs on next.
//!
//! So the bridge never enters Tokio on a goroutine. `spawn` hands the
//! future to a Tokio runtime as a task, where it runs with its context on
//! Tokio's threads; the goroutine gets a [`Task`] and waits for it with
//! `gort::block_on` on the task's `JoinHandle`, which parks only the
//! goroutine: Tokio's worker, finishing the task, wakes it. No OS thread
//! blocks per call, whatever the number of goroutines waiting.
//!
//! # Invariants
//!
//! - A [`Task`] owns its Tokio task: dropping it aborts the task (a no-op
//!   when it has finished), so a goroutine that stops waiting — it
//!   returned, panicked, or gave up in [`Task::join_timeout`] — leaves
//!   nothing running on Tokio's side. The future is dropped on Tokio's
//!   thread at its next `.await` point, as with `JoinHandle::abort`.
//! - A panic in the future reaches the joining goroutine as the same panic
//!   (`resume_unwind` of its payload), as if it had run there.
//! - The only Tokio calls made on a goroutine are `Handle::spawn` and
//!   polling a `JoinHandle`, neither of which reads Tokio's thread-local
//!   context.
//!
//! # Which runtime
//!
//! The one the program hands in with [`set_handle`] before the first
//! `spawn`, or else one gort starts at the first `spawn` (see
//! [`handle`]): [`WORKER_THREADS`] worker thread named [`THREAD_NAME`],
//! with IO and timers, and Tokio's default blocking pool (threads made
//! only for `spawn_blocking` and DNS look-ups, also named
//! [`THREAD_NAME`]). One worker because the bridge is for waiting, not
//! computing: the goroutines do the program's work on gort's Ps, and
//! Tokio's side only moves bytes and fires timers. A program whose Tokio
//! side is busier (a tonic server, say) builds its own runtime and hands
//! it in. gort's runtime is never shut down: it lives in a static until
//! the process exits, idle (its worker sleeps in `epoll_wait`) when no
//! task runs, so a `Task` never sees it go away. A runtime handed in may
//! be shut down by its owner; waiting tasks then end in a panic that
//! says so.
//!
//! # Writing the futures
//!
//! A future that needs the context already when it is *created* (for
//! example `tokio::time::sleep(d)`, or `tokio::spawn`) must be created on
//! Tokio's side: pass an `async` block, whose body runs only when the task
//! is polled there. `block_on(async move { tokio::time::sleep(d).await })`
//! works; `block_on(tokio::time::sleep(d))` panics on the goroutine. The
//! future and its output must be `Send + 'static` (they cross to Tokio's
//! threads), so a borrowed client is moved in and handed back:
//! `block_on(async move { let r = client.get(url).send().await; (client, r) })`,
//! or shared through an `Arc`.
//!
//! The caveats are collected in `docs/async.md`.
//!
//! ```
//! let sum = gort::run(|| {
//!     let handles: Vec<_> = (0..10u64)
//!         .map(|i| gort::go(move || gort::tokio::block_on(async move { i * 2 })))
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sum, 90);
//! ```

mod runtime;
mod task;

use std::future::Future;

use ::tokio::runtime::Handle;

pub use runtime::{SetHandleError, THREAD_NAME, WORKER_THREADS, handle, set_handle};
pub use task::{Elapsed, Task};

/// Run `future` on the Tokio runtime ([`handle`]) and return a [`Task`]
/// that waits for its output; dropping the `Task` aborts it.
///
/// The future starts at once, whether or not anyone joins it.
///
/// ```
/// gort::run(|| {
///     let task = gort::tokio::spawn(async { "from Tokio" });
///     assert_eq!(task.join(), "from Tokio");
/// });
/// ```
///
/// # Panics
/// When gort has to start its runtime ([`handle`]) and cannot.
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(handle(), future)
}

/// [`spawn`] on the runtime of `runtime` rather than the bridge's default,
/// for programs with more than one Tokio runtime.
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// let handle = rt.handle().clone();
/// let n = gort::run(move || gort::tokio::spawn_on(&handle, async { 7 }).join());
/// assert_eq!(n, 7);
/// ```
pub fn spawn_on<F>(runtime: &Handle, future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Task::new(runtime.spawn(future), runtime.clone())
}

/// Run `future` on the Tokio runtime ([`handle`]) and wait for its output:
/// `spawn(future).join()`. On a goroutine only the goroutine waits; on a
/// plain thread the thread does.
///
/// ```
/// use tokio::net::{TcpListener, TcpStream};
///
/// let (client, seen_by_server) = gort::run(|| {
///     gort::tokio::block_on(async {
///         // Tokio's reactor is there: this runs on a Tokio worker.
///         let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///         let conn = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
///         let (_, peer) = listener.accept().await.unwrap();
///         (conn.local_addr().unwrap(), peer)
///     })
/// });
/// assert_eq!(client, seen_by_server);
/// ```
///
/// # Panics
/// With the future's own panic if it panics; when the runtime is shut down
/// before the future finishes; when called on a thread of a Tokio runtime
/// that is not a goroutine (it would block a Tokio worker: `.await` the
/// future there instead); when gort has to start its runtime and cannot.
#[track_caller]
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn(future).join()
}
