//! `after_func`: run a function on its own goroutine once a context is
//! done (Go 1.21's `context.AfterFunc`).
//!
//! The function waits in a `Pending`, registered with the context's
//! canceler like a child context (`cancel.rs`). Whoever takes it out of
//! the `Pending` — the cancellation, to start it, or `stop`, to drop it —
//! is the only one who ever will: that take, under the `Pending`'s own
//! lock, is what makes "`stop` returned true" and "the function ran"
//! exclusive. The function runs on a goroutine of its own on the runtime
//! current at registration (`time::go_on`), never inside `cancel`, which
//! may be running in a `Drop` or on a plain thread.
//!
//! A context that can never be done (`background`, or values over it)
//! keeps nothing: the function is held by the handle until `stop` drops
//! it, or for ever.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use super::Context;
use super::cancel::{Canceler, Child};
use crate::sched::{Sched, lock};

type Func = Box<dyn FnOnce() + Send>;

/// A function waiting for its context (module header).
pub(super) struct Pending {
    f: Mutex<Option<Func>>,
    runtime: Weak<Sched>,
}

impl Pending {
    /// Take the function out; `None` if it was taken already.
    fn take(&self) -> Option<Func> {
        lock(&self.f).take()
    }

    /// The context is done: start the function, unless stopped.
    pub(super) fn start(&self) {
        if let Some(f) = self.take() {
            crate::time::go_on(&self.runtime, f);
        }
    }
}

/// Run `f` on a goroutine of its own once `ctx` is done — at once if it
/// is done already (Go's `context.AfterFunc`). `f` runs at most once; the
/// handle's [`stop`](AfterFunc::stop) keeps it from running. Dropping the
/// handle does not.
///
/// ```
/// use gort::context::{self, Context};
/// let (ctx, cancel) = Context::background().with_cancel();
/// let (tx, rx) = gort::chan::bounded(1);
/// let _after = context::after_func(&ctx, move || tx.send("cleaned up").unwrap());
/// cancel.cancel();
/// assert_eq!(rx.recv(), Ok("cleaned up"));
/// ```
pub fn after_func(ctx: &Context, f: impl FnOnce() + Send + 'static) -> AfterFunc {
    let pending = Arc::new(Pending {
        f: Mutex::new(Some(Box::new(f))),
        runtime: crate::runtime::with_current(Arc::downgrade),
    });
    let registered = ctx
        .canceler()
        .and_then(|c| match c.register(Child::Func(Arc::clone(&pending))) {
            Ok(id) => Some((Arc::downgrade(c), id)),
            Err(_) => {
                pending.start();
                None
            }
        });
    AfterFunc { pending, registered }
}

/// The handle of a [`context::after_func`](after_func).
pub struct AfterFunc {
    pending: Arc<Pending>,
    /// Where the registration is, to withdraw it on `stop` (`None`: the
    /// context cannot be done, or was done already).
    registered: Option<(Weak<Canceler>, u64)>,
}

impl AfterFunc {
    /// Keep the function from running: true if this did, false if it has
    /// been started already (the context was done) or stopped before (Go's
    /// `stop()`). A stopped function is dropped unrun.
    ///
    /// ```
    /// use gort::context::{self, Context};
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let after = context::after_func(&ctx, || unreachable!());
    /// assert!(after.stop());
    /// cancel.cancel();
    /// assert!(!after.stop());
    /// ```
    pub fn stop(&self) -> bool {
        if let Some((canceler, id)) = &self.registered
            && let Some(c) = canceler.upgrade()
        {
            drop(c.unregister(*id));
        }
        self.pending.take().is_some()
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("AfterFunc { .. }")
    }
}
