//! Idle Ms and the spinning protocol: `wakep`, `startm`, `stopm`, `newm`,
//! `mstart` (Go's proc.go). The protocol itself is described in
//! `sched/mod.rs`; this file is its mechanics.
//!
//! Ms are created lazily: a runtime starts with no threads, and `wakep`
//! creates one only when work appears and no idle M can take it, up to
//! `max_threads`. At the limit the P simply stays idle and a one-time
//! warning says so; the Ms that exist still run every goroutine.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::m::{M, MPtr, set_current_m};
use super::p::PPtr;
use super::{Sched, lock, sysmon, timers};
use crate::stack::AltStack;

impl Sched {
    /// Make sure some M will look for the work just published: if no M is
    /// spinning and a P is idle, start a spinning M on it (Go's `wakep`).
    /// Any thread.
    pub(crate) fn wakep(&self) {
        // SeqCst: the publisher's store (a run queue push) comes before this
        // load in the single total order, pairing with the spinner's
        // decrement-then-recheck in `find_runnable` (sched/mod.rs).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.npidle.load(Ordering::SeqCst) == 0 || self.nmspinning.load(Ordering::SeqCst) != 0 {
            return;
        }
        if self
            .nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        match self.lock_pidleget() {
            Some(p) => self.startm(p, true),
            None => {
                self.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Run P `p` on an idle M, or on a new one (Go's `startm`). `spinning`
    /// says the caller already counted the M in `nmspinning`.
    ///
    /// With no idle M, the sleeper (`poll.rs`) gets the P before a thread is
    /// created: it is idle too, only watching timers and sockets, and the
    /// next M to go idle takes that watch over.
    fn startm(&self, p: PPtr, spinning: bool) {
        let mut l = lock(&self.lock);
        if let Some(m) = l.midle.pop() {
            drop(l);
            let m = m.get();
            m.nextp.set(Some(p));
            m.spinning.set(spinning);
            m.park.wakeup();
            return;
        }
        if let Some(s) = l.sleeper
            && s.m.get().nextp.get().is_none()
        {
            // Written under the lock the sleeper re-takes before it reads
            // them (`sleep_until_work`).
            s.m.get().nextp.set(Some(p));
            s.m.get().spinning.set(spinning);
            self.wake_sleeper_locked(s);
            return;
        }
        drop(l);
        self.newm(p, spinning);
    }

    /// Start a thread for P `p` (Go's `newm`); at the thread limit, or if
    /// the OS refuses, give the P back and warn once.
    fn newm(&self, p: PPtr, spinning: bool) {
        let sched = self.me.upgrade().expect("runtime is alive while it starts threads");
        self.sysmon_started.call_once(|| {
            let watched = self.me.clone();
            match std::thread::Builder::new()
                .name(format!("{}-sysmon", self.name))
                .spawn(move || sysmon::run(watched))
            {
                Ok(handle) => lock(&self.threads).push(handle),
                Err(e) => crate::os::write_stderr(&format!("gort: runtime '{}' runs without sysmon: {e}\n", self.name)),
            }
        });
        let live = self.mcount.fetch_add(1, Ordering::Relaxed);
        let spawned = if live < self.max_threads {
            let id = self.mnext.fetch_add(1, Ordering::Relaxed);
            std::thread::Builder::new()
                .name(format!("{}-m{id}", self.name))
                .spawn(move || mstart(sched, id, p, spinning))
                .map_err(|e| e.to_string())
        } else {
            Err(format!("max_threads ({}) reached", self.max_threads))
        };
        match spawned {
            Ok(handle) => self.keep_thread(handle),
            Err(why) => {
                self.mcount.fetch_sub(1, Ordering::Relaxed);
                let mut l = lock(&self.lock);
                // A P handed off with goroutines queued (`handoffp`) goes
                // idle without them: they wait in the global queue, where
                // the running Ms and sysmon look.
                self.runq_to_global(&mut l, &p);
                if p.id < self.gomaxprocs() {
                    self.pidleput(&mut l, p);
                } else {
                    p.set_dead();
                }
                if spinning {
                    self.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                if !std::mem::replace(&mut l.thread_limit_warned, true) {
                    // Maybe on g0, under `Sched::lock`: not through std's
                    // stderr lock (`os::write_stderr`).
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
    /// joined, an ended thread keeps its whole stack mapped.
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

    /// Give away P `p`, which its M no longer uses (it blocks, or it was
    /// retaken from a system call): to an M that will run its work if there
    /// is any, else to the idle list (Go's `handoffp`). Any thread; `p` is
    /// held by nobody.
    pub(crate) fn handoffp(&self, p: PPtr) {
        if !p.runq.is_empty() || self.runqsize.load(Ordering::Relaxed) > 0 {
            return self.startm(p, false);
        }
        // Nobody is looking for work: start a spinning M so that work
        // arriving later is found.
        if self.nmspinning.load(Ordering::SeqCst) + self.npidle.load(Ordering::SeqCst) == 0
            && self
                .nmspinning
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return self.startm(p, true);
        }
        let mut l = lock(&self.lock);
        if !l.runq.is_empty() {
            drop(l);
            return self.startm(p, false);
        }
        if p.id < self.gomaxprocs() {
            p.set_idle();
            self.pidleput(&mut l, p);
        } else {
            self.runq_to_global(&mut l, &p);
            p.set_dead();
        }
        drop(l);
        let next = p.timer0.load(Ordering::SeqCst);
        if next != timers::NO_TIMER {
            self.wake_for_timer(next);
        }
    }

    /// Park `m` until some `startm` hands it a P (Go's `stopm`). Returns
    /// true holding that P; false if `m` should end its thread instead: the
    /// runtime is shutting down, or nobody needed it for `keep_alive`
    /// (threads made for a burst of blocking calls do not linger).
    pub(crate) fn stopm(&self, m: &M) -> bool {
        debug_assert!(m.p.get().is_none() && !m.spinning.get());
        {
            let mut l = lock(&self.lock);
            if self.is_shut_down() {
                return false;
            }
            l.midle.push(MPtr::new(m));
        }
        let woken = match timers::deadline_after(self.keep_alive) {
            Some(deadline) => m.park.sleep_until(deadline),
            None => {
                m.park.sleep();
                true
            }
        };
        if !woken {
            let mut l = lock(&self.lock);
            if let Some(at) = l.midle.iter().position(|&idle| idle == MPtr::new(m)) {
                l.midle.swap_remove(at);
                return false;
            }
            // Taken off the list just now: that waker's wake-up is coming.
            drop(l);
            m.park.sleep();
        }
        m.park.clear();
        match m.nextp.take() {
            Some(p) => {
                self.acquirep(m, p);
                true
            }
            None => false,
        }
    }

    /// Stop accepting work and wake every idle M so that all threads exit.
    pub(crate) fn begin_shutdown(&self) {
        {
            // Under `poller_init`: either the poller exists now and is shut
            // down here, or it is never created.
            let mut shut_down = lock(&self.poller_init);
            *shut_down = true;
            if let Some(poller) = self.poller.get() {
                poller.shut_down();
            }
        }
        {
            // Under `allm` too, which sysmon holds through each cycle: a
            // cycle that queues a preempted goroutine ends before the flag
            // is up, and the goroutine, which sees the flag and runs on
            // without a P, is not queued by sysmon afterwards.
            let allm = lock(&self.allm);
            {
                let mut l = lock(&self.lock);
                // Release pairs with the Acquire in `is_shut_down`.
                self.shutdown.store(true, Ordering::Release);
                l.midle.clear();
                if let Some(s) = l.sleeper {
                    self.wake_sleeper_locked(s);
                }
            }
            // Every M, not just the idle ones: Ms sleeping for their locked
            // or preempted goroutine must notice too.
            for m in allm.iter() {
                m.get().park.wakeup();
            }
        }
        self.wake_sysmon();
    }

    /// Wait for every M thread to exit. Not from one of them.
    pub(crate) fn join_threads(&self) {
        loop {
            let handles = std::mem::take(&mut *lock(&self.threads));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

/// Body of every M thread (Go's `mstart`): set up the thread, take P `p`,
/// and run the scheduler until the runtime shuts down.
fn mstart(sched: Arc<Sched>, id: u64, p: PPtr, spinning: bool) {
    // Without an alternate signal stack a stack-overflow fault could not be
    // reported (the faulting stack is the guard page); if the kernel refuses
    // one, std's default behaviour (a crash) is lost, and preemption
    // signals take this thread's goroutines off their P instead of
    // stopping them (`preempt.rs`).
    let _altstack = AltStack::install().ok();
    let m = M::new(id, Arc::clone(&sched));
    lock(&sched.allm).push(MPtr::new(&m));
    sched.acquirep(&m, p);
    m.spinning.set(spinning);
    set_current_m(Some(&m));
    sched.schedule(&m);
    set_current_m(None);
    // Leave `allm` before `m` dies (sysmon reads Ms under that lock).
    lock(&sched.allm).retain(|other| *other != MPtr::new(&m));
    sched.mcount.fetch_sub(1, Ordering::Relaxed);
}
