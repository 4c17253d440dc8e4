//! Goroutine-aware time: sleeps park the goroutine (not the thread), fire in
//! deadline order, and never early. No test asserts an upper bound on time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gort::Runtime;

#[test]
fn sleeps_never_end_early() {
    let hs: Vec<_> = (1..=20u64)
        .map(|ms| {
            gort::go(move || {
                let d = Duration::from_millis(ms);
                let t = Instant::now();
                gort::time::sleep(d);
                t.elapsed() >= d
            })
        })
        .collect();
    assert!(hs.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn timers_fire_in_deadline_order_on_one_p() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    let order = rt.block_on(|| {
        let order = Arc::new(Mutex::new(Vec::new()));
        // Spawned in reverse so spawn order cannot explain the result.
        let hs: Vec<_> = (0..10u64)
            .rev()
            .map(|i| {
                let order = Arc::clone(&order);
                gort::go(move || {
                    gort::time::sleep(Duration::from_millis(5 + 10 * i));
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        Arc::try_unwrap(order).unwrap().into_inner().unwrap()
    });
    assert_eq!(order, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_sleeping_goroutine_does_not_hold_its_thread() {
    // One P: while one goroutine sleeps, another must be able to run, and
    // the sleeper must come back afterwards.
    let rt = Runtime::builder().procs(1).build().unwrap();
    let (slept, ran_meanwhile) = rt.block_on(|| {
        let done = Arc::new(Mutex::new(Vec::new()));
        let d = Arc::clone(&done);
        let sleeper = gort::go(move || {
            gort::time::sleep(Duration::from_millis(30));
            d.lock().unwrap().push("sleeper");
        });
        let d = Arc::clone(&done);
        let worker = gort::go(move || d.lock().unwrap().push("worker"));
        worker.join().unwrap();
        sleeper.join().unwrap();
        let done = done.lock().unwrap().clone();
        (done.contains(&"sleeper"), done.first() == Some(&"worker"))
    });
    assert!(slept && ran_meanwhile);
}

#[test]
fn zero_and_huge_durations() {
    gort::go(|| gort::time::sleep(Duration::ZERO)).join().unwrap();
    gort::go(|| gort::time::sleep_until(Instant::now() - Duration::from_secs(1)))
        .join()
        .unwrap();
    // A sleep of Duration::MAX parks forever without overflowing; we only
    // check that starting it neither panics nor returns early.
    let forever = gort::go(|| gort::time::sleep(Duration::MAX));
    gort::time::sleep(Duration::from_millis(10));
    assert!(gort::runtime::num_goroutine() >= 1);
    drop(forever);
}

#[test]
fn many_sleepers_all_wake() {
    let rt = Runtime::builder().procs(2).build().unwrap();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| gort::go(move || gort::time::sleep(Duration::from_millis(1 + i % 20))))
            .collect();
        hs.into_iter().map(|h| h.join().is_ok() as usize).sum::<usize>()
    });
    assert_eq!(n, 10_000);
}

#[test]
fn sleep_from_a_plain_thread_blocks_that_thread() {
    let t = Instant::now();
    gort::time::sleep(Duration::from_millis(3));
    assert!(t.elapsed() >= Duration::from_millis(3));
}

#[test]
fn after_delivers_once_and_not_early() {
    let start = Instant::now();
    let rx = gort::time::after(Duration::from_millis(5));
    let fired = gort::go(move || {
        let t = rx.recv().unwrap();
        (t, rx.recv_timeout(Duration::from_millis(20)).is_err())
    })
    .join()
    .unwrap();
    assert!(fired.0 >= start + Duration::from_millis(5));
    assert!(fired.1, "after() delivers exactly one value");
}

#[test]
fn stopped_timer_never_delivers() {
    gort::go(|| {
        let t = gort::time::Timer::new(Duration::from_millis(5));
        assert!(t.stop(), "a pending timer reports it was stopped");
        assert!(!t.stop(), "a second stop finds nothing pending");
        gort::time::sleep(Duration::from_millis(20));
        assert!(t.receiver().try_recv().is_err());
    })
    .join()
    .unwrap();
}

#[test]
fn reset_and_stop_racing_the_deadline_leave_no_stale_value() {
    // Stop or reset right around the deadline, many times: whatever the
    // interleaving, after stop() nothing arrives, and after reset() only
    // the new arming's value does (Go 1.23 semantics).
    let hs: Vec<_> = (0..200u64)
        .map(|i| {
            gort::go(move || {
                let t = gort::time::Timer::new(Duration::from_micros(200));
                gort::time::sleep(Duration::from_micros(150 + (i % 10) * 10));
                if i % 2 == 0 {
                    t.stop();
                    gort::time::sleep(Duration::from_millis(1));
                    t.receiver().try_recv().is_err()
                } else {
                    let reset_at = Instant::now();
                    t.reset(Duration::from_millis(2));
                    let got = t.receiver().recv().unwrap();
                    got >= reset_at + Duration::from_millis(2)
                }
            })
        })
        .collect();
    assert!(hs.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn a_ticker_ticks_and_stops() {
    gort::go(|| {
        let t = gort::time::Ticker::new(Duration::from_millis(2));
        let first = t.receiver().recv().unwrap();
        let second = t.receiver().recv().unwrap();
        // Ticks follow a fixed schedule (Go's), so a late first tick may be
        // followed closely by an on-time second one: only order is certain.
        assert!(second > first, "ticks arrive in order");
        t.stop();
        gort::time::sleep(Duration::from_millis(10));
        assert!(t.receiver().try_recv().is_err(), "no tick after stop");
        t.reset(Duration::from_millis(1));
        assert!(t.receiver().recv().is_ok(), "reset restarts it");
        let rx = gort::time::tick(Duration::from_millis(1));
        assert!(rx.recv().is_ok() && rx.recv().is_ok());
    })
    .join()
    .unwrap();
}

#[test]
#[should_panic(expected = "non-positive interval")]
fn a_zero_ticker_panics_like_go() {
    gort::time::Ticker::new(Duration::ZERO);
}

/// A timer started from a plain thread just as the last M with work gives
/// up its P: that M had scanned the heaps before the timer landed, and the
/// starter's `wakep` found it still spinning, so no other M was told. The
/// M must read the heaps again before it sleeps. The moment is hit by
/// starting the timer at varying delays after a goroutine ends; a timer
/// lost there never fires (the receive's limit is only a hang guard).
#[test]
fn a_timer_started_while_the_last_m_goes_idle_fires() {
    for i in 0..3000u32 {
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ended);
        drop(gort::go(move || flag.store(true, std::sync::atomic::Ordering::Release)));
        while !ended.load(std::sync::atomic::Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for _ in 0..i % 300 {
            std::hint::spin_loop();
        }
        // From this plain thread: onto P 0's heap of the default runtime.
        let fired = gort::time::after(Duration::from_millis(1));
        assert!(
            fired.recv_timeout(Duration::from_secs(30)).is_ok(),
            "round {i}: the timer never fired"
        );
    }
}

/// A sleep whose timer sits on a P that `set_procs` then retires ends even
/// though the remaining P never runs out of work (so no M goes idle and
/// runs every heap).
#[test]
fn a_sleep_on_a_retired_p_ends_while_the_other_p_is_busy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = Runtime::builder().procs(2).build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let woke = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (started, woke) = (Arc::clone(&started), Arc::clone(&woke));
        drop(rt.go(move || {
            started.fetch_add(1, Ordering::SeqCst);
            // Both running at once: one sleeps on P 0's heap, one on P 1's.
            while started.load(Ordering::SeqCst) < 2 {
                std::hint::spin_loop();
            }
            gort::time::sleep(Duration::from_millis(30));
            woke.fetch_add(1, Ordering::SeqCst);
        }));
    }
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    rt.set_procs(1);
    let seen = rt.block_on(move || {
        // Busy until both woke; the limit is only a hang guard.
        let guard = Instant::now() + Duration::from_secs(30);
        while woke.load(Ordering::SeqCst) < 2 && Instant::now() < guard {
            gort::yield_now();
        }
        woke.load(Ordering::SeqCst)
    });
    assert_eq!(seen, 2, "a sleep on the retired P never ended");
}

/// Go 1.23: a timer whose value was sent but not received has not fired
/// for the program, so `stop` and `reset` report it pending, and drop the
/// value.
#[test]
fn stop_and_reset_after_an_unreceived_fire_report_pending() {
    gort::go(|| {
        let t = gort::time::Timer::new(Duration::from_millis(1));
        // The limit is only a hang guard.
        let guard = Instant::now() + Duration::from_secs(30);
        let wait_for_fire = |t: &gort::time::Timer| {
            while t.receiver().is_empty() {
                assert!(Instant::now() < guard, "the timer never fired");
                gort::time::sleep(Duration::from_millis(1));
            }
        };
        wait_for_fire(&t);
        assert!(t.stop());
        assert!(t.receiver().try_recv().is_err());
        assert!(!t.stop(), "stopped twice");
        t.reset(Duration::from_millis(1));
        wait_for_fire(&t);
        assert!(t.reset(Duration::from_secs(3600)));
        assert!(t.receiver().try_recv().is_err());
        // Received: now it has fired for the program.
        t.reset(Duration::from_millis(1));
        t.receiver().recv().unwrap();
        assert!(!t.stop());
    })
    .join()
    .unwrap();
}

/// A ticker re-arms itself from its callback, which sysmon runs when it
/// queues a preempted goroutine: the next arming stays on the ticker's
/// runtime (it went to the default runtime, the current one of sysmon's
/// thread).
#[test]
fn a_ticker_stays_on_its_runtime_when_sysmon_runs_its_callback() {
    let rt = Runtime::builder()
        .procs(1)
        .preempt_slice(Duration::from_millis(1))
        .build()
        .unwrap();
    rt.block_on(|| {
        let ticks = gort::go(|| {
            let t = gort::time::Ticker::new(Duration::from_millis(1));
            for _ in 0..100 {
                t.receiver().recv().unwrap();
            }
        });
        // Computes without runtime calls: only preemption by signal lets
        // the ticker's goroutine run, and sysmon queues it.
        let end = Instant::now() + Duration::from_millis(300);
        gort::go(move || {
            while Instant::now() < end {
                std::hint::black_box(0);
            }
        })
        .join()
        .unwrap();
        ticks.join().unwrap();
    });
    let m = rt.metrics();
    assert!(m.preempts_async > 0, "nothing was preempted: the test proved nothing");
    assert!(
        m.timers_fired >= 100,
        "only {} of the 100 ticks fired on the ticker's runtime",
        m.timers_fired
    );
}

/// Go 1.23: a timer nobody can receive from any more is freed before it
/// is due. `after` in a `select` loop whose other case always wins, `Timer`s
/// and `Ticker`s dropped without `stop`: 30,000 hour-long timers, and the
/// heaps hold only not-yet-swept leftovers (before, every one stayed queued
/// for the hour). A timer still received from lives through the sweeps and
/// fires.
#[test]
fn timers_nobody_can_receive_from_are_freed_before_they_are_due() {
    const ROUNDS: usize = 10_000;
    let rt = Runtime::builder().procs(1).build().unwrap();
    let kept = rt.block_on(|| {
        let (tx, rx) = gort::chan::bounded::<usize>(1);
        let hour = Duration::from_secs(3600);
        let kept = gort::time::after(Duration::from_millis(50));
        for i in 0..ROUNDS {
            tx.send(i).unwrap();
            gort::select! {
                recv(rx) -> got => assert_eq!(got, Ok(i)),
                recv(gort::time::after(hour)) -> _ => unreachable!("an hour passed"),
            }
            drop(gort::time::Timer::new(hour));
            drop(gort::time::Ticker::new(hour));
        }
        kept
    });
    let queued = rt.metrics().timers_queued;
    assert!(queued < 1_000, "{queued} timers still queued after {ROUNDS} rounds");
    assert!(
        kept.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the timer still received from was dropped"
    );
}

/// A runtime dropped with a channel timer still pending (and no goroutine
/// left) frees it: a plain thread receiving from it sees the channel
/// disconnected rather than waiting for good.
#[test]
fn a_channel_timer_of_a_dropped_runtime_disconnects_its_receivers() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    let rx = rt.block_on(|| gort::time::after(Duration::from_secs(3600)));
    drop(rt);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(gort::chan::RecvTimeoutError::Disconnected)
    );
}

/// Go 1.23's contract: `stop` and `reset` return true while the timer is
/// pending — armed, or fired with its value not yet received — so nobody
/// receiving means they never return false, and `if !t.stop() {
/// t.receiver().recv() }` never blocks for ever. Stopped and reset right
/// around the deadline from 16 goroutines at once, so that some calls land
/// between the heap taking a timer out as fired and its callback sending
/// (where they returned false, and the send was then suppressed: 4,622
/// stops and 7,579 resets of 80,000 each, none followed by a value).
#[test]
fn stop_and_reset_around_the_deadline_never_deny_an_unreceived_value() {
    const GOROUTINES: u64 = 16;
    const ROUNDS: u64 = 5_000;
    let rt = Runtime::builder().procs(2).build().unwrap();
    for reset in [false, true] {
        let (denied_then_nothing, denied_then_value) = rt.block_on(move || {
            let hs: Vec<_> = (0..GOROUTINES)
                .map(|g| {
                    gort::go(move || {
                        let (mut nothing, mut value) = (0u64, 0u64);
                        for i in 0..ROUNDS {
                            let t = gort::time::Timer::new(Duration::from_micros(50));
                            gort::time::sleep(Duration::from_micros(40 + (g + i) % 20));
                            let pending = if reset {
                                t.reset(Duration::from_secs(3600))
                            } else {
                                t.stop()
                            };
                            if !pending {
                                // Go's idiom would receive now: does a value come?
                                match t.receiver().recv_timeout(Duration::from_millis(5)) {
                                    Ok(_) => value += 1,
                                    Err(_) => nothing += 1,
                                }
                            }
                        }
                        (nothing, value)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        let op = if reset { "reset" } else { "stop" };
        assert_eq!(
            (denied_then_nothing, denied_then_value),
            (0, 0),
            "{op}() returned false (no value pending) although nobody received, \
             then nothing / a value arrived, in {} rounds",
            GOROUTINES * ROUNDS
        );
    }
}

#[test]
fn after_func_runs_on_a_goroutine_once_and_stop_prevents_it() {
    let (tx, rx) = gort::chan::unbounded();
    let t = tx.clone();
    let fired = gort::time::after_func(Duration::from_millis(2), move || {
        // On a goroutine of its own: gort::current works.
        t.send(gort::current().id()).unwrap();
    });
    assert!(rx.recv().unwrap() > 0);
    assert!(!fired.stop(), "it had fired");
    let t = tx.clone();
    let stopped = gort::time::after_func(Duration::from_secs(3600), move || t.send(0).unwrap());
    assert!(stopped.stop());
    assert!(!stopped.stop());
    let t = tx.clone();
    let never = gort::time::after_func(Duration::MAX, move || t.send(0).unwrap());
    let t = tx.clone();
    let _now = gort::time::after_func(Duration::ZERO, move || t.send(1).unwrap());
    assert_eq!(rx.recv(), Ok(1));
    assert!(never.stop(), "a timer for never is pending until stopped");
    // Every stopped function was dropped: `tx` is the last sender.
    drop(tx);
    assert!(rx.recv().is_err());
}

#[test]
fn after_func_does_not_run_its_function_on_the_timer_thread() {
    Runtime::builder().procs(1).build().unwrap().block_on(|| {
        let (tx, rx) = gort::chan::bounded(0);
        // Blocks in `send` until received: on a scheduler thread this
        // would stall every timer and goroutine of the P.
        let _t = gort::time::after_func(Duration::ZERO, move || tx.send("sent").unwrap());
        gort::time::sleep(Duration::from_millis(2));
        assert_eq!(rx.recv(), Ok("sent"));
    });
}
