//! The goroutine API: spawning, joining, panics, scopes, identity, and
//! bad input — the behaviours std::thread users and Go users expect.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gort::goroutine::Builder;

mod common;

/// Silence the default panic hook while `f` runs deliberate panics.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(old);
    r
}

#[test]
fn join_returns_the_value() {
    let h = gort::go(|| 6 * 7);
    assert_eq!(h.join().unwrap(), 42);
    let s = gort::go(|| String::from("owned")).join().unwrap();
    assert_eq!(s, "owned");
}

#[test]
fn join_returns_the_panic_and_the_runtime_keeps_running() {
    let n = std::hint::black_box(7);
    let err = quietly(|| gort::go(move || -> u32 { panic!("boom {n}") }).join().unwrap_err());
    assert_eq!(err.downcast_ref::<String>().map(String::as_str), Some("boom 7"));
    assert_eq!(gort::go(|| 1).join().unwrap(), 1);
}

#[test]
fn run_resumes_the_main_goroutines_panic() {
    let r = quietly(|| std::panic::catch_unwind(|| gort::run(|| panic!("main goroutine"))));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"main goroutine"));
}

#[test]
fn hundred_thousand_goroutines_spawned_and_joined() {
    const N: u64 = 100_000;
    let sum = gort::run(|| {
        let handles: Vec<_> = (0..N).map(|i| gort::go(move || i)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, N * (N - 1) / 2);
}

#[test]
fn joined_from_a_plain_thread_and_from_goroutines() {
    let h = gort::go(|| {
        gort::yield_now();
        5
    });
    let from_thread = std::thread::spawn(move || h.join().unwrap()).join().unwrap();
    assert_eq!(from_thread, 5);
    let nested = gort::go(|| gort::go(|| 9).join().unwrap()).join().unwrap();
    assert_eq!(nested, 9);
}

fn tree(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let left = gort::go(move || tree(depth - 1));
    let right = gort::go(move || tree(depth - 1));
    left.join().unwrap() + right.join().unwrap()
}

#[test]
fn nested_spawns_form_a_tree() {
    assert_eq!(gort::run(|| tree(12)), 1 << 12);
}

#[test]
fn scope_goroutines_borrow_the_callers_stack() {
    let data: Vec<u64> = (1..=1000).collect();
    let mut counts = [0usize; 4];
    let total = AtomicU64::new(0);
    gort::scope(|s| {
        for (chunk, count) in data.chunks(250).zip(counts.iter_mut()) {
            let total = &total;
            s.go(move || {
                total.fetch_add(chunk.iter().sum::<u64>(), Ordering::Relaxed);
                *count = chunk.len();
            });
        }
    });
    assert_eq!(total.into_inner(), 500_500);
    assert_eq!(counts, [250; 4]);
}

#[test]
fn scope_returns_values_through_handles_and_reports_unjoined_panics() {
    let v = [1, 2, 3];
    let doubled = gort::scope(|s| {
        let h = s.go(|| v.iter().map(|x| x * 2).collect::<Vec<_>>());
        h.join().unwrap()
    });
    assert_eq!(doubled, [2, 4, 6]);

    // A joined panic is handled; an unjoined one makes `scope` panic.
    let joined = quietly(|| gort::scope(|s| s.go(|| panic!("handled")).join().is_err()));
    assert!(joined);
    let unjoined = quietly(|| {
        std::panic::catch_unwind(|| {
            gort::scope(|s| {
                s.go(|| panic!("nobody joins me"));
            })
        })
    });
    assert!(unjoined.is_err());
}

#[test]
fn scope_inside_a_goroutine_parks_instead_of_blocking() {
    let n = gort::run(|| {
        let hits = AtomicUsize::new(0);
        gort::scope(|s| {
            for _ in 0..100 {
                s.go(|| {
                    gort::yield_now();
                    hits.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        hits.into_inner()
    });
    assert_eq!(n, 100);
}

#[test]
fn current_names_and_unique_ids() {
    let name = Builder::new()
        .name("worker-7")
        .spawn(|| gort::current().name().map(str::to_owned))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(name.as_deref(), Some("worker-7"));
    let ids: Vec<u64> = (0..1000)
        .map(|_| gort::go(|| gort::current().id()))
        .map(|h| h.join().unwrap())
        .collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.iter().all(|&id| id >= 1));
}

#[test]
fn the_first_goroutine_of_a_runtime_is_number_one() {
    let rt = gort::Runtime::builder().procs(1).build().unwrap();
    assert_eq!(rt.block_on(|| gort::current().id()), 1);
    assert_eq!(
        rt.block_on(|| gort::current().name().map(str::to_owned)).as_deref(),
        Some("main")
    );
}

#[test]
fn handle_names_its_goroutine() {
    let h = Builder::new().name("named").spawn(|| gort::current().id()).unwrap();
    let (id, name) = (h.goroutine().id(), h.goroutine().name().map(str::to_owned));
    assert_eq!(h.join().unwrap(), id);
    assert_eq!(name.as_deref(), Some("named"));
}

#[test]
#[should_panic(expected = "outside a goroutine")]
fn current_outside_a_goroutine_panics() {
    gort::current();
}

#[test]
fn bad_builder_input_is_an_error_not_a_crash() {
    use gort::Error;
    assert!(matches!(
        gort::Runtime::builder().procs(0).build(),
        Err(Error::InvalidProcs(0))
    ));
    assert!(matches!(
        gort::Runtime::builder().procs(100_000).build(),
        Err(Error::InvalidProcs(_))
    ));
    assert!(matches!(
        gort::Runtime::builder().stack_size(1024).build(),
        Err(Error::InvalidStackSize(_))
    ));
    assert!(matches!(
        gort::Runtime::builder().stack_size(usize::MAX).build(),
        Err(Error::InvalidStackSize(_))
    ));
    assert!(matches!(
        gort::Runtime::builder().max_threads(0).build(),
        Err(Error::InvalidMaxThreads)
    ));
    let e = gort::Runtime::builder().procs(0).build().unwrap_err();
    assert!(e.to_string().contains("procs"), "{e}");

    for bad in [0, 100, usize::MAX] {
        let err = Builder::new().stack_size(bad).spawn(|| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "stack size {bad}");
    }
}

#[test]
fn results_are_dropped_when_nobody_joins() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let wg = Arc::new(gort::sync::WaitGroup::new());
    for _ in 0..100 {
        let (d, wg) = (Arc::clone(&drops), Arc::clone(&wg));
        wg.add(1);
        drop(gort::go(move || {
            let c = Counted(d);
            wg.done();
            c
        }));
    }
    wg.wait();
    // `done` runs before the result is dropped: give the last goroutines
    // time to finish dropping theirs.
    for _ in 0..1_000_000 {
        if drops.load(Ordering::SeqCst) == 100 {
            break;
        }
        std::thread::yield_now();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 100);
}

/// Virtual memory of this process, in bytes (`VmSize`).
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_scoped_goroutine_that_never_ran_does_not_cancel_an_unjoined_panic() {
    let name = "a_scoped_goroutine_that_never_ran_does_not_cancel_an_unjoined_panic";
    let Some((status, stderr)) = common::in_child(name, || {
        // Stacks of 512 MiB, one per reservation: with the address space
        // capped, only a cached stack can be handed out.
        let rt = gort::Runtime::builder().procs(1).stack_size(512 << 20).build().unwrap();
        let scope_panicked = rt.block_on(|| {
            // One finished goroutine leaves one stack in the cache.
            gort::go(|| ()).join().unwrap();
            let cap = vm_size() + (128 << 20);
            let limit = libc::rlimit {
                rlim_cur: cap,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit reads the struct we pass.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
            // Of the two, the first gets the cached stack and keeps it,
            // parked, until the second has been tried; the second cannot
            // get a stack and is abandoned. Joining it must not cancel the
            // first's unjoined panic (nor, the other way round, may an
            // abandoned goroutine go unnoticed).
            std::panic::catch_unwind(|| {
                gort::scope(|s| {
                    let (release, held) = gort::chan::bounded::<()>(0);
                    s.go(move || {
                        let _ = held.recv();
                        panic!("first")
                    });
                    // The first runs now and parks on its stack. Without
                    // this, the second would run first (it is spawned into
                    // `runnext`) and give the stack back before the first
                    // needs one, unless a preemption came in between.
                    gort::yield_now();
                    let second = s.go(|| panic!("second"));
                    assert!(second.join().is_err());
                    drop(release);
                })
            })
            .is_err()
        });
        assert!(scope_panicked, "scope returned normally");
    }) else {
        return;
    };
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stack allocation failed"), "{stderr}");
}

#[test]
fn is_finished_says_when_join_would_not_wait() {
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let h = gort::go(move || rx.recv());
    common::guarded(move || {
        assert!(!h.is_finished());
        tx.send(()).unwrap();
        while !h.is_finished() {
            std::thread::yield_now();
        }
        assert_eq!(h.join().unwrap(), Ok(()));
    });
    quietly(|| {
        let h = gort::go(|| panic!("counted as finished"));
        while !h.is_finished() {
            std::thread::yield_now();
        }
        assert!(h.join().is_err());
    });
}

/// A waker that counts its wake-ups.
struct Counter(AtomicUsize);

impl std::task::Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_join_future_dropped_pending_is_never_woken_and_detaches() {
    use std::future::{Future, IntoFuture};
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let (done_tx, done_rx) = gort::chan::bounded::<&str>(1);
    let mut fut = gort::go(move || {
        rx.recv().unwrap();
        done_tx.send("ran to the end").unwrap();
    })
    .into_future();
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(Arc::clone(&counter));
    let pending = std::pin::Pin::new(&mut fut).poll(&mut std::task::Context::from_waker(&waker));
    assert!(pending.is_pending());
    drop(fut);
    tx.send(()).unwrap();
    assert_eq!(done_rx.recv(), Ok("ran to the end"));
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    // Only the test's own reference is left: the goroutine let go of it.
    drop(waker);
    assert_eq!(Arc::strong_count(&counter), 1);
}

#[test]
fn a_join_handle_is_awaited_from_futures_block_on() {
    let handles: Vec<_> = (0..100u32).map(|i| gort::go(move || i * 2)).collect();
    let sum = futures::executor::block_on(async {
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..100).map(|i| i * 2).sum::<u32>());
}

/// A goroutine's panic message names the goroutine, not the thread it ran
/// on (in a child: the hook's output is the assertion).
#[test]
fn panic_message_names_the_goroutine() {
    let Some((status, stderr)) = common::in_child("panic_message_names_the_goroutine", || {
        let rt = gort::Runtime::builder().procs(1).build().unwrap();
        let id = rt.block_on(|| {
            let h = Builder::new()
                .name("boom-worker")
                .spawn(|| -> u64 { panic!("the worker failed") })
                .unwrap();
            let id = h.goroutine().id();
            assert!(h.join().is_err());
            id
        });
        eprintln!("spawned goroutine {id}");
    }) else {
        return;
    };
    assert!(status.success(), "{stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("spawned goroutine "))
        .expect("the child reports the id");
    let header = format!("goroutine {id} \"boom-worker\" panicked at tests/goroutines.rs:");
    assert!(stderr.contains(&header), "no {header:?} in:\n{stderr}");
    assert!(stderr.contains("the worker failed"), "{stderr}");
    assert!(!stderr.contains("thread 'gort-m"), "the thread was named:\n{stderr}");
}

/// `try_current` is `None` on a plain thread, so a panic hook may call it
/// wherever the panic happens.
#[test]
fn try_current_from_a_panic_hook_on_either_side() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let got = {
        let seen = Arc::clone(&seen);
        quietly(move || {
            // The runtime's own hook goes in first; this one replaces it.
            gort::runtime::procs();
            std::panic::set_hook(Box::new(move |info| {
                if info.payload_as_str().is_some_and(|m| m.starts_with("on a ")) {
                    seen.lock().unwrap().push(gort::try_current().map(|g| g.id()));
                }
            }));
            let plain = std::thread::spawn(|| panic!("on a plain thread")).join();
            let on_g = gort::go(|| panic!("on a goroutine"));
            let id = on_g.goroutine().id();
            (plain.is_err(), on_g.join().is_err(), id)
        })
    };
    assert_eq!((got.0, got.1), (true, true));
    assert_eq!(*seen.lock().unwrap(), [None, Some(got.2)]);
}

/// Under `unjoined_panic_exits`, a panic whose handle was dropped ends the
/// process with Go's status 2 and a dump — whichever came first, the drop
/// or the panic; a joined panic does not.
#[test]
fn unjoined_panic_ends_the_process() {
    for order in ["drop-then-panic", "panic-then-drop"] {
        let env = [("GORT_TEST_ORDER", std::ffi::OsStr::new(order))];
        let Some((status, stderr)) = common::in_child_with_env("unjoined_panic_ends_the_process", &env, || {
            let order = std::env::var("GORT_TEST_ORDER").unwrap();
            let rt = gort::Runtime::builder().unjoined_panic_exits(true).build().unwrap();
            rt.block_on(move || {
                // Joined panics are the caller's, as without the option.
                assert!(gort::go(|| panic!("joined")).join().is_err());
                let (go_on, wait) = gort::chan::bounded::<()>(0);
                let h = Builder::new()
                    .name("orphan")
                    .spawn(move || {
                        let _ = wait.recv();
                        panic!("nobody joins me")
                    })
                    .unwrap();
                let id = h.goroutine().id();
                if order == "drop-then-panic" {
                    drop(h);
                    drop(go_on);
                } else {
                    drop(go_on);
                    while gort::runtime::goroutines().iter().any(|g| g.id == id) {
                        gort::time::sleep(std::time::Duration::from_millis(1));
                    }
                    drop(h);
                }
                gort::time::sleep(std::time::Duration::from_secs(30));
            });
            eprintln!("the process went on");
        }) else {
            return;
        };
        assert_eq!(status.code(), Some(2), "{order}: {stderr}");
        assert!(
            stderr.contains("\"orphan\" panicked at tests/goroutines.rs:"),
            "{order}: {stderr}"
        );
        assert!(stderr.contains("fatal error: unjoined goroutine "), "{order}: {stderr}");
        assert!(stderr.contains("\"orphan\" panicked\n"), "{order}: {stderr}");
        // The dump: the main goroutine, in its sleep or dropping the handle.
        assert!(stderr.contains("goroutine 1 "), "{order}: no dump in {stderr}");
        assert!(!stderr.contains("the process went on"), "{order}: {stderr}");
    }
}
