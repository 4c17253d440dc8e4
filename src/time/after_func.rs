//! `after_func`: run a function on a goroutine of its own once a duration
//! has passed (Go's `time.AfterFunc`).
//!
//! It is one runtime timer (`sched/timers.rs`) whose callback spawns the
//! goroutine: callbacks run on a scheduler thread and must not block, so
//! the function itself never runs there, and a slow or panicking function
//! delays or harms nothing but its own goroutine. Until the timer fires
//! the function is owned by the timer's callback, so `stop` — cancelling
//! the timer — drops it unrun, and says whether it did: exactly one of
//! `stop` and the firing wins (the timer's own state decides).
//!
//! The goroutine is spawned on the runtime current when `after_func` was
//! called, whichever thread runs the callback; if that runtime is gone by
//! then, the function is dropped unrun. `context`'s deadlines are built on
//! this, as Go's are on `time.AfterFunc`.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::sched::Sched;
use crate::sched::timers::{Fire, TimerRef, deadline_after, start_timer_on};

/// Run `f` on its own goroutine once `d` has passed (Go's
/// `time.AfterFunc`), unless [`stop`](AfterFunc::stop)ped first. A zero
/// `d` runs it at once; one past the end of the clock (`Duration::MAX`)
/// never does. Dropping the handle does not stop it.
///
/// ```
/// use std::time::Duration;
/// let (tx, rx) = gort::chan::bounded(1);
/// let _t = gort::time::after_func(Duration::from_millis(1), move || tx.send("fired").unwrap());
/// assert_eq!(rx.recv(), Ok("fired"));
/// ```
pub fn after_func(d: Duration, f: impl FnOnce() + Send + 'static) -> AfterFunc {
    after_func_at(deadline_after(d), f)
}

/// `after_func` at an instant (`None`: never).
pub(crate) fn after_func_at(when: Option<Instant>, f: impl FnOnce() + Send + 'static) -> AfterFunc {
    crate::runtime::with_current(|sched| {
        let runtime = Arc::downgrade(sched);
        let fire = Fire::Call(Box::new(move || go_on(&runtime, f)));
        AfterFunc {
            timer: start_timer_on(sched, when, fire, None),
        }
    })
}

/// Start `f` on a goroutine of its own on `runtime`, if that is still
/// there: for callbacks (timers, cancellations) that must not run user
/// code in place. A spawn that fails (no stack to be had) is reported on
/// stderr and `f` dropped: the caller is a timer or a cancellation, with
/// nobody to hand the error to, and must not panic.
pub(crate) fn go_on(runtime: &Weak<Sched>, f: impl FnOnce() + Send + 'static) {
    let Some(sched) = runtime.upgrade() else { return };
    if let Err(e) = crate::goroutine::spawn_on(&sched, f, None, sched.stack_size()) {
        eprintln!("gort: could not start an after_func goroutine: {e}");
    }
}

/// The handle of an [`after_func`]: stop it before it fires.
pub struct AfterFunc {
    timer: TimerRef,
}

impl AfterFunc {
    /// Keep the function from running; true if this did (it had not
    /// fired), false if it had fired already — its goroutine may be
    /// running — or was stopped before. The function is dropped unrun.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = gort::time::after_func(Duration::from_secs(3600), || unreachable!());
    /// assert!(t.stop());
    /// assert!(!t.stop());
    /// ```
    pub fn stop(&self) -> bool {
        self.timer.cancel()
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("AfterFunc { .. }")
    }
}
