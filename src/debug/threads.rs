//! Threads outside the runtime, as the deadlock check (`deadlock.rs`) sees
//! them.
//!
//! A goroutine parked on a channel can be woken by a plain OS thread that
//! holds the other end, and gort cannot see which thread holds what. So the
//! check reasons about threads instead of handles: every thread of the
//! process (`/proc/self/task`) is either one of the runtime's own (its Ms
//! and sysmon, which are accounted for by the goroutines they run), asleep
//! in an untimed gort wait (a `join`, a channel receive from `main`: it
//! cannot wake anyone before someone wakes it), or a potential waker — and
//! one potential waker is enough to call the situation "not a deadlock".
//!
//! One thread is presumed not to be a waker until it uses gort: the
//! process's main thread. Under a test harness it only waits for the test
//! threads, so counting it would silence the check in every test. Any
//! other thread that never used gort may have received a handle (through
//! a std channel, say) and be about to use it, so it counts — even if it
//! is older than the runtime. The residue: a main thread that gets a
//! handle that way without having touched gort before can still be
//! mistaken for a bystander. Threads that use gort from outside (build a
//! runtime, spawn into one, wait in one) are recorded here.
//!
//! Both sets are process-wide and small (plain threads that use gort), and
//! are touched only on the slow paths of thread waits, never by goroutines.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::os::current_tid;

#[derive(Default)]
struct Registry {
    /// Plain threads that used gort.
    users: HashSet<libc::pid_t>,
    /// Plain threads in an untimed wait, with the wait's nesting depth.
    asleep: HashMap<libc::pid_t, usize>,
    /// gort's own threads that belong to no runtime (the SIGQUIT dumper,
    /// the trace writer).
    helpers: HashSet<libc::pid_t>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Record that the calling plain thread uses gort.
pub(crate) fn note_user() {
    registry().users.insert(current_tid());
}

/// The calling thread is one of gort's helpers, never a waker, while this
/// lives. Dropped when the thread ends: the kernel reuses thread ids, and a
/// later plain thread with this one's id may well be a waker.
pub(crate) struct Helper {
    tid: libc::pid_t,
}

impl Helper {
    pub(crate) fn enter() -> Helper {
        let tid = current_tid();
        registry().helpers.insert(tid);
        Helper { tid }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        registry().helpers.remove(&self.tid);
    }
}

/// The calling plain thread is in an untimed gort wait while this lives.
pub(crate) struct Asleep {
    tid: libc::pid_t,
}

impl Asleep {
    pub(crate) fn enter() -> Asleep {
        let tid = current_tid();
        let mut r = registry();
        r.users.insert(tid);
        *r.asleep.entry(tid).or_default() += 1;
        Asleep { tid }
    }
}

impl Drop for Asleep {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(depth) = r.asleep.get_mut(&self.tid) {
            *depth -= 1;
            if *depth == 0 {
                r.asleep.remove(&self.tid);
            }
        }
    }
}

/// Whether some thread other than `own` (the runtimes' threads) may wake
/// a goroutine: it is not asleep in a gort wait, and it is not the main
/// thread, unless the main thread used gort. Unreadable `/proc` counts as
/// "maybe".
pub(crate) fn outside_waker_exists(own: &HashSet<libc::pid_t>) -> bool {
    let Ok(tids) = crate::os::process_threads() else {
        return true;
    };
    // SAFETY: getpid has no preconditions; the main thread's id is the pid.
    let main = unsafe { libc::getpid() };
    let r = registry();
    tids.into_iter().any(|tid| {
        let known = own.contains(&tid) || r.helpers.contains(&tid) || r.asleep.contains_key(&tid);
        !known && (tid != main || r.users.contains(&tid))
    })
}
