//! The chaos scheduler: a test mode in which a runtime makes deliberately
//! erratic scheduling decisions, so that tests meet the interleavings a quiet
//! machine rarely produces. Switched on for every runtime of the process by
//! `GORTDEBUG=chaos=SEED` (`trace.rs`), or for one runtime by
//! `runtime::Builder::chaos(seed)`, which wins over the variable. Go has no
//! such mode; its race-detector build only sends a readied goroutine to the
//! back of the queue instead of `runnext` now and then.
//!
//! # What it perturbs
//!
//! - **Chaos points** (`point`, `point_on`): runtime calls where the running
//!   goroutine may be made to yield (to the global queue), to be preempted
//!   asynchronously there and then (a SIGURG to its own thread, so the
//!   signal path and the hand-off of its P run), or to carry a cooperative
//!   preemption request to a later call. The points are the shared entry
//!   points, not every public function: `preempt::safe_point_on` (spawn,
//!   join, sleep, socket I/O, the end of `blocking`), `WaitToken::wait`
//!   (every park: channels, select, `sync`, sleep, the poller — a yield
//!   there lands between registering as a waiter and parking, the race the
//!   token's state machine exists for), the entry of a channel send or
//!   receive and of `select`, and the lock and unlock of the `sync` mutexes
//!   (`Mutex`, `RwLock`, `Once`). A pending preemption request is honoured
//!   at every point, which plain runtimes do only at safe points.
//! - **Picks** (`Sched::chaos_pick`, called by `find_runnable` before the
//!   local queue): sometimes `runnext` goes to the tail of the queue (the
//!   fast lane of a producer/consumer pair is broken), sometimes the global
//!   queue is served first, sometimes another P is robbed first, sometimes a
//!   random goroutine of the local queue runs (the queue is rotated to it,
//!   the others keep their order).
//! - **Early preemption** (`Sched::chaos_preempt`, called by sysmon, which
//!   runs at least every `SYSMON_PERIOD` under chaos): a goroutine that has
//!   run `EARLY_PREEMPT_AFTER` may get a cooperative request or a SIGURG
//!   long before its slice ends, whether or not others wait, so the
//!   asynchronous path interrupts code at arbitrary instructions.
//!
//! # Randomness and reproducibility
//!
//! Each M owns a xorshift generator (`ChaosRng`) seeded from SEED and the
//! M's id (ids count up from 0 in creation order, per runtime); sysmon owns
//! one more. A decision reads and writes only its own M's state, so chaos
//! costs no shared write on the hot path. Every decision of an M is
//! therefore a function of the seed, the M's id and how many decisions that
//! M made before. What follows, precisely:
//!
//! - *Reproducible*: a runtime with one P whose goroutines never wait for
//!   the clock or the network, and whose program is itself deterministic,
//!   makes the same choices at the same points on every run with the same
//!   seed — so, for example, goroutines spawned on `procs(1)` first run in
//!   the same (shuffled) order. That holds only while sysmon does not
//!   interfere (below), which a test can check with
//!   `Metrics::preempt_requests`, `preempt_signals`, `blocked_detections`
//!   and `syscall_handoffs` staying put (chaos points count their own
//!   requests and signals in `chaos_injections` only).
//! - *Not reproducible*: anything that depends on thread timing. With
//!   several Ps, which M reaches a point first and what a theft finds depend
//!   on the OS; sysmon's early preemption is paced by the clock and lands
//!   at whatever instruction runs then; timers, sockets, `blocking` calls and
//!   idle Ms waking change which M runs what and which ids exist. A seed
//!   then fixes the decision streams, not the interleaving: it is a way to
//!   get different schedules from run to run, and to rerun a failure with
//!   the same kind of chaos — not a replay.
//!
//! # Safety of a yield at a point
//!
//! A point acts only on a goroutine (not on g0, not on a plain thread) that
//! holds its P in the ordinary way (not in a system call), outside every
//! runtime critical section (`m.locks == 0`, so no runtime lock is held),
//! and not while its thread unwinds a panic (std counts panics per thread,
//! so an unwinding goroutine must not change threads). Callers hold no
//! runtime lock and keep no `&M` across a point that returns true.
//!
//! # Cost when off
//!
//! `point` is one relaxed load of `ANY_CHAOS`, a process-wide flag set when
//! the first chaos runtime is built and never cleared, and a predictable
//! branch. In a process that has built one, runtimes without chaos also take
//! the cold path, which stops at their M's generator being off. The pick in
//! `find_runnable` tests the M's generator (on g0, in cache); sysmon's, its
//! own.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::g::GPtr;
use super::m::{M, Pending, current_m};
use super::p::P;
use super::preempt::{REQUEST_PREEMPT, raise_again, signal};
use super::schedule::mcall;
use super::{EventCounters, Sched};

/// Whether any runtime of this process was built with chaos.
static ANY_CHAOS: AtomicBool = AtomicBool::new(false);

/// A point draws one number below this and acts on the low values: about
/// one point in nine yields, one in 128 preempts by signal, one in 64
/// leaves a cooperative request for a later point.
const POINT_ROLLS: u64 = 128;
const POINT_YIELDS: u64 = 14;
const POINT_SIGNALS: u64 = 1;
const POINT_REQUESTS: u64 = 2;

/// A pick draws one number below this: 4 move `runnext` to the tail, 2
/// serve the global queue first, 1 robs another P first, 2 run a random
/// queued goroutine; the rest leave the usual order alone.
const PICK_ROLLS: u64 = 16;

/// sysmon leaves a goroutine alone for this long into its slice, then
/// rolls once per cycle: 1 in 4 a cooperative request, 1 in 8 a signal.
const EARLY_PREEMPT_AFTER: u64 = 50_000;
/// The longest sysmon sleeps between cycles while goroutines run, under
/// chaos (its usual cap is an eighth of the preempt slice).
const SYSMON_PERIOD: Duration = Duration::from_micros(500);

/// An M's (or sysmon's) chaos generator: xorshift64*, state 0 when the
/// runtime runs without chaos. Owner thread only.
pub(crate) struct ChaosRng {
    state: Cell<u64>,
}

/// sysmon's stream number (Ms use their ids, which start at 0).
pub(super) const SYSMON_STREAM: u64 = u64::MAX;

impl ChaosRng {
    /// The generator of stream `stream` (an M id) for `seed`; off if `seed`
    /// is `None`.
    pub(crate) fn new(seed: Option<u64>, stream: u64) -> ChaosRng {
        let state = seed.map_or(0, |seed| mix(seed ^ mix(stream.wrapping_add(1))).max(1));
        ChaosRng {
            state: Cell::new(state),
        }
    }

    /// Whether chaos is on for this generator's runtime.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.state.get() != 0
    }

    /// The next number, or `None` when chaos is off.
    #[inline]
    fn next(&self) -> Option<u64> {
        let mut x = self.state.get();
        if x == 0 {
            return None;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        Some(x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 8)
    }

    /// sysmon's longest sleep while goroutines run, given its usual `cap`.
    pub(super) fn sysmon_delay_cap(&self, cap: Duration) -> Duration {
        if self.is_on() { cap.min(SYSMON_PERIOD) } else { cap }
    }
}

/// splitmix64's finaliser: spreads a seed and a stream number over all bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Note that a runtime with chaos exists (`Sched::new`).
pub(super) fn enable() {
    ANY_CHAOS.store(true, Ordering::Relaxed);
}

/// A chaos point (module header) for a caller that has not read
/// `current_m()`. Any thread; holding no runtime lock.
#[inline]
pub(crate) fn point() {
    if ANY_CHAOS.load(Ordering::Relaxed) {
        point_here();
    }
}

/// A chaos point for a caller that has just read `current_m()`. Returns
/// whether the goroutine yielded (and so may run on another M now).
#[inline]
pub(crate) fn point_on(m: &M) -> bool {
    ANY_CHAOS.load(Ordering::Relaxed) && act(m)
}

#[cold]
#[inline(never)]
fn point_here() {
    if let Some(m) = current_m() {
        act(m);
    }
}

/// Roll for the running goroutine of `m`; see the module header.
#[cold]
#[inline(never)]
fn act(m: &M) -> bool {
    if !m.chaos.is_on()
        || m.curg.get().is_none()
        || m.locks.get() != 0
        || m.oldp.get().is_some()
        || std::thread::panicking()
    {
        return false;
    }
    let Some(p) = m.p.get() else { return false };
    let sched = &*m.sched;
    let events = &sched.events;
    if p.preempt.load(Ordering::Relaxed) {
        EventCounters::bump(&events.preempts_cooperative);
        mcall(Pending::Yield);
        return true;
    }
    let Some(roll) = m.chaos.next() else { return false };
    let roll = roll % POINT_ROLLS;
    if roll < POINT_YIELDS {
        EventCounters::bump(&events.chaos_injections);
        mcall(Pending::Yield);
        return true;
    }
    // The requests and signals below are counted as chaos only, not with
    // sysmon's (`Metrics::preempt_requests`, `preempt_signals`): those then
    // tell whether anything clock-driven happened during a run.
    let roll = roll - POINT_YIELDS;
    if roll < POINT_SIGNALS {
        // Preempting hands the P to another M: not at the thread limit.
        if sched.mcount.load(Ordering::Relaxed) < sched.max_threads {
            EventCounters::bump(&events.chaos_injections);
            // The handler runs before `tgkill` returns; the goroutine
            // resumes here, on this thread, once it gets a P again.
            raise_again(m);
        }
    } else if roll - POINT_SIGNALS < POINT_REQUESTS && !p.preempt.swap(true, Ordering::Relaxed) {
        EventCounters::bump(&events.chaos_injections);
    }
    false
}

impl Sched {
    /// `find_runnable`'s chaos: maybe reorder `p`'s queue, or return a
    /// goroutine from elsewhere to run first. On g0, holding `p`.
    pub(super) fn chaos_pick(&self, m: &M, p: &P) -> Option<(GPtr, bool)> {
        let roll = m.chaos.next()?;
        let picked = match roll % PICK_ROLLS {
            0..=3 => {
                let g = p.runq.take_runnext()?;
                self.runqput(p, GPtr::from_non_null(g), false);
                EventCounters::bump(&self.events.chaos_injections);
                return None;
            }
            4 | 5 => self.globrunqget(p, 1),
            6 if self.gomaxprocs() > 1 => self.steal_work(m),
            7 | 8 => {
                let queued = p.runq.len();
                if queued < 2 {
                    return None;
                }
                // Rotate the queue (`runnext` first, as `pop` takes it) so
                // that a random goroutine comes out next.
                for _ in 0..(roll / PICK_ROLLS) % queued as u64 {
                    let Some((g, _)) = p.runq.pop() else { break };
                    self.runqput(p, GPtr::from_non_null(g), false);
                }
                p.runq.pop().map(|(g, _)| GPtr::from_non_null(g))
            }
            _ => return None,
        };
        if picked.is_some() {
            EventCounters::bump(&self.events.chaos_injections);
        }
        picked.map(|g| (g, false))
    }

    /// sysmon's chaos for P `p`, whose goroutine (on M `m`) has run for
    /// `ran` ns: maybe ask it to stop, or signal it, long before its slice
    /// ends. Returns whether it did. sysmon only, `allm` held.
    pub(super) fn chaos_preempt(&self, chaos: &ChaosRng, p: &P, m: &M, ran: u64) -> bool {
        if ran < EARLY_PREEMPT_AFTER {
            return false;
        }
        let Some(roll) = chaos.next() else { return false };
        match roll % 8 {
            0 | 1 => {
                if !p.preempt.swap(true, Ordering::Relaxed) {
                    self.preempt_requests.fetch_add(1, Ordering::Relaxed);
                    EventCounters::bump(&self.events.chaos_injections);
                }
                true
            }
            2 if self.may_preempt() => {
                signal(m, REQUEST_PREEMPT);
                self.preempt_signals.fetch_add(1, Ordering::Relaxed);
                EventCounters::bump(&self.events.chaos_injections);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_seeded_apart_and_repeat() {
        let draw = |seed, stream| {
            let rng = ChaosRng::new(seed, stream);
            (0..8).map(|_| rng.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(Some(1), 0), draw(Some(1), 0));
        assert_ne!(draw(Some(1), 0), draw(Some(1), 1));
        assert_ne!(draw(Some(1), 0), draw(Some(2), 0));
        assert!(draw(Some(0), 0).iter().all(Option::is_some));
        assert!(draw(None, 0).iter().all(Option::is_none));
        assert!(!ChaosRng::new(None, 3).is_on());
    }
}
