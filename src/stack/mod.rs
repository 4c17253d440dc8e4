//! Goroutine stacks: reservation, guard pages, recycling and the overflow
//! report. Corresponds to Go's `runtime/stack.go` (stackalloc, stackfree,
//! stackcache) and the fault half of `runtime/signal_unix.go` (sighandler,
//! sigfwd, minitSignalStack).
//!
//! Unlike Go, a gort stack never grows or moves: Rust code keeps raw and
//! borrowed pointers into its own frames, so a frame can't be relocated the
//! way Go's stack copier relocates Go frames. Each goroutine instead gets a
//! fixed virtual reservation (default [`DEFAULT_STACK_SIZE`]) that the kernel
//! commits lazily, page by page, on first touch. An idle goroutine that has
//! touched one page costs one page.
//!
//! Layout. Stacks are carved out of large anonymous reservations
//! ([`region`]); every slot is `[guard page][usable stack]`, and the stack
//! grows down towards its own guard. One reservation is one kernel mapping
//! (VMA), and on Linux 6.13+ the guard pages are page-table markers installed
//! with `MADV_GUARD_INSTALL` ([`guard`]), which do not split the VMA. So the
//! number of kernel mappings grows with the number of regions, not with the
//! number of goroutines, and a million guarded stacks fit easily under
//! `vm.max_map_count`. Older kernels fall back to `mprotect(PROT_NONE)`
//! guards, which split the VMA; there the allocator counts the mappings it
//! creates and returns an error before the kernel limit is reached, because
//! past it even `malloc` fails and the process dies in some unrelated place.
//!
//! Recycling ([`allocator`]). Released stacks go to a LIFO free list per size
//! class after `MADV_DONTNEED` has returned their pages (the guard survives
//! it), so reusing one is a pop under a mutex with no system call.
//!
//! Overflow ([`overflow`], [`altstack`]). A goroutine running off the bottom
//! of its stack faults in its guard page. The SIGSEGV handler runs on a
//! per-thread alternate signal stack (the faulting stack pointer is inside
//! the guard, so the handler can't run there), asks the scheduler to describe
//! the fault, prints one line naming the goroutine, and aborts. Any other
//! fault is passed on to the handler that was installed before ours (std's).
//!
//! Running out. A goroutine takes its stack when it first runs, except
//! when stacks are scarce (`StackAllocator::scarce`: under `RLIMIT_AS`,
//! less than a region's worth can still be made): then it takes it when
//! spawned, and when none can be had the allocator's `io::Error`
//! (`OutOfMemory`, naming what ran out) goes back to the spawner:
//! `goroutine::Builder::spawn` returns it, `go` panics with it. Lazy while
//! plentiful, because a burst of spawns would otherwise hold a stack each
//! before running (measured: a million spawned-and-finished goroutines on
//! 2 Ps took 1.1–1.3 s and 75–112 MiB peak RSS with stacks taken at every
//! spawn, 0.5 s and 18 MiB taken at first run). Nothing else is affected:
//! under `RLIMIT_AS` stacks stop short of the limit, leaving an eighth of
//! it (at least 64 MiB) to malloc and new threads ([`region`]), and stacks
//! given back are handed out again ([`cache`] says from where).
//!
//! Accounting. The allocator counts stacks handed out and address space
//! reserved in atomics, so `runtime::metrics()` reads them for free. How
//! much of that space is resident is known only to the kernel: it is
//! counted on request (`runtime::stack_bytes_resident`, one `mincore` over
//! every carved slot, O(stack pages)), never as part of `metrics()`.
//!
//! Context. Everything here may be called from any thread except the signal
//! handler path, which takes no locks and does not allocate. Each
//! [`StackAllocator`] has one mutex guarding its size classes; no other lock
//! is taken while it is held.

mod allocator;
mod altstack;
mod cache;
mod guard;
mod overflow;
mod region;

use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use allocator::{Stack, StackAllocator};
pub(crate) use altstack::AltStack;
pub(crate) use cache::{LocalStacks, StackPool};
pub(crate) use overflow::{SignalBuf, install_overflow_handler};

/// The smallest stack a goroutine may ask for.
///
/// A gort stack can't grow, so the floor must hold the worst fixed cost any
/// goroutine pays on its own stack: the asynchronous-preemption frame (red
/// zone skip, 15 saved registers and an XSAVE area of about 2.5 KiB with
/// AVX-512, aligned to 64), the runtime's own park/schedule call chain, and
/// a panic unwinding through `catch_unwind` at the goroutine's entry (the
/// unwinder and the default panic hook's formatting use several KiB). 16 KiB
/// leaves a few KiB for the user's frames on top of that; Go's 2 KiB minimum
/// works only because Go's stacks grow.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// The stack a goroutine gets unless the runtime or the spawn says otherwise.
/// Only virtual: an idle goroutine commits the pages it has touched.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The largest stack accepted. Far above any sane need (a thread's default
/// is 8 MiB) yet small enough that a size class's reservation arithmetic
/// can't overflow and a typo can't eat the address space.
const MAX_STACK_SIZE: usize = 1 << 30;

/// The system page size, read once. Any thread; no allocation, so it may be
/// called from the signal handler path too.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: the value is the same whichever thread computes it, so a race
    // only costs a second sysconf.
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(raw)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// Rounds `bytes` up to whole pages, or `None` if that overflows.
fn round_to_pages(bytes: usize) -> Option<usize> {
    let page = page_size();
    bytes.checked_add(page - 1).map(|b| b & !(page - 1))
}

/// Validates a user-requested stack size (runtime builder or goroutine
/// builder) and returns it rounded up to whole pages. The error is a
/// sentence for the user, naming the accepted range.
pub(crate) fn check_stack_size(bytes: usize) -> Result<usize, String> {
    if bytes < MIN_STACK_SIZE {
        return Err(format!(
            "stack size {bytes} bytes is below the minimum of {} KiB",
            MIN_STACK_SIZE / 1024
        ));
    }
    if bytes > MAX_STACK_SIZE {
        return Err(format!(
            "stack size {bytes} bytes is above the maximum of {} MiB",
            MAX_STACK_SIZE >> 20
        ));
    }
    // The upper bound above keeps the rounding from overflowing.
    round_to_pages(bytes).ok_or_else(|| format!("stack size {bytes} bytes is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_sane() {
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096);
        assert_eq!(page, page_size());
    }

    #[test]
    fn check_stack_size_bounds() {
        assert!(check_stack_size(0).is_err());
        assert!(check_stack_size(1024).is_err());
        assert!(check_stack_size(MIN_STACK_SIZE - 1).is_err());
        assert!(check_stack_size(usize::MAX / 2).is_err());
        assert!(check_stack_size(usize::MAX).is_err());
        assert!(check_stack_size(MAX_STACK_SIZE + 1).is_err());
        assert_eq!(check_stack_size(256 * 1024), Ok(256 * 1024));
        assert_eq!(check_stack_size(MIN_STACK_SIZE), Ok(MIN_STACK_SIZE));
        assert_eq!(check_stack_size(MAX_STACK_SIZE), Ok(MAX_STACK_SIZE));
        let odd = check_stack_size(MIN_STACK_SIZE + 1).unwrap();
        assert_eq!(odd % page_size(), 0);
        assert!(odd > MIN_STACK_SIZE && odd - MIN_STACK_SIZE <= page_size());
        let msg = check_stack_size(1024).unwrap_err();
        assert!(msg.contains("minimum"), "{msg}");
    }
}
