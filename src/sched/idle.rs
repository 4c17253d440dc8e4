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

use super::m::{M, MPtr, set_current_m};
use super::p::PPtr;
use super::{Sched, lock};
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
    fn startm(&self, p: PPtr, spinning: bool) {
        let idle = lock(&self.lock).midle.pop();
        match idle {
            Some(m) => {
                let m = m.get();
                m.nextp.set(Some(p));
                m.spinning.set(spinning);
                m.park.wakeup();
            }
            None => self.newm(p, spinning),
        }
    }

    /// Start a thread for P `p` (Go's `newm`); at the thread limit, or if
    /// the OS refuses, give the P back and warn once.
    fn newm(&self, p: PPtr, spinning: bool) {
        let sched = self.me.upgrade().expect("runtime is alive while it starts threads");
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
            Ok(handle) => lock(&self.threads).push(handle),
            Err(why) => {
                self.mcount.fetch_sub(1, Ordering::Relaxed);
                let mut l = lock(&self.lock);
                self.pidleput(&mut l, p);
                if spinning {
                    self.nmspinning.fetch_sub(1, Ordering::SeqCst);
                }
                if !std::mem::replace(&mut l.thread_limit_warned, true) {
                    eprintln!(
                        "gort: runtime '{}' cannot start another thread ({why}); running on the threads it has",
                        self.name
                    );
                }
            }
        }
    }

    /// Park `m` until some `startm` hands it a P (Go's `stopm`). On return
    /// `m` holds that P, or none if the runtime is shutting down.
    pub(crate) fn stopm(&self, m: &M) {
        debug_assert!(m.p.get().is_none() && !m.spinning.get());
        {
            let mut l = lock(&self.lock);
            if self.is_shut_down() {
                return;
            }
            l.midle.push(MPtr::new(m));
        }
        m.park.sleep();
        m.park.clear();
        if let Some(p) = m.nextp.take() {
            self.acquirep(m, p);
        }
    }

    /// Stop accepting work and wake every idle M so that all threads exit.
    pub(crate) fn begin_shutdown(&self) {
        if let Some(poller) = self.poller.get() {
            poller.shut_down();
        }
        let mut l = lock(&self.lock);
        // Release pairs with the Acquire in `is_shut_down`.
        self.shutdown.store(true, Ordering::Release);
        for m in std::mem::take(&mut l.midle) {
            m.get().park.wakeup();
        }
        if let Some(s) = l.sleeper {
            self.wake_sleeper_locked(s);
        }
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
    // one, std's default behaviour (a crash) is all we lose.
    let _altstack = AltStack::install().ok();
    let m = M::new(id, Arc::clone(&sched));
    sched.acquirep(&m, p);
    m.spinning.set(spinning);
    set_current_m(Some(&m));
    sched.schedule(&m);
    set_current_m(None);
    sched.mcount.fetch_sub(1, Ordering::Relaxed);
}
