//! A Tokio task as a goroutine sees it: something to wait for, which
//! stops when nobody waits any more.
//!
//! A `Task` wraps Tokio's `JoinHandle`. Waiting is `gort::block_on` on the
//! handle, so the goroutine parks and Tokio's worker readies it when the
//! task finishes; polling a `JoinHandle` reads no thread-local context, so
//! the goroutine may come back on any thread. Tokio's own `JoinHandle`
//! detaches its task when dropped; a `Task` aborts it instead, because
//! Go's model of a call is that its work ends with its caller's interest:
//! a goroutine that gave up (a timeout, a panic unwinding past the
//! `Task`) must not leave requests running on Tokio's side.
//!
//! A timeout is a second Tokio task, a sleep on the same runtime, raced
//! against the first in one `block_on`: Tokio's timers are the only ones
//! a future polled from a goroutine can use without Tokio's context on the
//! goroutine's thread. The sleep is itself a `Task`, so it is aborted as
//! soon as the race is decided either way.

use std::fmt;
use std::future::poll_fn;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ::tokio::runtime::Handle;
use ::tokio::task::{JoinError, JoinHandle};

use crate::sched::current_m;

/// A future running on a Tokio runtime, started by
/// [`gort::tokio::spawn`](super::spawn). [`join`](Task::join) waits for
/// its output, parking only the calling goroutine. Dropping a `Task`
/// aborts the future if it has not finished.
///
/// ```
/// use std::time::Duration;
///
/// gort::run(|| {
///     let stuck = gort::tokio::spawn(std::future::pending::<()>());
///     // Gives up after 10 ms, and the pending future is aborted.
///     assert!(stuck.join_timeout(Duration::from_millis(10)).is_err());
/// });
/// ```
pub struct Task<T> {
    join: JoinHandle<T>,
    /// Where a timeout's sleep runs: the task's own runtime.
    runtime: Handle,
}

impl<T> Task<T> {
    pub(super) fn new(join: JoinHandle<T>, runtime: Handle) -> Task<T> {
        Task { join, runtime }
    }

    /// Wait for the task's output. On a goroutine only the goroutine
    /// waits; on a plain thread, the thread.
    ///
    /// ```
    /// let n = gort::run(|| gort::tokio::spawn(async { 6 * 7 }).join());
    /// assert_eq!(n, 42);
    /// ```
    ///
    /// # Panics
    /// With the task's own panic (its payload, as `resume_unwind`) if it
    /// panicked; when its runtime was shut down before it finished; when
    /// called on a thread of a Tokio runtime that is not a goroutine (that
    /// would block a Tokio worker, perhaps the one the task needs: `.await`
    /// the future there instead).
    #[track_caller]
    pub fn join(mut self) -> T {
        refuse_tokio_thread();
        output(crate::block_on(&mut self.join))
    }

    /// [`join`](Task::join), giving up after `timeout`: then the task is
    /// aborted and the error says how long was waited. A task already
    /// finished returns its output even with a zero `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// gort::run(|| {
    ///     let quick = gort::tokio::spawn(async { "done" });
    ///     assert_eq!(quick.join_timeout(Duration::from_secs(10)), Ok("done"));
    /// });
    /// ```
    ///
    /// # Errors
    /// [`Elapsed`] when the task had not finished after `timeout`.
    ///
    /// # Panics
    /// As [`join`](Task::join).
    #[track_caller]
    pub fn join_timeout(mut self, timeout: Duration) -> Result<T, Elapsed> {
        refuse_tokio_thread();
        // An async block, so that the sleep is created on Tokio's side,
        // where its timer is (see the module header of `gort::tokio`).
        let mut sleep = Some(Task::new(
            self.runtime.spawn(async move { ::tokio::time::sleep(timeout).await }),
            self.runtime.clone(),
        ));
        let raced = crate::block_on(poll_fn(|cx| {
            // The task first: finished beats timed out.
            if let Poll::Ready(result) = Pin::new(&mut self.join).poll(cx) {
                return Poll::Ready(Some(result));
            }
            if let Some(timer) = &mut sleep
                && let Poll::Ready(slept) = Pin::new(&mut timer.join).poll(cx)
            {
                if slept.is_ok() {
                    return Poll::Ready(None);
                }
                // The sleep was cancelled: the runtime is shutting down,
                // and the task's handle will say so. A finished
                // `JoinHandle` must not be polled again.
                sleep = None;
            }
            Poll::Pending
        }));
        // Dropping `self` (on timeout) and the sleep aborts what still runs.
        raced.map(output).ok_or(Elapsed { timeout })
    }

    /// Whether the task has finished (returned, panicked, or was stopped by
    /// its runtime's shutdown): then `join` does not wait.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // A no-op for a finished task.
        self.join.abort();
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.join.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The task's output, or its panic resumed here.
#[track_caller]
fn output<T>(result: Result<T, JoinError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) if e.is_panic() => resume_unwind(e.into_panic()),
        // Only the `Task` could abort the task, and it is still here: the
        // runtime cancelled it.
        Err(_) => panic!("gort::tokio: the Tokio runtime was shut down before the task finished"),
    }
}

/// Panic on a Tokio thread that is not running a goroutine: waiting there
/// blocks a Tokio worker, and with gort's one-worker runtime the task
/// could never run.
#[track_caller]
fn refuse_tokio_thread() {
    let on_goroutine = current_m().is_some_and(|m| m.curg.get().is_some());
    if !on_goroutine && Handle::try_current().is_ok() {
        panic!(
            "gort::tokio: a task joined on a Tokio runtime's thread would block it; \
             `.await` the future there instead, or join from a goroutine"
        );
    }
}

/// [`Task::join_timeout`] gave up: the task had not finished after
/// `timeout` and was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    /// How long was waited.
    pub timeout: Duration,
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the Tokio task did not finish within {:?} and was aborted",
            self.timeout
        )
    }
}

impl std::error::Error for Elapsed {}
