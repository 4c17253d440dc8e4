//! The cancellation state of a context (Go's `cancelCtx`): whether it is
//! done and why, its `done` channel, and who must be told when it is
//! cancelled.
//!
//! Only `with_cancel`, `with_timeout` and `with_deadline` make a
//! `Canceler`; a value context shares its parent's, and `background` has
//! none, so asking one of those for `done` or `err` costs no lock and a
//! context that cannot be cancelled costs nothing to wait on.
//!
//! # Invariants
//!
//! - `err` goes from `LIVE` to a reason once, under `state`'s lock, and
//!   before anything is told: whoever sees `done` disconnected, or is
//!   woken by a cancellation, reads the reason with `err` (lock-free).
//!   The converse holds too (golang/go#75533): `err` that finds a reason
//!   but a `done` channel not yet disconnected — the canceller is between
//!   marking and dropping the sender — waits on the channel for the drop,
//!   so "`err` says done" implies "`done` is disconnected".
//! - `children` holds exactly the live registrations: a registration on a
//!   cancelled canceler is refused (`register` returns it), and the
//!   cancellation takes the whole map out. So nobody is told twice, and
//!   nobody registers after the telling and waits for ever.
//! - The `done` channel's only sender is in `state` while the canceler is
//!   live; dropping it is how the channel is closed, which wakes every
//!   receiver parked on it (`chan/hchan.rs`, `release_sender`).
//!
//! # One pass
//!
//! A cancellation walks the tree below it with a work list, not recursion
//! (a chain of 100,000 nested contexts would overflow a goroutine's
//! stack): each node is marked, its sender dropped, its map taken out and
//! its children pushed, each lock held only for that node. Descendants
//! are told with the parent's reason and cause, and do not remove
//! themselves from their parent (it has just emptied its map), as Go's
//! `cancel(false, ...)`. Only the root of the pass leaves its parent's map.
//! Locks are never nested: a parent's lock is released before a child's is
//! taken, so the order of the tree is not a lock order.
//!
//! Children hold their parent weakly: a parent that is gone has no map to
//! leave. Parents hold live children strongly, which is what keeps an
//! `after_func` or a waiter reachable from the canceler that must tell it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::after_func::Pending;
use super::error::{Cause, Error};
use crate::chan::{Receiver, Sender, bounded};
use crate::sched::{WaitToken, lock};

const LIVE: u8 = 0;
const CANCELED: u8 = 1;
const DEADLINE_EXCEEDED: u8 = 2;

/// The tag a `*_ctx` wait is woken with when its context is done (see
/// `wait.rs`); distinct from a deadline's `TIMED_OUT`.
pub(crate) const CTX_DONE: usize = crate::sched::TIMED_OUT - 1;

/// Registration ids, unique for the process: a map key needs no more.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Who is told when a canceler is cancelled.
pub(super) enum Child {
    /// A descendant context: cancelled in the same pass.
    Context(Arc<Canceler>),
    /// An `after_func`: its function starts on a goroutine of its own.
    Func(Arc<Pending>),
    /// A goroutine or thread parked in a `*_ctx` wait: woken with `CTX_DONE`.
    Wake(Arc<WaitToken>),
}

pub(super) struct Canceler {
    /// `LIVE` or the reason (module header).
    err: AtomicU8,
    parent: Weak<Canceler>,
    /// Our key in the parent's `children`.
    id: u64,
    state: Mutex<State>,
    /// Made on first use: most contexts are checked with `err`, or passed
    /// down, never selected on.
    done: OnceLock<Receiver<()>>,
}

#[derive(Default)]
struct State {
    /// The `done` channel's sender while live and once `done` was asked for.
    done_tx: Option<Sender<()>>,
    /// Set with the reason; `None` means the reason itself is the cause.
    cause: Option<Cause>,
    children: HashMap<u64, Child>,
    /// A deadline's timer, stopped by a cancellation that comes first.
    timer: Option<crate::time::AfterFunc>,
}

impl Canceler {
    /// A live canceler below `parent`'s (if any), registered with it; one
    /// whose parent is done already is cancelled with the parent's reason
    /// before it is returned.
    pub(super) fn new(parent: Option<&Arc<Canceler>>) -> Arc<Canceler> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Canceler {
            err: AtomicU8::new(LIVE),
            parent: parent.map_or_else(Weak::new, Arc::downgrade),
            id,
            state: Mutex::new(State::default()),
            done: OnceLock::new(),
        });
        if let Some(p) = parent
            && p.register_as(id, Child::Context(Arc::clone(&c))).is_err()
        {
            let err = p.reason().expect("a canceler refuses registrations only once done");
            c.cancel(false, err, p.cause_set());
        }
        c
    }

    /// Why we are done, if we are, as `Context::err` reports it: once it
    /// says done, `done` is disconnected too (module header).
    pub(super) fn err(&self) -> Option<Error> {
        let err = self.reason()?;
        if let Some(done) = self.done.get() {
            // Returns at once unless the canceller is between marking us
            // and dropping the sender: then it parks until the drop.
            let _ = done.recv();
        }
        Some(err)
    }

    /// The reason as marked: lock-free, one atomic load.
    fn reason(&self) -> Option<Error> {
        // Acquire pairs with `cancel`'s Release: the cause is visible too.
        match self.err.load(Ordering::Acquire) {
            LIVE => None,
            CANCELED => Some(Error::Canceled),
            _ => Some(Error::DeadlineExceeded),
        }
    }

    /// The cause given at cancellation, if one was.
    pub(super) fn cause_set(&self) -> Option<Cause> {
        lock(&self.state).cause.clone()
    }

    /// The `done` channel: disconnected once we are cancelled.
    pub(super) fn done(&self) -> &Receiver<()> {
        self.done.get_or_init(|| {
            let (tx, rx) = bounded(0);
            // Kept only while live; else dropped (after unlocking), which
            // closes the channel at once.
            let _closed = {
                let mut s = lock(&self.state);
                match self.reason() {
                    None => s.done_tx.replace(tx),
                    Some(_) => Some(tx),
                }
            };
            rx
        })
    }

    /// Register `child` to be told of the cancellation; its id, or the
    /// child back if we are done already (the caller tells it).
    pub(super) fn register(&self, child: Child) -> Result<u64, Child> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.register_as(id, child).map(|()| id)
    }

    fn register_as(&self, id: u64, child: Child) -> Result<(), Child> {
        let mut s = lock(&self.state);
        if self.reason().is_some() {
            return Err(child);
        }
        s.children.insert(id, child);
        Ok(())
    }

    /// Withdraw a registration; it is returned (to be dropped unlocked) if
    /// the cancellation has not taken it.
    pub(super) fn unregister(&self, id: u64) -> Option<Child> {
        lock(&self.state).children.remove(&id)
    }

    /// Keep `timer` to stop it at cancellation; stopped now if we are done.
    pub(super) fn set_timer(&self, timer: crate::time::AfterFunc) {
        let mut s = lock(&self.state);
        if self.reason().is_none() {
            s.timer = Some(timer);
        } else {
            drop(s);
            timer.stop();
        }
    }

    /// Cancel us and every descendant, in one pass (module header); a
    /// no-op if we are done already. `remove_from_parent`: leave the
    /// parent's map (false when the parent is the one cancelling).
    pub(super) fn cancel(self: &Arc<Self>, remove_from_parent: bool, err: Error, cause: Option<Cause>) {
        let code = match err {
            Error::Canceled => CANCELED,
            Error::DeadlineExceeded => DEADLINE_EXCEEDED,
        };
        let mut work = vec![Arc::clone(self)];
        let mut root = true;
        while let Some(c) = work.pop() {
            let (done_tx, children, timer) = {
                let mut s = lock(&c.state);
                if c.err.load(Ordering::Relaxed) != LIVE {
                    // Done already: the root, by an earlier cancel; a child
                    // taken out of our map, by its own cancel in between.
                    continue;
                }
                s.cause.clone_from(&cause);
                // Release: see `err`.
                c.err.store(code, Ordering::Release);
                (s.done_tx.take(), std::mem::take(&mut s.children), s.timer.take())
            };
            if std::mem::take(&mut root)
                && remove_from_parent
                && let Some(parent) = c.parent.upgrade()
            {
                drop(parent.unregister(c.id));
            }
            drop(done_tx);
            if let Some(t) = timer {
                t.stop();
            }
            for child in children.into_values() {
                match child {
                    Child::Context(cc) => work.push(cc),
                    Child::Func(f) => f.start(),
                    Child::Wake(token) => {
                        if let Some(claim) = WaitToken::claim(token, CTX_DONE) {
                            claim.done();
                        }
                    }
                }
            }
        }
    }
}
