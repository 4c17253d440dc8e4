//! `/debug/gort/` in a real browser: headless Chromium (Debian's
//! `chromium`) loads the dashboard from `gort::debug::serve`, lets it poll
//! `state.json` for a few seconds of virtual time, and must log nothing to
//! its console — the page logs nothing itself, so any console line is an
//! uncaught error, a rejected promise or a failed load. The page it drew
//! must show the workload's Ps and parking site, and a screenshot of it is
//! written to `target/dashboard.png` (the one in `docs/` is a copy).
//!
//! A second test proves the console check can fail: a page with an error
//! in its script is caught by the same check.
//!
//! Without Chromium the tests say so on stderr and pass, except under CI
//! (`CI=true`), where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gort::Runtime;

/// The Chromium binary, if installed; if not, say so (and fail under CI).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let why = "`chromium` not found: install Debian's `chromium` package (`.ci/run` does)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
    }
    found
}

/// What headless Chromium printed for `url`: (the DOM after 10 s
/// of virtual time, or nothing when taking a screenshot to `shot`; the
/// console lines of its log).
fn browse(browser: &str, url: &str, shot: Option<&Path>) -> (String, Vec<String>) {
    // A profile directory per run: Chromium refuses to share one.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let profile = std::env::temp_dir().join(format!("gort-chromium-{}-{run}", std::process::id()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1000",
        "--virtual-time-budget=10000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    match shot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let log = String::from_utf8_lossy(&out.stderr);
    // Chromium logs every console message, whatever its level, as
    // `[pid:tid:time:INFO:CONSOLE:line] "message", source: url (line)`.
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    assert!(out.status.success(), "chromium failed: {log}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Parks in a channel receive at a line of its own: the dashboard's top
/// parking site.
fn parked_worker(rx: gort::chan::Receiver<()>) {
    let _ = rx.recv();
}

#[test]
fn dashboard_loads_in_chromium_without_console_errors() {
    let Some(browser) = chromium() else { return };
    let rt = Runtime::builder().name("dashboard").procs(2).build().unwrap();
    let (release, rx) = gort::chan::bounded::<()>(0);
    let workers = rt.block_on(move || {
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || parked_worker(rx))
            })
            .collect();
        // Something to chart: a goroutine that sleeps in a loop.
        gort::go(|| {
            for i in 0..4000u64 {
                gort::time::sleep(Duration::from_millis(1 + i % 4));
            }
        });
        hs
    });
    let server = rt.block_on(|| gort::debug::serve("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/debug/gort/", server.local_addr());

    let (dom, console) = browse(browser, &url, None);
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    assert!(dom.contains("Top parking sites"), "{dom}");
    assert!(dom.contains("debug_dashboard.rs"), "the parking site is listed: {dom}");
    assert!(dom.contains("chan receive"), "{dom}");
    assert!(dom.contains("/debug/pprof/goroutine?debug=2"), "{dom}");
    assert!(dom.contains("updated "), "state.json was polled: {dom}");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let (_, console) = browse(browser, &url, Some(&shot));
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());

    server.stop();
    drop(release);
    workers.into_iter().for_each(|w| w.join().unwrap());
}

#[test]
fn the_console_check_catches_a_script_error() {
    let Some(browser) = chromium() else { return };
    let page = std::env::temp_dir().join(format!("gort-broken-{}.html", std::process::id()));
    std::fs::write(
        &page,
        "<!DOCTYPE html><title>broken</title><script>setTimeout(() => undefinedFunction(), 10);</script>",
    )
    .unwrap();
    let (_, console) = browse(browser, &format!("file://{}", page.display()), None);
    let _ = std::fs::remove_file(&page);
    assert!(
        console.iter().any(|l| l.contains("undefinedFunction is not defined")),
        "{console:?}"
    );
}
