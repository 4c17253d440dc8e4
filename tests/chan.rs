//! Channels and select: the behaviours Go's chan_test.go and select tests
//! check, written anew for gort, plus crossbeam's API surface. Nothing here
//! asserts on timing: only on order, counts, values and outcomes.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gort::Runtime;
use gort::chan::{
    Receiver, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError, Sender, TryRecvError, TrySendError,
    bounded, unbounded,
};

mod common;
use common::wait_until_parked;

/// Run `f` on a fresh runtime with `procs` Ps.
fn on_procs<T: Send + 'static>(procs: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::builder().procs(procs).build().unwrap().block_on(f)
}

/// Abort the whole test binary if `f` has not returned after a long time:
/// a lost wake-up shows up as a hang, and this turns it into a failure.
fn hang_guard<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_secs(300)) {
            eprintln!("{what}: still running after 300 s (lost wake-up?)");
            std::process::abort();
        }
    });
    let r = f();
    drop(done);
    r
}

/// Silence the default panic hook while `f` runs deliberate panics.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(old);
    r
}

/// Yield often enough that, on one P, every other runnable goroutine has
/// run until it parks.
fn let_others_park() {
    for _ in 0..200 {
        gort::yield_now();
    }
}

/// A small deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// The handles

#[test]
fn handles_are_clone_send_sync_and_errors_need_no_debug() {
    fn clone_send_sync<T: Clone + Send + Sync>() {}
    clone_send_sync::<Sender<String>>();
    clone_send_sync::<Receiver<String>>();

    struct Opaque;
    assert_eq!(format!("{:?}", SendError(Opaque)), "SendError { .. }");
    assert_eq!(format!("{:?}", TrySendError::Full(Opaque)), "Full(..)");
    assert_eq!(
        format!("{:?}", SendTimeoutError::Disconnected(Opaque)),
        "Disconnected(..)"
    );
    assert_eq!(SendError(Opaque).to_string(), "sending on a disconnected channel");
    assert_eq!(TrySendError::Full(Opaque).to_string(), "sending on a full channel");
    assert_eq!(RecvError.to_string(), "receiving on an empty and disconnected channel");
    assert_eq!(TryRecvError::Empty.to_string(), "receiving on an empty channel");
    assert_eq!(
        RecvTimeoutError::Timeout.to_string(),
        "timed out waiting on receive operation"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(SendError(Opaque));
    assert_eq!(boxed.to_string(), "sending on a disconnected channel");
}

#[test]
fn len_capacity_and_fullness() {
    let (tx, rx) = bounded::<u8>(2);
    assert_eq!((tx.capacity(), rx.capacity()), (Some(2), Some(2)));
    assert!(tx.is_empty() && !tx.is_full());
    tx.send(1).unwrap();
    assert_eq!((tx.len(), rx.len()), (1, 1));
    assert!(!rx.is_empty() && !rx.is_full());
    tx.send(2).unwrap();
    assert!(tx.is_full() && rx.is_full());
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.len(), 1);

    let (tx, rx) = bounded::<u8>(0);
    assert_eq!(tx.capacity(), Some(0));
    assert!(tx.is_empty() && tx.is_full() && rx.is_empty() && rx.is_full());
    assert_eq!(rx.len(), 0);

    let (tx, rx) = unbounded::<u8>();
    assert_eq!(rx.capacity(), None);
    for i in 0..100 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 100);
    assert!(!tx.is_full());
}

#[test]
fn try_send_and_try_recv_on_full_empty_and_disconnected() {
    let (tx, rx) = bounded::<u32>(1);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(tx.try_send(1), Ok(()));
    assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(tx.try_send(3), Ok(()));
    drop(tx);
    assert_eq!(rx.try_recv(), Ok(3), "buffered values outlive the senders");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

    let (tx, rx) = bounded::<u32>(1);
    drop(rx);
    assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));

    // Unbuffered: try_send succeeds only against a parked receiver.
    gort::run(|| {
        let (tx, rx) = bounded::<u32>(0);
        assert_eq!(tx.try_send(5), Err(TrySendError::Full(5)));
        let h = gort::go(move || rx.recv());
        let mut v = 6;
        loop {
            match tx.try_send(v) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => v = back,
                Err(e) => panic!("{e}"),
            }
            gort::yield_now();
        }
        assert_eq!(h.join().unwrap(), Ok(6));
        assert_eq!(tx.try_send(7), Err(TrySendError::Disconnected(7)));
    });
}

#[test]
fn iterators() {
    let (tx, rx) = unbounded();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(rx.try_iter().next(), None);
    tx.send(5).unwrap();
    tx.send(6).unwrap();
    drop(tx);
    assert_eq!(rx.iter().next(), Some(5));
    assert_eq!((&rx).into_iter().collect::<Vec<_>>(), [6]);
    assert_eq!(rx.into_iter().count(), 0);
}

// ---------------------------------------------------------------------------
// Rendezvous and ordering

#[test]
fn unbuffered_send_returns_only_after_the_receive() {
    // One P: once the sender has started, yielding lets it run until it
    // parks. A send that did not wait for a receiver would have returned
    // and set `sent` by then. With a correct channel `sent` can only be set
    // after our receive, whatever the scheduling.
    on_procs(1, || {
        let (tx, rx) = bounded::<u32>(0);
        let started = Arc::new(AtomicBool::new(false));
        let receiving = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicBool::new(false));
        let h = gort::go({
            let (started, receiving, sent) = (started.clone(), receiving.clone(), sent.clone());
            move || {
                started.store(true, Ordering::Release);
                tx.send(7).unwrap();
                // The receive happens before the send completes, so what
                // the receiver wrote before receiving is visible here.
                assert!(
                    receiving.load(Ordering::Acquire),
                    "send completed before the receive began"
                );
                sent.store(true, Ordering::Release);
            }
        });
        while !started.load(Ordering::Acquire) {
            gort::yield_now();
        }
        let_others_park();
        assert!(!sent.load(Ordering::Acquire), "send returned with no receiver");
        receiving.store(true, Ordering::Release);
        assert_eq!(rx.recv(), Ok(7));
        h.join().unwrap();
        assert!(sent.load(Ordering::Acquire));
    });
}

#[test]
fn unbuffered_sender_never_runs_ahead_of_its_receiver() {
    // `completed` is stored after send(i) returns, which is after recv(i)
    // began, which is after the receiver's check for i: the check can only
    // fail if a send completes without its receive.
    const N: usize = 2000;
    gort::run(|| {
        let (tx, rx) = bounded::<usize>(0);
        let completed = Arc::new(AtomicUsize::new(0));
        let c = completed.clone();
        let h = gort::go(move || {
            for i in 0..N {
                tx.send(i).unwrap();
                c.store(i + 1, Ordering::Release);
            }
        });
        for i in 0..N {
            assert!(
                completed.load(Ordering::Acquire) <= i,
                "send {i} completed before its receive"
            );
            assert_eq!(rx.recv(), Ok(i));
        }
        h.join().unwrap();
    });
}

#[test]
fn fifo_per_channel_with_one_producer() {
    const N: u64 = 10_000;
    for cap in [Some(0), Some(1), Some(16), None] {
        let got = gort::run(move || {
            let (tx, rx) = match cap {
                Some(c) => bounded(c),
                None => unbounded(),
            };
            let h = gort::go(move || (0..N).for_each(|i| tx.send(i).unwrap()));
            let got: Vec<u64> = rx.iter().collect();
            h.join().unwrap();
            got
        });
        assert!(got.iter().copied().eq(0..N), "out of order with capacity {cap:?}");
    }
}

#[test]
fn parked_senders_are_served_in_arrival_order() {
    // One P: each sender parks before the next one is spawned.
    on_procs(1, || {
        let (tx, rx) = bounded::<usize>(1);
        tx.send(usize::MAX).unwrap();
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let tx = tx.clone();
                let h = gort::go(move || tx.send(i).unwrap());
                let_others_park();
                h
            })
            .collect();
        assert_eq!(rx.recv(), Ok(usize::MAX));
        let got: Vec<usize> = (0..10).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn unbounded_carries_100k_messages_in_order() {
    const N: u64 = 100_000;
    let sum = gort::run(|| {
        let (tx, rx) = unbounded();
        let h = gort::go(move || (0..N).for_each(|i| tx.send(i).unwrap()));
        let mut expect = 0;
        let mut sum = 0;
        for v in rx {
            assert_eq!(v, expect);
            expect += 1;
            sum += v;
        }
        h.join().unwrap();
        assert_eq!(expect, N);
        sum
    });
    assert_eq!(sum, N * (N - 1) / 2);
}

// ---------------------------------------------------------------------------
// Disconnection

#[test]
fn dropping_every_receiver_returns_values_to_parked_senders() {
    for cap in [0, 3] {
        on_procs(1, move || {
            let (tx, rx) = bounded::<String>(cap);
            for i in 0..cap {
                tx.send(format!("buffered {i}")).unwrap();
            }
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let tx = tx.clone();
                    gort::go(move || tx.send(format!("v{i}")))
                })
                .collect();
            let (_keep, quiet) = bounded::<u8>(0);
            let in_select = {
                let tx = tx.clone();
                gort::go(move || {
                    gort::select! {
                        send(tx, "select".to_string()) -> r => r,
                        recv(quiet) -> m => panic!("nobody sends here: {m:?}"),
                    }
                })
            };
            let_others_park(); // all nine are parked: full, nobody receiving
            let rx2 = rx.clone();
            drop(rx);
            drop(rx2);
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), Err(SendError(format!("v{i}"))));
            }
            assert_eq!(tx.send("late".into()), Err(SendError("late".into())));
            assert_eq!(in_select.join().unwrap(), Err(SendError("select".into())));
            assert_eq!(
                tx.send_timeout("late".into(), Duration::MAX).unwrap_err().into_inner(),
                "late"
            );
        });
    }
}

#[test]
fn dropping_every_receiver_drops_buffered_values() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded(4);
    for _ in 0..4 {
        tx.send(Counted(drops.clone())).unwrap();
    }
    drop(rx);
    assert_eq!(drops.load(Ordering::Relaxed), 4);
    let back = tx.send(Counted(drops.clone())).unwrap_err().into_inner();
    assert_eq!(drops.load(Ordering::Relaxed), 4);
    drop(back);
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn dropping_every_sender_wakes_parked_receivers_after_the_buffer_drains() {
    for cap in [Some(0), Some(2), None] {
        on_procs(1, move || {
            let (tx, rx) = match cap {
                Some(c) => bounded::<u32>(c),
                None => unbounded(),
            };
            let parked: Vec<_> = (0..6)
                .map(|_| {
                    let rx = rx.clone();
                    gort::go(move || rx.recv())
                })
                .collect();
            let (_keep, other) = bounded::<u32>(0);
            let in_select = {
                let rx = rx.clone();
                gort::go(move || {
                    gort::select! {
                        recv(rx) -> m => m,
                        recv(other) -> m => panic!("nobody sends here: {m:?}"),
                    }
                })
            };
            let_others_park();
            let tx2 = tx.clone();
            drop(tx);
            drop(tx2);
            for h in parked {
                assert_eq!(h.join().unwrap(), Err(RecvError));
            }
            assert_eq!(in_select.join().unwrap(), Err(RecvError));
            assert_eq!(rx.recv(), Err(RecvError));
        });
    }
    // Buffered values are still delivered first.
    let (tx, rx) = bounded(8);
    (0..5).for_each(|i| tx.send(i).unwrap());
    drop(tx);
    assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(rx.recv_timeout(Duration::MAX), Err(RecvTimeoutError::Disconnected));
}

// ---------------------------------------------------------------------------
// Many producers and consumers

fn mpmc_sum(cap: Option<usize>, producers: u64, consumers: usize, per: u64) {
    let (sum, count) = gort::run(move || mpmc_body(cap, producers, consumers, per));
    let n = producers * per;
    assert_eq!((sum, count), (n * (n - 1) / 2, n), "capacity {cap:?}");
}

fn mpmc_body(cap: Option<usize>, producers: u64, consumers: usize, per: u64) -> (u64, u64) {
    let (tx, rx) = match cap {
        Some(c) => bounded::<u64>(c),
        None => unbounded(),
    };
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let rx = rx.clone();
            gort::go(move || rx.iter().fold((0u64, 0u64), |(s, c), v| (s + v, c + 1)))
        })
        .collect();
    drop(rx);
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            gort::go(move || (p * per..(p + 1) * per).for_each(|v| tx.send(v).unwrap()))
        })
        .collect();
    drop(tx);
    ps.into_iter().for_each(|h| h.join().unwrap());
    cs.into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(s, c), (s2, c2)| (s + s2, c + c2))
}

#[test]
fn mpmc_sums_default_procs() {
    hang_guard("mpmc_sums_default_procs", || {
        for cap in [Some(0), Some(1), Some(64), None] {
            mpmc_sum(cap, 8, 8, 5_000);
        }
    });
}

#[test]
fn mpmc_sums_one_proc() {
    hang_guard("mpmc_sums_one_proc", || {
        for cap in [Some(0), Some(1), Some(64), None] {
            let (sum, count) = on_procs(1, move || mpmc_body(cap, 8, 8, 5_000));
            let n = 40_000u64;
            assert_eq!((sum, count), (n * (n - 1) / 2, n), "capacity {cap:?}");
        }
    });
}

#[test]
fn threads_and_goroutines_talk_both_ways() {
    hang_guard("threads_and_goroutines_talk_both_ways", || {
        for cap in [0, 4] {
            let (to_g, from_thread) = bounded::<u64>(cap);
            let (to_thread, from_g) = bounded::<u64>(cap);
            let echo = gort::go(move || {
                for v in from_thread {
                    to_thread.send(v * 2).unwrap();
                }
            });
            let t = std::thread::spawn(move || {
                for i in 0..2000 {
                    to_g.send(i).unwrap();
                    assert_eq!(from_g.recv(), Ok(i * 2));
                }
            });
            t.join().unwrap();
            echo.join().unwrap();
        }
        // Several plain threads and goroutines on one channel.
        let (tx, rx) = bounded::<u64>(0);
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || (0..500).for_each(|i| tx.send(t * 1000 + i).unwrap()))
            })
            .collect();
        let gs: Vec<_> = (3..6)
            .map(|t| {
                let tx = tx.clone();
                gort::go(move || (0..500).for_each(|i| tx.send(t * 1000 + i).unwrap()))
            })
            .collect();
        drop(tx);
        let rx2 = rx.clone();
        let half = gort::go(move || rx2.iter().collect::<Vec<_>>());
        let mut got: Vec<u64> = rx.iter().collect();
        got.extend(half.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
        gs.into_iter().for_each(|g| g.join().unwrap());
        got.sort_unstable();
        let want: Vec<u64> = (0..6).flat_map(|t| (0..500).map(move |i| t * 1000 + i)).collect();
        assert_eq!(got, want);
    });
}

// ---------------------------------------------------------------------------
// Timeouts

fn timeouts_body() {
    let (tx, rx) = bounded::<u32>(0);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
    let past = Instant::now();
    assert_eq!(rx.recv_deadline(past), Err(RecvTimeoutError::Timeout));
    assert_eq!(
        tx.send_timeout(1, Duration::from_millis(20)),
        Err(SendTimeoutError::Timeout(1))
    );
    assert_eq!(tx.send_timeout(2, Duration::ZERO), Err(SendTimeoutError::Timeout(2)));
    assert_eq!(tx.send_deadline(3, past), Err(SendTimeoutError::Timeout(3)));

    // Someone comes: Ok, with timeouts long and "infinite".
    let t2 = tx.clone();
    let h = gort::go(move || {
        t2.send(10).unwrap();
        t2.send(11).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(600)), Ok(10));
    assert_eq!(rx.recv_timeout(Duration::MAX), Ok(11));
    h.join().unwrap();
    let r2 = rx.clone();
    let h = gort::go(move || (r2.recv().unwrap(), r2.recv().unwrap()));
    assert_eq!(tx.send_timeout(12, Duration::from_secs(600)), Ok(()));
    assert_eq!(tx.send_timeout(13, Duration::MAX), Ok(()));
    assert_eq!(h.join().unwrap(), (12, 13));

    // A timed-out waiter leaves nothing behind: the next value goes to a
    // live receiver, not to the one that gave up.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    let r2 = rx.clone();
    let h = gort::go(move || r2.recv());
    tx.send(14).unwrap();
    assert_eq!(h.join().unwrap(), Ok(14));
}

#[test]
fn timeouts_from_a_goroutine() {
    hang_guard("timeouts_from_a_goroutine", || gort::run(timeouts_body));
}

#[test]
fn timeouts_from_a_plain_thread() {
    hang_guard("timeouts_from_a_plain_thread", timeouts_body);
}

// ---------------------------------------------------------------------------
// select!

#[test]
fn select_is_fair_between_ready_channels() {
    // Binomial(10000, 1/2) leaves [4000, 6000] with probability < 1e-80.
    const N: usize = 10_000;
    let (t1, r1) = unbounded();
    let (t2, r2) = unbounded();
    for _ in 0..N {
        t1.send(()).unwrap();
        t2.send(()).unwrap();
    }
    let mut hits = [0usize; 2];
    for _ in 0..N {
        gort::select! {
            recv(r1) -> m => { m.unwrap(); hits[0] += 1 }
            recv(r2) -> m => { m.unwrap(); hits[1] += 1 }
        }
    }
    assert!(hits.iter().all(|&h| (4000..=6000).contains(&h)), "unfair: {hits:?}");

    // Send arms too, and the builder.
    let (t3, r3) = unbounded::<u8>();
    let left_in_r1 = r1.len();
    let mut hits = [0usize; 2];
    for _ in 0..N {
        gort::select! {
            send(t1, ()) -> r => { r.unwrap(); hits[0] += 1 }
            send(t3, 0) -> r => { r.unwrap(); hits[1] += 1 }
        }
    }
    assert!(
        hits.iter().all(|&h| (4000..=6000).contains(&h)),
        "unfair sends: {hits:?}"
    );
    assert_eq!(r1.len() + r3.len(), left_in_r1 + N);
    let mut hits = [0usize; 2];
    for _ in 0..N {
        let mut sel = Select::new();
        let a = sel.recv(&r2);
        sel.recv(&r3);
        let oper = sel.select();
        if oper.index() == a {
            oper.recv(&r2).unwrap();
            hits[0] += 1;
        } else {
            oper.recv(&r3).unwrap();
            hits[1] += 1;
        }
        if r2.is_empty() {
            t2.send(()).unwrap();
        }
        if r3.is_empty() {
            t3.send(0).unwrap();
        }
    }
    assert!(
        hits.iter().all(|&h| (4000..=6000).contains(&h)),
        "unfair builder: {hits:?}"
    );
}

/// Two `Select` sends wait on a full channel. A receive frees the slot and
/// wakes the first, which (one P) runs only after its other case has been
/// made ready too, and then picks either. If it goes elsewhere, it must
/// wake the second in its place rather than leave it parked beside the
/// free slot. Go has no such wake-up to pass on: its sends carry their
/// values.
#[test]
fn a_select_send_woken_for_a_free_slot_passes_it_on_if_it_goes_elsewhere() {
    hang_guard("select send pass-on", || {
        on_procs(1, || {
            let mut went_elsewhere = 0;
            for _ in 0..40 {
                let (tx, rx) = bounded::<u32>(1);
                tx.send(0).unwrap();
                let (other_tx, other_rx) = bounded::<()>(1);
                let first = {
                    let tx = tx.clone();
                    gort::go(move || {
                        let mut sel = Select::new();
                        let send = sel.send(&tx);
                        sel.recv(&other_rx);
                        let oper = sel.select();
                        if oper.index() == send {
                            oper.send(&tx, 1).unwrap();
                            true
                        } else {
                            oper.recv(&other_rx).unwrap();
                            false
                        }
                    })
                };
                wait_until_parked(&first, "select");
                let second = {
                    let tx = tx.clone();
                    gort::go(move || {
                        let mut sel = Select::new();
                        sel.send(&tx);
                        sel.select().send(&tx, 2).unwrap();
                    })
                };
                wait_until_parked(&second, "select");
                assert_eq!(rx.try_recv(), Ok(0));
                other_tx.send(()).unwrap();
                if first.join().unwrap() {
                    assert_eq!(rx.recv(), Ok(1));
                } else {
                    went_elsewhere += 1;
                }
                second.join().unwrap();
                assert_eq!(rx.recv(), Ok(2));
            }
            // Each round goes elsewhere with probability 1/2.
            assert!(went_elsewhere > 0);
        })
    });
}

#[test]
fn select_default_is_taken_only_when_nothing_is_ready() {
    let (tx, rx) = bounded::<u32>(1);
    let (full_tx, _full_rx) = bounded::<u32>(0);
    let took = gort::select! {
        recv(rx) -> _m => "recv",
        send(full_tx, 1) -> _r => "send",
        default => "default",
    };
    assert_eq!(took, "default");
    tx.send(5).unwrap();
    let took = gort::select! {
        recv(rx) -> m => { assert_eq!(m, Ok(5)); "recv" }
        send(full_tx, 1) -> _r => "send",
        default => "default",
    };
    assert_eq!(took, "recv");
    // A ready send arm also beats default.
    let took = gort::select! {
        send(tx, 6) -> r => { r.unwrap(); "send" }
        default => "default",
    };
    assert_eq!((took, rx.try_recv()), ("send", Ok(6)));
    // Only a default arm.
    assert_eq!(gort::select! { default => 1 }, 1);
}

#[test]
fn select_default_timeout() {
    hang_guard("select_default_timeout", || {
        gort::run(|| {
            let (tx, rx) = bounded::<u32>(0);
            let took = gort::select! {
                recv(rx) -> _m => "recv",
                default(Duration::from_millis(20)) => "timeout",
            };
            assert_eq!(took, "timeout");
            let took = gort::select! {
                recv(rx) -> _m => "recv",
                default(Duration::ZERO) => "timeout",
            };
            assert_eq!(took, "timeout");
            let h = gort::go(move || tx.send(8).unwrap());
            let took = gort::select! {
                recv(rx) -> m => { assert_eq!(m, Ok(8)); "recv" }
                default(Duration::from_secs(600)) => "timeout",
            };
            assert_eq!(took, "recv");
            h.join().unwrap();
            let (tx, rx) = bounded::<u32>(0);
            let h = gort::go(move || rx.recv().unwrap());
            let took = gort::select! {
                send(tx, 9) -> r => { r.unwrap(); "send" }
                default(Duration::MAX) => "timeout",
            };
            assert_eq!((took, h.join().unwrap()), ("send", 9));
        })
    });
}

#[test]
fn select_over_send_and_recv_arms_at_once() {
    // A relay that both accepts work and hands out results in one select,
    // completed by parked partners on either side.
    hang_guard("select_over_send_and_recv_arms_at_once", || {
        gort::run(|| {
            const N: u64 = 3000;
            let (in_tx, in_rx) = bounded::<u64>(0);
            let (out_tx, out_rx) = bounded::<u64>(0);
            let producer = gort::go(move || (0..N).for_each(|i| in_tx.send(i).unwrap()));
            let consumer = gort::go(move || out_rx.iter().collect::<Vec<_>>());
            let mut pending = std::collections::VecDeque::new();
            let mut input_open = true;
            let (mut sends, mut recvs) = (0, 0);
            while input_open || !pending.is_empty() {
                match (input_open, pending.front().copied()) {
                    (true, Some(v)) => gort::select! {
                        recv(in_rx) -> m => match m {
                            Ok(v) => { pending.push_back(v); recvs += 1 }
                            Err(_) => input_open = false,
                        },
                        send(out_tx, v) -> r => { r.unwrap(); pending.pop_front(); sends += 1 }
                    },
                    (true, None) => match in_rx.recv() {
                        Ok(v) => {
                            pending.push_back(v);
                            recvs += 1
                        }
                        Err(_) => input_open = false,
                    },
                    (false, Some(v)) => {
                        out_tx.send(v).unwrap();
                        pending.pop_front();
                        sends += 1
                    }
                    (false, None) => unreachable!(),
                }
            }
            drop(out_tx);
            producer.join().unwrap();
            assert_eq!(consumer.join().unwrap(), (0..N).collect::<Vec<_>>());
            assert_eq!((sends, recvs), (N, N));
        })
    });
}

#[test]
fn select_on_a_disconnected_channel_returns_at_once() {
    let (tx, rx) = bounded::<u32>(0);
    drop(tx);
    let (_keep_tx, quiet) = bounded::<u32>(0);
    let r = gort::select! {
        recv(quiet) -> m => panic!("{m:?}"),
        recv(rx) -> m => m,
    };
    assert_eq!(r, Err(RecvError));
    let (tx, rx) = bounded::<String>(0);
    drop(rx);
    let r = gort::select! {
        recv(quiet) -> m => panic!("{m:?}"),
        send(tx, "back".to_string()) -> r => r,
    };
    assert_eq!(r, Err(SendError("back".to_string())));
}

#[test]
fn select_macro_accepts_references_temporaries_and_both_body_styles() {
    let (tx, rx) = unbounded::<u32>();
    let tx_ref = &tx;
    let got = gort::select! {
        send(tx_ref, 1) -> r => r.map(|()| "ref"),
    };
    assert_eq!(got, Ok("ref"));
    // A temporary channel end lives as long as the select; block bodies
    // need no comma; a trailing comma is fine.
    let got = gort::select! {
        recv(rx.clone()) -> m => { m.unwrap() }
        recv(&rx) -> m => m.unwrap(),
    };
    assert_eq!(got, 1);
    let got = gort::select! {
        recv(rx) -> _ => unreachable!(),
        default => { 5 }
    };
    assert_eq!(got, 5);
    let got: u32 = gort::select! {
        send(tx, 2) -> r => { r.unwrap(); 2 }
        default(Duration::ZERO) => 0,
    };
    assert_eq!(got, 2);
    // The body can leave the enclosing loop or function.
    let mut n = 0;
    loop {
        gort::select! {
            recv(rx) -> m => { n += m.unwrap(); }
            default => break,
        }
    }
    assert_eq!(n, 2);
}

#[test]
fn try_recv_of_a_buffered_value_never_says_empty() {
    // Go's TestNonblockRecvRace: a value buffered before the senders go is
    // either received or, once another receiver has taken it, the channel
    // is disconnected — never merely "empty".
    gort::run(|| {
        for _ in 0..2000 {
            let (tx, rx) = bounded::<u8>(1);
            tx.send(1).unwrap();
            let r2 = rx.clone();
            let h = gort::go(move || r2.try_recv());
            drop(tx);
            let mine = rx.recv();
            match h.join().unwrap() {
                Ok(1) => assert_eq!(mine, Err(RecvError)),
                Err(TryRecvError::Disconnected) => assert_eq!(mine, Ok(1)),
                other => panic!("try_recv said {other:?}"),
            }
        }
    });
}

#[test]
fn select_never_pairs_with_itself() {
    // Go's TestSelfSelect: two goroutines each offer to send and to receive
    // on one unbuffered channel; a select must not receive its own value,
    // and every round pairs the two, so both finish.
    hang_guard("select_never_pairs_with_itself", || {
        for procs in [1, 2] {
            on_procs(procs, || {
                let (tx, rx) = bounded::<usize>(0);
                let hs: Vec<_> = (0..2)
                    .map(|me| {
                        let (tx, rx) = (tx.clone(), rx.clone());
                        gort::go(move || {
                            let mut received = 0;
                            for _ in 0..1000 {
                                gort::select! {
                                    send(tx, me) -> r => r.unwrap(),
                                    recv(rx) -> m => { assert_ne!(m.unwrap(), me); received += 1 }
                                }
                            }
                            received
                        })
                    })
                    .collect();
                let received: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
                assert_eq!(received, 1000);
            });
        }
    });
}

#[test]
fn select_with_a_channel_twice_and_both_send_values() {
    // Go's TestPseudoRandomSend: both values of a select over two sends on
    // one channel get sent.
    let (tx, rx) = bounded::<u8>(1);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        gort::select! {
            send(tx, 0) -> r => r.unwrap(),
            send(tx, 1) -> r => r.unwrap(),
        }
        seen.insert(rx.recv().unwrap());
    }
    assert_eq!(seen.len(), 2);
    let got = gort::select! {
        recv(rx) -> m => m,
        recv(rx) -> m => m,
        default(Duration::from_millis(1)) => Ok(9),
    };
    assert_eq!(got, Ok(9));
}

#[test]
fn select_from_a_plain_thread_with_goroutine_partners() {
    hang_guard("select_from_a_plain_thread_with_goroutine_partners", || {
        let (tx, rx) = bounded::<u32>(0);
        let (tx2, rx2) = bounded::<u32>(0);
        let h = gort::go(move || {
            tx.send(1).unwrap();
            rx2.recv().unwrap()
        });
        let m = gort::select! { recv(rx) -> m => m };
        assert_eq!(m, Ok(1));
        gort::select! { send(tx2, 2) -> r => r.unwrap() };
        assert_eq!(h.join().unwrap(), 2);
    });
}

// ---------------------------------------------------------------------------
// The Select builder

#[test]
fn builder_send_reserves_a_parked_receiver_or_a_buffer_slot() {
    gort::run(|| {
        // A parked receiver is reserved and then given the value.
        let (tx, rx) = bounded::<u32>(0);
        let h = gort::go(move || rx.recv());
        let mut sel = Select::new();
        let s = sel.send(&tx);
        let oper = sel.select();
        assert_eq!(oper.index(), s);
        oper.send(&tx, 1).unwrap();
        assert_eq!(h.join().unwrap(), Ok(1));

        // A buffer slot is reserved: nobody else can take it meanwhile.
        let (tx, rx) = bounded::<u32>(1);
        let mut sel = Select::new();
        sel.send(&tx);
        let oper = sel.select();
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        assert_eq!(rx.len(), 0);
        oper.send(&tx, 3).unwrap();
        assert_eq!(rx.recv(), Ok(3));

        // Disconnected: the value comes back.
        drop(rx);
        let mut sel = Select::new();
        sel.send(&tx);
        assert_eq!(sel.select().send(&tx, 4), Err(SendError(4)));
    });
}

#[test]
fn builder_parked_send_completes_when_a_receiver_arrives() {
    hang_guard("builder_parked_send_completes_when_a_receiver_arrives", || {
        for procs in [1, 2] {
            on_procs(procs, || {
                let (tx, rx) = bounded::<u32>(0);
                let (_quiet_tx, quiet_rx) = bounded::<u32>(0);
                let h = gort::go(move || {
                    for v in 0..200 {
                        let mut sel = Select::new();
                        let s = sel.send(&tx);
                        let q = sel.recv(&quiet_rx);
                        let oper = sel.select();
                        assert_ne!(oper.index(), q);
                        assert_eq!(oper.index(), s);
                        oper.send(&tx, v).unwrap();
                    }
                });
                for v in 0..200 {
                    let got = if v % 2 == 0 {
                        rx.recv()
                    } else {
                        rx.recv_timeout(Duration::MAX).map_err(|_| RecvError)
                    };
                    assert_eq!(got, Ok(v));
                }
                h.join().unwrap();
            });
        }
    });
}

#[test]
fn builder_try_select_and_timeout() {
    let (tx, rx) = bounded::<u32>(0);
    let mut sel = Select::new();
    sel.recv(&rx);
    sel.send(&tx);
    assert!(sel.try_select().is_err());
    assert!(sel.select_timeout(Duration::from_millis(10)).is_err());
    assert!(sel.select_deadline(Instant::now()).is_err());
    drop(sel);
    let (tx2, rx2) = unbounded::<u32>();
    tx2.send(5).unwrap();
    let mut sel = Select::new();
    sel.recv(&rx);
    let i = sel.recv(&rx2);
    let oper = sel.try_select().unwrap();
    assert_eq!(oper.index(), i);
    assert_eq!(oper.recv(&rx2), Ok(5));
    drop(tx);
}

#[test]
fn builder_abandoned_operation_panics_and_releases_its_reservation() {
    gort::run(|| {
        // A reserved receiver resumes empty-handed and keeps waiting.
        let (tx, rx) = bounded::<u32>(0);
        let h = gort::go(move || rx.recv());
        let mut sel = Select::new();
        sel.send(&tx);
        let r = quietly(|| std::panic::catch_unwind(AssertUnwindSafe(|| drop(sel.select()))));
        assert!(r.is_err(), "dropping an uncompleted SelectedOperation panics");
        drop(sel);
        tx.send(7).unwrap();
        assert_eq!(h.join().unwrap(), Ok(7));

        // A reserved buffer slot is given back.
        let (tx, rx) = bounded::<u32>(1);
        let mut sel = Select::new();
        sel.send(&tx);
        let r = quietly(|| std::panic::catch_unwind(AssertUnwindSafe(|| drop(sel.select()))));
        assert!(r.is_err());
        assert_eq!(tx.try_send(8), Ok(()));
        assert_eq!(rx.recv(), Ok(8));

        // Completing with the wrong channel panics too.
        let (tx2, _rx2) = bounded::<u32>(1);
        let mut sel = Select::new();
        sel.send(&tx);
        let r = quietly(|| std::panic::catch_unwind(AssertUnwindSafe(|| sel.select().send(&tx2, 9))));
        assert!(r.is_err());
        assert_eq!(tx.try_send(10), Ok(()), "the reservation was released");
    });
}

// ---------------------------------------------------------------------------
// Randomized stress

/// Producers and consumers pick random operations — send, try_send,
/// send_timeout, select!, Select sends; recv (on a channel's own drainer),
/// try_recv, recv_timeout, select! with a timeout, Select over every live
/// channel — on a few channels of different capacities. Every value must
/// be received exactly once, and everything must finish.
fn stress(seed: u64) {
    const PRODUCERS: u64 = 6;
    const PER: u64 = 1500;
    const RANDOM_CONSUMERS: u64 = 3;
    let chans: Vec<(Sender<u64>, Receiver<u64>)> = vec![bounded(0), bounded(1), bounded(3), unbounded()];
    let txs: Vec<Sender<u64>> = chans.iter().map(|c| c.0.clone()).collect();
    let rxs: Vec<Receiver<u64>> = chans.iter().map(|c| c.1.clone()).collect();
    drop(chans);

    // Each channel has a drainer that only blocks on it, so a sender parked
    // on any channel always has a receiver coming.
    let mut consumers: Vec<gort::JoinHandle<Vec<u64>>> = rxs
        .iter()
        .map(|rx| {
            let rx = rx.clone();
            gort::go(move || rx.iter().collect())
        })
        .collect();
    for c in 0..RANDOM_CONSUMERS {
        let rxs = rxs.clone();
        consumers.push(gort::go(move || random_consumer(rxs, seed ^ (c + 100))));
    }
    drop(rxs);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let txs = txs.clone();
            gort::go(move || random_producer(&txs, p * PER..(p + 1) * PER, seed ^ p))
        })
        .collect();
    drop(txs);
    producers.into_iter().for_each(|h| h.join().unwrap());
    let mut got: Vec<u64> = consumers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got.len() as u64, PRODUCERS * PER, "lost or duplicated values");
    assert!(got.iter().copied().eq(0..PRODUCERS * PER), "values lost or duplicated");
}

fn random_producer(txs: &[Sender<u64>], values: std::ops::Range<u64>, seed: u64) {
    let mut rng = Rng::new(seed);
    for v in values {
        let a = rng.below(txs.len());
        let b = rng.below(txs.len());
        match rng.below(6) {
            0 => txs[a].send(v).unwrap(),
            1 => {
                // try_send a while, then block.
                let mut v = Some(v);
                for _ in 0..50 {
                    match txs[a].try_send(v.take().unwrap()) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => v = Some(back),
                        Err(e) => panic!("{e}"),
                    }
                    gort::yield_now();
                }
                if let Some(v) = v {
                    txs[a].send(v).unwrap();
                }
            }
            2 => {
                let mut v = v;
                loop {
                    match txs[a].send_timeout(v, Duration::from_micros(rng.below(100) as u64)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(back)) => v = back,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            3 => gort::select! {
                send(txs[a], v) -> r => r.unwrap(),
                send(txs[b], v) -> r => r.unwrap(),
            },
            4 => gort::select! {
                send(txs[a], v) -> r => r.unwrap(),
                default => txs[b].send(v).unwrap(),
            },
            _ => {
                let mut sel = Select::new();
                let ia = sel.send(&txs[a]);
                sel.send(&txs[b]);
                let oper = sel.select();
                let tx = if oper.index() == ia { &txs[a] } else { &txs[b] };
                oper.send(tx, v).unwrap();
            }
        }
    }
}

fn random_consumer(mut rxs: Vec<Receiver<u64>>, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    while !rxs.is_empty() {
        let a = rng.below(rxs.len());
        let b = rng.below(rxs.len());
        // `dead`: a channel seen empty and disconnected; never polled again,
        // so nothing busy-loops on it.
        let dead = match rng.below(4) {
            0 => match rxs[a].try_recv() {
                Ok(v) => {
                    got.push(v);
                    None
                }
                Err(TryRecvError::Empty) => {
                    gort::yield_now();
                    None
                }
                Err(TryRecvError::Disconnected) => Some(a),
            },
            1 => match rxs[a].recv_timeout(Duration::from_micros(rng.below(100) as u64)) {
                Ok(v) => {
                    got.push(v);
                    None
                }
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(a),
            },
            2 => gort::select! {
                recv(rxs[a]) -> m => m.map(|v| got.push(v)).err().map(|_| a),
                recv(rxs[b]) -> m => m.map(|v| got.push(v)).err().map(|_| b),
                default(Duration::from_micros(rng.below(100) as u64)) => None,
            },
            _ => {
                let mut sel = Select::new();
                for rx in &rxs {
                    sel.recv(rx);
                }
                let oper = sel.select();
                let i = oper.index();
                match oper.recv(&rxs[i]) {
                    Ok(v) => {
                        got.push(v);
                        None
                    }
                    Err(RecvError) => Some(i),
                }
            }
        };
        if let Some(i) = dead {
            rxs.swap_remove(i);
        }
    }
    got
}

#[test]
fn stress_random_operations_default_procs() {
    hang_guard("stress_random_operations_default_procs", || {
        for seed in 1..=3 {
            gort::run(move || stress(seed));
        }
    });
}

#[test]
fn stress_random_operations_one_proc() {
    hang_guard("stress_random_operations_one_proc", || {
        for seed in 11..=13 {
            on_procs(1, move || stress(seed));
        }
    });
}

/// A `Select::send` parked on a full channel ahead of a plain send: when a
/// receive frees the slot, the plain sender's value goes in. Woken first
/// instead, the select would take the slot itself (it is its only ready
/// case) and leave the plain sender parked beside the buffer it was due.
#[test]
fn a_freed_slot_goes_to_a_sender_with_a_value_before_a_select_send() {
    hang_guard("a freed slot and a select send", || {
        on_procs(2, || {
            let (a_tx, a_rx) = bounded::<u32>(1);
            let (b_tx, b_rx) = bounded::<u32>(1);
            a_tx.send(0).unwrap();
            let select_tx = a_tx.clone();
            let selecting = gort::go(move || {
                let mut sel = Select::new();
                let on_a = sel.send(&select_tx);
                let on_b = sel.recv(&b_rx);
                let op = sel.select();
                if op.index() == on_a {
                    op.send(&select_tx, 9).unwrap();
                    None
                } else {
                    assert_eq!(op.index(), on_b);
                    Some(op.recv(&b_rx).unwrap())
                }
            });
            // Ordering only: the select parks first, then the plain sender.
            gort::time::sleep(Duration::from_millis(20));
            let plain = gort::go(move || a_tx.send(1).unwrap());
            gort::time::sleep(Duration::from_millis(20));
            assert_eq!(a_rx.recv().unwrap(), 0);
            // The plain sender finishes without any further receive.
            plain.join().unwrap();
            assert_eq!(a_rx.recv().unwrap(), 1);
            // The select is still waiting; B lets it go.
            b_tx.send(7).unwrap();
            match selecting.join().unwrap() {
                Some(v) => assert_eq!(v, 7),
                None => assert_eq!(a_rx.recv().unwrap(), 9),
            }
        })
    });
}

#[test]
fn close_fails_later_sends_and_lets_receivers_drain() {
    let (tx, rx) = bounded::<u32>(4);
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    tx2.send(2).unwrap();
    assert!(!rx.is_closed());
    assert!(tx.close());
    assert!(!tx2.close(), "a second close reports it was closed already");
    assert!(rx.is_closed() && tx2.is_closed());
    assert_eq!(tx2.send(3), Err(SendError(3)));
    assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
    assert_eq!(
        tx.send_timeout(5, Duration::from_secs(1)),
        Err(SendTimeoutError::Disconnected(5))
    );
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError));
    // Dropping the senders after a close changes nothing.
    drop((tx, tx2));
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn close_wakes_parked_senders_with_their_values_and_parked_receivers() {
    on_procs(2, || {
        // Senders parked on a full channel get their own values back.
        let (tx, rx) = bounded::<String>(1);
        tx.send("kept".into()).unwrap();
        let senders: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                gort::go(move || tx.send(format!("v{i}")))
            })
            .collect();
        for s in &senders {
            wait_until_parked(s, "chan send");
        }
        assert!(tx.close());
        let mut back: Vec<String> = senders.into_iter().map(|s| s.join().unwrap().unwrap_err().0).collect();
        back.sort();
        assert_eq!(back, ["v0", "v1", "v2"]);
        assert_eq!(rx.recv(), Ok("kept".to_string()));
        assert_eq!(rx.recv(), Err(RecvError));

        // Receivers parked on an empty channel wake with Err, while
        // senders still exist.
        let (tx, rx) = bounded::<u8>(0);
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || rx.recv())
            })
            .collect();
        for r in &receivers {
            wait_until_parked(r, "chan receive");
        }
        let keep = tx.clone();
        tx.close();
        for r in receivers {
            assert_eq!(r.join().unwrap(), Err(RecvError));
        }
        drop(keep);
    });
}

#[test]
fn close_wakes_parked_selects() {
    on_procs(2, || {
        let (tx, rx) = bounded::<u32>(0);
        let (out_tx, out_rx) = bounded::<u32>(0);
        let (_quiet_tx, quiet_rx) = bounded::<u32>(0);
        let receiving = gort::go(move || {
            gort::select! {
                recv(quiet_rx) -> m => panic!("{m:?}"),
                recv(rx) -> m => m,
            }
        });
        let out = out_tx.clone();
        let sending = gort::go(move || {
            gort::select! {
                send(out, 8) -> r => r,
            }
        });
        wait_until_parked(&receiving, "select");
        wait_until_parked(&sending, "select");
        tx.close();
        out_tx.close();
        assert_eq!(receiving.join().unwrap(), Err(RecvError));
        assert_eq!(sending.join().unwrap(), Err(SendError(8)));
        drop(out_rx);
    });
}

#[test]
fn a_select_loop_switches_closed_inputs_off_with_never() {
    // Each input closes after its values; replacing it by `never()` turns
    // its arm off, so the loop runs once per value and once per close —
    // where a closed input left in place is ready again at every turn
    // (the spinning loop of issue 27).
    on_procs(2, || {
        let (t1, r1) = bounded::<u32>(2);
        let (t2, r2) = bounded::<u32>(0);
        gort::go(move || (0..100).for_each(|i| t1.send(i).unwrap()));
        gort::go(move || {
            (0..60).for_each(|i| t2.send(i).unwrap());
            t2.close();
        });
        let (mut a, mut b) = (r1, r2);
        let (mut iterations, mut got, mut closed) = (0, 0, 0);
        while closed < 2 {
            iterations += 1;
            gort::select! {
                recv(a) -> v => match v {
                    Ok(_) => got += 1,
                    Err(_) => { a = gort::chan::never(); closed += 1; }
                },
                recv(b) -> v => match v {
                    Ok(_) => got += 1,
                    Err(_) => { b = gort::chan::never(); closed += 1; }
                },
            }
        }
        assert_eq!((got, iterations), (160, 162));
        // Both arms off: only the default can be taken.
        let r = gort::select! {
            recv(a) -> v => Some(v),
            recv(b) -> v => Some(v),
            default(Duration::from_millis(5)) => None,
        };
        assert_eq!(r, None);
        // Left in place, a closed input is ready at every turn.
        let (t, closed_rx) = bounded::<u32>(0);
        drop(t);
        let spins = (0..1_000)
            .filter(|_| {
                gort::select! {
                    recv(closed_rx) -> v => v.is_err(),
                    default(Duration::from_secs(60)) => false,
                }
            })
            .count();
        assert_eq!(spins, 1_000);
    });
}

#[test]
fn never_is_never_ready() {
    let rx = gort::chan::never::<u8>();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(!rx.is_closed());
    assert_eq!(rx.capacity(), Some(0));
    let rx2 = rx.clone();
    let mut sel = Select::new();
    sel.recv(&rx);
    sel.recv(&rx2);
    assert!(sel.select_timeout(Duration::from_millis(5)).is_err());
}
