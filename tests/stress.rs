//! Randomized stress across the runtime: many goroutines doing random
//! channel operations, mutex increments, sleeps and yields, checked for
//! lost wake-ups (everything finishes) and for exact totals; and
//! goroutine-per-connection echo traffic over TCP and Unix sockets with
//! random read and write sizes and pauses, full-duplex streams larger than
//! the socket buffers, read timeouts and `close` racing a blocked read,
//! checked byte for byte. Each seed's run is reproducible in its choice of
//! operations; the interleaving is whatever the scheduler makes of it. Runs
//! on one P, on the default number and on more Ps than cores; each on a
//! plain runtime and under the chaos scheduler with three seeds
//! (`Builder::chaos`), which shuffles the interleavings on purpose.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gort::chan::{Receiver, Sender, bounded, unbounded};
use gort::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use gort::runtime::Builder;
use gort::sync::{Mutex, WaitGroup};
use gort::{Runtime, runtime};

mod common;
use common::{CHILD_ENV, guarded};

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

// ------------------------------------------------------------- networking

/// Connections per network stress run: a quarter of them in each mode.
const CONNS: u64 = 32;

/// What the network stress needs of a stream socket type.
trait Stream: Read + Write + Send + Sized + 'static {
    fn handle(&self) -> Self;
    fn shutdown_write(&self);
    fn set_read_timeout(&self, timeout: Option<Duration>);
    fn close(&self);
}

/// A stream transport: how to listen, accept and connect.
trait Transport {
    type Stream: Stream;
    type Listener: Send + 'static;
    type Addr: Clone + Send + 'static;
    fn listen() -> (Self::Listener, Self::Addr);
    fn accept(listener: &Self::Listener) -> Self::Stream;
    fn connect(addr: &Self::Addr) -> Self::Stream;
}

macro_rules! stream_via_gort {
    ($ty:ty) => {
        impl Stream for $ty {
            fn handle(&self) -> Self {
                self.try_clone().unwrap()
            }
            fn shutdown_write(&self) {
                self.shutdown(Shutdown::Write).unwrap();
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) {
                <$ty>::set_read_timeout(self, timeout).unwrap();
            }
            fn close(&self) {
                <$ty>::close(self);
            }
        }
    };
}
stream_via_gort!(TcpStream);
stream_via_gort!(UnixStream);

struct Tcp;

impl Transport for Tcp {
    type Stream = TcpStream;
    type Listener = TcpListener;
    type Addr = std::net::SocketAddr;
    fn listen() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }
    fn accept(listener: &TcpListener) -> TcpStream {
        listener.accept().unwrap().0
    }
    fn connect(addr: &std::net::SocketAddr) -> TcpStream {
        TcpStream::connect(addr).unwrap()
    }
}

struct Unix;

impl Transport for Unix {
    type Stream = UnixStream;
    type Listener = UnixListener;
    type Addr = UnixAddr;
    fn listen() -> (UnixListener, UnixAddr) {
        // Abstract names leave no files behind; the counter keeps the runs
        // of one process apart.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "gort-stress-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = UnixAddr::from_abstract_name(name).unwrap();
        (UnixListener::bind_addr(&addr).unwrap(), addr)
    }
    fn accept(listener: &UnixListener) -> UnixStream {
        listener.accept().unwrap().0
    }
    fn connect(addr: &UnixAddr) -> UnixStream {
        UnixStream::connect_addr(addr).unwrap()
    }
}

/// The byte at `pos` of connection `conn`'s stream: every position differs
/// from its neighbours, so a lost, repeated or reordered chunk shows.
fn pattern(conn: u64, pos: u64) -> u8 {
    (pos.wrapping_mul(31) ^ (pos >> 8) ^ conn.wrapping_mul(97)) as u8
}

fn pattern_chunk(conn: u64, from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64).map(|pos| pattern(conn, pos)).collect()
}

/// Sometimes let others run, in one of the ways a goroutine can.
fn maybe_pause(rng: &mut Xorshift) {
    match rng.next() % 8 {
        0 => gort::yield_now(),
        1 => gort::time::sleep(Duration::from_micros(rng.next() % 200)),
        _ => {}
    }
}

/// Write `len` pattern bytes from `*pos` in a few chunks, pausing between.
fn send_pattern<S: Stream>(conn: &mut S, id: u64, pos: &mut u64, len: usize, rng: &mut Xorshift) {
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 + (rng.next() % 16384) as usize);
        conn.write_all(&pattern_chunk(id, *pos, chunk)).unwrap();
        *pos += chunk as u64;
        left -= chunk;
        maybe_pause(rng);
    }
}

/// Read exactly `len` bytes and check they continue the pattern at `*pos`.
fn expect_pattern<S: Stream>(conn: &mut S, id: u64, pos: &mut u64, len: usize) {
    let mut back = vec![0; len];
    conn.read_exact(&mut back).unwrap();
    assert!(
        back == pattern_chunk(id, *pos, len),
        "connection {id}: corrupted echo at byte {pos}"
    );
    *pos += len as u64;
}

fn expect_eof<S: Stream>(conn: &mut S, id: u64) {
    let n = conn.read(&mut [0; 16]).unwrap();
    assert_eq!(n, 0, "connection {id}: data after the echo ended");
}

/// Request and reply, one message at a time; returns the bytes sent.
fn client_sequential<S: Stream>(mut conn: S, id: u64, rng: &mut Xorshift) -> u64 {
    let (mut sent, mut checked) = (0, 0);
    for _ in 0..1 + rng.next() % 12 {
        let len = 1 + (rng.next() % 6000) as usize;
        send_pattern(&mut conn, id, &mut sent, len, rng);
        expect_pattern(&mut conn, id, &mut checked, len);
    }
    conn.shutdown_write();
    expect_eof(&mut conn, id);
    sent
}

/// A writer and a reader goroutine on two handles of one connection,
/// streaming more than the socket buffers hold, so that the client, the
/// echo and the kernel all fill up and wait on each other.
fn client_duplex<S: Stream>(conn: S, id: u64, rng: &mut Xorshift) -> u64 {
    let total = 64 * 1024 + (rng.next() % (448 * 1024)) as usize;
    let mut writer_conn = conn.handle();
    let mut writer_rng = Xorshift(rng.next() | 1);
    let writer = gort::go(move || {
        let mut sent = 0;
        send_pattern(&mut writer_conn, id, &mut sent, total, &mut writer_rng);
        writer_conn.shutdown_write();
        sent
    });
    let mut conn = conn;
    let mut checked = 0;
    while checked < total as u64 {
        let len = (total - checked as usize).min(1 + (rng.next() % 20000) as usize);
        expect_pattern(&mut conn, id, &mut checked, len);
        maybe_pause(rng);
    }
    expect_eof(&mut conn, id);
    writer.join().unwrap()
}

/// A read with nothing to read times out as `TimedOut`; with the timeout
/// cleared, the connection works as before.
fn client_timeout<S: Stream>(mut conn: S, id: u64, rng: &mut Xorshift) -> u64 {
    conn.set_read_timeout(Some(Duration::from_micros(200 + rng.next() % 2000)));
    let err = conn.read(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "connection {id}");
    conn.set_read_timeout(None);
    client_sequential(conn, id, rng)
}

/// `close` while another goroutine is blocked reading (or about to read):
/// the reader fails, never hangs and never reads.
fn client_close_while_blocked<S: Stream>(conn: S, id: u64, rng: &mut Xorshift) -> u64 {
    let mut reader_conn = conn.handle();
    let reader = gort::go(move || reader_conn.read(&mut [0; 64]));
    maybe_pause(rng);
    conn.close();
    let err = reader.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "connection {id}");
    0
}

/// Echo until end of file, reading into buffers of random sizes; returns
/// the bytes echoed.
fn serve_echo<S: Stream>(mut conn: S, mut rng: Xorshift) -> u64 {
    let mut buf = vec![0; 4096];
    let mut echoed = 0;
    loop {
        let want = 1 + (rng.next() % 4096) as usize;
        let n = conn.read(&mut buf[..want]).unwrap();
        if n == 0 {
            return echoed;
        }
        conn.write_all(&buf[..n]).unwrap();
        echoed += n as u64;
        maybe_pause(&mut rng);
    }
}

/// `CONNS` client goroutines, a quarter in each mode, against a goroutine
/// per connection echo server; checks every byte and the totals.
fn run_net_stress<T: Transport>(rt: &Runtime, seed: u64) {
    let (sent, echoed) = rt.block_on(move || {
        let (listener, addr) = T::listen();
        let server = gort::go(move || {
            let echoes: Vec<_> = (0..CONNS)
                .map(|i| {
                    let conn = T::accept(&listener);
                    gort::go(move || serve_echo(conn, Xorshift((seed << 32 | i) | 1)))
                })
                .collect();
            echoes.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|id| {
                let addr = addr.clone();
                gort::go(move || {
                    let mut rng = Xorshift((seed << 40 | id << 8 | 0x5a) | 1);
                    let conn = T::connect(&addr);
                    match id % 4 {
                        0 => client_sequential(conn, id, &mut rng),
                        1 => client_duplex(conn, id, &mut rng),
                        2 => client_timeout(conn, id, &mut rng),
                        _ => client_close_while_blocked(conn, id, &mut rng),
                    }
                })
            })
            .collect();
        let sent: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
        (sent, server.join().unwrap())
    });
    assert_eq!(sent, echoed);
    assert!(sent > 0);
}

/// The network stress over TCP and then Unix sockets, on runtimes from
/// `builder`, plain and under chaos; a hang fails after `HANG_GUARD`.
fn net_stress(builder: Builder, seed: u64) {
    guarded(move || {
        plain_and_chaos(builder, |rt| {
            run_net_stress::<Tcp>(rt, seed);
            run_net_stress::<Unix>(rt, seed + 1);
        })
    });
}

#[test]
fn net_stress_on_one_p() {
    net_stress(Runtime::builder().procs(1), 1);
}

#[test]
fn net_stress_on_all_ps() {
    net_stress(Runtime::builder(), 3);
}

#[test]
fn net_stress_on_more_ps_than_cores() {
    net_stress(Runtime::builder().procs(4), 5);
}
