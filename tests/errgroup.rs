//! gort::sync::ErrGroup and SingleFlight: the substance of x/sync's
//! errgroup and singleflight tests — first error wins, the context is
//! cancelled on it, limits hold, try_go refuses when full, duplicates
//! share one call — plus gort's own: a task's panic reaches `wait`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gort::context::{Context, Error};
use gort::sync::{ErrGroup, SingleFlight};

mod common;
use common::guarded;

fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    guarded(move || gort::run(f))
}

/// x/sync's TestZeroGroup: for each list of task results, `wait` returns
/// the first error in completion order — here made the list order by
/// running the tasks one after another.
#[test]
fn wait_returns_the_first_error() {
    run(|| {
        let cases: [&[Result<(), &str>]; 5] = [
            &[],
            &[Ok(())],
            &[Err("e1")],
            &[Err("e1"), Ok(())],
            &[Ok(()), Err("e1"), Err("e2")],
        ];
        for results in cases {
            let g = ErrGroup::new();
            let mut first = Ok(());
            for &r in results {
                g.go(move || r);
                if first.is_ok() {
                    first = r;
                }
                // Completion order = list order.
                while g_running(&g) {
                    gort::yield_now();
                }
            }
            assert_eq!(g.wait(), first, "{results:?}");
        }
    });
}

/// Whether a task of `g` may still be running (via `try_go` under a limit
/// would change the group; the Debug output carries the count).
fn g_running<E>(g: &ErrGroup<E>) -> bool {
    !format!("{g:?}").contains("tasks: 0")
}

#[test]
fn every_task_runs_even_after_an_error() {
    run(|| {
        let g = ErrGroup::new();
        let ran = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let ran = Arc::clone(&ran);
            g.go(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                if i % 10 == 3 { Err(i) } else { Ok(()) }
            });
        }
        let e = g.wait().unwrap_err();
        assert_eq!(e % 10, 3);
        assert_eq!(ran.load(Ordering::SeqCst), 100);
    });
}

/// x/sync's TestWithContext: the context is cancelled by the first error
/// (the other tasks see it), and by `wait` when all succeed.
#[test]
fn with_context_cancels_on_the_first_error_and_after_wait() {
    run(|| {
        let (g, ctx) = ErrGroup::with_context(&Context::background());
        for _ in 0..10 {
            let ctx = ctx.clone();
            g.go(move || {
                let _ = ctx.done().recv();
                Err(format!("stopped: {}", ctx.err().unwrap()))
            });
        }
        g.go(|| Err("first".to_string()));
        assert_eq!(g.wait(), Err("first".to_string()));
        assert_eq!(ctx.err(), Some(Error::Canceled));

        let (g, ctx) = ErrGroup::<()>::with_context(&Context::background());
        g.go(|| Ok(()));
        assert_eq!(ctx.err(), None);
        assert_eq!(g.wait(), Ok(()));
        assert_eq!(ctx.err(), Some(Error::Canceled));
    });
}

#[test]
fn with_context_inherits_the_parents_cancellation() {
    run(|| {
        let (parent, cancel) = Context::background().with_cancel();
        let (g, ctx) = ErrGroup::<Error>::with_context(&parent);
        let c = ctx.clone();
        g.go(move || gort::time::sleep_ctx(&c, Duration::from_secs(3600)));
        cancel.cancel();
        assert_eq!(g.wait(), Err(Error::Canceled));
    });
}

/// x/sync's TestGoLimit: never more than the limit at once.
#[test]
fn a_limit_bounds_how_many_tasks_run_at_once() {
    run(|| {
        const LIMIT: usize = 3;
        let g = ErrGroup::<()>::new();
        g.set_limit(LIMIT);
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for _ in 0..50 {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            g.go(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                assert!(now <= LIMIT, "{now} tasks running under a limit of {LIMIT}");
                gort::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
        }
        g.wait().unwrap();
        assert!(peak.load(Ordering::SeqCst) >= 1);
        // Limits change only while idle; usize::MAX removes the limit.
        g.set_limit(usize::MAX);
        let (release, gate) = gort::chan::bounded::<()>(0);
        for _ in 0..10 {
            let gate = gate.clone();
            assert!(g.try_go(move || {
                let _ = gate.recv();
                Ok(())
            }));
        }
        drop(release);
        g.wait().unwrap();
    });
}

/// x/sync's TestTryGo: refused while full, accepted again once a task ends.
#[test]
fn try_go_refuses_while_the_group_is_full() {
    run(|| {
        let g = ErrGroup::<&str>::new();
        g.set_limit(2);
        let (release, gate) = gort::chan::bounded::<()>(0);
        for _ in 0..2 {
            let gate = gate.clone();
            assert!(g.try_go(move || {
                let _ = gate.recv();
                Ok(())
            }));
        }
        assert!(!g.try_go(|| Err("must not run")));
        drop(release);
        assert_eq!(g.wait(), Ok(()));
        assert!(g.try_go(|| Err("ran")));
        assert_eq!(g.wait(), Err("ran"));
    });
}

#[test]
fn changing_the_limit_while_tasks_run_panics() {
    run(|| {
        let g = ErrGroup::<()>::new();
        let (release, gate) = gort::chan::bounded::<()>(0);
        g.go(move || {
            let _ = gate.recv();
            Ok(())
        });
        let g2 = g.clone();
        let refused = gort::go(move || g2.set_limit(1)).join().unwrap_err();
        let msg = refused.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("modify limit while 1 goroutines"), "{msg}");
        drop(release);
        g.wait().unwrap();
    });
}

#[test]
fn a_panicking_task_cancels_the_context_and_wait_resumes_the_panic() {
    run(|| {
        let (g, ctx) = ErrGroup::<()>::with_context(&Context::background());
        let c = ctx.clone();
        g.go(move || {
            let _ = c.done().recv();
            Ok(())
        });
        g.go(|| panic!("task exploded"));
        let waiter = gort::go(move || g.wait());
        let payload = waiter.join().unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task exploded"));
        assert_eq!(ctx.err(), Some(Error::Canceled));
    });
}

#[test]
fn tasks_may_start_more_tasks() {
    run(|| {
        let g = ErrGroup::<usize>::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let (g2, ran2) = (g.clone(), Arc::clone(&ran));
        g.go(move || {
            for i in 0..10 {
                let ran = Arc::clone(&ran2);
                g2.go(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    if i == 9 { Err(i) } else { Ok(()) }
                });
            }
            Ok(())
        });
        assert_eq!(g.wait(), Err(9));
        assert_eq!(ran.load(Ordering::SeqCst), 10);
    });
}

/// singleflight's TestDoDupSuppress: callers that arrive while a call is
/// in flight share its one result.
#[test]
fn single_flight_shares_one_call_among_concurrent_callers() {
    run(|| {
        let flights = Arc::new(SingleFlight::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = gort::chan::bounded::<()>(0);
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (flights, calls, gate) = (Arc::clone(&flights), Arc::clone(&calls), gate.clone());
                gort::go(move || {
                    flights.run("key", move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.recv();
                        "bar".to_string()
                    })
                })
            })
            .collect();
        while flights.waiting(&"key") < 9 {
            gort::yield_now();
        }
        drop(release);
        for c in callers {
            assert_eq!(c.join().unwrap(), ("bar".to_string(), true));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The flight is over: the next call runs its own function.
        assert_eq!(flights.run("key", || "new".to_string()), ("new".to_string(), false));
    });
}

/// singleflight's TestForget: a forgotten key starts a new flight while the
/// old one is still running.
#[test]
fn single_flight_forget_starts_a_new_flight() {
    run(|| {
        let flights = Arc::new(SingleFlight::new());
        let (release, gate) = gort::chan::bounded::<()>(0);
        let f2 = Arc::clone(&flights);
        let first = gort::go(move || {
            f2.run(1, move || {
                let _ = gate.recv();
                "first"
            })
        });
        while format!("{flights:?}").contains("in_flight: 0") {
            gort::yield_now();
        }
        flights.forget(&1);
        assert_eq!(flights.run(1, || "second"), ("second", false));
        drop(release);
        assert_eq!(first.join().unwrap(), ("first", false));
    });
}

/// A call that panics reaches only its caller; a waiting duplicate runs
/// its own function instead.
#[test]
fn single_flight_survives_a_panicking_call() {
    run(|| {
        let flights = Arc::new(SingleFlight::<u8, u8>::new());
        let (release, gate) = gort::chan::bounded::<()>(0);
        let f2 = Arc::clone(&flights);
        let leader = gort::go(move || {
            f2.run(0, move || {
                let _ = gate.recv();
                panic!("the call failed")
            })
        });
        while format!("{flights:?}").contains("in_flight: 0") {
            gort::yield_now();
        }
        let f3 = Arc::clone(&flights);
        let dup = gort::go(move || f3.run(0, || 7));
        while flights.waiting(&0) < 1 {
            gort::yield_now();
        }
        drop(release);
        assert!(leader.join().is_err());
        assert_eq!(dup.join().unwrap(), (7, true));
        assert_eq!(flights.run(0, || 8), (8, false));
    });
}
