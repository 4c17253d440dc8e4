//! The CPU profiler: where the whole process spends its CPU time, sampled
//! 100 times per CPU-second, as stacks — the goroutine code, the runtime's
//! own frames (`schedule`, the poller, sysmon) and any other thread.
//!
//! Sampling. `setitimer(ITIMER_PROF)` counts the CPU time of the whole
//! process and sends SIGPROF every `PERIOD` of it; the kernel delivers a
//! process-directed signal to a thread that is running (the one whose tick
//! expired the timer, when it can), so samples fall on threads in
//! proportion to the CPU they burn, every M, sysmon and plain threads alike,
//! without knowing which threads exist. Go used exactly this until 1.18;
//! its per-thread `timer_create` timers fix a bias that matters with many
//! more cores than here, at the price of a timer per thread created and
//! destroyed with the thread (golang/go#35057). Not taken: gort's Ms come
//! and go with the spawner, and the process-wide timer needs no hook there.
//!
//! The handler may not allocate or lock, and unwinding does both the first
//! time (framehop's tables and cache, `debug/unwind.rs`). Frame pointers
//! would be lock-free, but Rust omits them in optimised x86_64 code, so
//! walking them gives garbage. So the handler takes the rest out of the
//! interrupted thread's hands: it copies the interrupted registers and the
//! top `WINDOW` bytes of its stack (with `process_vm_readv`, page by page,
//! so a stack whose top is nearer stops the copy there, never faults) into
//! a free slot of a preallocated ring, lock-free (a CAS on the slot's
//! state); the profile's collector then walks each copy with the same
//! CFI unwinder dumps use (`StackCopy`, `unwind_suspended`), off the signal
//! path. A full ring drops the sample and counts it (the profile says how
//! many, in a comment). Stacks deeper than the window lose their
//! outermost frames.
//!
//! Sharing the process: one profile at a time (`start` fails with
//! `AlreadyExists` while one runs). The handler is installed on the first
//! profile and stays; with no profile running it does nothing but chain a
//! handler the program installed before. It runs on the signal stack
//! (`SA_ONSTACK`), restarts interrupted calls (`SA_RESTART`), and keeps
//! `errno`. It does not mask or touch SIGURG: the preemption handler and
//! this one may nest either way, and neither reads what the other writes.
//! The ring is freed only after the timer is off and no handler is inside
//! it (`IN_HANDLER`).

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::unwind::{StackCopy, unwind_suspended};
use crate::arch::SuspendedRegs;

/// CPU time between samples (Go's 100 Hz).
pub(crate) const PERIOD: Duration = Duration::from_millis(10);
/// Bytes of stack copied above the interrupted stack pointer.
const WINDOW: usize = 32 * 1024;
/// Samples waiting for the collector at most.
const SLOTS: usize = 64;
const PAGE: usize = 4096;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// One sample's registers and stack copy.
struct Slot {
    state: AtomicU8,
    regs: UnsafeCell<SuspendedRegs>,
    /// The address `words` starts at: the stack pointer, 8-aligned down.
    base: UnsafeCell<usize>,
    /// Bytes of `words` the copy filled.
    len: UnsafeCell<usize>,
    words: UnsafeCell<Box<[u64]>>,
}

/// The ring the handler fills while a profile runs.
struct Ring {
    slots: Box<[Slot]>,
    /// Where the next handler starts looking for a free slot.
    next: AtomicUsize,
    dropped: AtomicU64,
}

// SAFETY: a slot's cells are written only by the handler that moved its
// state FREE -> WRITING, and read only by the collector after it saw READY
// (Release/Acquire), which hands it back with FREE.
unsafe impl Sync for Ring {}

/// The running profile's ring; null when none runs.
static RING: AtomicPtr<Ring> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers between their load of `RING` and their last use of it.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The SIGPROF action replaced when the handler was installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A running CPU profile; `finish` it to get its samples.
pub(crate) struct CpuProfile {
    ring: *mut Ring,
    /// Unique stacks (code addresses, first exact, then return addresses)
    /// and how many samples each got.
    stacks: HashMap<Vec<usize>, u64>,
    samples: u64,
}

// SAFETY: the ring pointer is only dereferenced by its owner (the collector
// calls) and by signal handlers, which synchronise through the slot states.
unsafe impl Send for CpuProfile {}

/// What a finished profile found.
pub(crate) struct Samples {
    /// Unique stacks and their sample counts.
    pub(crate) stacks: HashMap<Vec<usize>, u64>,
    /// Samples dropped because the ring was full.
    pub(crate) dropped: u64,
}

impl CpuProfile {
    /// Start sampling the process. Fails with `AlreadyExists` if a profile
    /// runs, or with the system's error if the handler or timer cannot be
    /// set up.
    pub(crate) fn start() -> io::Result<CpuProfile> {
        let ring = Box::into_raw(Box::new(Ring {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    state: AtomicU8::new(FREE),
                    regs: UnsafeCell::new(SuspendedRegs { ip: 0, sp: 0, bp: 0 }),
                    base: UnsafeCell::new(0),
                    len: UnsafeCell::new(0),
                    words: UnsafeCell::new(vec![0u64; WINDOW / 8].into_boxed_slice()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }));
        if RING
            .compare_exchange(std::ptr::null_mut(), ring, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // SAFETY: never published; we still own it.
            drop(unsafe { Box::from_raw(ring) });
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a CPU profile is already running; one at a time",
            ));
        }
        let profile = CpuProfile {
            ring,
            stacks: HashMap::new(),
            samples: 0,
        };
        install()?;
        set_timer(PERIOD)?;
        Ok(profile)
    }

    /// Unwind the samples the handler left in the ring and free their
    /// slots; call it often enough that the ring does not fill (every
    /// 10 ms keeps it under a tenth full on 2 busy CPUs).
    pub(crate) fn collect(&mut self) {
        // SAFETY: the ring lives until `finish`/drop, which take `self`.
        let ring = unsafe { &*self.ring };
        let mut ips = Vec::new();
        for slot in ring.slots.iter() {
            if slot.state.load(Ordering::Acquire) != READY {
                continue;
            }
            // SAFETY: READY hands the slot's cells to us (see `Ring`).
            let (regs, base, words) = unsafe {
                let len = *slot.len.get();
                (
                    *slot.regs.get(),
                    *slot.base.get(),
                    (&*slot.words.get())[..len / 8].to_vec(),
                )
            };
            slot.state.store(FREE, Ordering::Release);
            ips.clear();
            unwind_suspended(regs, &StackCopy::from_words(base, words), &mut ips);
            *self.stacks.entry(ips.clone()).or_insert(0) += 1;
            self.samples += 1;
        }
    }

    /// Stop sampling and return what was sampled.
    pub(crate) fn finish(mut self) -> Samples {
        stop_timer();
        self.collect();
        let dropped = self.release();
        Samples {
            stacks: std::mem::take(&mut self.stacks),
            dropped,
        }
    }

    /// Unpublish the ring, wait out handlers still inside it, free it;
    /// returns its dropped count. Idempotent.
    fn release(&mut self) -> u64 {
        if self.ring.is_null() {
            return 0;
        }
        RING.store(std::ptr::null_mut(), Ordering::SeqCst);
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // SAFETY: unpublished, and no handler holds it any more.
        let ring = unsafe { Box::from_raw(self.ring) };
        self.ring = std::ptr::null_mut();
        ring.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for CpuProfile {
    /// A profile abandoned midway (its client went away) stops too.
    fn drop(&mut self) {
        if !self.ring.is_null() {
            stop_timer();
            self.release();
        }
    }
}

fn install() -> io::Result<()> {
    if PREVIOUS.get().is_some() {
        return Ok(());
    }
    // `on_sigprof` is async-signal-safe: atomics, one process_vm_readv.
    let old = crate::os::install_handler(libc::SIGPROF, on_sigprof)?;
    let _ = PREVIOUS.set(old);
    Ok(())
}

fn set_timer(period: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: period.as_secs() as libc::time_t,
        tv_usec: period.subsec_micros() as libc::suseconds_t,
    };
    let it = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: `it` is a valid itimerval; the old value is not wanted.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &it, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn stop_timer() {
    // Disarming with a zero value cannot fail.
    let _ = set_timer(Duration::ZERO);
}

extern "C" fn on_sigprof(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let errno = crate::os::SavedErrno::save();
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let ring = RING.load(Ordering::SeqCst);
    if !ring.is_null() && !ctx.is_null() {
        // SAFETY: published rings stay allocated while `IN_HANDLER` counts
        // us; `ctx` is this handler's ucontext.
        unsafe { record(&*ring, crate::arch::interrupted_regs(ctx.cast())) };
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    errno.restore();
    if let Some(prev) = PREVIOUS.get() {
        // SAFETY: our handler's own arguments; `prev` is what we replaced.
        unsafe { crate::os::call_previous(prev, sig, info, ctx) };
    }
}

/// Claim a free slot and fill it with `regs` and the stack above `regs.sp`.
/// Async-signal-safe.
fn record(ring: &Ring, regs: SuspendedRegs) {
    let start = ring.next.fetch_add(1, Ordering::Relaxed);
    let claimed = (0..SLOTS).map(|i| &ring.slots[(start + i) % SLOTS]).find(|slot| {
        slot.state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    let Some(slot) = claimed else {
        ring.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let sp = regs.sp & !7;
    // One remote piece per page, so that the copy stops at the first
    // unmapped page (the kernel never splits a piece): the top of a short
    // stack.
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; WINDOW / PAGE + 1];
    let mut pieces = 0;
    let mut at = sp;
    while at < sp + WINDOW {
        let end = ((at / PAGE) + 1) * PAGE;
        let end = end.min(sp + WINDOW);
        remote[pieces] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: end - at,
        };
        pieces += 1;
        at = end;
    }
    // SAFETY: the slot is ours (WRITING); its buffer holds WINDOW bytes.
    let copied = unsafe {
        let local = libc::iovec {
            iov_base: (&mut *slot.words.get()).as_mut_ptr().cast(),
            iov_len: WINDOW,
        };
        libc::process_vm_readv(libc::getpid(), &local, 1, remote.as_ptr(), pieces as libc::c_ulong, 0)
    };
    // SAFETY: as above.
    unsafe {
        *slot.regs.get() = regs;
        *slot.base.get() = sp;
        *slot.len.get() = usize::try_from(copied).unwrap_or(0);
    }
    slot.state.store(READY, Ordering::Release);
}
