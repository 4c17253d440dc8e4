//! The `http_hello` example against a real HTTP client, `curl`: keep-alive
//! over one connection, an HTTP/1.0 request, and `Connection: close`.
//!
//! Cargo gives integration tests the paths of binaries, not of examples,
//! so the test builds the example itself with the cargo running it, into
//! the target directory and profile of this test binary (both read from
//! its own path), then runs it with `--port 0` and reads the port from the
//! line it prints.
//!
//! `curl` must be installed (`.ci/run` installs it): without it the tests
//! fail rather than pass without checking anything.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

const HELLO: &str = "Hello, World!\n";

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start();
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
    let server = Server::start();
    let out = curl(&["--http1.0", "-i"], &[&server.url("a"), &server.url("b")]);
    assert_closed_after_each(&out);
}

#[test]
fn connection_close_request_closes_the_connection() {
    let server = Server::start();
    let out = curl(
        &["-i", "-H", "Connection: close"],
        &[&server.url("a"), &server.url("b")],
    );
    assert_closed_after_each(&out);
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

/// A running `http_hello`, killed when dropped, so also when a test panics.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        // Checked first, so that a missing curl is reported as such rather
        // than after building and starting the server.
        if let Err(e) = Command::new("curl").arg("--version").stdout(Stdio::null()).status() {
            panic!(
                "cannot run curl ({e}); these tests need it: install curl (`apt-get install -y curl`; .ci/run does)"
            );
        }
        let mut child = Command::new(example_binary())
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting http_hello");
        let stdout = child.stdout.take().expect("piped stdout");
        // From here on, a panic kills the child.
        let mut server = Server { child, port: 0 };
        let mut line = String::new();
        // Returns at the first line, or at EOF if the server exits first.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading http_hello's stdout");
        server.port = line
            .trim_end()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("http_hello printed {line:?}, not `listening on http://127.0.0.1:N/`"));
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

/// The example, built once for all tests.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test is `<target dir>/<profile dir>/deps/http_curl-HASH`.
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
            .args(["build", "--quiet", "--example", "http_hello", "--profile", profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build --example http_hello failed: {status}");
        profile_dir.join("examples").join("http_hello")
    })
}
