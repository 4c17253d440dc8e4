//! A region: one anonymous reservation divided into equal slots, each a
//! guard page followed by a usable stack. The `mheap`-like layer under Go's
//! `runtime/stack.go` (Go carves stack spans out of heap arenas).
//!
//! Why regions: one `mmap` per stack would cost one kernel mapping per
//! goroutine (two with an mprotect guard), and `vm.max_map_count` (65530 by
//! default) would cap the number of goroutines. A region is one mapping for
//! hundreds or thousands of stacks; adjacent regions are usually merged by
//! the kernel into a single mapping anyway (measured: 50 regions, one more
//! line in `/proc/self/maps`).
//!
//! The reservation is `PROT_READ | PROT_WRITE` with `MAP_NORESERVE`: no
//! memory and no commit charge until a page is touched, so reserving far
//! ahead costs only address space.
//!
//! Under an address-space limit (`RLIMIT_AS`) that address space is what
//! runs out, and everything else in the process needs it too: malloc's
//! heaps and arenas, new threads' stacks. So goroutine stacks never take
//! the last of it: [`room_for_stacks`] keeps one eighth of the limit (at
//! least 64 MiB) for the rest of the process, as `guard::vma_limit` keeps a
//! share of the mapping limit. Without that reserve, the first goroutine
//! spawn to fail would be followed by allocation failures anywhere, which
//! abort the process (measured: 2 aborts in 16 runs of a test that spawns
//! until refused, with RLIMIT_AS 48 MiB above the process's size).
//!
//! Slots are guarded lazily, [`BATCH`] at a time, when the owning size class
//! runs out of free ones ([`Region::carve`]), so creating a region costs one
//! `mmap` and the guard cost is spread over the allocations that need it.
//! Slots `[0, carved)` are guarded; the rest are untouched reservation.
//! Owned by one size class under its allocator's mutex (or by one
//! [`AltStack`](super::AltStack)); not shared.

use std::io;

use super::guard::{BATCH, GuardMode};

/// The least address space kept for the rest of the process under
/// `RLIMIT_AS`: one glibc malloc arena (64 MiB) covers a new thread's
/// first allocations and its 8 MiB stack.
const MIN_KEPT: usize = 64 << 20;

/// Address space goroutine stacks may still reserve under `RLIMIT_AS`
/// (`Ok(None)`: no limit), or the error saying why none is left. Reads
/// `/proc/self/statm` into a buffer on the stack: no heap allocation, since
/// this runs when memory may be short. A system call or three, once per
/// region.
pub(super) fn room_for_stacks() -> io::Result<Option<usize>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(None);
    }
    let limit = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    let Some(used) = address_space_in_use() else {
        return Ok(None);
    };
    let kept = (limit / 8).max(MIN_KEPT);
    match limit.checked_sub(used).and_then(|free| free.checked_sub(kept)) {
        Some(room) if room > 0 => Ok(Some(room)),
        _ => Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "no address space left for goroutine stacks: RLIMIT_AS={limit}, {used} bytes in use, \
                 {kept} kept for the rest of the process"
            ),
        )),
    }
}

/// The process's virtual size in bytes (`/proc/self/statm`'s first field,
/// in pages), read without allocating; `None` if it can't be read.
fn address_space_in_use() -> Option<usize> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours and not used after this.
    unsafe { libc::close(fd) };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let pages = text.split(|&b| b == b' ').next()?;
    let pages: usize = std::str::from_utf8(pages).ok()?.parse().ok()?;
    pages.checked_mul(super::page_size())
}

pub(super) struct Region {
    base: usize,
    len: usize,
    /// Bytes per slot, guard page included; a multiple of the page size.
    slot: usize,
    nslots: usize,
    /// Slots whose guard is installed, all handed to the owner.
    carved: usize,
    mode: GuardMode,
}

impl Region {
    /// Reserves address space for `nslots` slots of `slot` bytes, or for
    /// fewer if the kernel refuses that much (halving down to one slot), so
    /// that a process near its address-space or overcommit limit gets smaller
    /// regions instead of an error while any room is left.
    pub(super) fn reserve(slot: usize, nslots: usize, mode: GuardMode) -> io::Result<Region> {
        let mut nslots = nslots.max(1);
        loop {
            let len = slot
                .checked_mul(nslots)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack region size overflows"))?;
            // SAFETY: a fresh anonymous mapping at an address of the kernel's
            // choosing overlaps nothing of ours.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base != libc::MAP_FAILED {
                return Ok(Region {
                    base: base as usize,
                    len,
                    slot,
                    nslots,
                    carved: 0,
                    mode,
                });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOMEM) && nslots > 1 {
                nslots /= 2;
                continue;
            }
            return Err(io::Error::new(
                err.kind(),
                format!("cannot reserve {len} bytes of address space for goroutine stacks: {err}"),
            ));
        }
    }

    /// Bytes of address space this region holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Start of the region, which is slot 0's guard page.
    pub(super) fn base(&self) -> usize {
        self.base
    }

    /// The part of the region handed out as slots so far: `(start, bytes)`.
    pub(super) fn carved_span(&self) -> (usize, usize) {
        (self.base, self.carved * self.slot)
    }

    /// Slots not carved yet.
    pub(super) fn uncarved(&self) -> usize {
        self.nslots - self.carved
    }

    /// True when every slot has been carved.
    pub(super) fn is_full(&self) -> bool {
        self.carved == self.nslots
    }

    /// Guards up to [`BATCH`] fresh slots and appends their start addresses
    /// (guard page first) to `out`, highest first, so a LIFO free list hands
    /// out the lowest address next. Succeeds if at least one slot was
    /// carved; the error comes back on the next call if it persists.
    /// `vma_limit` caps the mprotect fallback (see [`GuardMode::install`]).
    pub(super) fn carve(&mut self, vma_limit: usize, out: &mut Vec<usize>) -> io::Result<()> {
        let n = BATCH.min(self.nslots - self.carved);
        let mut pages = [0usize; BATCH];
        for (i, page) in pages[..n].iter_mut().enumerate() {
            *page = self.base + (self.carved + i) * self.slot;
        }
        let done = match self.mode.install(&pages[..n], vma_limit) {
            Ok(()) => n,
            Err(partial) if partial.done > 0 => partial.done,
            Err(partial) => return Err(partial.error),
        };
        self.carved += done;
        out.extend(pages[..done].iter().rev());
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours; the owner's contract (see
        // StackAllocator and AltStack) is that no thread runs on, or holds a
        // reference into, any of its slots any more.
        let ret = unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
        debug_assert_eq!(ret, 0, "munmap of a stack region failed");
        self.mode.unmapped(self.carved);
    }
}
