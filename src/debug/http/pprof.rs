//! The pprof endpoints' profiles: goroutines (`/debug/pprof/goroutine`)
//! and CPU (`/debug/pprof/profile`), as gzipped `profile.proto` that
//! `go tool pprof` reads (`debug/profile.rs`).
//!
//! The goroutine profile is the dump's data (`Sched::goroutines`): one
//! sample per distinct stack and state, valued by how many goroutines share
//! it, labelled `state` (`chan receive`, `running`, ...). Its stacks are
//! the dump's, trimmed to the user's code and the gort call it waits in; a
//! goroutine running on another thread, whose stack a dump cannot read,
//! is one frame saying so, so every goroutine counts.
//!
//! The CPU profile is `debug/cpuprof.rs`'s samples: whole stacks, runtime
//! frames included (a scheduler that spins shows as `findrunnable`, not as
//! nothing), each valued by its samples and their CPU time (`PERIOD` each,
//! as Go values them). The connection's goroutine collects the samples
//! every `COLLECT_EVERY` while the window lasts, so the ring never fills on
//! a 2-CPU machine; its own work is in the profile too.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use super::server::{Request, Response};
use crate::debug::cpuprof::{CpuProfile, PERIOD};
use crate::debug::profile::{Header, Line, Profile, now_nanos};
use crate::debug::{GoroutineState, symbols};

/// How often a CPU profile's samples are collected from the ring.
const COLLECT_EVERY: Duration = Duration::from_millis(10);

/// `Content-Type` and `Content-Disposition` of a served profile.
fn profile_response(body: Vec<u8>) -> Response {
    Response::ok("application/octet-stream", body)
        .with_header("Content-Disposition: attachment; filename=\"profile\"".to_string())
}

/// `/debug/pprof/goroutine` without `debug`: every goroutine of every
/// runtime, as a pprof profile.
pub(super) fn goroutine_profile() -> Response {
    let started = now_nanos();
    // One symbolization session for every stack: the debug info is parsed
    // once and dropped at the end, not once per goroutine.
    let _symbols = symbols::Session::begin();
    let mut groups: HashMap<(Vec<Line>, String), i64> = HashMap::new();
    for sched in crate::debug::live_runtimes() {
        for info in sched.goroutines(true) {
            let state = match (info.state, info.wait_reason) {
                (GoroutineState::Waiting, Some(reason)) => reason.to_string(),
                (state, _) => format!("{state:?}").to_lowercase(),
            };
            let mut lines: Vec<Line> = info
                .stack
                .iter()
                .map(|f| Line {
                    function: f.function.clone(),
                    file: f.file.clone().unwrap_or_default(),
                    line: f.line.map_or(0, i64::from),
                })
                .collect();
            if lines.is_empty() {
                lines.push(Line {
                    function: format!("({})", info.stack_note.unwrap_or("stack unavailable")),
                    file: String::new(),
                    line: 0,
                });
            }
            *groups.entry((lines, state)).or_insert(0) += 1;
        }
    }
    let mut p = Profile::new();
    for ((lines, state), count) in groups {
        // Each frame its own location: a dump's frames carry no address.
        let locations = lines.iter().map(|l| p.location(0, std::slice::from_ref(l))).collect();
        p.sample(locations, vec![count], &[("state", &state)]);
    }
    profile_response(p.encode(&Header {
        sample_types: &[("goroutine", "count")],
        period_type: ("goroutine", "count"),
        period: 1,
        time_nanos: started,
        duration_nanos: 0,
        comments: Vec::new(),
    }))
}

/// `/debug/pprof/profile?seconds=N`: a CPU profile of the next N seconds.
pub(super) fn cpu_profile(req: &Request) -> Response {
    let window = match super::seconds(req, 30) {
        Ok(w) => w,
        Err(bad) => return bad,
    };
    let mut profile = match CpuProfile::start() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Response::error(
                409,
                format!("{e}: try again when it ends (at most {} s)", super::MAX_SECONDS),
            );
        }
        Err(e) => return Response::error(500, format!("cannot start a CPU profile: {e}")),
    };
    let started = now_nanos();
    let begin = Instant::now();
    while begin.elapsed() < window {
        crate::time::sleep(COLLECT_EVERY.min(window.saturating_sub(begin.elapsed())));
        profile.collect();
    }
    let samples = profile.finish();
    let period = PERIOD.as_nanos() as i64;
    let mut p = Profile::new();
    // As in `goroutine_profile`: the debug info parsed once for all samples.
    let _symbols = symbols::Session::begin();
    // Code address -> location, each symbolized once.
    let mut locations: HashMap<usize, u64> = HashMap::new();
    for (stack, count) in &samples.stacks {
        let ids = stack
            .iter()
            .enumerate()
            .map(|(i, &ip)| {
                // Later entries are return addresses: look up their call.
                let pc = if i == 0 { ip } else { ip.wrapping_sub(1) };
                *locations.entry(pc).or_insert_with(|| {
                    let lines: Vec<Line> = symbols::symbolize(&[pc])
                        .into_iter()
                        .map(|f| Line {
                            function: f.function,
                            file: f.file.unwrap_or_default(),
                            line: f.line.map_or(0, i64::from),
                        })
                        .collect();
                    p.location(pc as u64, &lines)
                })
            })
            .collect();
        let n = *count as i64;
        p.sample(ids, vec![n, n * period], &[]);
    }
    let mut comments = Vec::new();
    if samples.dropped > 0 {
        comments.push(format!(
            "{} samples dropped: the collector fell behind",
            samples.dropped
        ));
    }
    profile_response(p.encode(&Header {
        sample_types: &[("samples", "count"), ("cpu", "nanoseconds")],
        period_type: ("cpu", "nanoseconds"),
        period,
        time_nanos: started,
        duration_nanos: begin.elapsed().as_nanos() as i64,
        comments,
    }))
}
