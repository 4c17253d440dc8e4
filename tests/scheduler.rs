//! Scheduler behaviour: yielding on one P, work reaching every P, several
//! runtimes at once, shutdown, and GOMAXPROCS changes under load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gort::Runtime;

mod common;
use common::{in_child, threads_named};

#[test]
fn yield_lets_the_other_goroutine_run_on_one_p() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    rt.block_on(|| {
        // Without yield_now the waiter would own the only P forever.
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let waiter = gort::go(move || {
            let mut spins = 0u64;
            while !f.load(Ordering::Acquire) {
                spins += 1;
                gort::yield_now();
            }
            spins
        });
        let f = Arc::clone(&flag);
        let setter = gort::go(move || f.store(true, Ordering::Release));
        setter.join().unwrap();
        waiter.join().unwrap();
    });
}

#[test]
fn yielding_goroutines_alternate_on_one_p() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    let order = rt.block_on(|| {
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = ['a', 'b']
            .into_iter()
            .map(|c| {
                let order = Arc::clone(&order);
                gort::go(move || {
                    for _ in 0..20 {
                        order.lock().unwrap().push(c);
                        gort::yield_now();
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        Arc::try_unwrap(order).unwrap().into_inner().unwrap()
    });
    assert_eq!(order.len(), 40);
    assert!(order.windows(2).all(|w| w[0] != w[1]), "not alternating: {order:?}");
}

#[test]
fn work_reaches_every_p() {
    let rt = Runtime::builder().procs(4).name("spread").build().unwrap();
    let threads = rt.block_on(|| {
        let threads = Arc::new(Mutex::new(HashSet::new()));
        // Each goroutine blocks its thread briefly, so queued goroutines are
        // only run if other Ms wake up and take them: from the global queue
        // while threads are being started (a P that waits for a new thread
        // leaves its queue there), by stealing once idle Ms exist.
        for _round in 0..50 {
            let hs: Vec<_> = (0..32)
                .map(|_| {
                    let threads = Arc::clone(&threads);
                    gort::go(move || {
                        threads.lock().unwrap().insert(std::thread::current().id());
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            let m = gort::runtime::metrics();
            if m.ran_per_p.iter().all(|&n| n > 0) && m.steals > 0 {
                break;
            }
        }
        Arc::try_unwrap(threads).unwrap().into_inner().unwrap()
    });
    let m = rt.metrics();
    assert!(
        m.ran_per_p.iter().all(|&n| n > 0),
        "some P never ran a goroutine: {:?}",
        m.ran_per_p
    );
    assert!(threads.len() >= 4, "only {} threads ran goroutines", threads.len());
    assert!(m.steals > 0);
}

#[test]
fn two_runtimes_side_by_side_keep_their_goroutines() {
    let alpha = Runtime::builder().procs(2).name("alpha").build().unwrap();
    let beta = Runtime::builder().procs(1).name("beta").build().unwrap();
    let run_on = |rt: &Runtime| {
        rt.block_on(|| {
            let hs: Vec<_> = (0..200)
                .map(|_| gort::go(|| std::thread::current().name().unwrap_or("").to_owned()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect::<HashSet<String>>()
        })
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_on(&alpha));
        let b = s.spawn(|| run_on(&beta));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.iter().all(|n| n.starts_with("alpha-m")), "{a:?}");
    assert!(b.iter().all(|n| n.starts_with("beta-m")), "{b:?}");
    assert_eq!(alpha.procs(), 2);
    assert_eq!(beta.procs(), 1);
    // A goroutine of one runtime can join one of the other.
    let h = beta.go(|| 11);
    assert_eq!(alpha.block_on(move || h.join().unwrap()), 11);
}

#[test]
fn dropping_a_runtime_joins_its_threads() {
    let rt = Runtime::builder().procs(3).name("dropme").build().unwrap();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..100u64)
            .map(|i| {
                gort::go(move || {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(n, 4950);
    assert!(!threads_named("dropme-m").is_empty());
    assert!(rt.metrics().threads_started >= 1);
    drop(rt);
    assert_eq!(threads_named("dropme-m").len(), 0);
}

#[test]
fn goroutines_that_never_ran_fail_their_join_at_shutdown() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    let (started, gate) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (s, g) = (Arc::clone(&started), Arc::clone(&gate));
    // Occupy the only P until the runtime has been told to stop, so the
    // second goroutine is still queued then.
    let busy = rt.go(move || {
        s.store(true, Ordering::Release);
        while !g.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    });
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let queued = rt.go(|| 1);
    let stopper = std::thread::spawn(move || drop(rt));
    // Give the stopper time to begin the shutdown (it then waits for `busy`).
    std::thread::sleep(std::time::Duration::from_millis(100));
    gate.store(true, Ordering::Release);
    stopper.join().unwrap();
    busy.join().unwrap();
    // Never a hang: the queued goroutine reports that it never ran (or, on
    // a machine too loaded to start the shutdown within 100 ms, it ran).
    match queued.join() {
        Ok(v) => assert_eq!(v, 1),
        Err(e) => assert!(e.downcast_ref::<&str>().is_some_and(|m| m.contains("never ran"))),
    }
}

#[test]
fn set_procs_up_and_down_while_goroutines_run() {
    let rt = Runtime::builder().procs(2).build().unwrap();
    let total = Arc::new(AtomicU64::new(0));
    let t = Arc::clone(&total);
    let sizes = rt.block_on(move || {
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let t = Arc::clone(&t);
                gort::go(move || {
                    for _ in 0..500 {
                        t.fetch_add(1, Ordering::Relaxed);
                        gort::yield_now();
                    }
                })
            })
            .collect();
        let mut sizes = Vec::new();
        for n in [4, 1, 3, 1, 8, 2] {
            let old = gort::runtime::set_procs(n);
            sizes.push((old, gort::runtime::procs()));
            for _ in 0..50 {
                gort::yield_now();
            }
        }
        workers.into_iter().for_each(|h| h.join().unwrap());
        sizes
    });
    assert_eq!(total.load(Ordering::Relaxed), 64 * 500);
    assert_eq!(sizes, [(2, 4), (4, 1), (1, 3), (3, 1), (1, 8), (8, 2)]);
    assert_eq!(rt.metrics().ran_per_p.len(), 2);
    // Shrinking to one P leaves one P running work.
    rt.set_procs(1);
    let hs: Vec<_> = (0..100u32).map(|i| rt.go(move || i)).collect();
    assert_eq!(hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>(), 4950);
}

#[test]
fn a_runtime_at_its_thread_limit_still_runs_everything() {
    let rt = Runtime::builder().procs(4).max_threads(1).build().unwrap();
    let sum = rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64).map(|i| gort::go(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, 499_500);
    assert_eq!(rt.metrics().threads_started, 1);
}

#[test]
#[should_panic(expected = "procs must be between 1 and 1024")]
fn set_procs_zero_panics() {
    gort::runtime::set_procs(0);
}

/// Two goroutines spin, one on each of two Ps; `set_procs(1)` retires P 1
/// under the one there; then each spawns a child and waits for it, by
/// computing or in `gort::blocking`. A retired P's queue is invisible to
/// stealers, so unless sysmon makes its holder let it go, the child queued
/// there never runs. Returns, per parent, whether its child ran.
fn spawn_on_a_retired_p_and_wait(in_blocking: bool) -> Vec<bool> {
    let rt = Runtime::builder().procs(2).build().unwrap();
    let started = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let parents: Vec<_> = (0..2)
        .map(|_| {
            let (started, go) = (Arc::clone(&started), Arc::clone(&go));
            rt.go(move || {
                started.fetch_add(1, Ordering::SeqCst);
                while !go.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                let (tx, rx) = std::sync::mpsc::channel();
                let child = gort::go(move || tx.send(()).unwrap());
                // A hang guard, not a timing assertion: the child needs
                // microseconds once anything lets it run.
                let give_up = common::HANG_GUARD / 4;
                let ran = if in_blocking {
                    gort::blocking(|| rx.recv_timeout(give_up).is_ok())
                } else {
                    let until = std::time::Instant::now() + give_up;
                    loop {
                        if rx.try_recv().is_ok() {
                            break true;
                        }
                        if std::time::Instant::now() > until {
                            break false;
                        }
                        std::hint::spin_loop();
                    }
                };
                child.join().unwrap();
                ran
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    rt.set_procs(1);
    go.store(true, Ordering::SeqCst);
    parents.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_child_spawned_on_a_retired_p_runs_while_its_parent_computes() {
    for _ in 0..3 {
        assert_eq!(spawn_on_a_retired_p_and_wait(false), [true, true]);
    }
}

#[test]
fn a_child_spawned_on_a_retired_p_runs_while_its_parent_blocks() {
    for _ in 0..3 {
        assert_eq!(spawn_on_a_retired_p_and_wait(true), [true, true]);
    }
}

/// A goroutine that computes until `stop` (so preemption has to take its
/// turns), then calls into the runtime a few ways, maybe without a P by
/// then: the runtime was dropped meanwhile.
fn compute_then_call_in(stop: &AtomicBool) {
    let (tx, rx) = gort::chan::bounded::<u32>(1);
    while !stop.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
    gort::yield_now();
    let _ = tx.try_send(1);
    let _ = rx.try_recv();
    let _ = gort::go(|| ());
    gort::time::sleep(Duration::from_micros(10));
}

#[test]
fn dropping_a_runtime_whatever_its_goroutines_do() {
    let Some((status, stderr)) = in_child("dropping_a_runtime_whatever_its_goroutines_do", || {
        for round in 0..200u64 {
            let name = format!("shut{round}");
            let rt = Runtime::builder()
                .procs(1 + round as usize % 3)
                .preempt_slice(Duration::from_micros(100))
                .name(&name)
                .build()
                .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            for _ in 0..3 {
                let stop = Arc::clone(&stop);
                rt.go(move || compute_then_call_in(&stop));
            }
            for _ in 0..2 {
                let stop = Arc::clone(&stop);
                rt.go(move || {
                    while !stop.load(Ordering::Relaxed) {
                        gort::blocking(|| std::thread::sleep(Duration::from_micros(200)));
                    }
                });
            }
            let locked_stop = Arc::clone(&stop);
            rt.go(move || {
                gort::runtime::lock_os_thread();
                compute_then_call_in(&locked_stop);
            });
            // Unlocks while it may be running P-less after the shutdown,
            // and computes on: its queue entry must stay guarded.
            let unlocking_stop = Arc::clone(&stop);
            rt.go(move || {
                gort::runtime::lock_os_thread();
                while !unlocking_stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                gort::runtime::unlock_os_thread();
                let until = std::time::Instant::now() + Duration::from_micros(300);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                compute_then_call_in(&unlocking_stop);
            });
            let (never_tx, never_rx) = gort::chan::bounded::<()>(0);
            let locked_rx = never_rx.clone();
            rt.go(move || {
                gort::runtime::lock_os_thread();
                let _ = locked_rx.recv();
            });
            rt.go(move || {
                let _ = never_rx.recv();
            });
            rt.go(|| gort::time::sleep(Duration::from_secs(3600)));
            rt.go(|| {
                // Refused once the runtime has shut down.
                if let Ok(listener) = gort::net::TcpListener::bind("127.0.0.1:0") {
                    let _ = listener.accept();
                }
            });
            std::thread::sleep(Duration::from_micros(100 * (round % 20)));
            // The computing goroutines stop before, while or after the
            // runtime shuts down; the drop waits for them either way.
            let stopper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(100 * (round % 7)));
                stop.store(true, Ordering::Relaxed);
            });
            drop(rt);
            stopper.join().unwrap();
            drop(never_tx);
            // A joined thread's /proc entry can outlive the join a moment.
            let mut left = threads_named(&format!("{name}-"));
            for _ in 0..5000 {
                if left.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
                left = threads_named(&format!("{name}-"));
            }
            assert!(left.is_empty(), "threads of {name} outlived it: {left:?}");
        }
        eprintln!("all rounds done");
    }) else {
        return;
    };
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("all rounds done"), "{stderr}");
}

/// `k` goroutines lock their threads and wait on a channel that the main
/// thread sends `k` values on 20 ms later, on one P with at most
/// `max_threads` threads; returns the sum received. Before the fix this
/// hung whenever `k >= max_threads` (issue 22, A.3): every thread slept
/// for its locked goroutine, and a readied one waited for a thread that
/// the limit forbade.
fn locked_goroutines_at_the_thread_limit(k: u32, max_threads: usize) -> u32 {
    let rt = Runtime::builder()
        .procs(1)
        .max_threads(max_threads)
        .name("locked-limit")
        .build()
        .unwrap();
    let (tx, rx) = gort::chan::unbounded::<u32>();
    let handles: Vec<_> = (0..k)
        .map(|_| {
            let rx = rx.clone();
            rt.go(move || {
                gort::runtime::lock_os_thread();
                rx.recv().unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    for v in 1..=k {
        tx.send(v).unwrap();
    }
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn locked_goroutines_at_the_thread_limit_all_run() {
    let cases = [(4, 4), (8, 4), (3, 1)];
    let Some((status, stderr)) = in_child("locked_goroutines_at_the_thread_limit_all_run", || {
        for (k, max) in cases {
            assert_eq!(
                locked_goroutines_at_the_thread_limit(k, max),
                k * (k + 1) / 2,
                "k={k}, max_threads={max}"
            );
        }
    }) else {
        return;
    };
    assert!(status.success(), "{status}\n{stderr}");
}
