//! `async_bridge` (gort only): the cost of `gort::block_on` as a wait, in
//! the shape of `pingpong` so the two compare as a ratio in one run.
//!
//! Two parties exchange PINGPONG_N values through two one-slot mailboxes
//! whose receive side is a `Future` (an atomic word and a `futures`
//! `AtomicWaker`, the usual executor-agnostic building block). The pinger
//! is a goroutine that waits in `block_on`; the ponger waits the same way,
//! first on another goroutine (the reported value), then on a plain thread
//! (an info line: each wait there is a futex sleep and wake). A round trip
//! is two futures parked and woken, as `pingpong`'s is two channel
//! hand-offs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::task::AtomicWaker;

use crate::report::{check, emit, info};

const ROUND_TRIPS: u64 = 1_000_000;
const ROUND_TRIPS_THREAD: u64 = 100_000;
const EMPTY: u64 = u64::MAX;

/// A one-value slot whose `take` is a future.
struct Mailbox {
    value: AtomicU64,
    waker: AtomicWaker,
}

impl Mailbox {
    fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox {
            value: AtomicU64::new(EMPTY),
            waker: AtomicWaker::new(),
        })
    }

    fn put(&self, v: u64) {
        self.value.store(v, Ordering::Release);
        self.waker.wake();
    }

    fn take(&self) -> Take<'_> {
        Take(self)
    }
}

struct Take<'a>(&'a Mailbox);

impl Future for Take<'_> {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        self.0.waker.register(cx.waker());
        match self.0.value.swap(EMPTY, Ordering::Acquire) {
            EMPTY => Poll::Pending,
            v => Poll::Ready(v),
        }
    }
}

/// `n` round trips with a ponger started by `spawn_ponger`; ns per round trip.
fn round_trips(n: u64, spawn_ponger: impl FnOnce(Box<dyn FnOnce() + Send>)) -> f64 {
    let (ping, pong) = (Mailbox::new(), Mailbox::new());
    let ponger = {
        let (ping, pong) = (Arc::clone(&ping), Arc::clone(&pong));
        Box::new(move || {
            for _ in 0..n {
                let v = gort::block_on(ping.take());
                pong.put(v);
            }
        })
    };
    let start = Instant::now();
    spawn_ponger(ponger);
    let pinger = gort::go(move || {
        let mut wrong = None;
        for i in 0..n {
            ping.put(i);
            let v = gort::block_on(pong.take());
            if v != i && wrong.is_none() {
                wrong = Some((v, i));
            }
        }
        wrong
    });
    let wrong = pinger.join().expect("pinger");
    let elapsed = start.elapsed();
    check("async_bridge", wrong.is_none(), || format!("got/want {wrong:?}"));
    elapsed.as_nanos() as f64 / n as f64
}

pub fn async_bridge() {
    let on_thread = round_trips(ROUND_TRIPS_THREAD, |ponger| {
        std::thread::spawn(ponger);
    });
    info(
        "async_bridge",
        format!("waker_on_thread_ns_per_roundtrip={on_thread:.0}"),
    );
    let on_goroutine = round_trips(ROUND_TRIPS, |ponger| {
        gort::go(ponger);
    });
    emit("async_bridge", on_goroutine, "ns/roundtrip");
}
