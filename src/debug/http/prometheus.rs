//! `/metrics`: every live runtime's `Metrics` in the Prometheus text
//! exposition format (version 0.0.4), which Prometheus, VictoriaMetrics,
//! the OpenTelemetry collector and `promtool` read.
//!
//! ```text
//! # HELP gort_goroutines Goroutines alive now.
//! # TYPE gort_goroutines gauge
//! gort_goroutines{runtime="gort"} 12
//! # HELP gort_sched_latency_seconds Time from runnable to running (sampled: 1 in 8).
//! # TYPE gort_sched_latency_seconds histogram
//! gort_sched_latency_seconds_bucket{runtime="gort",le="2.56e-7"} 40
//! ```
//!
//! Names are prefixed `gort_`; counters end in `_total`, durations are in
//! seconds (Prometheus' conventions, which `promtool check metrics`
//! enforces). Every sample has a `runtime` label, the runtime's name
//! (`Builder::name`); two live runtimes with the same name are told apart
//! by their trace number (`name#3`), since a series must be unique.
//!
//! The format wants each family's samples together, under one `# HELP` and
//! `# TYPE`, so every runtime's `Metrics` is read first and the families
//! are written one after another. A reading is O(Ps) per runtime and takes
//! the scheduler lock only for a count (`Sched::metrics`): no goroutine is
//! visited, so a scrape costs the same with 10 or 100,000 goroutines
//! (docs/diagnostics.md has the measurement). Histograms are rendered at
//! every other power of two of their buckets (256 ns, 1 µs, 4 µs, ... 275
//! s): 16 lines each instead of 40, the precision a dashboard needs.

use std::fmt::Write;

use crate::debug::live_runtimes;
use crate::runtime::{DurationHistogram, Metrics};

/// A family of samples: its name, help text and type, and how to read
/// one runtime's value from its `Metrics`.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&Metrics) -> u64,
}

/// Shorthand for the table below.
const fn family(name: &'static str, kind: &'static str, help: &'static str, value: fn(&Metrics) -> u64) -> Family {
    Family {
        name,
        help,
        kind,
        value,
    }
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

/// The scalar families, in `Metrics`' order.
const FAMILIES: &[Family] = &[
    family(
        "gort_goroutines_created_total",
        COUNTER,
        "Goroutines ever spawned.",
        |m| m.goroutines_created,
    ),
    family("gort_goroutines", GAUGE, "Goroutines alive now.", |m| {
        m.goroutines_live as u64
    }),
    family("gort_threads", GAUGE, "Ms (OS threads) alive now.", |m| {
        m.threads_live as u64
    }),
    family("gort_threads_idle", GAUGE, "Ms parked with no P and no work.", |m| {
        m.threads_idle as u64
    }),
    family("gort_threads_started_total", COUNTER, "Ms ever started.", |m| {
        m.threads_started
    }),
    family(
        "gort_steals_total",
        COUNTER,
        "Successful steals from another P's run queue.",
        |m| m.steals,
    ),
    family(
        "gort_context_switches_total",
        COUNTER,
        "Switches from an M's scheduler to a goroutine.",
        |m| m.context_switches,
    ),
    family(
        "gort_preempt_requests_total",
        COUNTER,
        "Goroutines sysmon asked to yield after their slice.",
        |m| m.preempt_requests,
    ),
    family(
        "gort_preempt_signals_total",
        COUNTER,
        "Preemption signals (SIGURG) sysmon sent.",
        |m| m.preempt_signals,
    ),
    family(
        "gort_preempts_cooperative_total",
        COUNTER,
        "Preemption requests honoured at a runtime call.",
        |m| m.preempts_cooperative,
    ),
    family(
        "gort_preempts_async_total",
        COUNTER,
        "Goroutines a preemption signal stopped.",
        |m| m.preempts_async,
    ),
    family(
        "gort_syscall_handoffs_total",
        COUNTER,
        "Ps sysmon took from goroutines in system calls.",
        |m| m.syscall_handoffs,
    ),
    family(
        "gort_blocked_detections_total",
        COUNTER,
        "Threads found blocked in un-annotated calls.",
        |m| m.blocked_detections,
    ),
    family(
        "gort_netpoll_polls_total",
        COUNTER,
        "Polls of the network poller.",
        |m| m.netpoll_polls,
    ),
    family(
        "gort_netpoll_wakeups_total",
        COUNTER,
        "Waiters the network poller woke.",
        |m| m.netpoll_wakeups,
    ),
    family("gort_timers_fired_total", COUNTER, "Timer callbacks run.", |m| {
        m.timers_fired
    }),
    family(
        "gort_timers_queued",
        GAUGE,
        "Timer entries queued in the Ps' heaps.",
        |m| m.timers_queued as u64,
    ),
    family(
        "gort_chaos_injections_total",
        COUNTER,
        "Decisions the chaos scheduler changed.",
        |m| m.chaos_injections,
    ),
    family(
        "gort_deadlock_looks_total",
        COUNTER,
        "Looks sysmon took for a deadlock.",
        |m| m.deadlock_looks,
    ),
    family(
        "gort_preempt_escapes_total",
        COUNTER,
        "Preempted goroutines that took themselves back.",
        |m| m.preempt_escapes,
    ),
    family(
        "gort_procs",
        GAUGE,
        "Ps: goroutines that may run in parallel (GOMAXPROCS).",
        |m| m.ran_per_p.len() as u64,
    ),
    family(
        "gort_global_run_queue",
        GAUGE,
        "Goroutines waiting in the global run queue.",
        |m| m.global_run_queue as u64,
    ),
    family(
        "gort_stack_reserved_bytes",
        GAUGE,
        "Address space reserved for goroutine stacks.",
        |m| m.stack_bytes_reserved as u64,
    ),
    family(
        "gort_stacks_allocated",
        GAUGE,
        "Stacks in use by goroutines or cached for reuse.",
        |m| m.stacks_allocated as u64,
    ),
];

/// Histogram buckets rendered: every other power of two of nanoseconds,
/// from 2^8 (256 ns) to 2^38 (275 s).
const RENDERED_BOUNDS: std::ops::RangeInclusive<u32> = 8..=38;

/// Append the exposition of every live runtime's metrics to `out`.
pub(crate) fn render(out: &mut String) {
    let runtimes = live_runtimes();
    let labelled: Vec<(String, Metrics)> = runtimes
        .iter()
        .map(|s| {
            let clash = runtimes.iter().filter(|o| o.name == s.name).count() > 1;
            let name = if clash {
                format!("{}#{}", s.name, s.trace_id)
            } else {
                s.name.clone()
            };
            (label_value(&name), s.metrics())
        })
        .collect();
    for f in FAMILIES {
        header(out, f.name, f.help, f.kind);
        for (rt, m) in &labelled {
            let _ = writeln!(out, "{}{{runtime=\"{rt}\"}} {}", f.name, (f.value)(m));
        }
    }
    header(
        out,
        "gort_p_local_run_queue",
        "Goroutines waiting in each P's local run queue.",
        GAUGE,
    );
    for (rt, m) in &labelled {
        for (p, n) in m.local_run_queues.iter().enumerate() {
            let _ = writeln!(out, "gort_p_local_run_queue{{runtime=\"{rt}\",p=\"{p}\"}} {n}");
        }
    }
    header(out, "gort_p_slices_total", "Time slices run on each P.", COUNTER);
    for (rt, m) in &labelled {
        for (p, n) in m.ran_per_p.iter().enumerate() {
            let _ = writeln!(out, "gort_p_slices_total{{runtime=\"{rt}\",p=\"{p}\"}} {n}");
        }
    }
    histogram(
        out,
        "gort_sched_latency_seconds",
        "Time goroutines waited from runnable to running (sampled: 1 in 8 transitions).",
        labelled.iter().map(|(rt, m)| (rt.as_str(), &m.sched_latency)),
    );
    histogram(
        out,
        "gort_park_duration_seconds",
        "Time goroutines stayed parked before being readied (to sysmon's clock: 20us to 10ms).",
        labelled.iter().map(|(rt, m)| (rt.as_str(), &m.park_durations)),
    );
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One histogram family: cumulative buckets, sum and count per runtime.
fn histogram<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    per_runtime: impl Iterator<Item = (&'a str, &'a DurationHistogram)>,
) {
    header(out, name, help, "histogram");
    for (rt, h) in per_runtime {
        let mut cumulative = 0u64;
        for (i, (bound, n)) in h.buckets().enumerate() {
            cumulative = cumulative.wrapping_add(n);
            let Some(bound) = bound else { break };
            let i = i as u32;
            if RENDERED_BOUNDS.contains(&i) && (i - RENDERED_BOUNDS.start()).is_multiple_of(2) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{runtime=\"{rt}\",le=\"{:e}\"}} {cumulative}",
                    bound.as_secs_f64()
                );
            }
        }
        let _ = writeln!(out, "{name}_bucket{{runtime=\"{rt}\",le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(out, "{name}_sum{{runtime=\"{rt}\"}} {:e}", h.sum().as_secs_f64());
        let _ = writeln!(out, "{name}_count{{runtime=\"{rt}\"}} {}", h.count());
    }
}

/// `s` escaped as a label value: backslash, double quote and line feed.
fn label_value(s: &str) -> String {
    s.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn every_family_has_help_type_and_a_sample_per_runtime() {
        let _rt = crate::Runtime::builder().name("prom\"test").procs(2).build().unwrap();
        _rt.block_on(|| {
            crate::go(|| crate::time::sleep(std::time::Duration::from_millis(2)))
                .join()
                .unwrap()
        });
        let mut out = String::new();
        render(&mut out);
        for f in FAMILIES {
            assert!(out.contains(&format!("# TYPE {} {}\n", f.name, f.kind)), "{}", f.name);
            assert!(
                out.contains(&format!("{}{{runtime=\"prom\\\"test\"}} ", f.name)),
                "{}",
                f.name
            );
        }
        assert!(out.contains("gort_p_slices_total{runtime=\"prom\\\"test\",p=\"1\"}"));
        assert!(out.contains("gort_park_duration_seconds_bucket{runtime=\"prom\\\"test\",le=\"+Inf\"} "));
    }
}
