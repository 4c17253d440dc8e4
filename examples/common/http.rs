//! The HTTP/1.1 connection handler of the `http_hello` example, shared by
//! `#[path]` with gort-bench's `http_hello` (the peers suite measures the
//! server as users write it).
//!
//! One goroutine per connection, written as plain blocking code,
//! answering `Hello, World!` to every GET. Requests are parsed with the
//! `httparse` crate; the rest is here:
//!
//! - keep-alive: HTTP/1.1 keeps the connection unless the client sends
//!   `Connection: close`; HTTP/1.0 closes it unless the client sends
//!   `Connection: keep-alive`;
//! - pipelining and requests split across reads: bytes are buffered and
//!   parsed until `httparse` reports a complete head; every complete request
//!   buffered is answered, and the answers go out in one write;
//! - limits: a request head larger than `MAX_HEAD` bytes or with more than
//!   `MAX_HEADERS` fields gets 431, a malformed one 400 (both then close);
//!   a request body (given by `Content-Length`) is read and discarded;
//!   chunked bodies are not supported (501, close).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gort::net::TcpStream;

/// The largest request head (request line and header fields) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The most header fields accepted in one request.
const MAX_HEADERS: usize = 64;
/// Read buffer of a new connection; it doubles up to `MAX_HEAD` only for
/// heads that need it, so that idle connections stay small.
const INITIAL_BUF: usize = 4096;
/// How long a connection may wait for the next byte of a request before it
/// is closed, so that abandoned connections do not stay forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing connection keeps reading after the last response
/// (see `close_gently`).
const LINGER: Duration = Duration::from_millis(500);

const BODY: &[u8] = b"Hello, World!\n";

/// Serve requests on `conn` until the client closes it or a response says
/// `Connection: close`.
pub fn serve(conn: &TcpStream) -> io::Result<()> {
    // Each batch of responses is complete when written: waiting for more
    // (Nagle) would only add a round trip's latency.
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = vec![0u8; INITIAL_BUF];
    // `buf[..filled]` holds bytes read and not yet consumed.
    let mut filled = 0;
    // Bytes of the last request's body not yet read (they are discarded).
    let mut body_left: u64 = 0;
    let mut out = Vec::with_capacity(256);
    loop {
        let date = http_date(SystemTime::now());
        let mut pos = 0;
        let mut close = false;
        // Answer every request already complete in the buffer (pipelining).
        loop {
            let skip = body_left.min((filled - pos) as u64);
            pos += skip as usize;
            body_left -= skip;
            if body_left > 0 {
                break;
            }
            match parse(&buf[pos..filled]) {
                Parsed::Partial => break,
                Parsed::Request(req) => {
                    pos += req.head_len;
                    body_left = req.body_len;
                    respond(&mut out, &date, &req);
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                Parsed::Bad(status) => {
                    error_response(&mut out, &date, status);
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            (&*conn).write_all(&out)?;
            out.clear();
        }
        if close {
            close_gently(conn);
            return Ok(());
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == buf.len() {
            // Full, and still no complete head in it.
            if buf.len() >= MAX_HEAD {
                error_response(&mut out, &date, HEAD_TOO_LARGE);
                (&*conn).write_all(&out)?;
                close_gently(conn);
                return Ok(());
            }
            buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
        }
        let n = (&*conn).read(&mut buf[filled..])?;
        if n == 0 {
            // The client closed. Leftover bytes would be a truncated
            // request, which nobody is waiting to hear about.
            return Ok(());
        }
        filled += n;
    }
}

/// A status line's code and reason, which is also the body of an error.
type Status = (u16, &'static str);

const BAD_REQUEST: Status = (400, "Bad Request");
const METHOD_NOT_ALLOWED: Status = (405, "Method Not Allowed");
const HEAD_TOO_LARGE: Status = (431, "Request Header Fields Too Large");
const NOT_IMPLEMENTED: Status = (501, "Not Implemented");

/// The outcome of parsing the start of the buffered bytes.
enum Parsed {
    /// The head is not complete yet: read more.
    Partial,
    Request(Request),
    /// Answer with this status and close.
    Bad(Status),
}

/// What the response to a request depends on.
struct Request {
    /// Bytes of the request line and header fields, including the blank line.
    head_len: usize,
    /// `Content-Length` (0 when absent).
    body_len: u64,
    method: Method,
    /// Whether the connection stays open after the response.
    keep_alive: bool,
    /// The request is HTTP/1.0, which keeps the connection only when the
    /// response says `Connection: keep-alive`.
    http10: bool,
}

enum Method {
    Get,
    Head,
    Other,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(HEAD_TOO_LARGE),
        Err(_) => return Parsed::Bad(BAD_REQUEST),
    };
    let http10 = req.version == Some(0);
    let mut has_host = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut body_len = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            has_host = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            // A comma-separated list of case-insensitive options.
            for option in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                conn_close |= option.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // Repeated Content-Length fields must agree, or the framing of
            // the following requests would be a guess.
            match (content_length(h.value), body_len) {
                (Some(n), None) => body_len = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Parsed::Bad(BAD_REQUEST),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad(NOT_IMPLEMENTED);
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host must be refused.
    if !http10 && !has_host {
        return Parsed::Bad(BAD_REQUEST);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    Parsed::Request(Request {
        head_len,
        body_len: body_len.unwrap_or(0),
        method,
        keep_alive: !conn_close && (!http10 || conn_keep_alive),
        http10,
    })
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces).
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Append the response to `req` to `out`.
fn respond(out: &mut Vec<u8>, date: &str, req: &Request) {
    let (status, body, allow) = match req.method {
        Method::Get | Method::Head => ((200, "OK"), BODY, ""),
        Method::Other => (
            METHOD_NOT_ALLOWED,
            b"Method Not Allowed\n".as_slice(),
            "Allow: GET, HEAD\r\n",
        ),
    };
    let connection = match (req.keep_alive, req.http10) {
        (false, _) => "Connection: close\r\n",
        (true, true) => "Connection: keep-alive\r\n",
        (true, false) => "",
    };
    head(out, status, date, body.len(), &[allow, connection]);
    // A HEAD response has the headers of the GET one and no body.
    if !matches!(req.method, Method::Head) {
        out.extend_from_slice(body);
    }
}

/// Append an error response with `status`, after which the connection closes.
fn error_response(out: &mut Vec<u8>, date: &str, (code, reason): Status) {
    head(out, (code, reason), date, reason.len() + 1, &["Connection: close\r\n"]);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Append a status line and header fields; `extra` are complete header
/// lines (each ending in CRLF), or empty.
fn head(out: &mut Vec<u8>, (code, reason): Status, date: &str, body_len: usize, extra: &[&str]) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {body_len}\r\n"
    );
    for line in extra {
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Close `conn` after its last response without losing that response.
///
/// Closing a socket whose receive queue still holds bytes (say, requests
/// pipelined after a `Connection: close` one) makes the kernel send a
/// reset, and the client may then lose the response before reading it. So
/// first half-close, which the client reads as the end of the response, and
/// read (and discard) until the client closes its side too, for at most
/// about `LINGER` (Go's net/http waits in the same way).
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

/// `time` as an HTTP date (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 (a Thursday) to a civil date: Howard Hinnant's
    // `civil_from_days`, on years that start on March 1st so that the leap
    // day comes last.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
