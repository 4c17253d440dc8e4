//! Channels and goroutines from async code, under real executors (Tokio's
//! multi-threaded and current-thread runtimes, `futures`' `block_on`):
//! values fed by goroutines and consumed by tasks and the reverse, awaiting
//! a `JoinHandle`, futures dropped at arbitrary points (cancel safety:
//! every value is received exactly once or stays with its sender), the
//! waker rules (one wake per value, handed on by a dropped future, a new
//! waker replacing the old), and `close`/`never` as futures see them.
//! Nothing asserts on timing.

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::FutureExt;
use gort::chan::{RecvError, SendError, Sender, bounded, never, unbounded};

mod common;
use common::guarded;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter::default());
    (Arc::clone(&c), Waker::from(c))
}

fn wakes(c: &Counter) -> usize {
    c.0.load(Ordering::SeqCst)
}

/// Poll `f` once with `w`.
fn poll_with<F: Future + Unpin>(f: &mut F, w: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(w))
}

fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .unwrap()
}

/// A small deterministic generator for the random drop points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const SENDERS: u64 = 4;
const PER_SENDER: u64 = 2_500;

/// Check that `got` holds every `(sender, seq)` once, each sender's in order.
fn check_per_sender_order(got: &[(u64, u64)]) {
    assert_eq!(got.len() as u64, SENDERS * PER_SENDER);
    let mut next = HashMap::new();
    for &(s, i) in got {
        let n = next.entry(s).or_insert(0);
        assert_eq!(i, *n, "sender {s}: out of order");
        *n += 1;
    }
    assert!(next.values().all(|&n| n == PER_SENDER));
}

/// Send `PER_SENDER` values `(s, i)` from a Tokio task per sender `s`.
fn send_from_tokio_tasks(tx: Sender<(u64, u64)>, senders: std::ops::Range<u64>) {
    tokio_rt(2).block_on(async move {
        let tasks: Vec<_> = senders
            .map(|s| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..PER_SENDER {
                        tx.send_async((s, i)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Join the consuming goroutines and check what they received: each saw
/// each sender's values in order, and together every value once.
fn check_consumers(consumers: Vec<gort::JoinHandle<Vec<(u64, u64)>>>) {
    let mut all = Vec::new();
    for c in consumers {
        let got = c.join().unwrap();
        let mut last = HashMap::new();
        for &(s, i) in &got {
            if let Some(prev) = last.insert(s, i) {
                assert!(prev < i, "sender {s}: {prev} then {i}");
            }
        }
        all.extend(got);
    }
    all.sort();
    check_per_sender_order(&all);
}

#[test]
fn a_tokio_task_consumes_a_channel_fed_by_goroutines() {
    for cap in [0, 1, 64] {
        guarded(move || {
            let (tx, rx) = bounded::<(u64, u64)>(cap);
            for s in 0..SENDERS {
                let tx = tx.clone();
                gort::go(move || (0..PER_SENDER).for_each(|i| tx.send((s, i)).unwrap()));
            }
            drop(tx);
            let got = tokio_rt(2).block_on(async move {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv_async().await {
                        got.push(v);
                    }
                    got
                })
                .await
                .unwrap()
            });
            check_per_sender_order(&got);
        });
    }
}

#[test]
fn send_async_from_tokio_tasks_into_goroutines() {
    for cap in [0, 4] {
        guarded(move || {
            let (tx, rx) = bounded::<(u64, u64)>(cap);
            let receivers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    gort::go(move || rx.iter().collect::<Vec<_>>())
                })
                .collect();
            drop(rx);
            send_from_tokio_tasks(tx, 0..SENDERS);
            check_consumers(receivers);
        });
    }
}

#[test]
fn a_pending_recv_leaves_the_worker_thread_free() {
    // One thread runs both tasks: if the receiving task blocked it, the
    // sending one could never run and this would hang.
    guarded(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (go_tx, go_rx) = bounded::<u32>(0);
        let (tx, rx) = bounded::<u32>(0);
        // The goroutine sends only once the second task has told it to.
        let g = gort::go(move || tx.send(go_rx.recv().unwrap() + 1).unwrap());
        let got = rt.block_on(async move {
            let consumer = tokio::spawn(async move { rx.recv_async().await });
            tokio::task::yield_now().await; // the consumer is pending now
            go_tx.send_async(41).await.unwrap();
            consumer.await.unwrap()
        });
        assert_eq!(got, Ok(42));
        g.join().unwrap();
    });
}

#[test]
fn two_futures_meet_on_an_unbuffered_channel() {
    guarded(|| {
        let (tx, rx) = bounded::<u32>(0);
        let ((), got) = futures::executor::block_on(async {
            futures::join!(
                async {
                    for i in 0..1_000 {
                        tx.send_async(i).await.unwrap();
                    }
                },
                async {
                    let mut got = Vec::new();
                    for _ in 0..1_000 {
                        got.push(rx.recv_async().await.unwrap());
                    }
                    got
                }
            )
        });
        assert_eq!(got, (0..1_000).collect::<Vec<_>>());
        // The same across Tokio's threads.
        let got = tokio_rt(2).block_on(async move {
            let t = tokio::spawn(async move {
                for i in 0..1_000 {
                    tx.send_async(i).await.unwrap();
                }
            });
            let mut got = Vec::new();
            while let Ok(v) = rx.recv_async().await {
                got.push(v);
            }
            t.await.unwrap();
            got
        });
        assert_eq!(got, (0..1_000).collect::<Vec<_>>());
    });
}

#[test]
fn a_tokio_task_awaits_a_join_handle() {
    guarded(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (go_tx, go_rx) = bounded::<u64>(0);
        let h = gort::go(move || go_rx.recv().unwrap() * 2);
        assert!(!h.is_finished());
        let r = rt.block_on(async move {
            let waiter = tokio::spawn(async move { h.await });
            tokio::task::yield_now().await; // the waiter is pending now
            go_tx.send_async(21).await.unwrap();
            waiter.await.unwrap()
        });
        assert_eq!(r.unwrap(), 42);

        // A panic arrives as `Err` with its payload, as from `join`.
        let h = gort::go(|| -> u8 { std::panic::panic_any("boom") });
        let r = tokio_rt(1).block_on(async move { tokio::spawn(h.into_future()).await.unwrap() });
        assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "boom");
    });
}

#[test]
fn a_join_future_wakes_only_its_latest_waker() {
    guarded(|| {
        let (go_tx, go_rx) = bounded::<()>(0);
        let mut fut = gort::go(move || go_rx.recv().unwrap()).into_future();
        let (c1, w1) = counting();
        let (c2, w2) = counting();
        assert!(poll_with(&mut fut, &w1).is_pending());
        assert!(poll_with(&mut fut, &w2).is_pending());
        go_tx.send(()).unwrap();
        while wakes(&c2) == 0 {
            std::thread::yield_now();
        }
        assert_eq!((wakes(&c1), wakes(&c2)), (0, 1));
        assert!(matches!(poll_with(&mut fut, &w2), Poll::Ready(Ok(()))));
    });
}

#[test]
fn many_join_futures_with_racing_goroutines() {
    // Each goroutine finishes while its future may be being polled: no
    // wake is lost (a lost one hangs the join_all).
    guarded(|| {
        let handles: Vec<_> = (0..2_000u64).map(|i| gort::go(move || i)).collect();
        let sum: u64 = tokio_rt(2).block_on(async move {
            let tasks: Vec<_> = handles.into_iter().map(|h| tokio::spawn(h.into_future())).collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap().unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..2_000).sum::<u64>());
    });
}

#[test]
fn recv_futures_dropped_at_random_points_lose_no_value() {
    for cap in [0, 8] {
        guarded(move || {
            const TOTAL: u64 = 20_000;
            let (tx, rx) = bounded::<u64>(cap);
            for s in 0..4 {
                let tx = tx.clone();
                gort::go(move || (s * TOTAL / 4..(s + 1) * TOTAL / 4).for_each(|i| tx.send(i).unwrap()));
            }
            drop(tx);
            let received = Arc::new(Mutex::new(Vec::new()));
            let drops = Arc::new(AtomicUsize::new(0));
            tokio_rt(2).block_on(async {
                let consumers: Vec<_> = (0..3u64)
                    .map(|c| {
                        let (rx, received, drops) = (rx.clone(), Arc::clone(&received), Arc::clone(&drops));
                        tokio::spawn(async move {
                            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
                            loop {
                                // Three ways a pending future is dropped: a
                                // timeout, a select! that takes the other arm,
                                // and a single poll.
                                let r = match rng.below(4) {
                                    0 => tokio::time::timeout(Duration::from_micros(rng.below(50)), rx.recv_async())
                                        .await
                                        .ok(),
                                    1 => tokio::select! {
                                        r = rx.recv_async() => Some(r),
                                        () = tokio::task::yield_now() => None,
                                    },
                                    2 => rx.recv_async().now_or_never(),
                                    _ => Some(rx.recv_async().await),
                                };
                                match r {
                                    Some(Ok(v)) => received.lock().unwrap().push(v),
                                    Some(Err(RecvError)) => break,
                                    None => {
                                        drops.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for c in consumers {
                    c.await.unwrap();
                }
            });
            let mut got = std::mem::take(&mut *received.lock().unwrap());
            got.sort_unstable();
            assert_eq!(
                got,
                (0..TOTAL).collect::<Vec<_>>(),
                "cap {cap}: a value lost or doubled"
            );
            assert!(drops.load(Ordering::Relaxed) > 0, "no future was dropped pending");
        });
    }
}

/// A value that records whether it was received or dropped unreceived.
struct Tracked {
    id: u64,
    received: bool,
    dropped: Arc<Mutex<Vec<u64>>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.received {
            self.dropped.lock().unwrap().push(self.id);
        }
    }
}

#[test]
fn send_futures_dropped_at_random_points_lose_no_value() {
    for cap in [0, 2] {
        guarded(move || {
            const PER_TASK: u64 = 3_000;
            const TASKS: u64 = 3;
            let (tx, rx) = bounded::<Tracked>(cap);
            let dropped = Arc::new(Mutex::new(Vec::new()));
            // Goroutines receive, slowly at times, so that sends wait.
            let receivers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    gort::go(move || {
                        let mut got = Vec::new();
                        for mut t in rx.iter() {
                            t.received = true;
                            got.push(t.id);
                            if t.id % 7 == 0 {
                                gort::yield_now();
                            }
                        }
                        got
                    })
                })
                .collect();
            drop(rx);
            let sent_ok: Vec<u64> = tokio_rt(2).block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|k| {
                        let (tx, dropped) = (tx.clone(), Arc::clone(&dropped));
                        tokio::spawn(async move {
                            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (k + 1));
                            let mut ok = Vec::new();
                            for id in k * PER_TASK..(k + 1) * PER_TASK {
                                let v = Tracked {
                                    id,
                                    received: false,
                                    dropped: Arc::clone(&dropped),
                                };
                                let r = match rng.below(3) {
                                    0 => tokio::time::timeout(Duration::from_micros(rng.below(30)), tx.send_async(v))
                                        .await
                                        .ok(),
                                    1 => tx.send_async(v).now_or_never(),
                                    _ => Some(tx.send_async(v).await),
                                };
                                if let Some(r) = r {
                                    assert!(r.is_ok(), "a send failed with receivers alive");
                                    ok.push(id);
                                }
                            }
                            ok
                        })
                    })
                    .collect();
                let mut ok = Vec::new();
                for t in tasks {
                    ok.extend(t.await.unwrap());
                }
                ok
            });
            drop(tx);
            let mut received: Vec<u64> = receivers.into_iter().flat_map(|r| r.join().unwrap()).collect();
            let dropped = std::mem::take(&mut *dropped.lock().unwrap());
            // Every value either reached a receiver or was dropped with its
            // future, never both, never neither.
            let total = TASKS * PER_TASK;
            let mut all: Vec<u64> = received.iter().chain(&dropped).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..total).collect::<Vec<_>>(), "cap {cap}: lost or doubled");
            // A send that resolved Ok was received.
            received.sort_unstable();
            let received: HashSet<u64> = received.into_iter().collect();
            assert!(sent_ok.iter().all(|id| received.contains(id)));
            assert!(!dropped.is_empty(), "no send future was dropped pending");
        });
    }
}

#[test]
fn one_wake_per_value_and_a_dropped_future_hands_it_on() {
    let (tx, rx) = unbounded::<u32>();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let mut a = rx.recv_async();
    let mut b = rx.recv_async();
    assert!(poll_with(&mut a, &wa).is_pending());
    assert!(poll_with(&mut b, &wb).is_pending());
    tx.send(1).unwrap();
    assert_eq!((wakes(&ca), wakes(&cb)), (1, 0), "one value wakes one future");
    drop(a); // woken, never took the value
    assert_eq!(wakes(&cb), 1, "the dropped future's wake goes to the next");
    assert_eq!(poll_with(&mut b, &wb), Poll::Ready(Ok(1)));

    // A future re-polled with another waker is woken through that one.
    let (c1, w1) = counting();
    let (c2, w2) = counting();
    let mut f = rx.recv_async();
    assert!(poll_with(&mut f, &w1).is_pending());
    assert!(poll_with(&mut f, &w2).is_pending());
    tx.send(2).unwrap();
    assert_eq!((wakes(&c1), wakes(&c2)), (0, 1));
    assert_eq!(poll_with(&mut f, &w2), Poll::Ready(Ok(2)));
}

#[test]
fn a_pending_send_future_is_woken_when_its_value_is_taken() {
    let (tx, rx) = bounded::<u32>(0);
    let (c, w) = counting();
    let mut s = tx.send_async(5);
    assert!(poll_with(&mut s, &w).is_pending());
    assert_eq!(rx.try_recv(), Ok(5)); // a poller takes an offered value
    assert_eq!(wakes(&c), 1);
    assert_eq!(poll_with(&mut s, &w), Poll::Ready(Ok(())));

    // Dropped while offered: the value goes with it.
    let mut s = tx.send_async(6);
    assert!(poll_with(&mut s, &w).is_pending());
    drop(s);
    assert!(rx.try_recv().is_err());
}

#[test]
fn close_as_futures_see_it() {
    // A pending send future gets its value back; buffered values drain,
    // then a receive future sees the close.
    let (tx, rx) = bounded::<String>(1);
    tx.send("buffered".into()).unwrap();
    let (c, w) = counting();
    let mut s = tx.send_async("waiting".into());
    assert!(poll_with(&mut s, &w).is_pending());
    assert!(tx.close());
    assert_eq!(wakes(&c), 1);
    assert_eq!(
        poll_with(&mut s, &w),
        Poll::Ready(Err(SendError("waiting".to_string())))
    );
    assert_eq!(
        futures::executor::block_on(tx.send_async("late".into())),
        Err(SendError("late".into()))
    );
    assert_eq!(futures::executor::block_on(rx.recv_async()), Ok("buffered".to_string()));
    assert_eq!(futures::executor::block_on(rx.recv_async()), Err(RecvError));

    // Pending receive futures are all woken by the close.
    let (tx, rx) = bounded::<u8>(0);
    let (c1, w1) = counting();
    let (c2, w2) = counting();
    let mut r1 = rx.recv_async();
    let mut r2 = rx.recv_async();
    assert!(poll_with(&mut r1, &w1).is_pending());
    assert!(poll_with(&mut r2, &w2).is_pending());
    let keeper = tx.clone(); // close works while senders remain
    assert!(tx.close());
    assert_eq!((wakes(&c1), wakes(&c2)), (1, 1));
    assert_eq!(poll_with(&mut r1, &w1), Poll::Ready(Err(RecvError)));
    assert_eq!(poll_with(&mut r2, &w2), Poll::Ready(Err(RecvError)));
    assert!(keeper.is_closed());

    // The last receiver going away returns an offered value too.
    let (tx, rx) = bounded::<u8>(0);
    let mut s = tx.send_async(9);
    let (c, w) = counting();
    assert!(poll_with(&mut s, &w).is_pending());
    drop(rx);
    assert_eq!(wakes(&c), 1);
    assert_eq!(poll_with(&mut s, &w), Poll::Ready(Err(SendError(9))));
}

#[test]
fn close_from_tokio_ends_goroutine_consumers() {
    guarded(|| {
        let (tx, rx) = bounded::<u32>(4);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || rx.iter().count())
            })
            .collect();
        let keep = tx.clone();
        tokio_rt(1).block_on(async move {
            for i in 0..100 {
                tx.send_async(i).await.unwrap();
            }
            assert!(tx.close());
            assert_eq!(tx.send_async(100).await, Err(SendError(100)));
        });
        let n: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(n, 100);
        drop(keep);
    });
}

#[test]
fn never_is_never_ready_for_a_future() {
    let rx = never::<u8>();
    let (c, w) = counting();
    let mut f = rx.recv_async();
    assert!(poll_with(&mut f, &w).is_pending());
    assert!(rx.recv_async().now_or_never().is_none());
    let r = tokio_rt(1).block_on(async { tokio::time::timeout(Duration::from_millis(5), rx.recv_async()).await });
    assert!(r.is_err(), "never() resolved: {r:?}");
    assert_eq!(wakes(&c), 0);
}

#[test]
fn a_futures_select_loop_over_two_channels_switches_closed_inputs_off() {
    // futures::select! over recv futures; a closed input is replaced by
    // never(), so the loop ends after exactly one iteration per value and
    // one per close.
    guarded(|| {
        let (t1, r1) = unbounded::<u32>();
        let (t2, r2) = bounded::<u32>(0);
        gort::go(move || (0..50).for_each(|i| t1.send(i).unwrap()));
        gort::go(move || (0..30).for_each(|i| t2.send(i).unwrap()));
        let (mut a, mut b) = (r1, r2);
        let (mut iterations, mut got, mut closed) = (0, 0, 0);
        futures::executor::block_on(async {
            while closed < 2 {
                iterations += 1;
                futures::select! {
                    v = a.recv_async().fuse() => match v {
                        Ok(_) => got += 1,
                        Err(_) => { a = never(); closed += 1; }
                    },
                    v = b.recv_async().fuse() => match v {
                        Ok(_) => got += 1,
                        Err(_) => { b = never(); closed += 1; }
                    },
                }
            }
        });
        assert_eq!(got, 80);
        assert_eq!(iterations, 82);
    });
}

#[test]
fn goroutines_await_channel_and_join_futures_through_gort_block_on() {
    // Consumers are goroutines parked in `gort::block_on` on `recv_async`;
    // producers are Tokio tasks (`send_async`) and goroutines (`send`).
    guarded(|| {
        let (tx, rx) = bounded::<(u64, u64)>(0);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || {
                    gort::block_on(async {
                        let mut got = Vec::new();
                        while let Ok(v) = rx.recv_async().await {
                            got.push(v);
                        }
                        got
                    })
                })
            })
            .collect();
        drop(rx);
        for s in 2..SENDERS {
            let tx = tx.clone();
            gort::go(move || (0..PER_SENDER).for_each(|i| tx.send((s, i)).unwrap()));
        }
        send_from_tokio_tasks(tx, 0..2);
        check_consumers(consumers);

        // A goroutine awaits another's JoinHandle.
        let (go_tx, go_rx) = bounded::<u32>(0);
        let inner = gort::go(move || go_rx.recv().unwrap() + 1);
        let outer = gort::go(move || gort::block_on(inner.into_future()).unwrap());
        go_tx.send(1).unwrap();
        assert_eq!(outer.join().unwrap(), 2);
    });
}

#[test]
fn parked_goroutine_senders_do_not_starve_a_send_future() {
    // Goroutines that send without end keep a one-slot channel full and
    // re-park as soon as a slot frees; a send future waiting beside them
    // still gets the second freed slot (they take turns).
    guarded(|| {
        let (tx, rx) = bounded::<u64>(1);
        tx.send(0).unwrap();
        let senders: Vec<_> = (1..=2)
            .map(|s| {
                let tx = tx.clone();
                gort::go(move || {
                    let mut i = 0;
                    while tx.send(s * 1_000 + i).is_ok() {
                        i += 1;
                    }
                })
            })
            .collect();
        gort::go(move || {
            for s in &senders {
                common::wait_until_parked(s, "chan send");
            }
        })
        .join()
        .unwrap();
        let (c, w) = counting();
        let mut f = tx.send_async(7);
        assert!(poll_with(&mut f, &w).is_pending());
        let first: Vec<u64> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(first[0], 0);
        assert_eq!(
            first[2], 7,
            "the future's value waited behind the goroutines: {first:?}"
        );
        assert_eq!(wakes(&c), 1);
        assert_eq!(poll_with(&mut f, &w), Poll::Ready(Ok(())));
        drop(rx); // the goroutines' sends fail and they end
    });
}
