//! Goroutine dumps, the deadlock check, leak checks and the SIGQUIT dump.

use std::time::Duration;

mod common;

use common::in_child;
use gort::Runtime;
use gort::chan::{Receiver, bounded};
use gort::runtime::{GoroutineInfo, GoroutineState};

/// A child (`in_child`) that must finish normally, without a deadlock
/// report.
fn expect_no_report(child: Option<(std::process::ExitStatus, String)>) {
    let Some((status, stderr)) = child else { return };
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("deadlock"), "{stderr}");
}

/// A child (`in_child`) that must report a deadlock and exit with status
/// 2; its stderr, or None in the child.
fn expect_deadlock_report(child: Option<(std::process::ExitStatus, String)>) -> Option<String> {
    let (status, stderr) = child?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("fatal error: all goroutines are asleep - deadlock!\n\n"),
        "{stderr}"
    );
    Some(stderr)
}

fn runtime(procs: usize) -> Runtime {
    Runtime::builder().procs(procs).build().unwrap()
}

/// Wait (yielding) until goroutine `id` of `rt` is in `state`, then return its info.
fn wait_for_state(rt: &Runtime, id: u64, state: GoroutineState) -> GoroutineInfo {
    for _ in 0..10_000 {
        if let Some(g) = rt.goroutines().into_iter().find(|g| g.id == id && g.state == state) {
            return g;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("goroutine {id} never reached {state:?}: {:#?}", rt.goroutines());
}

#[inline(never)]
fn worker_loop(rx: Receiver<u32>) -> u32 {
    let mut sum = 0;
    while let Ok(v) = rx.recv() {
        sum += v;
    }
    sum
}

#[test]
fn dump_shows_state_reason_locations_and_user_frames() {
    let rt = runtime(2);
    let (tx, rx) = bounded::<u32>(0);
    let worker = rt.go(move || worker_loop(rx));
    let id = worker.goroutine().id();
    let mutex = std::sync::Arc::new(gort::sync::Mutex::new(()));
    let held = mutex.lock();
    let m2 = mutex.clone();
    let locker = rt.block_on(move || {
        gort::goroutine::Builder::new()
            .name("locker")
            .spawn(move || drop(m2.lock()))
            .unwrap()
    });
    let sleeper = rt.go(|| gort::time::sleep(Duration::from_secs(30)));

    let info = wait_for_state(&rt, id, GoroutineState::Waiting);
    assert_eq!(info.wait_reason, Some("chan receive"));
    let parked = info.parked_at.expect("a waiting goroutine has a park location");
    assert!(parked.file().ends_with("debug.rs"), "parked at {parked}");
    assert!(info.spawned_at.file().ends_with("debug.rs"));
    assert!(info.waiting_for.is_some());
    assert!(
        info.stack.iter().any(|f| f.function.ends_with("worker_loop")),
        "no worker_loop frame in {info}"
    );

    let locker_info = wait_for_state(&rt, locker.goroutine().id(), GoroutineState::Waiting);
    assert_eq!(locker_info.wait_reason, Some("sync.Mutex.Lock"));
    assert_eq!(locker_info.name.as_deref(), Some("locker"));
    let sleeper_info = wait_for_state(&rt, sleeper.goroutine().id(), GoroutineState::Waiting);
    assert_eq!(sleeper_info.wait_reason, Some("sleep"));

    let mut text = Vec::new();
    rt.dump(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(&format!("goroutine {id} [chan receive, ")), "{text}");
    assert!(text.contains("\"locker\" [sync.Mutex.Lock"), "{text}");
    assert!(text.contains("worker_loop"), "{text}");
    // Spawned with `rt.go` from this test's own body, not a goroutine.
    assert!(
        text.contains("created by debug::dump_shows_state_reason_locations_and_user_frames outside the runtime"),
        "{text}"
    );

    drop(held);
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(worker.join().unwrap(), 5);
    locker.join().unwrap();
}

#[test]
fn dump_of_the_caller_itself_and_its_children() {
    let rt = runtime(1);
    rt.block_on(|| {
        let me = gort::current().id();
        let (tx, rx) = bounded::<()>(0);
        let child = gort::go(move || rx.recv());
        gort::yield_now();
        let all = gort::runtime::goroutines();
        let mine = all.iter().find(|g| g.id == me).unwrap();
        assert_eq!(mine.state, GoroutineState::Running);
        assert!(
            mine.stack
                .iter()
                .any(|f| f.function.contains("dump_of_the_caller_itself")),
            "{mine}"
        );
        let kid = all.iter().find(|g| g.id == child.goroutine().id()).unwrap();
        assert_eq!(kid.parent, Some(me));
        assert!(kid.spawned_at.file().ends_with("debug.rs"), "{kid}");
        let mut text = Vec::new();
        gort::runtime::dump(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        // The spawn is written in the closure this test hands to `block_on`.
        assert!(
            text.contains(&format!(
                "created by debug::dump_of_the_caller_itself_and_its_children::{{{{closure}}}} in goroutine {me}"
            )),
            "{text}"
        );
        drop(tx);
        child.join().unwrap().unwrap_err();
    });
}

/// Spawns a goroutine that waits for `rx` to close: a named spawning
/// function for the `created by` line.
#[inline(never)]
fn spawn_from_here(rx: Receiver<()>) -> gort::JoinHandle<Result<(), gort::chan::RecvError>> {
    gort::go(move || rx.recv())
}

#[test]
fn created_by_names_the_function_that_spawned() {
    let rt = runtime(1);
    rt.block_on(|| {
        let me = gort::current().id();
        let (tx, rx) = bounded::<()>(0);
        let named = spawn_from_here(rx.clone());
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || rx.recv())
            })
            .collect();
        let built = gort::goroutine::Builder::new()
            .name("built")
            .spawn(move || rx.recv())
            .unwrap();
        let all = gort::runtime::goroutines();
        let info = |id| all.iter().find(|g| g.id == id).unwrap();
        assert_eq!(
            info(named.goroutine().id()).created_by(),
            Some("debug::spawn_from_here")
        );
        let closure = "debug::created_by_names_the_function_that_spawned::{{closure}}";
        // A spawn inside an iterator's closure names that closure.
        let in_map = format!("{closure}::{{{{closure}}}}");
        assert_eq!(info(workers[0].goroutine().id()).created_by(), Some(in_map.as_str()));
        assert_eq!(info(built.goroutine().id()).created_by(), Some(closure));

        let mut text = Vec::new();
        gort::runtime::dump(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let entry = format!("created by debug::spawn_from_here in goroutine {me}\n\t");
        assert!(text.contains(&entry), "{text}");
        let at = text.find(&entry).unwrap() + entry.len();
        assert!(text[at..].starts_with("tests/debug.rs:"), "{text}");
        assert!(
            text.contains(&format!("created by {in_map} in goroutine {me}")),
            "{text}"
        );

        drop(tx);
        named.join().unwrap().unwrap_err();
        built.join().unwrap().unwrap_err();
        for w in workers {
            w.join().unwrap().unwrap_err();
        }
    });
}

#[test]
fn grouped_dump_counts_identical_goroutines() {
    let rt = runtime(2);
    let (tx, rx) = bounded::<()>(0);
    let waiters: Vec<_> = (0..500)
        .map(|_| {
            let rx = rx.clone();
            rt.go(move || rx.recv())
        })
        .collect();
    while rt
        .goroutines()
        .iter()
        .filter(|g| g.state == GoroutineState::Waiting)
        .count()
        < 500
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut text = Vec::new();
    rt.dump_grouped(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("500 goroutines [chan receive"), "{text}");
    drop(tx);
    for w in waiters {
        w.join().unwrap().unwrap_err();
    }
}

#[test]
fn check_leaks_passes_a_clean_test_and_catches_a_leak() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = bounded(0);
        gort::go(move || tx.send(42).unwrap());
        assert_eq!(rx.recv(), Ok(42));
    });
    rt.check_leaks(Duration::from_millis(500)).unwrap();

    let (tx, rx) = bounded::<()>(0);
    let leaked = rt.go(move || worker_loop_unit(rx));
    let leaks = rt.check_leaks(Duration::from_millis(50)).unwrap_err();
    assert_eq!(leaks.goroutines.len(), 1);
    assert_eq!(leaks.goroutines[0].id, leaked.goroutine().id());
    let report = leaks.to_string();
    assert!(report.starts_with("found 1 unexpected goroutine(s):"), "{report}");
    assert!(report.contains("[chan receive"), "{report}");
    drop(tx);
    leaked.join().unwrap();
    rt.check_leaks(Duration::from_millis(500)).unwrap();
}

#[inline(never)]
fn worker_loop_unit(rx: Receiver<()>) {
    while rx.recv().is_ok() {}
}

#[test]
fn deadlock_is_reported_with_a_dump_and_status_2() {
    let Some(stderr) = expect_deadlock_report(in_child("deadlock_is_reported_with_a_dump_and_status_2", || {
        let rt = runtime(2);
        rt.block_on(|| {
            let (tx, rx) = bounded::<u8>(0);
            let (_tx2, rx2) = bounded::<u8>(0);
            gort::go(move || rx2.recv());
            let _ = rx.recv();
            drop(tx);
        });
        println!("unreachable: the deadlock was not reported");
    })) else {
        return;
    };
    assert!(stderr.contains("goroutine 1 \"main\" [chan receive"), "{stderr}");
    assert!(stderr.contains("goroutine 2 [chan receive"), "{stderr}");
}

#[test]
fn no_deadlock_report_while_a_plain_thread_holds_a_sender() {
    expect_no_report(in_child(
        "no_deadlock_report_while_a_plain_thread_holds_a_sender",
        || {
            let rt = runtime(2);
            let got = rt.block_on(|| {
                let (tx, rx) = bounded::<u8>(0);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    tx.send(7).unwrap();
                });
                rx.recv()
            });
            assert_eq!(got, Ok(7));
        },
    ));
}

/// Each look for a deadlock reads every goroutine, and sysmon takes one on
/// each of its cycles while every P is idle: while a plain thread that
/// holds a sender keeps the runtime idle, the looks that find nothing must
/// thin out (10 ms apart, then 20, 40, 80, 160: five in the 300 ms
/// watched), not come on every dozing cycle (up to 10 ms apart: thirty).
#[test]
fn looks_for_a_deadlock_thin_out_while_none_is_found() {
    let rt = runtime(2);
    let (tx, rx) = bounded::<u8>(0);
    let waiter = rt.go(move || rx.recv());
    std::thread::sleep(Duration::from_millis(50));
    let before = rt.metrics().deadlock_looks;
    std::thread::sleep(Duration::from_millis(300));
    let after = rt.metrics().deadlock_looks;
    tx.send(7).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(7));
    assert!(after >= 1, "sysmon never looked");
    assert!(after - before <= 8, "{} looks in 300 ms", after - before);
}

#[test]
fn no_deadlock_report_when_turned_off() {
    let Some((status, stderr)) = in_child("no_deadlock_report_when_turned_off", || {
        let rt = Runtime::builder().procs(1).detect_deadlocks(false).build().unwrap();
        let (tx, rx) = bounded::<u8>(0);
        let stuck = rt.go(move || rx.recv());
        // Long enough for several sysmon looks.
        std::thread::sleep(Duration::from_millis(200));
        drop(tx);
        stuck.join().unwrap().unwrap_err();
    }) else {
        return;
    };
    assert!(status.success(), "{stderr}");
}

#[test]
fn sigquit_prints_a_dump_and_the_program_goes_on() {
    let Some((status, stderr)) = in_child("sigquit_prints_a_dump_and_the_program_goes_on", || {
        let rt = runtime(2);
        let (tx, rx) = bounded::<u32>(0);
        let worker = rt.go(move || worker_loop(rx));
        wait_for_state(&rt, worker.goroutine().id(), GoroutineState::Waiting);
        // SAFETY: raising a signal at ourselves; gort handles SIGQUIT.
        unsafe { libc::raise(libc::SIGQUIT) };
        std::thread::sleep(Duration::from_millis(300));
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(worker.join().unwrap(), 1);
        eprintln!("still running after SIGQUIT");
    }) else {
        return;
    };
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("SIGQUIT: goroutine dump"), "{stderr}");
    assert!(stderr.contains("[chan receive"), "{stderr}");
    assert!(stderr.contains("worker_loop"), "{stderr}");
    assert!(stderr.contains("still running after SIGQUIT"), "{stderr}");
}

#[test]
fn a_flood_of_sigquits_neither_blocks_the_program_nor_changes_its_errno() {
    let Some((status, stderr)) = in_child(
        "a_flood_of_sigquits_neither_blocks_the_program_nor_changes_its_errno",
        || {
            let _rt = runtime(1);
            // The dumping thread waits for stderr, which this thread holds to
            // the end, so the requests pile up in the pipe to the handler
            // beyond its capacity (64 KiB).
            let stderr = std::io::stderr().lock();
            for i in 0..100_000 {
                // SAFETY: errno is this thread's; raising a signal at
                // ourselves, which gort handles.
                unsafe {
                    *libc::__errno_location() = 1000 + i;
                    libc::raise(libc::SIGQUIT);
                    assert_eq!(*libc::__errno_location(), 1000 + i, "SIGQUIT changed errno");
                }
            }
            eprintln!("still running after the SIGQUITs");
            // Held until the process exits: the dumps asked for are not taken.
            std::mem::forget(stderr);
        },
    ) else {
        return;
    };
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("still running after the SIGQUITs"), "{stderr}");
}

/// Every public blocking call passes its caller's location down to the
/// park (`#[track_caller]` all the way): each goroutine below waits in a
/// different one, and each must be reported parked in this file.
#[test]
fn every_blocking_call_records_the_callers_location() {
    use gort::sync::{Barrier, Condvar, Mutex, Once, RwLock, Semaphore, WaitGroup};
    use std::sync::Arc;

    let rt = runtime(2);
    let (release_tx, release_rx) = bounded::<()>(0);
    let mutex = Arc::new(Mutex::new(false));
    let rwlock = Arc::new(RwLock::new(()));
    let condvar = Arc::new(Condvar::new());
    let semaphore = Arc::new(Semaphore::new(1));
    semaphore.acquire(1);
    let barrier = Arc::new(Barrier::new(2));
    let group = Arc::new(WaitGroup::new());
    let once = Arc::new(Once::new());
    let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    group.add(1);

    let held = (mutex.lock(), rwlock.write());
    let (in_once_tx, in_once_rx) = bounded::<()>(0);
    let initializer = {
        let (once, rx) = (once.clone(), release_rx.clone());
        rt.go(move || {
            once.call_once(|| {
                let _ = (in_once_tx.send(()), rx.recv());
            })
        })
    };
    in_once_rx.recv().unwrap();
    let mut waiters = Vec::new();
    let mut spawn = |f: Box<dyn FnOnce() + Send>| waiters.push(rt.go(f));
    let (send_tx, send_rx) = bounded::<u8>(0);
    spawn(Box::new(move || {
        let _ = send_tx.send(1);
    }));
    let rx = release_rx.clone();
    spawn(Box::new(move || {
        let _ = rx.recv();
    }));
    let rx = release_rx.clone();
    spawn(Box::new(move || {
        gort::select! {
            recv(rx) -> _ => {},
        }
    }));
    spawn(Box::new(|| gort::time::sleep(Duration::from_secs(60))));
    let m = mutex.clone();
    spawn(Box::new(move || drop(m.lock())));
    let r = rwlock.clone();
    spawn(Box::new(move || drop(r.read())));
    let (m, c) = (mutex.clone(), condvar.clone());
    spawn(Box::new(move || {
        let (m2, c2) = (m.clone(), c.clone());
        // The condvar waiter needs the mutex, which the test holds: it
        // queues for the mutex first; both waits report this file.
        let _g = c2.wait_while(m2.lock(), |done| !*done);
    }));
    let s = semaphore.clone();
    spawn(Box::new(move || s.acquire(1)));
    let b = barrier.clone();
    spawn(Box::new(move || {
        b.wait();
    }));
    let g = group.clone();
    spawn(Box::new(move || g.wait()));
    let o = once.clone();
    spawn(Box::new(move || o.call_once(|| ())));
    let l = listener.try_clone().unwrap();
    spawn(Box::new(move || {
        let _ = l.accept();
    }));

    let expected = [
        "chan send",
        "chan receive",
        "select",
        "sleep",
        "sync.Mutex.Lock",
        "sync.RWMutex.RLock",
        "semacquire",
        "barrier wait",
        "sync.WaitGroup.Wait",
        "sync.Once",
        "IO wait",
    ];
    let mut seen = Vec::new();
    for _ in 0..5_000 {
        seen = rt.goroutines();
        if expected.iter().all(|r| seen.iter().any(|g| g.wait_reason == Some(*r))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for reason in expected {
        let g = seen
            .iter()
            .find(|g| g.wait_reason == Some(reason))
            .unwrap_or_else(|| panic!("nobody waits in {reason}: {seen:#?}"));
        let at = g.parked_at.unwrap();
        assert!(at.file().ends_with("debug.rs"), "{reason} parked at {at}");
    }

    drop(held);
    *mutex.lock() = true;
    condvar.notify_all();
    semaphore.release(1);
    barrier.wait();
    group.done();
    drop(release_tx);
    drop(send_rx);
    drop(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    initializer.join().unwrap();
    let mut sleeping = None;
    for w in waiters {
        if w.goroutine().id() == seen.iter().find(|g| g.wait_reason == Some("sleep")).unwrap().id {
            sleeping = Some(w);
        } else {
            w.join().unwrap();
        }
    }
    drop(sleeping);
}

#[inline(never)]
fn spin_here(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
    }
    n
}

/// A goroutine stopped by asynchronous preemption is shown where the
/// signal stopped it: inside the loop that never calls the runtime.
#[test]
fn dump_shows_where_a_preempted_goroutine_was_stopped() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let rt = Runtime::builder()
        .procs(1)
        .preempt_slice(Duration::from_millis(1))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            rt.go(move || spin_here(&stop))
        })
        .collect();
    let mut found = None;
    for _ in 0..10_000 {
        found = rt
            .goroutines()
            .into_iter()
            .find(|g| g.state == GoroutineState::Runnable && g.stack.iter().any(|f| f.function.ends_with("spin_here")));
        if found.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    let g = found.expect("a preempted spinner shows spin_here in its stack");
    // Innermost: the loop itself (below an inlined `core` helper, if the
    // signal landed in one), not the runtime.
    assert!(g.stack.iter().take(2).any(|f| f.function.ends_with("spin_here")), "{g}");
}

#[test]
fn no_deadlock_report_while_another_runtimes_goroutine_will_send() {
    let name = "no_deadlock_report_while_another_runtimes_goroutine_will_send";
    expect_no_report(in_child(name, || {
        // The other runtime's threads start before this runtime is built.
        let other = Runtime::builder().procs(1).name("other").build().unwrap();
        other.block_on(|| ());
        let rt = Runtime::builder().procs(1).name("waiting").build().unwrap();
        let (tx, rx) = bounded::<u8>(0);
        let sender = other.go(move || {
            // A timer of the other runtime: this one has none pending.
            gort::time::sleep(Duration::from_millis(300));
            tx.send(7).unwrap();
        });
        assert_eq!(rt.block_on(move || rx.recv()), Ok(7));
        sender.join().unwrap();
    }));
}

#[test]
fn deadlock_across_two_runtimes_is_reported() {
    expect_deadlock_report(in_child("deadlock_across_two_runtimes_is_reported", || {
        let other = Runtime::builder().procs(1).name("other").build().unwrap();
        let rt = Runtime::builder().procs(1).name("waiting").build().unwrap();
        let (_tx_a, rx_a) = bounded::<u8>(0);
        let (_tx_b, rx_b) = bounded::<u8>(0);
        // Each runtime's goroutine waits for a sender the other one holds.
        let _stuck = other.go(move || {
            let _keep = _tx_a;
            rx_b.recv()
        });
        let _ = rt.block_on(move || {
            let _keep = _tx_b;
            rx_a.recv()
        });
        println!("unreachable: the deadlock was not reported");
    }));
}

#[test]
fn no_deadlock_report_while_an_older_plain_thread_will_send() {
    let name = "no_deadlock_report_while_an_older_plain_thread_will_send";
    expect_no_report(in_child(name, || {
        // A thread that exists before the runtime and gets its Sender later,
        // through a std channel: it never touched gort before it sends.
        let (handoff, inbox) = std::sync::mpsc::channel::<gort::chan::Sender<u8>>();
        let older = std::thread::spawn(move || {
            let tx = inbox.recv().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            tx.send(7).unwrap();
        });
        let rt = runtime(1);
        let got = rt.block_on(move || {
            let (tx, rx) = bounded::<u8>(0);
            handoff.send(tx).unwrap();
            rx.recv()
        });
        assert_eq!(got, Ok(7));
        older.join().unwrap();
    }));
}
