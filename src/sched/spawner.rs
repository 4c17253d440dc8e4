//! Thread creation: the spawner thread, `newm` and `mstart` (Go's `newm`,
//! `mstart`, and its `templateThread`).
//!
//! Starting a thread allocates, in the caller (std's thread packet, the
//! name) and in the new thread (std's start-up records the thread's info,
//! the alternate signal stack). An allocation can wait for a lock of the
//! program's allocator, and a goroutine that a preemption signal stopped
//! inside that allocator holds it until it runs again. So no thread that
//! the runtime needs in order to run that goroutine again may ever start a
//! thread: not sysmon (it queues preempted goroutines), not an M holding a
//! runtime lock or a P it is about to hand over, not the preemption hook.
//! They ask instead (`request_m`), and this runtime's spawner thread —
//! which holds nothing and which nobody waits for — starts the thread. If
//! the spawner waits for the allocator meanwhile, only the new thread is
//! late; the preempted goroutine's own M gets a P without it (`startm`).
//!
//! A new M takes an idle P when it comes up, not one reserved for it: a P
//! that waits for a thread that cannot start stays free for an M that can
//! use it now. The spinning count travels with the request: `startm(_,
//! true)` counted the M it wanted in `nmspinning`, and the M created for
//! the request takes that count over (`spawn_spinning`), or drops it if it
//! finds no P, or the spawner does if the thread cannot be started.
//!
//! The spawner and sysmon start at the first request, made when the first
//! goroutine appears; no goroutine runs before that, so that one request
//! may start them itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use super::m::{M, MPtr, set_current_m};
use super::{Sched, lock, lock_sched, push_growing_unlocked, sysmon};
use crate::stack::AltStack;

/// The body of one of a runtime's helper threads (sysmon, the spawner).
type HelperBody = fn(Weak<Sched>);

/// Requests for new Ms, shared by the requesters and the spawner thread.
pub(crate) struct Spawns {
    /// Threads asked for and not yet started (or refused).
    requested: AtomicUsize,
    /// Of those, how many carry a count in `nmspinning`.
    spinning: AtomicUsize,
    /// The spawner sleeps on this.
    note: crate::os::Note,
}

impl Spawns {
    pub(crate) fn new() -> Spawns {
        Spawns {
            requested: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            note: crate::os::Note::new(),
        }
    }
}

impl Sched {
    /// Ask for a new M (module header). `spinning`: the caller counted it
    /// in `nmspinning`. Any thread; allocates nothing once the runtime's
    /// helper threads run.
    pub(super) fn request_m(&self, spinning: bool) {
        if self.is_shut_down() {
            if spinning {
                self.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        }
        self.start_helper_threads();
        // At most `procs` threads pending: while the spawner waits (for the
        // allocator a preempted goroutine holds, say), requests would pile
        // up and start a crowd of threads later; those pending already
        // take every idle P there is when they come up.
        if self.spawns.requested.load(Ordering::SeqCst) >= self.gomaxprocs() {
            if spinning {
                self.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
            self.spawns.note.wakeup();
            return;
        }
        if spinning {
            self.spawns.spinning.fetch_add(1, Ordering::SeqCst);
        }
        self.spawns.requested.fetch_add(1, Ordering::SeqCst);
        self.spawns.note.wakeup();
    }

    /// Let the spawner see the shutdown.
    pub(super) fn wake_spawner(&self) {
        self.spawns.note.wakeup();
    }

    /// Start sysmon and the spawner, once.
    pub(crate) fn start_helper_threads(&self) {
        self.helpers_started.call_once(|| {
            for (what, body) in [("sysmon", sysmon::run as HelperBody), ("spawner", run)] {
                let watched = self.me.clone();
                match std::thread::Builder::new()
                    .name(format!("{}-{what}", self.name))
                    .spawn(move || body(watched))
                {
                    Ok(handle) => push_growing_unlocked(&self.threads, handle),
                    Err(e) => {
                        crate::os::write_stderr(&format!("gort: runtime '{}' runs without {what}: {e}\n", self.name))
                    }
                }
            }
        });
    }

    /// Take one spinning count of a request, if it carried one.
    fn take_spinning_request(&self) -> bool {
        self.spawns
            .spinning
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Start one M thread (Go's `newm`), on the spawner; at the thread
    /// limit, or if the OS refuses, drop the request and warn once.
    fn newm(&self) {
        let sched = self.me.upgrade().expect("runtime is alive while it starts threads");
        let live = self.mcount.fetch_add(1, Ordering::Relaxed);
        let spawned = if live < self.max_threads {
            let id = self.mnext.fetch_add(1, Ordering::Relaxed);
            std::thread::Builder::new()
                .name(format!("{}-m{id}", self.name))
                .spawn(move || mstart(sched, id))
                .map_err(|e| e.to_string())
        } else {
            Err(format!("max_threads ({}) reached", self.max_threads))
        };
        match spawned {
            Ok(handle) => self.keep_thread(handle),
            Err(why) => {
                self.mcount.fetch_sub(1, Ordering::Relaxed);
                if self.take_spinning_request() {
                    self.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                let (first, idle_m) = {
                    let mut l = lock_sched(&self.lock);
                    (
                        !std::mem::replace(&mut l.thread_limit_warned, true),
                        !l.midle.is_empty(),
                    )
                };
                if idle_m {
                    // An M went idle after the request's `startm` found
                    // none (between giving its P back and parking): it can
                    // run what the thread was asked for, on an idle P.
                    self.wakep();
                }
                if first {
                    crate::os::write_stderr(&format!(
                        "gort: runtime '{}' cannot start another thread ({why}); running on the threads it has\n",
                        self.name
                    ));
                }
            }
        }
    }

    /// Keep the handle of a new M's thread for `join_threads`, and join the
    /// threads that have ended meanwhile (Ms that idled out): until it is
    /// joined, an ended thread keeps its whole stack mapped. In one hold of
    /// the lock, so that `join_threads` never finds the list empty while
    /// threads run (`threads` is not a scheduler lock: this may allocate).
    fn keep_thread(&self, handle: JoinHandle<()>) {
        let ended: Vec<JoinHandle<()>> = {
            let mut threads = lock(&self.threads);
            let (ended, running) = std::mem::take(&mut *threads)
                .into_iter()
                .partition(JoinHandle::is_finished);
            *threads = running;
            threads.push(handle);
            ended
        };
        // Each has returned from `mstart`: joining waits for its exit only.
        for h in ended {
            let _ = h.join();
        }
    }
}

/// Body of the spawner thread of runtime `sched`: start the Ms asked for,
/// until the runtime shuts down.
fn run(sched: Weak<Sched>) {
    if let Some(s) = sched.upgrade() {
        s.spawner_tid.store(crate::os::gettid(), Ordering::Relaxed);
    }
    loop {
        let Some(s) = sched.upgrade() else { return };
        s.spawns.note.sleep();
        s.spawns.note.clear();
        while !s.is_shut_down()
            && s.spawns
                .requested
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            s.newm();
        }
        if s.is_shut_down() {
            return;
        }
    }
}

/// Body of every M thread (Go's `mstart`): set up the thread, take an idle
/// P, and run the scheduler until the runtime shuts down.
fn mstart(sched: Arc<Sched>, id: u64) {
    // Without an alternate signal stack a stack-overflow fault could not be
    // reported (the faulting stack is the guard page); if the kernel refuses
    // one, std's default behaviour (a crash) is lost, and preemption
    // signals take this thread's goroutines off their P instead of
    // stopping them (`preempt.rs`).
    let _altstack = AltStack::install().ok();
    let m = M::new(id, Arc::clone(&sched));
    push_growing_unlocked(&sched.allm, MPtr::new(&m));
    set_current_m(Some(&m));
    let spinning = sched.take_spinning_request();
    let has_p = match sched.lock_pidleget() {
        Some(p) => {
            sched.acquirep(&m, p);
            m.spinning.set(spinning);
            true
        }
        None => {
            // Taken meanwhile by an M that could use it at once.
            if spinning {
                sched.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
            sched.stopm(&m)
        }
    };
    let left = if has_p { sched.schedule(&m) } else { None };
    set_current_m(None);
    // Leave `allm` before `m` dies (sysmon reads Ms under that lock).
    lock_sched(&sched.allm).retain(|other| *other != MPtr::new(&m));
    sched.mcount.fetch_sub(1, Ordering::Relaxed);
    // The P of a locked goroutine that exited goes on only now that this
    // thread no longer counts: at `max_threads`, the thread it may need is
    // the one this one leaves room for.
    if let Some(p) = left {
        sched.handoffp(p);
    }
}
