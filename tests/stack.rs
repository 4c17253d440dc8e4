//! Goroutine stacks: the per-goroutine size is honoured, an overflow is
//! reported by name and location (in a child process, since it aborts), and
//! running out of address space for stacks is an error at the spawn, after
//! which the runtime goes on (in a child process, since it lowers the
//! process's address-space limit).

mod common;

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use common::in_child;
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

const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;

#[test]
fn overflow_is_reported_by_name() {
    use std::os::unix::process::ExitStatusExt;
    let Some((status, stderr)) = in_child("overflow_is_reported_by_name", || {
        let h = Builder::new()
            .name("deep-diver")
            .stack_size(64 * 1024)
            .spawn(|| deep(1_000_000))
            .unwrap();
        let _ = h.join();
    }) else {
        return;
    };
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
    let Some((status, stderr)) = in_child("other_faults_still_reach_the_default_handler", || {
        gort::go(|| {
            let p = std::hint::black_box(8usize) as *const u64;
            // SAFETY: none: this child process exists to fault here.
            let v = unsafe { std::ptr::read_volatile(p) };
            println!("read {v} from address 8");
        })
        .join()
        .unwrap();
    }) else {
        return;
    };
    assert_eq!(status.signal(), Some(SIGSEGV), "status {status:?}, stderr:\n{stderr}");
    assert!(!stderr.contains("stack overflow"), "{stderr}");
}

/// Address space the process holds now, in bytes (`/proc/self/statm`).
fn address_space_in_use() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// The address-space limit for a process of `used` bytes: a quarter more,
/// plus 64 MiB. The stack allocator keeps an eighth of the limit (at least
/// 64 MiB) for the rest of the process, so a few hundred default (256 KiB)
/// stacks fit in what is left, and the spawning below runs out quickly.
fn limit_above(used: u64) -> u64 {
    used + used / 4 + (64 << 20)
}
/// Far more spawns than `limit_above` leaves room for: reaching it means
/// running out of address space was never reported.
const MAX_SPAWNS: usize = 10_000;

/// Spawn a goroutine that waits for `release` to close, and wait until it
/// has started. `Err` is the spawn's error; a goroutine that was spawned but
/// never ran fails the test.
fn spawn_parked(release: &gort::chan::Receiver<()>) -> io::Result<gort::JoinHandle<()>> {
    let (started_tx, started_rx) = gort::chan::bounded::<()>(1);
    let release = release.clone();
    let h = Builder::new().spawn(move || {
        started_tx.send(()).unwrap();
        let _ = release.recv();
    })?;
    assert!(
        started_rx.recv().is_ok(),
        "spawn returned Ok, but goroutine {} never ran",
        h.goroutine().id()
    );
    Ok(h)
}

/// A ping-pong of `rounds` values between two fresh goroutines.
fn ping_pong(rounds: u64) -> u64 {
    let (ping_tx, ping_rx) = gort::chan::bounded::<u64>(0);
    let (pong_tx, pong_rx) = gort::chan::bounded::<u64>(0);
    let echo = gort::go(move || ping_rx.iter().map(|v| pong_tx.send(v + 1).unwrap()).count());
    let sum = gort::go(move || {
        (0..rounds)
            .map(|i| {
                ping_tx.send(i).unwrap();
                pong_rx.recv().unwrap()
            })
            .sum::<u64>()
    });
    let sum = sum.join().unwrap();
    assert_eq!(echo.join().unwrap() as u64, rounds);
    sum
}

#[test]
fn running_out_of_stacks_fails_the_spawn_and_the_runtime_goes_on() {
    const NAME: &str = "running_out_of_stacks_fails_the_spawn_and_the_runtime_goes_on";
    let Some((status, stderr)) = in_child(NAME, || {
        // Idle threads must not exit: a new one could not be created under
        // the limit (its own stack is address space too). One P, so that
        // every stack given back is in the one cache the spawns draw from
        // (`stack/cache.rs`, "Running out"); no preemption, for the last
        // check.
        let rt = gort::Runtime::builder()
            .procs(1)
            .thread_keep_alive(Duration::from_secs(3600))
            .preempt_slice(Duration::from_secs(3600))
            .build()
            .unwrap();
        assert_eq!(rt.block_on(|| ping_pong(100)), 5050);
        let limit = limit_above(address_space_in_use());
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit reads the struct we pass; lowering our own limit
        // is the point of this child process.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
        rt.block_on(|| {
            let (release_tx, release_rx) = gort::chan::bounded::<()>(0);
            let mut parked = Vec::with_capacity(MAX_SPAWNS);
            let err = loop {
                assert!(
                    parked.len() < MAX_SPAWNS,
                    "{MAX_SPAWNS} goroutines spawned under the limit"
                );
                match spawn_parked(&release_rx) {
                    Ok(h) => parked.push(h),
                    Err(e) => break e,
                }
            };
            eprintln!("spawn {} failed: {err}", parked.len() + 1);
            assert!(!parked.is_empty(), "the limit left no room for a single stack");
            assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
            assert!(err.to_string().contains("goroutine stack"), "{err}");
            // The stacks did not take the last of the address space: the
            // heap and a new thread (its 8 MiB stack) still get theirs.
            let heap = vec![1u8; 16 << 20];
            assert_eq!(heap.iter().map(|&b| usize::from(b)).sum::<usize>(), 16 << 20);
            drop(heap);
            assert_eq!(std::thread::spawn(|| 6 * 7).join().unwrap(), 42);
            // `go` has no way to return the error: it panics with it, at
            // the caller's line.
            let line = line!() + 1;
            let panic = catch_unwind(AssertUnwindSafe(|| gort::go(|| ()))).unwrap_err();
            let msg = panic.downcast_ref::<String>().expect("a formatted panic message");
            assert!(msg.starts_with("failed to spawn goroutine: "), "{msg}");
            assert!(msg.contains("goroutine stack"), "{msg}");
            eprintln!("go panicked at line {line}");
            // Still running while exhausted: timers fire, the parked
            // goroutines wake and end, and their stacks are handed out again,
            // to as many goroutines as before, and to channel users.
            gort::time::sleep(Duration::from_millis(1));
            let n = parked.len();
            drop(release_tx);
            parked.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(ping_pong(100), 5050);
            let (release_tx, release_rx) = gort::chan::bounded::<()>(0);
            let again: Vec<_> = (0..n).map(|_| spawn_parked(&release_rx).unwrap()).collect();
            drop(release_tx);
            again.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(ping_pong(100), 5050);
        });
        // Stacks are still scarce, so spawns take theirs at once: a
        // goroutine waiting for its first run has a stack it has not run
        // on, and still dumps as not started.
        queued_goroutine_dumps_as_not_started(&rt);
    }) else {
        return;
    };
    assert!(status.success(), "status {status:?}, stderr:\n{stderr}");
    // The panic hook names the line that called `go`, not gort's.
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("go panicked at line "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr.contains(&format!("panicked at tests/stack.rs:{line}:")),
        "{stderr}"
    );
}

/// On `rt` (one P, no preemption for an hour), spawn a goroutine that
/// cannot run yet, because a spinner holds the P, and check that the
/// snapshot says it has not started rather than unwinding its entry frame.
fn queued_goroutine_dumps_as_not_started(rt: &gort::Runtime) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (stop, running) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (stop2, running2) = (Arc::clone(&stop), Arc::clone(&running));
    let spinner = rt.go(move || {
        running2.store(true, Ordering::SeqCst);
        while !stop2.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
    });
    while !running.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let waiting = rt.go(|| 7);
    let id = waiting.goroutine().id();
    let info = rt.goroutines().into_iter().find(|g| g.id == id).expect("listed");
    stop.store(true, Ordering::SeqCst);
    spinner.join().unwrap();
    assert_eq!(waiting.join().unwrap(), 7);
    assert_eq!(info.stack_note, Some("not started yet"), "{info}");
    assert!(info.stack.is_empty(), "{info}");
}

/// While stacks are plentiful a goroutine gets its stack when it first
/// runs; until then a dump says it has not started.
#[test]
fn a_goroutine_not_yet_run_dumps_as_not_started() {
    let rt = gort::Runtime::builder()
        .procs(1)
        .preempt_slice(Duration::from_secs(3600))
        .build()
        .unwrap();
    queued_goroutine_dumps_as_not_started(&rt);
}
