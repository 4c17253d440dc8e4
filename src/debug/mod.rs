//! Diagnosing a running program: goroutine dumps (`dump.rs`, their stacks
//! in `stacks.rs`), the deadlock check sysmon runs (`deadlock.rs`, with the
//! plain-thread bookkeeping it needs in `threads.rs`), leak checks for
//! tests (`leaks.rs`) and the SIGQUIT dump (`sigquit.rs`).
//!
//! A registry of live runtimes lets process-wide requests (SIGQUIT) reach
//! every runtime; the `runtime::` functions act on one runtime each.

mod deadlock;
mod dump;
mod leaks;
mod sigquit;
mod stacks;
pub(crate) mod threads;

use std::sync::{Arc, Mutex, PoisonError, Weak};

pub(crate) use deadlock::DeadlockWatch;
pub use dump::{Frame, GoroutineInfo, GoroutineState};
pub use leaks::Leaks;
pub(crate) use sigquit::install as install_sigquit;

use crate::sched::Sched;

static RUNTIMES: Mutex<Vec<Weak<Sched>>> = Mutex::new(Vec::new());

/// Make a new runtime reachable by process-wide dumps.
pub(crate) fn register(sched: &Arc<Sched>) {
    let mut all = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|s| s.strong_count() > 0);
    all.push(Arc::downgrade(sched));
}

/// Every runtime still alive, oldest first.
pub(crate) fn live_runtimes() -> Vec<Arc<Sched>> {
    let all = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter().filter_map(Weak::upgrade).collect()
}
