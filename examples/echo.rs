//! An echo server over `gort::net`: one goroutine per connection, each
//! writing back whatever it reads, in plain blocking style. While a
//! connection waits for data its goroutine is parked, not its thread, so a
//! few threads serve any number of idle connections.
//!
//! Try it:
//!
//! ```text
//! cargo run --release --example echo              # listens on 127.0.0.1:7000
//! nc 127.0.0.1 7000                               # type lines; they come back
//! cargo run --release --example echo -- --port 0  # any free port, printed
//! ```
//!
//! Ctrl-C or SIGTERM shuts it down the way a Go server does it: the signal
//! (`gort::signal::notify`, Go's `signal.NotifyContext`) cancels the
//! server's `Context`; cancellation closes the listener, so the accept loop
//! ends, and moves every connection's read deadline to now
//! (`context::after_func`, Go's `context.AfterFunc`), so each handler's
//! blocked read returns and the goroutine ends; `main` waits for them all
//! (a `WaitGroup`) and exits with status 0.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use gort::context::{self, Context};
use gort::net::{TcpListener, TcpStream};
use gort::signal::{SIGINT, SIGTERM};
use gort::sync::WaitGroup;

#[path = "common/accept.rs"]
mod accept;

/// The port when `--port` is not given.
const DEFAULT_PORT: u16 = 7000;

fn main() {
    let port = port_arg(DEFAULT_PORT);
    gort::run(move || {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| fail(&format!("bind: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("local_addr: {e}")));
        let listener = Arc::new(listener);
        let (ctx, cancel) = Context::background().with_cancel();
        let signals = gort::signal::notify(&[SIGINT, SIGTERM]);
        gort::go(move || {
            if let Ok(signal) = signals.recv() {
                eprintln!("echo: {signal}: shutting down");
                cancel.cancel();
            }
        });
        let stop_accepting = Arc::clone(&listener);
        context::after_func(&ctx, move || stop_accepting.close());
        println!("listening on {addr}");
        // Flushed so that a script reading our stdout through a pipe (where
        // it is block-buffered) learns the port at once.
        io::stdout().flush().unwrap_or_else(|e| fail(&format!("stdout: {e}")));
        let handlers = Arc::new(WaitGroup::new());
        for conn in accept::accepted(listener.incoming()) {
            handlers.go(serve(&ctx, conn));
        }
        handlers.wait();
        eprintln!("echo: every connection closed");
    });
}

/// The handler of one connection, which `ctx`'s cancellation ends.
fn serve(ctx: &Context, conn: TcpStream) -> impl FnOnce() + Send + 'static {
    let conn = Arc::new(conn);
    let to_end = Arc::clone(&conn);
    let at_shutdown = context::after_func(ctx, move || {
        let _ = to_end.set_read_deadline(Some(Instant::now()));
    });
    move || {
        let peer = conn.peer_addr().ok();
        if let Err(e) = echo(&conn) {
            report(peer, &e);
        }
        at_shutdown.stop();
    }
}

fn echo(conn: &TcpStream) -> io::Result<()> {
    // Echoes are small and interactive: send each as soon as it is read.
    conn.set_nodelay(true)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = (&*conn).read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        (&*conn).write_all(&buf[..n])?;
    }
}

/// Report a connection's error, except a reset by the peer, which is just a
/// client hanging up abruptly.
fn report(peer: Option<SocketAddr>, e: &io::Error) {
    // A reset or a vanished peer is the peer's business; a timed-out read
    // is the shutdown's deadline.
    if !matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut
    ) {
        eprintln!("connection {peer:?}: {e}");
    }
}

/// The value of `--port N` on the command line, else `default`.
fn port_arg(default: u16) -> u16 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => default,
        [flag, n] if flag == "--port" => n.parse().unwrap_or_else(|_| fail(&format!("bad port {n:?}"))),
        _ => fail("usage: echo [--port N]   (N = 0 picks a free port)"),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("echo: {msg}");
    std::process::exit(2)
}
