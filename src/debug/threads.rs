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
//! A thread is asleep only until it is woken, not until it runs again: the
//! registry keeps each sleeper's wake-up note, and a sleeper whose note is
//! set counts as a waker. So the waker's own act of waking — the note's
//! swap, nothing added to it — ends the sleeper's "asleep" at the moment
//! of the wake, and the check never sees a woken thread as asleep however
//! long the OS takes to run it (the rule in `deadlock.rs`). Removing the
//! entry is left to the sleeper, once it has woken; until then the set
//! note speaks for it. The note is set only by a wake-up: every registered
//! waiter is woken exactly once and re-arms its note (`clear`) only after
//! its entry is gone, so an entry with an unset note is a thread nobody
//! has woken yet.
//!
//! Both sets are process-wide and small (plain threads that use gort), and
//! are touched only on the slow paths of thread waits, never by goroutines.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::os::{Note, current_tid};

#[derive(Default)]
struct Registry {
    /// Plain threads that used gort.
    users: HashSet<libc::pid_t>,
    /// Plain threads in an untimed wait, with the wait's nesting depth and
    /// the note that wakes it (asleep only while that is unset).
    asleep: HashMap<libc::pid_t, (usize, Arc<Note>)>,
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

/// The calling plain thread is in an untimed gort wait, which `note` ends,
/// while this lives — and asleep while `note` is also unset (module header).
pub(crate) struct Asleep {
    tid: libc::pid_t,
}

impl Asleep {
    /// Enter before sleeping on `note`, after its last `clear`.
    pub(crate) fn enter(note: &Arc<Note>) -> Asleep {
        let tid = current_tid();
        let mut r = registry();
        r.users.insert(tid);
        r.asleep.entry(tid).or_insert_with(|| (0, Arc::clone(note))).0 += 1;
        Asleep { tid }
    }
}

impl Drop for Asleep {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some((depth, _)) = r.asleep.get_mut(&self.tid) {
            *depth -= 1;
            if *depth == 0 {
                r.asleep.remove(&self.tid);
            }
        }
    }
}

/// Whether some thread other than `own` (the runtimes' threads) may wake
/// a goroutine: it is not asleep in a gort wait (or is, but has been woken
/// already), and it is not the main thread, unless the main thread used
/// gort. Unreadable `/proc` counts as "maybe".
pub(crate) fn outside_waker_exists(own: &HashSet<libc::pid_t>) -> bool {
    let Ok(tids) = crate::os::process_threads() else {
        return true;
    };
    // SAFETY: getpid has no preconditions; the main thread's id is the pid.
    let main = unsafe { libc::getpid() };
    let r = registry();
    tids.into_iter().any(|tid| {
        // Read under the registry lock, which the sleeper needs to leave
        // its entry and leaves before it re-arms (`clear`) the note: a set
        // note is a wake-up of this very wait.
        let asleep = r.asleep.get(&tid).is_some_and(|(_, note)| !note.is_set());
        let known = own.contains(&tid) || r.helpers.contains(&tid) || asleep;
        !known && (tid != main || r.users.contains(&tid))
    })
}
