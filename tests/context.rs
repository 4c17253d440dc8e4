//! gort::context: the substance of Go's context tests (x_test.go,
//! afterfunc_test.go) in Rust — cancellation propagating down and never
//! up, deadlines, values, causes, `after_func`, many goroutines at once —
//! plus what is gort's own: the last `CancelHandle` cancelling, the
//! `*_ctx` waits, and one cancellation waking 100,000 goroutines. No test
//! asserts on timing; the one cost measured is printed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gort::chan::TryRecvError;
use gort::context::{self, CancelHandle, Context, Error, Key};
use gort::sync::WaitGroup;

mod common;
use common::{guarded, wait_until_parked};

/// Long enough never to pass during a test.
const VERY_LONG: Duration = Duration::from_secs(3600);

/// Whether `ctx`'s done channel is disconnected (without waiting).
fn is_done(ctx: &Context) -> bool {
    ctx.done().try_recv() == Err(TryRecvError::Disconnected)
}

/// Assert the state of a context in one line: done (with `err`) or not.
#[track_caller]
fn assert_state(ctx: &Context, err: Option<Error>) {
    assert_eq!(ctx.err(), err, "err of {ctx:?}");
    assert_eq!(is_done(ctx), err.is_some(), "done of {ctx:?}");
}

fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    guarded(move || gort::run(f))
}

#[test]
fn background_is_never_done_and_has_no_deadline() {
    let ctx = Context::background();
    assert_state(&ctx, None);
    assert_eq!(ctx.deadline(), None);
    assert!(ctx.cause().is_none());
    assert_eq!(ctx.done().try_recv(), Err(TryRecvError::Empty));
    assert!(matches!(
        ctx.done().recv_timeout(Duration::from_millis(1)),
        Err(gort::chan::RecvTimeoutError::Timeout)
    ));
}

#[test]
fn context_and_handles_are_send_sync_and_cheap_to_clone() {
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<Context>();
    send_sync::<CancelHandle>();
    assert_eq!(std::mem::size_of::<Context>(), std::mem::size_of::<usize>());
}

/// Go's TestWithCancel and TestParentFinishesChild: every kind of child
/// (cancel, timer, value, and a cancel below a value) is done with the
/// parent's reason once the parent is cancelled, and not before.
#[test]
fn cancelling_a_parent_finishes_every_descendant() {
    run(|| {
        let (parent, cancel) = Context::background().with_cancel();
        let (cancel_child, _c1) = parent.with_cancel();
        let (timer_child, _c2) = parent.with_timeout(VERY_LONG);
        let value_child = parent.with_value(Name("v"), 1);
        let (below_value, _c3) = value_child.with_cancel();
        let all = [&parent, &cancel_child, &timer_child, &value_child, &below_value];
        for ctx in all {
            assert_state(ctx, None);
        }
        // Waiters parked on the children's done channels all wake.
        let waiters: Vec<_> = all
            .iter()
            .map(|ctx| {
                let ctx = (*ctx).clone();
                gort::go(move || {
                    let _ = ctx.done().recv();
                    ctx.err()
                })
            })
            .collect();
        for w in &waiters {
            wait_until_parked(w, "chan receive");
        }
        cancel.cancel();
        for ctx in all {
            assert_state(ctx, Some(Error::Canceled));
        }
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(Error::Canceled));
        }
    });
}

/// Go's TestChildFinishesFirst: a child's cancellation never reaches its
/// parent, whether the parent can be cancelled or not.
#[test]
fn cancelling_a_child_leaves_its_parent_alone() {
    let (cancellable, _keep) = Context::background().with_cancel();
    for parent in [Context::background(), cancellable] {
        let (child, cancel) = parent.with_cancel();
        let (timed, cancel_timed) = parent.with_timeout(VERY_LONG);
        cancel.cancel();
        cancel_timed.cancel();
        assert_state(&child, Some(Error::Canceled));
        assert_state(&timed, Some(Error::Canceled));
        assert_state(&parent, None);
    }
}

#[test]
fn dropping_the_last_cancel_handle_cancels_and_a_clone_keeps_it_alive() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _keep_child) = ctx.with_cancel();
    let clone = cancel.clone();
    drop(cancel);
    assert_state(&ctx, None);
    drop(clone);
    assert_state(&ctx, Some(Error::Canceled));
    assert_state(&child, Some(Error::Canceled));
    // A forgotten timeout stops its timer with the handle: the context is
    // cancelled, not left to time out an hour from now.
    let (timed, cancel) = Context::background().with_timeout(VERY_LONG);
    drop(cancel);
    assert_state(&timed, Some(Error::Canceled));
}

/// Go's TestDeadline and TestTimeout: done with DeadlineExceeded at the
/// deadline, with the earliest deadline of the chain reported.
#[test]
fn deadlines_and_timeouts_expire_with_deadline_exceeded() {
    run(|| {
        let start = Instant::now();
        let (ctx, _c) = Context::background().with_deadline(start + Duration::from_millis(20));
        assert_eq!(ctx.deadline(), Some(start + Duration::from_millis(20)));
        let (t, _c2) = Context::background().with_timeout(Duration::from_millis(20));
        // A later deadline below an earlier one keeps the earlier.
        let (later, _c3) = ctx.with_timeout(VERY_LONG);
        assert_eq!(later.deadline(), ctx.deadline());
        // An earlier one below a later one is the child's own.
        let (earlier, _c4) = later.with_deadline(start + Duration::from_millis(5));
        assert_eq!(earlier.deadline(), Some(start + Duration::from_millis(5)));
        for c in [&ctx, &t, &later, &earlier] {
            assert!(c.done().recv().is_err());
            assert_state(c, Some(Error::DeadlineExceeded));
            assert!(c.err().unwrap().is_timeout());
            assert!(Instant::now() >= c.deadline().unwrap());
        }
    });
}

#[test]
fn a_deadline_in_the_past_or_a_zero_timeout_is_done_at_once() {
    let (past, _c) = Context::background().with_deadline(Instant::now() - Duration::from_secs(1));
    assert_state(&past, Some(Error::DeadlineExceeded));
    let (zero, _c2) = Context::background().with_timeout(Duration::ZERO);
    assert_state(&zero, Some(Error::DeadlineExceeded));
    // Duration::MAX: no deadline at all, and no timer.
    let (never, _c3) = Context::background().with_timeout(Duration::MAX);
    assert_eq!(never.deadline(), None);
    assert_state(&never, None);
}

/// Go's TestCanceledTimeout: a cancellation before the deadline wins.
#[test]
fn cancelling_before_the_deadline_reports_canceled() {
    run(|| {
        let (ctx, _c) = Context::background().with_timeout(VERY_LONG);
        let (child, cancel) = ctx.with_cancel();
        let (grandchild, _c2) = child.with_timeout(Duration::from_secs(1800));
        cancel.cancel();
        assert!(grandchild.done().recv().is_err());
        assert_state(&child, Some(Error::Canceled));
        assert_state(&grandchild, Some(Error::Canceled));
        assert_state(&ctx, None);
    });
}

#[derive(PartialEq, Debug)]
struct Name(&'static str);
impl Key for Name {
    type Value = i32;
}

#[derive(PartialEq)]
struct Other;
impl Key for Other {
    type Value = String;
}

/// Go's TestValues: the nearest value wins, lookups pass through cancel
/// contexts, equal keys match, other keys and other key types do not.
#[test]
fn values_are_found_by_the_nearest_matching_key() {
    let c0 = Context::background();
    assert_eq!(c0.value(&Name("a")), None);
    let c1 = c0.with_value(Name("a"), 1);
    let c2 = c1.with_value(Name("b"), 2);
    let (c3, _keep) = c2.with_cancel();
    let c4 = c3.with_value(Name("a"), 4).with_value(Other, "other".into());
    assert_eq!(c1.value(&Name("a")), Some(&1));
    assert_eq!(c1.value(&Name("b")), None);
    assert_eq!(c3.value(&Name("a")), Some(&1));
    assert_eq!(c3.value(&Name("b")), Some(&2));
    assert_eq!(c4.value(&Name("a")), Some(&4)); // shadowed
    assert_eq!(c4.value(&Name("b")), Some(&2));
    assert_eq!(c4.value(&Other).map(String::as_str), Some("other"));
    assert_eq!(c3.value(&Other), None);
    // Values survive cancellation, and are kept by `without_cancel`.
    drop(_keep);
    assert_eq!(c3.value(&Name("b")), Some(&2));
    assert_eq!(c4.without_cancel().value(&Name("a")), Some(&4));
}

/// Go's TestWithoutCancel.
#[test]
fn without_cancel_keeps_values_but_no_cancellation_or_deadline() {
    let (ctx, cancel) = Context::background().with_value(Name("k"), 7).with_timeout(VERY_LONG);
    let detached = ctx.without_cancel();
    cancel.cancel();
    assert_state(&ctx, Some(Error::Canceled));
    assert_state(&detached, None);
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.value(&Name("k")), Some(&7));
    let (below, cancel_below) = detached.with_cancel();
    cancel_below.cancel();
    assert_state(&below, Some(Error::Canceled));
}

/// Go's TestWithCancelCanceledParent: a child of a done context is done
/// at birth, with the parent's reason and cause.
#[test]
fn a_child_of_a_done_context_is_done_at_birth() {
    let (parent, cancel) = Context::background().with_cancel();
    cancel.cancel_with_cause(std::io::Error::other("gone"));
    let (child, _c) = parent.with_cancel();
    let (timed, _c2) = parent.with_timeout(VERY_LONG);
    for c in [&child, &timed] {
        assert_state(c, Some(Error::Canceled));
        assert_eq!(c.cause().unwrap().to_string(), "gone");
    }
    let (expired, _c3) = Context::background().with_timeout(Duration::ZERO);
    let (child, _c4) = expired.with_cancel();
    assert_state(&child, Some(Error::DeadlineExceeded));
}

/// Go's TestCause: the cause is the canceller's error, inherited by the
/// descendants it cancelled; without one it is the reason; the first
/// cancellation's cause sticks.
#[test]
fn causes_propagate_down_and_the_first_one_sticks() {
    run(|| {
        let (parent, cancel) = Context::background().with_cancel();
        let (child, cancel_child) = parent.with_cancel();
        assert!(child.cause().is_none());
        cancel_child.cancel_with_cause(std::io::Error::other("child first"));
        cancel.cancel_with_cause(std::io::Error::other("parent later"));
        assert_eq!(child.cause().unwrap().to_string(), "child first");
        assert_eq!(parent.cause().unwrap().to_string(), "parent later");
        cancel.cancel_with_cause(std::io::Error::other("ignored"));
        assert_eq!(parent.cause().unwrap().to_string(), "parent later");
        // No cause given: the reason is the cause.
        let (plain, c) = Context::background().with_cancel();
        c.cancel();
        let cause = plain.cause().unwrap();
        assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
        let (timed, _c) = Context::background().with_timeout(Duration::from_millis(1));
        let _ = timed.done().recv();
        assert_eq!(
            timed.cause().unwrap().downcast_ref::<Error>(),
            Some(&Error::DeadlineExceeded)
        );
    });
}

/// Go's TestSimultaneousCancels: a tree of contexts cancelled from many
/// goroutines at once, in any order; every one ends up done and every
/// cancel returns.
#[test]
fn simultaneous_cancels_of_a_tree_all_finish() {
    run(|| {
        let (root, root_cancel) = Context::background().with_cancel();
        let mut all = vec![(root.clone(), root_cancel)];
        let mut i = 0;
        while all.len() < 400 {
            let parent = all[i].0.clone();
            for _ in 0..4 {
                all.push(parent.with_cancel());
            }
            i += 1;
        }
        let contexts: Vec<Context> = all.iter().map(|(c, _)| c.clone()).collect();
        let wg = Arc::new(WaitGroup::new());
        // Reverse order for half of them, so that leaves and inner nodes race.
        for (n, (_, cancel)) in all.into_iter().enumerate().rev() {
            if n % 2 == 0 {
                wg.go(move || cancel.cancel());
            } else {
                wg.go(move || drop(cancel));
            }
        }
        for c in &contexts {
            assert!(c.done().recv().is_err());
            assert_eq!(c.err(), Some(Error::Canceled));
        }
        wg.wait();
    });
}

/// Go's TestInterlockedCancels: a goroutine woken by the parent's
/// cancellation cancels the child while that cancellation is under way.
#[test]
fn a_cancel_racing_a_parent_cancel_finishes() {
    run(|| {
        for _ in 0..200 {
            let (parent, cancel_parent) = Context::background().with_cancel();
            let (child, cancel_child) = parent.with_cancel();
            let p = parent.clone();
            gort::go(move || {
                let _ = p.done().recv();
                cancel_child.cancel();
            });
            cancel_parent.cancel();
            assert!(child.done().recv().is_err());
        }
    });
}

/// A small deterministic generator for the layer tests.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[derive(PartialEq)]
struct Layer(usize);
impl Key for Layer {
    type Value = usize;
}

/// Go's testLayers: a random stack of value, cancel and timeout layers;
/// cancelling any one layer (or a short timeout) finishes the innermost,
/// and every value stays visible.
fn layers(seed: u64, timeout: bool) {
    let mut rng = seed;
    let mut ctx = Context::background();
    let (mut values, mut cancels, mut timers) = (Vec::new(), Vec::new(), 0);
    let mut i = 0;
    while i < 30 || timers == 0 || cancels.is_empty() || values.is_empty() {
        match xorshift(&mut rng) % 3 {
            0 => {
                ctx = ctx.with_value(Layer(i), i);
                values.push(i);
            }
            1 => {
                let (c, h) = ctx.with_cancel();
                ctx = c;
                cancels.push(h);
            }
            _ => {
                let d = if timeout { Duration::from_millis(5) } else { VERY_LONG };
                let (c, h) = ctx.with_timeout(d);
                ctx = c;
                cancels.push(h);
                timers += 1;
            }
        }
        i += 1;
    }
    let check_values = |ctx: &Context| {
        for &v in &values {
            assert_eq!(ctx.value(&Layer(v)), Some(&v), "seed {seed}");
        }
    };
    check_values(&ctx);
    if timeout {
        assert!(ctx.done().recv().is_err());
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "seed {seed}");
    } else {
        assert_state(&ctx, None);
        let pick = (xorshift(&mut rng) % cancels.len() as u64) as usize;
        cancels[pick].cancel();
        assert_state(&ctx, Some(Error::Canceled));
    }
    check_values(&ctx);
}

#[test]
fn layers_cancel() {
    for seed in 1..=20 {
        layers(seed, false);
    }
}

#[test]
fn layers_timeout() {
    run(|| {
        for seed in 1..=5 {
            layers(seed, true);
        }
    });
}

/// Go's TestContextErrDoneRace (golang/go#75533): once `err` says done,
/// `done` is disconnected, even while the cancel is still under way.
#[test]
fn err_says_done_only_once_done_is_disconnected() {
    run(|| {
        for _ in 0..200 {
            let (ctx, cancel) = Context::background().with_cancel();
            let _ = ctx.done(); // the channel exists before the cancel
            gort::go(move || cancel.cancel());
            while ctx.err().is_none() {
                gort::yield_now();
            }
            assert!(is_done(&ctx));
        }
    });
}

#[test]
fn done_works_as_a_select_arm() {
    run(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let (tx, rx) = gort::chan::unbounded::<u32>();
        let worker = gort::go(move || {
            let mut got = Vec::new();
            loop {
                gort::select! {
                    recv(rx) -> v => got.push(v.unwrap()),
                    recv(ctx.done()) -> _ => return (got, ctx.err()),
                }
            }
        });
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        while !tx.is_empty() {
            gort::yield_now();
        }
        cancel.cancel();
        let (got, err) = worker.join().unwrap();
        assert_eq!(got, [1, 2]);
        assert_eq!(err, Some(Error::Canceled));
    });
}

/// Go's TestAfterFuncCalledAfterCancel, ...AfterTimeout, ...Immediately,
/// ...NotCalledAfterStop: the function runs once the context is done,
/// at once if it is done already, and never once stopped.
#[test]
fn after_func_runs_once_the_context_is_done_unless_stopped() {
    run(|| {
        let (tx, rx) = gort::chan::unbounded();
        let (ctx, cancel) = Context::background().with_cancel();
        let t = tx.clone();
        let after = context::after_func(&ctx, move || t.send("cancel").unwrap());
        assert!(rx.try_recv().is_err());
        cancel.cancel();
        assert_eq!(rx.recv(), Ok("cancel"));
        assert!(!after.stop(), "it ran already");

        let (timed, _c) = Context::background().with_timeout(Duration::from_millis(2));
        let t = tx.clone();
        let _after = context::after_func(&timed, move || t.send("timeout").unwrap());
        assert_eq!(rx.recv(), Ok("timeout"));

        let t = tx.clone();
        let _after = context::after_func(&ctx, move || t.send("immediately").unwrap());
        assert_eq!(rx.recv(), Ok("immediately"));

        let (ctx, cancel) = Context::background().with_cancel();
        let t = tx.clone();
        let after = context::after_func(&ctx, move || t.send("stopped").unwrap());
        assert!(after.stop());
        cancel.cancel();
        assert!(!after.stop());
        // The stopped function was dropped: only `tx` is left as a sender.
        drop(tx);
        assert!(rx.recv().is_err());
    });
}

/// Go's TestAfterFuncCalledAsynchronously: cancel does not wait for the
/// function, which runs on a goroutine of its own.
#[test]
fn after_func_runs_on_its_own_goroutine_and_cancel_does_not_wait() {
    run(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let (tx, rx) = gort::chan::bounded(0);
        let caller = gort::current().id();
        let _after = context::after_func(&ctx, move || tx.send(gort::current().id()).unwrap());
        cancel.cancel(); // returns although the function blocks in send
        assert_ne!(rx.recv().unwrap(), caller);
    });
}

#[test]
fn after_func_on_a_context_that_cannot_be_done_never_runs() {
    let after = context::after_func(&Context::background(), || unreachable!());
    assert!(after.stop());
    assert!(!after.stop());
}

/// 1,000 goroutines register after_funcs on one context; half stop theirs
/// before the cancel, half race their stop against it. Each function runs
/// exactly when its stop said false.
#[test]
fn after_func_stop_and_cancel_are_exclusive_under_concurrency() {
    run(|| {
        let (ctx, cancel) = Context::background().with_timeout(VERY_LONG);
        let ran = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let registered = Arc::new(WaitGroup::new());
        let settled = Arc::new(WaitGroup::new());
        let (go_tx, go_rx) = gort::chan::bounded::<()>(0);
        for i in 0..1000 {
            let (ctx, ran, stopped, go_rx) = (ctx.clone(), Arc::clone(&ran), Arc::clone(&stopped), go_rx.clone());
            let registered = registered.guard();
            // Dropped with the function, whether it ran or was stopped.
            let function_settled = settled.guard();
            settled.go(move || {
                let after = context::after_func(&ctx, move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    drop(function_settled);
                });
                if i % 2 == 0 && after.stop() {
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
                drop(registered);
                let _ = go_rx.recv();
                if i % 2 == 1 && after.stop() {
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        registered.wait();
        assert_eq!(stopped.load(Ordering::SeqCst), 500);
        drop(go_tx); // the odd ones stop now, racing the cancel
        cancel.cancel();
        settled.wait();
        assert_eq!(ran.load(Ordering::SeqCst) + stopped.load(Ordering::SeqCst), 1000);
    });
}

/// 100,000 goroutines, each parked on the done channel of its own context
/// in a three-level tree (1 root, 100 inner, 100,000 leaves): one cancel of
/// the root wakes them all. The time from the cancel to the last wake-up
/// is printed, not asserted.
#[test]
fn one_cancel_wakes_100_000_goroutines_waiting_on_a_tree() {
    const LEAVES: usize = 100_000;
    guarded(|| {
        gort::Runtime::builder().procs(2).build().unwrap().block_on(|| {
            let (root, cancel) = Context::background().with_cancel();
            let inner: Vec<_> = (0..100).map(|_| root.with_cancel()).collect();
            let woke = Arc::new(WaitGroup::new());
            let parked = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::with_capacity(LEAVES);
            for i in 0..LEAVES {
                let (leaf, keep) = inner[i % 100].0.with_cancel();
                handles.push(keep);
                let parked = Arc::clone(&parked);
                woke.go(move || {
                    parked.fetch_add(1, Ordering::Relaxed);
                    assert!(leaf.done().recv().is_err());
                    assert_eq!(leaf.err(), Some(Error::Canceled));
                });
            }
            // Cheap polling first; then the (costly) look at every
            // goroutine, to start from all of them parked.
            while parked.load(Ordering::Relaxed) < LEAVES {
                gort::time::sleep(Duration::from_millis(1));
            }
            while gort::runtime::goroutines()
                .iter()
                .filter(|g| g.wait_reason == Some("chan receive"))
                .count()
                < LEAVES
            {
                gort::time::sleep(Duration::from_millis(10));
            }
            let start = Instant::now();
            cancel.cancel();
            let cancelled = start.elapsed();
            woke.wait();
            eprintln!(
                "one cancel of a tree of {} contexts: cancel returned after {cancelled:?}, all {LEAVES} goroutines woken and done after {:?}",
                1 + 100 + LEAVES,
                start.elapsed()
            );
            drop(handles);
        })
    });
}

/// A chain of 100,000 nested contexts is cancelled and freed without
/// recursion (a goroutine's stack would overflow otherwise).
#[test]
fn a_chain_of_100_000_nested_contexts_cancels_and_drops_on_a_goroutine() {
    run(|| {
        let (root, cancel) = Context::background().with_cancel();
        let mut handles = Vec::new();
        let mut ctx = root.clone();
        for i in 0..100_000 {
            if i % 2 == 0 {
                let (c, h) = ctx.with_cancel();
                handles.push(h);
                ctx = c;
            } else {
                ctx = ctx.with_value(Layer(i), i);
            }
        }
        assert_eq!(ctx.value(&Layer(1)), Some(&1));
        cancel.cancel();
        assert_state(&ctx, Some(Error::Canceled));
        drop(ctx);
        drop(handles);
    });
}

#[test]
fn sleep_ctx_ends_early_when_the_context_is_done() {
    run(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let c = ctx.clone();
        let sleeper = gort::go(move || gort::time::sleep_ctx(&c, VERY_LONG));
        wait_until_parked(&sleeper, "sleep");
        cancel.cancel();
        assert_eq!(sleeper.join().unwrap(), Err(Error::Canceled));
        // Done already: at once; a short sleep on a live context: Ok.
        assert_eq!(gort::time::sleep_ctx(&ctx, VERY_LONG), Err(Error::Canceled));
        let (live, _c) = Context::background().with_timeout(VERY_LONG);
        assert_eq!(gort::time::sleep_ctx(&live, Duration::from_millis(1)), Ok(()));
        let (short, _c2) = Context::background().with_timeout(Duration::from_millis(2));
        assert_eq!(gort::time::sleep_ctx(&short, VERY_LONG), Err(Error::DeadlineExceeded));
    });
}

#[test]
fn sleep_ctx_on_a_plain_thread_is_woken_by_a_goroutine() {
    let (ctx, cancel) = Context::background().with_cancel();
    let canceller = gort::go(move || {
        gort::time::sleep(Duration::from_millis(2));
        cancel.cancel();
    });
    assert_eq!(
        guarded(move || gort::time::sleep_ctx(&ctx, VERY_LONG)),
        Err(Error::Canceled)
    );
    canceller.join().unwrap();
}

#[test]
fn connect_ctx_connects_and_refuses_a_done_context() {
    run(|| {
        let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (ctx, cancel) = Context::background().with_timeout(VERY_LONG);
        let conn = gort::net::TcpStream::connect_ctx(&ctx, addr).unwrap();
        assert_eq!(conn.peer_addr().unwrap(), addr);
        let plain = gort::net::TcpStream::connect_ctx(&Context::background(), addr).unwrap();
        assert_eq!(plain.peer_addr().unwrap(), addr);
        cancel.cancel();
        let e = gort::net::TcpStream::connect_ctx(&ctx, addr).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Other);
        assert_eq!(
            e.get_ref().and_then(|e| e.downcast_ref::<Error>()),
            Some(&Error::Canceled)
        );
        let (expired, _c) = Context::background().with_timeout(Duration::ZERO);
        let e = gort::net::TcpStream::connect_ctx(&expired, addr).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
}

/// Contexts are usable as map keys' owners, cloned across goroutines, and
/// one cancel handle per worker shuts workers down independently (the
/// shape of a server's per-connection contexts).
#[test]
fn per_worker_contexts_shut_down_independently() {
    run(|| {
        let (server, shutdown) = Context::background().with_cancel();
        let mut workers = HashMap::new();
        for id in 0..10 {
            let (ctx, cancel) = server.with_cancel();
            let h = gort::go(move || {
                let _ = ctx.done().recv();
                ctx.err()
            });
            workers.insert(id, (cancel, h));
        }
        let (cancel3, h3) = workers.remove(&3).unwrap();
        cancel3.cancel();
        assert_eq!(h3.join().unwrap(), Some(Error::Canceled));
        assert_eq!(server.err(), None);
        shutdown.cancel();
        for (_, (_cancel, h)) in workers {
            assert_eq!(h.join().unwrap(), Some(Error::Canceled));
        }
    });
}
