//! Goroutine stacks: the per-goroutine size is honoured, and an overflow is
//! reported by name and location — in a child process, since it aborts.

use std::process::Command;

use gort::goroutine::Builder;

/// Recurse `depth` times with a 1 KiB frame each; returns a checksum so the
/// frames cannot be optimised away.
fn deep(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 {
        return u64::from(frame[0]);
    }
    deep(depth - 1) + u64::from(frame[1023]) + 1
}

#[test]
fn a_large_stack_size_fits_deep_recursion() {
    // About 4 MiB of frames, far beyond the 256 KiB default.
    let h = Builder::new().stack_size(8 << 20).spawn(|| deep(4000)).unwrap();
    assert!(h.join().unwrap() > 4000);
}

#[test]
fn a_runtime_wide_stack_size_applies_to_every_goroutine() {
    let rt = gort::Runtime::builder().procs(1).stack_size(4 << 20).build().unwrap();
    let sum = rt.block_on(|| gort::go(|| deep(2000)).join().unwrap());
    assert!(sum > 2000);
}

const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// In the parent: run this same test in a child process with `CHILD_ENV`
/// set and return its exit status and stderr. In the child: run `body`
/// (which is expected to kill the process) and never return.
fn in_child(test: &str, body: impl FnOnce()) -> (std::process::ExitStatus, String) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        unreachable!("the child should have died");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;

#[test]
fn overflow_is_reported_by_name() {
    use std::os::unix::process::ExitStatusExt;
    let (status, stderr) = in_child("overflow_is_reported_by_name", || {
        let h = Builder::new()
            .name("deep-diver")
            .stack_size(64 * 1024)
            .spawn(|| deep(1_000_000))
            .unwrap();
        let _ = h.join();
    });
    assert_eq!(status.signal(), Some(SIGABRT), "status {status:?}, stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("stack overflow"))
        .unwrap_or_else(|| panic!("no report in stderr:\n{stderr}"));
    assert!(line.starts_with("goroutine "), "{line}");
    assert!(
        line.contains("[deep-diver] stack overflow (stack 64 KiB, spawned at tests/stack.rs:"),
        "{line}"
    );
}

#[test]
fn other_faults_still_reach_the_default_handler() {
    // A fault that is not a guard-page hit (a null read) must still kill
    // the process with SIGSEGV, not be swallowed or reported as an overflow.
    use std::os::unix::process::ExitStatusExt;
    let (status, stderr) = in_child("other_faults_still_reach_the_default_handler", || {
        gort::go(|| {
            let p = std::hint::black_box(8usize) as *const u64;
            // SAFETY: none: this child process exists to fault here.
            let v = unsafe { std::ptr::read_volatile(p) };
            println!("read {v} from address 8");
        })
        .join()
        .unwrap();
    });
    assert_eq!(status.signal(), Some(SIGSEGV), "status {status:?}, stderr:\n{stderr}");
    assert!(!stderr.contains("stack overflow"), "{stderr}");
}
