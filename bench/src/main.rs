//! gort's column of the peers benchmark suite (`../shared/peers`).
//!
//! Contract (peers/README.md): `gort-bench [bench] <name> [flags]` prints
//! optional `# ` info lines, then exactly one final line
//! `<name> <value> <unit>` or `<name> n/a <reason>`; every benchmark checks
//! its own result and exits non-zero when it is wrong. Parameters equal
//! those of `peers/common/src/lib.rs` and `peers/go/benches.go`; benchmark
//! bodies run inside a goroutine, never on a bare thread.

mod bridge;
mod chans;
#[cfg(feature = "hook-io")]
mod hooked;
mod net;
mod preempt;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use report::{check, emit, info, not_available};

/// Benchmarks in table order (peers/common `ALL`).
const ALL: &[&str] = &[
    "spawn",
    "skynet",
    "pingpong",
    "ring",
    "chan_mpmc",
    "mutex",
    "parked_mem",
    "timers",
    "preempt_latency",
    "syscall_block",
    "syscall_block_spawnblocking",
    "tcp_echo",
    "idle_conns",
    "http_hello",
];

const SPAWN_N: u64 = 1_000_000;
const TIMERS_N: u64 = 100_000;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        args.remove(0);
    }
    let Some(name) = args.first().cloned() else {
        eprintln!("usage: gort-bench [bench] <name>\nbenchmarks: {}", ALL.join(" "));
        std::process::exit(2);
    };
    match name.as_str() {
        "spawn" => gort::run(spawn),
        "timers" => gort::run(timers),
        "skynet" => gort::run(chans::skynet),
        "pingpong" => gort::run(chans::pingpong),
        "ring" => gort::run(chans::ring),
        "chan_mpmc" => gort::run(chans::chan_mpmc),
        "mutex" => gort::run(chans::mutex),
        "parked_mem" => gort::run(chans::parked_mem),
        "preempt_latency" => preempt::preempt_latency(),
        "syscall_block" => preempt::syscall_block(),
        // gort only: the latency of sysmon's blocked-thread detection.
        "detect_latency" => preempt::detect_latency(),
        // gort only: a goroutine waiting on a future in `block_on`.
        "async_bridge" => gort::run(bridge::async_bridge),
        "tcp_echo" => gort::run(move || net::tcp_echo(&args[1..])),
        "http_hello" => gort::run(move || net::http_hello(&args[1..])),
        "idle_conns" => gort::run(net::idle_conns),
        "syscall_block_spawnblocking" => not_available(&name, "same_as_syscall_block"),
        // gort only (issue 24): std-socket clients on goroutines under hook-io.
        #[cfg(feature = "hook-io")]
        "hooked_http" => gort::run(hooked::hooked_http),
        #[cfg(not(feature = "hook-io"))]
        "hooked_http" => not_available(&name, "needs_--features_hook-io"),
        n if ALL.contains(&n) => not_available(n, "not-yet"),
        other => {
            eprintln!("unknown benchmark {other:?}\nbenchmarks: {}", ALL.join(" "));
            std::process::exit(2);
        }
    }
}

/// 1: spawn N goroutines; each does an atomic add and counts down a
/// WaitGroup; main waits. Statics, as the tokio column uses (Go's closures
/// capture pointers; reference counting would be a Rust-side extra).
fn spawn() {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static WG: gort::sync::WaitGroup = gort::sync::WaitGroup::new();
    let before = report::peak_rss_bytes();
    let start = Instant::now();
    WG.add(SPAWN_N as usize);
    for _ in 0..SPAWN_N {
        gort::go(|| {
            COUNTER.fetch_add(1, Ordering::Relaxed);
            WG.done();
        });
    }
    WG.wait();
    let elapsed = start.elapsed();
    let got = COUNTER.load(Ordering::Relaxed);
    check("spawn", got == SPAWN_N, || format!("counter {got} != {SPAWN_N}"));
    let m = gort::runtime::metrics();
    info(
        "spawn",
        format!(
            "N={SPAWN_N} procs={} threads={} steals={} peak_rss_mb={:.1} (before {:.1})",
            gort::runtime::procs(),
            m.threads_started,
            m.steals,
            report::peak_rss_bytes() as f64 / 1048576.0,
            before as f64 / 1048576.0
        ),
    );
    emit("spawn", elapsed.as_nanos() as f64 / SPAWN_N as f64, "ns/goroutine");
}

/// 8: TIMERS_N goroutines; goroutine i sleeps (i mod 100) + 1 ms with
/// gort's own sleep and records how late it woke.
fn timers() {
    static LATE_SUM_NS: AtomicU64 = AtomicU64::new(0);
    static LATE_MAX_NS: AtomicU64 = AtomicU64::new(0);
    static EARLY: AtomicU64 = AtomicU64::new(0);
    static FINISHED: AtomicU64 = AtomicU64::new(0);
    static WG: gort::sync::WaitGroup = gort::sync::WaitGroup::new();
    WG.add(TIMERS_N as usize);
    let start = Instant::now();
    for i in 0..TIMERS_N {
        gort::go(move || {
            let d = Duration::from_millis(i % 100 + 1);
            let t0 = Instant::now();
            gort::time::sleep(d);
            match t0.elapsed().checked_sub(d) {
                Some(late) => {
                    let late = late.as_nanos() as u64;
                    LATE_SUM_NS.fetch_add(late, Ordering::Relaxed);
                    LATE_MAX_NS.fetch_max(late, Ordering::Relaxed);
                }
                None => {
                    EARLY.fetch_add(1, Ordering::Relaxed);
                }
            }
            FINISHED.fetch_add(1, Ordering::Relaxed);
            WG.done();
        });
    }
    let spawned = start.elapsed();
    WG.wait();
    let elapsed = start.elapsed();
    let finished = FINISHED.load(Ordering::Relaxed);
    check("timers", finished == TIMERS_N, || {
        format!("finished={finished} want {TIMERS_N}")
    });
    info(
        "timers",
        format!(
            "mean_lateness_ms={:.3} max_lateness_ms={:.3} early_wakeups={} spawn_loop_ms={:.1}",
            LATE_SUM_NS.load(Ordering::Relaxed) as f64 / TIMERS_N as f64 / 1e6,
            LATE_MAX_NS.load(Ordering::Relaxed) as f64 / 1e6,
            EARLY.load(Ordering::Relaxed),
            spawned.as_secs_f64() * 1e3
        ),
    );
    emit("timers", elapsed.as_secs_f64() * 1e3, "ms");
}
