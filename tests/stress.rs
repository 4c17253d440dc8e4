//! Randomized stress across the runtime: many goroutines doing random
//! channel operations, mutex increments, sleeps and yields, checked for
//! lost wake-ups (everything finishes) and for exact totals. Each seed's
//! run is reproducible in its choice of operations; the interleaving is
//! whatever the scheduler makes of it. Runs on one P and on the default.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gort::Runtime;
use gort::chan::{Receiver, Sender, bounded, unbounded};
use gort::sync::{Mutex, WaitGroup};

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORKERS: u64 = 64;
const OPS: u64 = 400;

struct Shared {
    chans: Vec<(Sender<u64>, Receiver<u64>)>,
    counter: Mutex<u64>,
    sent: AtomicU64,
    received: AtomicU64,
    mutex_ops: AtomicU64,
}

fn worker(shared: &Shared, seed: u64) {
    let mut rng = Xorshift(seed | 1);
    for op in 0..OPS {
        let (tx, rx) = &shared.chans[(rng.next() % shared.chans.len() as u64) as usize];
        match rng.next() % 8 {
            0 | 1 => {
                // Buffered or unbounded sends never wait for a receiver that
                // may never come; rendezvous ones use a timeout.
                let v = seed * 1_000_000 + op;
                if tx.send_timeout(v, Duration::from_millis(1)).is_ok() {
                    shared.sent.fetch_add(v, Ordering::Relaxed);
                }
            }
            2 => {
                if let Ok(v) = rx.recv_timeout(Duration::from_micros(rng.next() % 500)) {
                    shared.received.fetch_add(v, Ordering::Relaxed);
                }
            }
            3 => {
                let v = seed * 1_000_000 + op;
                gort::select! {
                    send(tx, v) -> r => if r.is_ok() { shared.sent.fetch_add(v, Ordering::Relaxed); },
                    recv(rx) -> m => if let Ok(m) = m { shared.received.fetch_add(m, Ordering::Relaxed); },
                    default(Duration::from_micros(200)) => {}
                }
            }
            4 | 5 => {
                *shared.counter.lock() += 1;
                shared.mutex_ops.fetch_add(1, Ordering::Relaxed);
            }
            6 => gort::time::sleep(Duration::from_micros(rng.next() % 300)),
            _ => gort::yield_now(),
        }
    }
}

fn run_stress(rt: &Runtime, seed: u64) {
    let shared = Arc::new(Shared {
        chans: vec![bounded(0), bounded(1), bounded(16), unbounded()],
        counter: Mutex::new(0),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        mutex_ops: AtomicU64::new(0),
    });
    let s = Arc::clone(&shared);
    rt.block_on(move || {
        let wg = Arc::new(WaitGroup::new());
        for w in 0..WORKERS {
            wg.add(1);
            let (s, wg) = (Arc::clone(&s), Arc::clone(&wg));
            gort::go(move || {
                worker(&s, seed * 1000 + w);
                wg.done();
            });
        }
        wg.wait();
        // Drain what is still buffered.
        for (_, rx) in &s.chans {
            while let Ok(v) = rx.try_recv() {
                s.received.fetch_add(v, Ordering::Relaxed);
            }
        }
    });
    assert_eq!(
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed)
    );
    assert_eq!(*shared.counter.lock(), shared.mutex_ops.load(Ordering::Relaxed));
    assert!(shared.mutex_ops.load(Ordering::Relaxed) > 0);
}

#[test]
fn stress_on_one_p() {
    let rt = Runtime::builder().procs(1).build().unwrap();
    for seed in 1..=3 {
        run_stress(&rt, seed);
    }
}

#[test]
fn stress_on_all_ps() {
    let rt = Runtime::builder().build().unwrap();
    for seed in 4..=6 {
        run_stress(&rt, seed);
    }
}

#[test]
fn stress_on_more_ps_than_cores() {
    let rt = Runtime::builder().procs(4).build().unwrap();
    run_stress(&rt, 7);
}
