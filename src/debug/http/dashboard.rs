//! `/debug/gort/`: a live dashboard of every runtime, in one self-contained
//! HTML page (`dashboard.html`: inline CSS and script, no font, library or
//! CDN, so it works on a machine with no internet access), and the JSON it
//! polls once a second, `/debug/gort/state.json` (`state_json`).
//!
//! What a poll reads, per runtime: its `Metrics` (O(Ps)), a view of each P
//! and the goroutine it runs (`Sched::p_views`), and one pass over every G
//! — status, wait reason, park site and stamp, relaxed loads as the dumps
//! do — to count goroutines by state and by wait reason and to group the
//! parked ones by the line that parked them. No stack is walked and no
//! symbol looked up, so the pass costs some milliseconds for 100,000
//! goroutines; the list of Gs is copied out of `allgs` first (which may
//! allocate) and nothing else is locked. The page keeps the history of
//! what it polled (the last five minutes) and draws the charts from it.
//!
//! JSON layout (what `dashboard.html` reads):
//!
//! ```text
//! {"unix_ms":…, "runtimes":[{"name":…, "procs":…,
//!   "ps":[{"id":0,"status":"running","running":12,"running_spawned_at":"src/main.rs:9:5","runq":0,"slices":…}],
//!   "states":{"running":1,"runnable":0,"waiting":…,"syscall":0,"preempted":0},
//!   "wait_reasons":[{"reason":"chan receive","count":…}],
//!   "sites":[{"at":"src/main.rs:20:13","reason":"chan receive","count":…,"longest_s":…}],
//!   "metrics":{"goroutines":…, …, "sched_latency":{"buckets":[…],"sum_s":…}, "park_durations":{…}}}]}
//! ```

use std::collections::HashMap;
use std::fmt::Write;
use std::panic::Location;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::debug::live_runtimes;
use crate::runtime::DurationHistogram;
use crate::sched::{GStatus, Sched, WaitReason, nanotime};

/// Parking sites listed, the most populated first.
const TOP_SITES: usize = 20;

/// The dashboard page itself.
pub(crate) fn page() -> &'static str {
    include_str!("dashboard.html")
}

/// Append the dashboard's state of every live runtime to `out`, as JSON.
pub(crate) fn state_json(out: &mut String) {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let _ = write!(out, "{{\"unix_ms\":{unix_ms},\"runtimes\":[");
    for (i, sched) in live_runtimes().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        runtime_json(out, sched);
    }
    out.push_str("]}");
}

/// What one pass over the Gs finds.
#[derive(Default)]
struct Census {
    /// By `GStatus` code: runnable, running, syscall, waiting, preempted.
    states: [u64; 5],
    /// By wait reason code.
    reasons: HashMap<u8, u64>,
    /// By (park site, wait reason code): count, earliest park stamp.
    sites: HashMap<(*const Location<'static>, u8), (u64, u64)>,
    /// Spawn site of each running goroutine, by id.
    running: HashMap<u64, &'static Location<'static>>,
}

fn census(sched: &Sched) -> Census {
    let mut c = Census::default();
    for g in sched.all_gs() {
        let slot = match g.status() {
            GStatus::Idle | GStatus::Dead => continue,
            GStatus::Runnable => 0,
            GStatus::Running => 1,
            GStatus::Syscall => 2,
            GStatus::Waiting => 3,
            GStatus::Preempted => 4,
        };
        c.states[slot] += 1;
        match slot {
            1 | 2 => {
                c.running.insert(g.id(), g.spawned_at());
            }
            3 => {
                let reason = g.wait_reason().code();
                *c.reasons.entry(reason).or_default() += 1;
                let (at, since) = g.parked();
                let e = c.sites.entry((at as *const _, reason)).or_insert((0, u64::MAX));
                e.0 += 1;
                e.1 = e.1.min(since);
            }
            _ => {}
        }
    }
    c
}

fn runtime_json(out: &mut String, sched: &Sched) {
    let m = sched.metrics();
    let views = sched.p_views();
    let c = census(sched);
    let now = nanotime();
    out.push_str("{\"name\":");
    json_str(out, &sched.name);
    let _ = write!(out, ",\"procs\":{},\"ps\":[", views.len());
    for (i, p) in views.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"id\":{},\"status\":\"{}\",\"runq\":{},\"slices\":{},\"running\":",
            if i > 0 { "," } else { "" },
            p.id,
            p.status,
            p.runq,
            p.slices
        );
        match (p.running, c.running.get(&p.running)) {
            (0, _) => out.push_str("null"),
            (id, Some(at)) => {
                let _ = write!(out, "{id},\"running_spawned_at\":");
                json_str(out, &at.to_string());
            }
            (id, None) => {
                let _ = write!(out, "{id}");
            }
        }
        out.push('}');
    }
    let [runnable, running, syscall, waiting, preempted] = c.states;
    let _ = write!(
        out,
        "],\"states\":{{\"running\":{running},\"runnable\":{runnable},\"waiting\":{waiting},\"syscall\":{syscall},\"preempted\":{preempted}}},\"wait_reasons\":["
    );
    let mut reasons: Vec<(&str, u64)> = c
        .reasons
        .iter()
        .map(|(&code, &n)| (WaitReason::from_code(code).unwrap_or(WaitReason::None).as_str(), n))
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (i, (reason, n)) in reasons.iter().enumerate() {
        out.push_str(if i > 0 { ",{\"reason\":" } else { "{\"reason\":" });
        json_str(out, reason);
        let _ = write!(out, ",\"count\":{n}}}");
    }
    out.push_str("],\"sites\":[");
    let mut sites: Vec<_> = c.sites.into_iter().collect();
    sites.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    for (i, ((at, reason), (n, since))) in sites.into_iter().take(TOP_SITES).enumerate() {
        // SAFETY: park sites are only ever stored from a `&'static Location`.
        let at: &'static Location<'static> = unsafe { &*at };
        out.push_str(if i > 0 { ",{\"at\":" } else { "{\"at\":" });
        json_str(out, &at.to_string());
        out.push_str(",\"reason\":");
        json_str(out, WaitReason::from_code(reason).unwrap_or(WaitReason::None).as_str());
        let _ = write!(
            out,
            ",\"count\":{n},\"longest_s\":{:.3}}}",
            now.saturating_sub(since) as f64 / 1e9
        );
    }
    let _ = write!(
        out,
        "],\"metrics\":{{\"goroutines\":{},\"goroutines_created\":{},\"threads\":{},\"threads_idle\":{},\"context_switches\":{},\"steals\":{},\"global_run_queue\":{},\"local_run_queues\":{},\"timers_fired\":{},\"timers_queued\":{},\"netpoll_wakeups\":{},\"preempt_requests\":{},\"preempts_async\":{},\"syscall_handoffs\":{},\"stacks_allocated\":{},\"stack_reserved_bytes\":{},\"sched_latency\":",
        m.goroutines_live,
        m.goroutines_created,
        m.threads_live,
        m.threads_idle,
        m.context_switches,
        m.steals,
        m.global_run_queue,
        m.local_run_queues.iter().sum::<usize>(),
        m.timers_fired,
        m.timers_queued,
        m.netpoll_wakeups,
        m.preempt_requests,
        m.preempts_async,
        m.syscall_handoffs,
        m.stacks_allocated,
        m.stack_bytes_reserved,
    );
    histogram_json(out, &m.sched_latency);
    out.push_str(",\"park_durations\":");
    histogram_json(out, &m.park_durations);
    out.push_str("}}");
}

/// `{"buckets":[counts…],"sum_s":…}`; bucket `i` counts durations below
/// `2^i` ns (the last one, the rest).
fn histogram_json(out: &mut String, h: &DurationHistogram) {
    out.push_str("{\"buckets\":[");
    for (i, (_, n)) in h.buckets().enumerate() {
        let _ = write!(out, "{}{n}", if i > 0 { "," } else { "" });
    }
    let _ = write!(out, "],\"sum_s\":{}}}", h.sum().as_secs_f64());
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#""a\"b\\c\u000ad""#);
    }
}
