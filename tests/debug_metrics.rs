//! `/metrics` served by `gort::debug::serve`: Prometheus' own checker
//! (`promtool check metrics`, Debian's `prometheus` package) accepts it, it
//! carries every runtime's samples under its name, and the scheduler's
//! histograms count what a workload did; plus what a scrape costs with
//! 100,000 parked goroutines (printed, for docs/diagnostics.md; not
//! asserted).
//!
//! Without `promtool` the promtool test says so on stderr and passes,
//! except under CI (`CI=true`), where it fails.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gort::Runtime;

/// `GET path` over a fresh connection: (status line and headers, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(common::HANG_GUARD)).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_string(), body.to_string())
}

/// Whether `tool` can run here; if not, say so (and fail under CI).
fn have(tool: &str, package: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    let why = format!("`{tool}` not found: install Debian's `{package}` package (`.ci/run` does)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("SKIPPED: {why}");
    false
}

/// A runtime whose goroutines have parked and run: a ping-pong over an
/// unbuffered channel, and sleeps.
fn busy_runtime(name: &str) -> Runtime {
    let rt = Runtime::builder().name(name).procs(2).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = gort::chan::bounded::<u32>(0);
        let echo = gort::go(move || rx.iter().count());
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        drop(tx);
        assert_eq!(echo.join().unwrap(), 1000);
        for _ in 0..20 {
            gort::time::sleep(Duration::from_millis(1));
        }
    });
    rt
}

#[test]
fn promtool_accepts_the_served_metrics() {
    if !have("promtool", "prometheus") {
        return;
    }
    let rt = busy_runtime("prom-served");
    let server = rt.block_on(|| gort::debug::serve("127.0.0.1:0")).unwrap();
    let (head, body) = get(server.local_addr(), "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"), "{head}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits non-zero on a format error and on any lint problem
    // (a counter without `_total`, a missing HELP, a unit not in the name).
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
    for family in ["gort_goroutines", "gort_context_switches_total", "gort_procs"] {
        assert!(
            body.contains(&format!("{family}{{runtime=\"prom-served\"}} ")),
            "{family}:\n{body}"
        );
    }
    assert!(body.contains("gort_procs{runtime=\"prom-served\"} 2\n"), "{body}");
    assert!(body.contains("# TYPE gort_sched_latency_seconds histogram"), "{body}");
    server.stop();
}

/// The count of a histogram's `_count` sample for runtime `rt` in `body`.
fn histogram_count(body: &str, family: &str, rt: &str) -> u64 {
    let prefix = format!("{family}_count{{runtime=\"{rt}\"}} ");
    let line = body.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
    line.unwrap_or_else(|| panic!("no {prefix}in\n{body}")).parse().unwrap()
}

#[test]
fn histograms_count_parks_and_scheduling_latencies() {
    let rt = Runtime::builder().name("prom-histograms").procs(2).build().unwrap();
    let before = rt.metrics();
    rt.block_on(|| {
        for _ in 0..10 {
            gort::time::sleep(Duration::from_millis(50));
        }
        for _ in 0..100 {
            gort::yield_now();
        }
    });
    let after = rt.metrics();
    let parks = after.park_durations.count() - before.park_durations.count();
    assert!(parks >= 10, "10 sleeps, {parks} park durations");
    // Each wait is seen through sysmon's coarse clock, at both ends: to
    // within its pacing (≤ 10 ms, more on a loaded machine), so every
    // 50 ms sleep lands at or above 2^24 ns (16.8 ms).
    let long: u64 = after
        .park_durations
        .buckets()
        .zip(before.park_durations.buckets())
        .filter(|((bound, _), _)| bound.is_none_or(|b| b > Duration::from_nanos(1 << 24)))
        .map(|((_, a), (_, b))| a - b)
        .sum();
    let parked = after.park_durations.sum() - before.park_durations.sum();
    assert!(
        long >= 10,
        "sleeps of 50 ms: {long} of {parks} above 16.8 ms, sum {parked:?}"
    );
    assert!(parked >= Duration::from_millis(10 * 20), "{parked:?}");
    // Over 110 transitions to runnable of the main goroutine (its spawn,
    // each wake-up, each yield), one in 8 of them timed.
    let timed = after.sched_latency.count() - before.sched_latency.count();
    assert!(timed >= 13, "{timed} scheduling latencies timed");

    let server = rt.block_on(|| gort::debug::serve("127.0.0.1:0")).unwrap();
    let (_, body) = get(server.local_addr(), "/metrics");
    assert!(histogram_count(&body, "gort_park_duration_seconds", "prom-histograms") >= parks);
    assert!(histogram_count(&body, "gort_sched_latency_seconds", "prom-histograms") >= timed);
    server.stop();
}

/// CPU time of this whole process so far.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; the clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn scrape_cost_with_100k_parked_goroutines() {
    const PARKED: usize = 100_000;
    const SCRAPES: u32 = 20;
    let rt = Runtime::builder()
        .name("prom-cost")
        .procs(2)
        .stack_size(16 * 1024)
        .build()
        .unwrap();
    let (release, parked) = gort::chan::bounded::<()>(0);
    let started = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&started);
    let waiters = rt.block_on(move || {
        (0..PARKED)
            .map(|_| {
                let (parked, started) = (parked.clone(), Arc::clone(&counted));
                gort::go(move || {
                    started.fetch_add(1, Ordering::Relaxed);
                    parked.recv()
                })
            })
            .collect::<Vec<_>>()
    });
    // Each parks right after counting itself: a moment after the last
    // count, all are parked (the scrape reads no goroutine either way).
    while started.load(Ordering::Relaxed) < PARKED {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    let server = rt.block_on(|| gort::debug::serve("127.0.0.1:0")).unwrap();
    let addr = server.local_addr();
    let (_, body) = get(addr, "/metrics");
    let live: usize = body
        .lines()
        .find_map(|l| l.strip_prefix("gort_goroutines{runtime=\"prom-cost\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    // The parked ones, the server's accept loop and its connection.
    assert!(live > PARKED, "{live}");
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    for _ in 0..SCRAPES {
        let (head, _) = get(addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
    let per = cpu / SCRAPES;
    eprintln!(
        "scrape cost, {PARKED} goroutines parked: {SCRAPES} scrapes in {wall:?} wall, {cpu:?} CPU (server and client): \
         {per:?} CPU per scrape = {:.3}% of a CPU at one scrape a second",
        per.as_secs_f64() * 100.0
    );
    // The dashboard's poll, which does read every goroutine (once a second
    // while a dashboard is open).
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    for _ in 0..SCRAPES {
        let (head, body) = get(addr, "/debug/gort/state.json");
        assert!(
            head.starts_with("HTTP/1.1 200") && body.contains("\"chan receive\""),
            "{head}"
        );
    }
    let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
    eprintln!(
        "dashboard poll cost, {PARKED} goroutines parked: {SCRAPES} polls in {wall:?} wall, {cpu:?} CPU: {:?} per poll",
        cpu / SCRAPES
    );
    server.stop();
    drop(release);
    for w in waiters {
        assert!(w.join().unwrap().is_err(), "released by the channel's close");
    }
}
