//! Memory blocks for goroutine jobs, cached per P (the role Go's per-P
//! `mcache` plays for the closures `newproc` allocates).
//!
//! Every spawn needs one small allocation — the job holding the closure and
//! its result slot (`goroutine/job.rs`) — and it is typically freed on
//! another thread than the one that allocated it: a spawning goroutine
//! keeps its P while others steal and run what it spawned. A general
//! allocator's thread caches cannot absorb that one-way flow, so it falls
//! to its slow, locked path. Here jobs come in fixed-size blocks (two size
//! classes): a P keeps
//! a LIFO cache of free blocks; a cache past `LOCAL_MAX` spills half to a
//! process-wide list, and an empty cache refills from it, so the blocks
//! freed by the running P flow back to the spawning one in batches, one
//! lock per `LOCAL_MAX / 2` spawns. Threads without a P use the global
//! allocator directly.
//!
//! Ownership: a P's `BlockCache` is touched only by the M holding the P;
//! the global list is behind its own leaf mutex. Blocks are plain memory of
//! one layout, so a block may move between runtimes freely.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use super::m::{NoPreempt, current_m};

/// A job block size class. Small fits the job of a closure capturing up to
/// about 40 bytes (most spawns: a few handles); large, up to about 170.
/// Larger jobs use the global allocator. Two classes rather than one keep a
/// parked goroutine's job at 128 bytes in the common case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BlockClass {
    Small = 0,
    Large = 1,
}

const CLASS_SIZES: [usize; 2] = [128, 256];
const BLOCK_ALIGN: usize = 16;
const LOCAL_MAX: usize = 64;
const GLOBAL_MAX: usize = 16 * 1024;

impl BlockClass {
    /// The smallest class that holds `layout`, if any.
    pub(crate) fn for_layout(layout: Layout) -> Option<BlockClass> {
        if layout.align() > BLOCK_ALIGN {
            return None;
        }
        [BlockClass::Small, BlockClass::Large]
            .into_iter()
            .find(|c| layout.size() <= CLASS_SIZES[*c as usize])
    }

    fn layout(self) -> Layout {
        Layout::from_size_align(CLASS_SIZES[self as usize], BLOCK_ALIGN).expect("valid block layout")
    }
}

type FreeLists = [Vec<NonNull<u8>>; 2];

struct FreeBlocks(FreeLists);

// SAFETY: free blocks are unused memory; any thread may take one.
unsafe impl Send for FreeBlocks {}

static GLOBAL: Mutex<FreeBlocks> = Mutex::new(FreeBlocks([Vec::new(), Vec::new()]));

/// A P's cache of free blocks, one list per class.
pub(crate) struct BlockCache(UnsafeCell<FreeLists>);

impl BlockCache {
    pub(crate) fn new() -> BlockCache {
        BlockCache(UnsafeCell::new([Vec::new(), Vec::new()]))
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for class in [BlockClass::Small, BlockClass::Large] {
            for b in self.0.get_mut()[class as usize].drain(..) {
                // SAFETY: every cached block of a class was allocated with
                // that class's layout and is owned by the cache.
                unsafe { std::alloc::dealloc(b.as_ptr(), class.layout()) };
            }
        }
    }
}

/// The calling M's P's free list of `class`, if the caller holds a P.
fn local_cache(class: BlockClass) -> Option<&'static mut Vec<NonNull<u8>>> {
    let p = current_m()?.p.get()?;
    let cache: *mut FreeLists = p.blocks.0.get();
    // SAFETY: only the M holding a P touches its cache, and we are that M
    // (`m.p` is only ever set on the M's own thread). The reference is used
    // before any switch (callers do not park while holding it); 'static
    // stands for "as long as the P", which outlives its runtime's Ms.
    Some(unsafe { &mut (*cache)[class as usize] })
}

/// A block of `class`, aligned to 16. Any thread.
pub(crate) fn alloc_block(class: BlockClass) -> NonNull<u8> {
    // The P's cache must not change hands while we use it.
    let _section = NoPreempt::enter();
    if let Some(local) = local_cache(class) {
        if local.is_empty() {
            let mut global = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
            let list = &mut global.0[class as usize];
            let at = list.len().saturating_sub(LOCAL_MAX / 2);
            local.extend(list.drain(at..));
        }
        if let Some(b) = local.pop() {
            return b;
        }
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(class.layout()) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(class.layout()))
}

/// Return a block. Any thread.
///
/// # Safety
/// `block` came from `alloc_block(class)` and is not used afterwards.
pub(crate) unsafe fn free_block(block: NonNull<u8>, class: BlockClass) {
    // The P's cache must not change hands while we use it.
    let _section = NoPreempt::enter();
    if let Some(local) = local_cache(class) {
        local.push(block);
        if local.len() > LOCAL_MAX {
            let mut global = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
            let list = &mut global.0[class as usize];
            let room = GLOBAL_MAX.saturating_sub(list.len());
            let spill = local.len() - LOCAL_MAX / 2;
            let keep = spill.min(room);
            list.extend(local.drain(local.len() - keep..));
            for b in local.drain(LOCAL_MAX / 2..) {
                // SAFETY: allocated with the class's layout, owned by us.
                unsafe { std::alloc::dealloc(b.as_ptr(), class.layout()) };
            }
        }
        return;
    }
    // SAFETY: by the contract the block is ours and had the class's layout.
    unsafe { std::alloc::dealloc(block.as_ptr(), class.layout()) };
}
