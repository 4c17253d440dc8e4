//! sysmon: the runtime's watchdog thread (Go's `sysmon` and `retake` in
//! proc.go).
//!
//! A plain thread — not an M, it holds no P and runs no goroutine — that
//! wakes periodically and looks at every P:
//!
//! - a P in a system call (`Syscall`, `syscall.rs`) for more than
//!   `SYSCALL_RETAKE` while there is other work (or for more than
//!   `SYSCALL_RETAKE_IDLE` in any case) is retaken and handed to another M;
//! - a P whose goroutine has run past `BLOCKED_AFTER` without a scheduling
//!   tick is a suspect: if its thread is asleep in the kernel
//!   (`/proc/self/task/<tid>/stat`), the thread is asked by signal to put
//!   its P in the system-call state, and the next cycle retakes it. A
//!   running suspect is probed again only after twice as long, so a
//!   computing goroutine costs a handful of 3.5 µs probes per slice;
//! - a P whose goroutine has run longer than the preempt slice while other
//!   goroutines wait (its run queue, the global queue, a due timer) gets
//!   its `preempt` flag and a SIGURG (`preempt.rs`);
//! - a P that `set_procs` retired while an M held it is taken from it at
//!   once, as above (its goroutine preempted, its system call's P
//!   retaken), so that what is queued there moves to the other Ps;
//! - an M that lost its P in a system call and is computing again for
//!   longer than a slice is preempted, so it waits for a P like everyone
//!   — unless the call is an annotated one (`gort::blocking`, the M's
//!   `in_blocking`): inside it the goroutine has given its P up and runs
//!   like any thread, and no signal of gort's may reach it (`syscall.rs`:
//!   it would cost the call `EINTR`). Only a goroutine that lost its P in
//!   a call sysmon detected, or where a signal could not stop it (a
//!   shared library, the bottom of its stack), is asked so;
//! - the network is polled if nobody has for `netpoll::OVERDUE`;
//! - due timers of Ps that `set_procs` retired are run;
//! - under chaos (`chaos.rs`), a goroutine that has run a little while may
//!   be asked to stop, or signalled, long before its slice ends;
//! - when no P is busy, the deadlock check runs (`debug/deadlock.rs`);
//! - signals caught for `gort::signal::notify` are sent to their channels
//!   (`signal.rs`; the handler wakes the default runtime's sysmon).
//!
//! Each cycle also stores the time in `Sched::coarse_now`, the clock parks
//! stamp goroutines with for dumps (a load instead of a clock read per park).
//!
//! Pacing (Go's): 20 µs between cycles while it finds work to do; after 50
//! quiet cycles the delay doubles, up to 10 ms; and it wakes exactly when
//! the oldest running slice ends, so a goroutine that will not yield is
//! asked when its slice is over (and signalled 20 µs later if it has not
//! yielded: a request is an action, which resets the delay), but never
//! while its last signal to that thread is still on its way. An M that
//! computes without a P and keeps refusing signals because it is inside a
//! shared library is signalled at doubling gaps instead, up to one a slice
//! (`preempt.rs`).
//!
//! Watchful and dozing. While a P is in a system call, and for
//! `WATCH_AFTER_SYSCALL` after one was, sysmon is *watchful*: at most an
//! eighth of the slice between cycles, since a program that makes calls
//! that block is likely to make more, and each must lose its P soon.
//! Otherwise it *dozes* up to the 10 ms maximum even while goroutines run:
//! watchful, a busy server's sysmon woke some 800 times a second, each time
//! taking a CPU from the threads doing the work and finding nothing to do
//! (on the 2-core `tcp_echo`, where the kernel's time-slicing between the
//! server and the load generator holds a P's tick still for a millisecond
//! at a time, it also read `/proc` on half of those cycles: 1.6% of a CPU
//! in all). What dozing would delay is covered otherwise:
//!
//! - an annotated call: the goroutine entering it wakes a dozing sysmon
//!   (`nudge_sysmon`; Go's `entersyscall` wakes a sysmon asleep for good),
//!   which resets its delay and retakes the P within a few cycles;
//! - an un-annotated call: a dozing sysmon probes the thread of every P it
//!   sees in a new slice, and looks again `BLOCKED_AFTER` later if that
//!   thread is asleep, which the usual probe then judges; so a blocked
//!   thread is found within one 10 ms cycle and a bit, or two if the first
//!   look finds it still awake (docs/benchmarks.md's `detect_latency` numbers).
//!
//! With `GORTDEBUG=schedtrace=MS` it also prints Go's `SCHED` lines every
//! MS milliseconds (`trace.rs`).
//!
//! Thread limit: preempting a goroutine that holds a P may need a new M for
//! that P. At `max_threads` with no idle M, sysmon skips the preemption and
//! warns once; the program keeps running on the threads it has.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chaos::{ChaosRng, SYSMON_STREAM};
use super::m::M;
use super::p::PStatus;
use super::preempt::{REQUEST_PREEMPT, REQUEST_SYSCALL, signal, signal_pending};
use super::timers::{nanotime, saturating_nanos};
use super::{Sched, lock_sched};
use crate::debug::DeadlockWatch;

const MIN_DELAY: Duration = Duration::from_micros(20);
const MAX_DELAY: Duration = Duration::from_millis(10);
/// Quiet cycles before the delay starts doubling.
const QUIET_CYCLES: u32 = 50;
/// A P in a system call this long is retaken if others need it (Go: 20 µs).
const SYSCALL_RETAKE: u64 = 20_000;
/// ... and this long, whether or not anyone does (Go: 10 ms).
const SYSCALL_RETAKE_IDLE: u64 = 10_000_000;
/// A goroutine that has run this long without a tick is probed for being
/// blocked in the kernel.
const BLOCKED_AFTER: u64 = 100_000;
/// sysmon stays watchful this long after it last saw a P in a system call.
const WATCH_AFTER_SYSCALL: u64 = 100_000_000;
/// Enough doublings of `MIN_DELAY` to pass any slice (`signal_paced`).
const MAX_BACKOFF_DOUBLINGS: u32 = 20;

/// How sysmon spaces the preemption signals it sends one M (`preempt.rs`);
/// kept in the M (`M::signal_pace`), so that a cycle allocates nothing.
#[derive(Default, Clone, Copy)]
pub(crate) struct SignalPace {
    /// The M's `syscall_since` when the pace began: a new system call
    /// starts a new pace.
    since: u64,
    /// No signal before this time.
    next_at: u64,
}

/// What sysmon remembers of one P between cycles.
#[derive(Default, Clone)]
struct PWatch {
    tick: u32,
    status: Option<PStatus>,
    /// When `tick` or `status` last changed.
    since: u64,
    /// Run time at which the running goroutine's thread is probed next.
    probe_at: u64,
}

struct Sysmon {
    /// Sized for `MAX_PROCS` up front: a cycle allocates nothing (module
    /// header).
    ps: Vec<PWatch>,
    delay: Duration,
    quiet: u32,
    /// When sysmon must look next: the first running goroutine's slice
    /// ends, a retired P's timer is due, or a thread found asleep in a new
    /// slice is to be judged (`u64::MAX`: none of these).
    next_due: u64,
    /// Sleeping longer than the watchful delay (module header).
    dozing: bool,
    /// Watchful until then (`nanotime`), after a system call.
    watch_until: u64,
    deadlock: DeadlockWatch,
    /// Early preemptions under chaos (`chaos.rs`).
    chaos: ChaosRng,
}

/// Body of the sysmon thread of runtime `sched`; returns when it shuts down.
pub(crate) fn run(sched: Weak<Sched>) {
    let started = Instant::now();
    let mut next_trace = started;
    let mut state = Sysmon {
        ps: Vec::with_capacity(super::MAX_PROCS),
        delay: MIN_DELAY,
        quiet: 0,
        next_due: u64::MAX,
        dozing: false,
        watch_until: 0,
        deadlock: DeadlockWatch::default(),
        chaos: ChaosRng::new(sched.upgrade().and_then(|s| s.chaos), SYSMON_STREAM),
    };
    if let Some(sched) = sched.upgrade() {
        sched.sysmon_tid.store(crate::os::gettid(), Ordering::Relaxed);
    }
    loop {
        let Some(sched) = sched.upgrade() else { return };
        sched.sysmon_note.sleep_until(Instant::now() + state.delay);
        sched.sysmon_note.clear();
        if sched.is_shut_down() {
            return;
        }
        // Dozing, we left the flag up for `nudge_sysmon`; down means a
        // goroutine entered a system call and woke us.
        let nudged = state.dozing && !sched.sysmon_dozing.load(Ordering::Relaxed);
        // Up before the cycle reads the Ps' states (the fence pairs with
        // the SeqCst status store and flag load in `nudge_sysmon`'s
        // caller): a goroutine that enters a system call after this cycle
        // looked at its P sees the flag and wakes us if we go on to doze.
        sched.sysmon_dozing.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        let Some(cycle) = sched.sysmon_cycle(&mut state) else {
            return;
        };
        crate::signal::deliver_pending();
        if !cycle.busy {
            sched.check_dead(&mut state.deadlock);
        }
        let now = nanotime();
        if cycle.acted || nudged {
            state.quiet = 0;
            state.delay = MIN_DELAY;
        } else {
            state.quiet += 1;
            if state.quiet > QUIET_CYCLES {
                state.delay *= 2;
            }
        }
        let watchful = (sched.preempt_slice / 8).clamp(MIN_DELAY, MAX_DELAY);
        if cycle.in_syscall {
            state.watch_until = now.saturating_add(WATCH_AFTER_SYSCALL);
        }
        let cap = if now < state.watch_until {
            watchful
        } else if cycle.busy {
            state.chaos.sysmon_delay_cap(MAX_DELAY)
        } else {
            MAX_DELAY
        };
        state.delay = state.delay.min(cap);
        // Wake exactly when the longest-running goroutine's slice ends, a
        // retired P's timer is due, or a sleeping thread is to be judged.
        if let Some(until_due) = state.next_due.checked_sub(now) {
            state.delay = state.delay.min(Duration::from_nanos(until_due).max(MIN_DELAY));
        }
        if let Some(period) = sched.debug.schedtrace {
            let at = Instant::now();
            if at >= next_trace {
                // Not `eprint!`: a preempted goroutine may hold std's stderr
                // lock, and it waits for us to queue it.
                crate::os::write_stderr(&sched.schedtrace(at - started, sched.debug.scheddetail));
                next_trace = at + period;
            }
            state.delay = state.delay.min(next_trace.saturating_duration_since(at).max(MIN_DELAY));
        }
        state.dozing = state.delay > watchful;
        if !state.dozing {
            sched.sysmon_dozing.store(false, Ordering::Relaxed);
        }
    }
}

/// What one sysmon cycle saw.
struct Cycle {
    /// It retook, preempted, detected or queued something.
    acted: bool,
    /// Some P runs goroutines or is in a system call.
    busy: bool,
    /// Some P is in the system-call state, or some M computes after losing
    /// its P in one.
    in_syscall: bool,
}

impl Sched {
    /// One look at every P and M; `None` if the runtime has shut down.
    fn sysmon_cycle(&self, state: &mut Sysmon) -> Option<Cycle> {
        let now = nanotime();
        self.coarse_now.store(now, Ordering::Relaxed);
        let slice = saturating_nanos(self.preempt_slice);
        let mut acted = false;
        let mut busy = false;
        let mut in_syscall = false;
        state.next_due = u64::MAX;
        let timers_due = self.earliest_timer() <= now;
        let global_work = self.runqsize.load(Ordering::Relaxed) > 0 || timers_due;
        let allm = lock_sched(&self.allm);
        // Checked under `allm`, as `begin_shutdown` sets it: a preempted
        // goroutine that sees the runtime shut down runs on, and must not
        // be queued by a cycle that began before.
        if self.is_shut_down() {
            return None;
        }
        let n = self.gomaxprocs();
        // Every P ever made, not only the first `n`: a P that `set_procs`
        // retired while an M held it stays with that M until it next
        // schedules, and its queue is invisible to stealers meanwhile. Its
        // holder is made to let go at once (its goroutine preempted, its
        // system call's P retaken), so the queue moves to the global one.
        let made = (0..super::MAX_PROCS).take_while(|&id| self.p(id).is_some()).count();
        if state.ps.len() < made {
            state.ps.resize(made, PWatch::default());
        }
        for (id, w) in state.ps.iter_mut().enumerate().take(made) {
            let Some(p) = self.p(id) else { continue };
            let retired = id >= n;
            let status = p.status();
            let tick = p.tick();
            if w.status != Some(status) || w.tick != tick {
                *w = PWatch {
                    tick,
                    status: Some(status),
                    since: now,
                    probe_at: BLOCKED_AFTER,
                };
            }
            let held = now.saturating_sub(w.since);
            match status {
                PStatus::Syscall => {
                    busy = true;
                    in_syscall = true;
                    let others_wait = retired
                        || !p.runq.is_empty()
                        || global_work
                        || self.nmspinning.load(Ordering::SeqCst) + self.npidle.load(Ordering::SeqCst) == 0;
                    if held > SYSCALL_RETAKE
                        && (others_wait || held > SYSCALL_RETAKE_IDLE)
                        && p.cas_status(PStatus::Syscall, PStatus::Idle)
                    {
                        self.syscall_handoffs.fetch_add(1, Ordering::Relaxed);
                        crate::trace::syscall_handoff(&p);
                        self.handoffp(p);
                        acted = true;
                    }
                }
                PStatus::Running => {
                    busy = true;
                    // Only an end still ahead: one past, with nobody waiting,
                    // would hide every later deadline.
                    let slice_end = w.since.saturating_add(slice);
                    if slice_end > now {
                        state.next_due = state.next_due.min(slice_end);
                    }
                    let Some(m) = holder_of(&p) else { continue };
                    if held == 0 && state.dozing && m.thread_blocked() {
                        // A new slice whose thread sleeps: judge it when it
                        // has been asleep long enough, not a doze later.
                        state.next_due = state.next_due.min(now + BLOCKED_AFTER);
                    }
                    if held >= w.probe_at {
                        w.probe_at = held.saturating_mul(2);
                        // Asleep *and still* in the slice we looked at: a
                        // goroutine that entered an annotated blocking call
                        // since then has put its P in `Syscall` and is
                        // handled as one (nothing to detect or signal).
                        if m.thread_blocked() && p.status() == status && p.tick() == tick {
                            self.blocked_detections.fetch_add(1, Ordering::Relaxed);
                            crate::trace::blocked(self, &p);
                            signal(m, REQUEST_SYSCALL);
                            acted = true;
                            continue;
                        }
                    }
                    if self.chaos_preempt(&state.chaos, &p, m, held) {
                        continue;
                    }
                    let others_wait = !p.runq.is_empty() || global_work;
                    if retired || (held >= slice && others_wait) {
                        // First ask; signal only if the next look finds the
                        // request not yet honoured (the goroutine has made
                        // no runtime call that yields).
                        if !p.preempt.swap(true, Ordering::Relaxed) {
                            self.preempt_requests.fetch_add(1, Ordering::Relaxed);
                            crate::trace::preempt_request(self, &p);
                        } else if self.may_preempt() && !signal_pending(m) {
                            crate::trace::preempt_signal(self, &p);
                            signal(m, REQUEST_PREEMPT);
                            self.preempt_signals.fetch_add(1, Ordering::Relaxed);
                        }
                        acted = true;
                    }
                }
                _ => {}
            }
        }
        for mp in allm.iter() {
            let m = mp.get();
            // A preempted M leaves its goroutine and P for us to queue.
            if self.take_preempted(m) {
                acted = true;
                continue;
            }
            // Ms computing without a P after a system call — not inside
            // `gort::blocking`, which runs like any thread (module header).
            let since = m.syscall_since.load(Ordering::Relaxed);
            if since != 0 && now.saturating_sub(since) > slice {
                busy = true;
                in_syscall = true;
                if !m.in_blocking.load(Ordering::Relaxed)
                    && !m.thread_blocked()
                    && self.signal_paced(&mut state.next_due, m, since, now)
                {
                    acted = true;
                }
            }
        }
        drop(allm);
        // Timers left on Ps that `set_procs` retired are otherwise run only
        // by an M that finds no work at all, which a busy program may
        // never have: run the due ones, and wake for the next.
        for p in (n..super::MAX_PROCS).map_while(|id| self.p(id)) {
            self.run_timers(&p, now);
            state.next_due = state.next_due.min(p.timer0.load(Ordering::Relaxed));
        }
        if let Some(poller) = self.poller.get()
            && poller.has_sockets()
            && poller.is_overdue(now)
        {
            // Readied goroutines go to the global queue (sysmon has no P).
            poller.poll(Some(Duration::ZERO));
        }
        Some(Cycle {
            acted,
            busy,
            in_syscall,
        })
    }

    /// Signal M `m`, computing without a P since `since`, unless its
    /// pace says to wait (then `next_due` covers when it may). After each
    /// signal that found the goroutine computing in a shared library, the
    /// gap before the next one doubles, from `MIN_DELAY` up to a slice
    /// (`preempt.rs`). Returns whether it signalled.
    fn signal_paced(&self, next_due: &mut u64, m: &M, since: u64, now: u64) -> bool {
        if signal_pending(m) {
            return false;
        }
        let mut pace = m.signal_pace.get();
        if pace.since != since {
            pace = SignalPace { since, next_at: 0 };
            m.foreign_refusals.store(0, Ordering::Relaxed);
        }
        if now < pace.next_at {
            *next_due = (*next_due).min(pace.next_at);
            m.signal_pace.set(pace);
            return false;
        }
        let refusals = m.foreign_refusals.load(Ordering::Relaxed).min(MAX_BACKOFF_DOUBLINGS);
        let gap = (MIN_DELAY.as_nanos() as u64) << refusals;
        pace.next_at = now + gap.min(saturating_nanos(self.preempt_slice));
        m.signal_pace.set(pace);
        signal(m, REQUEST_PREEMPT);
        self.preempt_signals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Preempting a goroutine that holds a P hands the P to another M:
    /// refuse (and warn once) when no M could take it.
    pub(super) fn may_preempt(&self) -> bool {
        if self.mcount.load(Ordering::Relaxed) < self.max_threads {
            return true;
        }
        let first = {
            let mut l = lock_sched(&self.lock);
            if !l.midle.is_empty() {
                return true;
            }
            !std::mem::replace(&mut l.preempt_limit_warned, true)
        };
        // Under `allm`, where nothing allocates: formatted on the stack.
        if first {
            crate::os::write_stderr_fmt(format_args!(
                "gort: runtime '{}' is at max_threads ({}); goroutines that run long are not preempted until a thread is free\n",
                self.name, self.max_threads
            ));
        }
        false
    }
}

/// The M holding `p`, if any. Only while `Sched::allm` is held (an M
/// leaves `allm` before its struct dies, and releases its P before that).
fn holder_of(p: &super::p::P) -> Option<&M> {
    let m = p.holder.load(Ordering::Acquire);
    // SAFETY: see above: a non-null holder is a live M while `allm` is held.
    unsafe { m.as_ref() }
}

impl Sched {
    /// Wake sysmon for work that cannot wait for its next cycle (a
    /// preempted goroutine to queue). Any thread; no allocation, no lock.
    pub(crate) fn wake_sysmon(&self) {
        self.sysmon_note.wakeup();
    }

    /// A goroutine has just put its P in the system-call state (with a
    /// SeqCst store): wake sysmon if it dozes, so that the P is retaken
    /// soon if the call blocks (module header). Costs a load unless it
    /// dozes; the first caller after it dozed off wakes it.
    pub(crate) fn nudge_sysmon(&self) {
        if self.sysmon_dozing.load(Ordering::SeqCst) && self.sysmon_dozing.swap(false, Ordering::Relaxed) {
            self.wake_sysmon();
        }
    }
}
