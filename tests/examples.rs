//! The examples as their users run them. The network ones against clients
//! written elsewhere: `http_hello` against `curl` (keep-alive over one
//! connection, an HTTP/1.0 request, and `Connection: close`), and `echo`
//! against std's blocking `TcpStream` on plain threads. The tour (`--quick`:
//! the same code on a hundredth of the work) under each documented switch
//! of the environment: `GORTTRACE`, `GORTDEBUG`'s `schedtrace` with
//! `scheddetail`, `chaos` and `deadlock=0`, and `GORT_PROCS`; `echo` under
//! each too.
//!
//! Cargo gives integration tests the paths of binaries, not of examples,
//! so the test builds the examples itself with the cargo running it, into
//! the target directory and profile of this test binary (both read from
//! its own path), then runs one with `--port 0` and reads the port from the
//! `listening on ...` line it prints.
//!
//! `curl` must be installed (`.ci/run` installs it): without it the HTTP
//! tests fail rather than pass without checking anything.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::examples::{Server, examples_dir};

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

/// SIGTERM shuts echo down as a Go server does: its context is cancelled,
/// the accept loop ends, each connection's blocked read ends at the
/// deadline the cancellation sets, and the process exits 0.
#[test]
fn echo_shuts_down_on_sigterm_closing_its_connections() {
    let server = Server::start("echo");
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connecting to echo");
    idle.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    idle.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    // The connection now sits idle, its handler parked in a read.
    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "echo ended with {status}");
    let mut rest = Vec::new();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        idle.read_to_end(&mut rest).expect("the server closed the connection"),
        0
    );
}

#[test]
fn tour_runs_without_switches_and_leaves_its_trace() {
    let run = Tour::run(&[]);
    run.assert_finished();
    assert!(run.dir.join("target/tour-trace.json").is_file(), "no trace of its own");
}

/// A program's own `trace::start` under `GORTTRACE` gets an error, not a
/// panic; the tour takes it as "already traced", and the whole tour is in
/// the `GORTTRACE` file, finished at exit.
#[test]
fn tour_runs_under_gorttrace() {
    let dir = scratch_dir("gorttrace");
    let path = dir.join("whole.json");
    let run = Tour::run(&[("GORTTRACE", path.to_str().unwrap())]);
    run.assert_finished();
    assert!(
        run.stdout.contains("not tracing into target/tour-trace.json"),
        "{}",
        run.stdout
    );
    assert!(!run.dir.join("target/tour-trace.json").exists(), "traced twice");
    let json = std::fs::read_to_string(&path).expect("the GORTTRACE file");
    assert!(json.starts_with("{\"traceEvents\":["), "not a trace");
    assert!(
        json.trim_end().ends_with("\"dropped_events\":0}}"),
        "unfinished or lossy: ...{}",
        &json[json.len().saturating_sub(200)..]
    );
    // Traced from the first runtime to the last: the tour did not stop
    // the trace it had not started.
    for runtime in ["gort (runtime 1)", "spinner (runtime 3)", "dump (runtime 5)"] {
        assert!(
            json.contains(&format!("{{\"name\":\"{runtime}\"}}")),
            "{runtime} missing"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tour_runs_under_schedtrace_and_scheddetail() {
    let run = Tour::run(&[("GORTDEBUG", "schedtrace=50,scheddetail=1")]);
    run.assert_finished();
    assert!(run.stderr.lines().any(|l| l.starts_with("SCHED ")), "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("  P0: status=")),
        "{}",
        run.stderr
    );
}

/// Seeds under which the tour failed its check of alternating turns, which
/// the chaos scheduler breaks on purpose.
#[test]
fn tour_runs_under_the_chaos_scheduler() {
    for seed in ["10", "14"] {
        let run = Tour::run(&[("GORTDEBUG", &format!("chaos={seed}"))]);
        run.assert_finished();
    }
}

#[test]
fn tour_runs_with_gort_procs() {
    for procs in ["1", "3"] {
        let run = Tour::run(&[("GORT_PROCS", procs)]);
        run.assert_finished();
        let row = format!("Ps (procs)             {procs}\n");
        assert!(run.stdout.contains(&row), "no {row:?} in:\n{}", run.stdout);
    }
}

#[test]
fn tour_runs_without_the_deadlock_check() {
    Tour::run(&[("GORTDEBUG", "deadlock=0")]).assert_finished();
}

/// A run of `tour --quick` in a directory of its own (it writes
/// `target/tour-trace.json` there).
struct Tour {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    dir: PathBuf,
}

impl Tour {
    /// Run the tour with `env` added; a tour still running after a minute
    /// is killed and fails the test (a hang guard: it takes seconds).
    fn run(env: &[(&str, &str)]) -> Tour {
        let name: String = env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let dir = scratch_dir(&name);
        let child = Command::new(examples_dir().join("tour"))
            .arg("--quick")
            .current_dir(&dir)
            .env_remove("GORTTRACE")
            .env_remove("GORTDEBUG")
            .env_remove("GORT_PROCS")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the tour");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
            // SAFETY: kill has no memory-safety preconditions; the child is
            // not reaped yet (its waiter still waits), so the pid is its.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("hung: the tour under {name} not finished after a minute");
        };
        let out = out.expect("waiting for the tour");
        Tour {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        }
    }

    /// It passed every check of its own, and gort had nothing to warn about.
    fn assert_finished(&self) {
        assert!(
            self.status.success() && self.stdout.contains("tour finished: every check passed"),
            "tour failed ({}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        for var in ["GORTDEBUG", "GORT_PROCS", "GORTTRACE"] {
            let warning = format!("gort: {var}=");
            assert!(!self.stderr.contains(&warning), "a warning:\n{}", self.stderr);
        }
    }
}

impl Drop for Tour {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new empty directory for this process named after `name`.
fn scratch_dir(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = std::env::temp_dir().join(format!("gort-examples-{}-{safe}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// The echo server under each switch the tour is run under (below).
#[test]
fn echo_serves_under_every_switch() {
    let dir = scratch_dir("echo-switches");
    let trace = dir.join("trace.json");
    let switches = [
        ("GORTTRACE", trace.to_str().unwrap()),
        ("GORTDEBUG", "schedtrace=50,scheddetail=1"),
        ("GORTDEBUG", "chaos=10"),
        ("GORT_PROCS", "1"),
        ("GORTDEBUG", "deadlock=0"),
    ];
    for (var, value) in switches {
        let server = Server::start_with_env("echo", &[(var, value)]);
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connecting to echo");
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        for m in 0..10 {
            let msg = format!("{var}={value} message {m}\n");
            conn.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            conn.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
}
