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
//! Slots are guarded lazily, [`BATCH`] at a time, when the owning size class
//! runs out of free ones ([`Region::carve`]), so creating a region costs one
//! `mmap` and the guard cost is spread over the allocations that need it.
//! Slots `[0, carved)` are guarded; the rest are untouched reservation.
//! Owned by one size class under its allocator's mutex (or by one
//! [`AltStack`](super::AltStack)); not shared.

use std::io;

use super::guard::{BATCH, GuardMode};

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
