//! A tour of gort: Go's runtime scheduler (stackful goroutines on a GMP
//! scheduler) as a Rust library.
//!
//! Each section shows one feature and checks its own numbers, so the tour
//! fails loudly if something is wrong:
//!
//! 1. a million goroutines: spawn cost, what the scheduler did, peak memory;
//! 2. join values and panics: `join` returns the value or the panic;
//! 3. scoped goroutines borrowing the caller's stack (`gort::scope`);
//! 4. cooperative `yield_now` on a single P;
//! 5. changing GOMAXPROCS (`runtime::set_procs`) while goroutines run;
//! 6. skynet: a million goroutines in a tree, summing over channels;
//! 7. ping-pong over unbuffered (rendezvous) channels;
//! 8. `select!` over channels with a timeout, and a goroutine-aware mutex;
//! 9. fan-out with a deadline: a `context` with a timeout and an
//!    `ErrGroup` that reports the first error;
//! 10. ten thousand sleeping goroutines and how late they woke;
//! 11. an echo server over `gort::net`, a goroutine per connection, with a
//!     few hundred client goroutines;
//! 12. preemption: a goroutine spinning in `loop {}` on one P while another
//!     keeps its 1 ms ticks;
//! 13. un-annotated blocking calls (`std::thread::sleep`) that do not stall
//!     a computation;
//! 14. a goroutine dump of a program with a thousand goroutines parked, in
//!     Go's grouped form, and a leak check that finds them.
//!
//! Sections 12 and 13 run under `gort::trace`: the tour leaves their
//! execution trace in `target/tour-trace.json` (open it in Perfetto UI, or
//! render it with `tools/gort-trace`; `docs/tour-trace.svg` is one). Run
//! with `GORTTRACE` set, the tour is traced whole into that file instead:
//! its own `trace::start` then fails with `AlreadyExists`, which it takes
//! as "already traced" (and leaves that trace running).
//!
//! Run with `cargo run --release --example tour`. `-- --quick` runs every
//! section with a hundredth of the goroutines, messages and rounds (the
//! same code, for tests that run the tour under each `GORTDEBUG` switch).

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gort::runtime;
use gort::sync::WaitGroup;

/// Where the tour records its own execution trace.
const TRACE: &str = "target/tour-trace.json";

fn main() {
    let quick = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => {
            eprintln!("usage: tour [--quick]");
            std::process::exit(2)
        }
    };
    QUICK.set(quick).expect("set once");
    million_goroutines();
    join_values_and_panics();
    scoped_borrowing();
    cooperative_yield();
    gomaxprocs_at_run_time();
    gort::run(skynet);
    gort::run(ping_pong);
    gort::run(select_with_timeout);
    gort::run(fan_out_with_a_deadline);
    gort::run(sleepers);
    gort::run(echo_server);
    // The last two sections are about who runs where, and when: the tour
    // records an execution trace of them (of everything, it would be
    // hundreds of megabytes, and the writer would skew the timings above).
    std::fs::create_dir_all("target").expect("create target/");
    let own_trace = match gort::trace::start(TRACE) {
        Ok(()) => true,
        // GORTTRACE traces the whole tour: these sections are in it too.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            println!("\n(not tracing into {TRACE}: {e})");
            false
        }
        Err(e) => panic!("start the execution trace: {e}"),
    };
    preemption();
    blocking_calls();
    if own_trace {
        gort::trace::stop().expect("finish the execution trace");
    }
    goroutine_dump();
    println!("\ntour finished: every check passed");
    if own_trace {
        println!("execution trace of the tour: {TRACE}");
    }
}

/// Whether the tour runs `--quick` (module header).
static QUICK: OnceLock<bool> = OnceLock::new();

/// `full`, or a hundredth of it for a `--quick` tour.
fn scaled(full: u64) -> u64 {
    if *QUICK.get().expect("set by main") {
        full / 100
    } else {
        full
    }
}

fn heading(title: &str) {
    println!("\n== {title}");
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("   {label:<22} {value}");
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Peak resident set size in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Yield until `done()` holds; panic after 10 s instead of hanging.
fn yield_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        gort::yield_now();
    }
}

fn million_goroutines() {
    let n = scaled(1_000_000);
    heading(&format!("{} goroutines", thousands(n)));
    let (elapsed, before, after) = gort::run(move || {
        let before = runtime::metrics();
        let start = Instant::now();
        let sum = Arc::new(AtomicU64::new(0));
        let wg = Arc::new(WaitGroup::new());
        wg.add(n as usize);
        for i in 0..n {
            let (sum, wg) = (Arc::clone(&sum), Arc::clone(&wg));
            gort::go(move || {
                sum.fetch_add(i, Ordering::Relaxed);
                wg.done();
            });
        }
        wg.wait();
        let elapsed = start.elapsed();
        assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2);
        (elapsed, before, runtime::metrics())
    });
    assert_eq!(after.goroutines_created - before.goroutines_created, n);
    let (a, b) = (&after.ran_per_p, &before.ran_per_p);
    let ran: Vec<u64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    assert!(ran.iter().sum::<u64>() >= n, "fewer slices than goroutines");
    let ns = elapsed.as_nanos() as f64 / n as f64;
    let per_p: Vec<String> = ran.iter().map(|&r| thousands(r)).collect();
    row("spawned and waited", format!("{} goroutines", thousands(n)));
    row("elapsed", format!("{:.1} ms", elapsed.as_secs_f64() * 1e3));
    row("per goroutine", format!("{ns:.0} ns"));
    row("Ps (procs)", runtime::procs());
    row("slices run per P", per_p.join(" / "));
    row("steals", thousands(after.steals - before.steals));
    row("Ms (threads) started", after.threads_started);
    let rss = peak_rss_kib().map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    row("peak RSS (VmHWM)", rss);
}

fn join_values_and_panics() {
    heading("join values and panics");
    gort::run(|| {
        let answer = gort::go(|| 6 * 7).join().expect("no panic");
        assert_eq!(answer, 42);
        row("go(|| 6 * 7).join()", format!("Ok({answer})"));

        // Silence the default "panicked at" message for the deliberate panic.
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let result = gort::go(|| -> u32 { panic!("boom") }).join();
        panic::set_hook(hook);
        let payload = result.expect_err("the goroutine panicked");
        let message = payload.downcast_ref::<&str>().copied().unwrap_or("?");
        assert_eq!(message, "boom");
        row("go(|| panic!).join()", format!("Err({message:?})"));

        let next = gort::go(|| "still running").join().expect("no panic");
        row("next goroutine", next);
    });
}

fn scoped_borrowing() {
    heading("scoped goroutines borrowing");
    gort::run(|| {
        let data: Vec<u64> = (1..=1_000_000).collect();
        let n = data.len() / 8; // chunk length
        let sums: Vec<u64> = gort::scope(|s| {
            let hs: Vec<_> = data.chunks(n).map(|c| s.go(|| c.iter().sum())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: u64 = sums.iter().sum();
        assert_eq!(sums.len(), 8);
        assert_eq!(total, data.iter().sum::<u64>());
        let len = thousands(data.len() as u64);
        row("borrowed Vec", format!("{len} u64s in 8 chunks"));
        row("chunk sums (first 3)", format!("{:?} ...", &sums[..3]));
        row("total", thousands(total));
    });
}

fn cooperative_yield() {
    const ROUNDS: usize = 8;
    heading("cooperative yield on one P");
    let rt = gort::Runtime::builder().procs(1).build().unwrap();
    let order = rt.block_on(|| {
        let order = Arc::new(Mutex::new(String::new()));
        let turns = |name| {
            let order = Arc::clone(&order);
            gort::go(move || {
                for _ in 0..ROUNDS {
                    order.lock().unwrap().push(name);
                    gort::yield_now();
                }
            })
        };
        let (a, b) = (turns('a'), turns('b'));
        a.join().expect("no panic");
        b.join().expect("no panic");
        Arc::try_unwrap(order).unwrap().into_inner().unwrap()
    });
    assert_eq!(order.matches('a').count(), ROUNDS);
    assert_eq!(order.matches('b').count(), ROUNDS);
    // Under `GORTDEBUG=chaos=SEED` the scheduler reorders on purpose; the
    // turns alternate whenever it changed no decision.
    let chaos = rt.metrics().chaos_injections;
    let alternating = order.as_bytes().windows(2).all(|w| w[0] != w[1]);
    assert!(alternating || chaos > 0, "turns do not alternate: {order}");
    row("procs", rt.procs());
    row("order of turns", &order);
    if chaos > 0 {
        row("chaos: changed", format!("{chaos} of the scheduler's decisions"));
    }
    row("threads started", rt.metrics().threads_started);
}

fn gomaxprocs_at_run_time() {
    const WORKERS: usize = 4;
    heading("GOMAXPROCS at run time");
    gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let worker = || {
            let (stop, steps) = (Arc::clone(&stop), Arc::clone(&steps));
            gort::go(move || {
                while !stop.load(Ordering::Relaxed) {
                    steps.fetch_add(1, Ordering::Relaxed);
                    gort::yield_now();
                }
            })
        };
        let workers: Vec<_> = (0..WORKERS).map(|_| worker()).collect();
        // Wait for the workers to take 10,000 more steps, then report.
        let progress = |label: &str| {
            let from = steps.load(Ordering::Relaxed);
            yield_until(label, || steps.load(Ordering::Relaxed) >= from + 10_000);
            // Goroutines of earlier sections that were joined may still be
            // on their way out (joined as their body returns).
            yield_until("earlier goroutines to exit", || runtime::num_goroutine() == WORKERS + 1);
            let ps = runtime::metrics().ran_per_p.len();
            assert_eq!(ps, runtime::procs());
            row(label, format!("procs {ps}, {WORKERS} workers stepping"));
        };
        let old = runtime::procs();
        progress("before");
        assert_eq!(runtime::set_procs(1), old);
        progress("after set_procs(1)");
        assert_eq!(runtime::set_procs(old), 1);
        progress(&format!("after set_procs({old})"));
        assert_eq!(runtime::procs(), old);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().for_each(|h| h.join().unwrap());
        row("worker steps", thousands(steps.load(Ordering::Relaxed)));
    });
}

fn skynet_node(out: gort::chan::Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        out.send(num).unwrap();
        return;
    }
    let (tx, rx) = gort::chan::bounded(0);
    for i in 0..10 {
        let tx = tx.clone();
        gort::go(move || skynet_node(tx, num + i * (size / 10), size / 10));
    }
    drop(tx);
    out.send(rx.iter().sum()).unwrap();
}

fn skynet() {
    // A power of 10: a tree of 10 children a node, leaves numbered 0..size.
    let size = scaled(1_000_000);
    let goroutines = (size * 10 - 1) / 9;
    heading(&format!(
        "skynet: {} goroutines in a tree of channels",
        thousands(goroutines)
    ));
    let start = Instant::now();
    let (tx, rx) = gort::chan::bounded(0);
    gort::go(move || skynet_node(tx, 0, size));
    let sum = rx.recv().unwrap();
    assert_eq!(sum, size * (size - 1) / 2);
    row("sum", thousands(sum));
    row("elapsed", format!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3));
}

fn ping_pong() {
    heading("ping-pong over unbuffered channels");
    let n = scaled(200_000);
    let (ping_tx, ping_rx) = gort::chan::bounded::<u64>(0);
    let (pong_tx, pong_rx) = gort::chan::bounded::<u64>(0);
    let start = Instant::now();
    let ponger = gort::go(move || ping_rx.iter().for_each(|v| pong_tx.send(v + 1).unwrap()));
    for i in 0..n {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i + 1);
    }
    drop(ping_tx);
    ponger.join().unwrap();
    row("round trips", thousands(n));
    row(
        "per round trip",
        format!("{:.0} ns", start.elapsed().as_nanos() as f64 / n as f64),
    );
}

fn select_with_timeout() {
    heading("select! with a timeout, and a goroutine-aware Mutex");
    let (tx, rx) = gort::chan::bounded::<&str>(0);
    let slow = gort::go(move || {
        gort::time::sleep(Duration::from_millis(50));
        let _ = tx.send("too late");
    });
    let start = Instant::now();
    let outcome = gort::select! {
        recv(rx) -> msg => msg.unwrap_or("closed"),
        default(Duration::from_millis(10)) => "timed out",
    };
    assert_eq!(outcome, "timed out");
    row(
        "select! outcome",
        format!("{outcome} after {:.1} ms", start.elapsed().as_secs_f64() * 1e3),
    );
    assert_eq!(rx.recv().unwrap(), "too late");
    slow.join().unwrap();

    static COUNT: gort::sync::Mutex<u64> = gort::sync::Mutex::new(0);
    let start = Instant::now();
    let workers: Vec<_> = (0..100)
        .map(|_| gort::go(|| (0..1000).for_each(|_| *COUNT.lock() += 1)))
        .collect();
    workers.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*COUNT.lock(), 100_000);
    row(
        "100 x 1000 locks",
        format!("{:.1} ns/lock", start.elapsed().as_nanos() as f64 / 100_000.0),
    );
}

/// Go's fan-out with a deadline: an errgroup whose context carries the
/// deadline; the slow half of the "requests" is cut short by it, the group
/// reports the first error, and nothing outlives `wait`.
fn fan_out_with_a_deadline() {
    use gort::context::{self, Context};
    heading("fan-out with a deadline: context and ErrGroup");
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(100));
    let (group, ctx) = gort::sync::ErrGroup::<context::Error>::with_context(&ctx);
    let finished = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    for i in 0..10u64 {
        let (ctx, finished) = (ctx.clone(), Arc::clone(&finished));
        group.go(move || {
            // Even requests answer at once; odd ones would take a minute.
            if i % 2 == 1 {
                gort::time::sleep_ctx(&ctx, Duration::from_secs(60))?;
            }
            finished.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
    }
    let first_error = group.wait();
    assert_eq!(first_error, Err(context::Error::DeadlineExceeded));
    assert_eq!(finished.load(Ordering::Relaxed), 5);
    row(
        "10 requests, 100 ms deadline",
        format!(
            "5 answered, 5 cut short after {:.0} ms: {}",
            start.elapsed().as_secs_f64() * 1e3,
            first_error.unwrap_err()
        ),
    );
}

fn sleepers() {
    let n = scaled(10_000);
    heading(&format!("{} goroutines sleeping 1..100 ms", thousands(n)));
    static WORST_NS: AtomicU64 = AtomicU64::new(0);
    let start = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|i| {
            gort::go(move || {
                let d = Duration::from_millis(i % 100 + 1);
                let t = Instant::now();
                gort::time::sleep(d);
                let late = t.elapsed().checked_sub(d).expect("a sleep never ends early");
                WORST_NS.fetch_max(late.as_nanos() as u64, Ordering::Relaxed);
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    row(
        "all woke after",
        format!("{:.1} ms (ideal ~100)", start.elapsed().as_secs_f64() * 1e3),
    );
    row(
        "worst lateness",
        format!("{:.2} ms", WORST_NS.load(Ordering::Relaxed) as f64 / 1e6),
    );
}

fn echo_server() {
    use std::io::{Read, Write};
    let clients = scaled(300);
    let round_trips = scaled(200);
    heading(&format!(
        "echo server: a goroutine per connection, {clients} client goroutines"
    ));
    let listener = gort::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = listener.clone();
    gort::go(move || {
        // Ends when the listener is closed below: `incoming()` ends there.
        for conn in server.incoming() {
            let Ok(mut conn) = conn else { return };
            gort::go(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let start = Instant::now();
    let talkers: Vec<_> = (0..clients)
        .map(|c| {
            gort::go(move || {
                let mut conn = gort::net::TcpStream::connect(addr).expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                let mut echo = [0u8; 64];
                for i in 0..round_trips {
                    let msg = [(c + i) as u8; 64];
                    conn.write_all(&msg).expect("write");
                    conn.read_exact(&mut echo).expect("read");
                    assert_eq!(echo, msg, "echo mismatch");
                }
            })
        })
        .collect();
    talkers.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    listener.close();
    let total = clients * round_trips;
    row("round trips", thousands(total));
    row(
        "round trips / s",
        format!(
            "{} (clients and server share the CPUs)",
            thousands((total as f64 / elapsed.as_secs_f64()) as u64)
        ),
    );
}

fn preemption() {
    heading("preemption: a call-free spinner and a 1 ms ticker on one P");
    let rt = gort::Runtime::builder()
        .procs(1)
        .name("spinner")
        .build()
        .expect("runtime");
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = Arc::clone(&stop);
        let spinner = gort::go(move || {
            let mut x = 0u64;
            // No runtime call in here: only a signal can stop it.
            while !spinning.load(Ordering::Relaxed) {
                x = std::hint::black_box(x + 1);
            }
            x
        });
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            let t = Instant::now();
            gort::time::sleep(Duration::from_millis(1));
            worst = worst.max(t.elapsed() - Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        let spins = spinner.join().unwrap();
        assert!(spins > 0);
        let m = runtime::metrics();
        row("ticks", "50 of 50, while the spinner ran");
        row(
            "worst tick delay",
            format!("{:.1} ms (preempt slice 10 ms)", worst.as_secs_f64() * 1e3),
        );
        row("preemption requests", m.preempt_requests);
    });
}

fn blocking_calls() {
    heading("blocking calls: 8 goroutines in std::thread::sleep, 2 Ps, a computation");
    let rt = gort::Runtime::builder()
        .procs(2)
        .name("blocking")
        .build()
        .expect("runtime");
    rt.block_on(|| {
        let start = Instant::now();
        let sleepers: Vec<_> = (0..8)
            .map(|_| {
                gort::go(|| {
                    for _ in 0..5 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        let compute = gort::go(move || {
            let mut x = 1u64;
            for _ in 0..50_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            (x, start.elapsed())
        });
        let (_, computed_after) = compute.join().unwrap();
        sleepers.into_iter().for_each(|h| h.join().unwrap());
        let all = start.elapsed();
        let m = runtime::metrics();
        row(
            "computation done",
            format!("after {:.0} ms", computed_after.as_secs_f64() * 1e3),
        );
        row(
            "all done",
            format!(
                "after {:.0} ms (40 sleeps of 20 ms on 2 Ps: 400 ms if they blocked the Ps)",
                all.as_secs_f64() * 1e3
            ),
        );
        row("blocked threads seen", m.blocked_detections);
        assert!(m.blocked_detections > 0);
    });
}

/// Waits for jobs until the channel closes: where the pool's goroutines park.
#[inline(never)]
fn pool_worker(jobs: gort::chan::Receiver<u64>, done: Arc<AtomicU64>) {
    while let Ok(job) = jobs.recv() {
        done.fetch_add(job, Ordering::Relaxed);
    }
}

fn goroutine_dump() {
    heading("goroutine dump and leak check");
    let rt = gort::Runtime::builder().procs(2).name("dump").build().unwrap();
    let (jobs, queue) = gort::chan::bounded::<u64>(0);
    let done = Arc::new(AtomicU64::new(0));
    let pool: Vec<_> = (0..1000)
        .map(|_| {
            let (queue, done) = (queue.clone(), Arc::clone(&done));
            rt.go(move || pool_worker(queue, done))
        })
        .collect();
    let lock = Arc::new(gort::sync::Mutex::new(()));
    let held = lock.lock();
    let waiter = {
        let lock = Arc::clone(&lock);
        rt.go(move || drop(lock.lock()))
    };
    let parked = || rt.goroutines().iter().filter(|g| g.wait_reason.is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while parked() < 1001 {
        assert!(Instant::now() < deadline, "the pool never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut text = Vec::new();
    rt.dump_grouped(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("1000 goroutines [chan receive"), "{text}");
    assert!(text.contains("pool_worker"), "{text}");
    for line in text.lines().take(14) {
        println!("   | {line}");
    }
    let leaks = rt.check_leaks(Duration::from_millis(20)).unwrap_err();
    assert_eq!(leaks.goroutines.len(), 1001);
    row(
        "check_leaks",
        format!("{} goroutines left alive", leaks.goroutines.len()),
    );
    drop(held);
    drop(jobs);
    waiter.join().unwrap();
    pool.into_iter().for_each(|h| h.join().unwrap());
    rt.check_leaks(Duration::from_secs(1)).unwrap();
    row("after closing the pool", "check_leaks passes");
}
