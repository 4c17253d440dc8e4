//! The runtime's no-allocation rule, checked: `AllocCheck`, a global
//! allocator wrapper for tests, and the per-thread count it reads.
//!
//! A goroutine that a preemption signal stops inside the program's
//! allocator may hold the allocator's lock until it runs again. Everything
//! that must happen for it to run again — sysmon's cycle, which queues it,
//! the scheduler locks under which it is queued and its M is handed a P
//! (`Sched::lock`, `Sched::allm`), the preemption hook it sleeps in — must
//! therefore never allocate or free (`sched/spawner.rs` has the whole
//! argument). Those places mark themselves with a `NoAlloc` guard; with
//! `AllocCheck` installed as the global allocator, an allocation or a free
//! while a guard is up aborts the process with a message that names the
//! rule, so a test suite run under it keeps the rule true. Without it the
//! guards cost a thread-local increment and nothing else.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    /// `NoAlloc` guards open on this thread. Const-initialised and without
    /// a destructor, so reading it never allocates (the allocator reads it).
    static NO_ALLOC: Cell<u32> = const { Cell::new(0) };
}

/// A section of runtime code in which nothing may allocate or free (module
/// header). Nests.
pub(crate) struct NoAlloc(());

impl NoAlloc {
    #[inline]
    pub(crate) fn enter() -> NoAlloc {
        NO_ALLOC.with(|n| n.set(n.get() + 1));
        NoAlloc(())
    }
}

impl Drop for NoAlloc {
    #[inline]
    fn drop(&mut self) {
        NO_ALLOC.with(|n| n.set(n.get() - 1));
    }
}

/// A global allocator that checks the runtime's own rule: while the
/// runtime is in a section where it must not allocate — holding a
/// scheduler lock, in sysmon's cycle, in the preemption hook — an
/// allocation or a free aborts the process, naming the rule. Everything
/// else goes to the wrapped allocator `A` unchanged.
///
/// For tests of programs that install their own allocator, and for gort's
/// own test suite: a preempted goroutine may hold `A`'s lock, so the
/// runtime must never wait for it on the path that lets that goroutine run
/// again.
///
/// ```
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: gort::runtime::AllocCheck<System> = gort::runtime::AllocCheck::new(System);
///
/// fn main() {
///     let n = gort::run(|| gort::go(|| vec![1u8; 4096].len()).join().unwrap());
///     assert_eq!(n, 4096);
/// }
/// ```
pub struct AllocCheck<A> {
    inner: A,
}

impl<A> AllocCheck<A> {
    /// Wrap allocator `inner`.
    pub const fn new(inner: A) -> AllocCheck<A> {
        AllocCheck { inner }
    }
}

#[cold]
fn forbidden(what: &str) -> ! {
    crate::os::write_stderr_fmt(format_args!(
        "fatal error: gort: {what} where the runtime must not (holding a scheduler lock, in sysmon's cycle or the preemption hook)\n"
    ));
    std::process::abort();
}

#[inline]
fn check(what: &str) {
    // `try_with`: during thread teardown the slot may be gone, and then no
    // runtime code runs on this thread any more.
    if NO_ALLOC.try_with(Cell::get).unwrap_or(0) > 0 {
        forbidden(what);
    }
}

// SAFETY: every call is forwarded to `inner` unchanged, after a check that
// only reads a thread-local counter (or aborts).
unsafe impl<A: GlobalAlloc> GlobalAlloc for AllocCheck<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check("an allocation");
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check("an allocation");
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check("a free");
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check("a reallocation");
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}
