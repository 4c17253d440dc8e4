//! sysmon, preemption, system calls and locked threads (issue 5): a
//! spinning goroutine cannot starve the others, a blocking call cannot
//! stall the scheduler, and a goroutine locked to its thread stays there.
//!
//! No timing assertions: each test checks an ordering or a count that only
//! holds if the mechanism worked, with generous hang guards.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::{CHILD_ENV, gettid as tid, in_child};

fn runtime(procs: usize) -> gort::Runtime {
    sliced_runtime(procs, Duration::from_millis(2))
}

fn sliced_runtime(procs: usize, slice: Duration) -> gort::Runtime {
    gort::Runtime::builder()
        .procs(procs)
        .preempt_slice(slice)
        .build()
        .unwrap()
}

/// `n` goroutines running `body` until `stop` is set.
fn spinners(n: usize, stop: &Arc<AtomicBool>, body: fn(&AtomicBool) -> u64) -> Vec<gort::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            gort::go(move || body(&stop))
        })
        .collect()
}

#[test]
fn std_thread_sleep_does_not_stop_computation() {
    // Eight goroutines block their threads in un-annotated sleeps with only
    // two Ps; a computing goroutine must still finish while they all sleep.
    let rt = runtime(2);
    rt.block_on(|| {
        static WOKE: AtomicUsize = AtomicUsize::new(0);
        let sleepers: Vec<_> = (0..8)
            .map(|_| {
                gort::go(|| {
                    std::thread::sleep(Duration::from_secs(2));
                    WOKE.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // Let the sleepers take both Ps first.
        std::thread::sleep(Duration::from_millis(50));
        let compute = gort::go(|| {
            let (tx, rx) = gort::chan::bounded::<u64>(0);
            let producer = gort::go(move || (0..1000).for_each(|i| tx.send(i).unwrap()));
            let sum: u64 = rx.iter().sum();
            producer.join().unwrap();
            (sum, WOKE.load(Ordering::SeqCst))
        });
        let (sum, woke_when_done) = compute.join().unwrap();
        assert_eq!(sum, 499_500);
        assert_eq!(woke_when_done, 0, "the computation waited for the blocked sleepers");
        sleepers.into_iter().for_each(|h| h.join().unwrap());
        assert!(gort::runtime::metrics().blocked_detections > 0);
    });
}

#[test]
fn blocking_fast_path_keeps_the_p() {
    let rt = runtime(1);
    rt.block_on(|| {
        let before = tid();
        let v = gort::blocking(|| 6 * 7);
        assert_eq!(v, 42);
        // A quick call takes its P straight back: still the same thread,
        // and goroutines keep working.
        assert_eq!(tid(), before);
        assert_eq!(gort::go(|| 1).join().unwrap(), 1);
    });
}

#[test]
fn blocking_slow_path_hands_the_p_off() {
    // One P: while the goroutine blocks in an annotated call, another
    // goroutine must run on that P (on another thread).
    let rt = runtime(1);
    rt.block_on(|| {
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = Arc::clone(&ran);
        let other = gort::go(move || ran2.store(true, Ordering::SeqCst));
        let saw = gort::blocking(|| {
            for _ in 0..2000 {
                if ran.load(Ordering::SeqCst) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        });
        assert!(saw, "the other goroutine never ran while we were in a system call");
        other.join().unwrap();
        // Afterwards this goroutine has a P again and works normally.
        assert_eq!(gort::go(|| 2).join().unwrap(), 2);
        assert!(gort::runtime::metrics().syscall_handoffs > 0);
    });
}

#[test]
fn locked_goroutine_stays_on_its_thread() {
    let rt = runtime(2);
    rt.block_on(|| {
        let h = gort::go(|| {
            gort::runtime::lock_os_thread();
            gort::runtime::lock_os_thread();
            let me = tid();
            let (tx, rx) = gort::chan::bounded::<u32>(0);
            let peer = gort::go(move || (0..200).for_each(|i| tx.send(i).unwrap()));
            for i in 0..200 {
                assert_eq!(rx.recv().unwrap(), i);
                gort::yield_now();
                if i % 50 == 0 {
                    gort::time::sleep(Duration::from_millis(1));
                }
                assert_eq!(tid(), me, "a locked goroutine moved");
            }
            peer.join().unwrap();
            // Still locked after one unlock (calls nest).
            gort::runtime::unlock_os_thread();
            gort::yield_now();
            assert_eq!(tid(), me);
            gort::runtime::unlock_os_thread();
        });
        h.join().unwrap();
    });
}

#[test]
fn a_locked_thread_runs_no_other_goroutine() {
    let rt = runtime(1);
    rt.block_on(|| {
        let locked_tid = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (lt, st) = (Arc::clone(&locked_tid), Arc::clone(&stop));
        let locked = gort::go(move || {
            gort::runtime::lock_os_thread();
            lt.store(tid() as u64, Ordering::SeqCst);
            while !st.load(Ordering::SeqCst) {
                gort::time::sleep(Duration::from_micros(200));
            }
        });
        while locked_tid.load(Ordering::SeqCst) == 0 {
            gort::yield_now();
        }
        // Many goroutines come and go while the locked one sleeps and wakes:
        // none of them may run on its thread.
        let hs: Vec<_> = (0..200).map(|_| gort::go(|| tid() as u64)).collect();
        let theirs: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::SeqCst);
        locked.join().unwrap();
        let lt = locked_tid.load(Ordering::SeqCst);
        assert!(theirs.iter().all(|&t| t != lt), "a goroutine ran on the locked thread");
    });
}

#[test]
fn a_goroutine_exiting_locked_takes_its_thread() {
    let rt = runtime(1);
    rt.block_on(|| {
        let t = gort::go(|| {
            gort::runtime::lock_os_thread();
            tid()
        })
        .join()
        .unwrap();
        // The thread exits shortly after the goroutine does.
        let path = format!("/proc/self/task/{t}");
        for _ in 0..5000 {
            if !std::path::Path::new(&path).exists() {
                return;
            }
            gort::time::sleep(Duration::from_millis(1));
        }
        panic!("thread {t} outlived its locked goroutine");
    });
}

static PROGRAM_SIGURGS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_sigurg(_sig: libc::c_int) {
    PROGRAM_SIGURGS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_program_sigurg_handler_keeps_working() {
    let Some((status, stderr)) = in_child("a_program_sigurg_handler_keeps_working", || {
        // The program's handler, installed before gort's.
        // SAFETY: a plain handler that only touches an atomic.
        unsafe { libc::signal(libc::SIGURG, count_sigurg as *const () as libc::sighandler_t) };
        let rt = runtime(1);
        rt.block_on(|| {
            // Signals sent to a goroutine's thread and to a plain thread
            // both reach the program's handler.
            for _ in 0..5 {
                // SAFETY: signalling our own thread.
                unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid(), libc::SIGURG) };
                gort::yield_now();
            }
            std::thread::spawn(|| {
                // SAFETY: signalling our own thread.
                unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid(), libc::SIGURG) };
            })
            .join()
            .unwrap();
        });
        let n = PROGRAM_SIGURGS.load(Ordering::SeqCst);
        eprintln!("program handler saw {n} SIGURGs");
        std::process::exit(if n == 6 { 0 } else { 1 });
    }) else {
        return;
    };
    assert!(status.success(), "status {status:?}, stderr:\n{stderr}");
}

/// A goroutine that never calls into the runtime: integer and vector
/// arithmetic checked against values computed before, until `stop`.
/// Returns how many rounds it ran.
fn checked_spin(stop: &AtomicBool) -> u64 {
    use std::hint::black_box;
    // Reference: one round of the mixed computation below.
    fn round(seed: u64) -> (u64, f64, [f32; 8]) {
        let mut x = seed;
        let mut f = seed as f64;
        let mut v = [seed as f32; 8];
        for i in 0..64u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407 ^ i);
            f = f * 1.000_000_1 + (x >> 40) as f64;
            for (j, lane) in v.iter_mut().enumerate() {
                *lane = lane.mul_add(0.5, (x >> (j * 4)) as u8 as f32);
            }
        }
        (x, f, v)
    }
    let expected: Vec<_> = (0..16u64).map(round).collect();
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for (seed, want) in expected.iter().enumerate() {
            let got = round(black_box(seed as u64));
            assert_eq!(got.0, want.0, "integer state corrupted");
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "f64 state corrupted");
            assert!(
                got.2.iter().zip(want.2).all(|(a, b)| a.to_bits() == b.to_bits()),
                "vector state corrupted"
            );
        }
        rounds += 1;
    }
    rounds
}

#[test]
fn a_spinning_goroutine_cannot_starve_a_ticker() {
    let rt = runtime(1);
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let spinner = gort::go(move || checked_spin(&stop2));
        // With one P, every tick below needs the spinner to be preempted.
        for _ in 0..100 {
            gort::time::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(spinner.join().unwrap() > 0);
        assert!(gort::runtime::metrics().preempt_requests >= 100);
    });
}

#[test]
fn registers_survive_thousands_of_preemptions() {
    static NEVER: AtomicBool = AtomicBool::new(false);
    let rounds = take_turns_by_preemption(checked_spin, |m| m.preempt_requests, &NEVER);
    assert!(rounds.iter().all(|&r| r > 0), "a spinner never ran");
}

/// Two goroutines running `body` on one P with a 100 µs slice, which take
/// turns only by being preempted, until `preemptions` of the metrics has
/// grown by 2,000 or a spinner sets `failed`; returns what each returned.
fn take_turns_by_preemption(
    body: fn(&AtomicBool) -> u64,
    preemptions: fn(&gort::runtime::Metrics) -> u64,
    failed: &'static AtomicBool,
) -> Vec<u64> {
    let rt = sliced_runtime(1, Duration::from_micros(100));
    rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners = spinners(2, &stop, body);
        let before = preemptions(&gort::runtime::metrics());
        while preemptions(&gort::runtime::metrics()) - before < 2000 && !failed.load(Ordering::Relaxed) {
            gort::time::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

thread_local! {
    static MY_TID: i32 = tid();
}

#[test]
fn a_preempted_goroutine_keeps_its_thread_locals() {
    /// No runtime call in here: it may only be stopped asynchronously,
    /// and must resume on the same thread.
    fn check_thread_locals(stop: &AtomicBool) -> u64 {
        let mut checks = 0u64;
        while !stop.load(Ordering::Relaxed) {
            MY_TID.with(|t| assert_eq!(*t, tid(), "resumed on another thread"));
            checks += 1;
        }
        checks
    }
    let rt = sliced_runtime(1, Duration::from_micros(200));
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners = spinners(2, &stop, check_thread_locals);
        for _ in 0..50 {
            gort::time::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            assert!(s.join().unwrap() > 0);
        }
    });
}

#[test]
fn preempted_println_keeps_stdout_whole() {
    // Two goroutines print lines on one P and are preempted mid-`println!`
    // (holding stdout's lock); every line must come out whole.
    if std::env::var_os(CHILD_ENV).is_some() {
        let rt = sliced_runtime(1, Duration::from_micros(200));
        rt.block_on(|| {
            let hs: Vec<_> = (0..2)
                .map(|id| {
                    gort::go(move || {
                        for i in 0..20_000 {
                            println!("line {id} {i} {}", "x".repeat(40));
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "preempted_println_keeps_stdout_whole",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness prints its own "test ... " prefix without a newline,
    // so the first line may share a line with it: split on our marker.
    let ours: Vec<&str> = stdout.split("line ").skip(1).collect();
    assert_eq!(ours.len(), 40_000);
    let tail = format!(" {}", "x".repeat(40));
    assert!(
        ours.iter().all(|l| {
            let l = l.lines().next().unwrap_or("");
            l.ends_with(&tail) && l.split(' ').count() == 3
        }),
        "a torn line"
    );
}

#[test]
fn at_max_threads_preemption_waits_with_a_warning() {
    let Some((status, stderr)) = in_child("at_max_threads_preemption_waits_with_a_warning", || {
        let rt = gort::Runtime::builder()
            .procs(1)
            .max_threads(1)
            .preempt_slice(Duration::from_millis(1))
            .build()
            .unwrap();
        rt.block_on(|| {
            // The only thread spins for a while; preempting it would need a
            // second thread to run the P. The program must survive it.
            let spinner = gort::go(|| {
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
            });
            // A timer falls due while it spins: sysmon would preempt it.
            gort::time::sleep(Duration::from_millis(1));
            spinner.join().unwrap();
        });
    }) else {
        return;
    };
    assert!(status.success(), "status {status:?}, stderr:\n{stderr}");
    assert!(stderr.contains("max_threads"), "no warning in stderr:\n{stderr}");
}

#[test]
fn a_ping_pong_pair_cannot_starve_the_rest_of_its_queue() {
    // Two goroutines hand a value back and forth on one P, each readying the
    // other into `runnext`, so they would inherit one time slice forever.
    // sysmon must end that slice so a goroutine queued behind them runs.
    let rt = runtime(1);
    let rounds = rt.block_on(|| {
        let (a_tx, a_rx) = gort::chan::bounded::<u64>(0);
        let (b_tx, b_rx) = gort::chan::bounded::<u64>(0);
        let pong = gort::go(move || {
            for v in a_rx.iter() {
                b_tx.send(v + 1).unwrap();
            }
        });
        let ping = gort::go(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if n == 1000 {
                    // Lands behind the pair, in the local queue.
                    let s = Arc::clone(&stop);
                    gort::go(move || s.store(true, Ordering::Relaxed));
                }
                a_tx.send(n).unwrap();
                n = b_rx.recv().unwrap();
            }
            n
        });
        let rounds = ping.join().unwrap();
        pong.join().unwrap();
        rounds
    });
    assert!(rounds > 1000);
}

#[test]
fn threads_started_for_blocking_calls_exit_when_idle() {
    let rt = gort::Runtime::builder()
        .procs(2)
        .thread_keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    rt.block_on(|| {
        // Blocking calls make sysmon hand their Ps to new threads.
        let hs: Vec<_> = (0..8)
            .map(|_| gort::go(|| std::thread::sleep(Duration::from_millis(100))))
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let started = gort::runtime::metrics().threads_started;
        assert!(started > 2, "no extra threads were needed ({started})");
        // Then they are idle, and go.
        for _ in 0..2000 {
            if gort::runtime::metrics().threads_live < started as usize {
                return;
            }
            gort::time::sleep(Duration::from_millis(5));
        }
        panic!("idle threads did not exit");
    });
}

#[test]
fn a_goroutine_preempted_inside_timer_reset_does_not_stall_the_timers() {
    // A goroutine that resets a timer in a loop holds the timer's own lock
    // for most of each reset and makes no runtime call that yields, so it is
    // stopped by signal, often with that lock held. The timer is due almost
    // at once, and whoever fires it (sysmon, before it queues the preempted
    // goroutine) takes that lock: it must not wait for the goroutine it is
    // about to queue.
    common::guarded(|| {
        let rt = sliced_runtime(1, Duration::from_micros(100));
        rt.block_on(|| {
            let resetter = gort::go(|| {
                let t = gort::time::Timer::new(Duration::from_micros(1));
                let before = gort::runtime::metrics().preempts_async;
                let mut resets = 0u64;
                while gort::runtime::metrics().preempts_async - before < 300 {
                    for _ in 0..256 {
                        t.reset(Duration::from_micros(1));
                    }
                    resets += 256;
                }
                t.stop();
                resets
            });
            assert!(resetter.join().unwrap() > 0);
        });
    });
}

/// A buffer libc's `memset` takes tens of milliseconds to fill in one call:
/// code outside the program, where a preemption signal cannot stop a
/// goroutine. Touched once here, so later fills make no page faults.
fn long_fill_buffer() -> Vec<u8> {
    vec![1u8; 256 << 20]
}

/// Fill `buf` with one call into libc.
fn fill_in_libc(buf: &mut [u8], byte: u8) {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { libc::memset(buf.as_mut_ptr().cast(), byte.into(), buf.len()) };
    // A fill nobody reads would be dropped as a dead store.
    std::hint::black_box(buf);
}

#[test]
fn a_goroutine_computing_in_a_library_gives_up_its_p() {
    // One P; a goroutine inside one long libc call must not keep the
    // queued main goroutine from running until the call returns: the
    // preemption signal that finds it there hands its P to another thread.
    let rt = sliced_runtime(1, Duration::from_millis(1));
    rt.block_on(|| {
        static INSIDE: AtomicBool = AtomicBool::new(false);
        let mut buf = long_fill_buffer();
        // Not a timing bound: before the fix this never happened, since
        // nothing could run beside the call. Five tries for a noisy machine.
        let mut ran_beside = false;
        for round in 0..5u8 {
            let filler = gort::go(move || {
                INSIDE.store(true, Ordering::SeqCst);
                fill_in_libc(&mut buf, round);
                INSIDE.store(false, Ordering::SeqCst);
                buf
            });
            // Queued behind the filler: back only when the P is free.
            gort::yield_now();
            ran_beside = INSIDE.load(Ordering::SeqCst);
            buf = filler.join().unwrap();
            assert!(buf.iter().step_by(4096).all(|&b| b == round));
            if ran_beside {
                break;
            }
        }
        assert!(ran_beside, "main never ran while the goroutine was inside libc");
        assert!(gort::runtime::metrics().syscall_handoffs > 0);
    });
}

#[test]
fn a_thread_computing_in_a_library_without_a_p_is_not_flooded_with_signals() {
    // A goroutine computes in libc; the first signal finds it there and it
    // loses its P. sysmon asks it to stop once a slice has passed; each
    // signal finds it in libc, where it cannot stop, so sysmon asks less
    // and less often: at most about once a slice, not every 20 µs cycle.
    // (Not inside `gort::blocking`: that is never signalled at all.)
    let slice = Duration::from_millis(1);
    let rt = sliced_runtime(1, slice);
    rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let yielder = {
            let stop = Arc::clone(&stop);
            gort::go(move || {
                while !stop.load(Ordering::Relaxed) {
                    gort::yield_now();
                }
            })
        };
        let mut buf = long_fill_buffer();
        let before = gort::runtime::metrics().preempt_signals;
        let started = std::time::Instant::now();
        (0..8).for_each(|round| fill_in_libc(&mut buf, round));
        let computed = started.elapsed();
        let signals = gort::runtime::metrics().preempt_signals - before;
        stop.store(true, Ordering::Relaxed);
        yielder.join().unwrap();
        // The bound scales with the time the calls took, so a slow machine
        // only loosens it: a slice's worth of doublings, then one a slice.
        let slices = (computed.as_micros() / slice.as_micros()) as u64;
        assert!(signals <= 2 * slices + 20, "{signals} signals in {computed:?}");
    });
}

#[test]
fn errno_survives_preemptions() {
    // The preempted goroutine's thread sleeps inside the preemption, and
    // that sleep's system calls may set errno: the interrupted code, maybe
    // between a failed call and its read of errno, must find its own value.
    static CLOBBERED: AtomicBool = AtomicBool::new(false);
    fn spin_with_errno(stop: &AtomicBool) -> u64 {
        // SAFETY: errno is this thread's, and the goroutine keeps its
        // thread across preemptions.
        let errno = || unsafe { libc::__errno_location() };
        let mine = 1000 + tid();
        let mut checks = 0u64;
        // SAFETY: as above.
        unsafe { *errno() = mine };
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: as above.
            if unsafe { *errno() } != mine {
                CLOBBERED.store(true, Ordering::Relaxed);
                break;
            }
            checks += 1;
        }
        checks
    }
    let checks = take_turns_by_preemption(spin_with_errno, |m| m.preempts_async, &CLOBBERED);
    assert!(checks.iter().all(|&c| c > 0), "a spinner never ran");
    assert!(
        !CLOBBERED.load(Ordering::Relaxed),
        "errno changed under a preempted goroutine"
    );
}

/// Spin `rounds` times checking that ymm8, loaded once, keeps all 256 bits,
/// `shift` bytes lower on the stack (so that preemptions find every stack
/// alignment). Returns whether it did.
#[target_feature(enable = "avx2")]
fn ymm_survives(shift: usize, rounds: u64) -> bool {
    let pattern: [u64; 4] = [
        0x0123_4567_89ab_cdef,
        0xfedc_ba98_7654_3210,
        0x1111_2222_3333_4444,
        0x5555_6666_7777_8888,
    ];
    let left: u64;
    // SAFETY: reads `pattern` only; rsp is moved down and restored within
    // the block (it is not `nostack`); the clobbered registers are declared.
    unsafe {
        std::arch::asm!(
            "sub rsp, {shift}",
            "vmovdqu ymm8, [{p}]",
            "2:",
            "vpcmpeqq ymm9, ymm8, [{p}]",
            "vpmovmskb {mask:e}, ymm9",
            "cmp {mask:e}, -1",
            "jne 3f",
            "dec {n}",
            "jnz 2b",
            "3:",
            "add rsp, {shift}",
            "vzeroupper",
            shift = in(reg) shift,
            p = in(reg) pattern.as_ptr(),
            n = inout(reg) rounds => left,
            mask = out(reg) _,
            out("ymm8") _,
            out("ymm9") _,
        );
    }
    left == 0
}

#[test]
fn preemption_on_a_thread_without_an_alternate_signal_stack_keeps_vector_registers() {
    // An M whose `sigaltstack` could not be installed (or whose program
    // disabled it) runs the SIGURG handler on the goroutine's own stack.
    static CORRUPTED: AtomicBool = AtomicBool::new(false);
    fn spin_without_altstack(stop: &AtomicBool) -> u64 {
        gort::runtime::lock_os_thread();
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: an all-zero stack_t is a valid out-parameter.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid; the goroutine is locked to this
        // thread, whose alternate stack it restores below.
        assert_eq!(unsafe { libc::sigaltstack(&disable, &mut old) }, 0);
        let mut rounds = 0u64;
        'spin: while !stop.load(Ordering::Relaxed) {
            for shift in (0..64).step_by(8) {
                // SAFETY: the test runs only where AVX2 is available.
                if !unsafe { ymm_survives(shift, 100_000) } {
                    CORRUPTED.store(true, Ordering::Relaxed);
                    break 'spin;
                }
            }
            rounds += 1;
        }
        let restore = libc::stack_t {
            ss_flags: old.ss_flags & libc::SS_DISABLE,
            ..old
        };
        // SAFETY: reinstates the stack the thread had, still owned by its M.
        assert_eq!(unsafe { libc::sigaltstack(&restore, std::ptr::null_mut()) }, 0);
        gort::runtime::unlock_os_thread();
        rounds
    }
    if !std::is_x86_feature_detected!("avx2") {
        return;
    }
    take_turns_by_preemption(spin_without_altstack, |m| m.preempt_signals, &CORRUPTED);
    assert!(
        !CORRUPTED.load(Ordering::Relaxed),
        "a vector register changed under a goroutine preempted without an alternate signal stack"
    );
}

/// The lowest usable address of the stack the caller runs on: the end of
/// the guard page below it, found by reading downwards a page at a time
/// until a read fails (`process_vm_readv` honours the guard's protection,
/// unlike a plain load it does not fault).
fn stack_floor() -> usize {
    const PAGE: usize = 4096;
    let readable = |at: usize| {
        let mut byte = 0u8;
        let local = libc::iovec {
            iov_base: (&raw mut byte).cast(),
            iov_len: 1,
        };
        let remote = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: 1,
        };
        // SAFETY: `local` is one writable byte; the remote side is read by
        // the kernel, which reports an unmapped or protected page as EFAULT.
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) == 1 }
    };
    let marker = 0u8;
    let mut page = (std::hint::black_box(&raw const marker) as usize) & !(PAGE - 1);
    while readable(page - PAGE) {
        page -= PAGE;
    }
    page
}

/// Spin with rsp exactly `left` bytes above the bottom of the goroutine's
/// stack until `stop`, setting `reached` once there: a goroutine that
/// computes deep in its stack, with nothing of its own below rsp (only
/// registers are used while it spins).
fn spin_near_stack_bottom(left: usize, reached: &AtomicBool, stop: &AtomicBool) {
    let floor = stack_floor();
    let mut here = 0u8;
    let here = std::hint::black_box(&raw mut here) as usize;
    assert!(floor + left + 1024 < here, "{left} bytes is not below this frame");
    // SAFETY: rsp moves down into this goroutine's own stack, below every
    // live frame (checked above), and is restored before the block ends; the
    // block only reads `stop` and writes `reached`.
    unsafe {
        std::arch::asm!(
            "mov {saved}, rsp",
            "mov rsp, {target}",
            "mov byte ptr [{reached}], 1",
            "2:",
            "pause",
            "cmp byte ptr [{stop}], 0",
            "je 2b",
            "mov rsp, {saved}",
            saved = out(reg) _,
            target = in(reg) (floor + left) & !15,
            reached = in(reg) reached.as_ptr(),
            stop = in(reg) stop.as_ptr(),
        );
    }
}

/// With one P, queue a goroutine running `spin` and wait until it says it
/// spins where it should (`reached`); the main goroutine runs on after that
/// only once the spinner was stopped or lost its P. Returns the async
/// preemptions and sysmon's P hand-offs meanwhile, for the log (a P the
/// spinner gave up may also be taken back by an M whose goroutine lost it
/// earlier, which neither counts).
fn outlast_a_spinner(spin: impl FnOnce(&AtomicBool, &AtomicBool) + Send + 'static) -> (u64, u64) {
    let reached = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let before = gort::runtime::metrics();
    let spinner = {
        let (reached, stop) = (Arc::clone(&reached), Arc::clone(&stop));
        gort::go(move || spin(&reached, &stop))
    };
    while !reached.load(Ordering::SeqCst) {
        gort::yield_now();
    }
    let after = gort::runtime::metrics();
    stop.store(true, Ordering::SeqCst);
    spinner.join().unwrap();
    (
        after.preempts_async - before.preempts_async,
        after.syscall_handoffs - before.syscall_handoffs,
    )
}

#[test]
fn a_goroutine_spinning_near_the_bottom_of_its_stack_still_lets_others_run() {
    // One P: each spinner, at every depth down to the last few hundred
    // bytes above its guard page, must be stopped in place or lose its P
    // (never keep it for good), and the stopping must not overrun the guard.
    // A hang is a failure, so it runs in a child the parent can kill.
    let Some((status, stderr)) = in_child(
        "a_goroutine_spinning_near_the_bottom_of_its_stack_still_lets_others_run",
        || {
            let rt = sliced_runtime(1, Duration::from_millis(1));
            rt.block_on(|| {
                for left in (256..=12_288).rev().step_by(256) {
                    let (preempted, handed_off) = outlast_a_spinner(move |reached, stop| {
                        spin_near_stack_bottom(left, reached, stop);
                    });
                    eprintln!("{left} bytes left: {preempted} preemptions, {handed_off} P hand-offs");
                }
            });
            // The minimum stack, most of it taken by a frame's buffer.
            let rt = gort::Runtime::builder()
                .procs(1)
                .stack_size(16 * 1024)
                .preempt_slice(Duration::from_millis(1))
                .build()
                .unwrap();
            rt.block_on(|| {
                for _ in 0..3 {
                    outlast_a_spinner(|reached, stop| {
                        let mut buffer = [0u8; 8 * 1024];
                        std::hint::black_box(&mut buffer);
                        reached.store(true, Ordering::SeqCst);
                        while !stop.load(Ordering::Relaxed) {}
                        std::hint::black_box(&buffer);
                    });
                }
            });
        },
    ) else {
        return;
    };
    assert!(status.success(), "status {status:?}, stderr:\n{stderr}");
}

/// `gort::blocking` calls from 4 goroutines on 2 Ps with a 1 ms slice,
/// `each` per goroutine: how many of `call`'s results were `Interrupted`.
fn interrupted_blocking_calls(each: usize, call: fn() -> std::io::Result<()>) -> usize {
    let rt = sliced_runtime(2, Duration::from_millis(1));
    rt.block_on(move || {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                gort::go(move || {
                    (0..each)
                        .filter(|_| gort::blocking(call).is_err_and(|e| e.kind() == std::io::ErrorKind::Interrupted))
                        .count()
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).sum()
    })
}

#[test]
fn a_blocking_poll_is_never_interrupted_by_the_runtime() {
    let interrupted = interrupted_blocking_calls(50, || {
        // SAFETY: no descriptors: poll only waits out its 20 ms.
        match unsafe { libc::poll(std::ptr::null_mut(), 0, 20) } {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        }
    });
    assert_eq!(interrupted, 0, "of 200 polls in gort::blocking");
}

#[test]
fn a_blocking_socket_read_with_a_timeout_is_never_interrupted_by_the_runtime() {
    let interrupted = interrupted_blocking_calls(200, || {
        thread_local! {
            static SOCKET: std::net::UdpSocket = {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                s
            };
        }
        // Nobody sends: each read waits out its timeout (WouldBlock).
        SOCKET.with(|s| s.recv_from(&mut [0u8; 64]).map(drop))
    });
    assert_eq!(interrupted, 0, "of 800 reads in gort::blocking");
}

#[test]
fn a_blocking_call_right_after_an_undetected_one_is_not_interrupted_either() {
    // An un-annotated sleep long enough for sysmon to find the thread
    // asleep costs the goroutine its P; it runs on without one until its
    // next runtime call, and a `gort::blocking` call right after is an
    // annotated call all the same: no signal may land in it.
    let rt = sliced_runtime(1, Duration::from_millis(1));
    let (interrupted, detections) = rt.block_on(|| {
        let callers: Vec<_> = (0..2)
            .map(|_| {
                gort::go(|| {
                    (0..40)
                        .filter(|_| {
                            std::thread::sleep(Duration::from_millis(2));
                            // SAFETY: no descriptors: poll only waits out its 20 ms.
                            let polled = gort::blocking(|| unsafe { libc::poll(std::ptr::null_mut(), 0, 20) });
                            polled == -1
                        })
                        .count()
                })
            })
            .collect();
        let interrupted: usize = callers.into_iter().map(|c| c.join().unwrap()).sum();
        (interrupted, gort::runtime::metrics().blocked_detections)
    });
    assert!(detections > 0, "no sleep was detected: the case was not exercised");
    assert_eq!(interrupted, 0, "of 80 polls in gort::blocking");
}

/// Voluntary context switches of the calling thread so far: each time it
/// slept (a CPU-bound loop never does unless something stops it).
fn voluntary_switches() -> i64 {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
    usage.ru_nvcsw
}

#[test]
fn computing_inside_blocking_is_not_preempted() {
    // Inside `gort::blocking` the goroutine has given its P up: it runs
    // like any thread. Two long computations on one P, with a 1 ms slice,
    // must neither be signalled nor made to wait for the P.
    let rt = sliced_runtime(1, Duration::from_millis(1));
    rt.block_on(|| {
        let before = gort::runtime::metrics().preempt_signals;
        let burners: Vec<_> = (0..2)
            .map(|_| {
                gort::go(|| {
                    gort::blocking(|| {
                        let switches = voluntary_switches();
                        let mut x = 1u64;
                        for i in 0..100_000_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                        }
                        std::hint::black_box(x);
                        voluntary_switches() - switches
                    })
                })
            })
            .collect();
        let slept: Vec<i64> = burners.into_iter().map(|b| b.join().unwrap()).collect();
        let signals = gort::runtime::metrics().preempt_signals - before;
        assert_eq!(slept, [0, 0], "a computation in gort::blocking was made to wait");
        assert_eq!(signals, 0, "signals sent while only blocking calls ran");
    });
}
