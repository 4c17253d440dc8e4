//! `gort::block_on`: futures polled on goroutines (and on plain threads),
//! woken from goroutines and threads, with the wake protocol's promises —
//! no lost wake, coalesced wakes, wakers that outlive the call — and the
//! dump and deadlock check's view of a goroutine waiting on a future.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

mod common;

use common::{guarded, in_child, wait_until_parked};
use gort::Runtime;

/// A one-shot flag with one waker: the smallest executor-agnostic future.
#[derive(Default)]
struct Flag {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
    polls: AtomicUsize,
}

impl Flag {
    fn raise(&self) {
        self.set.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    fn wait(self: &Arc<Self>) -> FlagWait {
        FlagWait(Arc::clone(self))
    }
}

struct FlagWait(Arc<Flag>);

impl Future for FlagWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.polls.fetch_add(1, Ordering::Relaxed);
        if self.0.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
        // Raised between the check and storing the waker: the raiser found
        // no waker to wake, so look again.
        if self.0.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[test]
fn a_goroutine_waits_for_a_future_a_plain_thread_completes() {
    let got = guarded(|| {
        gort::run(|| {
            let (tx, rx) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(41u32).unwrap();
            });
            gort::block_on(rx).unwrap() + 1
        })
    });
    assert_eq!(got, 42);
}

#[test]
fn a_plain_thread_outside_any_runtime_blocks_on_a_future() {
    let got = guarded(|| {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || tx.send("done").unwrap());
        gort::block_on(rx).unwrap()
    });
    assert_eq!(got, "done");
}

/// Round trips between two parties that each wait in `block_on`: a wake may
/// land before, during or after the other's park, and none may be lost.
fn ping_pong(rounds: usize, partner_on_thread: bool) {
    let (to_partner_tx, to_partner_rx) = async_channel::bounded::<usize>(1);
    let (back_tx, back_rx) = async_channel::bounded::<usize>(1);
    let partner = move || {
        while let Ok(n) = gort::block_on(to_partner_rx.recv()) {
            gort::block_on(back_tx.send(n + 1)).unwrap();
        }
    };
    let thread = if partner_on_thread {
        Some(std::thread::spawn(partner))
    } else {
        gort::go(partner);
        None
    };
    for i in 0..rounds {
        gort::block_on(to_partner_tx.send(i)).unwrap();
        assert_eq!(gort::block_on(back_rx.recv()).unwrap(), i + 1);
    }
    drop(to_partner_tx);
    if let Some(t) = thread {
        t.join().unwrap();
    }
}

#[test]
fn no_wake_is_lost_between_goroutines() {
    guarded(|| {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            let pairs: Vec<_> = (0..8).map(|_| gort::go(|| ping_pong(5_000, false))).collect();
            for p in pairs {
                p.join().unwrap();
            }
        });
    });
}

#[test]
fn no_wake_is_lost_between_a_goroutine_and_a_thread() {
    guarded(|| {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| ping_pong(20_000, true));
    });
}

#[test]
fn no_wake_is_lost_under_chaos() {
    for seed in 1..=3 {
        guarded(move || {
            let rt = Runtime::builder().procs(2).chaos(seed).build().unwrap();
            rt.block_on(|| {
                let pairs: Vec<_> = (0..4).map(|_| gort::go(|| ping_pong(1_000, false))).collect();
                ping_pong(1_000, true);
                for p in pairs {
                    p.join().unwrap();
                }
            });
        });
    }
}

/// Many wakes of a parked goroutine from several threads at once ready it
/// once: the future is polled exactly twice (pending, then ready), and no
/// wake readies it a second time (that would resume a running goroutine).
#[test]
fn wakes_of_a_parked_goroutine_coalesce() {
    guarded(|| {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            for _ in 0..50 {
                let flag = Arc::new(Flag::default());
                let waiter = {
                    let flag = Arc::clone(&flag);
                    gort::go(move || gort::block_on(flag.wait()))
                };
                wait_until_parked(&waiter, "future");
                let waker = flag
                    .waker
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("the pending poll left its waker");
                flag.set.store(true, Ordering::Release);
                let wakers: Vec<_> = (0..4)
                    .map(|_| {
                        let waker = waker.clone();
                        std::thread::spawn(move || {
                            for _ in 0..250 {
                                waker.wake_by_ref();
                            }
                        })
                    })
                    .collect();
                waiter.join().unwrap();
                for w in wakers {
                    w.join().unwrap();
                }
                assert_eq!(flag.polls.load(Ordering::Relaxed), 2);
            }
        });
    });
}

/// A waker called while the future is being polled (a self-wake: a yield)
/// cancels the park: the future is polled again without parking.
#[test]
fn a_wake_during_the_poll_repolls_without_a_park() {
    struct YieldTimes(usize);
    impl Future for YieldTimes {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            if self.0 == 0 {
                return Poll::Ready(7);
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    let got = guarded(|| gort::run(|| gort::block_on(YieldTimes(10_000))));
    assert_eq!(got, 7);
}

/// Wakers kept after `block_on` returned — as queues and timers keep them —
/// may be called any number of times, from anywhere, and touch nothing:
/// the goroutine they named goes on parking and running normally.
#[test]
fn a_waker_may_outlive_the_call() {
    guarded(|| {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            let kept: Arc<Mutex<Vec<Waker>>> = Arc::default();
            let (tx, rx) = gort::chan::bounded::<u32>(0);
            let g = {
                let kept = Arc::clone(&kept);
                gort::go(move || {
                    let mut sum = 0;
                    for i in 0..100 {
                        let flag = Arc::new(Flag::default());
                        let raiser = Arc::clone(&flag);
                        gort::go(move || raiser.raise());
                        gort::block_on(flag.wait());
                        kept.lock().unwrap().extend(flag.waker.lock().unwrap().take());
                        // Park on something else while the stale wakers fire.
                        sum += rx.recv().unwrap() + i;
                    }
                    sum
                })
            };
            let stale = std::thread::spawn({
                let kept = Arc::clone(&kept);
                move || {
                    for _ in 0..2_000 {
                        for w in kept.lock().unwrap().iter() {
                            w.wake_by_ref();
                        }
                        std::thread::yield_now();
                    }
                }
            });
            for _ in 0..100 {
                tx.send(1).unwrap();
            }
            assert_eq!(g.join().unwrap(), 100 + (0..100).sum::<u32>());
            stale.join().unwrap();
            // And from goroutines, after everything has ended.
            for w in kept.lock().unwrap().drain(..) {
                gort::go(move || w.wake()).join().unwrap();
            }
        });
    });
}

/// futures' combinators over executor-agnostic channels, in a goroutine.
#[test]
fn join_and_select_over_futures_channels() {
    let got = guarded(|| {
        gort::run(|| {
            let (a_tx, a_rx) = futures::channel::oneshot::channel::<u32>();
            let (b_tx, b_rx) = async_channel::unbounded::<u32>();
            gort::go(move || a_tx.send(1).unwrap());
            std::thread::spawn(move || b_tx.send_blocking(2).unwrap());
            let (a, b) = gort::block_on(async { futures::join!(a_rx, b_rx.recv()) });
            let (never_tx, mut never_rx) = futures::channel::oneshot::channel::<u32>();
            let (soon_tx, mut soon_rx) = futures::channel::oneshot::channel::<u32>();
            gort::go(move || soon_tx.send(3).unwrap());
            let c = gort::block_on(async {
                futures::select! {
                    v = never_rx => v.unwrap(),
                    v = soon_rx => v.unwrap(),
                }
            });
            drop(never_tx);
            a.unwrap() + b.unwrap() + c
        })
    });
    assert_eq!(got, 6);
}

/// A panic in `poll` reaches the goroutine like any panic; the runtime goes on.
#[test]
fn a_panicking_future_panics_the_goroutine_only() {
    struct Boom;
    impl Future for Boom {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            panic!("boom in poll");
        }
    }
    guarded(|| {
        gort::run(|| {
            let err = gort::go(|| gort::block_on(Boom)).join().unwrap_err();
            assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in poll"));
            let (tx, rx) = futures::channel::oneshot::channel();
            gort::go(move || tx.send(5).unwrap());
            assert_eq!(gort::block_on(rx), Ok(5));
        })
    });
}

#[test]
fn a_goroutine_waiting_on_a_future_shows_future_in_dumps() {
    guarded(|| {
        gort::run(|| {
            let flag = Arc::new(Flag::default());
            let waiter = {
                let flag = Arc::clone(&flag);
                gort::go(move || gort::block_on(flag.wait()))
            };
            wait_until_parked(&waiter, "future");
            let mut dump = Vec::new();
            gort::runtime::dump(&mut dump).unwrap();
            let dump = String::from_utf8(dump).unwrap();
            assert!(
                dump.contains(&format!("goroutine {} [future, ", waiter.goroutine().id())),
                "{dump}"
            );
            flag.raise();
            waiter.join().unwrap();
        })
    });
}

/// A plain thread holds the waker: the check must wait for it, not report.
#[test]
fn no_deadlock_report_while_a_thread_holds_the_waker() {
    let child = in_child("no_deadlock_report_while_a_thread_holds_the_waker", || {
        let rt = Runtime::builder().procs(2).build().unwrap();
        let got = rt.block_on(|| {
            let (tx, rx) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                tx.send(9u8).unwrap();
            });
            gort::block_on(rx)
        });
        assert_eq!(got, Ok(9));
    });
    if let Some((status, stderr)) = child {
        assert!(status.success(), "{stderr}");
        assert!(!stderr.contains("deadlock"), "{stderr}");
    }
}

/// Nobody can ever wake the future (its only waker is held by a goroutine
/// that is itself parked forever): a real deadlock, reported as such.
#[test]
fn a_future_nobody_can_wake_is_reported_as_a_deadlock() {
    let child = in_child("a_future_nobody_can_wake_is_reported_as_a_deadlock", || {
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            let (_keep_tx, stuck_rx) = gort::chan::bounded::<()>(0);
            let (tx, rx) = futures::channel::oneshot::channel::<u8>();
            // The sender lives on in a goroutine that never sends.
            gort::go(move || {
                let _tx = tx;
                let _ = stuck_rx.recv();
            });
            let _ = gort::block_on(rx);
        });
        println!("unreachable: the deadlock was not reported");
    });
    if let Some((status, stderr)) = child {
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with("fatal error: all goroutines are asleep - deadlock!\n\n"),
            "{stderr}"
        );
        assert!(stderr.contains("goroutine 1 \"main\" [future, "), "{stderr}");
    }
}

/// `block_on` inside a future's `poll`: a wake of the outer future that
/// arrives while the inner call waits must not be consumed by it.
#[test]
fn a_nested_block_on_keeps_the_outer_wake() {
    struct Outer {
        flag: Arc<Flag>,
        inner: Arc<Flag>,
        polled: bool,
    }
    impl Future for Outer {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.polled {
                assert!(self.flag.set.load(Ordering::Acquire), "re-polled without a wake");
                return Poll::Ready("outer woke");
            }
            self.polled = true;
            *self.flag.waker.lock().unwrap() = Some(cx.waker().clone());
            let (flag, inner) = (Arc::clone(&self.flag), Arc::clone(&self.inner));
            // Wake the outer future, then let the inner wait end.
            gort::go(move || {
                flag.raise();
                inner.raise();
            });
            gort::block_on(self.inner.wait());
            // Pending although the outer wake has come: only the outer
            // call's own state remembers it.
            Poll::Pending
        }
    }
    for _ in 0..100 {
        let got = guarded(|| {
            gort::run(|| {
                gort::block_on(Outer {
                    flag: Arc::default(),
                    inner: Arc::default(),
                    polled: false,
                })
            })
        });
        assert_eq!(got, "outer woke");
    }
}

/// A waker kept from an earlier call fires during a later one: the later
/// future sees a spurious poll at most, and still completes correctly.
#[test]
fn a_stale_waker_from_an_earlier_call_only_repolls() {
    /// Ready at once, with the waker of the call that polled it.
    struct GrabWaker;
    impl Future for GrabWaker {
        type Output = Waker;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Waker> {
            Poll::Ready(cx.waker().clone())
        }
    }
    guarded(|| {
        gort::run(|| {
            let stale = gort::block_on(GrabWaker);
            for _ in 0..100 {
                let flag = Arc::new(Flag::default());
                let stale = stale.clone();
                let raiser = Arc::clone(&flag);
                gort::go(move || {
                    for _ in 0..10 {
                        stale.wake_by_ref();
                        gort::yield_now();
                    }
                    raiser.raise();
                });
                gort::block_on(flag.wait());
                assert!(flag.set.load(Ordering::Acquire));
            }
        })
    });
}
