//! A soak: an echo server and an HTTP/1.1 server built on `gort::net` the
//! way a user writes them (a goroutine per connection, blocking code, read
//! and write deadlines), on 127.0.0.1 only, under clients that misbehave
//! for about a minute; afterwards the runtime must be back where it
//! started: goroutines, descriptors, stacks, timers and resident memory.
//!
//! `GORT_SOAK_SECS` sets the length of the soak in seconds (default 60;
//! `GORT_SOAK_SECS=5 cargo test --release --test soak` for a quick run).
//! It is meant for `cargo test --release`; in the test profile the same
//! minute carries less traffic. `GORT_SOAK_SEED` changes the clients'
//! choices.
//!
//! Clients: half plain threads on `std::net` (blocking the thread, as
//! foreign code would), half goroutines on `gort::net` (parking). Each
//! opens connection after connection (a *session*) and in each, by a seeded
//! xorshift, does one of:
//! - normal traffic: requests of random sizes, each response checked byte
//!   for byte (echo: the bytes sent; HTTP: a body generated from a seed in
//!   the URL, or a checksum of a POSTed body), sometimes pipelined, then a
//!   clean close;
//! - a disconnect in the middle of a request, by FIN or by RST;
//! - a read stall: part of a request, then silence; the server's read
//!   deadline must drop the connection, which the client sees as the end
//!   of the stream (it waits for that, so the test does not depend on how
//!   fast the machine is);
//! - a write stall (echo): sending without ever reading, until the
//!   server's write deadline drops the connection and the client's sends
//!   fail.
//!
//! The first sessions of every client go through each kind once, and every
//! client runs at least `MIN_SESSIONS` sessions however slow the machine,
//! so the volume assertions (thousands of verified requests, a dropped
//! stall per client...) hold on any machine; the loops are bounded by
//! `MAX_SESSIONS`, by the deadline and by per-operation guard timeouts.
//!
//! Baselines are taken after a warm-up phase of the same traffic, so that
//! whatever the runtime creates once and keeps (the poller's epoll fd and
//! doorbell eventfd, the Ms, cached stacks, the allocator's arenas) is in
//! the baseline and not mistaken for a leak.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use gort::Runtime;
use gort::net::{TcpListener, TcpStream};
use gort::sync::WaitGroup;
use socket2::SockRef;

/// Default length of the soak (`GORT_SOAK_SECS`).
const DEFAULT_SECS: u64 = 60;
/// Length of the warm-up phase before the baselines are taken.
const WARMUP: Duration = Duration::from_secs(3);
/// Clients of each service on plain threads, and on goroutines.
const THREAD_CLIENTS: usize = 4;
const GOROUTINE_CLIENTS: usize = 12;
/// Sessions each client runs at least (whatever the clock says) and at most.
const MIN_SESSIONS: u64 = 40;
const MAX_SESSIONS: u64 = 1_000_000;
/// The servers' read and write deadlines (per call, as std's timeouts).
/// Short, so that stalls are many; a normal client never pauses this long
/// on its own, and one the machine delays that long is dropped like a
/// staller and counted apart (`Tally::normal_dropped`), not failed.
const SERVER_IDLE: Duration = Duration::from_millis(500);
/// Clients' guard on every read and write. Reaching it means the server
/// neither answered nor dropped the connection: a hang, not slowness (ten
/// times the server's deadline). Short enough that the guards' cancelled
/// timers, which stay queued until due, come due within `SETTLE`.
const CLIENT_GUARD: Duration = Duration::from_secs(5);
/// Largest echo message and largest HTTP body. Under the client's default
/// receive buffer plus the server's send buffer (128 + 16 KiB before any
/// autotuning, `net.ipv4.tcp_rmem`/`tcp_wmem`), so the echo never blocks
/// while the client is still writing the whole message before it reads.
const MAX_MESSAGE: usize = 64 * 1024;
/// Largest request head the HTTP server buffers.
const MAX_HEAD: usize = 8 * 1024;
/// Most bytes a write-stalling client sends before it must have been
/// dropped. What it fills are socket buffers, the server's autotuned ones
/// included: a few MiB (4.4 MiB per stall on average, measured).
const WRITE_STALL_CAP: usize = 256 * 1024 * 1024;
/// How long the leak checks wait for stragglers (bounded retries).
const SETTLE: Duration = Duration::from_secs(20);

/// The small xorshift64 generator the clients draw every choice from.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Xorshift must not start at 0; spread nearby seeds apart.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A message or body size: mostly small, sometimes a few pages, now
    /// and then up to `MAX_MESSAGE`.
    fn size(&mut self) -> usize {
        match self.next() % 10 {
            0..=5 => self.range(1, 256),
            6..=8 => self.range(257, 4096),
            _ => self.range(4097, MAX_MESSAGE),
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The body the HTTP server sends for `GET /bytes/<n>/<seed>`.
fn body_for(n: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

/// FNV-1a, the HTTP server's answer to `POST /sum`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// What happened, counted on both sides; the assertions compare them.
#[derive(Default)]
struct Tally {
    // Clients.
    connections: AtomicU64,
    echo_verified: AtomicU64,
    echo_bytes: AtomicU64,
    http_verified: AtomicU64,
    http_bytes: AtomicU64,
    pipelined_batches: AtomicU64,
    aborts_fin: AtomicU64,
    aborts_rst: AtomicU64,
    read_stalls_dropped: AtomicU64,
    write_stalls_dropped: AtomicU64,
    write_stall_bytes: AtomicU64,
    /// Normal sessions the server dropped anyway (the client was held up
    /// past `SERVER_IDLE` by the machine); tolerated, and bounded below.
    normal_dropped: AtomicU64,
    // Servers.
    accepted: AtomicU64,
    served_to_eof: AtomicU64,
    truncated_requests: AtomicU64,
    read_deadline_drops: AtomicU64,
    write_deadline_drops: AtomicU64,
    peer_resets: AtomicU64,
    /// Goroutines of the soak alive now, and at most (for the stack bound).
    live: AtomicUsize,
    peak: AtomicUsize,
    /// Anything that should not happen, for the failure message.
    unexpected: Mutex<Vec<String>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Tally {
    fn unexpected(&self, what: String) {
        self.unexpected.lock().unwrap().push(what);
    }

    /// Spawn a goroutine on the current runtime, counted in `live`/`peak`.
    fn go(self: &Arc<Tally>, f: impl FnOnce() + Send + 'static) -> gort::JoinHandle<()> {
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(live, Ordering::Relaxed);
        let tally = Arc::clone(self);
        gort::go(move || {
            f();
            tally.live.fetch_sub(1, Ordering::Relaxed);
        })
    }
}

// ---------------------------------------------------------------- servers

/// How a server connection ended.
enum End {
    /// The client closed between requests.
    Eof,
    /// The client closed in the middle of a request.
    Truncated,
    ReadDeadline,
    WriteDeadline,
    /// The client reset the connection (or it broke on a write).
    PeerReset,
}

/// A connection goroutine's outcome: how the connection ended, whether on
/// the normal path (`Ok`) or because an I/O call ended it (`Err(Ok(_))`, so
/// that `?` leaves the loop); `Err(Err(_))` is a failure of the test.
type Served = Result<End, io::Result<End>>;

/// A server's I/O error as an ending; `write` tells the deadlines apart.
fn end_of(e: &io::Error, write: bool) -> io::Result<End> {
    match e.kind() {
        ErrorKind::TimedOut if write => Ok(End::WriteDeadline),
        ErrorKind::TimedOut => Ok(End::ReadDeadline),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Ok(End::PeerReset),
        _ => Err(io::Error::new(
            e.kind(),
            format!("{} error: {e}", if write { "write" } else { "read" }),
        )),
    }
}

fn read_or_end(conn: &TcpStream, buf: &mut [u8]) -> Result<usize, io::Result<End>> {
    (&*conn).read(buf).map_err(|e| end_of(&e, false))
}

fn write_or_end(conn: &TcpStream, bytes: &[u8]) -> Result<(), io::Result<End>> {
    (&*conn).write_all(bytes).map_err(|e| end_of(&e, true))
}

/// Both deadlines, as a server that must not keep abandoned connections
/// sets them.
fn deadlines(conn: &TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(SERVER_IDLE))?;
    conn.set_write_timeout(Some(SERVER_IDLE))
}

/// The echo server's connection goroutine: write back whatever arrives.
fn serve_echo(conn: &TcpStream) -> Served {
    deadlines(conn).map_err(Err)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = read_or_end(conn, &mut buf)?;
        if n == 0 {
            return Ok(End::Eof);
        }
        write_or_end(conn, &buf[..n])?;
    }
}

/// The HTTP server's connection goroutine: `GET /bytes/<n>/<seed>` answers
/// `n` bytes generated from `seed`; `POST /sum` answers the FNV-1a of its
/// body in hex. Keep-alive (HTTP/1.1), pipelining, `Connection: close`.
fn serve_http(conn: &TcpStream) -> Served {
    deadlines(conn).map_err(Err)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req
            .parse(&buf)
            .map_err(|e| Err(io::Error::new(ErrorKind::InvalidData, format!("bad request: {e}"))))?;
        let httparse::Status::Complete(head_len) = parsed else {
            if buf.len() > MAX_HEAD {
                return Err(Err(io::Error::new(ErrorKind::InvalidData, "request head too large")));
            }
            let n = read_or_end(conn, &mut chunk)?;
            if n == 0 {
                return Ok(if buf.is_empty() { End::Eof } else { End::Truncated });
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let mut body_len = 0;
        let mut close = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n <= MAX_MESSAGE)
                    .ok_or_else(|| Err(io::Error::new(ErrorKind::InvalidData, "bad Content-Length")))?;
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let target = (req.method.unwrap_or(""), req.path.unwrap_or(""));
        let answer = match target {
            ("GET", path) => path
                .strip_prefix("/bytes/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(n, seed)| Some(body_for(n.parse().ok()?, seed.parse().ok()?))),
            _ => None,
        };
        let (method_is_post, path_is_sum) = (target.0 == "POST", target.1 == "/sum");
        let request_len = head_len + body_len;
        while buf.len() < request_len {
            let n = read_or_end(conn, &mut chunk)?;
            if n == 0 {
                return Ok(End::Truncated);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = match answer {
            Some(body) => body,
            None if method_is_post && path_is_sum => {
                format!("{:016x}", fnv1a(&buf[head_len..request_len])).into_bytes()
            }
            None => {
                let what = String::from_utf8_lossy(&buf[..head_len]).into_owned();
                return Err(Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("unknown request {what:?}"),
                )));
            }
        };
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        out.extend_from_slice(&body);
        write_or_end(conn, &out)?;
        buf.drain(..request_len);
        if close {
            // Every request was answered; the client reads to our FIN.
            return Ok(End::Eof);
        }
    }
}

type Serve = fn(&TcpStream) -> Served;

/// Accept until the listener is closed, a goroutine per connection.
fn accept_loop(listener: TcpListener, serve: Serve, tally: Arc<Tally>, conns: Arc<WaitGroup>) {
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                bump(&tally.accepted);
                conns.add(1);
                let (t, wg) = (Arc::clone(&tally), Arc::clone(&conns));
                tally.go(move || {
                    match serve(&conn) {
                        Ok(end) | Err(Ok(end)) => bump(match end {
                            End::Eof => &t.served_to_eof,
                            End::Truncated => &t.truncated_requests,
                            End::ReadDeadline => &t.read_deadline_drops,
                            End::WriteDeadline => &t.write_deadline_drops,
                            End::PeerReset => &t.peer_resets,
                        }),
                        Err(Err(e)) => t.unexpected(format!("server connection: {e}")),
                    }
                    drop(conn);
                    wg.done();
                });
            }
            // `Servers::stop` closed the listener.
            Err(e) if e.kind() == ErrorKind::NotConnected => return,
            Err(e) => {
                tally.unexpected(format!("accept: {e}"));
                // Whatever it is (out of descriptors?), do not spin on it.
                gort::time::sleep(Duration::from_millis(10));
            }
        }
    }
}

struct Servers {
    echo: (TcpListener, SocketAddr),
    http: (TcpListener, SocketAddr),
    accepters: Vec<gort::JoinHandle<()>>,
    conns: Arc<WaitGroup>,
}

impl Servers {
    /// Bind both servers on loopback and start accepting. In a goroutine.
    fn start(tally: &Arc<Tally>) -> Servers {
        let conns = Arc::new(WaitGroup::new());
        let mut accepters = Vec::new();
        let mut listen = |serve: Serve| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
            let addr = listener.local_addr().expect("local_addr");
            let (l, t, wg) = (listener.clone(), Arc::clone(tally), Arc::clone(&conns));
            accepters.push(tally.go(move || accept_loop(l, serve, t, wg)));
            (listener, addr)
        };
        let echo = listen(serve_echo);
        let http = listen(serve_http);
        Servers {
            echo,
            http,
            accepters,
            conns,
        }
    }

    /// Close both listeners and wait for every goroutine of the servers:
    /// the accept loops end at the close, and the connection goroutines at
    /// their clients' close (or their deadline). In a goroutine.
    fn stop(self) {
        self.echo.0.close();
        self.http.0.close();
        for a in self.accepters {
            a.join().expect("accept loop panicked");
        }
        self.conns.wait();
    }
}

// ---------------------------------------------------------------- clients

/// A client's connection: std's blocking stream on a plain thread, or
/// gort's on a goroutine.
trait Conn: Read + Write + AsFd + Sized {
    /// Connect, with `CLIENT_GUARD` on every read and write.
    fn open(addr: SocketAddr) -> io::Result<Self>;
    /// Pause the client (its thread, or just its goroutine).
    fn pause(d: Duration);
}

/// `Conn` for a stream type with std's `TcpStream` methods, whose client
/// pauses with `$pause`.
macro_rules! conn {
    ($ty:ty, $pause:path) => {
        impl Conn for $ty {
            fn open(addr: SocketAddr) -> io::Result<Self> {
                let conn = <$ty>::connect(addr)?;
                conn.set_nodelay(true)?;
                conn.set_read_timeout(Some(CLIENT_GUARD))?;
                conn.set_write_timeout(Some(CLIENT_GUARD))?;
                Ok(conn)
            }

            fn pause(d: Duration) {
                $pause(d);
            }
        }
    };
}

conn!(std::net::TcpStream, std::thread::sleep);
conn!(TcpStream, gort::time::sleep);

#[derive(Clone, Copy, Debug)]
enum Service {
    Echo,
    Http,
}

#[derive(Clone, Copy, Debug)]
enum Session {
    Normal,
    AbortFin,
    AbortRst,
    ReadStall,
    WriteStall,
}

/// The kind of session `i` of a client: every kind once first, then by
/// weight (write stalls are echo-only; HTTP makes them read stalls).
fn session_kind(i: u64, rng: &mut Rng) -> Session {
    const FIRST: [Session; 5] = [
        Session::ReadStall,
        Session::Normal,
        Session::AbortFin,
        Session::WriteStall,
        Session::AbortRst,
    ];
    if let Some(&kind) = FIRST.get(i as usize) {
        return kind;
    }
    match rng.next() % 100 {
        0..=83 => Session::Normal,
        84..=89 => Session::AbortFin,
        90..=94 => Session::AbortRst,
        95..=97 => Session::ReadStall,
        _ => Session::WriteStall,
    }
}

/// A failed client operation: the server dropped a normal session
/// (tolerated, see `SERVER_IDLE`), or anything else (a failure).
enum Failure {
    Dropped,
    Bad(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if is_drop(&e) {
            Failure::Dropped
        } else {
            Failure::Bad(format!("client I/O: {e} ({:?})", e.kind()))
        }
    }
}

/// How a client sees the server drop its connection.
fn is_drop(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    )
}

/// Run sessions against `service` until `stop` (at least `min_sessions`).
fn client<C: Conn>(service: Service, addr: SocketAddr, seed: u64, stop: Instant, min: u64, tally: &Tally) {
    let mut rng = Rng::new(seed);
    for i in 0..MAX_SESSIONS {
        if i >= min && Instant::now() >= stop {
            break;
        }
        let kind = session_kind(i, &mut rng);
        let conn = match C::open(addr) {
            Ok(c) => c,
            Err(e) => {
                tally.unexpected(format!("{service:?} client {seed}: connect: {e}"));
                return;
            }
        };
        bump(&tally.connections);
        let outcome = match service {
            Service::Echo => echo_session(conn, kind, &mut rng, tally),
            Service::Http => http_session(conn, kind, &mut rng, tally),
        };
        match outcome {
            Ok(()) => {}
            Err(Failure::Dropped) => bump(&tally.normal_dropped),
            Err(Failure::Bad(why)) => {
                tally.unexpected(format!("{service:?} client {seed}, session {i} ({kind:?}): {why}"));
                return;
            }
        }
    }
}

/// Write `bytes` in a few pieces, sometimes with a short pause between
/// (far below `SERVER_IDLE`), so that the server sees requests split.
fn write_in_pieces<C: Conn>(conn: &mut C, bytes: &[u8], rng: &mut Rng) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if rng.chance(70) {
            rest.len()
        } else {
            rng.range(1, rest.len())
        };
        conn.write_all(&rest[..n])?;
        rest = &rest[n..];
        if !rest.is_empty() && rng.chance(20) {
            C::pause(Duration::from_micros(rng.range(0, 2000) as u64));
        }
    }
    Ok(())
}

/// End a session by dropping the connection mid-request, by RST (linger 0)
/// or FIN.
fn abort<C: Conn>(conn: C, rst: bool, tally: &Tally) -> Result<(), Failure> {
    if rst {
        SockRef::from(&conn).set_linger(Some(Duration::ZERO))?;
        bump(&tally.aborts_rst);
    } else {
        bump(&tally.aborts_fin);
    }
    drop(conn);
    Ok(())
}

/// Read until the server drops the connection; returns what came first.
fn read_until_dropped<C: Conn>(conn: &mut C) -> Result<Vec<u8>, Failure> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Bad(format!("waiting for the server to drop a stall: {e}"))),
        }
    }
}

/// Stop, and wait for the server's read deadline to drop the connection.
fn read_stall<C: Conn>(mut conn: C, rng: &mut Rng, tally: &Tally) -> Result<Vec<u8>, Failure> {
    C::pause(Duration::from_millis(
        rng.range(0, SERVER_IDLE.as_millis() as usize) as u64
    ));
    let echoed = read_until_dropped(&mut conn)?;
    bump(&tally.read_stalls_dropped);
    Ok(echoed)
}

fn echo_session<C: Conn>(mut conn: C, kind: Session, rng: &mut Rng, tally: &Tally) -> Result<(), Failure> {
    let before = match kind {
        Session::Normal => rng.range(1, 16),
        Session::WriteStall => 0,
        _ => rng.range(0, 3),
    };
    for _ in 0..before {
        let n = rng.size();
        let msg = rng.bytes(n);
        write_in_pieces(&mut conn, &msg, rng)?;
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back)?;
        if back != msg {
            return Err(Failure::Bad(format!("echo of {} bytes differs", msg.len())));
        }
        bump(&tally.echo_verified);
        tally.echo_bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
        if rng.chance(10) {
            C::pause(Duration::from_micros(rng.range(0, 1000) as u64));
        }
    }
    let n = rng.range(0, 300);
    let partial = rng.bytes(n);
    match kind {
        Session::Normal => Ok(()),
        Session::AbortFin | Session::AbortRst => {
            conn.write_all(&partial)?;
            abort(conn, matches!(kind, Session::AbortRst), tally)
        }
        Session::ReadStall => {
            conn.write_all(&partial)?;
            let echoed = read_stall(conn, rng, tally)?;
            if !partial.starts_with(&echoed) {
                return Err(Failure::Bad("a stalled connection echoed other bytes".into()));
            }
            Ok(())
        }
        Session::WriteStall => write_stall(conn, tally),
    }
}

/// Send without reading until the server's write deadline drops us.
fn write_stall<C: Conn>(mut conn: C, tally: &Tally) -> Result<(), Failure> {
    // Fixed small buffers on our side (no autotuning), so that mostly the
    // server's fill: that halves what a stall copies (8 -> 4.4 MiB, measured).
    let sock = SockRef::from(&conn);
    sock.set_send_buffer_size(16 * 1024)?;
    sock.set_recv_buffer_size(16 * 1024)?;
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut sent = 0;
    while sent < WRITE_STALL_CAP {
        match conn.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if is_drop(&e) => {
                bump(&tally.write_stalls_dropped);
                tally.write_stall_bytes.fetch_add(sent as u64, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Bad(format!("write stall after {sent} bytes: {e}"))),
        }
    }
    Err(Failure::Bad(format!(
        "the server never dropped a client that does not read ({sent} bytes sent)"
    )))
}

/// One HTTP request and what its response must be.
struct Exchange {
    request: Vec<u8>,
    body: Vec<u8>,
    close: bool,
}

fn http_exchange(rng: &mut Rng, close: bool) -> Exchange {
    let connection = if close { "Connection: close\r\n" } else { "" };
    if rng.chance(60) {
        let (n, seed) = (rng.size(), rng.next() >> 1);
        Exchange {
            request: format!("GET /bytes/{n}/{seed} HTTP/1.1\r\nHost: soak\r\n{connection}\r\n").into_bytes(),
            body: body_for(n, seed),
            close,
        }
    } else {
        let n = rng.size();
        let body = rng.bytes(n);
        let mut request = format!(
            "POST /sum HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n{connection}\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        Exchange {
            request,
            body: format!("{:016x}", fnv1a(&body)).into_bytes(),
            close,
        }
    }
}

/// Read one response into `buf` (which keeps what follows it), check it
/// against `ex`.
fn expect_response<C: Conn>(conn: &mut C, buf: &mut Vec<u8>, ex: &Exchange) -> Result<(), Failure> {
    let mut chunk = [0u8; 8192];
    let mut fill = |conn: &mut C, buf: &mut Vec<u8>| -> Result<(), Failure> {
        match conn.read(&mut chunk)? {
            0 => Err(Failure::Dropped),
            n => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    };
    let (head_len, body_len, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                if resp.code != Some(200) {
                    return Err(Failure::Bad(format!("status {:?}", resp.code)));
                }
                let header = |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
                let body_len = header("content-length")
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .ok_or_else(|| Failure::Bad("response without a Content-Length".into()))?;
                let close = header("connection").is_some_and(|h| h.value.eq_ignore_ascii_case(b"close"));
                break (head_len, body_len, close);
            }
            Ok(httparse::Status::Partial) => fill(conn, buf)?,
            Err(e) => return Err(Failure::Bad(format!("bad response: {e}"))),
        }
    };
    while buf.len() < head_len + body_len {
        fill(conn, buf)?;
    }
    if buf[head_len..head_len + body_len] != ex.body[..] || close != ex.close {
        return Err(Failure::Bad(format!(
            "wrong response to {:?}",
            String::from_utf8_lossy(&ex.request[..ex.request.len().min(60)])
        )));
    }
    buf.drain(..head_len + body_len);
    Ok(())
}

fn http_session<C: Conn>(mut conn: C, kind: Session, rng: &mut Rng, tally: &Tally) -> Result<(), Failure> {
    let before = match kind {
        Session::Normal => rng.range(1, 16),
        _ => rng.range(0, 3),
    };
    let mut buf = Vec::new();
    let mut done = 0;
    while done < before {
        // Sometimes pipeline a few requests in one write.
        let batch = if rng.chance(20) {
            rng.range(2, 4).min(before - done)
        } else {
            1
        };
        let last_closes = matches!(kind, Session::Normal) && done + batch == before && rng.chance(30);
        let exchanges: Vec<Exchange> = (0..batch)
            .map(|i| http_exchange(rng, last_closes && i == batch - 1))
            .collect();
        let bytes: Vec<u8> = exchanges.iter().flat_map(|e| e.request.iter().copied()).collect();
        write_in_pieces(&mut conn, &bytes, rng)?;
        if batch > 1 {
            bump(&tally.pipelined_batches);
        }
        for ex in &exchanges {
            expect_response(&mut conn, &mut buf, ex)?;
            bump(&tally.http_verified);
            tally.http_bytes.fetch_add(ex.body.len() as u64, Ordering::Relaxed);
        }
        if last_closes {
            // The server closes after answering `Connection: close`.
            let rest = read_until_dropped(&mut conn)?;
            if !rest.is_empty() || !buf.is_empty() {
                return Err(Failure::Bad("bytes after a Connection: close response".into()));
            }
        }
        done += batch;
    }
    // A strict prefix of a request: never complete, so the server waits.
    let ex = http_exchange(rng, false);
    let partial = &ex.request[..rng.range(0, ex.request.len() - 1)];
    match kind {
        Session::Normal => Ok(()),
        Session::AbortFin | Session::AbortRst => {
            conn.write_all(partial)?;
            abort(conn, matches!(kind, Session::AbortRst), tally)
        }
        Session::ReadStall | Session::WriteStall => {
            conn.write_all(partial)?;
            let rest = read_stall(conn, rng, tally)?;
            if !rest.is_empty() || !buf.is_empty() {
                return Err(Failure::Bad("a response to an incomplete request".into()));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- the soak

/// One phase: both servers, every client until `length` has passed (and
/// each has run `min` sessions), then the servers stopped and every
/// goroutine of the phase ended.
fn phase(rt: &Runtime, length: Duration, min: u64, seed: u64, tally: &Arc<Tally>) {
    let t = Arc::clone(tally);
    let servers = rt.block_on(move || Servers::start(&t));
    let stop = Instant::now() + length;
    let mut seeds = seed + 1..;
    let mut threads = Vec::new();
    let mut on_goroutines = Vec::new();
    for (service, addr) in [(Service::Echo, servers.echo.1), (Service::Http, servers.http.1)] {
        for seed in seeds.by_ref().take(THREAD_CLIENTS) {
            let t = Arc::clone(tally);
            threads.push(std::thread::spawn(move || {
                client::<std::net::TcpStream>(service, addr, seed, stop, min, &t);
            }));
        }
        on_goroutines.extend(seeds.by_ref().take(GOROUTINE_CLIENTS).map(|seed| (service, addr, seed)));
    }
    let t = Arc::clone(tally);
    let goroutines = rt.block_on(move || {
        let spawn = |(service, addr, seed)| {
            let tally = Arc::clone(&t);
            t.go(move || client::<TcpStream>(service, addr, seed, stop, min, &tally))
        };
        on_goroutines.into_iter().map(spawn).collect::<Vec<_>>()
    });
    for t in threads {
        t.join().expect("a client thread panicked");
    }
    for g in goroutines {
        g.join().expect("a client goroutine panicked");
    }
    rt.block_on(move || servers.stop());
}

/// What the leak checks compare.
struct Snapshot {
    goroutines: usize,
    /// Number and target of each, sysmon's thread probes left out.
    fds: Vec<(String, String)>,
    /// Sysmon's thread probes (`probed_thread`).
    probes: usize,
    stacks: usize,
    timers: usize,
    rss: usize,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} goroutines, {} descriptors (+{} thread probes), {} stacks, {} timers queued, RSS {} KiB",
            self.goroutines,
            self.fds.len(),
            self.probes,
            self.stacks,
            self.timers,
            self.rss >> 10
        )
    }
}

/// The open descriptors and what each names (`socket:[inode]`, a path...),
/// but for sysmon's thread probes, which `thread_probes` lists.
fn open_fds() -> Vec<(String, String)> {
    let listing = format!("/proc/{}/fd", std::process::id());
    let mut fds: Vec<(String, String)> = std::fs::read_dir(&listing)
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .map(|e| {
            let target = std::fs::read_link(e.path()).map_or_else(|e| e.to_string(), |t| t.display().to_string());
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        // The directory's own descriptor, open while it is read.
        .filter(|(_, target)| *target != listing && probed_thread(target).is_none())
        .collect();
    fds.sort();
    fds
}

/// The thread a descriptor probes, if it is one of sysmon's: to tell
/// whether an M is blocked in the kernel, sysmon keeps each M's
/// `/proc/self/task/<tid>/stat` open while the M lives (`ThreadStat` in
/// `src/os/thread.rs`), and closes it once the M has exited. So these come
/// and go with the Ms (which exit after their idle keep-alive), and are
/// checked apart: one per live thread at most.
fn probed_thread(target: &str) -> Option<String> {
    let task = format!("/proc/{}/task/", std::process::id());
    let tid = target.strip_prefix(&task)?.strip_suffix("/stat")?;
    Some(tid.to_string())
}

/// The threads sysmon's open probes name.
fn thread_probes() -> Vec<String> {
    let mut tids: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| probed_thread(&std::fs::read_link(e.ok()?.path()).ok()?.display().to_string()))
        .collect();
    tids.sort();
    tids
}

/// Whether every probe names a live thread of this process, once.
fn probes_are_of_live_threads() -> bool {
    let tids = thread_probes();
    let mut unique = tids.clone();
    unique.dedup();
    unique.len() == tids.len()
        && tids
            .iter()
            .all(|tid| std::path::Path::new(&format!("/proc/self/task/{tid}")).exists())
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

fn snapshot(rt: &Runtime) -> Snapshot {
    let m = rt.metrics();
    Snapshot {
        goroutines: m.goroutines_live,
        fds: open_fds(),
        probes: thread_probes().len(),
        stacks: m.stacks_allocated,
        timers: m.timers_queued,
        rss: rss_bytes(),
    }
}

/// Wait (bounded, polling) until `done` holds; false if it never did.
fn settle(mut done: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + SETTLE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything the phase started is gone: no goroutine (`check_leaks` from
/// a plain thread expects none); no timer left queued — every deadline was
/// cancelled or fired, and a cancelled one stays queued until it comes due
/// at the latest (`Metrics::timers_queued`), `CLIENT_GUARD` after it was
/// armed for the longest; and no thread probe of an exited M.
fn quiesce(rt: &Runtime, timers_baseline: usize) {
    if let Err(leaks) = rt.check_leaks(SETTLE) {
        panic!("goroutines left after the soak:\n{leaks}");
    }
    let (queued, since) = (rt.metrics().timers_queued, Instant::now());
    let timers_done = settle(|| rt.metrics().timers_queued <= timers_baseline);
    eprintln!(
        "soak: {queued} timers queued after the phase, drained in {:?}",
        since.elapsed()
    );
    assert!(
        timers_done,
        "timers still queued {SETTLE:?} after the soak: {} (baseline {timers_baseline})",
        rt.metrics().timers_queued
    );
    assert!(
        settle(probes_are_of_live_threads),
        "descriptors of sysmon's thread probes outlive their threads, or repeat: {:?}",
        thread_probes()
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a whole number")),
        Err(_) => default,
    }
}

/// Run `f` on its own thread; on a hang, dump the runtime's goroutines and fail.
fn guarded(rt: Arc<Runtime>, limit: Duration, f: impl FnOnce(&Runtime) + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&rt);
    let thread = std::thread::spawn(move || {
        f(&inner);
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(thread.join().unwrap_err()),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = rt.dump_grouped(&mut io::stderr());
            panic!("the soak hung: not finished after {limit:?} (goroutines above)");
        }
    }
}

#[test]
fn soak_echo_and_http_servers() {
    let secs = env_u64("GORT_SOAK_SECS", DEFAULT_SECS);
    let seed = env_u64("GORT_SOAK_SEED", 1);
    let rt = Arc::new(Runtime::builder().name("soak").build().unwrap());
    // A hang guard far above an honest run: the warm-up and the soak, the
    // last sessions (bounded by the clients' guards) and the settle loops.
    let limit = Duration::from_secs(secs * 3 + 120);
    guarded(rt, limit, move |rt| soak(rt, secs, seed));
}

fn soak(rt: &Runtime, secs: u64, seed: u64) {
    // Warm-up, with the same traffic, so that what the runtime keeps is in
    // the baseline.
    let warm = Arc::new(Tally::default());
    phase(rt, WARMUP, MIN_SESSIONS / 4, seed.wrapping_mul(1000), &warm);
    assert_eq!(warm.unexpected.lock().unwrap().as_slice(), &[] as &[String]);
    quiesce(rt, 0);
    let base = snapshot(rt);

    let tally = Arc::new(Tally::default());
    phase(rt, Duration::from_secs(secs), MIN_SESSIONS, seed, &tally);
    let unexpected = tally.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "{} failures, first: {:#?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    quiesce(rt, base.timers);
    let after = snapshot(rt);
    let peak = tally.peak.load(Ordering::Relaxed);

    eprintln!(
        "soak: {secs} s, {} connections ({} accepted), {} echo messages ({} KiB) and {} HTTP requests ({} KiB, {} \
         pipelined batches) verified; aborts {} FIN + {} RST; stalls dropped: {} read (server read deadlines {}), {} \
         write (server write deadlines {}, {} KiB sent into them); normal sessions dropped by load {}; server: {} to \
         EOF, {} truncated, {} resets; peak soak goroutines {peak}",
        get(&tally.connections),
        get(&tally.accepted),
        get(&tally.echo_verified),
        get(&tally.echo_bytes) / 1024,
        get(&tally.http_verified),
        get(&tally.http_bytes) / 1024,
        get(&tally.pipelined_batches),
        get(&tally.aborts_fin),
        get(&tally.aborts_rst),
        get(&tally.read_stalls_dropped),
        get(&tally.read_deadline_drops),
        get(&tally.write_stalls_dropped),
        get(&tally.write_deadline_drops),
        get(&tally.write_stall_bytes) / 1024,
        get(&tally.normal_dropped),
        get(&tally.served_to_eof),
        get(&tally.truncated_requests),
        get(&tally.peer_resets),
    );
    eprintln!("soak: after warm-up {base:?}");
    eprintln!("soak: after the run {after:?}");

    // The traffic happened. Every client ran at least MIN_SESSIONS sessions
    // and began with one of each kind, so these hold on any machine.
    let clients = 2 * (THREAD_CLIENTS + GOROUTINE_CLIENTS) as u64;
    let echo_clients = clients / 2;
    assert!(get(&tally.connections) >= clients * MIN_SESSIONS);
    assert!(get(&tally.echo_verified) >= 1000, "too few echoes verified");
    assert!(get(&tally.http_verified) >= 1000, "too few HTTP requests verified");
    assert!(get(&tally.pipelined_batches) >= 1);
    assert!(get(&tally.aborts_fin) >= clients && get(&tally.aborts_rst) >= clients);
    assert!(get(&tally.read_stalls_dropped) >= clients);
    assert!(get(&tally.write_stalls_dropped) >= echo_clients);
    // Only the servers' deadlines end a stall (the client waits for it),
    // and a normal session dropped by load was dropped by one too. A read
    // stall always ends at a read deadline; a write stall at the write
    // deadline, unless the client itself was held up between two sends
    // for longer than the read deadline (seen with 20 ms deadlines, never
    // with `SERVER_IDLE`), so write stalls are only counted in the sum.
    assert!(get(&tally.read_deadline_drops) >= get(&tally.read_stalls_dropped));
    assert!(get(&tally.write_deadline_drops) >= 1, "no write deadline fired");
    assert!(
        get(&tally.read_deadline_drops) + get(&tally.write_deadline_drops)
            >= get(&tally.read_stalls_dropped) + get(&tally.write_stalls_dropped) + get(&tally.normal_dropped)
    );
    assert!(get(&tally.accepted) <= get(&tally.connections));

    // Goroutines: `quiesce` checked that none is left; the count agrees.
    assert_eq!(after.goroutines, base.goroutines);
    assert_eq!(tally.live.load(Ordering::Relaxed), 0);
    // Descriptors: every socket of the run is closed; the poller's epoll
    // and eventfd were made in the warm-up.
    assert_eq!(after.fds, base.fds, "descriptors leaked");
    // Timers: `quiesce` waited for the queue to drain to the baseline.
    assert!(after.timers <= base.timers);
    // Stacks: a stack is allocated only when its P's cache and the global
    // one are both empty, so at most one per goroutine alive at once plus
    // what the other Ps' caches hold (at most `LOCAL_MAX` = 64 each,
    // `src/stack/cache.rs`), plus one per P for a goroutine that has ended
    // but whose stack its M has not put back yet. The default minute runs
    // about 50,000 connections, each a goroutine: one leaked stack in a
    // few hundred would exceed this.
    let procs = rt.procs();
    let stack_bound = base.stacks.max(peak + 1) + procs * (64 + 1);
    assert!(
        after.stacks <= stack_bound,
        "{} stacks allocated after the soak, more than {stack_bound} (peak {peak} goroutines, {procs} Ps)",
        after.stacks
    );
    // Resident memory: the warm-up reached the same concurrency, so the
    // cached stacks, buffers and allocator arenas are in the baseline; what
    // grows is allocator fragmentation and more pages touched on cached
    // stacks (3 MiB in a minute, measured; over twelve 5 s phases in one
    // process RSS wandered between 9.4 and 12.0 MiB, the touched stack
    // pages rising from 1.2 to 1.8 MiB). 32 MiB over the default minute's
    // ~50,000 connections and ~400,000 requests catches a leak of some 700
    // bytes per connection or 80 per request, and a stack page per
    // goroutine many times over.
    let growth = after.rss.saturating_sub(base.rss);
    assert!(
        growth < 32 << 20,
        "RSS grew by {} KiB over the soak ({} KiB -> {} KiB)",
        growth >> 10,
        base.rss >> 10,
        after.rss >> 10
    );
}
