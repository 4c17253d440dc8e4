//! Helpers shared by integration tests: a process of their own (an exit
//! status, a signal, stderr that must not mix with other tests'), a guard
//! that turns a hang into a failure, and the threads the kernel sees.
//!
//! Every test binary that declares `mod common` compiles all of it and uses
//! a part, hence the `allow`.
#![allow(dead_code)]

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
    match rx.recv_timeout(HANG_GUARD) {
        Ok(out) => {
            let out = out.unwrap();
            Some((out.status, String::from_utf8_lossy(&out.stderr).into_owned()))
        }
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the child is
            // not reaped yet (its waiter is still blocked), so the pid is its.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("hung: child {test} not finished after {HANG_GUARD:?}");
        }
    }
}
