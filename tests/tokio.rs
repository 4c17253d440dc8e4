//! `gort::tokio`: Tokio-bound futures awaited from goroutines. Panics
//! cross back to the goroutine; a goroutine that stops waiting (drop,
//! unwinding, a timeout) aborts the Tokio task, which its drop guard
//! shows; the runtime is the one handed in or one gort starts at first
//! use with `WORKER_THREADS` threads; a thousand goroutines waiting on
//! Tokio park (wait reason `future`) and add no thread.
//!
//! The tests that look at the process's threads or set the bridge's
//! runtime (chosen once per process) run in a child process of their own.
#![cfg(feature = "tokio")]

mod common;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{
    HANG_GUARD, PeakThreads, assert_threads_within, in_child, thread_count, threads_named, wait_until_parked,
};
use gort::tokio::{Elapsed, SetHandleError, THREAD_NAME, WORKER_THREADS};
use tokio::sync::{oneshot, watch};

/// Sends on its channel when dropped: how a test sees that a Tokio task
/// was aborted (its future dropped) rather than left pending.
struct DropGuard(mpsc::Sender<&'static str>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

/// A future that starts (says so on `started`) and then never finishes
/// while holding a `DropGuard`.
async fn stuck(started: oneshot::Sender<()>, dropped: mpsc::Sender<&'static str>) {
    let _guard = DropGuard(dropped);
    let _ = started.send(());
    std::future::pending::<()>().await;
}

/// `rx` hears that the guard was dropped, within the hang guard.
fn assert_dropped(rx: &mpsc::Receiver<&'static str>, what: &str) {
    assert_eq!(
        rx.recv_timeout(HANG_GUARD),
        Ok("dropped"),
        "{what}: the Tokio task was not aborted"
    );
}

fn in_own_child(test: &str, body: impl FnOnce()) {
    if let Some((status, stderr)) = in_child(test, body) {
        assert!(status.success(), "child {test} failed ({status}):\n{stderr}");
        // The figures the child printed, for the parent's log.
        eprint!("{stderr}");
    }
}

#[test]
fn block_on_returns_what_the_future_computed_on_tokio() {
    let outputs = gort::run(|| {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                gort::go(move || {
                    gort::tokio::block_on(async move {
                        // Tokio's timer, which needs the runtime's context.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        (i * i, thread::current().name().map(str::to_owned))
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for (i, (square, thread)) in outputs.into_iter().enumerate() {
        assert_eq!(square, (i * i) as u64);
        assert_eq!(thread.as_deref(), Some(THREAD_NAME), "not run on gort's Tokio runtime");
    }
}

#[test]
fn a_panic_in_the_future_reaches_the_goroutine_with_its_payload() {
    #[derive(Debug, PartialEq)]
    struct Boom(u32);
    let (typed, text) = gort::run(|| {
        let typed = gort::go(|| gort::tokio::block_on(async { std::panic::panic_any(Boom(7)) })).join();
        let text = gort::go(|| gort::tokio::spawn(async { panic!("boom {}", 8) }).join()).join();
        (typed.unwrap_err(), text.unwrap_err())
    });
    assert_eq!(typed.downcast_ref::<Boom>(), Some(&Boom(7)));
    assert_eq!(payload_text(&*text), "boom 8");
}

#[test]
fn dropping_the_task_aborts_the_tokio_task() {
    let (dropped_tx, dropped) = mpsc::channel();
    let finished = gort::run(move || {
        let (started_tx, started) = oneshot::channel();
        let task = gort::tokio::spawn(stuck(started_tx, dropped_tx));
        // A Tokio oneshot needs no context: gort's own block_on waits.
        gort::block_on(started).unwrap();
        let finished = task.is_finished();
        drop(task);
        finished
    });
    assert!(!finished, "the stuck task finished");
    assert_dropped(&dropped, "drop");
}

#[test]
fn a_goroutine_unwinding_past_its_task_aborts_it() {
    let (dropped_tx, dropped) = mpsc::channel();
    let outcome = gort::run(move || {
        gort::go(move || {
            let (started_tx, started) = oneshot::channel();
            let _task = gort::tokio::spawn(stuck(started_tx, dropped_tx));
            gort::block_on(started).unwrap();
            panic!("goroutine gives up");
        })
        .join()
    });
    assert_eq!(payload_text(&*outcome.unwrap_err()), "goroutine gives up");
    assert_dropped(&dropped, "unwinding");
}

#[test]
fn join_timeout_gives_up_and_aborts_the_task() {
    let (dropped_tx, dropped) = mpsc::channel();
    let outcome = gort::run(move || {
        let (started_tx, started) = oneshot::channel();
        let task = gort::tokio::spawn(stuck(started_tx, dropped_tx));
        gort::block_on(started).unwrap();
        task.join_timeout(Duration::from_millis(20))
    });
    assert_eq!(
        outcome,
        Err(Elapsed {
            timeout: Duration::from_millis(20)
        })
    );
    assert_eq!(
        outcome.unwrap_err().to_string(),
        "the Tokio task did not finish within 20ms and was aborted"
    );
    assert_dropped(&dropped, "timeout");
}

#[test]
fn join_timeout_returns_a_finished_output_even_at_zero_and_survives_huge_timeouts() {
    let (zero, huge, slow) = gort::run(|| {
        let done = gort::tokio::spawn(async { 1 });
        while !done.is_finished() {
            gort::time::sleep(Duration::from_millis(1));
        }
        let zero = done.join_timeout(Duration::ZERO);
        let huge = gort::tokio::spawn(async { 2 }).join_timeout(Duration::MAX);
        // A task that needs a while still beats a longer timeout.
        let slow = gort::tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            3
        })
        .join_timeout(HANG_GUARD);
        (zero, huge, slow)
    });
    assert_eq!((zero, huge, slow), (Ok(1), Ok(2), Ok(3)));
}

#[test]
fn a_join_timeout_panic_is_the_tasks_panic() {
    let outcome =
        gort::run(|| gort::go(|| gort::tokio::spawn(async { panic!("inside") }).join_timeout(HANG_GUARD)).join());
    assert_eq!(payload_text(&*outcome.unwrap_err()), "inside");
}

/// The goroutine parks (Go's wait reason `future`) rather than blocking
/// its thread: the runtime's one P runs another goroutine meanwhile.
#[test]
fn a_waiting_goroutine_parks_and_its_p_runs_others() {
    let rt = gort::Runtime::builder().procs(1).build().unwrap();
    let (answer, other) = rt.block_on(|| {
        let (release_tx, release) = oneshot::channel::<u32>();
        let waiter = gort::go(move || gort::tokio::block_on(async move { release.await.unwrap() }));
        wait_until_parked(&waiter, "future");
        // On the only P, while the waiter waits.
        let other = gort::go(|| 5).join().unwrap();
        release_tx.send(37).unwrap();
        (waiter.join().unwrap(), other)
    });
    assert_eq!((answer, other), (37, 5));
}

/// A runtime handed in, shut down under a waiting goroutine: the wait ends
/// in a panic that says why, not a hang.
#[test]
fn a_runtime_shut_down_under_a_waiting_goroutine_ends_the_wait_with_a_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (started_tx, started) = oneshot::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let task = gort::tokio::spawn_on(rt.handle(), stuck(started_tx, dropped_tx));
    let outcome = gort::run(move || {
        gort::block_on(started).unwrap();
        let waiter = gort::go(move || task.join());
        wait_until_parked(&waiter, "future");
        // Shut down from a plain thread, as an owner would.
        thread::spawn(move || rt.shutdown_timeout(HANG_GUARD)).join().unwrap();
        waiter.join()
    });
    let text = payload_text(&*outcome.unwrap_err());
    assert!(text.contains("runtime was shut down"), "{text}");
    assert_dropped(&dropped, "shutdown");
}

#[test]
fn joining_on_a_tokio_thread_panics_instead_of_blocking_its_worker() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { gort::tokio::spawn_on(&tokio::runtime::Handle::current(), async { 1 }).join() })
    }));
    let text = payload_text(&*outcome.unwrap_err());
    assert!(text.contains("would block it"), "{text}");
}

/// gort's own runtime: none before the first `spawn`, then
/// `WORKER_THREADS` threads whatever the number of calls; a handle set
/// after it started is refused, saying so.
#[test]
fn gorts_runtime_starts_at_first_use_with_its_worker_threads() {
    in_own_child("gorts_runtime_starts_at_first_use_with_its_worker_threads", || {
        assert!(threads_named(THREAD_NAME).is_empty(), "started before first use");
        let names = gort::run(|| {
            let handles: Vec<_> = (0..200)
                .map(|_| {
                    gort::go(|| {
                        gort::tokio::block_on(async {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            thread::current().name().map(str::to_owned)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert!(names.iter().all(|n| n.as_deref() == Some(THREAD_NAME)), "{names:?}");
        let threads = threads_named(THREAD_NAME).len();
        eprintln!("gort's Tokio runtime: {threads} thread(s) after 200 calls");
        assert_eq!(threads, WORKER_THREADS);
        let other = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let refused = gort::tokio::set_handle(other.handle().clone()).unwrap_err();
        assert_eq!(refused, SetHandleError { own: true });
        assert!(refused.to_string().contains("before the first spawn"), "{refused}");
    });
}

/// A runtime handed in before the first spawn runs every task; gort starts
/// none of its own; a second handle is refused.
#[test]
fn a_handle_set_first_runs_every_task() {
    in_own_child("a_handle_set_first_runs_every_task", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("user-tokio")
            .enable_all()
            .build()
            .unwrap();
        gort::tokio::set_handle(rt.handle().clone()).unwrap();
        let names = gort::run(|| {
            let handles: Vec<_> = (0..100)
                .map(|_| {
                    gort::go(|| {
                        gort::tokio::block_on(async {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            thread::current().name().map(str::to_owned)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert!(names.iter().all(|n| n.as_deref() == Some("user-tokio")), "{names:?}");
        assert!(threads_named(THREAD_NAME).is_empty(), "gort started a runtime too");
        let refused = gort::tokio::set_handle(rt.handle().clone()).unwrap_err();
        assert_eq!(refused, SetHandleError { own: false });
    });
}

/// A thousand goroutines waiting on Tokio at once: every one parks, and
/// the process gains at most procs + `WORKER_THREADS` + a few threads
/// (`common::assert_threads_within`).
#[test]
fn a_thousand_waiting_goroutines_add_no_threads() {
    const GOROUTINES: usize = 1000;
    in_own_child("a_thousand_waiting_goroutines_add_no_threads", || {
        let before = thread_count();
        let (procs, peak, sum) = gort::run(|| {
            let peak = PeakThreads::start();
            let started = Arc::new(AtomicUsize::new(0));
            let (release_tx, release) = watch::channel(false);
            let handles: Vec<_> = (0..GOROUTINES)
                .map(|i| {
                    let started = Arc::clone(&started);
                    let mut release = release.clone();
                    gort::go(move || {
                        gort::tokio::block_on(async move {
                            started.fetch_add(1, Ordering::Relaxed);
                            release.wait_for(|go| *go).await.unwrap();
                            i
                        })
                    })
                })
                .collect();
            // Every task has started, so every goroutine is waiting.
            while started.load(Ordering::Relaxed) < GOROUTINES {
                gort::time::sleep(Duration::from_millis(1));
            }
            let parked = gort::runtime::goroutines()
                .iter()
                .filter(|g| g.wait_reason == Some("future"))
                .count();
            assert!(parked >= GOROUTINES, "only {parked} goroutines parked on their tasks");
            release_tx.send(true).unwrap();
            let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            (gort::runtime::procs(), peak.stop(), sum)
        });
        assert_eq!(sum, GOROUTINES * (GOROUTINES - 1) / 2);
        assert_threads_within(
            &format!("{GOROUTINES} goroutines waiting on Tokio"),
            before,
            peak,
            procs,
            WORKER_THREADS,
        );
    });
}

/// The text of a panic payload (`panic!` with or without arguments).
fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "<not text>".to_owned())
}
