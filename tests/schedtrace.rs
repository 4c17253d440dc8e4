//! `GORTDEBUG=schedtrace=MS,scheddetail=1` prints Go's `SCHED` lines to
//! stderr: checked in a child process that runs with the variable set. So
//! is the one warning each of `GORTDEBUG`, `GORT_PROCS` and `GORTTRACE`
//! gives about a value gort cannot use.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{CHILD_ENV, in_child_with_env};

#[test]
fn schedtrace_lines_parse() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let rt = gort::Runtime::builder().procs(2).build().unwrap();
        rt.block_on(|| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    gort::go(|| {
                        for _ in 0..30 {
                            gort::time::sleep(Duration::from_millis(2));
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "schedtrace_lines_parse", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("GORTDEBUG", "schedtrace=10,scheddetail=1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("gort: GORTDEBUG="),
        "a warning about valid settings:\n{stderr}"
    );
    let sched: Vec<&str> = stderr.lines().filter(|l| l.starts_with("SCHED ")).collect();
    assert!(sched.len() >= 2, "too few SCHED lines:\n{stderr}");
    for line in &sched {
        // SCHED 10ms: gomaxprocs=2 idleprocs=1 threads=3 spinningthreads=0 idlethreads=1 runqueue=0 [0 0]
        let (head, rest) = line.split_once(": ").expect("a colon after the time");
        let ms = head.trim_start_matches("SCHED ").trim_end_matches("ms");
        ms.parse::<u64>().unwrap_or_else(|_| panic!("bad time in {line}"));
        let (fields, queues) = rest.split_once(" [").expect("per-P queues");
        let keys: Vec<(&str, u64)> = fields
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad field in {line}"));
                (k, v.parse().unwrap_or_else(|_| panic!("bad value in {line}")))
            })
            .collect();
        let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "gomaxprocs",
                "idleprocs",
                "threads",
                "spinningthreads",
                "idlethreads",
                "runqueue"
            ]
        );
        assert_eq!(keys[0].1, 2);
        assert!(keys[1].1 <= 2);
        let per_p: Vec<u64> = queues
            .trim_end_matches(']')
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(per_p.len(), 2);
    }
    // scheddetail: a line per P after each SCHED line.
    assert!(stderr.lines().any(|l| l.starts_with("  P0: status=")), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("  P1: status=")), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("  M")), "{stderr}");
}

#[test]
fn schedtrace_survives_goroutines_preempted_inside_eprintln() {
    // Goroutines printing to stderr are stopped by signal now and then while
    // they hold std's stderr lock, and sysmon, which prints the SCHED lines,
    // is the one that queues them again: its printing must not wait for
    // that lock.
    if std::env::var_os(CHILD_ENV).is_some() {
        let rt = gort::Runtime::builder()
            .procs(1)
            .preempt_slice(Duration::from_micros(100))
            .build()
            .unwrap();
        rt.block_on(|| {
            let hs: Vec<_> = (0..2)
                .map(|id| {
                    gort::go(move || {
                        for i in 0..50_000 {
                            eprintln!("line {id} {i} {}", "x".repeat(40));
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "schedtrace_survives_goroutines_preempted_inside_eprintln",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("GORTDEBUG", "schedtrace=1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A hang guard, not a timing assertion: a healthy child ends in well
    // under a second; one that is not done after a minute is stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("hung: a goroutine preempted holding stderr's lock stalled sysmon");
    assert!(status.success(), "child failed: {status:?}");
}

/// Typos in the switches used to be ignored without a word (a
/// `schedtrace=1s` simply traced nothing). Each variable now gets one
/// warning, however many runtimes read it, naming the variable, what was
/// ignored and the forms accepted; the valid items still apply.
#[test]
fn unusable_switches_get_one_warning_each() {
    const BAD_DEBUG: &str = "schedtrace=1s,scheddetail=1,madeup=3,schedtrace:1000";
    let trace_path = std::env::temp_dir().join("gort-no-such-dir/trace.json");
    let env: [(&str, &OsStr); 3] = [
        ("GORTDEBUG", OsStr::new(BAD_DEBUG)),
        ("GORT_PROCS", OsStr::new("two")),
        ("GORTTRACE", trace_path.as_os_str()),
    ];
    let Some((status, stderr)) = in_child_with_env("unusable_switches_get_one_warning_each", &env, || {
        // The default runtime reads all three; the others GORTDEBUG again.
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            gort::run(gort::runtime::procs),
            cpus.min(1024),
            "GORT_PROCS=two applied"
        );
        for procs in [1, 2] {
            let rt = gort::Runtime::builder().procs(procs).build().unwrap();
            rt.block_on(|| gort::time::sleep(Duration::from_millis(30)));
        }
    }) else {
        return;
    };
    assert!(status.success(), "child failed ({status:?}):\n{stderr}");
    let debug = one_warning(
        &stderr,
        "GORTDEBUG",
        &[
            "\"schedtrace=1s\"",
            "\"madeup=3\"",
            "\"schedtrace:1000\"",
            "schedtrace=MS",
            "chaos=SEED",
        ],
    );
    assert!(!debug.contains("\"scheddetail=1\""), "a valid item named: {debug}");
    one_warning(&stderr, "GORT_PROCS", &["\"two\"", "from 1 to 1024"]);
    one_warning(&stderr, "GORTTRACE", &["GORTTRACE=PATH"]);
    // The bad schedtrace item turned nothing on.
    assert!(!stderr.lines().any(|l| l.starts_with("SCHED ")), "{stderr}");
}

/// The one line of `stderr` that warns about `var`, which names each of
/// `words`.
fn one_warning<'a>(stderr: &'a str, var: &str, words: &[&str]) -> &'a str {
    let prefix = format!("gort: {var}=");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "not one warning about {var}:\n{stderr}");
    for word in words {
        assert!(lines[0].contains(word), "{word} not in: {}", lines[0]);
    }
    lines[0]
}
