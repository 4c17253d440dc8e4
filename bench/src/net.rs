//! The network benchmarks (peers/README.md): the servers `tcp_echo` and
//! `http_hello` (bind 127.0.0.1:PORT, print `port N`, a goroutine per
//! connection, until SIGTERM or `--lifetime` seconds), and `idle_conns`,
//! which starts the peers' loadgen itself and measures memory per idle
//! connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gort::net::TcpListener;
use gort::sync::WaitGroup;

use crate::report::{check, emit, info, not_available, rss_bytes};

/// The connection handler of `examples/http_hello.rs`: the benchmark
/// measures the server as a gort user writes it.
#[path = "../../examples/common/http.rs"]
mod http;

/// Buffer per connection (peers/common `TCP_BUF`).
const TCP_BUF: usize = 4096;
/// Connections the loadgen holds open in `idle_conns`.
const IDLE_CONNS: u64 = 8_000;
/// How long the held connections settle before RSS is read.
const IDLE_SETTLE: Duration = Duration::from_millis(200);

/// The servers' flags: `--port` (0: any) and `--lifetime` seconds.
fn server_flags(args: &[String]) -> (u16, u64) {
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| {
                v.parse().unwrap_or_else(|_| panic!("bad value for {name}: {v}"))
            })
    };
    (flag("--port", 0) as u16, flag("--lifetime", 600))
}

/// Bind 127.0.0.1:`port`, print `port N`, and end the process after
/// `lifetime` seconds.
fn listen_server(name: &str, port: u16, lifetime: u64) -> TcpListener {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        println!("{name} n/a bind_failed:{e}");
        std::process::exit(1)
    });
    println!("port {}", listener.local_addr().expect("local_addr").port());
    std::io::stdout().flush().expect("stdout");
    let name = name.to_owned();
    gort::go(move || {
        gort::time::sleep(Duration::from_secs(lifetime));
        eprintln!("{name}: lifetime reached, exiting");
        std::process::exit(0);
    });
    listener
}

/// 11: echo every connection.
pub fn tcp_echo(args: &[String]) {
    let (port, lifetime) = server_flags(args);
    let listener = listen_server("tcp_echo", port, lifetime);
    for conn in listener.incoming() {
        // A failed accept (out of descriptors, say) or a connection reset
        // before it was set up costs that connection, not the server; the
        // pause keeps a persistent failure from spinning.
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("tcp_echo: accept: {e}");
                gort::time::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if conn.set_nodelay(true).is_err() {
            continue;
        }
        gort::go(move || {
            let mut buf = vec![0u8; TCP_BUF];
            loop {
                let n = match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
}

/// 13: HTTP/1.1 keep-alive, `Hello, World!` (the example's handler).
pub fn http_hello(args: &[String]) {
    let (port, lifetime) = server_flags(args);
    let listener = listen_server("http_hello", port, lifetime);
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                gort::go(move || {
                    let _ = http::serve(&conn);
                });
            }
            Err(e) => {
                eprintln!("http_hello: accept: {e}");
                gort::time::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// 12: RSS growth per idle connection: a goroutine per connection parked
/// in a read into a 4 KiB heap buffer, while the peers' loadgen (a child
/// process) holds IDLE_CONNS connections open.
pub fn idle_conns() {
    let Some(loadgen) = std::env::var_os("PEERS_LOADGEN") else {
        not_available("idle_conns", "no_loadgen");
    };
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| {
        check("idle_conns", false, || format!("bind: {e}"));
        unreachable!()
    });
    let port = listener.local_addr().expect("local_addr").port();
    let seen = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let handlers = Arc::new(WaitGroup::new());
    {
        let (seen, bytes, handlers) = (Arc::clone(&seen), Arc::clone(&bytes), Arc::clone(&handlers));
        gort::go(move || {
            for conn in listener.incoming() {
                let conn = conn.unwrap_or_else(|e| {
                    check("idle_conns", false, || format!("accept: {e}"));
                    unreachable!()
                });
                handlers.add(1);
                let (seen, bytes, handlers) = (Arc::clone(&seen), Arc::clone(&bytes), Arc::clone(&handlers));
                gort::go(move || {
                    let mut buf = vec![0u8; TCP_BUF];
                    let mut total = 0u64;
                    loop {
                        let n = (&conn).read(&mut buf).unwrap_or(0);
                        if n > 0 && total == 0 {
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                        total += n as u64;
                        if n == 0 {
                            break;
                        }
                    }
                    bytes.fetch_add(total, Ordering::Relaxed);
                    handlers.done();
                });
            }
        });
    }
    let before = rss_bytes();
    let mut child = Command::new(loadgen)
        .args(["--idle", &IDLE_CONNS.to_string(), "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            check("idle_conns", false, || format!("start loadgen: {e}"));
            unreachable!()
        });
    // The loadgen's stdout and exit are waited for on plain threads: a pipe
    // read and a waitpid are blocking calls gort::net does not cover.
    let stdout = child.stdout.take().expect("piped stdout");
    let said = std::thread::spawn(move || {
        let mut lines = String::new();
        let _ = BufReader::new(stdout).read_line(&mut lines);
        lines
    });
    while seen.load(Ordering::Relaxed) < IDLE_CONNS {
        if let Ok(Some(status)) = child.try_wait() {
            check("idle_conns", false, || format!("loadgen exited early ({status})"));
        }
        gort::time::sleep(Duration::from_millis(1));
    }
    gort::time::sleep(IDLE_SETTLE);
    let after = rss_bytes();
    drop(child.stdin.take());
    handlers.wait();
    let status = gort::blocking(|| child.wait()).expect("wait for the loadgen");
    let said = said.join().expect("loadgen stdout reader");
    check("idle_conns", status.success() && said == "ready\n", || {
        format!("loadgen: {status}, stdout {said:?}")
    });
    let (seen, bytes) = (seen.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
    check("idle_conns", seen == IDLE_CONNS && bytes == IDLE_CONNS, || {
        format!("seen={seen} bytes={bytes} want {IDLE_CONNS}")
    });
    info(
        "idle_conns",
        format!("rss_before={before} rss_after={after} n={IDLE_CONNS}"),
    );
    emit(
        "idle_conns",
        after.saturating_sub(before) as f64 / IDLE_CONNS as f64,
        "bytes/connection",
    );
}
