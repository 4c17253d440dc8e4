//! Every API that takes a duration or a deadline, at the edges: zero
//! expires at once (never hangs), and a duration so large that the deadline
//! is past the clock's range (`Duration::MAX`, or `Instant::now() + d`
//! overflowing, or beyond the timer clock's 584 years) never expires — no
//! panic, no overflow, no early wake-up, and a timer that cannot fire does
//! not fire. "Never returned" is checked by looking at a waiter a while
//! after it started and then waking it for real: the wait must end with
//! the event, not with a timeout. No assertion depends on timing.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gort::chan::{RecvTimeoutError, SendTimeoutError, bounded};
use gort::time::{Ticker, Timer};
use gort::{Runtime, select};

mod common;

/// Durations whose deadline lies past every clock: `Duration::MAX`, one
/// where `Instant::now() + d` overflows, and one whose `Instant` exists
/// but lies beyond the timer clock (600 years).
fn huge() -> [Duration; 3] {
    [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(600 * 365 * 24 * 3600),
    ]
}

/// How long a waiter is left alone before it is checked on. Not a bound
/// on anything: a correct waiter never returns by itself.
const LOOK_AFTER: Duration = Duration::from_millis(20);

/// Run `wait` on a goroutine and check, a while later, that it has not
/// returned by itself; its handle.
fn still_waiting<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> gort::JoinHandle<T> {
    let returned = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&returned);
    let h = gort::go(move || {
        let v = wait();
        r.store(true, Ordering::SeqCst);
        v
    });
    gort::time::sleep(LOOK_AFTER);
    assert!(
        !returned.load(Ordering::SeqCst),
        "a wait with a never-expiring timeout ended by itself"
    );
    h
}

/// `still_waiting(wait)`, then `wake` it: its result.
fn stays_blocked_until_woken<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static, wake: impl FnOnce()) -> T {
    let h = still_waiting(wait);
    wake();
    h.join().unwrap()
}

/// Run `f` as the main goroutine of a runtime of its own; a hang fails.
fn in_runtime(f: impl FnOnce() + Send + 'static) {
    common::guarded(|| Runtime::builder().procs(2).build().unwrap().block_on(f));
}

#[test]
fn a_timer_that_can_never_fire_never_fires_and_is_not_disconnected() {
    in_runtime(|| {
        for d in huge() {
            // In a select: the arm must never be ready (it was, at once:
            // the receiver was disconnected).
            let rx = gort::time::after(d);
            let ready = select! {
                recv(rx) -> _ => true,
                default(LOOK_AFTER) => false,
            };
            assert!(!ready, "after({d:?}) was ready");
            assert_eq!(
                gort::time::after(d).recv_timeout(LOOK_AFTER),
                Err(RecvTimeoutError::Timeout),
                "after({d:?})"
            );
            assert_eq!(
                gort::time::tick(d).recv_timeout(LOOK_AFTER),
                Err(RecvTimeoutError::Timeout),
                "tick({d:?})"
            );
            let t = Timer::new(d);
            assert_eq!(t.receiver().recv_timeout(LOOK_AFTER), Err(RecvTimeoutError::Timeout));
            assert!(t.stop(), "Timer::new({d:?}) was pending: stop must say so");
            assert!(!t.reset(d), "a stopped timer was not pending");
            assert!(t.reset(Duration::from_millis(1)), "re-armed for never: pending");
            t.receiver().recv().unwrap();
            let ticker = Ticker::new(d);
            assert_eq!(
                ticker.receiver().recv_timeout(LOOK_AFTER),
                Err(RecvTimeoutError::Timeout)
            );
            ticker.reset(Duration::from_millis(1));
            ticker.receiver().recv().unwrap();
            ticker.reset(d);
            ticker.stop();
        }
    });
}

/// Go's `time.Tick` returns a nil channel for a non-positive duration: a
/// receive blocks for ever. Here: a receiver that never delivers (it
/// panicked, as `Ticker::new` still does, like Go's `NewTicker`).
#[test]
fn tick_of_zero_never_ticks() {
    let rx = gort::go(|| gort::time::tick(Duration::ZERO)).join().unwrap();
    assert_eq!(rx.recv_timeout(LOOK_AFTER), Err(RecvTimeoutError::Timeout));
}

#[test]
fn zero_durations_expire_at_once() {
    in_runtime(|| {
        gort::time::sleep(Duration::ZERO);
        gort::time::after(Duration::ZERO).recv().unwrap();
        Timer::new(Duration::ZERO).receiver().recv().unwrap();
        let t = Timer::new(Duration::from_secs(3600));
        t.reset(Duration::ZERO);
        t.receiver().recv().unwrap();
        let (tx, rx) = bounded::<u8>(0);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
        assert_eq!(tx.send_timeout(1, Duration::ZERO), Err(SendTimeoutError::Timeout(1)));
        let mut sel = gort::chan::Select::new();
        sel.recv(&rx);
        assert!(sel.select_timeout(Duration::ZERO).is_err());
        let timed_out = select! {
            recv(rx) -> _ => false,
            default(Duration::ZERO) => true,
        };
        assert!(timed_out);
        let (m, cv) = (gort::sync::Mutex::new(()), gort::sync::Condvar::new());
        assert!(cv.wait_timeout(m.lock(), Duration::ZERO).1.timed_out());
        assert!(cv.wait_timeout_while(m.lock(), Duration::ZERO, |_| true).1.timed_out());
        let leaked = gort::go(move || tx.send(2).unwrap());
        assert!(gort::runtime::check_leaks(Duration::ZERO).is_err());
        assert_eq!(rx.recv(), Ok(2));
        leaked.join().unwrap();
    });
}

#[test]
fn huge_timeouts_never_expire_and_the_event_still_ends_the_wait() {
    in_runtime(|| {
        for d in huge() {
            drop(still_waiting(move || gort::time::sleep(d)));
            let (tx, rx) = bounded::<u8>(0);
            let (tx2, rx2) = (tx.clone(), rx.clone());
            let got = stays_blocked_until_woken(move || rx2.recv_timeout(d), || tx.send(1).unwrap());
            assert_eq!(got, Ok(1));
            let sent = stays_blocked_until_woken(move || tx2.send_timeout(2, d), || assert_eq!(rx.recv(), Ok(2)));
            assert_eq!(sent, Ok(()));
            let (tx, rx) = bounded::<u8>(0);
            let got = stays_blocked_until_woken(
                move || {
                    let mut sel = gort::chan::Select::new();
                    let i = sel.recv(&rx);
                    let op = sel.select_timeout(d).expect("never times out");
                    assert_eq!(op.index(), i);
                    op.recv(&rx)
                },
                || tx.send(3).unwrap(),
            );
            assert_eq!(got, Ok(3));
            let (tx, rx) = bounded::<u8>(0);
            let got = stays_blocked_until_woken(
                move || {
                    select! {
                        recv(rx) -> v => v.ok(),
                        default(d) => None,
                    }
                },
                || tx.send(4).unwrap(),
            );
            assert_eq!(got, Some(4));
            let pair = Arc::new((gort::sync::Mutex::new(false), gort::sync::Condvar::new()));
            let waiter = Arc::clone(&pair);
            let timed_out = stays_blocked_until_woken(
                move || {
                    let (m, cv) = &*waiter;
                    let (_guard, r) = cv.wait_timeout_while(m.lock(), d, |ready| !*ready);
                    r.timed_out()
                },
                || {
                    *pair.0.lock() = true;
                    pair.1.notify_all();
                },
            );
            assert!(!timed_out);
            let pair = Arc::new((gort::sync::Mutex::new(()), gort::sync::Condvar::new()));
            let waiter = Arc::clone(&pair);
            let timed_out = stays_blocked_until_woken(
                move || {
                    let (m, cv) = &*waiter;
                    cv.wait_timeout(m.lock(), d).1.timed_out()
                },
                || pair.1.notify_all(),
            );
            assert!(!timed_out);
        }
    });
}

/// A huge socket timeout is kept (std reports it back) and never fires; a
/// huge connect timeout connects.
#[test]
fn huge_socket_timeouts_never_expire() {
    in_runtime(|| {
        for d in huge() {
            let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = gort::net::TcpStream::connect_timeout(addr, d).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            server.set_read_timeout(Some(d)).unwrap();
            server.set_write_timeout(Some(d)).unwrap();
            assert!(
                server.read_timeout().unwrap().is_some(),
                "a {d:?} read timeout read back as none"
            );
            assert!(server.write_timeout().unwrap().is_some());
            let got = stays_blocked_until_woken(
                move || {
                    let mut b = [0u8; 1];
                    server.read_exact(&mut b).map(|()| b[0])
                },
                || client.write_all(&[7]).unwrap(),
            );
            assert_eq!(got.unwrap(), 7);
        }
    });
}

#[test]
fn check_leaks_with_a_huge_grace_waits_for_the_goroutines_to_end() {
    common::guarded(|| {
        let rt = Runtime::builder().procs(2).build().unwrap();
        for d in huge() {
            assert!(rt.check_leaks(d).is_ok(), "nothing leaked, with {d:?}");
            let (tx, rx) = bounded::<()>(0);
            rt.block_on(|| drop(gort::go(move || rx.recv().unwrap())));
            let returned = AtomicBool::new(false);
            std::thread::scope(|s| {
                let checker = s.spawn(|| {
                    let ok = rt.check_leaks(d).is_ok();
                    returned.store(true, Ordering::SeqCst);
                    ok
                });
                std::thread::sleep(LOOK_AFTER);
                assert!(!returned.load(Ordering::SeqCst), "check_leaks({d:?}) gave up");
                tx.send(()).unwrap();
                assert!(checker.join().unwrap());
            });
        }
    });
}

/// A slice longer than 2^64 ns was truncated to its low 64 bits: here to
/// 1 ms, and sysmon preempted a goroutine that computes while another
/// waits. A slice that long never ends.
#[test]
fn a_huge_preempt_slice_never_ends() {
    let wrapped_to_1ms = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1_000_001);
    for slice in [wrapped_to_1ms, Duration::MAX] {
        let rt = Runtime::builder().procs(1).preempt_slice(slice).build().unwrap();
        rt.block_on(|| {
            let waiting = gort::go(|| 1);
            let end = Instant::now() + Duration::from_millis(50);
            while Instant::now() < end {
                std::hint::black_box(0);
            }
            waiting.join().unwrap();
        });
        let m = rt.metrics();
        assert_eq!(
            (m.preempt_requests, m.preempts_async),
            (0, 0),
            "a {slice:?} slice ended: preempted"
        );
    }
    assert!(matches!(
        Runtime::builder().preempt_slice(Duration::ZERO).build(),
        Err(gort::Error::InvalidPreemptSlice(_))
    ));
}

/// Idle threads that exit at once, and ones that never do: the runtime
/// works with both.
#[test]
fn thread_keep_alive_of_zero_and_of_forever_both_work() {
    common::guarded(|| {
        for keep_alive in [Duration::ZERO, Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
            let rt = Runtime::builder()
                .procs(2)
                .thread_keep_alive(keep_alive)
                .build()
                .unwrap();
            let sum: u64 = rt.block_on(|| {
                let hs: Vec<_> = (0..50u64)
                    .map(|i| {
                        gort::go(move || {
                            gort::time::sleep(Duration::from_micros(100 * (i % 5)));
                            std::thread::sleep(Duration::from_micros(200));
                            i
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(sum, (0..50).sum());
        }
    });
}

/// A receive from a timer that never fires, with nothing else that could
/// wake it, is a deadlock, reported as one: the timer, queued for never,
/// wakes nobody (it was ready at once, its channel disconnected).
#[test]
fn receiving_from_a_timer_that_never_fires_is_a_deadlock() {
    let Some((status, stderr)) = common::in_child("receiving_from_a_timer_that_never_fires_is_a_deadlock", || {
        let rt = Runtime::builder().procs(2).build().unwrap();
        let got = rt.block_on(|| gort::time::after(Duration::MAX).recv());
        println!("unreachable: the receive ended with {got:?}");
    }) else {
        return;
    };
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("fatal error: all goroutines are asleep - deadlock!\n\n"),
        "{stderr}"
    );
}
