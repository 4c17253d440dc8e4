//! The stack-overflow report: a process-wide SIGSEGV handler that turns a
//! goroutine's guard-page fault into one line naming the goroutine, then
//! aborts. Corresponds to `sighandler`, `sigfwdgo` and `dieFromSignal` in
//! Go's `runtime/signal_unix.go` (Go reports "goroutine stack exceeds
//! limit" from its prologue check instead; gort has no prologue check, so
//! the guard page and this handler are how an overflow is noticed).
//!
//! Only the scheduler knows which goroutine runs on the faulting thread, so
//! the handler asks it: a [`DescribeFault`] function, registered with
//! [`install_overflow_handler`], gets the fault address and says whether it
//! is a guard hit of the current goroutine, filling a [`SignalBuf`] with the
//! line. Everything on this path runs in a signal handler on the alternate
//! stack ([`AltStack`](super::AltStack)): no allocation, no locks, only
//! async-signal-safe calls (`write`, `abort`, `sigaction`).
//!
//! Faults that are not ours go to the handler installed before ours, saved
//! at install time. That is normally std's, which reports overflows of
//! ordinary thread stacks and otherwise restores the default action so the
//! fault kills the process with SIGSEGV as usual. Only SIGSEGV is taken: on
//! Linux a guard-page hit (either kind) is never a SIGBUS, so std keeps
//! SIGBUS to itself.
//!
//! Flags: `SA_SIGINFO` (we need `si_addr`) and `SA_ONSTACK` (the faulting
//! stack is unusable). Not `SA_NODEFER`: with SIGSEGV blocked during the
//! handler, a fault inside it (a bug in a describe function) makes the
//! kernel kill the process at once, instead of recursing down the
//! alternate stack.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// `si_code` values of a kernel-generated SIGSEGV (`<asm-generic/siginfo.h>`);
/// libc 0.2 lacks them for Linux. A MADV_GUARD_INSTALL guard hit is
/// MAPERR, an mprotect guard hit is ACCERR.
const SEGV_MAPERR: libc::c_int = 1;
const SEGV_ACCERR: libc::c_int = 2;

/// Capacity of a [`SignalBuf`]: a report line with a long goroutine name and
/// file path still fits.
const SIGNAL_BUF_CAP: usize = 512;

/// A fixed-capacity text buffer for building a message inside a signal
/// handler (no allocation). Writes past the capacity are silently
/// truncated, at a character boundary.
pub(crate) struct SignalBuf {
    bytes: [u8; SIGNAL_BUF_CAP],
    len: usize,
}

impl SignalBuf {
    pub(crate) const fn new() -> SignalBuf {
        SignalBuf {
            bytes: [0; SIGNAL_BUF_CAP],
            len: 0,
        }
    }

    /// The text written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for SignalBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut n = s.len().min(SIGNAL_BUF_CAP - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        // Truncation is not an error: the caller wants as much of the line
        // as fits, not an aborted format.
        Ok(())
    }
}

/// Called from the SIGSEGV handler with the fault address. Returns true,
/// with the one-line message (no trailing newline) in `out`, when the fault
/// is a guard-page hit of the goroutine running on this thread. Signal
/// handler: no allocation, no locks.
pub(crate) type DescribeFault = fn(fault_addr: usize, out: &mut SignalBuf) -> bool;

/// The registered [`DescribeFault`] as an address; 0 until the first install.
static DESCRIBE: AtomicUsize = AtomicUsize::new(0);

/// The SIGSEGV disposition in force before ours, set once before ours is
/// installed and never changed after, so the handler may read it freely.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

static INSTALL: Once = Once::new();

/// Installs the process-wide SIGSEGV handler (the first call) and makes
/// `describe` the function it consults (every call: the latest wins; the
/// runtime always passes the same one). Idempotent and thread-safe. Threads
/// that may overflow need an [`AltStack`](super::AltStack) too.
pub(crate) fn install_overflow_handler(describe: DescribeFault) {
    // Release: pairs with the Acquire load in `report`, so a handler that
    // sees this function also sees what the caller set up for it.
    DESCRIBE.store(describe as usize, Ordering::Release);
    INSTALL.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid out-parameter.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `previous` is writable.
        let ret = unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) };
        debug_assert_eq!(ret, 0);
        // Saved before ours goes in, so the handler never finds it unset.
        let _ = PREVIOUS.set(previous);

        // SAFETY: an all-zero sigaction is valid (empty mask, no flags)
        // before the fields below are filled in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_fault;
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `on_fault` is async-signal-safe (module header) and has the
        // SA_SIGINFO signature; the action is fully initialised.
        let ret = unsafe { libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) };
        debug_assert_eq!(ret, 0);
    });
}

/// The SIGSEGV handler. Signal handler: no allocation, no locks.
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if sig == libc::SIGSEGV && !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO
        // handler; for SIGSEGV its fault fields are the ones filled in.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        // Other codes (a SIGSEGV sent with kill, say) carry no fault address.
        if code == SEGV_MAPERR || code == SEGV_ACCERR {
            report(addr);
        }
    }
    // SAFETY: we are the SIGSEGV handler and pass the kernel's arguments on.
    unsafe { chain(sig, info, ctx) };
}

/// Writes the overflow line and aborts if `addr` is the current goroutine's
/// guard; returns otherwise. Signal handler.
fn report(addr: usize) {
    // Acquire: pairs with the Release store in install_overflow_handler.
    let raw = DESCRIBE.load(Ordering::Acquire);
    if raw == 0 {
        return;
    }
    // SAFETY: nonzero values of DESCRIBE are only ever stored from a
    // DescribeFault, a function pointer of the same size as usize.
    let describe = unsafe { std::mem::transmute::<usize, DescribeFault>(raw) };
    let mut out = SignalBuf::new();
    if describe(addr, &mut out) {
        write_stderr(out.as_bytes());
        write_stderr(b"\n");
        // SAFETY: abort is async-signal-safe and takes no arguments.
        unsafe { libc::abort() };
    }
}

/// `write(2, ..)` until done or failing. Signal handler.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live buffer of the given length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// Hands the fault to the disposition in force before ours: reinstates a
/// default or ignore disposition and returns, so the faulting instruction
/// runs again and the kernel kills the process the usual way (a fault
/// while SIGSEGV is ignored kills too); calls a handler function directly.
/// The previous handler's own sa_mask is not applied, as Go's sigfwd does
/// not: SIGSEGV is already blocked, which is what a fault handler relies
/// on.
///
/// # Safety
///
/// Must be called from the SIGSEGV handler, with the arguments the kernel
/// passed to it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: an all-zero sigaction is SIG_DFL with no flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    let previous = PREVIOUS.get().unwrap_or(&default);
    match previous.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: reinstating a disposition that was in force before;
            // sigaction is async-signal-safe.
            unsafe { libc::sigaction(sig, previous, std::ptr::null_mut()) };
        }
        handler if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: with SA_SIGINFO the handler field holds a
            // three-argument handler; it was installed for this signal and
            // gets the kernel's arguments, as if the kernel had called it.
            let f = unsafe {
                std::mem::transmute::<
                    libc::sighandler_t,
                    extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
                >(handler)
            };
            f(sig, info, ctx);
        }
        handler => {
            // SAFETY: without SA_SIGINFO the handler field holds a
            // one-argument handler installed for this signal.
            let f = unsafe { std::mem::transmute::<libc::sighandler_t, extern "C" fn(libc::c_int)>(handler) };
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::guard::{GuardMode, MAPPING_TESTS};
    use super::super::{AltStack, Stack, StackAllocator};
    use super::*;
    use std::fmt::Write as _;
    use std::sync::Mutex;

    #[test]
    fn signal_buf_truncates_at_capacity_and_char_boundary() {
        let mut buf = SignalBuf::new();
        let (id, name) = (42, "main");
        write!(buf, "goroutine {id} [{name}]").unwrap();
        assert_eq!(buf.as_bytes(), b"goroutine 42 [main]");
        let mut full = SignalBuf::new();
        for _ in 0..SIGNAL_BUF_CAP {
            full.write_str("x").unwrap();
        }
        full.write_str("more").unwrap();
        assert_eq!(full.as_bytes().len(), SIGNAL_BUF_CAP);
        let mut multi = SignalBuf::new();
        multi.write_str(&"x".repeat(SIGNAL_BUF_CAP - 1)).unwrap();
        multi.write_str("é").unwrap(); // two bytes, one left: dropped whole
        assert_eq!(multi.as_bytes().len(), SIGNAL_BUF_CAP - 1);
        assert!(std::str::from_utf8(multi.as_bytes()).is_ok());
    }

    /// The guard range and size the test describe function recognises.
    static GUARD_LO: AtomicUsize = AtomicUsize::new(0);
    static GUARD_HI: AtomicUsize = AtomicUsize::new(0);
    static STACK_KIB: AtomicUsize = AtomicUsize::new(0);

    /// A stand-in for the scheduler's describe function.
    fn describe_test_guard(addr: usize, out: &mut SignalBuf) -> bool {
        let (lo, hi) = (GUARD_LO.load(Ordering::Relaxed), GUARD_HI.load(Ordering::Relaxed));
        if !(lo..hi).contains(&addr) {
            return false;
        }
        let kib = STACK_KIB.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "goroutine 7 [tester] stack overflow (stack {kib} KiB, spawned at src/stack/overflow.rs:1)"
        );
        true
    }

    fn expect_guard(stack: &Stack) {
        let guard = stack.guard();
        GUARD_LO.store(guard.start, Ordering::Relaxed);
        GUARD_HI.store(guard.end, Ordering::Relaxed);
        STACK_KIB.store(stack.size() / 1024, Ordering::Relaxed);
    }

    /// Only one forking test at a time: a concurrent fork would inherit our
    /// pipe's write end and delay its end-of-file, and the expected guard
    /// range (a static) must not change between setting it and forking.
    static FORK: Mutex<()> = Mutex::new(());

    /// Runs `body` in a forked child with stderr on a pipe; returns the
    /// child's wait status and what it wrote. The child inherits the
    /// handler and this thread's alternate stack, and only does
    /// async-signal-safe things, so forking a multi-threaded test process is
    /// fine.
    fn in_child(expected: &Stack, body: impl FnOnce()) -> (libc::c_int, String) {
        let _serial = FORK.lock().unwrap_or_else(|e| e.into_inner());
        // Under the lock: the guard range is shared by every forking test.
        expect_guard(expected);
        install_overflow_handler(describe_test_guard);
        let _alt = AltStack::install().unwrap();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only calls async-signal-safe functions and the
        // body (documented to do likewise), then exits without unwinding.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain system calls on descriptors we own; no core file
            // for the expected crash.
            unsafe {
                libc::dup2(fds[1], 2);
                libc::prctl(libc::PR_SET_DUMPABLE, 0);
            }
            // Again, in case another test registered its own describe
            // function between ours and the fork. The handler is already
            // installed, so this is one atomic store.
            install_overflow_handler(describe_test_guard);
            body();
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: the parent's copy of the write end is ours to close.
        unsafe { libc::close(fds[1]) };
        let mut output = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            // SAFETY: `chunk` is writable for its length.
            let n = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                output.extend_from_slice(&chunk[..n as usize]);
            } else if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        // SAFETY: the read end is ours.
        unsafe { libc::close(fds[0]) };
        (status, String::from_utf8_lossy(&output).into_owned())
    }

    fn killed_by(status: libc::c_int) -> Option<libc::c_int> {
        libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
    }

    fn touch(addr: usize) {
        // SAFETY: deliberately faults (the child's point); a read has no
        // effect on memory even if the address were valid.
        unsafe { std::ptr::read_volatile(addr as *const u8) };
    }

    const REPORT: &str = "goroutine 7 [tester] stack overflow (stack 64 KiB, spawned at src/stack/overflow.rs:1)\n";

    #[test]
    fn guard_hit_reports_and_aborts() {
        let a = StackAllocator::new();
        let stack = a.alloc(64 * 1024).unwrap();
        let lo = stack.lo();
        let (status, err) = in_child(&stack, || touch(lo - 1));
        assert_eq!(
            killed_by(status),
            Some(libc::SIGABRT),
            "status {status:#x}, stderr {err:?}"
        );
        assert_eq!(err, REPORT);
        a.release(stack);
    }

    #[test]
    fn mprotect_guard_hit_reports_and_aborts() {
        let _serial = MAPPING_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let a = StackAllocator::with_guards(GuardMode::Mprotect, usize::MAX);
        let stack = a.alloc(64 * 1024).unwrap();
        let bottom = stack.guard().start;
        let (status, err) = in_child(&stack, || touch(bottom));
        assert_eq!(
            killed_by(status),
            Some(libc::SIGABRT),
            "status {status:#x}, stderr {err:?}"
        );
        assert_eq!(err, REPORT);
        a.release(stack);
    }

    /// A real overflow: recurse on the stack until the guard stops it. The
    /// handler can only run because of the alternate stack.
    #[test]
    fn recursion_overflow_reports_and_aborts() {
        let a = StackAllocator::new();
        let stack = a.alloc(64 * 1024).unwrap();
        let top = stack.top();
        let (status, err) = in_child(&stack, || run_on_stack_forever(top));
        assert_eq!(
            killed_by(status),
            Some(libc::SIGABRT),
            "status {status:#x}, stderr {err:?}"
        );
        assert_eq!(err, REPORT);
        a.release(stack);
    }

    fn run_on_stack_forever(top: usize) -> ! {
        // SAFETY: `top` is the 16-byte aligned top of a stack nobody else
        // uses; `recurse_forever` never returns (it overflows and the
        // handler aborts), so abandoning the old stack pointer is fine.
        unsafe {
            std::arch::asm!(
                "mov rsp, {top}",
                "call {entry}",
                "ud2",
                top = in(reg) top,
                entry = sym recurse_forever,
                options(noreturn),
            )
        }
    }

    extern "C" fn recurse_forever() {
        fn deeper(n: usize) -> usize {
            let mut frame = [0u8; 256];
            std::hint::black_box(&mut frame);
            if std::hint::black_box(n) == usize::MAX {
                return 0;
            }
            deeper(n + 1) + frame[n % 256] as usize
        }
        deeper(0);
    }

    /// A fault that is not a guard hit goes to std's handler, which lets it
    /// kill the process with SIGSEGV as usual; no report from us.
    #[test]
    fn other_faults_are_passed_on() {
        let a = StackAllocator::new();
        let stack = a.alloc(64 * 1024).unwrap();
        let (status, err) = in_child(&stack, || touch(8));
        assert_eq!(
            killed_by(status),
            Some(libc::SIGSEGV),
            "status {status:#x}, stderr {err:?}"
        );
        assert!(!err.contains("stack overflow (stack"), "{err:?}");
        a.release(stack);
    }
}
