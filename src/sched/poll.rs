//! The scheduler's side of the network poller (the `netpoll` calls in Go's
//! `findRunnable`, `injectglist`, and `netpollBreak`).
//!
//! Two kinds of M poll (`netpoll/` describes the poller itself):
//!
//! - the runtime's *sleeper* — an M that found no work anywhere while
//!   timers are pending or sockets are registered, and no other M sleeps
//!   for the runtime already (`Locked::sleeper`) — blocks in the poll until the
//!   earliest timer. Without a poller it sleeps on its futex note instead.
//! - an M that runs goroutines back to back polls without blocking at its
//!   periodic global-queue check once nobody has polled for
//!   `netpoll::OVERDUE`, unless the sleeper is blocked in a poll.
//!
//! Unlike Go's `findRunnable`, an M that runs out of work does not poll
//! without blocking before it steals: it goes on to steal and then sleeps,
//! in the poll if it is the sleeper, where a readiness that is already there
//! returns at once. Polling eagerly finds one or two ready sockets per
//! system call on a busy server, and keeps the CPU from the clients whose
//! requests would have made the next poll's batch larger: on the 2-core
//! `tcp_echo` benchmark, where the load generator shares the CPUs, skipping
//! it cut the server's CPU time per round trip by about a tenth (tokio's
//! workers also poll only when parking, or every few dozen tasks).
//!
//! While an M polls it collects the goroutines the poll readies
//! (`M::collecting`) and queues them in one batch: on its own P if it holds
//! one, else on the global queue, and `wakep` starts help for the rest.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::g::GPtr;
use super::m::{M, MPtr};
use super::{Sched, lock, lock_sched, timers};
use crate::netpoll::Poller;

/// The M sleeping for the runtime while every P is idle, until `until`
/// (a `timers::nanotime`, or `timers::NO_TIMER`).
#[derive(Clone, Copy)]
pub(crate) struct Sleeper {
    pub(crate) m: MPtr,
    pub(crate) until: u64,
}

/// How a sleeper's sleep ended.
pub(crate) enum Woke {
    /// It holds a P and should look for work (a timer is due, say).
    WithP,
    /// It holds a P and has this goroutine, made ready by the poll, to run.
    Run(GPtr),
    /// No P was free: it should stop as a plain idle M.
    WithoutP,
}

impl Sched {
    /// This runtime's poller, created on first use (not once the runtime
    /// has begun to shut down: nobody would shut that poller down). Any
    /// thread.
    pub(crate) fn poller(&self) -> io::Result<&Arc<Poller>> {
        if let Some(p) = self.poller.get() {
            return Ok(p);
        }
        let shut_down = lock(&self.poller_init);
        if self.poller.get().is_none() {
            if *shut_down {
                return Err(io::Error::other("the runtime has shut down"));
            }
            let poller = Arc::new(Poller::new(self.me.clone())?);
            let _ = self.poller.set(poller);
            // A sleeper on its futex note would not see socket events: wake
            // it, so that it goes back to sleep in the poll.
            self.wake_sleeper();
        }
        Ok(self.poller.get().expect("just set"))
    }

    /// Poll and return the goroutines that became ready. On g0.
    fn netpoll(&self, m: &M, poller: &Poller, timeout: Option<Duration>) -> Vec<GPtr> {
        m.set_collecting(true);
        poller.poll(timeout);
        m.set_collecting(false);
        m.ready_batch.take()
    }

    /// Queue the goroutines a poll readied (Go's `injectglist`). If `m`
    /// holds a P, the first is returned to run now and the rest go on that
    /// P's queue; otherwise all go on the global queue. On g0.
    fn inject_ready(&self, m: &M, mut ready: Vec<GPtr>) -> Option<GPtr> {
        crate::trace::netpoll(self, m, ready.len());
        let mut first = None;
        if !ready.is_empty() {
            match m.p.get() {
                Some(p) => {
                    let mut gs = ready.drain(..);
                    first = gs.next();
                    for g in gs {
                        self.runqput(&p, g, false);
                    }
                }
                None => {
                    let mut l = lock_sched(&self.lock);
                    l.runq.extend(ready.drain(..));
                    self.runqsize.store(l.runq.len(), Ordering::Relaxed);
                }
            }
            if m.p.get().is_none() || !m.p().runq.is_empty() {
                self.wakep();
            }
        }
        // Keep the buffer's capacity for the next poll.
        m.ready_batch.set(ready);
        first
    }

    /// Poll without blocking if a socket is registered, no M is blocked
    /// polling already and nobody has polled for `netpoll::OVERDUE`: the
    /// check a busy M makes now and then. On g0, holding a P.
    pub(crate) fn poll_network_if_overdue(&self, m: &M) -> Option<GPtr> {
        let poller = self.poller.get()?;
        if !poller.has_sockets() || poller.is_blocked() || !poller.is_overdue(timers::nanotime()) {
            return None;
        }
        let ready = self.netpoll(m, poller, Some(Duration::ZERO));
        self.inject_ready(m, ready)
    }

    /// Whether an idle M should become the sleeper rather than just stop:
    /// a timer is pending or a socket exists that someone may wait for.
    pub(crate) fn needs_sleeper(&self, next_timer: u64) -> bool {
        next_timer != timers::NO_TIMER || self.poller.get().is_some_and(|p| p.has_sockets())
    }

    /// Become the runtime's sleeper (`m` holds no P): block in the poll, or
    /// on the futex note without a poller, until `deadline`, the doorbell,
    /// or a socket event; then try to get a P for what woke us. Returns
    /// `None` if another M already sleeps at least as early (then `m` should
    /// stop as a plain idle M).
    pub(crate) fn sleep_until_work(&self, m: &M, deadline: u64) -> Option<Woke> {
        {
            let mut l = lock_sched(&self.lock);
            if self.is_shut_down() {
                return None;
            }
            if let Some(other) = l.sleeper {
                if other.until > deadline {
                    // Ours is earlier: let the sleeper recompute.
                    drop(l);
                    self.wake_sleeper();
                }
                return None;
            }
            l.sleeper = Some(Sleeper {
                m: MPtr::new(m),
                until: deadline,
            });
            // SeqCst: ordered with the timer starters' heap updates
            // (see `wake_for_timer`).
            self.timer_sleep_until.store(deadline, Ordering::SeqCst);
        }
        let ready = match self.poller.get() {
            Some(poller) => {
                let timeout = (deadline != timers::NO_TIMER)
                    .then(|| timers::instant_of(deadline).saturating_duration_since(Instant::now()));
                self.netpoll(m, poller, timeout)
            }
            None => {
                m.park.sleep_until(timers::instant_of(deadline));
                Vec::new()
            }
        };
        let p = {
            let mut l = lock_sched(&self.lock);
            l.sleeper = None;
            self.timer_sleep_until.store(timers::NO_TIMER, Ordering::SeqCst);
            // `startm` may have handed us a P (and a spinning count) while
            // we slept.
            m.nextp.take().or_else(|| self.pidleget(&mut l))
        };
        // After clearing `sleeper` under the lock no waker can set the note
        // any more (see `wake_sleeper`).
        m.park.clear();
        match p {
            Some(p) => {
                self.acquirep(m, p);
                Some(match self.inject_ready(m, ready) {
                    Some(g) => Woke::Run(g),
                    None => Woke::WithP,
                })
            }
            None => {
                self.inject_ready(m, ready);
                Some(Woke::WithoutP)
            }
        }
    }

    /// Wake the sleeper, if there is one, so that it re-reads the timers
    /// (Go's `wakeNetPoller`). Any thread; `Sched::lock` not held.
    pub(crate) fn wake_sleeper(&self) {
        let l = lock_sched(&self.lock);
        if let Some(s) = l.sleeper {
            self.wake_sleeper_locked(s);
        }
    }

    /// Wake sleeper `s`. `Sched::lock` held, which keeps `s` asleep or
    /// about to clear itself: it cannot have moved on to another sleep.
    pub(crate) fn wake_sleeper_locked(&self, s: Sleeper) {
        match self.poller.get() {
            Some(poller) => {
                poller.wake_blocked();
                // It may still be on its note if it fell asleep before the
                // poller existed.
                s.m.get().park.wakeup();
            }
            None => s.m.get().park.wakeup(),
        }
    }
}
