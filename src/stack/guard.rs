//! Guard pages: how they are installed, and the mapping budget when they
//! cost kernel mappings. Part of the `runtime/stack.go` story (Go itself
//! needs no guard pages: its function prologues check the stack bound).
//!
//! Three ways, picked once per process by probing a scratch mapping
//! ([`GuardMode::detect`]), best first:
//!
//! - [`GuardMode::Batched`]: `process_madvise(PIDFD_SELF, .., MADV_GUARD_INSTALL)`
//!   with up to [`BATCH`] pages per call (Linux 6.13+ for the advice, 6.14+
//!   for the `PIDFD_SELF` sentinel). Measured here: about 0.6–0.9 µs per
//!   guard against 1.2–1.3 µs for one `madvise` per guard. `PIDFD_SELF` and
//!   not a pidfd from `pidfd_open`: a kept pidfd would still name the parent
//!   after `fork`, and the child would install guards in its parent.
//! - [`GuardMode::PerPage`]: one `madvise(MADV_GUARD_INSTALL)` per guard.
//!   Like the batched form it adds a page-table marker and no kernel mapping;
//!   guards survive `MADV_DONTNEED`, so recycled stacks keep theirs. A fault
//!   on one is `SEGV_MAPERR`.
//! - [`GuardMode::Mprotect`]: `mprotect(PROT_NONE)`, for kernels before
//!   6.13. Each guard splits the reservation's mapping, adding up to two
//!   VMAs. The process-wide count of those lives in [`MPROTECT_VMAS`]; a
//!   request that would take it past [`vma_limit`] fails with an error
//!   naming `vm.max_map_count`, because when the kernel limit itself is hit
//!   every later `mmap` fails too (malloc, thread stacks) and the process
//!   dies somewhere unrelated. A fault on such a guard is `SEGV_ACCERR`.
//!
//! Invariant: [`MPROTECT_VMAS`] is at least the number of mappings our
//! mprotect guards currently add to the process (two per guard, an upper
//! bound); regions give their share back when they are unmapped.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::page_size;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13); libc 0.2 does
/// not have it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `PIDFD_SELF_THREAD_GROUP` from `<linux/pidfd.h>`: "the calling process"
/// for pidfd-taking system calls, resolved at each call.
const PIDFD_SELF: libc::c_int = -10001;

/// Most guards installed by one `process_madvise` call: enough to amortise
/// the system call (larger batches measured no faster), small enough for an
/// on-stack iovec array.
pub(super) const BATCH: usize = 64;

/// Mappings our mprotect guards add to the process, across all allocators
/// and alternate signal stacks (the kernel limit is per process).
static MPROTECT_VMAS: AtomicUsize = AtomicUsize::new(0);

/// How guard pages are installed on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GuardMode {
    Batched,
    PerPage,
    Mprotect,
}

/// A guard installation that stopped early: the first `done` pages are
/// guarded, the rest are not.
#[derive(Debug)]
pub(super) struct PartialGuards {
    pub(super) done: usize,
    pub(super) error: io::Error,
}

impl GuardMode {
    /// The best mode this kernel supports, probed once per process on a
    /// scratch mapping so that a failure never leaves a real stack half
    /// guarded. Any thread.
    pub(super) fn detect() -> GuardMode {
        static MODE: AtomicU8 = AtomicU8::new(0);
        // Relaxed: every thread that probes finds the same answer.
        match MODE.load(Ordering::Relaxed) {
            1 => return GuardMode::Batched,
            2 => return GuardMode::PerPage,
            3 => return GuardMode::Mprotect,
            _ => {}
        }
        let mode = probe();
        let code = match mode {
            GuardMode::Batched => 1,
            GuardMode::PerPage => 2,
            GuardMode::Mprotect => 3,
        };
        MODE.store(code, Ordering::Relaxed);
        mode
    }

    /// Installs a one-page guard at each address of `pages` (page aligned,
    /// inside a private anonymous mapping we own that nothing references
    /// yet). `limit` caps [`MPROTECT_VMAS`] in mprotect mode.
    pub(super) fn install(self, pages: &[usize], limit: usize) -> Result<(), PartialGuards> {
        match self {
            GuardMode::Batched => install_batched(pages),
            GuardMode::PerPage => install_each(pages, |page| {
                // SAFETY: `page` is a whole page of a private anonymous
                // mapping owned by the caller and unused by anyone (the
                // caller's contract); a guard marker only changes how later
                // accesses fault.
                unsafe { libc::madvise(page as *mut libc::c_void, page_size(), MADV_GUARD_INSTALL) }
            }),
            GuardMode::Mprotect => install_mprotect(pages, limit),
        }
    }

    /// Accounts for `guards` guards installed in this mode whose memory has
    /// just been unmapped.
    pub(super) fn unmapped(self, guards: usize) {
        if self == GuardMode::Mprotect && guards > 0 {
            // Relaxed: a counter; the munmap it follows is what frees the
            // kernel's mappings, and no memory is published through it.
            MPROTECT_VMAS.fetch_sub(2 * guards, Ordering::Relaxed);
        }
    }
}

/// Tries the modes best first on a two-page scratch mapping.
fn probe() -> GuardMode {
    let page = page_size();
    // SAFETY: a fresh anonymous mapping at an address of the kernel's
    // choosing; it overlaps nothing.
    let scratch = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if scratch == libc::MAP_FAILED {
        // Can't tell; the mode that works everywhere is the safe answer.
        return GuardMode::Mprotect;
    }
    let addr = scratch as usize;
    let mode = if install_batched(&[addr]).is_ok() {
        GuardMode::Batched
    } else if GuardMode::PerPage.install(&[addr], 0).is_ok() {
        GuardMode::PerPage
    } else {
        GuardMode::Mprotect
    };
    // SAFETY: the scratch mapping is ours and nothing points into it.
    unsafe { libc::munmap(scratch, 2 * page) };
    mode
}

fn install_batched(pages: &[usize]) -> Result<(), PartialGuards> {
    let page = page_size();
    let mut done = 0;
    while done < pages.len() {
        let chunk = &pages[done..pages.len().min(done + BATCH)];
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        for (v, &p) in iov.iter_mut().zip(chunk) {
            v.iov_base = p as *mut libc::c_void;
            v.iov_len = page;
        }
        // SAFETY: `iov[..chunk.len()]` is initialised and outlives the call;
        // every range is a whole page of a private anonymous mapping owned by
        // the caller and unused by anyone (install's contract).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF,
                iov.as_ptr(),
                chunk.len(),
                MADV_GUARD_INSTALL,
                0,
            )
        };
        if ret < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(PartialGuards { done, error });
        }
        // A short count means the kernel stopped part-way; the next call
        // resumes after the last whole page it did.
        let advanced = (ret as usize / page).min(chunk.len());
        if advanced == 0 {
            let error = io::Error::other("process_madvise(MADV_GUARD_INSTALL) made no progress");
            return Err(PartialGuards { done, error });
        }
        done += advanced;
    }
    Ok(())
}

fn install_each(pages: &[usize], guard_one: impl Fn(usize) -> libc::c_int) -> Result<(), PartialGuards> {
    let mut done = 0;
    while done < pages.len() {
        if guard_one(pages[done]) != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(PartialGuards { done, error });
        }
        done += 1;
    }
    Ok(())
}

fn install_mprotect(pages: &[usize], limit: usize) -> Result<(), PartialGuards> {
    // Take budget for as many guards as fit, up front, so concurrent
    // allocators can't overshoot the limit together.
    let mut granted = 0;
    // Relaxed: the counter publishes no memory; only its arithmetic matters.
    let _ = MPROTECT_VMAS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
        granted = (limit.saturating_sub(used) / 2).min(pages.len());
        Some(used + 2 * granted)
    });
    let result = install_each(&pages[..granted], |page| {
        // SAFETY: as for MADV_GUARD_INSTALL: a whole page of a private
        // anonymous mapping owned by the caller that nobody uses yet.
        unsafe { libc::mprotect(page as *mut libc::c_void, page_size(), libc::PROT_NONE) }
    });
    let done = match &result {
        Ok(()) => granted,
        Err(partial) => partial.done,
    };
    // Relaxed: as above; return the budget of guards not installed.
    MPROTECT_VMAS.fetch_sub(2 * (granted - done), Ordering::Relaxed);
    match result {
        Err(partial) if partial.error.raw_os_error() != Some(libc::ENOMEM) => Err(partial),
        // ENOMEM from mprotect is the kernel's own mapping limit.
        Err(_) => Err(PartialGuards {
            done,
            error: limit_error(),
        }),
        Ok(()) if done < pages.len() => Err(PartialGuards {
            done,
            error: limit_error(),
        }),
        Ok(()) => Ok(()),
    }
}

fn limit_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "stack mapping limit reached: vm.max_map_count={}; this kernel lacks \
             MADV_GUARD_INSTALL (Linux 6.13+), so every goroutine stack's guard page costs \
             two kernel mappings ({} in use); raise vm.max_map_count or run fewer goroutines",
            max_map_count(),
            // Relaxed: a number for the message.
            MPROTECT_VMAS.load(Ordering::Relaxed),
        ),
    )
}

/// `vm.max_map_count`, read once (65530, the kernel default, if unreadable).
fn max_map_count() -> usize {
    static MAX: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: every reader computes the same value.
    let cached = MAX.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(65530);
    MAX.store(max, Ordering::Relaxed);
    max
}

/// How many mappings mprotect guards may add: `vm.max_map_count` less a
/// reserve of one eighth (at least 1024) for everything else in the process
/// (libraries, thread stacks, malloc arenas, the user's own mmaps), which we
/// can't count cheaply and which must keep working after we refuse.
pub(super) fn vma_limit() -> usize {
    let max = max_map_count();
    max.saturating_sub((max / 8).max(1024))
}

/// The process-wide count, for tests of the mprotect fallback.
#[cfg(test)]
pub(super) fn mprotect_vmas() -> usize {
    MPROTECT_VMAS.load(Ordering::Relaxed)
}

/// Serialises the tests that install mprotect guards, since the budget they
/// check is process-wide.
#[cfg(test)]
pub(super) static MAPPING_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_below_kernel_max() {
        let limit = vma_limit();
        assert!(limit > 0 && limit < max_map_count());
        assert!(limit_error().to_string().contains("vm.max_map_count="));
    }

    #[test]
    fn detect_is_stable() {
        let mode = GuardMode::detect();
        assert_eq!(mode, GuardMode::detect());
        // This project targets Linux 6.13+; say so loudly if the test machine
        // can't exercise the main path.
        if mode == GuardMode::Mprotect {
            eprintln!("note: MADV_GUARD_INSTALL unsupported here; mprotect fallback in use");
        }
    }
}
