//! 9: `preempt_latency` and 10: `syscall_block` (peers/README.md).
//!
//! `preempt_latency`: one P; a goroutine spins in a call-free loop while
//! main sleeps 1 ms 200 times; the delay beyond 1 ms is what preemption
//! costs. `syscall_block`: two Ps; eight goroutines each make ten
//! un-annotated 20 ms `std::thread::sleep` calls while two burn 200 ms of
//! CPU; wall time until all are done (ideal about 200 ms).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::report::{check, emit, info, not_available};

const PREEMPT_ITERS: usize = 200;
const PREEMPT_WATCHDOG: Duration = Duration::from_secs(10);
const SYS_SLEEPERS: usize = 8;
const SYS_SLEEPS_EACH: usize = 10;
const SYS_SLEEP: Duration = Duration::from_millis(20);
const SYS_BURNERS: usize = 2;
const SYS_BURN_CPU: Duration = Duration::from_millis(200);
const SYS_PARALLELISM: usize = 2;

pub fn preempt_latency() -> ! {
    let name = "preempt_latency";
    let done = Arc::new(AtomicBool::new(false));
    let watched = Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(PREEMPT_WATCHDOG);
        if !watched.load(Ordering::SeqCst) {
            not_available(name, "starved");
        }
    });
    let rt = gort::Runtime::builder().procs(1).build().expect("runtime");
    let mut delays = rt.block_on(|| {
        gort::go(|| {
            let mut x = 0u64;
            loop {
                x = black_box(x + 1);
            }
        });
        let mut delays = Vec::with_capacity(PREEMPT_ITERS);
        for _ in 0..PREEMPT_ITERS {
            let t0 = Instant::now();
            gort::time::sleep(Duration::from_millis(1));
            delays.push(t0.elapsed().as_secs_f64() * 1e3 - 1.0);
        }
        delays
    });
    done.store(true, Ordering::SeqCst);
    check(name, delays.len() == PREEMPT_ITERS, || {
        format!("recorded {}", delays.len())
    });
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((p / 100.0 * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1];
    let max = *delays.last().expect("non-empty");
    let metrics = rt.metrics();
    info(name, format_args!("preempt_requests={}", metrics.preempt_requests));
    info(
        name,
        format_args!("p50_ms={:.3} p99_ms={:.3} max_ms={:.3}", pct(50.0), pct(99.0), max),
    );
    // `emit` exits the process: the spinner never ends, and the runtime is
    // not dropped.
    emit(name, max, "ms")
}

/// `n` dependent LCG steps (peers/common `spin`).
#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..black_box(n) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Iterations of `spin` that burn `target` of CPU on one thread.
fn calibrate_spin(target: Duration) -> u64 {
    const CHUNK: u64 = 1 << 20;
    black_box(spin(CHUNK));
    let mut iters = 0u64;
    let t0 = thread_cpu_time();
    loop {
        black_box(spin(CHUNK));
        iters += CHUNK;
        let el = thread_cpu_time() - t0;
        if el >= Duration::from_millis(100) {
            return (iters as f64 * target.as_secs_f64() / el.as_secs_f64()) as u64;
        }
    }
}

pub fn syscall_block() {
    let name = "syscall_block";
    let burn_iters = calibrate_spin(SYS_BURN_CPU);
    let rt = gort::Runtime::builder()
        .procs(SYS_PARALLELISM)
        .build()
        .expect("runtime");
    let elapsed = rt.block_on(move || {
        static SLEEPS: AtomicUsize = AtomicUsize::new(0);
        let start = Instant::now();
        let mut hs = Vec::new();
        for _ in 0..SYS_SLEEPERS {
            hs.push(gort::go(|| {
                for _ in 0..SYS_SLEEPS_EACH {
                    std::thread::sleep(SYS_SLEEP);
                    SLEEPS.fetch_add(1, Ordering::SeqCst);
                }
                0
            }));
        }
        for _ in 0..SYS_BURNERS {
            hs.push(gort::go(move || spin(burn_iters)));
        }
        let sink = hs
            .into_iter()
            .fold(0u64, |acc, h| acc.wrapping_add(h.join().expect("task")));
        let el = start.elapsed();
        black_box(sink);
        let s = SLEEPS.load(Ordering::SeqCst);
        check(name, s == SYS_SLEEPERS * SYS_SLEEPS_EACH, || format!("sleeps={s}"));
        el
    });
    info(name, format_args!("burn_iters={burn_iters}"));
    emit(name, elapsed.as_secs_f64() * 1e3, "ms");
}

/// gort only: how long a blocking call holds its P before sysmon hands the
/// P off. One P; a goroutine blocks in a 20 ms `std::thread::sleep` while
/// another waits in the run queue; the delay until the second one starts
/// is the detection latency. Measured back to back (sysmon is watchful,
/// having just seen the last one), then after 150 ms of goroutines running
/// without a system call (sysmon dozes), un-annotated and annotated
/// (`gort::blocking`).
pub fn detect_latency() {
    const ROUNDS: usize = 100;
    const QUIET_ROUNDS: usize = 20;
    const QUIET: Duration = Duration::from_millis(150);
    let name = "detect_latency";
    let rt = gort::Runtime::builder().procs(1).build().expect("runtime");
    let (mut back_to_back, mut after_quiet, mut annotated) = rt.block_on(|| {
        let back_to_back: Vec<f64> = (0..ROUNDS).map(|_| handoff_delay_ms(false)).collect();
        let quiet_round = |annotated| {
            let until = Instant::now() + QUIET;
            while Instant::now() < until {
                gort::go(|| black_box(0)).join().expect("filler");
            }
            handoff_delay_ms(annotated)
        };
        let after_quiet: Vec<f64> = (0..QUIET_ROUNDS).map(|_| quiet_round(false)).collect();
        let annotated: Vec<f64> = (0..QUIET_ROUNDS).map(|_| quiet_round(true)).collect();
        (back_to_back, after_quiet, annotated)
    });
    let summary = |delays: &mut Vec<f64>| {
        delays.sort_by(f64::total_cmp);
        let pct = |p: f64| delays[((p / 100.0 * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1];
        (pct(50.0), pct(99.0), delays[delays.len() - 1])
    };
    let (p50, p99, max) = summary(&mut back_to_back);
    info(name, format_args!("p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3}"));
    let (q50, _, qmax) = summary(&mut after_quiet);
    let (a50, _, amax) = summary(&mut annotated);
    info(
        name,
        format_args!(
            "after_quiet p50_ms={q50:.3} max_ms={qmax:.3} annotated_after_quiet p50_ms={a50:.3} max_ms={amax:.3}"
        ),
    );
    emit(name, p50, "ms")
}

/// One round of `detect_latency`: milliseconds from a goroutine's 20 ms
/// sleep (in `gort::blocking` if `annotated`) starting until the goroutine
/// queued behind it runs.
fn handoff_delay_ms(annotated: bool) -> f64 {
    let (tx, rx) = gort::chan::bounded::<Instant>(1);
    let blocker = gort::go(move || {
        let t0 = Instant::now();
        // Queued behind the blocker on the only P.
        gort::go(move || tx.send(Instant::now()).expect("send"));
        let sleep = || std::thread::sleep(Duration::from_millis(20));
        if annotated {
            gort::blocking(sleep)
        } else {
            sleep()
        }
        t0
    });
    let started = rx.recv().expect("waiter ran");
    let t0 = blocker.join().expect("blocker");
    started.saturating_duration_since(t0).as_secs_f64() * 1e3
}
