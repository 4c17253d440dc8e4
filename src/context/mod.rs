//! Cancellation, deadlines and request values carried across goroutines
//! (Go's package `context`, in Rust's shape).
//!
//! ```
//! use gort::context::{Context, Error};
//! use std::time::Duration;
//!
//! let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(5));
//! let worker = {
//!     let ctx = ctx.clone();
//!     gort::go(move || {
//!         let mut rounds = 0;
//!         while ctx.err().is_none() {
//!             rounds += 1;
//!             gort::time::sleep(Duration::from_millis(1));
//!         }
//!         rounds
//!     })
//! };
//! assert!(worker.join().unwrap() > 0);
//! assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
//! ```
//!
//! # Semantics (Go's)
//!
//! - A [`Context`] is a cheap handle (one `Arc`), `Send + Sync`: clone it
//!   into every goroutine that works for the same request.
//! - Contexts form a tree. [`with_cancel`](Context::with_cancel),
//!   [`with_timeout`](Context::with_timeout) and
//!   [`with_deadline`](Context::with_deadline) derive a child that is done
//!   when its [`CancelHandle`] cancels it, at its deadline, or when its
//!   parent is done, whichever comes first. Cancelling a context cancels
//!   every descendant in the same call; it never reaches the parent.
//! - [`done`](Context::done) is a channel that is never sent on and is
//!   disconnected when the context is done: `recv` on it parks until
//!   then, and a `select!` arm on it fires then. [`err`](Context::err)
//!   says why (`Canceled` or `DeadlineExceeded`), `None` before.
//! - **Dropping the last clone of a `CancelHandle` cancels**, so a
//!   forgotten cancel cannot leak the child's registration, its timer, or
//!   a goroutine waiting on it (Go's `go vet` warns about a lost cancel
//!   func; here it cannot be lost). Keep the handle in a named variable
//!   for as long as the context must live: `let (ctx, _cancel) = ...`,
//!   never `let (ctx, _) = ...`, which cancels at once.
//! - [`with_value`](Context::with_value) attaches a value under a typed
//!   [`Key`]; [`value`](Context::value) finds the nearest one.
//! - [`after_func`] runs a function on its own goroutine once a context
//!   is done; [`CancelHandle::cancel_with_cause`] and
//!   [`cause`](Context::cause) are Go 1.20's causes;
//!   [`without_cancel`](Context::without_cancel) is Go 1.21's.
//!
//! Integration: [`time::sleep_ctx`](crate::time::sleep_ctx),
//! [`WaitGroup::wait_ctx`](crate::sync::WaitGroup::wait_ctx),
//! [`Semaphore::acquire_ctx`](crate::sync::Semaphore::acquire_ctx),
//! [`TcpStream::connect_ctx`](crate::net::TcpStream::connect_ctx), and
//! [`sync::ErrGroup::with_context`](crate::sync::ErrGroup::with_context).
//!
//! # Cost
//!
//! No thread and no goroutine per context. A context without a deadline
//! has no timer; one with a deadline has one runtime timer, stopped when
//! it is cancelled first. `err` is one atomic load; `done` makes its
//! channel on first use. A cancellation walks the subtree once, waking
//! every goroutine parked on any of its `done` channels or in a `*_ctx`
//! wait as it goes (`cancel.rs`).
//!
//! # Structure
//!
//! This file is the tree of `Node`s (parent link, inherited deadline, a
//! value, and the nearest `Canceler`); `cancel.rs` the cancellation state
//! and the pass; `value.rs` keys; `after_func.rs`; `wait.rs` the waits
//! that a context can end; `error.rs` the reasons.

mod after_func;
mod cancel;
mod error;
mod value;
mod wait;

pub use after_func::{AfterFunc, after_func};
pub use error::{Cause, Error};
pub use value::Key;

pub(crate) use cancel::CTX_DONE;
pub(crate) use wait::wait;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cancel::Canceler;
use value::Entry;

use crate::chan::{Receiver, Sender, bounded};

/// A request's cancellation signal, deadline and values (Go's
/// `context.Context`); see the [module docs](self).
///
/// ```
/// use gort::context::Context;
/// let (ctx, cancel) = Context::background().with_cancel();
/// let waiter = {
///     let ctx = ctx.clone();
///     gort::go(move || {
///         let _ = ctx.done().recv(); // parks until cancelled
///         ctx.err()
///     })
/// };
/// cancel.cancel();
/// assert_eq!(waiter.join().unwrap(), Some(gort::context::Error::Canceled));
/// ```
#[derive(Clone)]
pub struct Context {
    node: Arc<Node>,
}

struct Node {
    parent: Option<Context>,
    /// The nearest cancellation state: our own, or an ancestor's; `None`
    /// when nothing above can ever be done.
    canceler: Option<Arc<Canceler>>,
    /// The earliest deadline on the way up.
    deadline: Option<Instant>,
    value: Option<Entry>,
}

impl Drop for Node {
    /// Free a chain of contexts iteratively: dropping a node drops its
    /// parent, and the default recursion would overflow the stack on a
    /// chain of 100,000 nested contexts.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(ctx) = next {
            next = Arc::into_inner(ctx.node).and_then(|mut n| n.parent.take());
        }
    }
}

/// The never-disconnected channel of contexts that cannot be done (Go
/// returns a nil channel): its sender lives for the whole process.
fn never() -> &'static Receiver<()> {
    static NEVER: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();
    &NEVER.get_or_init(|| bounded(0)).1
}

impl Context {
    /// The root context: never done, no deadline, no values (Go's
    /// `context.Background()` and `TODO()`). One node for the process,
    /// shared by every call.
    ///
    /// ```
    /// let ctx = gort::context::Context::background();
    /// assert_eq!(ctx.err(), None);
    /// assert_eq!(ctx.deadline(), None);
    /// ```
    pub fn background() -> Context {
        static BACKGROUND: OnceLock<Context> = OnceLock::new();
        BACKGROUND
            .get_or_init(|| Context {
                node: Arc::new(Node {
                    parent: None,
                    canceler: None,
                    deadline: None,
                    value: None,
                }),
            })
            .clone()
    }

    fn child(&self, canceler: Option<Arc<Canceler>>, deadline: Option<Instant>, value: Option<Entry>) -> Context {
        Context {
            node: Arc::new(Node {
                parent: Some(self.clone()),
                canceler,
                deadline,
                value,
            }),
        }
    }

    fn canceler(&self) -> Option<&Arc<Canceler>> {
        self.node.canceler.as_ref()
    }

    /// Whether this context can ever be done (false for `background`,
    /// values over it, and `without_cancel`): waits on it need no
    /// registration.
    pub(crate) fn can_be_done(&self) -> bool {
        self.node.canceler.is_some()
    }

    /// A child that is done when `cancel` is called on the returned handle
    /// (or its last clone is dropped), or when this context is done (Go's
    /// `WithCancel`, and `WithCancelCause` through
    /// [`CancelHandle::cancel_with_cause`]).
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// let (parent, cancel_parent) = Context::background().with_cancel();
    /// let (child, cancel_child) = parent.with_cancel();
    /// cancel_child.cancel();
    /// assert_eq!(child.err(), Some(Error::Canceled));
    /// assert_eq!(parent.err(), None); // never upwards
    /// let (grandchild, _keep) = parent.with_cancel();
    /// cancel_parent.cancel();
    /// assert_eq!(grandchild.err(), Some(Error::Canceled)); // always downwards
    /// ```
    #[must_use = "dropping the CancelHandle cancels the context at once"]
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        let c = Canceler::new(self.canceler());
        let ctx = self.child(Some(Arc::clone(&c)), self.node.deadline, None);
        (ctx, CancelHandle::new(c))
    }

    /// A child that is also done once `timeout` has passed (Go's
    /// `WithTimeout`): `with_deadline(now + timeout)`. A timeout past the
    /// end of the clock (`Duration::MAX`) sets no deadline and arms no
    /// timer.
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// use std::time::Duration;
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(1));
    /// let _ = ctx.done().recv();
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// ```
    #[must_use = "dropping the CancelHandle cancels the context at once"]
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        match crate::sched::timers::deadline_after(timeout) {
            Some(deadline) => self.with_deadline(deadline),
            None => self.with_cancel(),
        }
    }

    /// A child that is also done at `deadline` with `DeadlineExceeded`
    /// (Go's `WithDeadline`). If this context's deadline is already
    /// earlier, the child just shares it (a plain `with_cancel`); one in
    /// the past makes a child that is done already.
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// use std::time::{Duration, Instant};
    /// let soon = Instant::now() + Duration::from_secs(60);
    /// let (ctx, _cancel) = Context::background().with_deadline(soon);
    /// assert_eq!(ctx.deadline(), Some(soon));
    /// let (later, _cancel2) = ctx.with_deadline(soon + Duration::from_secs(60));
    /// assert_eq!(later.deadline(), Some(soon)); // the parent's comes first
    /// let (past, _cancel3) = ctx.with_deadline(Instant::now());
    /// assert_eq!(past.err(), Some(Error::DeadlineExceeded));
    /// ```
    #[must_use = "dropping the CancelHandle cancels the context at once"]
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        if self.node.deadline.is_some_and(|d| d <= deadline) {
            return self.with_cancel();
        }
        let c = Canceler::new(self.canceler());
        let ctx = self.child(Some(Arc::clone(&c)), Some(deadline), None);
        if deadline <= Instant::now() {
            c.cancel(true, Error::DeadlineExceeded, None);
        } else {
            let weak = Arc::downgrade(&c);
            c.set_timer(crate::time::after_func_at(Some(deadline), move || {
                if let Some(c) = weak.upgrade() {
                    c.cancel(true, Error::DeadlineExceeded, None);
                }
            }));
        }
        (ctx, CancelHandle::new(c))
    }

    /// A child carrying `value` under `key` (Go's `WithValue`); it is done
    /// when this context is.
    ///
    /// ```
    /// use gort::context::{Context, Key};
    /// #[derive(PartialEq)]
    /// struct User;
    /// impl Key for User {
    ///     type Value = String;
    /// }
    /// let ctx = Context::background().with_value(User, "gopher".to_string());
    /// let (child, _cancel) = ctx.with_cancel();
    /// assert_eq!(child.value(&User).map(String::as_str), Some("gopher"));
    /// ```
    pub fn with_value<K: Key>(&self, key: K, value: K::Value) -> Context {
        self.child(
            self.node.canceler.clone(),
            self.node.deadline,
            Some(Entry::new(key, value)),
        )
    }

    /// A child with this context's values but none of its cancellation or
    /// deadline (Go 1.21's `WithoutCancel`): for work that must outlive
    /// the request, such as a write-behind.
    ///
    /// ```
    /// use gort::context::Context;
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let detached = ctx.without_cancel();
    /// cancel.cancel();
    /// assert!(ctx.err().is_some());
    /// assert_eq!(detached.err(), None);
    /// ```
    pub fn without_cancel(&self) -> Context {
        self.child(None, None, None)
    }

    /// The value under `key` in this context or the nearest ancestor that
    /// has one (Go's `Value`); `None` if none has.
    ///
    /// ```
    /// use gort::context::{Context, Key};
    /// #[derive(PartialEq)]
    /// struct Shard(u8);
    /// impl Key for Shard {
    ///     type Value = &'static str;
    /// }
    /// let ctx = Context::background().with_value(Shard(1), "one").with_value(Shard(2), "two");
    /// assert_eq!(ctx.value(&Shard(1)), Some(&"one"));
    /// assert_eq!(ctx.value(&Shard(3)), None);
    /// ```
    pub fn value<K: Key>(&self, key: &K) -> Option<&K::Value> {
        let mut node: &Node = &self.node;
        loop {
            if let Some(v) = node.value.as_ref().and_then(|e| e.get(key)) {
                return Some(v);
            }
            node = &node.parent.as_ref()?.node;
        }
    }

    /// A channel that is disconnected once this context is done, for
    /// `recv` or a `select!` arm; nothing is ever sent on it. A context
    /// that can never be done returns one that never disconnects.
    ///
    /// ```
    /// use gort::context::Context;
    /// use std::time::Duration;
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let (jobs_tx, jobs) = gort::chan::unbounded::<u32>();
    /// let worker = gort::go(move || {
    ///     let mut done = 0;
    ///     loop {
    ///         gort::select! {
    ///             recv(jobs) -> job => match job {
    ///                 Ok(_) => done += 1,
    ///                 Err(_) => return done,
    ///             },
    ///             recv(ctx.done()) -> _ => return done,
    ///         }
    ///     }
    /// });
    /// jobs_tx.send(1).unwrap();
    /// gort::time::sleep(Duration::from_millis(1));
    /// cancel.cancel();
    /// assert!(worker.join().unwrap() <= 1);
    /// ```
    pub fn done(&self) -> &Receiver<()> {
        match &self.node.canceler {
            Some(c) => c.done(),
            None => never(),
        }
    }

    /// Why this context is done (Go's `Err`): `None` while it is not.
    ///
    /// ```
    /// use gort::context::{Context, Error};
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert_eq!(ctx.err(), None);
    /// drop(cancel); // the last handle: cancels
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// ```
    pub fn err(&self) -> Option<Error> {
        self.node.canceler.as_ref().and_then(|c| c.err())
    }

    /// The instant this context will be done by itself, if any (Go's
    /// `Deadline`): the earliest deadline of it and its ancestors.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _cancel) = gort::context::Context::background().with_timeout(Duration::from_secs(9));
    /// assert!(ctx.deadline().is_some());
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.node.deadline
    }

    /// Why this context was cancelled, in the canceller's words (Go's
    /// `context.Cause`): the error given to
    /// [`cancel_with_cause`](CancelHandle::cancel_with_cause) here or on
    /// the ancestor whose cancellation reached us, else `err()` as an
    /// error; `None` while not done.
    ///
    /// ```
    /// use gort::context::Context;
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// cancel.cancel_with_cause(std::io::Error::other("shutting down"));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "shutting down");
    /// assert_eq!(ctx.err(), Some(gort::context::Error::Canceled));
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        let c = self.node.canceler.as_ref()?;
        let err = c.err()?;
        Some(c.cause_set().unwrap_or_else(|| Arc::new(err)))
    }
}

impl Default for Context {
    /// [`Context::background`].
    fn default() -> Context {
        Context::background()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

/// Cancels the context made with it (Go's `CancelFunc`). Clones share one
/// cancellation; **dropping the last clone cancels** (module docs).
///
/// ```
/// use gort::context::Context;
/// let (ctx, cancel) = Context::background().with_cancel();
/// let cancel2 = cancel.clone();
/// drop(cancel);
/// assert_eq!(ctx.err(), None); // a clone is still alive
/// cancel2.cancel();
/// assert!(ctx.err().is_some());
/// ```
#[derive(Clone)]
pub struct CancelHandle {
    inner: Arc<Owner>,
}

/// The cancellation the handles share; cancels when the last goes.
struct Owner(Arc<Canceler>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.cancel(true, Error::Canceled, None);
    }
}

impl CancelHandle {
    fn new(c: Arc<Canceler>) -> CancelHandle {
        CancelHandle {
            inner: Arc::new(Owner(c)),
        }
    }

    /// Cancel the context and its descendants with `Canceled`, waking
    /// everything waiting on them; a no-op once the context is done.
    ///
    /// ```
    /// let (ctx, cancel) = gort::context::Context::background().with_cancel();
    /// cancel.cancel();
    /// cancel.cancel(); // harmless
    /// assert!(ctx.done().recv().is_err()); // disconnected: does not park
    /// ```
    pub fn cancel(&self) {
        self.inner.0.cancel(true, Error::Canceled, None);
    }

    /// [`cancel`](CancelHandle::cancel), recording `cause` for
    /// [`Context::cause`] on the context and its descendants (Go's
    /// `CancelCauseFunc`); ignored if the context is done already.
    ///
    /// ```
    /// let (ctx, cancel) = gort::context::Context::background().with_cancel();
    /// let (child, _keep) = ctx.with_cancel();
    /// cancel.cancel_with_cause(std::io::Error::other("upstream failed"));
    /// assert_eq!(child.cause().unwrap().to_string(), "upstream failed");
    /// ```
    pub fn cancel_with_cause(&self, cause: impl std::error::Error + Send + Sync + 'static) {
        self.inner.0.cancel(true, Error::Canceled, Some(Arc::new(cause)));
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("err", &self.inner.0.err())
            .finish_non_exhaustive()
    }
}
