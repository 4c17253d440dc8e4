//! From trace-event JSON to what the picture shows: one lane per P track,
//! each with its goroutine slices and its marks, inside a time window.
//!
//! A lane is a track whose `thread_name` is `P<n>` (gort names its P tracks
//! so; other tracks — "no P" — are not drawn). Complete events (`"ph":"X"`)
//! on it become slices; the instant events `park`, `preempt` and
//! `syscall_enter`/`syscall_exit`/`syscall_handoff`/`blocked` become marks.
//! Times stay in microseconds, as in the file. Lanes with nothing in the
//! window are left out, so a window over one runtime's run does not show
//! every other runtime's idle Ps.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// A stretch a goroutine ran on a P.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub start: f64,
    pub end: f64,
    pub goid: u64,
    /// The slice's name in the trace: `G<id>` and the goroutine's name.
    pub label: String,
}

/// What a mark above a lane stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MarkKind {
    Park,
    Preempt,
    Syscall,
}

/// An instant worth marking.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub kind: MarkKind,
}

/// One P's lane.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lane {
    pub title: String,
    pub slices: Vec<Slice>,
    pub marks: Vec<Mark>,
}

/// The lanes of a time window, `from..to` in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub from: f64,
    pub to: f64,
    pub lanes: Vec<Lane>,
}

fn mark_kind(name: &str) -> Option<MarkKind> {
    match name {
        "park" => Some(MarkKind::Park),
        "preempt" => Some(MarkKind::Preempt),
        "syscall_enter" | "syscall_exit" | "syscall_handoff" | "blocked" => Some(MarkKind::Syscall),
        _ => None,
    }
}

/// Whether a track name is a P's ("P0", "P12").
fn is_p_track(name: &str) -> bool {
    name.strip_prefix('P')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Timeline {
    /// The lanes of `trace` (a parsed trace file) between `from` and `to`
    /// milliseconds (default: the whole trace).
    pub fn new(trace: &Value, from_ms: Option<f64>, to_ms: Option<f64>) -> Result<Timeline, String> {
        let events = trace["traceEvents"]
            .as_array()
            .ok_or("not a trace: no traceEvents array")?;
        let track = |e: &Value| (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        let mut process_names = HashMap::new();
        let mut lanes: BTreeMap<(u64, u64), Lane> = BTreeMap::new();
        for e in events.iter().filter(|e| e["ph"] == "M") {
            let name = e["args"]["name"].as_str().unwrap_or_default();
            match e["name"].as_str() {
                Some("process_name") => {
                    process_names.insert(track(e).0, name.to_string());
                }
                Some("thread_name") if is_p_track(name) => {
                    lanes.entry(track(e)).or_default().title = name.to_string();
                }
                _ => {}
            }
        }
        let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
        for e in events {
            let Some(lane) = lanes.get_mut(&track(e)) else { continue };
            let Some(ts) = e["ts"].as_f64() else { continue };
            match e["ph"].as_str() {
                Some("X") => {
                    let end = ts + e["dur"].as_f64().unwrap_or(0.0);
                    lane.slices.push(Slice {
                        start: ts,
                        end,
                        goid: e["args"]["goid"].as_u64().unwrap_or(0),
                        label: e["name"].as_str().unwrap_or_default().to_string(),
                    });
                    (first, last) = (first.min(ts), last.max(end));
                }
                Some("i" | "I") => {
                    if let Some(kind) = e["name"].as_str().and_then(mark_kind) {
                        lane.marks.push(Mark { at: ts, kind });
                        (first, last) = (first.min(ts), last.max(ts));
                    }
                }
                _ => {}
            }
        }
        if first > last {
            return Err("the trace has no goroutine slices or marks on P tracks".to_string());
        }
        let from = from_ms.map_or(first, |ms| ms * 1000.0);
        let to = to_ms.map_or(last, |ms| ms * 1000.0);
        if from >= to {
            return Err(format!("empty window: from {from} µs to {to} µs"));
        }
        let several = process_names.len() > 1;
        let lanes = lanes
            .into_iter()
            .filter_map(|((pid, _), mut lane)| {
                lane.slices.retain(|s| s.end >= from && s.start <= to);
                lane.slices.sort_by(|a, b| a.start.total_cmp(&b.start));
                lane.marks.retain(|m| (from..=to).contains(&m.at));
                if lane.slices.is_empty() && lane.marks.is_empty() {
                    return None;
                }
                if several && let Some(process) = process_names.get(&pid) {
                    lane.title = format!("{process} · {}", lane.title);
                }
                Some(lane)
            })
            .collect();
        Ok(Timeline { from, to, lanes })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Two runtimes; runtime 1 has P0 and P1, runtime 2 has P0.
    pub(crate) fn sample() -> Value {
        let slice = |pid: u64, tid: u64, ts: f64, dur: f64, goid: u64| json!({"ph": "X", "pid": pid, "tid": tid, "ts": ts, "dur": dur, "name": format!("G{goid}"), "args": {"goid": goid}});
        let instant = |pid: u64, tid: u64, ts: f64, name: &str| json!({"ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": ts, "name": name});
        let meta = |pid: u64, tid: u64, what: &str, name: &str| json!({"ph": "M", "pid": pid, "tid": tid, "name": what, "args": {"name": name}});
        json!({"traceEvents": [
            slice(1, 10000, 0.0, 900.0, 1),
            instant(1, 10000, 900.0, "park"),
            slice(1, 10000, 1000.0, 2000.0, 2),
            instant(1, 10000, 3000.0, "preempt"),
            slice(1, 10001, 500.0, 1.0, 3),
            slice(1, 10001, 502.0, 1.0, 4),
            instant(1, 10001, 600.0, "syscall_enter"),
            instant(1, 10001, 700.0, "ready"),
            instant(1, 19999, 50.0, "spawn"),
            slice(2, 20000, 5000.0, 100.0, 1),
            meta(1, 19999, "process_name", "gort (runtime 1)"),
            meta(2, 29999, "process_name", "other (runtime 2)"),
            meta(1, 10000, "thread_name", "P0"),
            meta(1, 10001, "thread_name", "P1"),
            meta(1, 19999, "thread_name", "no P"),
            meta(2, 20000, "thread_name", "P0"),
        ]})
    }

    #[test]
    fn lanes_are_p_tracks_with_something_in_the_window() {
        let all = Timeline::new(&sample(), None, None).unwrap();
        let titles: Vec<&str> = all.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "gort (runtime 1) · P0",
                "gort (runtime 1) · P1",
                "other (runtime 2) · P0"
            ]
        );
        assert_eq!((all.from, all.to), (0.0, 5100.0));
        assert_eq!(all.lanes[0].slices.len(), 2);
        assert_eq!(
            all.lanes[0].marks.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [MarkKind::Park, MarkKind::Preempt]
        );
        assert_eq!(all.lanes[1].marks.len(), 1, "ready is not marked");

        let window = Timeline::new(&sample(), Some(0.95), Some(2.0)).unwrap();
        assert_eq!(window.lanes.len(), 1);
        assert_eq!(window.lanes[0].slices[0].goid, 2);
        assert!(Timeline::new(&sample(), Some(2.0), Some(1.0)).is_err());
        assert!(Timeline::new(&json!({"traceEvents": []}), None, None).is_err());
    }
}
