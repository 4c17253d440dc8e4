//! The x86_64 context switch: Go's `gogo` and `mcall` (asm_amd64.s), as one
//! symmetric `switch` between two saved stack pointers.
//!
//! A suspended context is just its stack pointer. Everything else the
//! System V ABI asks a callee to preserve is pushed on the suspended stack
//! itself: rbp, rbx, r12–r15, then one 8-byte word holding MXCSR (low 4
//! bytes) and the x87 control word (next 2 bytes, the rest zero). Resuming
//! pops them in reverse order and `ret`s into the code that called `switch`.
//! Caller-saved registers need no saving: `switch` is an ordinary `extern
//! "sysv64"` call, so the compiler already assumes they are clobbered.
//!
//! The floating-point control words are reloaded only when they differ from
//! the ones in force (DESIGN.md §3a: an unconditional `ldmxcsr`+`fldcw` pair
//! costs about 9 ns of a 25 ns round trip here; nearly every goroutine runs
//! with the defaults, so the compare almost always skips it).
//!
//! A new goroutine's stack is prepared by `Context::for_entry` so that the
//! first switch to it "returns" into `goroutine_trampoline`, which calls the
//! entry function with its argument. The trampoline's CFI declares the
//! return address undefined (`.cfi_undefined rip`) and its frame pointer is
//! zero, so unwinders and backtraces stop cleanly at the goroutine's first
//! frame instead of reading the word above the stack top.
//!
//! Stack traces of suspended goroutines (`debug/unwind.rs`) start from
//! [`SuspendedRegs::read`], which reads the saved words back out of (a copy
//! of) the suspended stack; this file stays the only one that knows their
//! layout.

use core::arch::naked_asm;

/// MXCSR at process start per the ABI: all exceptions masked, round to nearest.
const DEFAULT_MXCSR: u64 = 0x1f80;
/// x87 control word per the ABI: extended precision, all exceptions masked.
const DEFAULT_FPUCW: u64 = 0x037f;

/// What an unwinder needs to walk a suspended context's stack: the address
/// it resumes at (the instruction after its `call switch`, or the entry
/// trampoline's first instruction for a context that never ran; either way
/// an exact instruction address, not a return address to be looked up minus
/// one), the stack pointer once `switch` has returned, and the frame
/// pointer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SuspendedRegs {
    pub(crate) ip: usize,
    pub(crate) sp: usize,
    pub(crate) bp: usize,
}

/// A suspended execution context: the stack pointer at which `switch` saved
/// the callee-saved registers. Owned by whoever owns the G (or M) it belongs to.
#[repr(C)]
pub(crate) struct Context {
    sp: usize,
}

impl Context {
    /// A context that is never resumed before a `switch` saves into it.
    pub(crate) const fn empty() -> Context {
        Context { sp: 0 }
    }

    /// The saved stack pointer of `for_entry(top, ..)`'s context: a
    /// goroutine whose context still says this has never run (dumps say
    /// "not started yet").
    pub(crate) fn entry_sp(top: usize) -> usize {
        top - 80
    }

    /// Prepare a fresh stack whose top (16-byte aligned) is `top` so that the
    /// first `switch` to the returned context calls `entry(arg)` on it.
    ///
    /// # Safety
    /// `top` must be the 16-byte aligned upper end of at least 64 writable
    /// bytes that nothing else uses, and `entry` must never return.
    pub(crate) unsafe fn for_entry(top: usize, entry: extern "sysv64" fn(usize) -> !, arg: usize) -> Context {
        debug_assert_eq!(top % 16, 0);
        // Layout, from the top down (one word each):
        //   top-8   0                    (never read; keeps the slot below 16-aligned)
        //   top-16  0                    (never read)
        //   top-24  goroutine_trampoline (popped by `ret`, leaving rsp = top-16)
        //   top-32  rbp = 0              (ends the frame-pointer chain)
        //   top-40  rbx = 0
        //   top-48  r12 = arg
        //   top-56  r13 = entry
        //   top-64  r14 = 0
        //   top-72  r15 = 0
        //   top-80  MXCSR | FPUCW << 32  <- saved sp
        let words: [u64; 10] = [
            DEFAULT_MXCSR | (DEFAULT_FPUCW << 32),
            0,
            0,
            entry as *const () as u64,
            arg as u64,
            0,
            0,
            goroutine_trampoline as *const () as u64,
            0,
            0,
        ];
        let sp = Context::entry_sp(top);
        debug_assert_eq!(sp, top - words.len() * 8);
        // SAFETY: the caller guarantees [top-80, top) is writable and unused;
        // `sp` is 16-byte aligned because `top` is and 80 is a multiple of 16.
        unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp as *mut u64, words.len()) };
        Context { sp }
    }

    /// Start loading the top `bytes` of the suspended stack into this
    /// core's cache: the words `switch` pops and the frames the goroutine
    /// returns through when it resumes. A hint for a context about to be
    /// resumed here; it never faults, and a stale `sp` costs only the
    /// wasted loads.
    pub(crate) fn prefetch(&self, bytes: usize) {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let sp = self.saved_sp();
        for line in (sp..sp.saturating_add(bytes)).step_by(64) {
            // SAFETY: a prefetch is only a hint to the cache: it reads
            // nothing into the program and never faults, whatever the
            // address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }

    /// The saved stack pointer, for goroutine dumps, which look at contexts
    /// they do not own: it may be changing right now (the context resumed
    /// elsewhere), so it is read once, with a volatile load, and the caller
    /// treats the value as a hint to validate.
    pub(crate) fn saved_sp(&self) -> usize {
        // SAFETY: `sp` is a plain word of `self`; the volatile read takes
        // whatever value a racing `switch` left.
        unsafe { core::ptr::read_volatile(&raw const self.sp) }
    }
}

impl SuspendedRegs {
    /// The registers a stack walk of a context suspended at `sp` starts
    /// from, read back from the words `switch` (or `for_entry`) left there;
    /// `word(addr)` reads the stack (a copy of it, for dumps) and `None`
    /// means unreadable.
    pub(crate) fn read(sp: usize, word: impl Fn(usize) -> Option<usize>) -> Option<SuspendedRegs> {
        // Words `switch` keeps on a suspended stack, from the saved sp up:
        // the control-word slot, r15, r14, r13, r12, rbx, rbp, then the
        // return address (the layout `for_entry` draws too).
        const SAVED_WORDS: usize = 8;
        const SAVED_RBP: usize = 6;
        const SAVED_RIP: usize = 7;
        if !sp.is_multiple_of(8) {
            return None;
        }
        Some(SuspendedRegs {
            ip: word(sp.checked_add(SAVED_RIP * 8)?)?,
            sp: sp.checked_add(SAVED_WORDS * 8)?,
            bp: word(sp + SAVED_RBP * 8)?,
        })
    }
}

/// Save the running context into `from` and resume `to`. Returns when some
/// later `switch` resumes `from`.
///
/// # Safety
/// `to` must hold a context saved by `switch` (or made by
/// `Context::for_entry`) whose stack is still alive and which nothing else
/// resumes concurrently; `from` must stay valid until it is resumed.
#[unsafe(naked)]
pub(crate) unsafe extern "sysv64" fn switch(from: *mut Context, to: *const Context) {
    naked_asm!(
        ".cfi_startproc",
        "push rbp",
        ".cfi_adjust_cfa_offset 8",
        "push rbx",
        ".cfi_adjust_cfa_offset 8",
        "push r12",
        ".cfi_adjust_cfa_offset 8",
        "push r13",
        ".cfi_adjust_cfa_offset 8",
        "push r14",
        ".cfi_adjust_cfa_offset 8",
        "push r15",
        ".cfi_adjust_cfa_offset 8",
        // The control-word slot: upper two bytes zeroed so the 8-byte
        // compare below sees only MXCSR and FPUCW.
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "mov qword ptr [rsp], 0",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        "mov rax, [rsp]",
        "mov [rdi], rsp",
        // From here on rsp belongs to `to`; CFI describes the frame `to`
        // saved, which has the same shape.
        "mov rsp, [rsi]",
        "cmp rax, [rsp]",
        "jne 2f",
        "1:",
        ".cfi_remember_state",
        "add rsp, 8",
        ".cfi_adjust_cfa_offset -8",
        "pop r15",
        ".cfi_adjust_cfa_offset -8",
        "pop r14",
        ".cfi_adjust_cfa_offset -8",
        "pop r13",
        ".cfi_adjust_cfa_offset -8",
        "pop r12",
        ".cfi_adjust_cfa_offset -8",
        "pop rbx",
        ".cfi_adjust_cfa_offset -8",
        "pop rbp",
        ".cfi_adjust_cfa_offset -8",
        "ret",
        "2:",
        ".cfi_restore_state",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "jmp 1b",
        ".cfi_endproc",
    )
}

/// First frame of every goroutine: `r12` holds the argument and `r13` the
/// entry function, both placed by `Context::for_entry`.
#[unsafe(naked)]
unsafe extern "sysv64" fn goroutine_trampoline() -> ! {
    naked_asm!(
        ".cfi_startproc",
        // Nothing above this frame: unwinding stops here.
        ".cfi_undefined rip",
        "mov rdi, r12",
        "call r13",
        "ud2",
        ".cfi_endproc",
    )
}
