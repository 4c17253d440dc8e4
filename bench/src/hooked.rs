//! `hooked_http` (gort only; issue 24): 1,000 goroutines each make 5 HTTP
//! GETs with `ureq` (its default transport: std::net, which the `hook-io`
//! feature parks on the netpoller), next to the same 5,000 requests made
//! over `gort::net` (a fresh connection each), both against an in-process
//! `http_hello`-style server on `gort::net`. Reported: each side's seconds
//! and peak OS threads as info lines, then the ureq side's seconds.
//!
//! Built only with the bench's `hook-io` feature
//! (`cargo run --release -p gort-bench --features hook-io -- hooked_http`):
//! with it every benchmark of the binary runs hooked, so the other numbers
//! come from the default build.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gort::net::{TcpListener, TcpStream};

use crate::report::{check, emit, info};

const NAME: &str = "hooked_http";
const GOROUTINES: usize = 1000;
const REQUESTS: usize = 5;
const BODY: &str = "Hello, World!\n";

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

pub fn hooked_http() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    gort::go(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => drop(gort::go(move || serve(conn))),
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let url = format!("http://{addr}/");
    let ureq = measure(move || {
        for _ in 0..REQUESTS {
            let body = ureq::get(&url).call().expect("GET").into_string().expect("body");
            check(NAME, body == BODY, || format!("ureq got {body:?}"));
        }
    });
    let net = measure(move || {
        for _ in 0..REQUESTS {
            let mut s = TcpStream::connect(addr).expect("connect");
            (&s).write_all(b"GET / HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut response = String::new();
            s.read_to_string(&mut response).expect("read");
            check(NAME, response.ends_with(BODY), || format!("gort::net got {response:?}"));
        }
    });
    let procs = gort::runtime::procs();
    info(
        NAME,
        format!("procs {procs}, {GOROUTINES} goroutines x {REQUESTS} GETs each"),
    );
    info(
        NAME,
        format!("ureq (hook-io): {:.3} s, peak {} OS threads", ureq.0, ureq.1),
    );
    info(NAME, format!("gort::net: {:.3} s, peak {} OS threads", net.0, net.1));
    info(NAME, format!("time ratio ureq/gort::net: {:.2}", ureq.0 / net.0));
    emit(NAME, ureq.0, "s");
}

/// Run `client` on `GOROUTINES` goroutines: (seconds, peak OS threads).
fn measure(client: impl Fn() + Send + Sync + 'static) -> (f64, usize) {
    let client = Arc::new(client);
    let peak = Arc::new(AtomicUsize::new(os_threads()));
    let start = Instant::now();
    let hs: Vec<_> = (0..GOROUTINES)
        .map(|_| {
            let (client, peak) = (Arc::clone(&client), Arc::clone(&peak));
            gort::go(move || {
                client();
                peak.fetch_max(os_threads(), Ordering::Relaxed);
            })
        })
        .collect();
    for h in hs {
        h.join().expect("client goroutine");
    }
    (start.elapsed().as_secs_f64(), peak.load(Ordering::Relaxed))
}

/// Answer every GET on `conn` with `BODY`, keep-alive unless the request
/// says `Connection: close`.
fn serve(mut conn: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let close = head.contains("connection: close");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{BODY}",
                BODY.len(),
                if close { "Connection: close\r\n" } else { "" }
            );
            if conn.write_all(response.as_bytes()).is_err() || close {
                return;
            }
            buf.drain(..end + 4);
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
