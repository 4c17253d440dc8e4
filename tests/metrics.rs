//! `runtime::metrics()`: each counter moves when a workload causes what it
//! counts. Every test uses a runtime of its own and asserts on differences
//! between two readings, never on how long anything took.

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gort::Runtime;
use gort::net::{TcpListener, TcpStream};
use gort::runtime::Metrics;

fn runtime(procs: usize) -> Runtime {
    Runtime::builder()
        .procs(procs)
        .preempt_slice(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// Run `workload` on `rt`'s main goroutine; return the metrics before and after.
fn around(rt: &Runtime, workload: impl FnOnce() + Send + 'static) -> (Metrics, Metrics) {
    let before = rt.metrics();
    rt.block_on(workload);
    (before, rt.metrics())
}

#[test]
fn spawning_counts_created_goroutines() {
    let rt = runtime(2);
    let (before, after) = around(&rt, || {
        let hs: Vec<_> = (0..100).map(|i| gort::go(move || i)).collect();
        hs.into_iter().for_each(|h| drop(h.join()));
    });
    // The main goroutine of `block_on` is one more.
    assert_eq!(after.goroutines_created - before.goroutines_created, 101);
}

#[test]
fn every_park_and_ready_is_a_context_switch() {
    const ROUND_TRIPS: u64 = 500;
    let rt = runtime(1);
    let (before, after) = around(&rt, || {
        let (ping, pong) = (gort::chan::bounded::<u64>(0), gort::chan::bounded::<u64>(0));
        let (ping_tx, ping_rx) = ping;
        let (pong_tx, pong_rx) = pong;
        let echo = gort::go(move || {
            for v in ping_rx.iter() {
                pong_tx.send(v).unwrap();
            }
        });
        for i in 0..ROUND_TRIPS {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        drop(ping_tx);
        echo.join().unwrap();
    });
    // On one P, each round trip parks and readies both goroutines once.
    assert!(after.context_switches - before.context_switches >= 2 * ROUND_TRIPS);
}

#[test]
fn sleeps_fire_timers() {
    let rt = runtime(1);
    let (before, after) = around(&rt, || {
        for _ in 0..20 {
            gort::time::sleep(Duration::from_micros(200));
        }
    });
    assert!(after.timers_fired - before.timers_fired >= 20);
}

#[test]
fn a_blocked_socket_read_is_woken_by_the_poller() {
    let rt = runtime(2);
    let (before, after) = around(&rt, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let reader = gort::go(move || {
            let mut buf = [0u8; 5];
            server.read_exact(&mut buf).unwrap();
            buf
        });
        // Long enough for the reader to find the socket empty and park:
        // it only has to start, and the assertions hold however long it
        // takes.
        gort::time::sleep(Duration::from_millis(20));
        client.write_all(b"hello").unwrap();
        assert_eq!(&reader.join().unwrap(), b"hello");
    });
    assert!(after.netpoll_polls > before.netpoll_polls);
    assert!(after.netpoll_wakeups > before.netpoll_wakeups);
}

/// Spin until `stop`, calling into the runtime (a safe point) every few
/// microseconds if `safe_points`, else never.
fn spin(stop: &AtomicBool, safe_points: bool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..200u64 {
            n = black_box(n.wrapping_mul(31).wrapping_add(i));
        }
        if safe_points {
            // A deadline already past: a safe point, and nothing else.
            gort::time::sleep_until(Instant::now());
        }
    }
    n
}

/// With one P, each tick of the main goroutine needs the spinner to give
/// the P up: the only way is a preemption.
fn preempted_spinner(safe_points: bool) -> (Metrics, Metrics) {
    let rt = runtime(1);
    around(&rt, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spinner = gort::go(move || spin(&flag, safe_points));
        for _ in 0..10 {
            gort::time::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
    })
}

#[test]
fn a_spinner_with_safe_points_is_preempted_cooperatively() {
    let (before, after) = preempted_spinner(true);
    assert!(after.preempt_requests > before.preempt_requests);
    assert!(after.preempts_cooperative > before.preempts_cooperative);
}

#[test]
fn a_spinner_without_safe_points_is_preempted_by_signal() {
    let (before, after) = preempted_spinner(false);
    assert!(after.preempt_signals > before.preempt_signals);
    assert!(after.preempts_async > before.preempts_async);
}

#[test]
fn threads_go_idle_when_the_work_is_done() {
    let rt = runtime(2);
    rt.block_on(|| {
        let hs: Vec<_> = (0..4)
            .map(|_| gort::go(|| gort::blocking(|| std::thread::sleep(Duration::from_millis(5)))))
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    // Ms park a moment after their last goroutine; the hang guard is far
    // beyond any scheduling delay.
    let guard = Instant::now() + Duration::from_secs(30);
    while rt.metrics().threads_idle == 0 {
        assert!(Instant::now() < guard, "no M ever went idle");
        std::thread::sleep(Duration::from_millis(1));
    }
    let m = rt.metrics();
    assert!(m.threads_idle <= m.threads_live);
}

/// Goroutines parked by `park`.
struct Parked {
    release: gort::chan::Sender<()>,
    handles: Vec<gort::JoinHandle<usize>>,
    touched: usize,
}

impl Parked {
    /// Release the goroutines and join them.
    fn finish(self) {
        drop(self.release);
        for h in self.handles {
            assert_eq!(h.join().unwrap(), self.touched);
        }
    }
}

/// `n` goroutines of `rt`, each with a `TOUCHED`-byte frame live on its
/// stack, parked until `Parked::finish`; returns once every one has
/// started.
fn park<const TOUCHED: usize>(rt: &Runtime, n: usize) -> Parked {
    rt.block_on(move || {
        let (release_tx, release_rx) = gort::chan::bounded::<()>(0);
        let wg = Arc::new(gort::sync::WaitGroup::new());
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (release, wg) = (release_rx.clone(), Arc::clone(&wg));
                wg.add(1);
                gort::go(move || {
                    let frame = black_box([7u8; TOUCHED]);
                    wg.done();
                    let _ = release.recv();
                    black_box(frame).len()
                })
            })
            .collect();
        wg.wait();
        Parked {
            release: release_tx,
            handles: hs,
            touched: TOUCHED,
        }
    })
}

#[test]
fn touched_stacks_are_resident() {
    const PARKED: usize = 32;
    const TOUCHED: usize = 64 * 1024;
    let rt = runtime(2);
    let before = rt.stack_bytes_resident();
    let parked_goroutines = park::<TOUCHED>(&rt, PARKED);
    let parked = rt.stack_bytes_resident();
    assert!(parked >= before + PARKED * TOUCHED, "{before} -> {parked}");
    parked_goroutines.finish();
}

/// Install a seccomp filter on the calling thread that kills the process
/// at its first `mincore` system call. (x86_64 only, like gort, so the
/// filter need not check the architecture.)
fn forbid_mincore() {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // Load the system call number (`seccomp_data.nr`, offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // mincore: fall through to the kill; anything else: skip it.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_mincore as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with these options reads only `prog` and the filter it
    // points to, both alive across the call; restricting this process is
    // the point of the child that calls it.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &raw const prog),
            0
        );
    }
}

/// `metrics()` costs O(Ps), not O(stack pages): it asks the kernel nothing
/// about stack memory. In a child that dies at any `mincore` call, reading
/// the metrics with goroutines parked succeeds; the costly
/// `stack_bytes_resident` is what dies (which shows the filter works).
#[test]
fn metrics_make_no_mincore_call() {
    use std::os::unix::process::ExitStatusExt;
    let Some((status, stderr)) = common::in_child("metrics_make_no_mincore_call", || {
        let rt = runtime(2);
        let parked = park::<4096>(&rt, 100);
        forbid_mincore();
        let m = rt.metrics();
        assert!(m.goroutines_live >= 100 && m.stacks_allocated >= 100, "{m:?}");
        eprintln!("metrics read");
        let resident = rt.stack_bytes_resident();
        eprintln!("resident read: {resident}");
        parked.finish();
    }) else {
        return;
    };
    assert!(stderr.contains("metrics read"), "status {status:?}, stderr:\n{stderr}");
    assert!(!stderr.contains("resident read"), "{stderr}");
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{stderr}");
}

/// `metrics()` counts 1,000 parked goroutines on every call and
/// `stack_bytes_resident()` sees each one's touched stack page; each call's
/// cost is printed for the log (`--nocapture`), never asserted.
#[test]
fn metrics_and_resident_stacks_see_parked_goroutines() {
    let parked = 1_000;
    let rt = Runtime::builder().procs(2).build().unwrap();
    let goroutines = park::<0>(&rt, parked);
    let calls = 2_000;
    let start = Instant::now();
    let mut live = 0;
    for _ in 0..calls {
        live += black_box(rt.metrics()).goroutines_live;
    }
    let per_call = start.elapsed() / calls as u32;
    assert!(live >= calls * parked);
    let resident_calls = 200;
    let start = Instant::now();
    let mut resident = 0;
    for _ in 0..resident_calls {
        resident = black_box(rt.stack_bytes_resident());
    }
    let per_resident = start.elapsed() / resident_calls as u32;
    assert!(resident >= parked * 4096, "{resident}");
    println!(
        "{parked} parked goroutines: metrics() {per_call:?} per call ({calls} calls), \
         stack_bytes_resident() {per_resident:?} per call ({resident_calls} calls, {resident} bytes)"
    );
    goroutines.finish();
}
