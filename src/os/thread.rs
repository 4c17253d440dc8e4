//! Thread identity, signals to threads, and the kernel's view of a thread's
//! state: what sysmon needs to preempt an M and to notice one blocked in
//! the kernel (DESIGN.md §3, §3a); the process's thread list, which the
//! deadlock check compares with the threads it knows; and a fault-proof
//! read of the process's own memory, which dumps use to copy the stack of a
//! goroutine that may start running (and rewrite that stack) meanwhile;
//! and where the program's own machine code lies, which tells the
//! preemption handler whether it interrupted the program or a shared
//! library such as libc.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// The calling thread's kernel id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Send `sig` to thread `tid` of this process. Async-signal-safe.
pub(crate) fn tgkill(tid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: tgkill takes no pointers; a stale tid of this process at worst
    // fails with ESRCH (tids are not reused while the thread group lives
    // and the thread is joined after it ends: M threads are joined).
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The calling thread's kernel id, cached after the first call (the
/// system call costs more than the thread-local read).
pub(crate) fn current_tid() -> libc::pid_t {
    thread_local!(static TID: libc::pid_t = gettid());
    TID.with(|t| *t)
}

/// Every thread of this process (`/proc/self/task`).
pub(crate) fn process_threads() -> io::Result<Vec<libc::pid_t>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Copy each of `ranges` of this process's memory into consecutive parts
/// of `buf` (as long as all of them): whether each range was copied whole,
/// or failed (`EFAULT`) where it is unmapped, instead of faulting. The
/// kernel does the copy, so memory another thread writes meanwhile yields
/// stale bytes, not a data race.
/// A dump copies a stack per goroutine, and one system call per range
/// cost more than the rest of the dump: this makes one per `IOV_MAX`
/// ranges, plus one more after each range that fails (the kernel copies
/// whole elements in order and stops at the first it cannot read).
pub(crate) fn read_own_memory_many(ranges: &[Range<usize>], buf: &mut [u8]) -> Vec<bool> {
    /// Linux's `IOV_MAX`: the most elements one call takes.
    const IOV_MAX: usize = 1024;
    assert_eq!(
        buf.len(),
        ranges.iter().map(|r| r.len()).sum::<usize>(),
        "one buffer part per range"
    );
    let mut copied = vec![false; ranges.len()];
    let mut local = Vec::with_capacity(ranges.len().min(IOV_MAX));
    let mut remote = Vec::with_capacity(ranges.len().min(IOV_MAX));
    let (mut next, mut offset) = (0, 0);
    while next < ranges.len() {
        let batch = &ranges[next..ranges.len().min(next + IOV_MAX)];
        local.clear();
        remote.clear();
        let mut at = offset;
        for range in batch {
            local.push(libc::iovec {
                // SAFETY: in bounds: the parts of `buf` add up to its length.
                iov_base: unsafe { buf.as_mut_ptr().add(at) }.cast(),
                iov_len: range.len(),
            });
            remote.push(libc::iovec {
                iov_base: range.start as *mut libc::c_void,
                iov_len: range.len(),
            });
            at += range.len();
        }
        // SAFETY: every `local` element is a distinct part of `buf`, which
        // we own mutably; the kernel checks `remote` and stops (or reports
        // EFAULT) at an element it cannot read, instead of faulting.
        let n = unsafe {
            libc::process_vm_readv(
                libc::getpid(),
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        // -1: the first element failed, nothing was copied.
        let mut done = usize::try_from(n).unwrap_or(0);
        let whole = done == batch.iter().map(|r| r.len()).sum::<usize>();
        for range in batch {
            if done < range.len() {
                break;
            }
            done -= range.len();
            copied[next] = true;
            offset += range.len();
            next += 1;
        }
        if !whole {
            // The element the kernel stopped at: unreadable, skipped.
            offset += ranges[next].len();
            next += 1;
        }
    }
    copied
}

/// The executable segment, among those of every loaded object (the program
/// and its shared libraries), that contains `addr`. Not async-signal-safe
/// (the loader's lock is taken): call it once, up front.
pub(crate) fn code_segment_containing(addr: usize) -> Option<Range<usize>> {
    struct Search {
        addr: usize,
        found: Option<Range<usize>>,
    }
    /// # Safety
    /// Called by `dl_iterate_phdr` with a valid `info` and our `Search`.
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> i32 {
        // SAFETY: `data` is the `Search` passed below, alive for the call;
        // `info` and its program headers are valid for this callback.
        let (search, info) = unsafe { (&mut *(data as *mut Search), &*info) };
        // SAFETY: as above: `dlpi_phnum` headers start at `dlpi_phdr`.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for h in headers {
            if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                let lo = info.dlpi_addr as usize + h.p_vaddr as usize;
                let segment = lo..lo + h.p_memsz as usize;
                if segment.contains(&search.addr) {
                    search.found = Some(segment);
                    return 1;
                }
            }
        }
        0
    }
    let mut search = Search { addr, found: None };
    // SAFETY: `visit` matches the callback type and only reads what the
    // loader hands it; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

/// A thread's `/proc/self/task/<tid>/stat`, kept open: one `pread` per
/// probe (about 3.5 µs, DESIGN.md §3a), and the probed thread is not
/// disturbed.
pub(crate) struct ThreadStat {
    file: File,
}

impl ThreadStat {
    pub(crate) fn open(tid: libc::pid_t) -> io::Result<ThreadStat> {
        Ok(ThreadStat {
            file: File::open(format!("/proc/self/task/{tid}/stat"))?,
        })
    }

    /// Whether the thread is off the CPU, waiting in the kernel (state `S`
    /// or `D`): blocked in a system call or a page fault. `R` (on a CPU, or
    /// runnable) and anything unreadable count as running.
    pub(crate) fn is_blocked(&self) -> bool {
        let mut buf = [0u8; 256];
        let Ok(n) = self.file.read_at(&mut buf, 0) else {
            return false;
        };
        // "tid (comm) S ...": the state follows the last ')' (comm may
        // itself contain parentheses).
        let line = &buf[..n];
        let Some(close) = line.iter().rposition(|&b| b == b')') else {
            return false;
        };
        matches!(line.get(close + 2), Some(b'S' | b'D'))
    }
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Register this process for `process_barrier`; false if the kernel (or a
/// seccomp filter) refuses, and then `process_barrier` must not be relied on.
pub(crate) fn register_process_barrier() -> bool {
    // SAFETY: membarrier takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

/// Make every thread of this process that is running now execute a full
/// memory barrier before this returns (threads not running pass through
/// one when they are next scheduled). Lets a rare caller pay for the fence
/// that a frequent one would otherwise need. Only after
/// `register_process_barrier` returned true; returns whether it worked.
pub(crate) fn process_barrier() -> bool {
    // SAFETY: membarrier takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_code_segment_holds_our_functions_and_not_libc() {
        let ours = code_segment_containing as *const () as usize;
        let code = code_segment_containing(ours).expect("the loader knows our code");
        assert!(code.contains(&(gettid as *const () as usize)));
        assert!(!code.contains(&(libc::malloc as *const () as usize)));
    }
}
