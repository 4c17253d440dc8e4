//! The network examples as their users run them, against clients written
//! elsewhere: `http_hello` against `curl` (keep-alive over one connection,
//! an HTTP/1.0 request, and `Connection: close`), and `echo` against
//! std's blocking `TcpStream` on plain threads.
//!
//! Cargo gives integration tests the paths of binaries, not of examples,
//! so the test builds the examples itself with the cargo running it, into
//! the target directory and profile of this test binary (both read from
//! its own path), then runs one with `--port 0` and reads the port from the
//! `listening on ...` line it prints.
//!
//! `curl` must be installed (`.ci/run` installs it): without it the HTTP
//! tests fail rather than pass without checking anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const HELLO: &str = "Hello, World!\n";

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start_http();
    let out = curl(&[], &[&server.url("a"), &server.url("b"), &server.url("c")]);
    assert_eq!(
        transfers(&out.stdout),
        [(HELLO, 1), (HELLO, 0), (HELLO, 0)],
        "expected three answers on one connection; curl stderr:\n{}",
        out.stderr
    );
}

#[test]
fn http10_request_closes_the_connection() {
    let server = Server::start_http();
    let out = curl(&["--http1.0", "-i"], &[&server.url("a"), &server.url("b")]);
    assert_closed_after_each(&out);
}

#[test]
fn connection_close_request_closes_the_connection() {
    let server = Server::start_http();
    let out = curl(
        &["-i", "-H", "Connection: close"],
        &[&server.url("a"), &server.url("b")],
    );
    assert_closed_after_each(&out);
}

#[test]
fn echo_serves_concurrent_clients_until_they_hang_up() {
    const CLIENTS: usize = 16;
    const MESSAGES: usize = 50;
    let server = Server::start("echo");
    let port = server.port;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to echo");
                // A server that stops answering fails the test, not hangs it.
                conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                for m in 0..MESSAGES {
                    let msg = format!("client {c} message {m}\n").repeat(1 + m % 5);
                    conn.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0; msg.len()];
                    conn.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes(), "client {c} message {m}");
                }
                // Half-closing ends the echo: the server closes its side too.
                conn.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                conn.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "client {c}: {} stray bytes", rest.len());
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
}

/// Two requests made with `-i` were answered with `Connection: close`, so
/// curl opened a connection for each.
fn assert_closed_after_each(out: &CurlOutput) {
    let transfers = transfers(&out.stdout);
    assert_eq!(transfers.len(), 2, "expected two transfers:\n{}", out.stdout);
    for (response, new_connections) in transfers {
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "not a 200:\n{response}");
        assert!(
            response.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "no `Connection: close` in:\n{response}"
        );
        assert!(response.ends_with(HELLO), "wrong body in:\n{response}");
        assert_eq!(new_connections, 1, "curl reused a closed connection:\n{}", out.stderr);
    }
}

/// What curl printed after each transfer (`WRITE_OUT`) tells whether it
/// opened a connection for it or reused one. (Its `-v` messages about reuse
/// change wording between versions; `num_connects` does not.)
const WRITE_OUT: &str = "[new connections: %{num_connects}]\n";

/// curl's stdout as (response, new connections) per transfer.
fn transfers(stdout: &str) -> Vec<(&str, u32)> {
    let mut transfers = Vec::new();
    let mut rest = stdout;
    while let Some((response, after)) = rest.split_once("[new connections: ") {
        let (n, after) = after.split_once("]\n").expect("curl's --write-out line");
        transfers.push((response, n.parse().expect("num_connects")));
        rest = after;
    }
    assert!(rest.is_empty(), "output after the last transfer: {rest:?}");
    transfers
}

struct CurlOutput {
    stdout: String,
    /// `-v` output, for failure messages.
    stderr: String,
}

/// Run `curl -sS -v ARGS URLS`, which must succeed.
fn curl(args: &[&str], urls: &[&str]) -> CurlOutput {
    let Output { status, stdout, stderr } = Command::new("curl")
        // --max-time: a server that stops answering fails the test, not hangs it.
        .args(["-sS", "-v", "--max-time", "10", "--write-out", WRITE_OUT])
        .args(args)
        .args(urls)
        .output()
        .expect("running curl");
    let out = CurlOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(status.success(), "curl failed ({status}):\n{}", out.stderr);
    out
}

/// A running example server, killed when dropped, so also when a test
/// panics.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `http_hello`, once curl is known to be there: a missing curl is
    /// reported as such rather than after building and starting the server.
    fn start_http() -> Server {
        if let Err(e) = Command::new("curl").arg("--version").stdout(Stdio::null()).status() {
            panic!(
                "cannot run curl ({e}); these tests need it: install curl (`apt-get install -y curl`; .ci/run does)"
            );
        }
        Server::start("http_hello")
    }

    /// Example `name` on a free port, which it prints as `listening on
    /// [http://]127.0.0.1:N[/]`.
    fn start(name: &str) -> Server {
        let mut child = Command::new(examples_dir().join(name))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        // From here on, a panic kills the child.
        let mut server = Server { child, port: 0 };
        let mut line = String::new();
        // Returns at the first line, or at EOF if the server exits first.
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading {name}'s stdout: {e}"));
        server.port = line
            .trim_end()
            .strip_prefix("listening on ")
            .map(|addr| addr.strip_prefix("http://").unwrap_or(addr))
            .map(|addr| addr.strip_suffix('/').unwrap_or(addr))
            .and_then(|addr| addr.strip_prefix("127.0.0.1:"))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{name} printed {line:?}, not `listening on [http://]127.0.0.1:N[/]`"));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Errors mean the server already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of the examples, built once for all tests.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test is `<target dir>/<profile dir>/deps/examples-HASH`.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("profile directory under the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("odd profile directory {}", profile_dir.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "http_hello", "--example", "echo"])
            .args(["--profile", profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of the examples failed: {status}");
        profile_dir.join("examples")
    })
}
