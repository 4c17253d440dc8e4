//! `ErrGroup`: run tasks on goroutines, wait for all, keep the first
//! error (golang.org/x/sync/errgroup).
//!
//! The group is a `WaitGroup` (every task is counted from `go` to its
//! end), the first error, and optionally a limit and a context. The
//! first task to fail stores its error — later ones are dropped — and
//! cancels the group's context, so that the others, watching it, stop
//! early; `wait` then cancels it too (the work is over), as x/sync does.
//!
//! A limit is a `Semaphore` of that many units: `go` takes one before it
//! spawns, parking the caller while the group is full (x/sync's channel of
//! tokens), `try_go` only if one is free, and each task gives its unit
//! back when it ends. The limit may change only while no task runs.
//!
//! A panicking task is caught, cancels the context like an error, and the
//! first panic is resumed by `wait` on the caller (as `std::thread::scope`
//! does), so a failure is never lost in a goroutine nobody joins. Tasks
//! are `'static`, like goroutines: a group is a cheap handle (`Clone`)
//! that tasks may hold to start more tasks.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex};

use super::{Semaphore, WaitGroup};
use crate::context::{CancelHandle, Context};
use crate::sched::lock;

/// A group of tasks returning `Result<(), E>`; [`wait`](ErrGroup::wait)
/// returns the first error.
///
/// ```
/// use gort::sync::ErrGroup;
/// let g = ErrGroup::new();
/// for n in 0..10 {
///     g.go(move || if n == 7 { Err(format!("task {n} failed")) } else { Ok(()) });
/// }
/// assert_eq!(g.wait(), Err("task 7 failed".to_string()));
/// ```
pub struct ErrGroup<E> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    tasks: Arc<WaitGroup>,
    first: Mutex<Failure<E>>,
    limit: Mutex<Option<Arc<Semaphore>>>,
    /// The context's handle, for a group made by `with_context`.
    cancel: Option<CancelHandle>,
}

/// The first failure: an error, or a panic's payload (kept apart: `wait`
/// resumes the panic).
enum Failure<E> {
    None,
    Error(E),
    Panic(Box<dyn Any + Send>),
}

impl<E: Send + 'static> ErrGroup<E> {
    /// An empty group with no limit and no context.
    ///
    /// ```
    /// let g = gort::sync::ErrGroup::<std::io::Error>::new();
    /// assert!(g.wait().is_ok());
    /// ```
    pub fn new() -> ErrGroup<E> {
        ErrGroup::with_cancel(None)
    }

    fn with_cancel(cancel: Option<CancelHandle>) -> ErrGroup<E> {
        ErrGroup {
            inner: Arc::new(Inner {
                tasks: Arc::new(WaitGroup::new()),
                first: Mutex::new(Failure::None),
                limit: Mutex::new(None),
                cancel,
            }),
        }
    }

    /// A group and a context derived from `ctx` that is cancelled when a
    /// task first fails (or panics), or when `wait` returns, whichever
    /// comes first (x/sync's `WithContext`). Hand the context to the tasks.
    ///
    /// ```
    /// use gort::sync::ErrGroup;
    /// use gort::context::Context;
    /// let (g, ctx) = ErrGroup::with_context(&Context::background());
    /// let watcher = ctx.clone();
    /// g.go(move || {
    ///     let _ = watcher.done().recv(); // parks until a sibling fails
    ///     Ok(())
    /// });
    /// g.go(|| Err("boom"));
    /// assert_eq!(g.wait(), Err("boom"));
    /// assert!(ctx.err().is_some());
    /// ```
    pub fn with_context(ctx: &Context) -> (ErrGroup<E>, Context) {
        let (ctx, cancel) = ctx.with_cancel();
        (ErrGroup::with_cancel(Some(cancel)), ctx)
    }

    /// Run `f` on a new goroutine in the group. With a limit set, parks
    /// the caller until the group has room.
    ///
    /// # Panics
    /// If the limit is 0 (nobody could ever be admitted).
    ///
    /// ```
    /// let g = gort::sync::ErrGroup::<()>::new();
    /// g.go(|| Ok(()));
    /// assert_eq!(g.wait(), Ok(()));
    /// ```
    #[track_caller]
    pub fn go(&self, f: impl FnOnce() -> Result<(), E> + Send + 'static) {
        let permit = self.limit();
        if let Some(sem) = &permit {
            sem.acquire(1);
        }
        self.spawn(f, permit);
    }

    /// Run `f` on a new goroutine only if the group has room under its
    /// limit (always, without one); whether it was started.
    ///
    /// ```
    /// use gort::sync::ErrGroup;
    /// let g = ErrGroup::<()>::new();
    /// g.set_limit(1);
    /// let (tx, rx) = gort::chan::bounded::<()>(0);
    /// assert!(g.try_go(move || { let _ = rx.recv(); Ok(()) }));
    /// assert!(!g.try_go(|| Ok(()))); // full
    /// drop(tx);
    /// g.wait().unwrap();
    /// assert!(g.try_go(|| Ok(())));
    /// ```
    #[track_caller]
    pub fn try_go(&self, f: impl FnOnce() -> Result<(), E> + Send + 'static) -> bool {
        let permit = self.limit();
        if permit.as_ref().is_some_and(|sem| !sem.try_acquire(1)) {
            return false;
        }
        self.spawn(f, permit);
        true
    }

    fn limit(&self) -> Option<Arc<Semaphore>> {
        lock(&self.inner.limit).clone()
    }

    /// Start `f` holding `permit`'s unit (if limited), counted in `tasks`.
    #[track_caller]
    fn spawn(&self, f: impl FnOnce() -> Result<(), E> + Send + 'static, permit: Option<Arc<Semaphore>>) {
        let inner = Arc::clone(&self.inner);
        self.inner.tasks.go(move || {
            let failure = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Failure::Error(e)),
                Err(payload) => Some(Failure::Panic(payload)),
            };
            if let Some(failure) = failure {
                inner.fail(failure);
            }
            if let Some(sem) = permit {
                sem.release(1);
            }
        });
    }

    /// At most `n` tasks of the group run at once from now on (x/sync's
    /// `SetLimit`); `usize::MAX` removes the limit.
    ///
    /// # Panics
    /// If tasks of the group are running (x/sync: "modify limit while ...
    /// goroutines in the group are still active").
    ///
    /// ```
    /// use gort::sync::ErrGroup;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// let g = ErrGroup::<()>::new();
    /// g.set_limit(2);
    /// let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    /// for _ in 0..10 {
    ///     let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
    ///     g.go(move || {
    ///         let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    ///         peak.fetch_max(now, Ordering::SeqCst);
    ///         gort::time::sleep(std::time::Duration::from_millis(1));
    ///         running.fetch_sub(1, Ordering::SeqCst);
    ///         Ok(())
    ///     });
    /// }
    /// g.wait().unwrap();
    /// assert!(peak.load(Ordering::SeqCst) <= 2);
    /// ```
    pub fn set_limit(&self, n: usize) {
        let active = self.inner.tasks.count();
        assert!(
            active == 0,
            "errgroup: modify limit while {active} goroutines in the group are still active"
        );
        *lock(&self.inner.limit) = (n != usize::MAX).then(|| Arc::new(Semaphore::new(n)));
    }

    /// Wait for every task started so far, then cancel the group's context
    /// (if any), and return the first error. The error is handed out once:
    /// a second `wait` returns `Ok` unless a later task failed.
    ///
    /// # Panics
    /// Resumes the first panic of a task, if one panicked.
    ///
    /// ```
    /// let g = gort::sync::ErrGroup::new();
    /// g.go(|| Err(1));
    /// assert_eq!(g.wait(), Err(1));
    /// assert_eq!(g.wait(), Ok(()));
    /// ```
    #[track_caller]
    pub fn wait(&self) -> Result<(), E> {
        self.inner.tasks.wait();
        if let Some(cancel) = &self.inner.cancel {
            cancel.cancel();
        }
        let first = std::mem::replace(&mut *lock(&self.inner.first), Failure::None);
        match first {
            Failure::None => Ok(()),
            Failure::Error(e) => Err(e),
            Failure::Panic(payload) => resume_unwind(payload),
        }
    }
}

impl<E> Inner<E> {
    /// Record a task's failure if it is the first, and cancel the context.
    fn fail(&self, failure: Failure<E>) {
        let lost = {
            let mut first = lock(&self.first);
            match *first {
                Failure::None => {
                    *first = failure;
                    None
                }
                _ => Some(failure),
            }
        };
        // A later failure (maybe a panic payload) is dropped unlocked.
        drop(lost);
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
    }
}

impl<E> Clone for ErrGroup<E> {
    /// Another handle to the same group (for tasks that start tasks).
    fn clone(&self) -> ErrGroup<E> {
        ErrGroup {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E: Send + 'static> Default for ErrGroup<E> {
    fn default() -> ErrGroup<E> {
        ErrGroup::new()
    }
}

impl<E> fmt::Debug for ErrGroup<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrGroup")
            .field("tasks", &self.inner.tasks.count())
            .finish_non_exhaustive()
    }
}
