//! Deadlock detection (Go's `checkdead`): when nothing in a runtime can
//! ever run again, say so and exit, instead of hanging silently.
//!
//! sysmon runs the check on each idle look (`Sched::check_dead`). A runtime
//! is deadlocked when all of these hold on looks at least `CONFIRM` apart
//! with no scheduling progress in between (so a transient state, such as a
//! goroutine between being readied and queued, never reaches a report):
//!
//! - every P is idle, no M spins, the global queue is empty;
//! - at least one goroutine is parked, and every live goroutine is parked
//!   on something only another goroutine can end: not a socket (`IO wait`:
//!   the peer may write), not a sleep, and no pending timer exists (a timer
//!   fires by itself and may wake someone — a stopped timer does not count,
//!   unlike Go's golang/go#12734);
//!   the debug server's waiting goroutines (`debug/http`) count neither
//!   way: a client of theirs cannot end the program's waits;
//! - every other runtime of the process is asleep in the same sense (its
//!   goroutines may hold the other end of our channels), and counts in
//!   the progress stamp;
//! - nobody waits on a channel of `signal::notify` (`signal.rs`): a
//!   signal from outside may come for them;
//! - no thread outside the runtimes may wake one (`threads.rs`): every
//!   plain thread that uses gort is itself asleep in an untimed gort wait,
//!   and nobody has woken it yet.
//!
//! The rule: a report ends the process, so it never fires while any waker
//! is runnable, however long the OS takes to run it. Whatever is woken
//! must therefore stop counting as asleep at the moment of the wake, by
//! the waker's own act, not when the woken thread at last runs. A
//! goroutine's waker marks it runnable (`goready`), which the look reads
//! in its status until it runs. A plain thread counts as asleep only while
//! the note it sleeps on is unset, and it is the waker that sets it
//! (`Waiter::wake`); the sleeper only tidies its registry entry away once
//! it runs. When the sleeper removed its own mark, a thread woken by a
//! goroutine that then parked looked asleep until the OS ran it (a busy
//! CPU holds back a nice-19 or `SCHED_IDLE` thread for tens of ms): held
//! back 50 ms, two looks 10 ms apart both saw everyone asleep, and 10 of
//! 10 ping-pongs between such a thread and a goroutine, over channels,
//! mutexes or WaitGroups, were reported as deadlocked
//! (`tests/deadlock_delay.rs`).
//!
//! A look reads every G (and `/proc`, for the outside threads), so after a
//! look that finds no deadlock the next waits `MIN_GAP`, doubling with each
//! such look up to `MAX_GAP`; one that suspects a deadlock resets the wait,
//! so the confirming look comes on time. An idle program with 100,000
//! parked goroutines spent 120 ms of sysmon's CPU per second on looks every
//! cycle. A deadlock that forms after a long quiet spell is reported up to
//! `MAX_GAP` late.
//!
//! Threads are not counted as a proxy for progress, which is how Go misses
//! deadlocks behind an idle poller thread (golang/go#68497): the runtime's
//! own threads are known by id and ignored, and only goroutines and waiting
//! outside threads decide. The report is Go's: `fatal error: all goroutines
//! are asleep - deadlock!`, a blank line, the dump, exit status 2.
//! `Builder::detect_deadlocks(false)` or `GORTDEBUG=deadlock=0` turn it off.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::sched::{GStatus, Sched, WaitReason};

/// How long a suspected deadlock must persist, unchanged, to be reported.
const CONFIRM: Duration = Duration::from_millis(10);
/// The least and the most time between a look that found no deadlock and
/// the next (module header).
const MIN_GAP: Duration = Duration::from_millis(10);
const MAX_GAP: Duration = Duration::from_secs(1);

/// sysmon's memory between looks: the progress stamp of the first look
/// that suspected the current state, and when that was; and, after looks
/// that found nothing, how long to wait and until when.
#[derive(Default)]
pub(crate) struct DeadlockWatch {
    suspect: Option<(Stamp, Instant)>,
    gap: Duration,
    next_look: Option<Instant>,
}

/// Goroutines created and exited and time slices started: moves whenever
/// anything is scheduled.
type Stamp = (u64, u64, u64);

impl Sched {
    /// One look for a deadlock; sysmon, when no P is busy. Exits the
    /// process with the report if the same state was suspected `CONFIRM` ago.
    pub(crate) fn check_dead(&self, watch: &mut DeadlockWatch) {
        let now = Instant::now();
        if watch.next_look.is_some_and(|at| now < at) {
            return;
        }
        let Some(stamp) = self.deadlock_suspected() else {
            watch.suspect = None;
            watch.gap = (watch.gap * 2).clamp(MIN_GAP, MAX_GAP);
            watch.next_look = Some(now + watch.gap);
            return;
        };
        watch.gap = Duration::ZERO;
        watch.next_look = None;
        match watch.suspect {
            Some((seen, since)) if seen == stamp => {
                if since.elapsed() >= CONFIRM {
                    self.report_deadlock();
                }
            }
            _ => watch.suspect = Some((stamp, now)),
        }
    }

    /// The progress stamp if the runtime looks deadlocked, else None.
    fn deadlock_suspected(&self) -> Option<Stamp> {
        if !self.detect_deadlocks() {
            return None;
        }
        let (mut stamp, parked) = self.asleep_alone()?;
        if parked == 0 {
            return None;
        }
        // A goroutine of another runtime may hold the other end of a
        // channel ours waits on: the verdict holds only if every other
        // runtime is asleep too. Their threads then wake nobody either.
        let mut own: HashSet<libc::pid_t> = self.own_threads();
        for other in super::live_runtimes() {
            if std::ptr::eq(&*other, self) || other.is_shut_down() {
                continue;
            }
            let (theirs, _) = other.asleep_alone()?;
            stamp = (
                stamp.0.wrapping_add(theirs.0),
                stamp.1.wrapping_add(theirs.1),
                stamp.2.wrapping_add(theirs.2),
            );
            own.extend(other.own_threads());
        }
        // A signal may arrive for whoever waits on a `signal::notify`
        // channel: like a socket's peer, a waker from outside.
        if super::threads::outside_waker_exists(&own) || crate::signal::awaited() {
            return None;
        }
        Some(stamp)
    }

    /// Whether nothing of this runtime can run by itself: no goroutine runs
    /// or waits to run, none waits for a socket or a sleep, and no timer is
    /// pending. If so, the progress stamp and how many goroutines are parked.
    fn asleep_alone(&self) -> Option<(Stamp, usize)> {
        // Pending timers are checked before the goroutines: a program whose
        // goroutines sleep has some, and the scan would touch every G.
        if !self.is_quiescent() || self.has_pending_timers() {
            return None;
        }
        let stamp = self.progress_stamp();
        crate::sched::EventCounters::bump(&self.events.deadlock_looks);
        let mut parked = 0;
        for g in self.all_gs() {
            match g.status() {
                GStatus::Idle | GStatus::Dead => {}
                // The debug server's goroutines wait for clients, who cannot
                // unblock the program: they neither hide nor make a deadlock.
                GStatus::Waiting if super::http::is_server_goroutine(g.spawned_at()) => {}
                GStatus::Waiting if !matches!(g.wait_reason(), WaitReason::IoWait | WaitReason::Sleep) => parked += 1,
                _ => return None,
            }
        }
        Some((stamp, parked))
    }

    fn report_deadlock(&self) -> ! {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "fatal error: all goroutines are asleep - deadlock!\n");
        let _ = self.dump(&mut err);
        let _ = err.flush();
        std::process::exit(2)
    }
}
