//! `gort::signal`: signals reach goroutines through channels, `stop` and
//! dropping the receiver give a signal its usual effect back, and
//! registering signals does not hide a deadlock from the deadlock check —
//! while waiting for a signal is not one. Each test runs in a child process:
//! signals and the deadlock report act on the whole process.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use gort::signal::{self, SIGINT, SIGTERM, SIGUSR1};

mod common;
use common::{CHILD_ENV, in_child};

fn raise(sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

#[test]
fn a_goroutine_receives_sigint_and_sigterm() {
    let Some((status, stderr)) = in_child("a_goroutine_receives_sigint_and_sigterm", || {
        let rx = signal::notify(&[SIGINT, SIGTERM]);
        let got = gort::run(move || {
            let waiter = gort::go(move || [rx.recv().unwrap(), rx.recv().unwrap()]);
            raise(libc::SIGINT);
            // From a plain thread too; the order is kept by waiting.
            while gort::runtime::goroutines()
                .iter()
                .all(|g| g.wait_reason != Some("chan receive"))
            {
                gort::yield_now();
            }
            std::thread::spawn(|| raise(libc::SIGTERM)).join().unwrap();
            waiter.join().unwrap()
        });
        eprintln!("received {got:?}");
    }) else {
        return;
    };
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("received [SIGINT, SIGTERM]"), "{stderr}");
}

/// `stop`, and dropping every receiver, give SIGTERM its default action
/// back: the process dies of it.
#[test]
fn stop_and_drop_restore_the_default_action() {
    for how in ["stop", "drop"] {
        let env = [("GORT_TEST_HOW", std::ffi::OsStr::new(how))];
        let Some((status, stderr)) =
            common::in_child_with_env("stop_and_drop_restore_the_default_action", &env, || {
                let rx = signal::notify(&[SIGTERM]);
                raise(libc::SIGTERM);
                assert_eq!(rx.recv(), Ok(SIGTERM));
                eprintln!("caught once");
                if std::env::var("GORT_TEST_HOW").unwrap() == "stop" {
                    signal::stop(&rx);
                } else {
                    drop(rx);
                }
                raise(libc::SIGTERM);
                // Dropped receivers are found out when the signal comes.
                std::thread::sleep(Duration::from_secs(30));
                eprintln!("still alive");
            })
        else {
            return;
        };
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{how}: {status:?}: {stderr}");
        assert!(stderr.contains("caught once"), "{how}: {stderr}");
        assert!(!stderr.contains("still alive"), "{how}: {stderr}");
    }
}

/// With a signal registered but nobody waiting for it, a deadlock is still
/// reported (no thread of the signal machinery counts as a waker).
#[test]
fn a_deadlock_with_signals_registered_is_reported() {
    let Some((status, stderr)) = in_child("a_deadlock_with_signals_registered_is_reported", || {
        let _rx = signal::notify(&[SIGINT, SIGTERM]);
        gort::run(|| {
            let (_tx, rx) = gort::chan::bounded::<()>(0);
            let _ = rx.recv();
        });
    }) else {
        return;
    };
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fatal error: all goroutines are asleep - deadlock!"),
        "{stderr}"
    );
}

/// A program whose only hope is a signal is not deadlocked: the signal,
/// sent by the parent well after the deadlock check would have fired,
/// wakes it.
#[test]
fn waiting_for_a_signal_is_not_a_deadlock() {
    let test = "waiting_for_a_signal_is_not_a_deadlock";
    if std::env::var_os(CHILD_ENV).is_some() {
        let rx = signal::notify(&[SIGUSR1]);
        let got = gort::run(move || {
            let (_never_tx, never) = gort::chan::bounded::<()>(0);
            let stuck = gort::go(move || never.recv());
            // On the harness's `test name ... ` line, without a newline of its own.
            println!("child-ready");
            let got = rx.recv();
            drop(stuck);
            got
        });
        eprintln!("woken by {got:?}");
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.ends_with("child-ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    if ready.recv_timeout(common::HANG_GUARD).is_err() {
        let _ = child.kill();
        panic!("the child never got ready: {:?}", child.wait_with_output().unwrap());
    }
    // Many deadlock looks' worth (they are 10 ms to 1 s apart).
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: the child is alive (it waits for this signal) and not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let out = common::guarded(move || child.wait_with_output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("woken by Ok(SIGUSR1)"), "{stderr}");
    assert!(!stderr.contains("deadlock"), "{stderr}");
}

#[test]
fn uncatchable_and_runtime_signals_are_refused() {
    for n in [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGURG,
        libc::SIGQUIT,
        libc::SIGSEGV,
        0,
        64,
        -1,
    ] {
        assert_eq!(signal::Signal::from_raw(n), None, "{n}");
    }
    assert_eq!(signal::Signal::from_raw(libc::SIGTERM), Some(SIGTERM));
    assert_eq!(SIGTERM.as_raw(), libc::SIGTERM);
    assert_eq!(SIGINT.to_string(), "SIGINT");
}
