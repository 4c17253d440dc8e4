//! Stack caching (Go's per-P `stackcache` in stack.go).
//!
//! A goroutine takes a stack when it first runs (or, when stacks are
//! scarce, when it is spawned) and gives it back when it ends. Most
//! programs spawn and finish goroutines at the same rate on the same P, so
//! the stack a goroutine gives back is the one the next needs: kept in its
//! P's cache with its pages still mapped and warm, it costs no system call
//! and no page fault to reuse. A P's cache beyond `LOCAL_MAX`
//! spills half to a runtime-wide cache (a P that only spawns refills from
//! it).
//!
//! Returning memory to the kernel is deferred to idle time, like Go's
//! background scavenger: the global cache may grow past `GLOBAL_KEEP`, and
//! an M that has found no work — and no timer due within 10 ms, which the
//! system calls would delay — calls `scavenge`, which releases the excess a
//! batch at a time (adjacent stacks in one `madvise`), re-checking for work
//! between batches. (A program whose timers never leave a 10 ms gap keeps
//! its peak until sysmon, issue 5, scavenges in the background.) Releasing on the spot would put a system call and
//! a TLB shootdown on the path of every exiting goroutine in a burst. So a
//! program that never idles keeps the stacks of its peak; one that idles
//! returns all but `GLOBAL_KEEP` of them. Only stacks of the runtime's
//! default size are cached; others are allocated and released one by one.
//!
//! Running out. When neither cache has a stack and the allocator cannot
//! make one (no address space left), the spawn (stacks scarce) or the first
//! run fails with the allocator's error (`goroutine/mod.rs`). Stacks given
//! back later make spawning work again, but only from where they are
//! cached: up to `LOCAL_MAX` stacks in another P's cache are reused only by
//! spawns on that P (or once it spills them), so with several Ps a spawn
//! may fail while a few stacks sit idle elsewhere, as Go's per-P
//! `stackcache` may hold them.
//!
//! Ownership: a `LocalStacks` belongs to one P and is used only by the M
//! holding that P; the global cache is behind its own mutex (a leaf lock).

use std::io;
use std::sync::{Mutex, PoisonError};

use super::{Stack, StackAllocator};

/// Stacks a P keeps before spilling half to the global cache.
const LOCAL_MAX: usize = 64;
/// Stacks a P takes from the global cache at once.
const LOCAL_REFILL: usize = 16;
/// Dirty stacks the global cache keeps through scavenging (at one touched
/// page each, 4 MiB).
const GLOBAL_KEEP: usize = 1024;

/// One P's stack cache.
pub(crate) type LocalStacks = Vec<Stack>;

/// A runtime's stacks: the allocator plus the shared cache.
pub(crate) struct StackPool {
    allocator: StackAllocator,
    default_size: usize,
    global: Mutex<Vec<Stack>>,
}

impl StackPool {
    pub(crate) fn new(default_size: usize) -> StackPool {
        StackPool {
            allocator: StackAllocator::new(),
            default_size,
            global: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn default_size(&self) -> usize {
        self.default_size
    }

    /// Address space reserved for stacks, in bytes.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.allocator.reserved_bytes()
    }

    /// Stack memory resident in RAM (`StackAllocator::resident_bytes`;
    /// costly, O(stack pages)).
    pub(crate) fn resident_bytes(&self) -> usize {
        self.allocator.resident_bytes()
    }

    /// Whether spawns should take their stacks now (`StackAllocator::scarce`).
    pub(crate) fn scarce(&self) -> bool {
        self.allocator.scarce()
    }

    /// Stacks handed out by the allocator: in use or cached for reuse.
    pub(crate) fn allocated(&self) -> usize {
        self.allocator.live_stacks()
    }

    /// A stack of `size` usable bytes, preferring `local`'s cache (a P's;
    /// `None` for a spawner without a P, which takes one from the global
    /// cache). The error is the allocator's (`StackAllocator::alloc`): no
    /// address space or mapping budget left for a new stack. Holder of
    /// `local`'s P only.
    pub(crate) fn get(&self, local: Option<&mut LocalStacks>, size: usize) -> io::Result<Stack> {
        if size != self.default_size {
            return self.allocator.alloc(size);
        }
        let cached = match local {
            Some(local) => {
                if local.is_empty() {
                    let mut global = self.global.lock().unwrap_or_else(PoisonError::into_inner);
                    let at = global.len().saturating_sub(LOCAL_REFILL);
                    local.extend(global.drain(at..));
                }
                local.pop()
            }
            None => self.global.lock().unwrap_or_else(PoisonError::into_inner).pop(),
        };
        match cached {
            Some(s) => Ok(s),
            None => self.allocator.alloc(size),
        }
    }

    /// Give back a stack no goroutine runs on any more. Holder of `local`'s P only.
    pub(crate) fn put(&self, local: &mut LocalStacks, stack: Stack) {
        if stack.size() != self.default_size {
            self.allocator.release(stack);
            return;
        }
        local.push(stack);
        if local.len() > LOCAL_MAX {
            let mut global = self.global.lock().unwrap_or_else(PoisonError::into_inner);
            global.extend(local.drain(LOCAL_MAX / 2..));
        }
    }

    /// Release up to `batch` of the cached stacks beyond `GLOBAL_KEEP` to
    /// the kernel. Returns whether excess remains. Any thread; meant for Ms
    /// with nothing else to do.
    pub(crate) fn scavenge(&self, batch: usize) -> bool {
        let (excess, more) = {
            let mut global = self.global.lock().unwrap_or_else(PoisonError::into_inner);
            let over = global.len().saturating_sub(GLOBAL_KEEP);
            let take = over.min(batch);
            let at = global.len() - take;
            (global.drain(at..).collect::<Vec<_>>(), over > take)
        };
        if !excess.is_empty() {
            self.allocator.release_many(excess);
        }
        more
    }
}
