//! The machine-dependent half of asynchronous preemption: Go's `sigctxt.pushCall`
//! (signal_amd64.go) and `asyncPreempt` (preempt_amd64.s).
//!
//! A thread running a goroutine that never calls into the runtime is
//! interrupted by SIGURG. The handler must not switch stacks or do any real
//! work (it runs on the alternate signal stack with SIGURG blocked), so it
//! only edits the interrupted context with [`inject_async_preempt`]: when it
//! returns, the thread runs [`async_preempt`] as if the interrupted
//! instruction had called it. The trampoline saves *every* register, calls the
//! hook the injector named (the scheduler's, which may park the goroutine and
//! sleep the thread for as long as it likes), restores everything and returns
//! to the interrupted instruction with the stack pointer it had. The goroutine
//! never notices, whatever instruction it was at.
//!
//! Frame, from the interrupted rsp (`sp`) down:
//!
//! | address          | contents                                             |
//! |------------------|------------------------------------------------------|
//! | `sp-128 .. sp`   | red zone: live leaf data, never touched (ABI §3.2.2) |
//! | `sp-136`         | interrupted rip (the trampoline's return address)     |
//! | `sp-144`         | hook address (rsp on entry)                          |
//! | `sp-152`         | rflags                                               |
//! | `sp-160 .. -272` | rax, rbx, rcx, rdx, rsi, rdi, rbp, r8 … r15          |
//! | below, 64-aligned| XSAVE area (x87, SSE, AVX, AVX-512, PKRU: all of XCR0) |
//! | below            | the hook's frames                                    |
//!
//! The handler writes the first two words; the trampoline pushes the rest and
//! leaves with `ret 128`, which pops the return address and the skipped red
//! zone, so rsp is exactly `sp` again. The hook address travels on the stack
//! rather than in a global so that the injector decides per call what runs
//! (the scheduler's hook; a test's hook) and `arch` knows nothing about the
//! scheduler.
//!
//! Vector state is saved with `xsave64` of everything XCR0 enables into an
//! area of the size CPUID leaf 0xD sub-leaf 0 reports in EBX (2440 bytes on
//! the AMD EPYC this was written on: x87/SSE 512 + header 64 + AVX 256 +
//! PKRU at offset 2432; about 2.5 KiB with AVX-512 and 11 KiB with AMX). The
//! size is read once, by the first injection, into a static the trampoline
//! loads: CPUID is an instruction (no allocation, no lock), so reading it in
//! the handler is allowed; it only costs one VM exit, once per process. The
//! 64-byte XSAVE header is zeroed before each `xsave64`: standard XSAVE writes
//! only XSTATE_BV, and XRSTOR faults if the rest of the header (XCOMP_BV and
//! reserved bytes) is not zero. `vzeroupper` before the hook avoids the
//! SSE/AVX transition penalty in the hook's code; it is skipped when AVX is
//! not enabled, where it would be `#UD`.
//!
//! Refusals (the injector returns a [`Refusal`] and changes nothing):
//! - rip is inside `async_preempt`: a second signal during a preemption's
//!   save or restore. Nesting there would be harmless for the registers but
//!   unbounded; Go refuses too. The trampoline's extent is its own symbol
//!   and a label after its last instruction. `NotNow`, as is an rsp that is
//!   not inside the stack the caller named: the scheduler simply tries
//!   again on its next round.
//! - the room below rsp is less than [`stack_needed`] — the frame above
//!   plus [`HOOK_STACK_RESERVE`] for the hook — or there is no XSAVE:
//!   `NoRoom`. Trying again is no use while the code stays that deep (a
//!   goroutine spinning near the bottom of its stack), so the scheduler
//!   makes the goroutine give up its P instead (`sched/preempt.rs`).
//!
//! The hook runs in ordinary thread context (not in the signal handler), on
//! the interrupted stack, with the interrupted code frozen at an arbitrary
//! instruction: it must not take a lock or call a non-reentrant function that
//! code might be inside (malloc, stdio). It may block for any length of time;
//! it must return on the thread and stack it was called on. SIGURG is not
//! blocked while it runs, and code in the hook is as preemptible as any other
//! (only the trampoline's own instructions are refused): a scheduler that
//! must not be re-entered marks the thread non-preemptible in its hook. It
//! is entered as the ABI wants (rsp 16-aligned, DF clear) but with the
//! interrupted code's MXCSR and x87 control word, which the ABI lets a
//! caller choose. A panic in the hook aborts (it is `extern "sysv64"`), so it
//! can never unwind into the interrupted frame.
//!
//! Backtraces: `async_preempt` has signal-frame CFI (`.cfi_signal_frame`, the
//! CFA at the interrupted rsp, every GPR's save slot), so an unwinder walks
//! from the hook through the trampoline into the interrupted function, using
//! its rip without the usual "minus one" a return address gets (gdb shows
//! the trampoline as `<signal handler called>`). rbp keeps the interrupted
//! value throughout, so a frame-pointer walk from the hook goes on at the
//! interrupted function's caller instead of following garbage.
//!
//! Not compatible with CET user shadow stacks (`ret 128` returns to an address
//! no `call` pushed); Rust binaries are not built with shadow stacks.

use core::arch::naked_asm;
use core::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::SuspendedRegs;

/// The System V red zone below rsp that a leaf function may use without
/// moving rsp (ABI §3.2.2); the injected frame starts below it.
const RED_ZONE: usize = 128;

/// Depth of the trampoline's entry rsp below the interrupted rsp: the red
/// zone, the return address (interrupted rip) and the hook address.
const ENTRY_DEPTH: usize = RED_ZONE + 8 + 8;

/// Bytes the trampoline pushes: rflags and the 15 general-purpose registers.
const SAVED_REGS: usize = 16 * 8;

/// Worst-case bytes lost realigning rsp to 64 for `xsave64`.
const XSAVE_ALIGN_SLACK: usize = 63;

/// Stack left for the hook's own frames below the XSAVE area: twice the
/// deepest the scheduler's hook was measured to go, so that a deeper hook
/// path shows up in a test long before it overruns (a test in
/// `sched/preempt.rs` fills a spinning goroutine's free stack with a
/// pattern and finds the lowest byte its preemptions changed). Its park
/// path (marking the goroutine, handing off its P, two futex calls) went
/// at most 120 bytes below the XSAVE area in a release build (490 with
/// tracing on, where the trace hooks encode events on this stack), 170 at
/// opt-level 1 (570), 610 at opt-level 0, and 2,210 at opt-level 0 with
/// tracing: the deepest. Overrunning it hits
/// the goroutine's guard page (reported as a stack overflow). A goroutine
/// with less room than [`stack_needed`] is never stopped in place
/// ([`Refusal::NoRoom`]: its P is taken instead), so the reserve costs
/// only where a goroutine is stopped: with the frame above (about 3 KiB
/// with AVX-512) one with the minimum 16 KiB stack is preempted in place
/// while its own frames use up to about 8.5 KiB.
pub(crate) const HOOK_STACK_RESERVE: usize = 4608;

/// Bytes of the XSAVE area (CPUID 0xD.0 EBX): 0 until the first injection
/// reads it, `usize::MAX` if the CPU or OS lacks XSAVE (no preemption then).
/// The trampoline reads it with a plain load; it never changes once set.
static XSAVE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Whether AVX is enabled (CPUID.1 ECX.AVX and XCR0 bits 1–2), so that
/// `vzeroupper` is legal. Written before [`XSAVE_SIZE`] is published.
static AVX_USABLE: AtomicBool = AtomicBool::new(false);

// The end of `async_preempt`: a label its assembly defines after its last
// instruction. (Not the linker's `__start_`/`__stop_` section symbols: a
// program that references them but never the trampoline itself, as
// `is_async_preempt` alone does, gets its section collected and fails to
// link.)
unsafe extern "C" {
    static gort_async_preempt_end: u8;
}

/// Why [`inject_async_preempt`] left a context as it was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Refusal {
    /// rip is inside the trampoline, or rsp is not on the named stack: a
    /// later signal may well find the thread somewhere it can be stopped.
    NotNow,
    /// Less than [`stack_needed`] is left below rsp, or the CPU has no
    /// usable XSAVE: the thread cannot be stopped where it runs, however
    /// often it is asked, until it returns from its deep frames. The caller
    /// must make it give way some other way.
    NoRoom,
}

/// Edit the signal context `uc` so that returning from the handler runs
/// `async_preempt`, which calls `hook` with the interrupted state saved and
/// then resumes the interrupted instruction exactly. Refuses, changing
/// nothing, when the thread can't take the frame (see the module docs and
/// [`Refusal`]).
///
/// `stack` is the usable extent of the stack the interrupted code is meant to
/// be on (the goroutine's, above its guard page); an rsp outside it (the
/// thread is on g0 or some other stack) is refused.
///
/// Signal handler: no allocation, no locks. The first call on the process
/// executes CPUID (a VM exit under virtualisation) to size the XSAVE area.
///
/// # Safety
/// `uc` must be the `ucontext_t` the kernel passed to the running `SA_SIGINFO`
/// handler, on the thread that was interrupted, and `stack` must be writable
/// memory that belongs to that thread's interrupted code (everything in it
/// below the red zone is free to use, as the ABI allows).
pub(crate) unsafe fn inject_async_preempt(
    uc: *mut libc::ucontext_t,
    stack: Range<usize>,
    hook: extern "sysv64" fn(),
) -> Result<(), Refusal> {
    // SAFETY: the caller passes the live ucontext of this handler invocation;
    // nothing else references it while the handler runs.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let sp = gregs[libc::REG_RSP as usize] as usize;
    if trampoline_range().contains(&rip) || !(stack.start..=stack.end).contains(&sp) {
        return Err(Refusal::NotNow);
    }
    if stack_needed().is_none_or(|need| sp - stack.start < need) {
        return Err(Refusal::NoRoom);
    }
    let entry_sp = sp - ENTRY_DEPTH;
    // SAFETY: `stack` is the interrupted code's writable stack (caller's
    // contract) and [entry_sp, sp - RED_ZONE) lies in it, more than
    // `stack_needed` above its bottom. Memory below the red zone is dead to
    // the interrupted code by the ABI, so these words clobber nothing live.
    unsafe {
        (entry_sp as *mut usize).write(hook as usize);
        ((entry_sp + 8) as *mut usize).write(rip);
    }
    gregs[libc::REG_RSP as usize] = entry_sp as i64;
    gregs[libc::REG_RIP as usize] = async_preempt as *const () as usize as i64;
    Ok(())
}

/// The registers a stack walk of the code `uc` interrupted starts from: its
/// rip (exact), rsp and rbp. For dumps of preempted goroutines.
///
/// # Safety
/// `uc` must be the `ucontext_t` the kernel passed to the running
/// `SA_SIGINFO` handler.
pub(crate) unsafe fn interrupted_regs(uc: *const libc::ucontext_t) -> SuspendedRegs {
    // SAFETY: the caller passes the live ucontext of this handler invocation.
    let gregs = unsafe { &(*uc).uc_mcontext.gregs };
    SuspendedRegs {
        ip: gregs[libc::REG_RIP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
    }
}

/// Whether `ip` is one of `async_preempt`'s instructions, such as the return
/// address of its call to the hook. Stack walks stop there: its CFA is
/// anchored in rbx, a register the unwinder does not track (`debug/unwind.rs`).
pub(crate) fn is_async_preempt(ip: usize) -> bool {
    trampoline_range().contains(&ip)
}

/// Whether a signal that interrupted its thread at `ip` came in at a system
/// call's boundary: just past a `syscall` instruction (the call returned,
/// or was interrupted) or on one (a call the kernel restarts after the
/// handler). A thread stopped there is passing through the kernel, not
/// computing at `ip`. Signal-safe: two byte reads, no calls.
pub(crate) fn at_system_call(ip: usize) -> bool {
    /// The encoding of `syscall`.
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    /// The smallest page: reads inside `ip`'s 4 KiB block stay in its page.
    const BLOCK: usize = 4096;
    let offset = ip % BLOCK;
    // SAFETY: `at` and `at + 1` lie in the 4 KiB block holding `ip` (the
    // callers below check the offset), which the thread was executing, so
    // it is mapped; code is readable on x86_64 Linux (no execute-only
    // mappings), and reading it has no side effects.
    let read = |at: usize| unsafe { std::ptr::read_unaligned(at as *const [u8; 2]) };
    (offset >= 2 && read(ip - 2) == SYSCALL) || (offset <= BLOCK - 2 && read(ip) == SYSCALL)
}

/// Stack the injected frame and the hook need below the interrupted rsp on
/// this CPU; `None` without XSAVE (no preemption at all then). Signal-safe.
pub(crate) fn stack_needed() -> Option<usize> {
    xsave_area_size().map(|xsave| ENTRY_DEPTH + SAVED_REGS + XSAVE_ALIGN_SLACK + xsave + HOOK_STACK_RESERVE)
}

/// The addresses of `async_preempt`'s instructions.
fn trampoline_range() -> Range<usize> {
    async_preempt as *const () as usize..(&raw const gort_async_preempt_end) as usize
}

/// The XSAVE area size, read from CPUID on first use; `None` without XSAVE.
/// Any thread, signal handlers included: no allocation, no locks.
fn xsave_area_size() -> Option<usize> {
    // Acquire pairs with the Release below so `AVX_USABLE` is set whenever a
    // size is seen. A race between two first callers only repeats CPUID.
    match XSAVE_SIZE.load(Ordering::Acquire) {
        0 => {}
        usize::MAX => return None,
        size => return Some(size),
    }
    const OSXSAVE: u32 = 1 << 27;
    const AVX: u32 = 1 << 28;
    const XCR0_SSE_AVX: u64 = 0b110;
    let leaf1 = core::arch::x86_64::__cpuid_count(1, 0);
    if leaf1.ecx & OSXSAVE == 0 {
        XSAVE_SIZE.store(usize::MAX, Ordering::Release);
        return None;
    }
    let xcr0 = read_xcr0();
    AVX_USABLE.store(
        leaf1.ecx & AVX != 0 && xcr0 & XCR0_SSE_AVX == XCR0_SSE_AVX,
        Ordering::Relaxed,
    );
    // OSXSAVE implies XSAVE, and XSAVE implies CPUID leaf 0xD exists.
    let size = core::arch::x86_64::__cpuid_count(0xd, 0).ebx as usize;
    XSAVE_SIZE.store(size, Ordering::Release);
    Some(size)
}

/// XCR0, the state components the OS enabled. Only after CPUID said OSXSAVE:
/// without it `xgetbv` is `#UD`.
fn read_xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv with ecx = 0 reads XCR0 and touches nothing else; the
    // caller checked OSXSAVE, which makes it legal in user mode.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The preemption trampoline. Entered, never called: `inject_async_preempt`
/// points the interrupted context here with the hook address at `[rsp]` and
/// the interrupted rip at `[rsp + 8]` (layout in the module docs).
///
/// # Safety
/// Only `inject_async_preempt` may direct execution here.
#[unsafe(naked)]
unsafe extern "sysv64" fn async_preempt() {
    naked_asm!(
        ".cfi_startproc",
        // The caller's rip is a resumption point, not a return address:
        // unwinders look it up as is, not as rip - 1.
        ".cfi_signal_frame",
        // CFA = the interrupted rsp; the unwinder restores rsp to it.
        ".cfi_def_cfa_offset {entry_depth}",
        ".cfi_offset rip, -{ret_addr_depth}",
        "pushfq",
        ".cfi_adjust_cfa_offset 8",
        "push rax",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rax, -160",
        "push rbx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rbx, -168",
        "push rcx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rcx, -176",
        "push rdx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rdx, -184",
        "push rsi",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rsi, -192",
        "push rdi",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rdi, -200",
        "push rbp",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rbp, -208",
        "push r8",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r8, -216",
        "push r9",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r9, -224",
        "push r10",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r10, -232",
        "push r11",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r11, -240",
        "push r12",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r12, -248",
        "push r13",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r13, -256",
        "push r14",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r14, -264",
        "push r15",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r15, -272",
        // rbx (callee-saved, so the hook keeps it) anchors the frame while
        // rsp moves to the aligned XSAVE area. Not rbp: it keeps the
        // interrupted value so frame-pointer walks stay sane.
        "mov rbx, rsp",
        ".cfi_def_cfa_register rbx",
        "sub rsp, qword ptr [rip + {xsave_size}]",
        "and rsp, -64",
        // Zero the XSAVE header (bytes 512..576); flags are saved already.
        "xor eax, eax",
        "mov [rsp + 512], rax",
        "mov [rsp + 520], rax",
        "mov [rsp + 528], rax",
        "mov [rsp + 536], rax",
        "mov [rsp + 544], rax",
        "mov [rsp + 552], rax",
        "mov [rsp + 560], rax",
        "mov [rsp + 568], rax",
        // EDX:EAX = all ones: save every component XCR0 enables.
        "mov eax, -1",
        "mov edx, -1",
        "xsave64 [rsp]",
        // The ABI's entry state for the hook: DF clear, upper halves clean.
        "cld",
        "cmp byte ptr [rip + {avx_usable}], 0",
        "je 2f",
        "vzeroupper",
        "2:",
        // rsp is 64-aligned here, so 16-aligned at the call as the ABI wants.
        "call qword ptr [rbx + {hook_slot}]",
        "mov eax, -1",
        "mov edx, -1",
        "xrstor64 [rsp]",
        "mov rsp, rbx",
        ".cfi_def_cfa_register rsp",
        // The pops leave each slot holding the value just restored, so the
        // save rules stay true; only the CFA offset needs tracking.
        "pop r15",
        ".cfi_adjust_cfa_offset -8",
        "pop r14",
        ".cfi_adjust_cfa_offset -8",
        "pop r13",
        ".cfi_adjust_cfa_offset -8",
        "pop r12",
        ".cfi_adjust_cfa_offset -8",
        "pop r11",
        ".cfi_adjust_cfa_offset -8",
        "pop r10",
        ".cfi_adjust_cfa_offset -8",
        "pop r9",
        ".cfi_adjust_cfa_offset -8",
        "pop r8",
        ".cfi_adjust_cfa_offset -8",
        "pop rbp",
        ".cfi_adjust_cfa_offset -8",
        "pop rdi",
        ".cfi_adjust_cfa_offset -8",
        "pop rsi",
        ".cfi_adjust_cfa_offset -8",
        "pop rdx",
        ".cfi_adjust_cfa_offset -8",
        "pop rcx",
        ".cfi_adjust_cfa_offset -8",
        "pop rbx",
        ".cfi_adjust_cfa_offset -8",
        "pop rax",
        ".cfi_adjust_cfa_offset -8",
        "popfq",
        ".cfi_adjust_cfa_offset -8",
        // Drop the hook slot without touching the flags just restored.
        "lea rsp, [rsp + 8]",
        ".cfi_adjust_cfa_offset -8",
        "ret {red_zone}",
        ".globl gort_async_preempt_end",
        ".hidden gort_async_preempt_end",
        "gort_async_preempt_end:",
        ".cfi_endproc",
        entry_depth = const ENTRY_DEPTH,
        ret_addr_depth = const RED_ZONE + 8,
        hook_slot = const SAVED_REGS,
        red_zone = const RED_ZONE,
        xsave_size = sym XSAVE_SIZE,
        avx_usable = sym AVX_USABLE,
    )
}

#[cfg(test)]
mod tests {
    //! Each test that takes signals installs its own SIGURG handler (held
    //! under `SIGURG_LOCK`, restored on drop), runs the code to preempt on a
    //! fresh thread with its own alternate signal stack, and pelts that
    //! thread with SIGURG from the test thread, one signal at a time (the
    //! next is sent once the previous was handled, so none coalesce). Nothing
    //! asserts on timing: counts have floors far below what any schedule
    //! produces.

    use super::*;
    use std::backtrace::Backtrace;
    use std::hint::black_box;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::thread;
    use std::time::{Duration, Instant};

    /// Serialises the tests that install a SIGURG handler (process-wide state).
    static SIGURG_LOCK: Mutex<()> = Mutex::new(());

    // Shared with the handler and the hook; reset by `SigurgHandler::install`.
    /// `pthread_t` of the thread to preempt; 0 while there is none.
    static TARGET: AtomicUsize = AtomicUsize::new(0);
    static TARGET_STACK_LO: AtomicUsize = AtomicUsize::new(0);
    static TARGET_STACK_HI: AtomicUsize = AtomicUsize::new(0);
    static HANDLED: AtomicUsize = AtomicUsize::new(0);
    static INJECTED: AtomicUsize = AtomicUsize::new(0);
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    /// Signals the handler left alone because hooks were already nested.
    static SKIPPED: AtomicUsize = AtomicUsize::new(0);
    static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);
    /// Hooks running right now on the target (a hook can itself be preempted).
    static HOOK_DEPTH: AtomicUsize = AtomicUsize::new(0);
    static MAX_HOOK_DEPTH: AtomicUsize = AtomicUsize::new(0);
    // The backtrace test's hand-off: the hook captures once, while the
    // interrupted thread is inside `interrupted_spin`.
    static CAPTURE_BACKTRACE: AtomicBool = AtomicBool::new(false);
    static IN_SPIN: AtomicBool = AtomicBool::new(false);
    static CAPTURE_CLAIMED: AtomicBool = AtomicBool::new(false);
    static CAPTURED: AtomicBool = AtomicBool::new(false);
    static BACKTRACE: Mutex<Option<String>> = Mutex::new(None);

    /// Hooks that may be running on the target at once.
    const MAX_HOOK_NESTING: usize = 2;
    /// Signals sent by the register test; the red-zone test sends half.
    const SIGNALS: usize = 20_000;
    /// Floor on hook runs: each handled signal injects unless it lands in the
    /// trampoline itself, so any schedule gives far more.
    const MIN_HOOK_CALLS: usize = 1_000;

    /// The widest vector registers the CPU has (the mix functions and
    /// `scramble` take it as their level).
    #[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
    enum Vector {
        Sse = 0,
        Avx2 = 1,
        Avx512 = 2,
    }

    fn vector_level() -> Vector {
        if is_x86_feature_detected!("avx512f") {
            Vector::Avx512
        } else if is_x86_feature_detected!("avx2") {
            Vector::Avx2
        } else {
            Vector::Sse
        }
    }

    // The action `SigurgHandler::install` replaced, for `on_sigurg` to pass
    // other threads' signals on to: this test binary also runs the
    // scheduler's tests, whose runtime installs its own SIGURG handler (once
    // per process) and must keep getting its signals meanwhile.
    /// Its `sa_sigaction`; `SIG_DFL` (0) when there is nothing to call.
    static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
    static PREVIOUS_SIGINFO: AtomicBool = AtomicBool::new(false);
    /// A handler was installed over ours while a test ran, so it may chain
    /// back to ours: from then on ours must not chain to it (a loop).
    static SHADOWED: AtomicBool = AtomicBool::new(false);

    /// SIGURG → `on_sigurg` while alive; the previous action comes back on
    /// drop, unless another handler replaced ours meanwhile (then that one
    /// stays). Holds `SIGURG_LOCK` throughout.
    struct SigurgHandler {
        previous: libc::sigaction,
        _serialised: MutexGuard<'static, ()>,
    }

    impl SigurgHandler {
        fn install() -> SigurgHandler {
            let serialised = SIGURG_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
            for counter in [
                &HANDLED,
                &INJECTED,
                &REFUSED,
                &SKIPPED,
                &HOOK_CALLS,
                &HOOK_DEPTH,
                &MAX_HOOK_DEPTH,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            for flag in [&CAPTURE_BACKTRACE, &IN_SPIN, &CAPTURE_CLAIMED, &CAPTURED] {
                flag.store(false, Ordering::Relaxed);
            }
            // Before any signal: the hook must not be the first to run the
            // (non-allocating, but lazily initialised) feature detection.
            vector_level();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigurg;
            // SAFETY: all-zero is a valid sigaction (empty mask, no flags).
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = handler as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            // SAFETY: all-zero is a valid out-parameter.
            let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are valid; the handler is async-signal-safe.
            assert_eq!(unsafe { libc::sigaction(libc::SIGURG, &action, &mut previous) }, 0);
            let chain = !SHADOWED.load(Ordering::Relaxed) && previous.sa_sigaction != libc::SIG_IGN;
            let chained = if chain { previous.sa_sigaction } else { libc::SIG_DFL };
            PREVIOUS_SIGINFO.store(previous.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
            PREVIOUS_HANDLER.store(chained, Ordering::Release);
            SigurgHandler {
                previous,
                _serialised: serialised,
            }
        }
    }

    impl Drop for SigurgHandler {
        fn drop(&mut self) {
            // SAFETY: all-zero is a valid out-parameter.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: reads the current action into a valid out-parameter.
            let ret = unsafe { libc::sigaction(libc::SIGURG, std::ptr::null(), &mut current) };
            assert_eq!(ret, 0);
            let ours: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigurg;
            if current.sa_sigaction != ours as libc::sighandler_t {
                SHADOWED.store(true, Ordering::Relaxed);
                return;
            }
            // SAFETY: reinstates the action `install` saved.
            let ret = unsafe { libc::sigaction(libc::SIGURG, &self.previous, std::ptr::null_mut()) };
            assert_eq!(ret, 0);
        }
    }

    /// The SIGURG handler: preempt the target thread; pass any other
    /// thread's signal to the handler installed before.
    extern "C" fn on_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
        // SAFETY: pthread_self has no preconditions and is async-signal-safe.
        if unsafe { libc::pthread_self() } as usize != TARGET.load(Ordering::Relaxed) {
            let previous = PREVIOUS_HANDLER.load(Ordering::Acquire);
            if previous == libc::SIG_DFL {
                return;
            }
            if PREVIOUS_SIGINFO.load(Ordering::Relaxed) {
                // SAFETY: `previous` was installed as an SA_SIGINFO handler,
                // and these are the arguments the kernel gave us.
                let f = unsafe {
                    std::mem::transmute::<
                        libc::sighandler_t,
                        extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
                    >(previous)
                };
                f(sig, info, uc);
            } else {
                // SAFETY: `previous` was installed as a plain handler.
                let f = unsafe { std::mem::transmute::<libc::sighandler_t, extern "C" fn(libc::c_int)>(previous) };
                f(sig);
            }
            return;
        }
        // The policy a scheduler would apply (a hook marks its thread
        // non-preemptible), loosened to let a hook be preempted once so
        // nested frames get exercised too.
        if HOOK_DEPTH.load(Ordering::Relaxed) >= MAX_HOOK_NESTING {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            HANDLED.fetch_add(1, Ordering::Release);
            return;
        }
        let stack = TARGET_STACK_LO.load(Ordering::Relaxed)..TARGET_STACK_HI.load(Ordering::Relaxed);
        // SAFETY: `uc` is this invocation's context, and `stack` is the stack
        // of the target thread, which is the thread running this handler.
        let injected = unsafe { inject_async_preempt(uc.cast(), stack, test_hook) };
        if injected.is_ok() { &INJECTED } else { &REFUSED }.fetch_add(1, Ordering::Relaxed);
        HANDLED.fetch_add(1, Ordering::Release);
    }

    /// The hook: counts, optionally captures a backtrace, then does what a
    /// real hook's code does to the machine: clobbers every caller-saved
    /// register and the vector state, uses stack, and sometimes spins or
    /// sleeps (so signals arrive while it runs and preempt it in turn).
    extern "sysv64" fn test_hook() {
        let n = HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
        let depth = HOOK_DEPTH.fetch_add(1, Ordering::Relaxed) + 1;
        MAX_HOOK_DEPTH.fetch_max(depth, Ordering::Relaxed);
        // Claimed before capturing: this hook can itself be preempted inside
        // `force_capture`, and a nested one must not take std's backtrace
        // lock again.
        if CAPTURE_BACKTRACE.load(Ordering::Relaxed)
            && IN_SPIN.load(Ordering::Relaxed)
            && !CAPTURE_CLAIMED.swap(true, Ordering::Relaxed)
        {
            // Allocating is fine here: the interrupted code is a bare spin.
            let text = Backtrace::force_capture().to_string();
            *BACKTRACE.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
            CAPTURED.store(true, Ordering::Release);
        }
        let mut junk = [0x5au8; 2048];
        black_box(&mut junk);
        // SAFETY: `vector_level` says which instructions the CPU has.
        unsafe { scramble(vector_level() as u64) };
        match n % 8 {
            0 => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(5) {
                    std::hint::spin_loop();
                }
            }
            1 => sleep_until_micros_from_now(2),
            _ => {}
        }
        HOOK_DEPTH.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sleep to an absolute deadline, as a hook blocking on a futex would.
    /// Not `thread::sleep`: each retry after EINTR gets a fresh 50 µs of
    /// timer slack, so SIGURG every few dozen µs would starve it forever.
    fn sleep_until_micros_from_now(micros: i64) {
        // SAFETY: all-zero is a valid timespec; clock_gettime fills it.
        let mut deadline: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer and a clock every Linux has.
        assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut deadline) }, 0);
        deadline.tv_nsec += micros * 1_000;
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1_000_000_000;
        }
        // SAFETY: `deadline` is a valid normalised timespec; with
        // TIMER_ABSTIME nothing is written back.
        while unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &deadline,
                std::ptr::null_mut(),
            )
        } == libc::EINTR
        {}
    }

    /// This thread's alternate signal stack while alive (heap memory); the
    /// previous one is reinstated on drop.
    struct TestAltStack {
        _memory: Vec<u8>,
        previous: libc::stack_t,
    }

    impl TestAltStack {
        fn install() -> TestAltStack {
            let mut memory = vec![0u8; 64 * 1024];
            let stack = libc::stack_t {
                ss_sp: memory.as_mut_ptr().cast(),
                ss_flags: 0,
                ss_size: memory.len(),
            };
            // SAFETY: all-zero is a valid out-parameter.
            let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: `memory` outlives the registration (restored in drop).
            assert_eq!(unsafe { libc::sigaltstack(&stack, &mut previous) }, 0);
            TestAltStack {
                _memory: memory,
                previous,
            }
        }
    }

    impl Drop for TestAltStack {
        fn drop(&mut self) {
            // SAFETY: reinstates what `install` replaced, on the same thread
            // (`TestAltStack` lives in one thread's frame).
            let ret = unsafe { libc::sigaltstack(&self.previous, std::ptr::null_mut()) };
            assert_eq!(ret, 0);
        }
    }

    /// The calling thread's usable stack, above its guard page.
    fn current_thread_stack() -> Range<usize> {
        // SAFETY: all-zero is a valid out-parameter; pthread_getattr_np
        // initialises it and pthread_attr_destroy releases it.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
            let mut base = std::ptr::null_mut();
            let mut size = 0;
            assert_eq!(libc::pthread_attr_getstack(&attr, &mut base, &mut size), 0);
            libc::pthread_attr_destroy(&mut attr);
            base as usize..base as usize + size
        }
    }

    /// Run `work` on a new thread and send it up to `signals` SIGURGs, each
    /// after the previous one was handled; then set the flag `work` gets and
    /// wait for it. A panic in `work` is re-raised here.
    fn preempt_while<W: FnOnce(&AtomicBool) + Send>(signals: usize, work: W) {
        let stop = AtomicBool::new(false);
        let ready = AtomicBool::new(false);
        thread::scope(|scope| {
            let target = thread::Builder::new()
                .stack_size(1 << 20)
                .spawn_scoped(scope, || {
                    let _alt = TestAltStack::install();
                    let stack = current_thread_stack();
                    TARGET_STACK_LO.store(stack.start, Ordering::Relaxed);
                    TARGET_STACK_HI.store(stack.end, Ordering::Relaxed);
                    // SAFETY: no preconditions.
                    TARGET.store(unsafe { libc::pthread_self() } as usize, Ordering::Relaxed);
                    ready.store(true, Ordering::Release);
                    work(&stop);
                    TARGET.store(0, Ordering::Relaxed);
                })
                .expect("spawn the target thread");
            while !ready.load(Ordering::Acquire) && !target.is_finished() {
                thread::yield_now();
            }
            let thread = TARGET.load(Ordering::Relaxed) as libc::pthread_t;
            for _ in 0..signals {
                if target.is_finished() {
                    break;
                }
                let before = HANDLED.load(Ordering::Acquire);
                // SAFETY: `thread` is not joined yet, so its id is valid
                // even if it has just exited.
                unsafe { libc::pthread_kill(thread, libc::SIGURG) };
                while HANDLED.load(Ordering::Acquire) == before && !target.is_finished() {
                    thread::yield_now();
                }
            }
            stop.store(true, Ordering::Relaxed);
            if let Err(panic) = target.join() {
                std::panic::resume_unwind(panic);
            }
        });
        eprintln!(
            "handled {} injected {} refused {} skipped {} hook calls {} max hook nesting {}",
            HANDLED.load(Ordering::Relaxed),
            INJECTED.load(Ordering::Relaxed),
            REFUSED.load(Ordering::Relaxed),
            SKIPPED.load(Ordering::Relaxed),
            HOOK_CALLS.load(Ordering::Relaxed),
            MAX_HOOK_DEPTH.load(Ordering::Relaxed),
        );
    }

    /// Iterations of a mix function per checked round (tens of µs).
    const MIX_ITERS: u64 = 4_000;
    /// Distinct reference rounds; the target cycles through them.
    const ROUNDS: usize = 8;

    /// GPRs in the order rax, rbx, rcx, rdx, rsi, rdi, rbp, r8–r15 (one
    /// padding word), then xmm0–xmm15.
    #[repr(C)]
    #[derive(Clone, PartialEq, Debug)]
    struct GprState {
        gpr: [u64; 16],
        xmm: [[u64; 2]; 16],
    }

    #[repr(C)]
    #[derive(Clone, PartialEq, Debug)]
    struct AvxState {
        ymm: [[u64; 4]; 16],
    }

    #[repr(C)]
    #[derive(Clone, PartialEq, Debug)]
    struct Avx512State {
        zmm: [[u64; 8]; 32],
    }

    /// A different, non-trivial word for each (register, lane).
    fn seed(register: usize, lane: usize) -> u64 {
        0x9e37_79b9_7f4a_7c15u64
            .wrapping_mul(register as u64 * 16 + lane as u64 + 1)
            .rotate_left(register as u32)
    }

    impl GprState {
        fn seeded() -> GprState {
            let mut state = GprState {
                gpr: std::array::from_fn(|r| seed(r, 0)),
                xmm: std::array::from_fn(|r| std::array::from_fn(|lane| seed(r + 16, lane))),
            };
            state.gpr[15] = 0;
            // xmm13: f64 accumulator, xmm15: the divisor (both lanes).
            state.xmm[13] = [0f64.to_bits(); 2];
            state.xmm[15] = [3f64.to_bits(); 2];
            state
        }
    }

    impl AvxState {
        fn seeded() -> AvxState {
            let mut state = AvxState {
                ymm: std::array::from_fn(|r| std::array::from_fn(|lane| seed(r + 32, lane))),
            };
            // ymm9, ymm11–ymm13: f64 accumulators; ymm14, ymm15: constants.
            for r in [9, 11, 12, 13] {
                state.ymm[r] = [0f64.to_bits(); 4];
            }
            state.ymm[14] = [3f64.to_bits(); 4];
            state.ymm[15] = [0.1f64.to_bits(); 4];
            state
        }
    }

    impl Avx512State {
        fn seeded() -> Avx512State {
            Avx512State {
                zmm: std::array::from_fn(|r| std::array::from_fn(|lane| seed(r + 48, lane))),
            }
        }
    }

    /// `seed` followed by `ROUNDS` applications of `step`.
    fn reference_chain<S: Clone>(seed: S, step: impl Fn(&mut S)) -> Vec<S> {
        let mut chain = vec![seed];
        for _ in 0..ROUNDS {
            let mut next = chain.last().expect("seeded").clone();
            step(&mut next);
            chain.push(next);
        }
        chain
    }

    fn step_gpr(state: &mut GprState) {
        // SAFETY: `state` is a valid GprState; SSE2 is baseline on x86_64.
        unsafe { mix_gpr(state, MIX_ITERS) }
    }

    fn step_avx(state: &mut AvxState) {
        assert!(is_x86_feature_detected!("avx2"));
        // SAFETY: `state` is a valid AvxState and the CPU has AVX2.
        unsafe { mix_avx2(state, MIX_ITERS) }
    }

    fn step_avx512(state: &mut Avx512State) {
        assert!(is_x86_feature_detected!("avx512f"));
        // SAFETY: `state` is a valid Avx512State and the CPU has AVX-512F.
        unsafe { mix_avx512(state, MIX_ITERS) }
    }

    /// Runs the mix functions under fire, checking every round against the
    /// chain computed on an undisturbed thread.
    #[test]
    fn registers_flags_and_vector_state_survive_preemption() {
        let level = vector_level();
        let gpr_chain = reference_chain(GprState::seeded(), step_gpr);
        let avx_chain = (level >= Vector::Avx2).then(|| reference_chain(AvxState::seeded(), step_avx));
        let avx512_chain = (level >= Vector::Avx512).then(|| reference_chain(Avx512State::seeded(), step_avx512));
        let rounds = AtomicUsize::new(0);
        let mismatches = AtomicUsize::new(0);
        let first_mismatch = Mutex::new(None);
        let check = |round: usize, what: &str, ok: bool| {
            if !ok {
                mismatches.fetch_add(1, Ordering::Relaxed);
                first_mismatch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert_with(|| format!("{what} at round {round}"));
            }
        };

        let _handler = SigurgHandler::install();
        preempt_while(SIGNALS, |stop| {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) || round < ROUNDS {
                let k = round % ROUNDS;
                let mut gpr = gpr_chain[k].clone();
                step_gpr(&mut gpr);
                check(round, "GPR/SSE/flags", gpr == gpr_chain[k + 1]);
                if let Some(chain) = &avx_chain {
                    let mut avx = chain[k].clone();
                    step_avx(&mut avx);
                    check(round, "AVX2", avx == chain[k + 1]);
                }
                if let Some(chain) = &avx512_chain {
                    let mut avx512 = chain[k].clone();
                    step_avx512(&mut avx512);
                    check(round, "AVX-512", avx512 == chain[k + 1]);
                }
                round += 1;
            }
            rounds.store(round, Ordering::Relaxed);
        });

        eprintln!("vector level {level:?}, {} rounds", rounds.load(Ordering::Relaxed));
        assert_eq!(
            mismatches.load(Ordering::Relaxed),
            0,
            "first: {:?}",
            first_mismatch.lock().unwrap_or_else(PoisonError::into_inner)
        );
        let calls = HOOK_CALLS.load(Ordering::Relaxed);
        assert!(calls >= MIN_HOOK_CALLS, "only {calls} preemptions");
    }

    /// Iterations `redzone_spin` waits with its red zone live.
    const RED_ZONE_SPIN: u64 = 200_000;

    #[test]
    fn red_zone_survives_preemption() {
        let corrupted = AtomicU64::new(0);
        let _handler = SigurgHandler::install();
        preempt_while(SIGNALS / 2, |stop| {
            let mut seed = 1u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a self-contained leaf; any seed and count will do.
                let bad = unsafe { redzone_spin(RED_ZONE_SPIN, seed) };
                corrupted.fetch_add(bad, Ordering::Relaxed);
                seed += 1;
            }
        });
        assert_eq!(corrupted.load(Ordering::Relaxed), 0, "red-zone words corrupted");
        let calls = HOOK_CALLS.load(Ordering::Relaxed);
        assert!(calls >= MIN_HOOK_CALLS, "only {calls} preemptions");
    }

    /// Spins until the hook has captured a backtrace; returns the spin count.
    #[inline(never)]
    fn interrupted_spin(stop: &AtomicBool) -> u64 {
        IN_SPIN.store(true, Ordering::Relaxed);
        let mut spins = 0;
        while !CAPTURED.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
            spins += 1;
        }
        spins
    }

    #[inline(never)]
    fn preempted_caller(stop: &AtomicBool) {
        // Using the result after the call keeps this frame (no tail call).
        black_box(interrupted_spin(stop));
    }

    #[test]
    fn backtrace_from_the_hook_reaches_the_interrupted_function() {
        let _handler = SigurgHandler::install();
        CAPTURE_BACKTRACE.store(true, Ordering::Relaxed);
        preempt_while(SIGNALS, preempted_caller);
        let text = BACKTRACE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("the hook captured a backtrace");
        let position = |name: &str| text.find(name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        let order = [
            position("test_hook"),
            position("::async_preempt"),
            position("interrupted_spin"),
            position("preempted_caller"),
        ];
        assert!(order.is_sorted(), "frames out of order {order:?}:\n{text}");
    }

    /// A fake interrupted context and the stack it points into.
    struct FakeInterrupt {
        uc: libc::ucontext_t,
        stack: Vec<u64>,
    }

    const FAKE_RIP: usize = 0x1234_5678;
    const FAKE_STACK_WORDS: usize = 16 * 1024;
    const FILL: u64 = 0xdead_beef_cafe_f00d;

    impl FakeInterrupt {
        /// rip = `rip`, rsp `depth` bytes below the top of a filled stack.
        fn new(rip: usize, depth: usize) -> FakeInterrupt {
            let stack = vec![FILL; FAKE_STACK_WORDS];
            // SAFETY: all-zero is a valid ucontext_t (plain data).
            let mut uc: libc::ucontext_t = unsafe { std::mem::zeroed() };
            let top = stack.as_ptr_range().end as usize;
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = rip as i64;
            uc.uc_mcontext.gregs[libc::REG_RSP as usize] = (top - depth) as i64;
            FakeInterrupt { uc, stack }
        }

        fn sp(&self) -> usize {
            self.uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize
        }

        fn rip(&self) -> usize {
            self.uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
        }

        fn whole_stack(&self) -> Range<usize> {
            let words = self.stack.as_ptr_range();
            words.start as usize..words.end as usize
        }

        fn inject(&mut self, stack: Range<usize>) -> Result<(), Refusal> {
            // SAFETY: the context points into `self.stack`, which `stack`
            // lies within (or the call refuses before writing).
            unsafe { inject_async_preempt(&mut self.uc, stack, test_hook) }
        }

        /// The stack word at `address`.
        fn word(&self, address: usize) -> u64 {
            self.stack[(address - self.whole_stack().start) / 8]
        }

        fn assert_untouched(&self, rip: usize, sp: usize) {
            assert_eq!((self.rip(), self.sp()), (rip, sp));
            assert!(self.stack.iter().all(|&w| w == FILL), "stack written");
        }
    }

    #[test]
    fn injection_builds_a_call_frame_below_the_red_zone() {
        // An rsp that is 8 mod 16, as inside most functions.
        let mut fake = FakeInterrupt::new(FAKE_RIP, 1000);
        let sp = fake.sp();
        assert_eq!(fake.inject(fake.whole_stack()), Ok(()));
        assert_eq!(fake.rip(), async_preempt as *const () as usize);
        assert_eq!(fake.sp(), sp - ENTRY_DEPTH);
        assert_eq!(fake.word(sp - 144), test_hook as *const () as u64);
        assert_eq!(fake.word(sp - 136), FAKE_RIP as u64);
        let written = [sp - 144, sp - 136];
        let base = fake.whole_stack().start;
        for (i, &word) in fake.stack.iter().enumerate() {
            if !written.contains(&(base + i * 8)) {
                assert_eq!(word, FILL, "word {i} written");
            }
        }
    }

    #[test]
    fn injection_refuses_inside_the_trampoline() {
        let trampoline = trampoline_range();
        let entry = async_preempt as *const () as usize;
        assert_eq!(trampoline.start, entry, "the trampoline's section holds only it");
        assert!((100..1024).contains(&trampoline.len()), "{} bytes", trampoline.len());
        for rip in [entry, entry + 1, entry + trampoline.len() / 2, trampoline.end - 1] {
            let mut fake = FakeInterrupt::new(rip, 1000);
            let sp = fake.sp();
            let refused = fake.inject(fake.whole_stack());
            assert_eq!(refused, Err(Refusal::NotNow), "at {:#x}", rip - entry);
            fake.assert_untouched(rip, sp);
        }
        let mut after = FakeInterrupt::new(trampoline.end, 1000);
        assert_eq!(after.inject(after.whole_stack()), Ok(()));
    }

    #[test]
    fn injection_refuses_without_stack_room() {
        let need = stack_needed().expect("XSAVE");
        assert!(need < FAKE_STACK_WORDS * 8 - 1000);
        // Room one byte short, then exactly enough.
        let mut fake = FakeInterrupt::new(FAKE_RIP, 1000);
        let sp = fake.sp();
        let end = fake.whole_stack().end;
        assert_eq!(fake.inject(sp - need + 1..end), Err(Refusal::NoRoom));
        fake.assert_untouched(FAKE_RIP, sp);
        assert_eq!(fake.inject(sp - need..end), Ok(()));
        // rsp outside the named stack, above or below it.
        let mut fake = FakeInterrupt::new(FAKE_RIP, 1000);
        let (sp, whole) = (fake.sp(), fake.whole_stack());
        assert_eq!(fake.inject(whole.start..sp - 8), Err(Refusal::NotNow));
        assert_eq!(fake.inject(sp + 8..whole.end), Err(Refusal::NotNow));
        fake.assert_untouched(FAKE_RIP, sp);
    }

    #[test]
    fn xsave_area_size_matches_cpuid() {
        let size = xsave_area_size().expect("XSAVE");
        // x87/SSE legacy area and header at least; AMX's 8 KiB tiles at most.
        assert!((576..=16 * 1024).contains(&size), "{size}");
        eprintln!(
            "XSAVE area {size} bytes, AVX usable {}",
            AVX_USABLE.load(Ordering::Relaxed)
        );
    }

    /// Loads `state`, runs `iters` rounds of a loop that keeps all 15 GPRs,
    /// xmm0–xmm15, the flags (carry chains and a DF=1 window across
    /// flag-neutral instructions) and MXCSR (round toward zero) live, and
    /// stores the registers back.
    ///
    /// # Safety
    /// `state` must point to a writable `GprState`.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn mix_gpr(state: *mut GprState, iters: u64) {
        naked_asm!(
            "push rbx",
            "push rbp",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "push rdi",
            "push rsi",
            // [rsp]: caller's MXCSR; [rsp + 4]: ours. [rsp + 8]: iterations
            // left; [rsp + 16]: state.
            "sub rsp, 8",
            "stmxcsr [rsp]",
            "mov eax, [rsp]",
            "or eax, 0x6000",
            "mov [rsp + 4], eax",
            "ldmxcsr [rsp + 4]",
            "movdqu xmm0, [rdi + 128]",
            "movdqu xmm1, [rdi + 144]",
            "movdqu xmm2, [rdi + 160]",
            "movdqu xmm3, [rdi + 176]",
            "movdqu xmm4, [rdi + 192]",
            "movdqu xmm5, [rdi + 208]",
            "movdqu xmm6, [rdi + 224]",
            "movdqu xmm7, [rdi + 240]",
            "movdqu xmm8, [rdi + 256]",
            "movdqu xmm9, [rdi + 272]",
            "movdqu xmm10, [rdi + 288]",
            "movdqu xmm11, [rdi + 304]",
            "movdqu xmm12, [rdi + 320]",
            "movdqu xmm13, [rdi + 336]",
            "movdqu xmm14, [rdi + 352]",
            "movdqu xmm15, [rdi + 368]",
            "mov rax, [rdi]",
            "mov rbx, [rdi + 8]",
            "mov rcx, [rdi + 16]",
            "mov rdx, [rdi + 24]",
            "mov rsi, [rdi + 32]",
            "mov rbp, [rdi + 48]",
            "mov r8, [rdi + 56]",
            "mov r9, [rdi + 64]",
            "mov r10, [rdi + 72]",
            "mov r11, [rdi + 80]",
            "mov r12, [rdi + 88]",
            "mov r13, [rdi + 96]",
            "mov r14, [rdi + 104]",
            "mov r15, [rdi + 112]",
            "mov rdi, [rdi + 40]",
            "2:",
            "imul rax, rax, 0x5851f42d",
            // CF from here is consumed by the adc five instructions later.
            "add rax, rbx",
            "lea rcx, [rcx + rdx*2 + 1]",
            "bswap rsi",
            "paddq xmm0, xmm1",
            "pshufd xmm1, xmm1, 0x4e",
            "pxor xmm1, xmm2",
            "not r9",
            "adc rdi, rbp",
            "lea rdx, [rdx + rsi*4 + 3]",
            "paddq xmm2, xmm3",
            "psubq xmm3, xmm4",
            "sbb r10, r11",
            "cmp r12, r13",
            "lea r8, [r8 + r9*8 + 5]",
            // Both round per MXCSR: a lost rounding mode changes xmm13.
            "cvtsi2sd xmm14, rax",
            "divsd xmm14, xmm15",
            "addsd xmm13, xmm14",
            "paddq xmm4, xmm5",
            "pxor xmm5, xmm6",
            "cmovb r15, r12",
            "adc r14, 0",
            // DF=1 across a few instructions, then folded into rbx.
            "std",
            "lea r11, [r11 + r12 + 9]",
            "paddq xmm6, xmm7",
            "pshufd xmm7, xmm7, 0x1b",
            "paddq xmm7, xmm8",
            "pushfq",
            "cld",
            // CF, PF, AF, ZF, SF, DF, OF.
            "and qword ptr [rsp], 0xcd5",
            "add rbx, [rsp]",
            "lea rsp, [rsp + 8]",
            "imul rbx, rbx, 0x2545f491",
            "imul rcx, rcx, 0x1b873593",
            "imul rdx, rdx, 0x5bd1e995",
            "imul rsi, rsi, 0x27d4eb2f",
            "imul rdi, rdi, 0x165667b1",
            "imul rbp, rbp, 0x61c88647",
            "imul r9, r9, 0x3c6ef373",
            "imul r12, r12, 0x7feb352d",
            "imul r13, r13, 0x68e31da5",
            "add r13, r14",
            "xor r14, r15",
            "lea r15, [r15 + r10 + 11]",
            "imul r10, r10, 0x4cf5ad43",
            "imul r11, r11, 0x2127599b",
            "paddq xmm8, xmm9",
            "pxor xmm9, xmm10",
            "paddq xmm10, xmm11",
            "pshufd xmm11, xmm11, 0x93",
            "paddq xmm11, xmm12",
            "pxor xmm12, xmm0",
            "dec qword ptr [rsp + 8]",
            "jnz 2b",
            "push rax",
            "mov rax, [rsp + 24]",
            "mov [rax + 8], rbx",
            "mov [rax + 16], rcx",
            "mov [rax + 24], rdx",
            "mov [rax + 32], rsi",
            "mov [rax + 40], rdi",
            "mov [rax + 48], rbp",
            "mov [rax + 56], r8",
            "mov [rax + 64], r9",
            "mov [rax + 72], r10",
            "mov [rax + 80], r11",
            "mov [rax + 88], r12",
            "mov [rax + 96], r13",
            "mov [rax + 104], r14",
            "mov [rax + 112], r15",
            "pop rbx",
            "mov [rax], rbx",
            "movdqu [rax + 128], xmm0",
            "movdqu [rax + 144], xmm1",
            "movdqu [rax + 160], xmm2",
            "movdqu [rax + 176], xmm3",
            "movdqu [rax + 192], xmm4",
            "movdqu [rax + 208], xmm5",
            "movdqu [rax + 224], xmm6",
            "movdqu [rax + 240], xmm7",
            "movdqu [rax + 256], xmm8",
            "movdqu [rax + 272], xmm9",
            "movdqu [rax + 288], xmm10",
            "movdqu [rax + 304], xmm11",
            "movdqu [rax + 320], xmm12",
            "movdqu [rax + 336], xmm13",
            "movdqu [rax + 352], xmm14",
            "movdqu [rax + 368], xmm15",
            "ldmxcsr [rsp]",
            "add rsp, 24",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbp",
            "pop rbx",
            "ret",
        )
    }

    /// `mix_gpr`'s vector counterpart for ymm0–ymm15: integer lanes mixed
    /// across the 128-bit halves, plus f64 accumulations.
    ///
    /// # Safety
    /// `state` must point to a writable `AvxState`; the CPU must have AVX2.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn mix_avx2(state: *mut AvxState, iters: u64) {
        naked_asm!(
            "vmovdqu ymm0, [rdi]",
            "vmovdqu ymm1, [rdi + 32]",
            "vmovdqu ymm2, [rdi + 64]",
            "vmovdqu ymm3, [rdi + 96]",
            "vmovdqu ymm4, [rdi + 128]",
            "vmovdqu ymm5, [rdi + 160]",
            "vmovdqu ymm6, [rdi + 192]",
            "vmovdqu ymm7, [rdi + 224]",
            "vmovdqu ymm8, [rdi + 256]",
            "vmovdqu ymm9, [rdi + 288]",
            "vmovdqu ymm10, [rdi + 320]",
            "vmovdqu ymm11, [rdi + 352]",
            "vmovdqu ymm12, [rdi + 384]",
            "vmovdqu ymm13, [rdi + 416]",
            "vmovdqu ymm14, [rdi + 448]",
            "vmovdqu ymm15, [rdi + 480]",
            "2:",
            "vpaddq ymm0, ymm0, ymm1",
            "vpmuludq ymm1, ymm1, ymm2",
            "vpaddq ymm1, ymm1, ymm3",
            "vperm2i128 ymm2, ymm2, ymm2, 0x01",
            "vpxor ymm2, ymm2, ymm4",
            "vpshufd ymm3, ymm3, 0x4e",
            "vpaddq ymm3, ymm3, ymm5",
            "vpaddq ymm4, ymm4, ymm6",
            "vpxor ymm5, ymm5, ymm7",
            "vpermq ymm6, ymm6, 0x93",
            "vpaddq ymm6, ymm6, ymm8",
            "vpsubq ymm7, ymm7, ymm8",
            "vpaddq ymm8, ymm8, ymm0",
            "vcvtdq2pd ymm10, xmm0",
            "vaddpd ymm9, ymm9, ymm10",
            "vaddpd ymm12, ymm12, ymm15",
            "vdivpd ymm13, ymm12, ymm14",
            "vaddpd ymm11, ymm11, ymm13",
            "dec rsi",
            "jnz 2b",
            "vmovdqu [rdi], ymm0",
            "vmovdqu [rdi + 32], ymm1",
            "vmovdqu [rdi + 64], ymm2",
            "vmovdqu [rdi + 96], ymm3",
            "vmovdqu [rdi + 128], ymm4",
            "vmovdqu [rdi + 160], ymm5",
            "vmovdqu [rdi + 192], ymm6",
            "vmovdqu [rdi + 224], ymm7",
            "vmovdqu [rdi + 256], ymm8",
            "vmovdqu [rdi + 288], ymm9",
            "vmovdqu [rdi + 320], ymm10",
            "vmovdqu [rdi + 352], ymm11",
            "vmovdqu [rdi + 384], ymm12",
            "vmovdqu [rdi + 416], ymm13",
            "vmovdqu [rdi + 448], ymm14",
            "vmovdqu [rdi + 480], ymm15",
            "vzeroupper",
            "ret",
        )
    }

    /// `mix_gpr`'s counterpart for zmm0–zmm31 and the opmask registers (k1
    /// set and used a few instructions apart, k2 carried across rounds).
    ///
    /// # Safety
    /// `state` must point to a writable `Avx512State`; the CPU must have
    /// AVX-512F.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn mix_avx512(state: *mut Avx512State, iters: u64) {
        naked_asm!(
            "vmovdqu64 zmm0, [rdi]",
            "vmovdqu64 zmm1, [rdi + 64]",
            "vmovdqu64 zmm2, [rdi + 128]",
            "vmovdqu64 zmm3, [rdi + 192]",
            "vmovdqu64 zmm4, [rdi + 256]",
            "vmovdqu64 zmm5, [rdi + 320]",
            "vmovdqu64 zmm6, [rdi + 384]",
            "vmovdqu64 zmm7, [rdi + 448]",
            "vmovdqu64 zmm8, [rdi + 512]",
            "vmovdqu64 zmm9, [rdi + 576]",
            "vmovdqu64 zmm10, [rdi + 640]",
            "vmovdqu64 zmm11, [rdi + 704]",
            "vmovdqu64 zmm12, [rdi + 768]",
            "vmovdqu64 zmm13, [rdi + 832]",
            "vmovdqu64 zmm14, [rdi + 896]",
            "vmovdqu64 zmm15, [rdi + 960]",
            "vmovdqu64 zmm16, [rdi + 1024]",
            "vmovdqu64 zmm17, [rdi + 1088]",
            "vmovdqu64 zmm18, [rdi + 1152]",
            "vmovdqu64 zmm19, [rdi + 1216]",
            "vmovdqu64 zmm20, [rdi + 1280]",
            "vmovdqu64 zmm21, [rdi + 1344]",
            "vmovdqu64 zmm22, [rdi + 1408]",
            "vmovdqu64 zmm23, [rdi + 1472]",
            "vmovdqu64 zmm24, [rdi + 1536]",
            "vmovdqu64 zmm25, [rdi + 1600]",
            "vmovdqu64 zmm26, [rdi + 1664]",
            "vmovdqu64 zmm27, [rdi + 1728]",
            "vmovdqu64 zmm28, [rdi + 1792]",
            "vmovdqu64 zmm29, [rdi + 1856]",
            "vmovdqu64 zmm30, [rdi + 1920]",
            "vmovdqu64 zmm31, [rdi + 1984]",
            "kxnorw k2, k2, k2",
            "2:",
            "vpcmpuq k1, zmm0, zmm1, 1",
            "vpaddq zmm0, zmm0, zmm1",
            "vpmuludq zmm1, zmm1, zmm2",
            "vpaddq zmm1, zmm1, zmm3",
            "vshufi64x2 zmm2, zmm2, zmm2, 0x4e",
            "vpxorq zmm2, zmm2, zmm4",
            "vpaddq zmm3 {{k1}}, zmm3, zmm5",
            "kxorw k2, k2, k1",
            "vpaddq zmm4, zmm4, zmm6",
            "vpxorq zmm5, zmm5, zmm7",
            "vpsubq zmm6 {{k2}}, zmm6, zmm7",
            "vpaddq zmm7, zmm7, zmm8",
            "vpaddq zmm8, zmm8, zmm9",
            "vpxorq zmm9, zmm9, zmm10",
            "vpaddq zmm10, zmm10, zmm11",
            "vpaddq zmm11, zmm11, zmm12",
            "vpxorq zmm12, zmm12, zmm13",
            "vpaddq zmm13, zmm13, zmm14",
            "vpaddq zmm14, zmm14, zmm15",
            "vpxorq zmm15, zmm15, zmm16",
            "vpaddq zmm16, zmm16, zmm17",
            "vpaddq zmm17, zmm17, zmm18",
            "vpxorq zmm18, zmm18, zmm19",
            "vpaddq zmm19, zmm19, zmm20",
            "vpaddq zmm20, zmm20, zmm21",
            "vpxorq zmm21, zmm21, zmm22",
            "vpaddq zmm22, zmm22, zmm23",
            "vpaddq zmm23, zmm23, zmm24",
            "vpxorq zmm24, zmm24, zmm25",
            "vpaddq zmm25, zmm25, zmm26",
            "vpaddq zmm26, zmm26, zmm27",
            "vpxorq zmm27, zmm27, zmm28",
            "vpaddq zmm28, zmm28, zmm29",
            "vpaddq zmm29, zmm29, zmm30",
            "vpxorq zmm30, zmm30, zmm31",
            "vpaddq zmm31, zmm31, zmm0",
            "dec rsi",
            "jnz 2b",
            "vmovdqu64 [rdi], zmm0",
            "vmovdqu64 [rdi + 64], zmm1",
            "vmovdqu64 [rdi + 128], zmm2",
            "vmovdqu64 [rdi + 192], zmm3",
            "vmovdqu64 [rdi + 256], zmm4",
            "vmovdqu64 [rdi + 320], zmm5",
            "vmovdqu64 [rdi + 384], zmm6",
            "vmovdqu64 [rdi + 448], zmm7",
            "vmovdqu64 [rdi + 512], zmm8",
            "vmovdqu64 [rdi + 576], zmm9",
            "vmovdqu64 [rdi + 640], zmm10",
            "vmovdqu64 [rdi + 704], zmm11",
            "vmovdqu64 [rdi + 768], zmm12",
            "vmovdqu64 [rdi + 832], zmm13",
            "vmovdqu64 [rdi + 896], zmm14",
            "vmovdqu64 [rdi + 960], zmm15",
            "vmovdqu64 [rdi + 1024], zmm16",
            "vmovdqu64 [rdi + 1088], zmm17",
            "vmovdqu64 [rdi + 1152], zmm18",
            "vmovdqu64 [rdi + 1216], zmm19",
            "vmovdqu64 [rdi + 1280], zmm20",
            "vmovdqu64 [rdi + 1344], zmm21",
            "vmovdqu64 [rdi + 1408], zmm22",
            "vmovdqu64 [rdi + 1472], zmm23",
            "vmovdqu64 [rdi + 1536], zmm24",
            "vmovdqu64 [rdi + 1600], zmm25",
            "vmovdqu64 [rdi + 1664], zmm26",
            "vmovdqu64 [rdi + 1728], zmm27",
            "vmovdqu64 [rdi + 1792], zmm28",
            "vmovdqu64 [rdi + 1856], zmm29",
            "vmovdqu64 [rdi + 1920], zmm30",
            "vmovdqu64 [rdi + 1984], zmm31",
            "vzeroupper",
            "ret",
        )
    }

    /// Fills the 16 red-zone words below rsp with an LCG sequence from
    /// `seed`, spins `iters` times touching no memory, and returns how many
    /// of the words changed meanwhile. A leaf that never moves rsp, as the
    /// ABI allows.
    ///
    /// # Safety
    /// None beyond the call itself; `unsafe` only because it is naked.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn redzone_spin(iters: u64, seed: u64) -> u64 {
        naked_asm!(
            "mov rax, rsi",
            "mov ecx, 16",
            // rcx = 16 … 1 addresses rsp-8 … rsp-128.
            "2:",
            "mov [rsp + rcx*8 - 136], rax",
            "imul rax, rax, 0x2545f491",
            "add rax, 0x9e37",
            "dec ecx",
            "jnz 2b",
            "3:",
            "dec rdi",
            "jnz 3b",
            "mov rax, rsi",
            "mov ecx, 16",
            "xor edx, edx",
            "4:",
            "xor r8d, r8d",
            "cmp [rsp + rcx*8 - 136], rax",
            "setne r8b",
            "add rdx, r8",
            "imul rax, rax, 0x2545f491",
            "add rax, 0x9e37",
            "dec ecx",
            "jnz 4b",
            "mov rax, rdx",
            "ret",
        )
    }

    /// Overwrites every caller-saved register (GPRs, vector registers up to
    /// `level`: 0 SSE, 1 AVX2, 2 AVX-512 with the opmasks) with garbage, as
    /// any code the hook runs may.
    ///
    /// # Safety
    /// The CPU must have the instructions of `level`.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn scramble(level: u64) {
        naked_asm!(
            "pcmpeqd xmm0, xmm0",
            "pcmpeqd xmm1, xmm1",
            "pcmpeqd xmm2, xmm2",
            "pcmpeqd xmm3, xmm3",
            "pcmpeqd xmm4, xmm4",
            "pcmpeqd xmm5, xmm5",
            "pcmpeqd xmm6, xmm6",
            "pcmpeqd xmm7, xmm7",
            "pcmpeqd xmm8, xmm8",
            "pcmpeqd xmm9, xmm9",
            "pcmpeqd xmm10, xmm10",
            "pcmpeqd xmm11, xmm11",
            "pcmpeqd xmm12, xmm12",
            "pcmpeqd xmm13, xmm13",
            "pcmpeqd xmm14, xmm14",
            "pcmpeqd xmm15, xmm15",
            "cmp rdi, 1",
            "jb 3f",
            "vpcmpeqd ymm0, ymm0, ymm0",
            "vpcmpeqd ymm1, ymm1, ymm1",
            "vpcmpeqd ymm2, ymm2, ymm2",
            "vpcmpeqd ymm3, ymm3, ymm3",
            "vpcmpeqd ymm4, ymm4, ymm4",
            "vpcmpeqd ymm5, ymm5, ymm5",
            "vpcmpeqd ymm6, ymm6, ymm6",
            "vpcmpeqd ymm7, ymm7, ymm7",
            "vpcmpeqd ymm8, ymm8, ymm8",
            "vpcmpeqd ymm9, ymm9, ymm9",
            "vpcmpeqd ymm10, ymm10, ymm10",
            "vpcmpeqd ymm11, ymm11, ymm11",
            "vpcmpeqd ymm12, ymm12, ymm12",
            "vpcmpeqd ymm13, ymm13, ymm13",
            "vpcmpeqd ymm14, ymm14, ymm14",
            "vpcmpeqd ymm15, ymm15, ymm15",
            "cmp rdi, 2",
            "jb 3f",
            "vpternlogd zmm0, zmm0, zmm0, 0xff",
            "vpternlogd zmm1, zmm1, zmm1, 0xff",
            "vpternlogd zmm2, zmm2, zmm2, 0xff",
            "vpternlogd zmm3, zmm3, zmm3, 0xff",
            "vpternlogd zmm4, zmm4, zmm4, 0xff",
            "vpternlogd zmm5, zmm5, zmm5, 0xff",
            "vpternlogd zmm6, zmm6, zmm6, 0xff",
            "vpternlogd zmm7, zmm7, zmm7, 0xff",
            "vpternlogd zmm8, zmm8, zmm8, 0xff",
            "vpternlogd zmm9, zmm9, zmm9, 0xff",
            "vpternlogd zmm10, zmm10, zmm10, 0xff",
            "vpternlogd zmm11, zmm11, zmm11, 0xff",
            "vpternlogd zmm12, zmm12, zmm12, 0xff",
            "vpternlogd zmm13, zmm13, zmm13, 0xff",
            "vpternlogd zmm14, zmm14, zmm14, 0xff",
            "vpternlogd zmm15, zmm15, zmm15, 0xff",
            "vpternlogd zmm16, zmm16, zmm16, 0xff",
            "vpternlogd zmm17, zmm17, zmm17, 0xff",
            "vpternlogd zmm18, zmm18, zmm18, 0xff",
            "vpternlogd zmm19, zmm19, zmm19, 0xff",
            "vpternlogd zmm20, zmm20, zmm20, 0xff",
            "vpternlogd zmm21, zmm21, zmm21, 0xff",
            "vpternlogd zmm22, zmm22, zmm22, 0xff",
            "vpternlogd zmm23, zmm23, zmm23, 0xff",
            "vpternlogd zmm24, zmm24, zmm24, 0xff",
            "vpternlogd zmm25, zmm25, zmm25, 0xff",
            "vpternlogd zmm26, zmm26, zmm26, 0xff",
            "vpternlogd zmm27, zmm27, zmm27, 0xff",
            "vpternlogd zmm28, zmm28, zmm28, 0xff",
            "vpternlogd zmm29, zmm29, zmm29, 0xff",
            "vpternlogd zmm30, zmm30, zmm30, 0xff",
            "vpternlogd zmm31, zmm31, zmm31, 0xff",
            "kxnorw k1, k1, k1",
            "kxnorw k2, k2, k2",
            "kxnorw k3, k3, k3",
            "kxnorw k4, k4, k4",
            "kxnorw k5, k5, k5",
            "kxnorw k6, k6, k6",
            "kxnorw k7, k7, k7",
            "3:",
            "mov rax, 0x5a5a5a5a5a5a5a5a",
            "mov rcx, rax",
            "mov rdx, rax",
            "mov rsi, rax",
            "mov rdi, rax",
            "mov r8, rax",
            "mov r9, rax",
            "mov r10, rax",
            "mov r11, rax",
            // Flags too (CF set, ZF clear).
            "stc",
            "ret",
        )
    }
}
