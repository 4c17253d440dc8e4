//! Preemption (Go's preempt.go and the SIGURG half of signal_unix.go).
//!
//! sysmon (`sysmon.rs`) asks a goroutine that has run longer than the
//! preempt slice to stop, in two ways at once:
//!
//! - **cooperatively**: it sets its P's `preempt` flag, which the goroutine
//!   checks at its next runtime call that may wait anyway (`safe_point`:
//!   spawning, joining, sleeping, socket I/O, the end of `blocking`) and
//!   yields there to the global queue — cheap, and the goroutine may resume
//!   on another thread. Channel operations and locks are not checked on
//!   their fast paths (a few nanoseconds each would be a tenth of their
//!   cost; under chaos, `chaos.rs`, they are); when they park, that is
//!   the yield;
//! - **asynchronously**: it sends SIGURG to the goroutine's thread. The
//!   handler (on the M's alternate signal stack) checks that the thread is
//!   running goroutine code — on the goroutine's own stack, outside every
//!   runtime critical section (`NoPreempt`, `m.locks`) — and makes the
//!   interrupted code call `arch`'s `async_preempt` trampoline, which saves
//!   every register and calls `preempt_hook` on the goroutine's stack.
//!
//! The hook is `wait_for_turn`: the goroutine keeps its OS thread
//! (DESIGN.md §3). It is queued on the global run queue *locked to its M*
//! (`G::lockedm`), its P is handed to another M (`handoffp`), and the M
//! sleeps inside the hook. Whoever later picks the goroutine from a run
//! queue does not run it: it hands its own P to the sleeping M
//! (`startlockedm`, `schedule.rs`) and stops. The M wakes with a P, the
//! hook returns, and the trampoline resumes the interrupted instruction with
//! every register restored. So `thread_local!`, thread-keyed std locks (the
//! stdout lock of a `println!`) and libc's per-thread state stay right
//! whatever instruction was interrupted.
//!
//! A signal that finds the M inside a critical section is remembered
//! (`m.preempt_pending`) and raised again when the section ends; one that
//! finds it on g0 or somewhere unsafe is dropped, and sysmon asks again.
//!
//! Only the program's own machine code is interrupted (the executable
//! segment that holds gort, found once with `dl_iterate_phdr`): a signal
//! that lands in a shared library — libc's `malloc`, say — is dropped too.
//! A signal a thread sends itself when a critical section ends
//! (`raise_again`) is exempt: it lands in libc's system-call wrapper,
//! which holds no lock. Code linked into the program may be stopped while
//! it holds a lock — a statically linked allocator (jemalloc, mimalloc)
//! inside `malloc` — and so nothing that must happen before the goroutine
//! runs again waits for such a lock: sysmon queues it and hands its P on
//! without allocating, and a P that finds no M goes to the preempted M
//! itself rather than to a thread that would have to start (the rule is in
//! `sched/mod.rs`, "What may allocate where").
//!
//! What a signal dropped in a library does depends on where it landed.
//! One that stopped the thread at a system call's boundary
//! (`arch::at_system_call`) found a goroutine passing through libc's
//! wrappers, back in our code a moment later; a loop of system calls is
//! caught there most of the time and takes many tries to stop in its own
//! code, so sysmon retries every cycle. One that found the thread
//! computing inside the library (a long `memset`, a C library's loop) may
//! find it there for a long time, and the goroutine's P is needed now: the
//! handler puts the P in the system-call state (Go's cgo calls are system
//! calls too), sysmon hands it to another M, and the goroutine computes on
//! without one, to be preempted like any goroutine that lost its P in a
//! system call. Such signals are counted in `M::foreign_refusals`, and
//! sysmon doubles the gap before the next one to that M with each, up to a
//! slice: retried every cycle, a goroutine in a 500 ms `memset` drew some
//! 4,700 signals.
//!
//! The handler runs on the alternate signal stack every M installs
//! (`stack/altstack.rs`). On a thread without one, the kernel pushes its
//! signal frame onto the goroutine's stack, right where the injection
//! writes: there the goroutine gives up its P as for a library instead.
//! So does one too near the bottom of its stack for the preemption frame
//! and the hook (`arch::Refusal::NoRoom`: about 3 KiB for the saved
//! registers, plus the hook's reserve, `arch/preempt.rs`): asked again,
//! it would be found there again for as long as it spins, keeping its P
//! for good.
//!
//! The same signal also serves the un-annotated blocking-call detection:
//! with `REQUEST_SYSCALL`, the handler moves the thread's P into the
//! system-call state (`syscall.rs`) so sysmon can hand it off — done by the
//! thread itself, so it can never race with the thread's own use of its P.
//!
//! SIGURG is shared with the program: a SIGURG that sysmon did not request
//! for this thread (`M::signal_request` is empty) is passed to the handler
//! installed before gort's. Two SIGURGs that arrive together are merged by
//! the kernel, so a program's own SIGURG may be absorbed by a preemption:
//! SIGURG is documented as unreliable for programs using gort, as in Go.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Once, OnceLock};

use super::g::GStatus;
use super::lock_sched;
use super::m::Pending;
use super::m::{M, MPtr, current_m};
use super::p::PStatus;
use super::schedule::mcall;
use crate::arch::Refusal;
use crate::os;

/// A preempted goroutine waits at least this long without seeing any P
/// switch goroutines before it concludes that the runtime is stuck behind
/// it (`sleep_until_handed_p`).
const ESCAPE_MIN_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// What a preempted goroutine's look at taking itself back found.
enum Escape {
    /// It is picked already, or the runtime shuts down: wait on.
    No,
    /// Back, with this P.
    WithP(super::PPtr),
    /// Back, with no P free: it runs on without one.
    WithoutP,
}

/// No request: a SIGURG that is not gort's.
pub(crate) const REQUEST_NONE: u8 = 0;
/// Stop the running goroutine (async preemption).
pub(crate) const REQUEST_PREEMPT: u8 = 1;
/// The thread seems blocked in the kernel: put its P in the system-call
/// state so sysmon can hand it off.
pub(crate) const REQUEST_SYSCALL: u8 = 2;
/// Stop the running goroutine, asked by its own thread from runtime code
/// (`raise_again`), so wherever the signal lands holds no lock.
const REQUEST_PREEMPT_SELF: u8 = 3;

/// The program's SIGURG disposition before gort installed its own.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// The executable segment holding gort (and the program linked with it):
/// the only code a preemption signal interrupts (module header). Unset if
/// the loader could not tell, and then every address is taken as ours.
static OWN_CODE: OnceLock<Range<usize>> = OnceLock::new();

/// Install the SIGURG handler and the trampoline's hook, once per process.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(code) = os::code_segment_containing(on_sigurg as *const () as usize) {
            let _ = OWN_CODE.set(code);
        }
        // `on_sigurg` only does async-signal-safe work.
        if let Ok(old) = os::install_handler(libc::SIGURG, on_sigurg) {
            let _ = PREVIOUS.set(old);
        }
    });
}

/// Ask M `m` (alive: the caller holds `Sched::allm`) for `request` by
/// signal — unless it is inside `gort::blocking`, where no signal of ours
/// may land (`syscall.rs`): then the request is withdrawn and nothing sent.
pub(crate) fn signal(m: &M, request: u8) {
    // SeqCst store, then load: of this and `syscall::blocking`'s store of
    // the flag, then load of the request, at least one sees the other's.
    // (Its Release half pairs with the handler's Acquire swap: the P's
    // preempt flag and everything sysmon decided is visible to it.)
    m.signal_request.store(request, Ordering::SeqCst);
    if m.in_blocking.load(Ordering::SeqCst) {
        // Unless the handler has taken it already, before the call began.
        let _ = m
            .signal_request
            .compare_exchange(request, REQUEST_NONE, Ordering::Relaxed, Ordering::Relaxed);
        return;
    }
    let _ = os::tgkill(m.tid, libc::SIGURG);
}

/// Whether M `m` has a signal request its handler has not taken yet: a
/// signal still on its way (the thread waits for a CPU) or deferred by a
/// critical section, which raises it again when it ends. Another signal
/// would only merge with it, so sysmon sends none meanwhile.
pub(crate) fn signal_pending(m: &M) -> bool {
    m.signal_request.load(Ordering::Relaxed) != REQUEST_NONE
}

/// A preemption signal was deferred by a critical section that has now
/// ended: deliver it again, to ourselves. Own thread only.
pub(crate) fn raise_again(m: &M) {
    if matches!(m.signal_request.load(Ordering::Relaxed), REQUEST_NONE | REQUEST_PREEMPT) {
        m.signal_request.store(REQUEST_PREEMPT_SELF, Ordering::Relaxed);
    }
    let _ = os::tgkill(m.tid, libc::SIGURG);
}

/// The SIGURG handler. Signal context: no allocation, no locks; only
/// atomics, `Cell`s of this thread's M, and the context edit.
extern "C" fn on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(m) = current_m() else {
        // SAFETY: forwarding the handler's own arguments.
        unsafe { chain(sig, info, uc) };
        return;
    };
    // Acquire pairs with the Release in `signal`.
    let request = m.signal_request.swap(REQUEST_NONE, Ordering::Acquire);
    if request == REQUEST_NONE {
        // SAFETY: forwarding the handler's own arguments.
        unsafe { chain(sig, info, uc) };
        return;
    }
    if m.in_blocking.load(Ordering::Relaxed) {
        // Inside `gort::blocking`, which runs like any thread: a request
        // that slipped past `signal`'s check is dropped, not deferred.
        return;
    }
    if m.locks.get() > 0 {
        // Inside the runtime. A preemption waits for the section to end; a
        // "blocked thread" report is dropped: the thread waits for a runtime
        // lock whose holder is running, so it will not be blocked for long.
        if request != REQUEST_SYSCALL {
            m.signal_request.store(request, Ordering::Relaxed);
            m.preempt_pending.set(true);
        }
        return;
    }
    let Some(g) = m.curg.get() else { return };
    // SAFETY: the handler runs on g's thread, which owns it while running it.
    let Some(stack) = (unsafe { g.stack_ref() }) else {
        return;
    };
    let uc = uc as *mut libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let rsp = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RSP as usize] } as usize;
    if rsp <= stack.lo() || rsp > stack.top() {
        // On g0 (the scheduler) or an alternate stack: not goroutine code.
        return;
    }
    // SAFETY: as above.
    let rip = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] } as usize;
    if request == REQUEST_PREEMPT && OWN_CODE.get().is_some_and(|code| !code.contains(&rip)) {
        // In a shared library, maybe holding its lock (module header). One
        // stopped at a system call is only passing through and soon back in
        // our code. One computing there may stay for long: it gives up its
        // P as for a system call, and sysmon asks it less and less often.
        if !crate::arch::at_system_call(rip) {
            give_up_p(m);
        }
        return;
    }
    match request {
        REQUEST_SYSCALL => super::syscall::enter_from_signal(m),
        _ if (stack.lo()..stack.top()).contains(&(&raw const request as usize)) => {
            // No alternate signal stack on this thread (the M could not
            // install one, or the program disabled it): this handler runs
            // on the goroutine's stack, and the kernel saved the
            // interrupted registers just below the red zone, where the
            // injection would write. The goroutine gives up its P instead,
            // as one computing in a shared library does.
            give_up_p(m);
        }
        _ => {
            if g.status() == GStatus::Running {
                // SAFETY: `uc` is this handler's context.
                let at = unsafe { crate::arch::interrupted_regs(uc) };
                // SAFETY: `uc` is this handler's context and the interrupted
                // code runs on g's stack, `lo..top`, which it owns.
                match unsafe { crate::arch::inject_async_preempt(uc, stack.lo()..stack.top(), preempt_hook) } {
                    Ok(()) => g.set_interrupted(Some(at)),
                    Err(Refusal::NotNow) => {}
                    // Too near the bottom of its stack for the hook's
                    // frames: asking again would find it there as long as
                    // it spins, so it gives up its P instead.
                    Err(Refusal::NoRoom) => give_up_p(m),
                }
            }
        }
    }
}

/// A goroutine that a preemption signal cannot stop where it runs gives up
/// its P as if it had entered a system call (module header); it is then
/// signalled at growing gaps (`M::foreign_refusals`). Signal context.
fn give_up_p(m: &M) {
    m.foreign_refusals.fetch_add(1, Ordering::Relaxed);
    super::syscall::enter_from_signal(m);
}

/// Pass a SIGURG that is not ours to the program's own handler.
///
/// # Safety
/// Signal context, with the handler's own arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    if let Some(prev) = PREVIOUS.get() {
        // SAFETY: the caller's contract; `prev` is what we replaced.
        unsafe { os::call_previous(prev, sig, info, uc) };
    }
}

/// Called by the `async_preempt` trampoline on the preempted goroutine's
/// stack, with its registers saved below. The interrupted code may be
/// anywhere outside the runtime — inside `malloc`, holding its lock — so
/// this must neither allocate nor take a lock user code can hold: it only
/// releases the P (atomics), leaves the goroutine and the P to sysmon, which
/// queues them (`take_preempted`), and sleeps on the M's note. The
/// trampoline restores the registers; `errno`, which the sleep's system
/// calls may set, is restored here.
extern "sysv64" fn preempt_hook() {
    let errno = os::SavedErrno::save();
    wait_preempted();
    errno.restore();
}

/// `preempt_hook`'s work.
fn wait_preempted() {
    let m = current_m().expect("async preemption outside an M");
    let g = m.curg.get().expect("async preemption on g0");
    let sched = &*m.sched;
    // The goroutine may have been stopped inside the allocator, holding
    // its lock: nothing from here until it runs again may allocate
    // (`spawner.rs`).
    let _no_alloc = crate::debug::NoAlloc::enter();
    // Not re-entered by another SIGURG while in here.
    m.locks.set(m.locks.get() + 1);
    let released = match m.p.get() {
        Some(p) => {
            crate::trace::preempted(&p, g);
            p.preempt.store(false, Ordering::Relaxed);
            Some(sched.releasep(m))
        }
        // Computing without a P after a system call: it must not run user
        // code beside `procs` others. Its own P may still be free.
        None => match m.oldp.take() {
            Some(p) if p.cas_status(PStatus::Syscall, PStatus::Running) => {
                m.syscall_since.store(0, Ordering::Relaxed);
                p.holder.store(m as *const M as *mut M, Ordering::Release);
                m.p.set(Some(p));
                g.set_interrupted(None);
                m.locks.set(m.locks.get() - 1);
                return;
            }
            _ => {
                m.syscall_since.store(0, Ordering::Relaxed);
                None
            }
        },
    };
    super::EventCounters::bump(&sched.events.preempts_async);
    let locked = g.lockedm.get().is_some();
    g.lockedm.set(Some(MPtr::new(m)));
    m.handoff_p.set(released);
    // Release pairs with sysmon's Acquire swap: `handoff_p`, the G's
    // lockedm and everything before are visible to it.
    m.handoff.store(true, Ordering::Release);
    sched.wake_sysmon();
    sched.sleep_until_handed_p(m, g, locked, true);
    g.set_interrupted(None);
    g.set_status(GStatus::Running);
    m.preempt_pending.set(false);
    m.signal_request.store(REQUEST_NONE, Ordering::Relaxed);
    m.locks.set(m.locks.get() - 1);
}

/// A runtime call's preemption check (Go's stack-guard check): yield if
/// sysmon asked, or take a P back first if the goroutine lost it in a
/// system call. On a goroutine (or a plain thread: nothing to do); never
/// with a runtime lock held.
#[inline]
pub(crate) fn safe_point() {
    if let Some(m) = current_m() {
        safe_point_on(m);
    }
}

/// `safe_point` for a caller that has just read `current_m()`. Returns
/// whether the goroutine yielded (and so may be on another M now).
#[inline]
pub(crate) fn safe_point_on(m: &M) -> bool {
    if m.curg.get().is_none() {
        return false;
    }
    if m.oldp.get().is_some() || m.p.get().is_none() {
        m.sched.reacquire_p(m);
        return false;
    }
    if m.p.get().is_some_and(|p| p.preempt.load(Ordering::Relaxed)) {
        super::EventCounters::bump(&m.sched.events.preempts_cooperative);
        mcall(Pending::Yield);
        return true;
    }
    super::chaos::point_on(m)
}

impl super::Sched {
    /// Queue the running goroutine `g` locked to its M `m` (which holds no
    /// P) and sleep until whoever picks `g` from the queue hands `m` a P.
    /// On `g`'s own stack, at a runtime call (so it may allocate).
    pub(crate) fn wait_for_turn(&self, m: &M, g: super::GPtr) {
        let locked = g.lockedm.get().is_some();
        g.lockedm.set(Some(MPtr::new(m)));
        g.set_status(GStatus::Runnable);
        self.globrunqput(g);
        self.wakep();
        self.sleep_until_handed_p(m, g, locked, false);
        g.set_status(GStatus::Running);
    }

    /// Sleep on `m`'s note until `startlockedm` hands it a P, then take it;
    /// `g`, queued locked to `m` for that, is unlocked again unless it was
    /// locked before (`was_locked`).
    ///
    /// At shutdown nobody will: return without one, and the goroutine runs
    /// on P-less, as one that never calls into the runtime would; at its
    /// next runtime call it comes back here and returns at once, and g0
    /// ends it (`execute`). Shutdown is checked before each sleep too: its
    /// one wake-up may have been spent on the sleep that let the goroutine
    /// run on (`begin_shutdown` sets the flag before it wakes anyone). Then
    /// `g` stays locked to `m`, even through `unlock_os_thread`: its queue
    /// entry may still be there, or in a P's local queue, and an M that
    /// picks it must go through `startlockedm`, which sees the shutdown and
    /// leaves it, never switch to its stale context while it runs on here.
    /// (Unlocked, it was resumed so — "a dead goroutine was resumed" — in
    /// about one run in 75 of `dropping_a_runtime_whatever_its_goroutines_do`.)
    ///
    /// A goroutine stopped by a signal (`preempted`) may have been stopped
    /// holding a lock every other thread now waits for — the allocator's —
    /// and then no P may ever be handed on again. So it does not sleep for
    /// good: every `escape_after` it looks whether any P has run a goroutine
    /// meanwhile, and if none has, it takes itself back (`escape`) and runs
    /// on, with an idle P or without one, as after a system call (sysmon
    /// preempts it again after a slice if others wait by then). A runtime
    /// that makes progress is never escaped from: some P switches
    /// goroutines at least once a slice while any goroutine waits.
    fn sleep_until_handed_p(&self, m: &M, g: super::GPtr, was_locked: bool, preempted: bool) {
        let escape_after = self.preempt_slice.saturating_mul(4).max(ESCAPE_MIN_WAIT);
        let mut seen = self.switches();
        let p = loop {
            if self.is_shut_down() {
                self.drop_handed_p(m);
                return;
            }
            let woken = match std::time::Instant::now().checked_add(escape_after) {
                Some(deadline) if preempted => m.park.sleep_until(deadline),
                _ => {
                    m.park.sleep();
                    true
                }
            };
            if !woken {
                let now = self.switches();
                let progress = now != seen;
                seen = now;
                match self.escape(m, g, progress) {
                    Escape::No => continue,
                    Escape::WithP(p) => break p,
                    Escape::WithoutP => {
                        m.syscall_since
                            .store(super::timers::nanotime().max(1), Ordering::Relaxed);
                        if !was_locked {
                            g.lockedm.set(None);
                        }
                        return;
                    }
                }
            }
            m.park.clear();
            if let Some(p) = m.nextp.take() {
                break p;
            }
        };
        self.acquirep(m, p);
        m.spinning.set(false);
        p.preempt.store(false, Ordering::Relaxed);
        p.schedtick.store(p.tick().wrapping_add(1), Ordering::Relaxed);
        if !was_locked {
            g.lockedm.set(None);
        }
    }

    /// Goroutine switches on every P ever made, and Ps changing hands
    /// (which resume preempted and locked goroutines without a switch):
    /// moves whenever the scheduler makes progress. Allocates nothing (the
    /// preemption hook's rule).
    fn switches(&self) -> u64 {
        let ran: u64 = (0..super::MAX_PROCS)
            .map_while(|id| self.p(id))
            .map(|p| p.ran.load(Ordering::Relaxed))
            .sum();
        ran.wrapping_add(self.p_acquires.load(Ordering::Relaxed))
    }

    /// A preempted goroutine `g` on `m` takes itself back from the runtime
    /// that does not run it (`sleep_until_handed_p`): from sysmon, if it has
    /// not queued it yet (with the P it left, if any: sysmon, woken by the
    /// hook, has not come for it in four slices and may be the one stuck),
    /// else, if no P made `progress`, out of the global queue (with an idle
    /// P, if any). `No` if someone has picked it already (that one hands
    /// `m` a P), or others are running.
    fn escape(&self, m: &M, g: super::GPtr, progress: bool) -> Escape {
        // Acquire pairs with the hook's Release store, as in `take_preempted`.
        if m.handoff.swap(false, Ordering::Acquire) {
            self.events.preempt_escapes.fetch_add(1, Ordering::Relaxed);
            return match m.handoff_p.take() {
                Some(p) => Escape::WithP(p),
                None => Escape::WithoutP,
            };
        }
        if progress {
            return Escape::No;
        }
        let mut l = lock_sched(&self.lock);
        if self.is_shut_down() || !l.runq.remove(g) {
            return Escape::No;
        }
        self.runqsize.store(l.runq.len(), Ordering::Relaxed);
        g.set_status(GStatus::Running);
        self.events.preempt_escapes.fetch_add(1, Ordering::Relaxed);
        match self.pidleget(&mut l) {
            Some(p) => Escape::WithP(p),
            None => Escape::WithoutP,
        }
    }

    /// sysmon's half of an async preemption: queue the goroutine a
    /// preempted M left (locked to that M) and pass its P on. Returns
    /// whether there was one. `allm` held by the caller.
    pub(crate) fn take_preempted(&self, m: &M) -> bool {
        // Acquire pairs with the hook's Release store.
        if !m.handoff.swap(false, Ordering::Acquire) {
            return false;
        }
        let g = m.curg.get().expect("a preempted M runs a goroutine");
        let p = m.handoff_p.take();
        // Due timers are often why it was preempted (nobody else could run
        // them): the M that takes the P runs the P's timers before it looks
        // at the global queue, so the goroutines they wake run first. Not
        // run here: a timer heap's lock may be held by a thread waiting for
        // the allocator's lock the preempted goroutine holds (`spawner.rs`).
        g.set_status(GStatus::Runnable);
        self.globrunqput(g);
        match p {
            Some(p) => self.handoffp(p),
            None => self.wakep(),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::super::m::current_m;
    use crate::arch::{HOOK_STACK_RESERVE, stack_needed};

    /// What the goroutine's free stack is filled with, to see what was used.
    const FILL: u8 = 0xa5;
    /// Preemptions measured.
    const ROUNDS: u64 = 50;

    /// The deepest any preemption of a spinning goroutine went below the
    /// rsp it was interrupted at (bytes), and how many async preemptions it
    /// took: the goroutine fills all of its stack below rsp with `FILL`,
    /// spins touching nothing, and is preempted `ROUNDS` times (with one P,
    /// each turn of the main goroutine needs one); then the lowest byte that
    /// is not `FILL` any more marks the high-water mark of the hook path.
    fn hook_path_depth() -> (usize, u64) {
        static SPINNING: AtomicBool = AtomicBool::new(false);
        static STOP: AtomicBool = AtomicBool::new(false);
        SPINNING.store(false, Ordering::SeqCst);
        STOP.store(false, Ordering::SeqCst);
        let rt = crate::Runtime::builder()
            .procs(1)
            .stack_size(64 * 1024)
            .preempt_slice(Duration::from_millis(1))
            .build()
            .unwrap();
        rt.block_on(|| {
            let before = crate::runtime::metrics().preempts_async;
            let spinner = crate::go(|| {
                let g = current_m().and_then(|m| m.curg.get()).expect("on a goroutine");
                // SAFETY: the goroutine's own G, which its M runs now.
                let lo = unsafe { g.stack_ref() }.expect("a goroutine has a stack").lo();
                let sp: usize;
                // SAFETY: writes only the goroutine's own stack below rsp,
                // which holds nothing live (no red zone use: the block is
                // not `nostack`); then reads and writes two flags.
                unsafe {
                    std::arch::asm!(
                        "mov {sp}, rsp",
                        "mov rcx, rsp",
                        "sub rcx, rdi",
                        "mov al, {fill}",
                        "rep stosb",
                        "mov byte ptr [{spinning}], 1",
                        "2:",
                        "pause",
                        "cmp byte ptr [{stop}], 0",
                        "je 2b",
                        sp = out(reg) sp,
                        fill = const FILL,
                        spinning = in(reg) SPINNING.as_ptr(),
                        stop = in(reg) STOP.as_ptr(),
                        inout("rdi") lo => _,
                        out("rcx") _,
                        out("rax") _,
                    );
                }
                // SAFETY: `lo..sp` is this goroutine's stack.
                let lowest = (lo..sp).find(|&at| unsafe { *(at as *const u8) } != FILL);
                lowest.map_or(0, |at| sp - at)
            });
            while !SPINNING.load(Ordering::SeqCst) {
                crate::yield_now();
            }
            for _ in 0..ROUNDS {
                crate::yield_now();
            }
            STOP.store(true, Ordering::SeqCst);
            let depth = spinner.join().unwrap();
            (depth, crate::runtime::metrics().preempts_async - before)
        })
    }

    /// Run with `--nocapture` to see the figures behind
    /// `arch::HOOK_STACK_RESERVE`: the deepest the hook path went, with
    /// tracing off and on (its hooks encode events on this stack).
    #[test]
    fn the_hook_path_stays_well_inside_its_stack_reserve() {
        let frame = stack_needed().expect("XSAVE") - HOOK_STACK_RESERVE;
        let trace = std::env::temp_dir().join(format!("gort-hook-depth-{}.json", std::process::id()));
        for tracing in [false, true] {
            if tracing {
                crate::trace::start(&trace).unwrap();
            }
            let (depth, preempts) = hook_path_depth();
            if tracing {
                crate::trace::stop().unwrap();
                std::fs::remove_file(&trace).unwrap();
            }
            // The alignment slack counted in `frame` may not all be used:
            // the hook's share is this or up to 63 bytes more.
            let hook = depth.saturating_sub(frame);
            eprintln!(
                "tracing {tracing}: {preempts} preemptions went {depth} bytes below the interrupted rsp, \
                 {frame} of them for the saved registers and {hook} for the hook (reserve {HOOK_STACK_RESERVE})"
            );
            assert!(preempts >= ROUNDS / 2, "only {preempts} preemptions");
            assert!(depth > frame, "nothing measured below the saved registers");
            // The margin the reserve's documentation promises.
            assert!(
                2 * (hook + 63) <= HOOK_STACK_RESERVE,
                "the hook path needs more than half its reserve"
            );
        }
    }
}
