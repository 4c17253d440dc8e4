//! The per-thread alternate signal stack. Corresponds to `minitSignalStack`
//! and `signalstack` in Go's `runtime/signal_unix.go` and `os_linux.go`.
//!
//! Why: a goroutine that overflows has its stack pointer inside the guard
//! page, so the kernel can't push a signal frame there; without a
//! `sigaltstack` the SIGSEGV can't be delivered and the process dies
//! silently (exit 139). Every M installs one when it starts.
//!
//! Size: 64 KiB, lazily committed (only pages a signal actually used cost
//! memory). A signal frame with AVX-512 state is about 3.5 KiB and the
//! overflow report formats a line through `core::fmt`; std's own
//! `SIGSTKSZ`-sized alternate stack is too tight for that plus whatever a
//! chained handler does. A guard page below it (installed like a goroutine
//! stack's) turns a handler overflowing it into a clean kill instead of
//! silent corruption of whatever lies below.
//!
//! Invariant: while an `AltStack` exists, it is the alternate signal stack
//! of the thread that created it. Dropping it reinstates the one it
//! replaced (std gives its threads one; usually it is that, or none), so it
//! must be dropped on its own thread (it is `!Send`), in LIFO order with
//! other `AltStack`s, and before the thread's main function returns: std
//! unmaps its own alternate stack then, before TLS destructors run.

use std::io;
use std::marker::PhantomData;

use super::guard::{GuardMode, vma_limit};
use super::page_size;
use super::region::Region;

/// Usable bytes of every alternate signal stack.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The calling thread's alternate signal stack; one per M (OS thread).
pub(crate) struct AltStack {
    /// One slot: guard page, then the stack.
    region: Region,
    /// What `sigaltstack` reported before we replaced it.
    previous: libc::stack_t,
    /// `sigaltstack` is per thread, so this must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl AltStack {
    /// Maps a guarded 64 KiB stack and makes it the calling thread's
    /// alternate signal stack. Fails if the mapping or the guard fails, or
    /// if the thread is running on its alternate stack right now.
    pub(crate) fn install() -> io::Result<AltStack> {
        let page = page_size();
        let mut region = Region::reserve(page + ALT_STACK_SIZE, 1, GuardMode::detect())?;
        region.carve(vma_limit(), &mut Vec::with_capacity(1))?;
        let new = libc::stack_t {
            ss_sp: (region.base() + page) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: an all-zero stack_t is a valid value for the kernel to
        // overwrite.
        let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `new` describes memory we own for as long as it is
        // installed (until Drop reinstates `previous`); `previous` is
        // writable.
        if unsafe { libc::sigaltstack(&new, &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AltStack {
            region,
            previous,
            _not_send: PhantomData,
        })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // Only the disable bit is meaningful on input; SS_ONSTACK in the old
        // flags merely reported where the thread was running at the time.
        let restore = libc::stack_t {
            ss_flags: self.previous.ss_flags & libc::SS_DISABLE,
            ..self.previous
        };
        // SAFETY: an all-zero stack_t is a valid out-parameter.
        let mut replaced: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `restore` is the thread's previous alternate stack (still
        // owned by whoever installed it, per the LIFO rule in the module
        // header) or a disable request; this is the installing thread since
        // AltStack is !Send; `replaced` is writable.
        let ret = unsafe { libc::sigaltstack(&restore, &mut replaced) };
        debug_assert_eq!(ret, 0, "restoring the previous sigaltstack failed");
        debug_assert_eq!(
            replaced.ss_sp as usize,
            self.region.base() + page_size(),
            "AltStacks dropped out of LIFO order"
        );
        // `region` is unmapped after this: our stack is no longer installed.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> libc::stack_t {
        // SAFETY: an all-zero stack_t is a valid out-parameter.
        let mut ss: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new stack only queries; `ss` is writable.
        assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) }, 0);
        ss
    }

    #[test]
    fn install_and_restore() {
        let before = current();
        let alt = AltStack::install().unwrap();
        let now = current();
        assert_eq!(now.ss_sp as usize, alt.region.base() + page_size());
        assert_eq!(now.ss_size, ALT_STACK_SIZE);
        assert_eq!(now.ss_flags & libc::SS_DISABLE, 0);
        {
            let inner = AltStack::install().unwrap();
            assert_eq!(current().ss_sp as usize, inner.region.base() + page_size());
        }
        assert_eq!(current().ss_sp, now.ss_sp, "nested drop restores the outer");
        drop(alt);
        let after = current();
        assert_eq!(after.ss_flags & libc::SS_DISABLE, before.ss_flags & libc::SS_DISABLE);
        if before.ss_flags & libc::SS_DISABLE == 0 {
            assert_eq!((after.ss_sp, after.ss_size), (before.ss_sp, before.ss_size));
        }
    }
}
