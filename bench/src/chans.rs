//! Benchmarks 2–7 of the peers suite: channels, the mutex, parked memory.
//! Mappings as in peers/README.md: Go's unbuffered channels are
//! `bounded(0)` (a true rendezvous, like Go and unlike tokio's and may's
//! stand-ins), Go's buffered channel is `bounded(1024)`, `sync.Mutex` is
//! `gort::sync::Mutex`, `close(ch)` is dropping every Sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gort::chan::{Sender, bounded};
use gort::sync::{Mutex, WaitGroup};

use crate::report::{check, emit, info, rss_bytes};

const SKYNET_SIZE: u64 = 1_000_000;
const SKYNET_DIV: u64 = 10;
const SKYNET_SUM: u64 = 499_999_500_000;
const PINGPONG_N: u64 = 1_000_000;
const RING_NODES: usize = 503;
const RING_HOPS: u64 = 10_000_000;
const MPMC_TOTAL: u64 = 10_000_000;
const MPMC_PRODUCERS: u64 = 4;
const MPMC_CONSUMERS: u64 = 4;
const MPMC_CAPACITY: usize = 1024;
const MUTEX_TASKS: usize = 1000;
const MUTEX_ITERS: usize = 1000;
const PARKED_N: usize = 1_000_000;
const PARKED_PER_CHAN: usize = 1000;
const PARKED_SETTLE: Duration = Duration::from_millis(200);

fn skynet_node(out: Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        out.send(num).expect("skynet parent alive");
        return;
    }
    let (tx, rx) = bounded(0);
    for i in 0..SKYNET_DIV {
        let tx = tx.clone();
        let sub = num + i * (size / SKYNET_DIV);
        gort::go(move || skynet_node(tx, sub, size / SKYNET_DIV));
    }
    drop(tx);
    let sum: u64 = (0..SKYNET_DIV).map(|_| rx.recv().expect("skynet child")).sum();
    out.send(sum).expect("skynet parent alive");
}

/// 2: skynet(0, 1,000,000, 10) over unbuffered channels.
pub fn skynet() {
    let (tx, rx) = bounded(0);
    let start = Instant::now();
    gort::go(move || skynet_node(tx, 0, SKYNET_SIZE));
    let sum = rx.recv().expect("skynet root");
    let elapsed = start.elapsed();
    check("skynet", sum == SKYNET_SUM, || format!("sum={sum} want {SKYNET_SUM}"));
    emit("skynet", elapsed.as_secs_f64() * 1e3, "ms");
}

/// 3: two goroutines, two unbuffered channels, PINGPONG_N round trips.
pub fn pingpong() {
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let start = Instant::now();
    let ponger = gort::go(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).expect("pinger alive");
        }
    });
    let pinger = gort::go(move || {
        let mut wrong = None;
        for i in 0..PINGPONG_N {
            ping_tx.send(i).expect("ponger alive");
            let v = pong_rx.recv().expect("ponger alive");
            if v != i && wrong.is_none() {
                wrong = Some((v, i));
            }
        }
        wrong
    });
    let wrong = pinger.join().expect("pinger");
    ponger.join().expect("ponger");
    let elapsed = start.elapsed();
    check("pingpong", wrong.is_none(), || format!("got/want {wrong:?}"));
    let m = gort::runtime::metrics();
    info(
        "pingpong",
        format!(
            "steals={} threads={} ran_per_p={:?}",
            m.steals, m.threads_started, m.ran_per_p
        ),
    );
    emit(
        "pingpong",
        elapsed.as_nanos() as f64 / PINGPONG_N as f64,
        "ns/roundtrip",
    );
}

/// 4: thread-ring of RING_NODES goroutines and unbuffered channels.
pub fn ring() {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..RING_NODES).map(|_| bounded::<u64>(0)).unzip();
    let (done_tx, done_rx) = bounded::<usize>(0);
    for (i, rx) in rxs.into_iter().enumerate() {
        let out = txs[(i + 1) % RING_NODES].clone();
        let done = done_tx.clone();
        gort::go(move || {
            loop {
                let t = rx.recv().expect("ring closed");
                if t == 0 {
                    done.send(i + 1).expect("main alive");
                    return;
                }
                out.send(t - 1).expect("ring closed");
            }
        });
    }
    let start = Instant::now();
    txs[0].send(RING_HOPS).expect("ring");
    let id = done_rx.recv().expect("winner");
    let elapsed = start.elapsed();
    let want = (RING_HOPS % RING_NODES as u64) as usize + 1;
    check("ring", id == want, || format!("token ended at node {id} want {want}"));
    let m = gort::runtime::metrics();
    info(
        "ring",
        format_args!(
            "steals={} preempt_requests={} preempt_signals={} blocked_detections={} threads={}",
            m.steals, m.preempt_requests, m.preempt_signals, m.blocked_detections, m.threads_started
        ),
    );
    emit("ring", elapsed.as_nanos() as f64 / RING_HOPS as f64, "ns/hop");
}

/// 5: 4 producers and 4 consumers over one channel of capacity 1024.
pub fn chan_mpmc() {
    let (tx, rx) = bounded::<u64>(MPMC_CAPACITY);
    let per = MPMC_TOTAL / MPMC_PRODUCERS;
    let start = Instant::now();
    let producers: Vec<_> = (0..MPMC_PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            gort::go(move || {
                for i in 1..=per {
                    tx.send(p * per + i).expect("consumers alive");
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..MPMC_CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            gort::go(move || rx.iter().fold((0u64, 0u64), |(s, n), v| (s + v, n + 1)))
        })
        .collect();
    drop(rx);
    producers.into_iter().for_each(|h| h.join().expect("producer"));
    let (sum, count) = consumers
        .into_iter()
        .map(|h| h.join().expect("consumer"))
        .fold((0, 0), |(s, n), (a, b)| (s + a, n + b));
    let elapsed = start.elapsed();
    let want = MPMC_TOTAL * (MPMC_TOTAL + 1) / 2;
    check("chan_mpmc", sum == want && count == MPMC_TOTAL, || {
        format!("sum={sum} count={count} want {want}/{MPMC_TOTAL}")
    });
    emit("chan_mpmc", elapsed.as_nanos() as f64 / MPMC_TOTAL as f64, "ns/message");
}

/// 6: 1000 goroutines × 1000 lock/increment/unlock of one mutex.
pub fn mutex() {
    static COUNT: Mutex<u64> = Mutex::new(0);
    static WG: WaitGroup = WaitGroup::new();
    WG.add(MUTEX_TASKS);
    let start = Instant::now();
    for _ in 0..MUTEX_TASKS {
        gort::go(|| {
            for _ in 0..MUTEX_ITERS {
                *COUNT.lock() += 1;
            }
            WG.done();
        });
    }
    WG.wait();
    let elapsed = start.elapsed();
    let total = (MUTEX_TASKS * MUTEX_ITERS) as u64;
    let c = *COUNT.lock();
    check("mutex", c == total, || format!("count={c} want {total}"));
    emit("mutex", elapsed.as_nanos() as f64 / total as f64, "ns/lock");
}

/// 7: RSS per goroutine parked on a channel receive.
pub fn parked_mem() {
    static PARKED: AtomicU64 = AtomicU64::new(0);
    static EXITED: AtomicU64 = AtomicU64::new(0);
    static WG: WaitGroup = WaitGroup::new();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..PARKED_N / PARKED_PER_CHAN).map(|_| bounded::<()>(0)).unzip();
    let rxs = Arc::new(rxs);
    WG.add(PARKED_N);
    let before = rss_bytes();
    for i in 0..PARKED_N {
        let rx = rxs[i / PARKED_PER_CHAN].clone();
        gort::go(move || {
            PARKED.fetch_add(1, Ordering::Relaxed);
            let _ = rx.recv(); // blocks until every sender is gone
            EXITED.fetch_add(1, Ordering::Relaxed);
            WG.done();
        });
    }
    while PARKED.load(Ordering::Relaxed) < PARKED_N as u64 {
        gort::time::sleep(Duration::from_millis(1));
    }
    gort::time::sleep(PARKED_SETTLE);
    let after = rss_bytes();
    drop(txs);
    WG.wait();
    let exited = EXITED.load(Ordering::Relaxed);
    check("parked_mem", exited == PARKED_N as u64, || {
        format!("exited={exited} want {PARKED_N}")
    });
    info("parked_mem", format!("rss_before={before} rss_after={after}"));
    emit(
        "parked_mem",
        after.saturating_sub(before) as f64 / PARKED_N as f64,
        "bytes/goroutine",
    );
}
