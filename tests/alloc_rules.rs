//! The runtime's no-allocation rule (`runtime::AllocCheck`), under a
//! program allocator of the simplest kind a user writes: the system
//! allocator behind one spin lock. `AllocCheck` aborts the process if the
//! runtime allocates or frees where it must not (under a scheduler lock, in
//! sysmon's cycle, in the preemption hook), so every test here doubles as
//! a check of that rule on the paths it exercises; and a goroutine stopped
//! by a preemption signal while it holds the spin lock must not stop the
//! runtime (issue 22, A.1). Its own test binary: the global allocator is
//! the whole process's.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The system allocator behind a spin lock: whoever holds it makes every
/// other allocating thread spin.
struct SpinLocked {
    held: AtomicBool,
}

impl SpinLocked {
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let r = f();
        self.held.store(false, Ordering::Release);
        r
    }
}

// SAFETY: every call is forwarded to the system allocator, one at a time.
unsafe impl GlobalAlloc for SpinLocked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        self.with(|| unsafe { System.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        self.with(|| unsafe { System.dealloc(ptr, layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        self.with(|| unsafe { System.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static ALLOC: gort::runtime::AllocCheck<SpinLocked> = gort::runtime::AllocCheck::new(SpinLocked {
    held: AtomicBool::new(false),
});

storm_tests!(
    preemption_inside_a_spin_locked_allocator_never_deadlocks,
    preemption_inside_a_spin_locked_allocator_never_deadlocks_under_chaos
);

/// The scheduler's paths that start threads, hand Ps on and queue
/// goroutines — blocking calls, locked goroutines, timers, sockets, a
/// change of `procs`, a runtime's shutdown — run under `AllocCheck`
/// without tripping it (a violation aborts this process).
#[test]
fn scheduler_paths_keep_the_no_allocation_rule() {
    use std::io::{Read, Write};
    let rt = gort::Runtime::builder()
        .procs(2)
        .preempt_slice(Duration::from_micros(500))
        .name("rules")
        .build()
        .unwrap();
    let echoed = rt.block_on(|| {
        // Blocking calls hand their P to new threads (the spawner's).
        let sleepers: Vec<_> = (0..6)
            .map(|_| gort::go(|| gort::blocking(|| std::thread::sleep(Duration::from_millis(20)))))
            .collect();
        for s in sleepers {
            s.join().unwrap();
        }
        // Un-annotated blocking, found by sysmon.
        gort::go(|| std::thread::sleep(Duration::from_millis(30)))
            .join()
            .unwrap();
        // Locked goroutines parked and readied.
        let (tx, rx) = gort::chan::bounded::<u32>(0);
        let locked: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                gort::go(move || {
                    gort::runtime::lock_os_thread();
                    rx.recv().unwrap()
                })
            })
            .collect();
        for v in 0..3 {
            tx.send(v).unwrap();
        }
        let sum: u32 = locked.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 3);
        // Spinners preempted by signal while timers fire.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                gort::go(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_add(1);
                    }
                    n
                })
            })
            .collect();
        for _ in 0..10 {
            gort::time::sleep(Duration::from_millis(2));
        }
        gort::runtime::set_procs(3);
        gort::runtime::set_procs(2);
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        // A socket round trip through the poller.
        let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = gort::go(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&buf).unwrap();
        });
        let mut client = gort::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        server.join().unwrap();
        back
    });
    assert_eq!(&echoed, b"hello");
    assert!(rt.metrics().syscall_handoffs + rt.metrics().blocked_detections > 0);
    drop(rt);
}
