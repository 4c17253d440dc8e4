//! Allocation counts of hot paths, with a counting global allocator (its
//! own test binary, so no other test's allocations are counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gort::chan::{Receiver, Sender, bounded};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; counting
// is a relaxed atomic add, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The tests of this binary run one at a time: each counts the whole
/// process's allocations.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A goroutine that sleeps in a loop reuses its wait token and its timer,
/// and the timers run without a buffer of their own, so once warm a sleep
/// allocates nothing (the whole process is counted: a few allocations of
/// the runtime's own threads are allowed for).
#[test]
fn a_sleeping_loop_allocates_nothing_once_warm() {
    const SLEEPS: u64 = 200;
    let _serial = serial();
    let allocated = gort::go(|| {
        for _ in 0..10 {
            gort::time::sleep(Duration::from_micros(50));
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..SLEEPS {
            gort::time::sleep(Duration::from_micros(50));
        }
        ALLOCATIONS.load(Ordering::Relaxed) - before
    })
    .join()
    .unwrap();
    assert!(allocated < SLEEPS / 10, "{allocated} allocations in {SLEEPS} sleeps");
}

/// `n` round trips through an echoing goroutine, each checked.
fn ping(ping: &Sender<u64>, pong: &Receiver<u64>, n: u64) {
    for i in 0..n {
        ping.send(i).unwrap();
        assert_eq!(pong.recv().unwrap(), i);
    }
}

/// A channel hand-off parks and wakes each side through the wait token its
/// goroutine or thread lends out for the wait (`WaitToken::lend`) and gets
/// back after it, so once warm a ping-pong over unbuffered channels
/// allocates nothing — between two goroutines, and between a plain thread
/// and a goroutine. The runtime's deadlock check is off: whenever the echo
/// goroutine waits for the thread, sysmon's look at the process's threads
/// (`/proc`) allocates, and that is not the hand-off's doing.
#[test]
fn channel_hand_offs_allocate_nothing_once_warm() {
    const ROUNDS: u64 = 2_000;
    let _serial = serial();
    let rt = gort::runtime::Runtime::builder()
        .detect_deadlocks(false)
        .build()
        .unwrap();
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let echo = rt.go(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let (ping_tx, pong_rx, between_goroutines) = rt
        .go(move || {
            ping(&ping_tx, &pong_rx, 10);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            ping(&ping_tx, &pong_rx, ROUNDS);
            let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
            (ping_tx, pong_rx, allocated)
        })
        .join()
        .unwrap();
    ping(&ping_tx, &pong_rx, 10);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ping(&ping_tx, &pong_rx, ROUNDS);
    let from_a_thread = ALLOCATIONS.load(Ordering::Relaxed) - before;
    drop(ping_tx);
    echo.join().unwrap();
    assert!(
        between_goroutines < ROUNDS / 10,
        "{between_goroutines} allocations in {ROUNDS} round trips between goroutines"
    );
    assert!(
        from_a_thread < ROUNDS / 10,
        "{from_a_thread} allocations in {ROUNDS} round trips from a thread"
    );
}
