//! The debug server's HTTP/1.1: an accept loop and one goroutine per
//! connection, each reading one request head, answering it through the
//! route table (`mod.rs`) and closing. Written as plain blocking code over
//! `gort::net`, the way `examples/http_hello.rs` serves.
//!
//! Bounded, because it runs inside the program it describes and must never
//! be the reason that program suffers:
//!
//! - a request head is at most `MAX_HEAD` bytes (else 431) and must arrive
//!   whole within `HEAD_TIMEOUT` (else the connection is dropped): a client
//!   that trickles bytes or sends nothing holds one parked goroutine for at
//!   most that long;
//! - every write is bounded by `WRITE_TIMEOUT`, so a client that stops
//!   reading cannot hold a connection for ever;
//! - at most `MAX_CONNS` connections are served at once; the next ones get
//!   503 and are closed, so a flood costs a bounded number of goroutines;
//! - one request per connection (`Connection: close`): no keep-alive state
//!   to bound, and the clients these endpoints serve (`go tool pprof`,
//!   curl, a browser, Prometheus) all cope;
//! - request bodies are not read (every endpoint is a GET).
//!
//! Every goroutine here is spawned from this file and named (`debug/http`
//! for the accept loop, `debug/http conn` for a connection), so dumps show
//! them for what they are, and the deadlock check knows them by their spawn
//! site (`is_server_goroutine`): they wait on sockets, which would
//! otherwise count as "someone may still wake up" and hide a deadlock of
//! the program they serve.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::net::TcpListener;
use crate::net::TcpStream;

/// The largest request head (request line and header fields) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on each write of a response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more get 503.
pub(crate) const MAX_CONNS: usize = 32;
/// How long a closing connection keeps reading after its response, so that
/// unread request bytes do not turn the close into a reset that loses the
/// response (see `close_gently` in `examples/http_hello.rs`).
const LINGER: Duration = Duration::from_millis(200);

/// The file every server goroutine is spawned from.
const SPAWN_FILE: &str = file!();

/// Whether a goroutine spawned at `spawned_at` is one of the debug
/// server's: for the deadlock check (module header).
pub(crate) fn is_server_goroutine(spawned_at: &Location<'_>) -> bool {
    spawned_at.file() == SPAWN_FILE
}

/// A parsed request: what the route table needs.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query, without the `?` (empty if none).
    pub(crate) query: String,
}

impl Request {
    /// The value of query parameter `key` (the first one), undecoded: every
    /// parameter these endpoints take is a number or a word.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// A response, built whole before it is written.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    /// Extra header lines, each without its CRLF.
    pub(crate) headers: Vec<String>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// 200 with `body` of `content_type`.
    pub(crate) fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error `status`, its message as a plain-text body.
    pub(crate) fn error(status: u16, message: impl Into<String>) -> Response {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body,
        }
    }

    /// Add a header line (`Name: value`).
    pub(crate) fn with_header(mut self, line: String) -> Response {
        self.headers.push(line);
        self
    }
}

/// Handles a request; the route table.
pub(crate) type Handler = fn(&Request) -> Response;

/// Spawn the accept loop on the runtime `sched`, serving the listener
/// `listen` gives with `handler` until it is closed. `listen` runs on the
/// new goroutine, so a listener it binds registers with `sched`'s poller;
/// it returns `None` when it could not bind (and said why).
pub(crate) fn spawn_acceptor(
    sched: &crate::sched::Sched,
    listen: impl FnOnce() -> Option<TcpListener> + Send + 'static,
    handler: Handler,
) -> io::Result<crate::JoinHandle<()>> {
    crate::goroutine::spawn_on(
        sched,
        move || {
            if let Some(listener) = listen() {
                accept_loop(listener, handler);
            }
        },
        Some(Arc::from("debug/http")),
        sched.stack_size(),
    )
}

fn accept_loop(listener: TcpListener, handler: Handler) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            // Closed by `DebugServer::stop`.
            Err(e) if crate::net::is_closed(&e) => return,
            // Out of descriptors and the like: pace the retries rather
            // than spin (Go's net/http sleeps the same way).
            Err(_) => {
                crate::time::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNS {
            active.fetch_sub(1, Ordering::Relaxed);
            // Answered here, bounded by the write timeout; no goroutine.
            let busy = Response::error(503, format!("too many debug connections (at most {MAX_CONNS})"));
            let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = write_response(&conn, &busy, false);
            continue;
        }
        let active = Arc::clone(&active);
        let spawned = crate::goroutine::Builder::new().name("debug/http conn").spawn(move || {
            serve_conn(&conn, handler);
            active.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            // No stack to be had: the connection was dropped with the
            // closure; the count must not leak.
            continue;
        }
    }
}

/// Read one request from `conn`, answer it, close.
fn serve_conn(conn: &TcpStream, handler: Handler) {
    if conn.set_nodelay(true).is_err() || conn.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let response = match read_head(conn) {
        Ok(Some(head)) => match parse(&head) {
            Ok(req) => {
                let head_only = req.method == "HEAD";
                let response = if req.method == "GET" || head_only {
                    handler(&req)
                } else {
                    Response::error(405, "only GET and HEAD").with_header("Allow: GET, HEAD".to_string())
                };
                let _ = write_response(conn, &response, head_only);
                close_gently(conn);
                return;
            }
            Err(message) => Response::error(400, message),
        },
        Ok(None) => Response::error(431, format!("request head larger than {MAX_HEAD} bytes")),
        // Timed out, reset, or closed early: nobody to answer.
        Err(_) => return,
    };
    let _ = write_response(conn, &response, false);
    close_gently(conn);
}

/// The request head (up to and including the blank line), `None` if it
/// exceeds `MAX_HEAD`; an error if it does not arrive within
/// `HEAD_TIMEOUT` or the client goes away.
fn read_head(conn: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; 1024];
    let mut filled = 0;
    loop {
        if let Some(end) = find_blank_line(&buf[..filled]) {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if filled == MAX_HEAD {
            return Ok(None);
        }
        if filled == buf.len() {
            buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.set_read_timeout(Some(left))?;
        let n = (&*conn).read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
}

/// The end of the head: the index just past the first CRLF CRLF.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The request line of `head`; header fields are not needed by any
/// endpoint and are skipped.
fn parse(head: &[u8]) -> Result<Request, String> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8".to_string())?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    if !target.starts_with('/') {
        return Err(format!("request target {target:?} is not a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_response(conn: &TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + if head_only { 0 } else { r.body.len() });
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    )?;
    for line in &r.headers {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    (&*conn).write_all(&out)
}

/// Half-close, then read and discard for at most `LINGER` until the client
/// closes too (module header).
fn close_gently(conn: &TcpStream) {
    if conn.shutdown(Shutdown::Write).is_err() || conn.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    while Instant::now() < deadline {
        match (&*conn).read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_and_query() {
        let req = parse(b"GET /debug/pprof/profile?seconds=5&x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("GET", "/debug/pprof/profile")
        );
        assert_eq!(req.param("seconds"), Some("5"));
        assert_eq!(req.param("x"), Some(""));
        assert_eq!(req.param("debug"), None);
        assert!(parse(b"GET /\r\n\r\n").is_err());
        assert!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GET / SPDY/3\r\n\r\n").is_err());
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }
}
