//! Helpers shared by integration tests: a process of their own (an exit
//! status, a signal, stderr that must not mix with other tests'), a guard
//! that turns a hang into a failure, and the threads the kernel sees.
//!
//! Every test binary that declares `mod common` compiles all of it and uses
//! a part, hence the `allow`.
#![allow(dead_code)]

pub mod server;

use std::ffi::OsStr;
use std::panic::resume_unwind;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Longer than any test takes on a loaded 2-core machine: reaching it
/// means a lost wake-up, not slowness.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Run `f` on its own thread; panic if it has not finished after `HANG_GUARD`.
pub fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG_GUARD) {
        Ok(v) => {
            thread.join().unwrap();
            v
        }
        Err(RecvTimeoutError::Timeout) => panic!("hung: not finished after {HANG_GUARD:?}"),
        Err(RecvTimeoutError::Disconnected) => resume_unwind(thread.join().unwrap_err()),
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Yield until the goroutine of `h` is parked for `reason` (Go's words, as
/// `gort::runtime::goroutines` reports them: `"IO wait"`, `"select"`,
/// `"sync.Mutex.Lock"`, ...). On a goroutine of the same runtime.
pub fn wait_until_parked<T>(h: &gort::JoinHandle<T>, reason: &str) {
    let id = h.goroutine().id();
    while !gort::runtime::goroutines()
        .iter()
        .any(|g| g.id == id && g.wait_reason == Some(reason))
    {
        gort::yield_now();
    }
}

/// The `/proc/self/task` directories of this process's threads whose name
/// starts with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?.path();
            let name = std::fs::read_to_string(task.join("comm")).ok()?;
            name.starts_with(prefix).then_some(task)
        })
        .collect()
}

/// Set in a child process started by `in_child`.
pub const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// In the parent: run test `test` of this same test binary in a child
/// process with `CHILD_ENV` set, and return its exit status and stderr. In
/// the child: run `body` and return `None`. A child still running after
/// `HANG_GUARD` is killed and the parent panics.
pub fn in_child(test: &str, body: impl FnOnce()) -> Option<(ExitStatus, String)> {
    in_child_with_env(test, &[], body)
}

/// `in_child` with the child's environment extended by `env`.
pub fn in_child_with_env(test: &str, env: &[(&str, &OsStr)], body: impl FnOnce()) -> Option<(ExitStatus, String)> {
    match run_child(test, env, HANG_GUARD, body)? {
        ChildEnd::Exited(status, stderr) => Some((status, stderr)),
        ChildEnd::Hung => panic!("hung: child {test} not finished after {HANG_GUARD:?}"),
    }
}

/// How a child process run by `run_child` ended.
pub enum ChildEnd {
    Exited(ExitStatus, String),
    /// Still running after the deadline: killed.
    Hung,
}

/// In the parent: run test `test` of this binary in a child (as
/// `in_child`), but report a child still running after `deadline` as
/// `ChildEnd::Hung` (killed) instead of panicking, so a test can count
/// hangs over many runs. In the child: run `body`, return `None`.
pub fn run_child(test: &str, env: &[(&str, &OsStr)], deadline: Duration, body: impl FnOnce()) -> Option<ChildEnd> {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return None;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => {
            let out = out.unwrap();
            Some(ChildEnd::Exited(
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
        Err(_) => {
            // SAFETY: as in `in_child_with_env`: the child is not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv();
            Some(ChildEnd::Hung)
        }
    }
}

/// The workload that deadlocked gort under jemalloc (issue 22, A.1): on
/// two Ps with a 500 µs slice, eight goroutines allocate and free buffers
/// of 16 B to 4 KiB in a loop that never calls into the runtime, so only
/// preemption signals stop them — inside the allocator as often as not —
/// while a ninth sleeps 5 ms at a time; after `run_for` everything is
/// joined. Returns the buffers allocated, so the work cannot be optimised
/// away and a caller can check it happened.
pub fn allocation_storm(run_for: Duration, chaos: Option<u64>) -> u64 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut builder = gort::Runtime::builder()
        .procs(2)
        .preempt_slice(Duration::from_micros(500))
        .name("storm");
    if let Some(seed) = chaos {
        builder = builder.chaos(seed);
    }
    let rt = builder.build().unwrap();
    let made = rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8u64)
            .map(|i| {
                let stop = Arc::clone(&stop);
                gort::go(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i;
                    let mut kept: Vec<Vec<u8>> = Vec::new();
                    let mut made = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = 16 + (x % 4081) as usize;
                        let buf = vec![x as u8; len];
                        made += 1;
                        if kept.len() < 64 {
                            kept.push(buf);
                        } else {
                            kept[(x >> 32) as usize % 64] = buf;
                        }
                    }
                    made
                })
            })
            .collect();
        let sleeper = {
            let stop = Arc::clone(&stop);
            gort::go(move || {
                let mut naps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    gort::time::sleep(Duration::from_millis(5));
                    naps += 1;
                }
                naps
            })
        };
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let made: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(sleeper.join().unwrap() > 0, "the sleeping goroutine never woke");
        made
    });
    // For the parent's log: whether the runtime had to fall back on a
    // preempted goroutine taking itself back.
    eprintln!("storm: escapes {}", rt.metrics().preempt_escapes);
    made
}

/// Run `allocation_storm` in `runs` children of test `test` (each for
/// `run_for`, killed if not done 20 s later) and return how many hung; a
/// child that fails otherwise fails the test. In a child: run the storm.
pub fn count_storm_hangs(test: &str, runs: usize, run_for: Duration, chaos: bool) -> usize {
    let mut hung = 0;
    for run in 0..runs {
        let seed = chaos.then_some(run as u64 + 1);
        let env: Vec<(&str, std::ffi::OsString)> = seed
            .map(|s| vec![("GORT_TEST_STORM_SEED", s.to_string().into())])
            .unwrap_or_default();
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let end = run_child(test, &env, run_for + Duration::from_secs(20), || {
            let seed = std::env::var("GORT_TEST_STORM_SEED").ok().map(|s| s.parse().unwrap());
            let made = allocation_storm(run_for, seed);
            assert!(made > 1000, "the storm allocated only {made} buffers");
        });
        match end {
            None => return 0,
            Some(ChildEnd::Hung) => hung += 1,
            Some(ChildEnd::Exited(status, stderr)) => {
                assert!(status.success(), "storm run {run} failed: {status}\n{stderr}");
                if let Some(line) = stderr.lines().find(|l| l.starts_with("storm: ")) {
                    println!("run {run}: {line}");
                }
            }
        }
    }
    hung
}

/// The two allocation-storm tests of an allocator's test binary: `$plain`
/// runs 8 storms, `$chaos` 4 under chaos seeds; each asserts no run hung.
#[macro_export]
macro_rules! storm_tests {
    ($plain:ident, $chaos:ident) => {
        #[test]
        fn $plain() {
            let hung = common::count_storm_hangs(stringify!($plain), 8, std::time::Duration::from_secs(3), false);
            assert_eq!(hung, 0, "runs that hung");
        }

        #[test]
        fn $chaos() {
            let hung = common::count_storm_hangs(stringify!($chaos), 4, std::time::Duration::from_secs(3), true);
            assert_eq!(hung, 0, "runs that hung");
        }
    };
}
