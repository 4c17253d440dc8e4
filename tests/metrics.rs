//! `runtime::metrics()`: each counter moves when a workload causes what it
//! counts. Every test uses a runtime of its own and asserts on differences
//! between two readings, never on how long anything took.

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

#[test]
fn touched_stacks_are_resident() {
    const PARKED: usize = 32;
    const TOUCHED: usize = 64 * 1024;
    let rt = runtime(2);
    rt.block_on(|| {
        let before = gort::runtime::metrics().stack_bytes_resident;
        let (release_tx, release_rx) = gort::chan::bounded::<()>(0);
        let wg = Arc::new(gort::sync::WaitGroup::new());
        let hs: Vec<_> = (0..PARKED)
            .map(|_| {
                let (release, wg) = (release_rx.clone(), Arc::clone(&wg));
                wg.add(1);
                gort::go(move || {
                    let frame = black_box([7u8; TOUCHED]);
                    wg.done();
                    let _ = release.recv();
                    black_box(frame[TOUCHED - 1])
                })
            })
            .collect();
        wg.wait();
        let parked = gort::runtime::metrics().stack_bytes_resident;
        assert!(parked >= before + PARKED * TOUCHED, "{before} -> {parked}");
        drop(release_tx);
        hs.into_iter().for_each(|h| assert_eq!(h.join().unwrap(), 7));
    });
}

/// Not a check but a measurement, run by hand (`cargo test --release
/// --test metrics -- --ignored --nocapture metrics_cost`): what one
/// `metrics()` call costs with 1,000 and 100,000 goroutines parked. It
/// prints the figures; the only assertions are about the goroutines it
/// parks, never about time.
#[test]
#[ignore = "a measurement, run by hand"]
fn metrics_cost_with_parked_goroutines() {
    for parked in [1_000, 100_000] {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(move || {
            let (release_tx, release_rx) = gort::chan::bounded::<()>(0);
            let wg = Arc::new(gort::sync::WaitGroup::new());
            let hs: Vec<_> = (0..parked)
                .map(|_| {
                    let (release, wg) = (release_rx.clone(), Arc::clone(&wg));
                    wg.add(1);
                    gort::go(move || {
                        wg.done();
                        let _ = release.recv();
                    })
                })
                .collect();
            wg.wait();
            assert_eq!(gort::runtime::metrics().goroutines_live, parked + 1);
            let calls = if parked > 10_000 { 20 } else { 2_000 };
            let start = Instant::now();
            let mut threads = 0;
            for _ in 0..calls {
                threads += black_box(gort::runtime::metrics()).threads_live;
            }
            let per_call = start.elapsed() / calls as u32;
            assert!(threads >= calls);
            println!("metrics() with {parked} parked goroutines: {per_call:?} per call ({calls} calls)");
            drop(release_tx);
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
    }
}
