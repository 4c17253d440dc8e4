//! A small HTTP/1.1 server over `gort::net`: one goroutine per connection,
//! written as plain blocking code, answering `Hello, World!` to every GET
//! (the handler, its keep-alive, pipelining and limits: `common/http.rs`).
//!
//! Try it:
//!
//! ```text
//! cargo run --release --example http_hello -- --port 8080
//! curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/again   # one connection
//! wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//! ```
//!
//! `--port 0` picks a free port; either way the server prints
//! `listening on http://127.0.0.1:N/` once bound. It runs until interrupted
//! (Ctrl-C or SIGTERM, whose default action ends the process).

use std::io::{self, Write};
use std::net::SocketAddr;

use gort::net::TcpListener;

#[path = "common/accept.rs"]
mod accept;
#[path = "common/http.rs"]
mod http;

/// The port when `--port` is not given.
const DEFAULT_PORT: u16 = 8080;

fn main() {
    let port = port_arg(DEFAULT_PORT);
    gort::run(move || {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| fail(&format!("bind: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("local_addr: {e}")));
        println!("listening on http://{addr}/");
        // Flushed so that a script reading our stdout through a pipe (where
        // it is block-buffered) learns the port at once.
        io::stdout().flush().unwrap_or_else(|e| fail(&format!("stdout: {e}")));
        // Failed accepts are reported and paced (`common/accept.rs`).
        for conn in accept::accepted(listener.incoming()) {
            gort::go(move || {
                let peer = conn.peer_addr().ok();
                if let Err(e) = http::serve(&conn) {
                    report(peer, &e);
                }
            });
        }
    });
}
/// Report a connection's error, except those that are just a client going
/// away: a reset, a broken pipe, or the idle timeout.
fn report(peer: Option<SocketAddr>, e: &io::Error) {
    use io::ErrorKind::{BrokenPipe, ConnectionReset, TimedOut};
    if !matches!(e.kind(), ConnectionReset | BrokenPipe | TimedOut) {
        eprintln!("connection {peer:?}: {e}");
    }
}

/// The value of `--port N` on the command line, else `default`.
fn port_arg(default: u16) -> u16 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => default,
        [flag, n] if flag == "--port" => n.parse().unwrap_or_else(|_| fail(&format!("bad port {n:?}"))),
        _ => fail("usage: http_hello [--port N]   (N = 0 picks a free port)"),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("http_hello: {msg}");
    std::process::exit(2)
}
