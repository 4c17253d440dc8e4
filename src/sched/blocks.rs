//! Memory blocks for goroutine jobs, cached per P (the role Go's per-P
//! `mcache` plays for the closures `newproc` allocates).
//!
//! Every spawn needs one small allocation — the job holding the closure and
//! its result slot (`goroutine/job.rs`) — and it is typically freed on
//! another thread than the one that allocated it: a spawning goroutine
//! keeps its P while others steal and run what it spawned. A general
//! allocator's thread caches cannot absorb that one-way flow, so it falls
//! to its slow, locked path. Here jobs come in fixed-size blocks: a P keeps
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

use super::m::current_m;

/// Size of a job block: fits the job of a closure capturing up to about
/// 150 bytes; larger jobs use the global allocator.
pub(crate) const BLOCK_SIZE: usize = 256;
pub(crate) const BLOCK_ALIGN: usize = 16;
const LOCAL_MAX: usize = 64;
const GLOBAL_MAX: usize = 16 * 1024;

fn layout() -> Layout {
    Layout::from_size_align(BLOCK_SIZE, BLOCK_ALIGN).expect("valid block layout")
}

struct FreeBlocks(Vec<NonNull<u8>>);

// SAFETY: free blocks are unused memory; any thread may take one.
unsafe impl Send for FreeBlocks {}

static GLOBAL: Mutex<FreeBlocks> = Mutex::new(FreeBlocks(Vec::new()));

/// A P's cache of free blocks.
pub(crate) struct BlockCache(UnsafeCell<Vec<NonNull<u8>>>);

impl BlockCache {
    pub(crate) fn new() -> BlockCache {
        BlockCache(UnsafeCell::new(Vec::new()))
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for b in self.0.get_mut().drain(..) {
            // SAFETY: every cached block was allocated with `layout()` and
            // is owned by the cache.
            unsafe { std::alloc::dealloc(b.as_ptr(), layout()) };
        }
    }
}

/// The calling M's P's cache, if the caller holds a P.
fn local_cache() -> Option<&'static mut Vec<NonNull<u8>>> {
    let p = current_m()?.p.get()?;
    let cache: *mut Vec<NonNull<u8>> = p.blocks.0.get();
    // SAFETY: only the M holding a P touches its cache, and we are that M
    // (`m.p` is only ever set on the M's own thread). The reference is used
    // before any switch (callers do not park while holding it); 'static
    // stands for "as long as the P", which outlives its runtime's Ms.
    Some(unsafe { &mut *cache })
}

/// A block of `BLOCK_SIZE` bytes aligned to `BLOCK_ALIGN`. Any thread.
pub(crate) fn alloc_block() -> NonNull<u8> {
    if let Some(local) = local_cache() {
        if local.is_empty() {
            let mut global = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
            let at = global.0.len().saturating_sub(LOCAL_MAX / 2);
            local.extend(global.0.drain(at..));
        }
        if let Some(b) = local.pop() {
            return b;
        }
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout()) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout()))
}

/// Return a block. Any thread.
///
/// # Safety
/// `block` came from `alloc_block` and is not used afterwards.
pub(crate) unsafe fn free_block(block: NonNull<u8>) {
    if let Some(local) = local_cache() {
        local.push(block);
        if local.len() > LOCAL_MAX {
            let mut global = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
            let room = GLOBAL_MAX.saturating_sub(global.0.len());
            let spill = local.len() - LOCAL_MAX / 2;
            let keep = spill.min(room);
            global.0.extend(local.drain(local.len() - keep..));
            for b in local.drain(LOCAL_MAX / 2..) {
                // SAFETY: allocated with `layout()`, owned by us.
                unsafe { std::alloc::dealloc(b.as_ptr(), layout()) };
            }
        }
        return;
    }
    // SAFETY: by the contract the block is ours and had `layout()`.
    unsafe { std::alloc::dealloc(block.as_ptr(), layout()) };
}
