//! Execution traces (`gort::trace`): a workload that touches every kind of
//! event runs under `trace::start`/`stop`, and the file must be Chrome
//! trace-event JSON with named P tracks, well-nested goroutine slices, and
//! the spawn, park, ready, system-call and preemption events the workload
//! caused. `GORTTRACE` is checked in a child process.
//!
//! No timing assertions: every event asserted on is one the workload
//! forces (a 2 ms preempt slice against a call-free spinner, a 50 ms
//! blocking call that sysmon must retake, a socket read that must wait).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

mod common;

const CHILD_ENV: &str = "GORT_TEST_CHILD";

fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gort-trace-{what}-{}.json", std::process::id()))
}

fn runtime(name: &str, procs: usize) -> gort::Runtime {
    gort::Runtime::builder()
        .name(name)
        .procs(procs)
        .preempt_slice(Duration::from_millis(2))
        .build()
        .unwrap()
}

/// Channels, sleeps, a blocking call sysmon must retake, and a socket.
fn mixed_workload() {
    let (tx, rx) = gort::chan::bounded::<u64>(0);
    let senders: Vec<_> = (0..8)
        .map(|i| {
            let tx = tx.clone();
            gort::goroutine::Builder::new()
                .name(format!("sender-{i}"))
                .spawn(move || {
                    gort::time::sleep(Duration::from_millis(1));
                    tx.send(i).unwrap();
                })
                .unwrap()
        })
        .collect();
    drop(tx);
    assert_eq!(rx.iter().sum::<u64>(), 28);
    senders.into_iter().for_each(|h| h.join().unwrap());

    // sysmon retakes a P whose system call lasts past 10 ms in any case.
    gort::blocking(|| std::thread::sleep(Duration::from_millis(50)));

    let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = gort::go(move || {
        // Accepting before the client connects: the server waits for IO.
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
    });
    gort::time::sleep(Duration::from_millis(10));
    let mut client = gort::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"hello").unwrap();
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello");
    server.join().unwrap();
}

/// A call-free spinner on one P while the main goroutine keeps sleeping:
/// only SIGURG can let the sleeper back in.
fn preempted_spinner() {
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::clone(&stop);
    let spinner = gort::go(move || {
        let mut x = 0u64;
        while !spinning.load(Ordering::Relaxed) {
            x = std::hint::black_box(x + 1);
        }
        x
    });
    for _ in 0..10 {
        gort::time::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(spinner.join().unwrap() > 0);
}

/// A parsed trace file.
struct Trace {
    events: Vec<Value>,
    other: Value,
}

/// Run `body` in a child process (a trace is the whole process's); it
/// starts a trace to the file it is given, which is stopped after it.
/// Returns the trace and the child's stderr once the child succeeded, or
/// None in the child.
fn traced_in_child(test: &str, what: &str, body: impl FnOnce(&Path)) -> Option<(Trace, String)> {
    // The child's `temp_path` would differ: its process id does.
    let path = temp_path(what);
    let (status, stderr) = common::in_child_with_env(test, &[("GORT_TEST_TRACE", path.as_os_str())], || {
        body(Path::new(&std::env::var_os("GORT_TEST_TRACE").unwrap()));
        gort::trace::stop().unwrap();
    })?;
    assert!(status.success(), "{stderr}");
    let trace = load(&path);
    std::fs::remove_file(&path).unwrap();
    Some((trace, stderr))
}

fn load(path: &Path) -> Trace {
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {path:?}"));
    Trace {
        events: json["traceEvents"].as_array().expect("a traceEvents array").clone(),
        other: json["otherData"].clone(),
    }
}

/// Nanoseconds from a JSON microsecond value.
fn ns(v: &Value) -> u64 {
    (v.as_f64().expect("a number") * 1000.0).round() as u64
}

impl Trace {
    fn named(&self, name: &str) -> impl Iterator<Item = &Value> {
        self.events.iter().filter(move |e| e["name"] == name && e["ph"] == "i")
    }

    /// The pid of the runtime whose process name starts with `runtime`.
    fn pid_of(&self, runtime: &str) -> u64 {
        self.events
            .iter()
            .find(|e| {
                e["ph"] == "M"
                    && e["name"] == "process_name"
                    && e["args"]["name"].as_str().is_some_and(|n| n.starts_with(runtime))
            })
            .unwrap_or_else(|| panic!("no process named {runtime}"))["pid"]
            .as_u64()
            .unwrap()
    }

    /// Track names of process `pid`, by tid.
    fn thread_names(&self, pid: u64) -> HashMap<u64, String> {
        self.events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == pid)
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Checks every track's slices are in time order and do not overlap;
    /// returns the goroutine ids that ran.
    fn check_slices(&self) -> HashSet<u64> {
        let mut tracks: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
        let mut goids = HashSet::new();
        for e in self.events.iter().filter(|e| e["ph"] == "X") {
            let track = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            tracks.entry(track).or_default().push((ns(&e["ts"]), ns(&e["dur"])));
            let goid = e["args"]["goid"].as_u64().expect("a slice names its goroutine");
            let name = e["name"].as_str().unwrap();
            assert!(
                name.starts_with(&format!("G{goid}")),
                "slice {name} of goroutine {goid}"
            );
            goids.insert(goid);
        }
        assert!(!tracks.is_empty(), "no slices at all");
        for (track, slices) in &tracks {
            for pair in slices.windows(2) {
                let ((ts0, dur0), (ts1, _)) = (pair[0], pair[1]);
                assert!(
                    ts0 + dur0 <= ts1,
                    "track {track:?}: {pair:?} overlap or are out of order"
                );
            }
        }
        goids
    }
}

#[test]
fn a_traced_workload_shows_slices_and_scheduler_events() {
    let path = temp_path("workload");
    let mixed = runtime("trace-mixed", 2);
    gort::trace::start(&path).unwrap();
    assert_eq!(
        gort::trace::start(&path).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    mixed.block_on(mixed_workload);
    // A runtime built and dropped while tracing: its events must survive
    // the runtimes built after it.
    runtime("trace-brief", 1).block_on(|| gort::go(|| ()).join().unwrap());
    let spin = runtime("trace-spin", 1);
    spin.block_on(preempted_spinner);
    gort::trace::stop().unwrap();
    gort::trace::stop().unwrap();
    let trace = load(&path);
    std::fs::remove_file(&path).unwrap();

    assert_eq!(trace.other["dropped_events"], 0, "{}", trace.other);
    for (runtime, procs) in [("trace-mixed", 2), ("trace-spin", 1)] {
        let names = trace.thread_names(trace.pid_of(runtime));
        for p in 0..procs {
            assert!(
                names.values().any(|n| *n == format!("P{p}")),
                "{runtime}: no P{p} in {names:?}"
            );
        }
    }

    let ran = trace.check_slices();
    let spawned: Vec<u64> = trace
        .named("spawn")
        .map(|e| e["args"]["goid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        spawned.len(),
        14,
        "three mains, eight senders, server, spinner, one brief"
    );
    for goid in &spawned {
        assert!(ran.contains(goid), "goroutine {goid} was spawned but never ran");
    }
    assert!(
        trace
            .events
            .iter()
            .any(|e| e["ph"] == "X" && e["name"].as_str().unwrap().ends_with(" sender-3")),
        "named goroutines keep their names"
    );

    let reasons: HashSet<&str> = trace
        .named("park")
        .map(|e| e["args"]["reason"].as_str().unwrap())
        .collect();
    assert!(!reasons.contains("waiting"), "a park without a reason: {reasons:?}");
    for reason in ["chan receive", "sleep", "join", "IO wait"] {
        assert!(reasons.contains(reason), "no park for {reason}: {reasons:?}");
    }
    assert!(trace.named("ready").any(|e| e["args"]["by"].as_u64().unwrap() > 0));
    for name in [
        "syscall_enter",
        "syscall_exit",
        "syscall_handoff",
        "preempt_request",
        "preempt_signal",
    ] {
        assert!(trace.named(name).next().is_some(), "no {name} event");
    }
    let signalled: Vec<_> = trace
        .named("preempt")
        .filter(|e| e["args"]["how"] == "signal")
        .collect();
    assert!(!signalled.is_empty(), "the spinner was never preempted by signal");
    let spin_pid = trace.pid_of("trace-spin");
    assert!(signalled.iter().all(|e| e["pid"] == spin_pid));
}

#[test]
fn gorttrace_traces_a_whole_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let rt = runtime("from-env", 2);
        let n = rt.block_on(|| {
            let hs: Vec<_> = (0..10u64).map(|i| gort::go(move || i)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert_eq!(n, 45);
        // No `stop`: the trace is finished when the process exits.
        return;
    }
    let path = temp_path("env");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gorttrace_traces_a_whole_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("GORTTRACE", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = load(&path);
    std::fs::remove_file(&path).unwrap();
    let pid = trace.pid_of("from-env");
    let names = trace.thread_names(pid);
    assert!(
        names.values().any(|n| n == "P0") && names.values().any(|n| n == "P1"),
        "{names:?}"
    );
    let ran = trace.check_slices();
    let spawned: Vec<u64> = trace
        .named("spawn")
        .map(|e| e["args"]["goid"].as_u64().unwrap())
        .collect();
    assert_eq!(spawned.len(), 11, "main and ten goroutines");
    assert!(spawned.iter().all(|g| ran.contains(g)));
}

/// A program's own `trace::start` while `GORTTRACE` traces it gets
/// `AlreadyExists` naming the file being written (Go's `trace.Start`
/// returns an error), not a panic, and the `GORTTRACE` trace goes on to the
/// exit: it holds a runtime built after the refused start.
#[test]
fn start_under_gorttrace_is_an_error_and_leaves_that_trace_alone() {
    let path = temp_path("start-under-env");
    let own = temp_path("start-under-env-own");
    let Some((status, stderr)) = common::in_child_with_env(
        "start_under_gorttrace_is_an_error_and_leaves_that_trace_alone",
        &[("GORTTRACE", path.as_os_str()), ("GORT_TEST_TRACE", own.as_os_str())],
        || {
            runtime("before-start", 1).block_on(|| gort::go(|| 1).join().unwrap());
            let own = std::env::var_os("GORT_TEST_TRACE").unwrap();
            let e = gort::trace::start(&own).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
            let env = std::env::var("GORTTRACE").unwrap();
            assert!(e.to_string().contains(&env), "the running trace's file not named: {e}");
            assert!(!Path::new(&own).exists(), "the refused start created its file");
            runtime("after-start", 1).block_on(|| gort::go(|| 2).join().unwrap());
        },
    ) else {
        return;
    };
    assert!(status.success(), "{stderr}");
    let trace = load(&path);
    std::fs::remove_file(&path).unwrap();
    for name in ["before-start", "after-start"] {
        let pid = trace.pid_of(name);
        assert!(trace.named("spawn").any(|e| e["pid"] == pid), "no spawn in {name}");
    }
    assert_eq!(trace.other["dropped_events"], 0);
}

/// A traced program that deadlocks gets Go's report and exit status 2 as an
/// untraced one does, and the trace `GORTTRACE` started is finished at that
/// exit. The trace's writer thread is the tracer's own: it must not count
/// as a plain thread that might still wake the parked goroutine.
#[test]
fn a_deadlock_is_reported_while_tracing() {
    let path = temp_path("deadlock");
    let Some((status, stderr)) = common::in_child_with_env(
        "a_deadlock_is_reported_while_tracing",
        &[("GORTTRACE", path.as_os_str())],
        || {
            runtime("deadlocked", 2).block_on(|| {
                let (_tx, rx) = gort::chan::bounded::<u8>(0);
                let _ = rx.recv();
            });
            unreachable!("the receive never returns");
        },
    ) else {
        return;
    };
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fatal error: all goroutines are asleep - deadlock!"),
        "{stderr}"
    );
    let trace = load(&path);
    std::fs::remove_file(&path).unwrap();
    let pid = trace.pid_of("deadlocked");
    assert!(
        trace
            .named("park")
            .any(|e| e["pid"] == pid && e["args"]["goid"] == 1 && e["args"]["reason"] == "chan receive"),
        "the main goroutine's last park is in the trace"
    );
}

/// A goroutine that a timer wakes gets its `ready` event even when the M
/// running the timer has not run a goroutine since the trace started: the
/// main goroutine parks on a timer before the trace starts, and the timer
/// is made due only after it started.
#[test]
fn a_timer_wake_just_after_the_start_is_traced() {
    let Some((trace, _)) = traced_in_child("a_timer_wake_just_after_the_start_is_traced", "timer-ready", |path| {
        let rt = runtime("timer-ready", 1);
        let (timer_tx, timer_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let rt = &rt;
            s.spawn(move || {
                let timer: Arc<gort::time::Timer> = timer_rx.recv().unwrap();
                while !rt
                    .goroutines()
                    .iter()
                    .any(|g| g.id == 1 && g.wait_reason == Some("chan receive"))
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                gort::trace::start(path).unwrap();
                timer.reset(Duration::ZERO);
            });
            rt.block_on(move || {
                let timer = Arc::new(gort::time::Timer::new(Duration::from_secs(3600)));
                timer_tx.send(Arc::clone(&timer)).unwrap();
                timer.receiver().recv().unwrap();
            });
        });
    }) else {
        return;
    };
    let pid = trace.pid_of("timer-ready");
    assert!(
        trace
            .events
            .iter()
            .any(|e| e["ph"] == "X" && e["pid"] == pid && e["args"]["goid"] == 1),
        "the woken goroutine ran"
    );
    assert!(
        trace.named("ready").any(|e| e["pid"] == pid && e["args"]["goid"] == 1),
        "no ready event for the goroutine the timer woke: {:?}",
        trace.events
    );
}

/// A goroutine whose slice began before the trace started enters a
/// blocking call that sysmon retakes: the hand-off must still name it (the
/// P's trace has no open slice to take the id from).
#[test]
fn a_hand_off_in_a_slice_begun_before_the_start_names_its_goroutine() {
    let test = "a_hand_off_in_a_slice_begun_before_the_start_names_its_goroutine";
    let Some((trace, stderr)) = traced_in_child(test, "handoff-goid", |path| {
        let rt = runtime("handoff-goid", 1);
        let running = Arc::new(AtomicBool::new(false));
        let traced = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        std::thread::scope(|s| {
            let rt = &rt;
            let (running2, traced2, release2) = (Arc::clone(&running), Arc::clone(&traced), Arc::clone(&release));
            s.spawn(move || {
                while !running2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                gort::trace::start(path).unwrap();
                traced2.store(true, Ordering::SeqCst);
                while rt.metrics().syscall_handoffs == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                release2.store(true, Ordering::SeqCst);
            });
            let caller_id = rt.block_on(move || {
                gort::go(move || {
                    // One slice from before the start into the call.
                    running.store(true, Ordering::SeqCst);
                    while !traced.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                    gort::blocking(|| {
                        while !release.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    });
                    gort::current().id()
                })
                .join()
                .unwrap()
            });
            eprintln!("caller {caller_id}");
        });
    }) else {
        return;
    };
    let pid = trace.pid_of("handoff-goid");
    let handoffs: Vec<u64> = trace
        .named("syscall_handoff")
        .filter(|e| e["pid"] == pid)
        .map(|e| e["args"]["goid"].as_u64().unwrap())
        .collect();
    let caller: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("caller "))
        .and_then(|id| id.parse().ok())
        .expect("the child names its caller");
    assert!(!handoffs.is_empty(), "no syscall_handoff event");
    assert!(
        handoffs.iter().all(|&goid| goid == caller),
        "hand-offs of {handoffs:?}, not of {caller}"
    );
}
