//! Idle Ms and the spinning protocol: `wakep`, `startm`, `stopm`, `newm`,
//! `mstart` (Go's proc.go). The protocol itself is described in
//! `sched/mod.rs`; this file is its mechanics.
//!
//! Ms are created lazily: a runtime starts with no threads, and `wakep`
//! asks for one only when work appears and no idle M can take it, up to
//! `max_threads`; the spawner thread creates it (`spawner.rs`). At the
//! limit the P simply stays idle and a one-time warning says so; the Ms
//! that exist still run every goroutine.

use std::sync::atomic::Ordering;

use super::m::{M, MPtr};
use super::p::PPtr;
use super::{Sched, lock, lock_sched, timers};

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
    /// next M to go idle takes that watch over. Failing that, an M that
    /// sleeps only until someone hands it a P for its own goroutine — one
    /// stopped by a preemption signal, or locked to its thread — gets the P
    /// together with that goroutine, taken out of the global queue: that M
    /// exists already, and a new thread may never come (the preempted
    /// goroutine may hold the allocator's lock that starting a thread needs;
    /// at `max_threads` none can start); the spawner is asked for a thread
    /// all the same, for whatever else waits. Failing both, the P goes idle
    /// and the spawner starts a thread for it (`spawner.rs`). The caller
    /// never creates one itself, so nothing here allocates or waits for a
    /// lock a goroutine may hold.
    fn startm(&self, p: PPtr, spinning: bool) {
        let mut l = lock_sched(&self.lock);
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
        self.runq_to_global(&mut l, &p);
        // Under `Sched::lock`, as in `startlockedm`: after the shutdown flag
        // an owner may have ended its thread.
        if !self.is_shut_down()
            && p.id < self.gomaxprocs()
            && let Some(g) = l.runq.take_first_locked()
        {
            self.runqsize.store(l.runq.len(), Ordering::Relaxed);
            let owner = g.lockedm.get().expect("picked for its lockedm");
            // `owner` sleeps in `stoplockedm` or `sleep_until_handed_p` and
            // reads `nextp` after its note's Acquire.
            owner.get().nextp.set(Some(p));
            owner.get().park.wakeup();
            drop(l);
            // Others may wait — queued, maybe ahead of `g`, or for a due
            // timer of `p`'s — and no M is free for them: ask for one,
            // which the next P to be handed on finds idle (`g` jumped the
            // queue for one turn at most). If the caller wanted a spinning
            // M, that one spins.
            self.request_m(spinning);
            return;
        }
        self.idle_or_retire(&mut l, p);
        drop(l);
        self.request_m(spinning);
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
        let mut l = lock_sched(&self.lock);
        if !l.runq.is_empty() {
            drop(l);
            return self.startm(p, false);
        }
        self.runq_to_global(&mut l, &p);
        self.idle_or_retire(&mut l, p);
        drop(l);
        let next = p.timer0.load(Ordering::SeqCst);
        if next != timers::NO_TIMER {
            self.wake_for_timer(next);
        }
    }

    /// Put `p`, held by nobody and with an empty queue, on the idle list, or
    /// retire it if `set_procs` has made it surplus. `Sched::lock` held.
    fn idle_or_retire(&self, l: &mut super::Locked, p: PPtr) {
        if p.id < self.gomaxprocs() {
            p.set_idle();
            self.pidleput(l, p);
        } else {
            p.set_dead();
        }
    }

    /// An M that sleeps for a P for its own goroutine saw the runtime shut
    /// down: a P handed to it just before (`startlockedm`, `startm`) goes
    /// idle rather than nowhere.
    pub(crate) fn drop_handed_p(&self, m: &M) {
        let mut l = lock_sched(&self.lock);
        if let Some(p) = m.nextp.take() {
            self.runq_to_global(&mut l, &p);
            self.idle_or_retire(&mut l, p);
        }
    }

    /// Park `m` until some `startm` hands it a P (Go's `stopm`). Returns
    /// true holding that P; false if `m` should end its thread instead: the
    /// runtime is shutting down, or nobody needed it for `keep_alive`
    /// (threads made for a burst of blocking calls do not linger).
    pub(crate) fn stopm(&self, m: &M) -> bool {
        debug_assert!(m.p.get().is_none() && !m.spinning.get());
        {
            let mut l = lock_sched(&self.lock);
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
            let mut l = lock_sched(&self.lock);
            if l.midle.remove(MPtr::new(m)) {
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
            let allm = lock_sched(&self.allm);
            {
                let mut l = lock_sched(&self.lock);
                // Release pairs with the Acquire in `is_shut_down`.
                self.shutdown.store(true, Ordering::Release);
                l.midle.clear();
                l.runq.close();
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
        self.wake_spawner();
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
