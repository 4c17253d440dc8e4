//! gort::sync: Mutex, RwLock, Condvar, Once, OnceLock, Semaphore, Barrier —
//! mutual exclusion, fairness (no starvation), wake-ups, goroutines and
//! plain threads sharing one primitive, and bad input. No test asserts on
//! timing: progress is proven by completion (with generous iteration
//! bounds where a bug would loop forever) and concurrency by rendezvous.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gort::Runtime;
use gort::sync::{Barrier, Condvar, Mutex, Once, OnceLock, RwLock, Semaphore};

mod common;
use common::wait_until_parked;

/// Run `f` as the main goroutine of a fresh runtime with `procs` Ps.
fn on_procs<T: Send + 'static>(procs: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::builder().procs(procs).build().unwrap().block_on(f)
}

/// Spawn `n` goroutines running `f(i)` and join them all.
fn go_all<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = Arc::clone(&f);
            gort::go(move || f(i))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Run `f`, which panics on purpose, with the panic hook silenced.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(old);
    r
}

/// Yield until `cond` holds (it must become true through other goroutines).
fn yield_until(mut cond: impl FnMut() -> bool) {
    let mut spins = 0u64;
    while !cond() {
        spins += 1;
        assert!(spins < 100_000_000, "condition never became true");
        gort::yield_now();
    }
}

// ---------------------------------------------------------------- Mutex

/// 64 goroutines × 500 increments of a plain counter, read and written
/// separately with a yield in between every 16th time, so a broken lock
/// loses updates. Holding the lock across yields also queues waiters long
/// enough to reach starvation mode.
fn count_under_mutex() -> u64 {
    const G: usize = 64;
    const N: u64 = 500;
    let counter = Arc::new(Mutex::new(0u64));
    let c = Arc::clone(&counter);
    go_all(G, move |_| {
        for i in 0..N {
            let mut guard = c.lock();
            let v = *guard;
            if i % 16 == 0 {
                gort::yield_now();
            }
            *guard = v + 1;
        }
    });
    let total = *counter.lock();
    assert_eq!(total, G as u64 * N);
    total
}

#[test]
fn mutex_counts_every_increment() {
    count_under_mutex();
}

#[test]
fn mutex_counts_every_increment_on_one_p() {
    on_procs(1, count_under_mutex);
}

#[test]
fn mutex_counts_every_increment_on_four_ps() {
    on_procs(4, count_under_mutex);
}

/// One goroutine re-locks in a loop, yielding while it holds the lock (so
/// the other must queue, and the relocker could barge forever in a plain
/// FIFO-less lock); the waiter must get the lock. Starvation mode hands it
/// over after the waiter has waited 1 ms.
fn waiter_gets_the_lock(yield_while_holding: bool) {
    // Typically a few thousand (one P) or a few hundred thousand (tight
    // loop); the bound only turns a livelock into a failure.
    const BOUND: usize = 50_000_000;
    let m = Arc::new(Mutex::new(false));
    let relocks = Arc::new(AtomicUsize::new(0));
    let hog = {
        let (m, relocks) = (Arc::clone(&m), Arc::clone(&relocks));
        gort::go(move || {
            loop {
                let guard = m.lock();
                if *guard {
                    return;
                }
                let n = relocks.fetch_add(1, Ordering::Relaxed);
                assert!(n < BOUND, "the waiting goroutine starved");
                if yield_while_holding {
                    gort::yield_now();
                }
                drop(guard);
            }
        })
    };
    // Let the hog get going first, so the waiter meets a held lock.
    yield_until(|| relocks.load(Ordering::Relaxed) > 10);
    let waiter = {
        let m = Arc::clone(&m);
        gort::go(move || *m.lock() = true)
    };
    waiter.join().unwrap();
    hog.join().unwrap();
}

#[test]
fn mutex_waiter_is_not_starved_on_one_p() {
    on_procs(1, || waiter_gets_the_lock(true));
}

#[test]
fn mutex_waiter_is_not_starved_by_a_tight_relock_loop() {
    on_procs(4, || waiter_gets_the_lock(false));
}

#[test]
fn mutex_try_lock() {
    let m = Arc::new(Mutex::new(1));
    let held = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let holder = {
        let (m, held, release) = (Arc::clone(&m), Arc::clone(&held), Arc::clone(&release));
        gort::go(move || {
            let mut guard = m.lock();
            held.wait();
            release.wait();
            *guard = 2;
        })
    };
    held.wait();
    assert!(
        m.try_lock().is_none(),
        "try_lock succeeded while a goroutine holds the lock"
    );
    release.wait();
    holder.join().unwrap();
    let guard = m.try_lock().expect("try_lock failed on a free mutex");
    assert_eq!(*guard, 2);
    assert!(m.try_lock().is_none(), "try_lock succeeded on a held mutex");
}

#[test]
fn mutex_shared_by_plain_threads_and_goroutines() {
    // A goroutine holds the lock while the test thread (not an M) blocks on it.
    let m = Arc::new(Mutex::new(0u64));
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (m, held) = (Arc::clone(&m), Arc::clone(&held));
        gort::go(move || {
            let mut guard = m.lock();
            held.wait();
            for _ in 0..100 {
                gort::yield_now();
            }
            *guard = 1;
        })
    };
    held.wait();
    assert_eq!(*m.lock(), 1, "the thread got the lock while the goroutine held it");
    holder.join().unwrap();

    // Threads and goroutines increment together; a thread's unlock wakes
    // parked goroutines and the other way round.
    const N: u64 = 2000;
    let goroutines: Vec<_> = (0..8)
        .map(|_| {
            let m = Arc::clone(&m);
            gort::go(move || {
                for i in 0..N {
                    let mut guard = m.lock();
                    let v = *guard;
                    if i % 64 == 0 {
                        gort::yield_now();
                    }
                    *guard = v + 1;
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..N {
                    let mut guard = m.lock();
                    let v = *guard;
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    *guard = v + 1;
                }
            })
        })
        .collect();
    goroutines.into_iter().for_each(|h| h.join().unwrap());
    threads.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*m.lock(), 1 + 11 * N);
}

#[test]
fn mutex_is_released_by_a_panic_and_not_poisoned() {
    let m = Arc::new(Mutex::new(5));
    let m2 = Arc::clone(&m);
    let r = quietly(|| {
        gort::go(move || {
            let _guard = m2.lock();
            panic!("while holding the lock");
        })
        .join()
    });
    assert!(r.is_err());
    assert_eq!(*m.lock(), 5);
}

/// A goroutine that blocks while unwinding a panic (a `Drop` locking a
/// contended mutex) resumes on the thread it panicked on: std counts panics
/// per thread, so elsewhere `panicking()` would be false mid-unwind and the
/// goroutine's `catch_unwind` would wrap that thread's count.
#[test]
fn a_goroutine_blocked_while_unwinding_resumes_on_its_thread() {
    struct LockOnDrop(Arc<Mutex<()>>, Arc<std::sync::Mutex<Vec<(bool, bool)>>>);
    impl Drop for LockOnDrop {
        fn drop(&mut self) {
            let before = std::thread::current().id();
            let _guard = self.0.lock();
            let same_thread = std::thread::current().id() == before;
            self.1.lock().unwrap().push((same_thread, std::thread::panicking()));
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    quietly(|| {
        on_procs(2, move || {
            for _ in 0..20 {
                let m = Arc::new(Mutex::new(()));
                let guard = m.lock();
                let on_drop = LockOnDrop(Arc::clone(&m), Arc::clone(&record));
                let h = gort::go(move || {
                    let _on_drop = on_drop;
                    panic!("unwinding");
                });
                wait_until_parked(&h, "sync.Mutex.Lock");
                drop(guard);
                assert!(h.join().is_err());
            }
        })
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter().all(|&(same_thread, panicking)| same_thread && panicking),
        "{seen:?}"
    );
}

#[test]
fn mutex_statics_defaults_and_accessors() {
    static COUNT: Mutex<u32> = Mutex::new(0);
    go_all(10, |_| *COUNT.lock() += 1);
    assert_eq!(*COUNT.lock(), 10);

    let mut m: Mutex<Vec<u8>> = Mutex::default();
    m.get_mut().push(1);
    assert_eq!(format!("{m:?}"), "Mutex { data: [1], .. }");
    let guard = m.lock();
    assert_eq!(format!("{m:?}"), "Mutex { data: <locked>, .. }");
    drop(guard);
    assert_eq!(m.into_inner(), [1]);
}

// ---------------------------------------------------------------- RwLock

#[test]
fn rwlock_readers_are_inside_together() {
    on_procs(2, || {
        let lock = Arc::new(RwLock::new(7));
        let both_inside = Arc::new(Barrier::new(2));
        // Each reader holds its read lock across a barrier that only opens
        // when both have arrived: it opens only if two readers are inside.
        let sums = {
            let (lock, both_inside) = (Arc::clone(&lock), Arc::clone(&both_inside));
            go_all(2, move |_| {
                let guard = lock.read();
                both_inside.wait();
                assert!(
                    lock.try_write().is_none(),
                    "try_write succeeded while readers are inside"
                );
                assert!(lock.try_read().is_some(), "try_read failed with only readers inside");
                *guard
            })
        };
        assert_eq!(sums, [7, 7]);
        assert!(lock.try_write().is_some());
    });
}

fn writer_gets_in_between_readers() {
    const READERS: usize = 4;
    const BOUND: usize = 10_000_000;
    let lock = Arc::new(RwLock::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    // Readers overlap: each yields while holding its read lock, so there is
    // always a reader inside unless new readers are held back.
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (lock, stop, reads) = (Arc::clone(&lock), Arc::clone(&stop), Arc::clone(&reads));
            gort::go(move || {
                while !stop.load(Ordering::Relaxed) {
                    let guard = lock.read();
                    gort::yield_now();
                    let n = reads.fetch_add(1, Ordering::Relaxed);
                    assert!(n < BOUND, "the writer starved");
                    drop(guard);
                }
            })
        })
        .collect();
    yield_until(|| reads.load(Ordering::Relaxed) > 100);
    *lock.write() += 1;
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*lock.read(), 1);
}

#[test]
fn rwlock_writer_is_not_starved_by_continuous_readers() {
    on_procs(2, writer_gets_in_between_readers);
}

#[test]
fn rwlock_writer_is_not_starved_on_one_p() {
    on_procs(1, writer_gets_in_between_readers);
}

#[test]
fn rwlock_writers_exclude_each_other_and_readers() {
    const N: u64 = 300;
    let lock = Arc::new(RwLock::new((0u64, 0u64)));
    let l = Arc::clone(&lock);
    go_all(16, move |i| {
        for j in 0..N {
            if i % 2 == 0 {
                // Writers keep both halves equal, with a yield in between.
                let mut guard = l.write();
                guard.0 += 1;
                if j % 8 == 0 {
                    gort::yield_now();
                }
                guard.1 += 1;
            } else {
                let guard = l.read();
                assert_eq!(guard.0, guard.1, "a reader saw a half-done write");
            }
        }
    });
    assert_eq!(*lock.read(), (8 * N, 8 * N));
}

#[test]
fn rwlock_from_a_plain_thread() {
    let lock = Arc::new(RwLock::new(0));
    let held = Arc::new(Barrier::new(2));
    let writer = {
        let (lock, held) = (Arc::clone(&lock), Arc::clone(&held));
        gort::go(move || {
            let mut guard = lock.write();
            held.wait();
            for _ in 0..100 {
                gort::yield_now();
            }
            *guard = 1;
        })
    };
    held.wait();
    assert_eq!(*lock.read(), 1, "a thread read while a goroutine held the write lock");
    writer.join().unwrap();
    let lock = Arc::try_unwrap(lock).unwrap();
    assert_eq!(format!("{lock:?}"), "RwLock { data: 1, .. }");
    assert_eq!(lock.into_inner(), 1);
}

// ---------------------------------------------------------------- Condvar

#[test]
fn condvar_producers_and_consumers() {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: u64 = 1000;
    const CAP: usize = 8;
    struct Queue {
        items: Mutex<(VecDeque<u64>, u64)>, // (items, producers finished)
        not_empty: Condvar,
        not_full: Condvar,
    }
    let q = Arc::new(Queue {
        items: Mutex::new((VecDeque::new(), 0)),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = Arc::clone(&q);
            gort::go(move || {
                for i in 1..=PER_PRODUCER {
                    let mut s = q.not_full.wait_while(q.items.lock(), |s| s.0.len() == CAP);
                    s.0.push_back(p * PER_PRODUCER + i);
                    drop(s);
                    q.not_empty.notify_one();
                }
                q.items.lock().1 += 1;
                q.not_empty.notify_all();
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let q = Arc::clone(&q);
            gort::go(move || {
                let mut sum = 0;
                loop {
                    let mut s = q
                        .not_empty
                        .wait_while(q.items.lock(), |s| s.0.is_empty() && s.1 < PRODUCERS);
                    let Some(v) = s.0.pop_front() else {
                        return sum; // empty and every producer finished
                    };
                    drop(s);
                    q.not_full.notify_one();
                    sum += v;
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|h| h.join().unwrap());
    let total: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
    let n = PRODUCERS * PER_PRODUCER;
    assert_eq!(total, n * (n + 1) / 2);
}

#[test]
fn condvar_notify_all_wakes_every_waiter() {
    const WAITERS: usize = 20;
    on_procs(2, || {
        // (waiting, go)
        let state = Arc::new((Mutex::new((0, false)), Condvar::new()));
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let state = Arc::clone(&state);
                gort::go(move || {
                    let (m, cv) = &*state;
                    let mut s = m.lock();
                    s.0 += 1;
                    // Each wait returns at most once per notify: a single
                    // notify_all must release everyone.
                    while !s.1 {
                        s = cv.wait(s);
                    }
                })
            })
            .collect();
        let (m, cv) = &*state;
        // Every waiter counted itself under the lock and released it only
        // by waiting: when we see them all, all are registered.
        yield_until(|| m.lock().0 == WAITERS);
        m.lock().1 = true;
        cv.notify_all();
        waiters.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn condvar_notify_one_wakes_a_waiter_each_time() {
    on_procs(1, || {
        // (waiting, tickets)
        let state = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let state = Arc::clone(&state);
                gort::go(move || {
                    let (m, cv) = &*state;
                    let mut s = m.lock();
                    s.0 += 1;
                    s = cv.wait_while(s, |s| s.1 == 0);
                    s.1 -= 1;
                    s.0 -= 1;
                })
            })
            .collect();
        let (m, cv) = &*state;
        for left in (1..=3).rev() {
            // All `left` remaining waiters are registered; one ticket and one
            // notify_one must let exactly one of them through.
            yield_until(|| m.lock().0 == left);
            m.lock().1 += 1;
            cv.notify_one();
            yield_until(|| m.lock().0 == left - 1);
            assert_eq!(m.lock().1, 0);
        }
        waiters.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn condvar_wait_timeout_times_out_without_a_notify() {
    // On a goroutine (the deadline is a runtime timer)...
    let timed_out = gort::go(|| {
        let (m, cv) = (Mutex::new(3), Condvar::new());
        let (guard, r) = cv.wait_timeout(m.lock(), Duration::from_millis(5));
        assert_eq!(*guard, 3);
        r.timed_out()
    })
    .join()
    .unwrap();
    assert!(timed_out);
    // ...and on a plain thread (a timed futex wait).
    let (m, cv) = (Mutex::new(3), Condvar::new());
    let (guard, r) = cv.wait_timeout(m.lock(), Duration::from_millis(5));
    assert!(r.timed_out());
    assert_eq!(*guard, 3);
    drop(guard);
    // The timed-out waiter left the queue: a later notify has nobody to wake
    // and a later wait is not satisfied by a stale entry.
    cv.notify_one();
    let (_guard, r) = cv.wait_timeout_while(m.lock(), Duration::from_millis(1), |v| *v == 3);
    assert!(r.timed_out());
}

#[test]
fn condvar_wait_timeout_returns_early_when_notified() {
    for on_thread in [false, true] {
        let state = Arc::new((Mutex::new((false, false)), Condvar::new())); // (waiting, notified)
        let s2 = Arc::clone(&state);
        let waiter = move || {
            let (m, cv) = &*s2;
            let mut s = m.lock();
            s.0 = true;
            let (s, r) = cv.wait_timeout_while(s, Duration::from_secs(3600), |s| !s.1);
            assert!(s.1);
            r.timed_out()
        };
        let timed_out = if on_thread {
            let h = std::thread::spawn(waiter);
            notify_when_waiting(&state);
            h.join().unwrap()
        } else {
            let h = gort::go(waiter);
            notify_when_waiting(&state);
            h.join().unwrap()
        };
        assert!(!timed_out);
    }

    fn notify_when_waiting(state: &(Mutex<(bool, bool)>, Condvar)) {
        let (m, cv) = state;
        loop {
            let mut s = m.lock();
            if s.0 {
                s.1 = true;
                drop(s);
                cv.notify_one();
                return;
            }
            drop(s);
            std::thread::yield_now();
        }
    }
}

// ---------------------------------------------------------------- Once, OnceLock

#[test]
fn once_runs_exactly_once_under_100_concurrent_callers() {
    let once = Arc::new(Once::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let value = Arc::new(AtomicUsize::new(0));
    let (o, r, v) = (Arc::clone(&once), Arc::clone(&runs), Arc::clone(&value));
    let seen = go_all(100, move |_| {
        o.call_once(|| {
            r.fetch_add(1, Ordering::Relaxed);
            // Keep the others arriving while the closure runs.
            for _ in 0..10 {
                gort::yield_now();
            }
            v.store(42, Ordering::Relaxed);
        });
        // Every caller returns after the closure's effects.
        v.load(Ordering::Relaxed)
    });
    assert_eq!(runs.load(Ordering::Relaxed), 1);
    assert!(seen.iter().all(|&v| v == 42));
    assert!(once.is_completed());
}

#[test]
fn once_is_retried_after_a_panicking_closure() {
    let once = Once::new();
    let r = quietly(|| std::panic::catch_unwind(|| once.call_once(|| panic!("init failed"))));
    assert!(r.is_err());
    assert!(!once.is_completed());
    let mut ran = false;
    once.call_once(|| ran = true);
    assert!(ran && once.is_completed());
}

#[test]
fn oncelock_get_or_init_race_has_one_winner() {
    static CELL: OnceLock<u64> = OnceLock::new();
    let inits = Arc::new(AtomicUsize::new(0));
    let i = Arc::clone(&inits);
    let values = go_all(100, move |_| {
        *CELL.get_or_init(|| {
            i.fetch_add(1, Ordering::Relaxed);
            gort::yield_now();
            gort::current().id()
        })
    });
    assert_eq!(inits.load(Ordering::Relaxed), 1);
    assert!(values.iter().all(|&v| v == values[0]));
    assert_eq!(CELL.get(), Some(&values[0]));
}

#[test]
fn oncelock_set_get_into_inner() {
    let cell = OnceLock::new();
    assert_eq!(format!("{cell:?}"), "OnceLock(<uninit>)");
    assert_eq!(cell.get(), None);
    assert_eq!(cell.set(String::from("a")), Ok(()));
    assert_eq!(cell.set(String::from("b")), Err(String::from("b")));
    assert_eq!(cell.get_or_init(|| unreachable!()), "a");
    assert_eq!(format!("{cell:?}"), "OnceLock(\"a\")");
    assert_eq!(cell.into_inner(), Some(String::from("a")));
    assert_eq!(OnceLock::<u8>::new().into_inner(), None);

    // A panicking initialiser leaves the cell empty for the next caller.
    let cell = OnceLock::new();
    let r = quietly(|| std::panic::catch_unwind(|| *cell.get_or_init(|| panic!("init failed"))));
    assert!(r.is_err());
    assert_eq!(*cell.get_or_init(|| 9), 9);
}

#[test]
fn oncelock_drops_its_value_once() {
    let value = Arc::new(());
    let cell = OnceLock::new();
    cell.set(Arc::clone(&value)).unwrap();
    assert_eq!(Arc::strong_count(&value), 2);
    drop(cell);
    assert_eq!(Arc::strong_count(&value), 1);
}

// ---------------------------------------------------------------- Semaphore

#[test]
fn semaphore_bounds_the_units_in_use() {
    const CAP: usize = 5;
    let sem = Arc::new(Semaphore::new(CAP));
    let in_use = Arc::new(AtomicUsize::new(0));
    let (s, u) = (Arc::clone(&sem), Arc::clone(&in_use));
    go_all(40, move |i| {
        let n = 1 + i % 3;
        for _ in 0..50 {
            s.acquire(n);
            let now = u.fetch_add(n, Ordering::SeqCst) + n;
            assert!(now <= CAP, "{now} units in use, capacity {CAP}");
            gort::yield_now();
            u.fetch_sub(n, Ordering::SeqCst);
            s.release(n);
        }
    });
    assert!(sem.try_acquire(CAP), "units leaked");
}

#[test]
fn semaphore_is_fifo_and_a_large_head_request_blocks_smaller_ones() {
    on_procs(1, || {
        let sem = Arc::new(Semaphore::new(10));
        sem.acquire(5);
        let big_done = Arc::new(AtomicBool::new(false));
        let small_done = Arc::new(AtomicBool::new(false));
        let big = {
            let (sem, done) = (Arc::clone(&sem), Arc::clone(&big_done));
            gort::go(move || {
                sem.acquire(8);
                done.store(true, Ordering::SeqCst);
            })
        };
        // `try_acquire(0)` fails exactly when someone is queued.
        yield_until(|| !sem.try_acquire(0));
        // 5 units are free, but the queued request for 8 comes first.
        assert!(!sem.try_acquire(1), "a small request overtook a queued large one");
        let small = {
            let (sem, done) = (Arc::clone(&sem), Arc::clone(&small_done));
            gort::go(move || {
                sem.acquire(1);
                done.store(true, Ordering::SeqCst);
            })
        };
        // Let the small request queue behind the large one and give it
        // every chance to (wrongly) get through.
        for _ in 0..100 {
            gort::yield_now();
        }
        assert!(
            !small_done.load(Ordering::SeqCst),
            "a small request overtook a queued large one"
        );
        assert!(!big_done.load(Ordering::SeqCst));
        sem.release(5); // now 8 goes to the head, then 1 fits too
        big.join().unwrap();
        small.join().unwrap();
        assert!(!sem.try_acquire(2), "9 of 10 units should be held");
        sem.release(9);
        assert!(sem.try_acquire(10));
    });
}

#[test]
fn semaphore_from_a_plain_thread() {
    let sem = Arc::new(Semaphore::new(1));
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (sem, held) = (Arc::clone(&sem), Arc::clone(&held));
        gort::go(move || {
            sem.acquire(1);
            held.wait();
            for _ in 0..100 {
                gort::yield_now();
            }
            sem.release(1);
        })
    };
    held.wait();
    sem.acquire(1); // blocks this thread until the goroutine releases
    holder.join().unwrap();
    sem.release(1);
    assert_eq!(sem.capacity(), 1);
}

#[test]
#[should_panic(expected = "semaphore: acquire more than capacity")]
fn semaphore_acquire_beyond_capacity_panics() {
    Semaphore::new(3).acquire(4);
}

#[test]
#[should_panic(expected = "semaphore: released more than held")]
fn semaphore_release_beyond_held_panics() {
    let sem = Semaphore::new(3);
    sem.acquire(2);
    sem.release(3);
}

// ---------------------------------------------------------------- Barrier

#[test]
fn barrier_one_leader_per_round_and_reusable() {
    const N: usize = 16;
    const ROUNDS: usize = 20;
    let barrier = Arc::new(Barrier::new(N));
    let arrived: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let leaders: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let (b, a, l) = (Arc::clone(&barrier), Arc::clone(&arrived), Arc::clone(&leaders));
    go_all(N, move |i| {
        for round in 0..ROUNDS {
            a[round].fetch_add(1, Ordering::SeqCst);
            if (i + round) % 5 == 0 {
                gort::yield_now();
            }
            if b.wait().is_leader() {
                l[round].fetch_add(1, Ordering::SeqCst);
            }
            assert_eq!(
                a[round].load(Ordering::SeqCst),
                N,
                "passed the barrier before all arrived"
            );
        }
    });
    for (round, leaders) in leaders.iter().enumerate() {
        assert_eq!(leaders.load(Ordering::SeqCst), 1, "round {round}");
    }
}

#[test]
fn barrier_joins_goroutines_and_threads() {
    let barrier = Arc::new(Barrier::new(4));
    let goroutines: Vec<_> = (0..2)
        .map(|_| {
            let b = Arc::clone(&barrier);
            gort::go(move || b.wait().is_leader())
        })
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || b.wait().is_leader())
        })
        .collect();
    let leaders = goroutines.into_iter().map(|h| h.join().unwrap()).filter(|&l| l).count()
        + threads.into_iter().map(|h| h.join().unwrap()).filter(|&l| l).count();
    assert_eq!(leaders, 1);
}

#[test]
#[should_panic(expected = "Barrier::new: n must be at least 1")]
fn barrier_of_zero_panics() {
    let _ = Barrier::new(std::hint::black_box(0));
}

// ---- WaitGroup: go, guard, add(usize), wait_timeout, wait_ctx; Semaphore:
// acquire_timeout, acquire_ctx. A bounded wait that gives up must leave the
// primitive exactly as if it had never waited.

#[test]
fn waitgroup_go_counts_each_task_and_a_panicking_one_still_calls_done() {
    on_procs(2, || {
        let wg = Arc::new(gort::sync::WaitGroup::new());
        let hits = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let hits = Arc::clone(&hits);
            wg.go(move || {
                hits.fetch_add(1, Ordering::SeqCst);
            });
        }
        quietly(|| wg.go(|| panic!("a task panics")));
        wg.wait();
        assert_eq!(hits.load(Ordering::SeqCst), 100);
    });
}

#[test]
fn waitgroup_guard_calls_done_when_dropped() {
    let wg = Arc::new(gort::sync::WaitGroup::new());
    let g1 = wg.guard();
    let g2 = wg.guard();
    assert!(!wg.wait_timeout(Duration::ZERO));
    drop(g1);
    assert!(!wg.wait_timeout(Duration::from_millis(1)));
    drop(g2);
    assert!(wg.wait_timeout(Duration::ZERO));
    assert_eq!(format!("{wg:?}"), "WaitGroup { counter: 0 }");
}

#[test]
fn waitgroup_add_takes_usize_and_refuses_more_than_u32() {
    let wg = gort::sync::WaitGroup::new();
    wg.add(3usize);
    wg.add(0);
    (0..3).for_each(|_| wg.done());
    wg.wait();
    let too_many = quietly(|| std::panic::catch_unwind(|| wg.add(1 << 32))).unwrap_err();
    let msg = too_many.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("WaitGroup counter overflow"), "{msg}");
    // The refused add left the counter alone.
    assert!(wg.wait_timeout(Duration::ZERO));
}

/// Waiters that time out or are cancelled withdraw themselves; the group
/// is reusable and the waiters still parked are woken by the zero.
#[test]
fn waitgroup_bounded_waits_withdraw_and_leave_the_group_usable() {
    on_procs(2, || {
        let wg = Arc::new(gort::sync::WaitGroup::new());
        wg.add(1);
        let (ctx, cancel) = gort::context::Context::background().with_cancel();
        let timed: Vec<_> = (0..5)
            .map(|_| {
                let wg = Arc::clone(&wg);
                gort::go(move || wg.wait_timeout(Duration::from_millis(5)))
            })
            .collect();
        let cancelled: Vec<_> = (0..5)
            .map(|_| {
                let (wg, ctx) = (Arc::clone(&wg), ctx.clone());
                gort::go(move || wg.wait_ctx(&ctx))
            })
            .collect();
        let patient: Vec<_> = (0..5)
            .map(|_| {
                let wg = Arc::clone(&wg);
                gort::go(move || wg.wait())
            })
            .collect();
        for h in &cancelled {
            wait_until_parked(h, "sync.WaitGroup.Wait");
        }
        cancel.cancel();
        for h in cancelled {
            assert_eq!(h.join().unwrap(), Err(gort::context::Error::Canceled));
        }
        for h in timed {
            assert!(!h.join().unwrap());
        }
        for h in &patient {
            wait_until_parked(h, "sync.WaitGroup.Wait");
        }
        // Only the five patient waiters are still counted.
        wg.done();
        for h in patient {
            h.join().unwrap();
        }
        // Reuse: a new round with a bounded wait that succeeds.
        wg.add(1);
        let w = Arc::clone(&wg);
        let waiter = gort::go(move || w.wait_timeout(Duration::from_secs(60)));
        wait_until_parked(&waiter, "sync.WaitGroup.Wait");
        wg.done();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn waitgroup_wait_ctx_from_a_plain_thread() {
    let wg = Arc::new(gort::sync::WaitGroup::new());
    wg.add(1);
    let (ctx, _cancel) = gort::context::Context::background().with_timeout(Duration::from_millis(5));
    assert_eq!(wg.wait_ctx(&ctx), Err(gort::context::Error::DeadlineExceeded));
    wg.done();
    assert_eq!(wg.wait_ctx(&ctx), Ok(()), "zero wins over a done context");
}

/// x/sync's TestAcquireCancelled-style: a waiter that gives up holds
/// nothing, and when it was the head that blocked smaller requests, they
/// are granted at once.
#[test]
fn semaphore_a_head_that_gives_up_lets_those_behind_it_through() {
    on_procs(2, || {
        let sem = Arc::new(Semaphore::new(4));
        sem.acquire(3);
        // Head: wants 4, cannot fit while 3 are held, gives up.
        let (ctx, cancel) = gort::context::Context::background().with_cancel();
        let (s, c) = (Arc::clone(&sem), ctx.clone());
        let head = gort::go(move || s.acquire_ctx(&c, 4));
        wait_until_parked(&head, "semacquire");
        // Behind it: wants 1, fits, but FIFO keeps it waiting.
        let s = Arc::clone(&sem);
        let small = gort::go(move || s.acquire(1));
        wait_until_parked(&small, "semacquire");
        cancel.cancel();
        assert_eq!(head.join().unwrap(), Err(gort::context::Error::Canceled));
        small.join().unwrap(); // granted when the head left
        assert!(!sem.try_acquire(1), "3 + 1 held");
        sem.release(4);
        assert!(sem.try_acquire(4), "nothing leaked to the cancelled waiter");
    });
}

#[test]
fn semaphore_acquire_timeout_and_ctx_succeed_when_units_come_in_time() {
    on_procs(2, || {
        let sem = Arc::new(Semaphore::new(2));
        sem.acquire(2);
        let s = Arc::clone(&sem);
        let timed = gort::go(move || s.acquire_timeout(1, Duration::from_secs(60)));
        let (ctx, _cancel) = gort::context::Context::background().with_timeout(Duration::from_secs(60));
        let s = Arc::clone(&sem);
        let bounded = gort::go(move || s.acquire_ctx(&ctx, 1));
        wait_until_parked(&timed, "semacquire");
        wait_until_parked(&bounded, "semacquire");
        sem.release(2);
        assert!(timed.join().unwrap());
        assert_eq!(bounded.join().unwrap(), Ok(()));
        assert!(!sem.acquire_timeout(1, Duration::from_millis(2)));
        assert!(!sem.acquire_timeout(1, Duration::ZERO));
        sem.release(2);
    });
}

/// Many waiters with short deadlines racing releases: every unit is
/// accounted for — whoever reports success holds one, nobody else does.
#[test]
fn semaphore_timeouts_racing_releases_lose_no_units() {
    on_procs(2, || {
        let sem = Arc::new(Semaphore::new(3));
        let got = go_all(200, {
            let sem = Arc::clone(&sem);
            move |i| {
                let ok = sem.acquire_timeout(1, Duration::from_micros(50 * (i as u64 % 7)));
                if ok {
                    gort::yield_now();
                    sem.release(1);
                }
                ok
            }
        });
        assert!(got.iter().any(|&ok| ok));
        assert!(sem.try_acquire(3), "all units free at the end");
    });
}
