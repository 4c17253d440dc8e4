//! Duration histograms the scheduler keeps for `/metrics`: how long a
//! runnable goroutine waited for a processor (scheduling latency, Go's
//! `/sched/latencies:seconds`) and how long goroutines stayed parked.
//!
//! Buckets are powers of two of nanoseconds: bucket `i` counts durations
//! below `2^i` ns and at least `2^(i-1)` (bucket 0: exactly 0), the last one
//! everything from `2^(BUCKETS-2)` ns (about 9 minutes) on. Finding the
//! bucket is one `lzcnt`; no division, no search.
//!
//! Where they are recorded, and what it costs. Each P has its own pair
//! (`P::histograms`), written only by the M holding
//! the P with a plain load and store (`record_owned`, as `P::count`): no
//! locked instruction on the scheduler's hot path, and no cache line shared
//! between Ps. A wake-up from outside any P of the runtime (a plain thread,
//! another runtime's goroutine) records into the runtime's shared pair with
//! an atomic add (`record_shared`). A reading sums every P's buckets
//! (`add_to`), without stopping anything: as `Metrics`, only roughly
//! consistent with itself, and a bucket may be one behind its sum.
//!
//! The clocks. Park durations come from the stamp every park already takes
//! (`G::wait_since`, sysmon's coarse clock) against the same coarse clock
//! at the wake-up: two loads, no clock read, accurate to sysmon's pacing
//! (20 µs while it finds work, up to 10 ms while it dozes). Scheduling
//! latencies are mostly well below that, so they are timed with the real
//! clock — but only for one in `LATENCY_SAMPLE` transitions to runnable of
//! each goroutine (as Go's `gTrackingPeriod`), which keeps the clock reads
//! off nearly every switch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of buckets: 0 ns, then `[2^(i-1), 2^i)` ns up to `2^39` ns, then
/// the rest.
pub const BUCKETS: usize = 41;

/// One in this many transitions to runnable of each goroutine is timed for
/// the scheduling-latency histogram (a power of two: a mask, not a division).
pub(crate) const LATENCY_SAMPLE: u64 = 8;

/// The scheduler's pair of histograms: one per P, and one per runtime for
/// what happens outside its Ps.
#[derive(Default)]
pub(crate) struct SchedHistograms {
    /// From becoming runnable to running.
    pub(crate) sched_latency: LogHistogram,
    /// From parking to being readied.
    pub(crate) park_durations: LogHistogram,
}

/// Counters of one histogram (per P, or the runtime's shared one).
pub(crate) struct LogHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for LogHistogram {
    fn default() -> LogHistogram {
        LogHistogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }
}

fn bucket(ns: u64) -> usize {
    ((u64::BITS - ns.leading_zeros()) as usize).min(BUCKETS - 1)
}

impl LogHistogram {
    /// Count one duration. Only the holder of the P this histogram belongs
    /// to: a plain load and store, readers may see it a little late.
    #[inline]
    pub(crate) fn record_owned(&self, ns: u64) {
        let c = &self.counts[bucket(ns)];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.sum_ns
            .store(self.sum_ns.load(Ordering::Relaxed).wrapping_add(ns), Ordering::Relaxed);
    }

    /// Count one duration. Any thread.
    pub(crate) fn record_shared(&self, ns: u64) {
        self.counts[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Add this histogram's counts into `out`.
    pub(crate) fn add_to(&self, out: &mut DurationHistogram) {
        for (o, c) in out.counts.iter_mut().zip(&self.counts) {
            *o = o.wrapping_add(c.load(Ordering::Relaxed));
        }
        out.sum_ns = out.sum_ns.wrapping_add(self.sum_ns.load(Ordering::Relaxed));
    }
}

/// A histogram of durations, as [`Metrics`](crate::runtime::Metrics)
/// reports it: counts in power-of-two buckets of nanoseconds, and the sum.
///
/// Like every counter in `Metrics` it only grows (the sum wraps after
/// 2^64 ns, 584 years of cumulated waits): compare two readings.
///
/// ```
/// let m = gort::runtime::metrics();
/// let total: u64 = m.park_durations.buckets().map(|(_, n)| n).sum();
/// assert_eq!(total, m.park_durations.count());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationHistogram {
    counts: [u64; BUCKETS],
    sum_ns: u64,
}

impl Default for DurationHistogram {
    fn default() -> DurationHistogram {
        DurationHistogram {
            counts: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl DurationHistogram {
    /// Each bucket as (upper bound, count): the count of durations below
    /// the bound and at or above the previous bucket's; `None` for the last
    /// bucket, which has no upper bound. The bounds are powers of two of
    /// nanoseconds, from 1 ns to 2^39 ns (about 9 minutes).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        self.counts.iter().enumerate().map(|(i, &n)| {
            let bound = (i < BUCKETS - 1).then(|| Duration::from_nanos(1 << i));
            (bound, n)
        })
    }

    /// Number of durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &n| a.wrapping_add(n))
    }

    /// Sum of the durations counted.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_ranges() {
        let h = LogHistogram::default();
        for ns in [0, 1, 2, 3, 1023, 1024, u64::MAX] {
            h.record_owned(ns);
        }
        h.record_shared(5);
        let mut out = DurationHistogram::default();
        h.add_to(&mut out);
        h.add_to(&mut out);
        let b: Vec<_> = out.buckets().collect();
        assert_eq!(b[0], (Some(Duration::from_nanos(1)), 2)); // 0
        assert_eq!(b[1], (Some(Duration::from_nanos(2)), 2)); // 1
        assert_eq!(b[2], (Some(Duration::from_nanos(4)), 4)); // 2, 3
        assert_eq!(b[3].1, 2); // 5
        assert_eq!(b[10], (Some(Duration::from_nanos(1024)), 2)); // 1023
        assert_eq!(b[11].1, 2); // 1024
        assert_eq!(b[BUCKETS - 1], (None, 2)); // u64::MAX
        assert_eq!(out.count(), 16);
    }
}
