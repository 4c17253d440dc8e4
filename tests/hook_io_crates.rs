//! The `hook-io` feature with real clients that know nothing of gort:
//! `ureq` (std::net inside) against the `http_hello` example, the `redis`
//! crate's sync API against a real `redis-server`, and the system libcurl
//! (its own non-blocking sockets, waiting in `poll`) through the `curl`
//! crate — each from 1,000 goroutines, every result checked, and the
//! process's OS threads counted at their peak (sampled by the goroutines
//! themselves after each request).
//!
//! Each runs in a child process of its own, so that the threads counted
//! are its own. The Redis test needs the server `tools/services.sh start`
//! runs (`GORT_REDIS_URL`, as `tools/services.sh env` prints it): without
//! one it says so and skips, except under `CI=true`, where it fails.
#![cfg(feature = "hook-io")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::examples::Server;

const GOROUTINES: usize = 1000;
const REQUESTS: usize = 5;
const PROCS: usize = 2;
/// Threads beyond the Ps the runtime may have: sysmon, the spawner, the
/// SIGQUIT watcher, and Ms that sysmon started for Ps whose thread slept
/// briefly in a futex (an allocator's or libcurl's lock under 1,000
/// goroutines: up to 10 threads beyond the Ps seen in libcurl's runs, 4-6 in
/// the others). Blocked socket calls holding threads would take hundreds.
const SPARE_THREADS: usize = 12;

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Run `body(i)` on `GOROUTINES` goroutines of a runtime with `PROCS` Ps;
/// fail if the process ever had more than `PROCS + SPARE_THREADS` threads
/// beyond those it had before the runtime.
fn on_goroutines(what: &str, body: impl Fn(usize) + Send + Sync + 'static) {
    let base = os_threads();
    let peak = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let rt = gort::Runtime::builder().procs(PROCS).build().unwrap();
    let start = std::time::Instant::now();
    {
        let peak = Arc::clone(&peak);
        rt.block_on(move || {
            let hs: Vec<_> = (0..GOROUTINES)
                .map(|i| {
                    let (body, peak) = (Arc::clone(&body), Arc::clone(&peak));
                    gort::go(move || {
                        body(i);
                        peak.fetch_max(os_threads(), Ordering::Relaxed);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
    }
    let extra = peak.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!(
        "{what}: {GOROUTINES} goroutines done in {:?}, peak {extra} threads beyond the {base} before",
        start.elapsed()
    );
    assert!(
        extra <= PROCS + SPARE_THREADS,
        "{what}: {extra} OS threads with {PROCS} Ps: blocked calls held threads"
    );
}

#[test]
fn ureq_from_a_thousand_goroutines() {
    let server = http_hello();
    let url = server.as_ref().map_or_else(String::new, |s| s.url(""));
    let Some((status, stderr)) = in_child_with_url("ureq_from_a_thousand_goroutines", &url, || {
        let url = std::env::var("GORT_TEST_URL").unwrap();
        on_goroutines("ureq", move |_| {
            for _ in 0..REQUESTS {
                let body = ureq::get(&url).call().unwrap().into_string().unwrap();
                assert_eq!(body, "Hello, World!\n");
            }
        });
    }) else {
        return;
    };
    eprint!("{stderr}");
    assert!(status.success(), "child failed: {status}");
}

#[test]
fn libcurl_from_a_thousand_goroutines() {
    let server = http_hello();
    let url = server.as_ref().map_or_else(String::new, |s| s.url(""));
    let Some((status, stderr)) = in_child_with_url("libcurl_from_a_thousand_goroutines", &url, || {
        let url = std::env::var("GORT_TEST_URL").unwrap();
        curl::init();
        on_goroutines("libcurl", move |_| {
            let mut easy = curl::easy::Easy::new();
            easy.url(&url).unwrap();
            for _ in 0..REQUESTS {
                let mut body = Vec::new();
                {
                    let mut t = easy.transfer();
                    t.write_function(|d| {
                        body.extend_from_slice(d);
                        Ok(d.len())
                    })
                    .unwrap();
                    t.perform().unwrap();
                }
                assert_eq!(easy.response_code().unwrap(), 200);
                assert_eq!(body, b"Hello, World!\n");
            }
        });
    }) else {
        return;
    };
    eprint!("{stderr}");
    assert!(status.success(), "child failed: {status}");
}

#[test]
fn redis_sync_client_from_a_thousand_goroutines() {
    let Some(url) = redis_url() else { return };
    let Some((status, stderr)) = in_child_with_url("redis_sync_client_from_a_thousand_goroutines", &url, || {
        let url = std::env::var("GORT_TEST_URL").unwrap();
        let client = redis::Client::open(url).unwrap();
        on_goroutines("redis", move |i| {
            let mut con = client.get_connection().unwrap();
            for r in 0..REQUESTS {
                let key = format!("gort-hook-io-{}-{i}-{r}", std::process::id());
                let value = format!("value {i} {r}");
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("EX")
                    .arg(60)
                    .query(&mut con)
                    .unwrap();
                let got: String = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
                assert_eq!(got, value);
            }
        });
    }) else {
        return;
    };
    eprint!("{stderr}");
    assert!(status.success(), "child failed: {status}");
}

/// The `http_hello` example, started by the parent only (the child gets
/// its URL).
fn http_hello() -> Option<Server> {
    std::env::var_os(common::CHILD_ENV)
        .is_none()
        .then(|| Server::start("http_hello"))
}

fn in_child_with_url(test: &str, url: &str, body: impl FnOnce()) -> Option<(std::process::ExitStatus, String)> {
    common::in_child_with_env(test, &[("GORT_TEST_URL", url.as_ref())], body)
}

/// The Redis server's URL if one answers; else None after saying so
/// (a failure under `CI=true`).
fn redis_url() -> Option<String> {
    let url = std::env::var("GORT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379/".into());
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
    match reachable {
        Ok(_) => Some(url),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no redis-server at {url} ({e}); .ci/run starts one with tools/services.sh start")
        }
        Err(e) => {
            eprintln!("SKIPPED: no redis-server at {url} ({e}); run `tools/services.sh start`");
            None
        }
    }
}
