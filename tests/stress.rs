//! Randomized stress across the runtime: many goroutines doing random
//! channel operations, mutex increments, sleeps and yields, checked for
//! lost wake-ups (everything finishes) and for exact totals. Each seed's
//! run is reproducible in its choice of operations; the interleaving is
//! whatever the scheduler makes of it. Runs on one P, on the default number
//! and on more Ps than cores; each on a plain runtime and under the chaos
//! scheduler with three seeds (`Builder::chaos`), which shuffles the
//! interleavings on purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gort::chan::{Receiver, Sender, bounded, unbounded};
use gort::runtime::Builder;
use gort::sync::{Mutex, WaitGroup};
use gort::{Runtime, runtime};

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
            _ if rng.next().is_multiple_of(2) => gort::yield_now(),
            // Compute without runtime calls: only a preemption (or another
            // P) lets the others run meanwhile.
            _ => spin(Duration::from_micros(rng.next() % 100)),
        }
    }
}

fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
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

/// The chaos scheduler's seeds every workload also runs under.
const CHAOS_SEEDS: [u64; 3] = [1, 2, 3];

/// Run `workload` on a runtime from `builder`, then on one per chaos seed;
/// check that chaos did change the runs.
fn plain_and_chaos(builder: Builder, workload: impl Fn(&Runtime)) {
    workload(&builder.clone().build().unwrap());
    for seed in CHAOS_SEEDS {
        let rt = builder.clone().chaos(seed).build().unwrap();
        workload(&rt);
        let m: runtime::Metrics = rt.metrics();
        assert!(m.chaos_injections > 0, "chaos seed {seed} changed nothing");
    }
}

#[test]
fn stress_on_one_p() {
    plain_and_chaos(Runtime::builder().procs(1), |rt| {
        for seed in 1..=3 {
            run_stress(rt, seed);
        }
    });
}

#[test]
fn stress_on_all_ps() {
    plain_and_chaos(Runtime::builder(), |rt| {
        for seed in 4..=6 {
            run_stress(rt, seed);
        }
    });
}

#[test]
fn stress_on_more_ps_than_cores() {
    plain_and_chaos(Runtime::builder().procs(4), |rt| run_stress(rt, 7));
}

const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// Goroutines that allocate in tight loops get preempted by signal, while
/// sysmon and other Ms allocate holding runtime locks: a preemption that
/// stopped a goroutine inside `malloc`, holding its arena lock, used to
/// deadlock the runtime (found by the chaos runs above). One malloc arena
/// for every thread, as in a process with more threads than glibc's arena
/// limit, makes the collision near certain; in a child process, so that the
/// setting stays there.
#[test]
fn allocating_spinners_survive_preemption() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // SAFETY: mallopt only changes the allocator's tuning.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        let rt = Runtime::builder()
            .procs(2)
            .preempt_slice(Duration::from_micros(100))
            .build()
            .unwrap();
        for _ in 0..3 {
            rt.block_on(|| {
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let allocators: Vec<_> = (0..4)
                    .map(|_| {
                        let stop = Arc::clone(&stop);
                        gort::go(move || {
                            let mut n = 0usize;
                            while !stop.load(Ordering::Relaxed) {
                                // Too large for the per-thread cache: every
                                // call takes the arena lock.
                                let v: Vec<u64> = Vec::with_capacity(std::hint::black_box(256 + n % 8000));
                                n = n.wrapping_add(std::hint::black_box(v).capacity());
                            }
                        })
                    })
                    .collect();
                let sleepers: Vec<_> = (0..8)
                    .map(|_| gort::go(|| (0..100).for_each(|_| gort::time::sleep(Duration::from_micros(50)))))
                    .collect();
                sleepers.into_iter().for_each(|h| h.join().unwrap());
                stop.store(true, Ordering::Relaxed);
                allocators.into_iter().for_each(|h| h.join().unwrap());
            });
        }
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "allocating_spinners_survive_preemption", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .spawn()
        .unwrap();
    // Far beyond the few seconds it takes on a loaded machine.
    let guard = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > guard {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("deadlocked: the child did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
}

/// Dropping a runtime while its goroutines take turns by preemption: a
/// goroutine that was waiting for a P when the runtime shut down used to
/// run on without one, and its M then slept for ever at its next runtime
/// call (hanging the drop) or panicked without a P.
#[test]
fn dropping_a_runtime_while_goroutines_are_preempted() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..100 {
            let rt = Runtime::builder()
                .procs(1)
                .preempt_slice(Duration::from_micros(100))
                .build()
                .unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for _ in 0..3 {
                let stop = Arc::clone(&stop);
                rt.go(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(2));
            stop.store(true, Ordering::Relaxed);
            drop(rt);
        }
        done_tx.send(()).unwrap();
    });
    // Far beyond the second it takes on a loaded machine.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a runtime's drop hung");
}
