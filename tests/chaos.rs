//! The chaos scheduler (`Builder::chaos`, `GORTDEBUG=chaos=SEED`): it does
//! change scheduling, what a seed reproduces is reproduced, and the
//! environment variable reaches every runtime (checked in a child process).
//! The stress suite (`stress.rs`) runs its workloads under chaos too.

use std::process::Command;
use std::sync::{Arc, Mutex};

use gort::Runtime;

const CHILD_ENV: &str = "GORT_TEST_CHILD";
const GOROUTINES: usize = 64;

/// Whether this process runs under `GORTDEBUG=chaos`, which makes the
/// "plain" runtimes below chaotic too.
fn chaos_everywhere() -> bool {
    std::env::var("GORTDEBUG").is_ok_and(|v| v.contains("chaos"))
}

/// The order in which `GOROUTINES` goroutines spawned on one P first run,
/// and whether the run was free of everything clock-driven (sysmon's
/// preemptions and hand-offs), which chaos does not reproduce.
fn first_run_order(chaos: Option<u64>) -> (Vec<usize>, bool) {
    let mut builder = Runtime::builder().procs(1);
    if let Some(seed) = chaos {
        builder = builder.chaos(seed);
    }
    let rt = builder.build().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    rt.block_on(move || {
        let handles: Vec<_> = (0..GOROUTINES)
            .map(|i| {
                let seen = Arc::clone(&seen);
                gort::go(move || seen.lock().unwrap().push(i))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let m = rt.metrics();
    let quiet =
        m.preempt_requests == 0 && m.preempt_signals == 0 && m.blocked_detections == 0 && m.syscall_handoffs == 0;
    let order = order.lock().unwrap().clone();
    (order, quiet)
}

#[test]
fn chaos_shuffles_the_first_run_order_the_same_way_for_a_seed() {
    let mut sorted_plain = first_run_order(None).0;
    sorted_plain.sort_unstable();
    assert_eq!(sorted_plain, (0..GOROUTINES).collect::<Vec<_>>());
    for seed in [1, 2, 3] {
        // A run that sysmon interfered with (the machine stalled a thread
        // long enough for it to act) says nothing: try again.
        let compared = (0..5).any(|_| {
            let (plain, plain_quiet) = first_run_order(None);
            let (first, first_quiet) = first_run_order(Some(seed));
            let (second, second_quiet) = first_run_order(Some(seed));
            if !(plain_quiet && first_quiet && second_quiet) {
                return false;
            }
            let mut sorted = first.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, sorted_plain, "seed {seed}: every goroutine runs once");
            if !chaos_everywhere() {
                assert_ne!(first, plain, "seed {seed} left the order alone");
            }
            assert_eq!(first, second, "seed {seed} is not reproducible on one P");
            true
        });
        assert!(compared, "seed {seed}: sysmon intervened in every attempt");
    }
}

#[test]
fn different_seeds_give_different_orders() {
    let runs: Vec<(Vec<usize>, bool)> = [1, 2, 3].map(|seed| first_run_order(Some(seed))).into();
    if runs.iter().all(|(_, quiet)| *quiet) {
        assert!(runs[0].0 != runs[1].0 || runs[1].0 != runs[2].0);
    }
}

#[test]
fn gortdebug_chaos_reaches_every_runtime() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let workload = || {
            let (tx, rx) = gort::chan::bounded(0);
            let h = gort::go(move || (0..1000u64).for_each(|i| tx.send(i).unwrap()));
            assert_eq!(rx.iter().sum::<u64>(), 499_500);
            h.join().unwrap();
        };
        gort::run(workload);
        assert!(gort::runtime::metrics().chaos_injections > 0, "the default runtime");
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(workload);
        assert!(rt.metrics().chaos_injections > 0, "a built runtime");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "gortdebug_chaos_reaches_every_runtime", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("GORTDEBUG", "schedtrace=0,chaos=11")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_chaos_nothing_is_injected() {
    let rt = Runtime::builder().procs(2).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = gort::chan::bounded(0);
        let h = gort::go(move || (0..100u64).for_each(|i| tx.send(i).unwrap()));
        assert_eq!(rx.iter().count(), 100);
        h.join().unwrap();
    });
    if !chaos_everywhere() {
        assert_eq!(rt.metrics().chaos_injections, 0);
    }
}
