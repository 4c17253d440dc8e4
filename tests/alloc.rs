//! Allocation counts of hot paths, with a counting global allocator (its
//! own test binary, so no other test's allocations are counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// A goroutine that sleeps in a loop reuses its wait token and its timer,
/// and the timers run without a buffer of their own, so once warm a sleep
/// allocates nothing (the whole process is counted: a few allocations of
/// the runtime's own threads are allowed for).
#[test]
fn a_sleeping_loop_allocates_nothing_once_warm() {
    const SLEEPS: u64 = 200;
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
