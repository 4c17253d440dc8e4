//! 12: `tcp_echo`, the server side (peers/README.md): bind 127.0.0.1:PORT,
//! print `port N`, echo every connection with a goroutine per connection
//! and a 4096-byte buffer, until SIGTERM or `--lifetime` seconds.

use std::io::{Read, Write};
use std::time::Duration;

use gort::net::TcpListener;

/// Buffer per connection (peers/common `TCP_BUF`).
const TCP_BUF: usize = 4096;

pub fn tcp_echo(args: &[String]) {
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| {
                v.parse().unwrap_or_else(|_| panic!("bad value for {name}: {v}"))
            })
    };
    let port = flag("--port", 0);
    let lifetime = flag("--lifetime", 600);
    let listener = TcpListener::bind(("127.0.0.1", port as u16)).unwrap_or_else(|e| {
        println!("tcp_echo n/a bind_failed:{e}");
        std::process::exit(1)
    });
    println!("port {}", listener.local_addr().expect("local_addr").port());
    std::io::stdout().flush().expect("stdout");
    gort::go(move || {
        gort::time::sleep(Duration::from_secs(lifetime));
        eprintln!("tcp_echo: lifetime reached, exiting");
        std::process::exit(0);
    });
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
