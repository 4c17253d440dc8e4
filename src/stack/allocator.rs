//! The stack allocator: size classes, free lists and the [`Stack`] token.
//! Corresponds to `stackalloc`/`stackfree` and the stack pools of Go's
//! `runtime/stack.go`; the per-P cache (Go's `stackcache`) lives in the
//! scheduler, which keeps a dead G together with its stack.
//!
//! A size class is every stack of one usable size (rounded to pages). It
//! owns its regions (all slots the same size, so a slot address is all the
//! bookkeeping a free stack needs) and a LIFO free list of slot addresses.
//! LIFO because the most recently released stack is the one whose page
//! tables and cache lines are warm, and carving pushes slots so that lower
//! addresses go first, which keeps the touched part of the address space
//! dense.
//!
//! Costs: reusing a free slot is a pop under the mutex, no system call.
//! Growing a class carves [`BATCH`](super::guard::BATCH) guarded slots from
//! its newest region (one `process_madvise`), and maps a new region of
//! [`REGION_BYTES`] when that one is full (smaller under `RLIMIT_AS`, whose
//! last share is left to the rest of the process: `region.rs`). Releasing costs one
//! `madvise(MADV_DONTNEED)` (about 2–3 µs), done outside the mutex.
//!
//! Lock: `classes` is guarded by its mutex, the only lock here; the two
//! counters are statistics updated while it is held or after the slot has
//! changed hands, and read without it.
//!
//! Ownership: a [`Stack`] is a token for one slot. It is not `Clone`, so
//! after [`StackAllocator::release`] consumed it, nothing can name the slot
//! until a later `alloc` hands it out again. Dropping a `Stack` without
//! releasing it leaks its slot (the memory stays mapped).

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::guard::{GuardMode, vma_limit};
use super::region::{self, Region};
use super::{MAX_STACK_SIZE, page_size, round_to_pages};

/// Address space per region. 256 MiB holds 1008 default stacks (256 KiB +
/// a 4 KiB guard), so a million default goroutines (about 254 GiB of address
/// space) need 993 regions, far under `vm.max_map_count` even before the
/// kernel merges adjacent regions into one mapping. It is only address
/// space: untouched, it costs no memory, and x86_64's 128 TiB user half
/// holds 500,000 of them. A stack larger than a region gets a region of its
/// own.
const REGION_BYTES: usize = 256 << 20;

/// One goroutine stack: `[lo, hi)` usable, with one guard page directly
/// below `lo`. Owned by whoever runs (or will run) a goroutine on it.
#[derive(Debug)]
pub(crate) struct Stack {
    lo: usize,
    hi: usize,
}

impl Stack {
    /// The initial stack pointer: the highest address, 16-byte aligned
    /// (page aligned, in fact), as the x86_64 ABI wants before a call.
    pub(crate) fn top(&self) -> usize {
        self.hi
    }

    /// The lowest usable address; the guard page ends here.
    pub(crate) fn lo(&self) -> usize {
        self.lo
    }

    /// Usable bytes (whole pages).
    pub(crate) fn size(&self) -> usize {
        self.hi - self.lo
    }

    /// The guard page below the stack: a fault address in here is this
    /// stack's overflow. Signal-handler safe (no allocation, no locks).
    pub(crate) fn guard(&self) -> Range<usize> {
        self.lo - page_size()..self.lo
    }
}

/// One usable size's slots.
struct SizeClass {
    /// Slot bytes: one guard page plus the usable size.
    slot: usize,
    /// Slot start addresses ready to hand out; the last is handed out next.
    free: Vec<usize>,
    /// All regions of this class; the last is the one being carved.
    regions: Vec<Region>,
    /// Slots that `RLIMIT_AS` left room for beyond the newest region when
    /// it was reserved (`region::room_for_stacks`); `None`: no limit.
    room_after: Option<usize>,
}

/// Per-runtime allocator of stacks. Any thread; internally locked.
///
/// Dropping it unmaps every region, including stacks still handed out: the
/// owner must drop it only once no thread runs on any of its stacks.
pub(crate) struct StackAllocator {
    classes: Mutex<HashMap<usize, SizeClass>>,
    /// Stacks handed out and not yet released.
    live: AtomicUsize,
    /// Address space held by all regions.
    reserved: AtomicUsize,
    mode: GuardMode,
    /// Cap on the mappings mprotect guards may add (mprotect mode only).
    vma_limit: usize,
    /// Fewer than a region's worth of new stacks can still be made, as of
    /// the last growth (or the last growth failed): see [`Self::scarce`].
    scarce: AtomicBool,
}

impl StackAllocator {
    pub(crate) fn new() -> StackAllocator {
        StackAllocator::with_guards(GuardMode::detect(), vma_limit())
    }

    /// An allocator with a given guard mode and mprotect budget; `new` uses
    /// the detected ones, tests force the fallback.
    pub(super) fn with_guards(mode: GuardMode, vma_limit: usize) -> StackAllocator {
        StackAllocator {
            classes: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            mode,
            vma_limit,
            scarce: AtomicBool::new(false),
        }
    }

    /// Whether new stacks are running out: under `RLIMIT_AS`, fewer than
    /// one region's worth can still be carved or reserved, or the last
    /// attempt failed. Then goroutines take their stack when spawned, so
    /// that running out is the spawner's error (`sched::newproc`). Read
    /// per spawn: one relaxed load. Any thread.
    pub(crate) fn scarce(&self) -> bool {
        self.scarce.load(Ordering::Relaxed)
    }

    /// Hands out a stack of at least `size` usable bytes (rounded up to whole
    /// pages). A recycled slot if one of that size is free (no system
    /// call); otherwise fresh, guarded address space. Errors, never panics:
    /// `InvalidInput` for 0 or more than 1 GiB, the kernel's error when
    /// address space runs out, and `OutOfMemory` naming `vm.max_map_count`
    /// when mprotect guards would exhaust the mapping limit. Any thread.
    pub(crate) fn alloc(&self, size: usize) -> io::Result<Stack> {
        let usable = match round_to_pages(size) {
            Some(usable) if usable > 0 && usable <= MAX_STACK_SIZE => usable,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid goroutine stack size: {size} bytes"),
                ));
            }
        };
        let page = page_size();
        let mut classes = self.lock();
        let class = classes.entry(usable).or_insert_with(|| SizeClass {
            slot: usable + page,
            free: Vec::new(),
            regions: Vec::new(),
            room_after: None,
        });
        let base = match class.free.pop() {
            Some(base) => base,
            None => {
                self.grow(class)?;
                // grow succeeds only after pushing at least one slot.
                class.free.pop().expect("grow produced no slot")
            }
        };
        drop(classes);
        // Relaxed: a statistic; the slot itself was handed over by the mutex.
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Stack {
            lo: base + page,
            hi: base + page + usable,
        })
    }

    /// Carves fresh slots into `class.free`, mapping a new region first if
    /// the newest is full, and updates `scarce`. Mutex held.
    fn grow(&self, class: &mut SizeClass) -> io::Result<()> {
        let grown = self.carve_or_reserve(class);
        let spare = class
            .room_after
            .map(|room| room + class.regions.last().map_or(0, Region::uncarved));
        let scarce = grown.is_err() || spare.is_some_and(|spare| spare < (REGION_BYTES / class.slot).max(1));
        // Relaxed: a hint for spawners; a stale value only delays the
        // switch between lazy and eager stacks by a spawn or two.
        self.scarce.store(scarce, Ordering::Relaxed);
        grown
    }

    fn carve_or_reserve(&self, class: &mut SizeClass) -> io::Result<()> {
        if class.regions.last().is_none_or(Region::is_full) {
            let mut nslots = (REGION_BYTES / class.slot).max(1);
            let room = region::room_for_stacks();
            class.room_after = match &room {
                Ok(room) => *room,
                Err(_) => Some(0),
            };
            if let Some(room) = room? {
                nslots = nslots.min(room / class.slot);
                class.room_after = Some(room / class.slot - nslots);
                if nslots == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "no address space left for goroutine stacks: {room} bytes may still be reserved under \
                             RLIMIT_AS, a stack slot needs {}",
                            class.slot
                        ),
                    ));
                }
            }
            let region = Region::reserve(class.slot, nslots, self.mode)?;
            // Relaxed: a statistic.
            self.reserved.fetch_add(region.len(), Ordering::Relaxed);
            class.regions.push(region);
        }
        let region = class.regions.last_mut().expect("a region was just ensured");
        region.carve(self.vma_limit, &mut class.free)
    }

    /// Takes a stack back. Its pages go back to the kernel now
    /// (`MADV_DONTNEED`: the next user sees zeroes and the RSS drops; the
    /// guard stays), and its slot is reused by a later `alloc` of the same
    /// size. The goroutine that ran on it must be finished: consuming the
    /// token is the proof. Any thread.
    pub(crate) fn release(&self, stack: Stack) {
        let size = stack.size();
        // SAFETY: the range is the usable part of one of our slots, inside a
        // mapping we own; `stack` was moved in, so no goroutine runs on it
        // and nobody else can name it (the Stack ownership contract), and
        // dropping its contents is what we want.
        let ret = unsafe { libc::madvise(stack.lo as *mut libc::c_void, size, libc::MADV_DONTNEED) };
        debug_assert_eq!(ret, 0, "MADV_DONTNEED on a stack failed");
        let base = stack.lo - page_size();
        match self.lock().get_mut(&size) {
            Some(class) => class.free.push(base),
            // A stack from another allocator: leaking it is the safe choice.
            None => debug_assert!(false, "stack released to the wrong allocator"),
        }
        // Relaxed: a statistic.
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// `release` for many stacks at once: slots that are adjacent in memory
    /// are given back with one `madvise` over the whole run (the guard
    /// pages in between survive it), so releasing a burst of stacks costs a
    /// few system calls and TLB shootdowns rather than one per stack.
    pub(crate) fn release_many(&self, mut stacks: Vec<Stack>) {
        stacks.sort_unstable_by_key(|s| s.lo);
        let page = page_size();
        let mut i = 0;
        while i < stacks.len() {
            let mut j = i + 1;
            while j < stacks.len() && stacks[j].lo - page == stacks[j - 1].hi && stacks[j].size() == stacks[i].size() {
                j += 1;
            }
            let (lo, hi) = (stacks[i].lo, stacks[j - 1].hi);
            // SAFETY: [lo, hi) covers the usable parts of adjacent slots of
            // ours and the guard pages between them, all inside our mappings;
            // the stacks were moved in, so nobody runs on or names them.
            let ret = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
            debug_assert_eq!(ret, 0, "MADV_DONTNEED on a run of stacks failed");
            i = j;
        }
        let n = stacks.len();
        let mut classes = self.lock();
        for s in stacks {
            match classes.get_mut(&s.size()) {
                Some(class) => class.free.push(s.lo - page),
                None => debug_assert!(false, "stack released to the wrong allocator"),
            }
        }
        drop(classes);
        // Relaxed: a statistic.
        self.live.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes of address space reserved (not memory in use). Any thread.
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Stacks handed out and not yet released. Any thread.
    pub(crate) fn live_stacks(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Bytes of stack memory resident in RAM: the touched pages of every
    /// slot carved so far (handed out or free; a free slot's pages were
    /// released, so they count only once touched again), as `mincore`
    /// reports them. One system call per region, made without the mutex,
    /// but the kernel walks every page of the carved span and we count a
    /// byte per page: O(carved address space), tens of milliseconds for
    /// 100,000 default stacks. Hence not part of `Metrics`. Any thread.
    pub(crate) fn resident_bytes(&self) -> usize {
        let spans: Vec<(usize, usize)> = self
            .lock()
            .values()
            .flat_map(|class| class.regions.iter().map(Region::carved_span))
            .collect();
        let page = page_size();
        let mut pages = Vec::new();
        let mut resident = 0;
        for (start, len) in spans {
            pages.clear();
            pages.resize(len.div_ceil(page), 0u8);
            // SAFETY: `[start, start + len)` lies inside a region's mapping,
            // which stays mapped as long as this allocator lives (regions are
            // unmapped only when it drops); `pages` has one byte per page.
            let ret = unsafe { libc::mincore(start as *mut libc::c_void, len, pages.as_mut_ptr()) };
            if ret == 0 {
                resident += pages.iter().filter(|&&p| p & 1 != 0).count() * page;
            }
        }
        resident
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<usize, SizeClass>> {
        // Nothing panics while the lock is held with the map half updated,
        // so a poisoned map is still consistent.
        self.classes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::guard;
    use super::*;
    use std::collections::HashSet;

    /// Lines of /proc/self/maps (kernel mappings) that overlap `span`.
    fn mappings_over(span: Range<usize>) -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .expect("read /proc/self/maps")
            .lines()
            .filter_map(|line| {
                let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
                Some(usize::from_str_radix(lo, 16).ok()?..usize::from_str_radix(hi, 16).ok()?)
            })
            .filter(|m| m.start < span.end && span.start < m.end)
            .count()
    }

    #[test]
    fn round_trip() {
        let a = StackAllocator::new();
        let s = a.alloc(64 * 1024).unwrap();
        assert_eq!(s.size(), 64 * 1024);
        assert_eq!(s.top() % 16, 0);
        assert_eq!(s.top() - s.lo(), s.size());
        assert_eq!(s.guard(), s.lo() - page_size()..s.lo());
        assert_eq!(a.live_stacks(), 1);
        assert!(a.reserved_bytes() >= 64 * 1024 + page_size());
        // The whole usable range is writable.
        // SAFETY: [lo, top) is this stack's usable memory and nobody runs on it.
        unsafe {
            std::ptr::write_bytes(s.lo() as *mut u8, 0xAB, s.size());
        }
        a.release(s);
        assert_eq!(a.live_stacks(), 0);
    }

    #[test]
    fn resident_bytes_follow_touched_and_released_pages() {
        let a = StackAllocator::new();
        let page = page_size();
        let s = a.alloc(64 * 1024).unwrap();
        assert_eq!(a.resident_bytes(), 0);
        // SAFETY: the top four pages of a stack nobody runs on.
        unsafe { std::ptr::write_bytes((s.top() - 4 * page) as *mut u8, 1, 4 * page) };
        // At least: with transparent huge pages always on, a fault may
        // bring in more.
        assert!(a.resident_bytes() >= 4 * page);
        a.release(s);
        assert_eq!(a.resident_bytes(), 0);
    }

    #[test]
    fn release_many_zeroes_every_stack_and_keeps_the_guards() {
        let a = StackAllocator::new();
        let stacks: Vec<Stack> = (0..40).map(|_| a.alloc(16 * 1024).unwrap()).collect();
        let tops: Vec<usize> = stacks.iter().map(Stack::top).collect();
        for s in &stacks {
            // SAFETY: the top word of a stack nobody runs on.
            unsafe { ((s.top() - 8) as *mut u64).write(0xDEAD) };
        }
        // Released in scrambled order: the allocator sorts and coalesces.
        let mut scrambled = stacks;
        scrambled.reverse();
        scrambled.swap(3, 17);
        a.release_many(scrambled);
        assert_eq!(a.live_stacks(), 0);
        let again: Vec<Stack> = (0..40).map(|_| a.alloc(16 * 1024).unwrap()).collect();
        for s in &again {
            assert!(tops.contains(&s.top()), "slots are reused");
            // SAFETY: as above.
            let top_word = unsafe { ((s.top() - 8) as *const u64).read() };
            assert_eq!(top_word, 0, "released pages read as zero");
        }
    }

    #[test]
    fn sizes_are_rounded_and_bad_sizes_rejected() {
        let a = StackAllocator::new();
        let s = a.alloc(1000).unwrap();
        assert_eq!(s.size(), page_size());
        a.release(s);
        for bad in [0, usize::MAX, usize::MAX / 2, MAX_STACK_SIZE + 1] {
            let err = a.alloc(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(a.live_stacks(), 0);
    }

    #[test]
    fn released_slot_is_reused_and_zeroed() {
        let a = StackAllocator::new();
        let s = a.alloc(32 * 1024).unwrap();
        let (lo, top) = (s.lo(), s.top());
        // SAFETY: both words are inside the stack's usable range; nobody
        // runs on it.
        unsafe {
            ((top - 8) as *mut u64).write_volatile(0xDEAD_BEEF);
            (lo as *mut u64).write_volatile(0xFEED);
        }
        a.release(s);
        let t = a.alloc(32 * 1024).unwrap();
        assert_eq!((t.lo(), t.top()), (lo, top), "LIFO reuse of the slot");
        // SAFETY: as above, for the reused stack.
        let (high, low) = unsafe {
            (
                ((top - 8) as *const u64).read_volatile(),
                (lo as *const u64).read_volatile(),
            )
        };
        assert_eq!((high, low), (0, 0), "released pages must read back as zero");
        a.release(t);
    }

    #[test]
    fn lower_addresses_first_and_classes_are_separate() {
        let a = StackAllocator::new();
        let s1 = a.alloc(16 * 1024).unwrap();
        let s2 = a.alloc(16 * 1024).unwrap();
        assert!(s1.lo() < s2.lo());
        // Adjacent slots: s2's guard sits right above s1's top.
        assert_eq!(s2.guard().start, s1.top());
        let big = a.alloc(128 * 1024).unwrap();
        assert_eq!(big.size(), 128 * 1024);
        a.release(s1);
        a.release(big);
        // A freed 128 KiB slot must not satisfy a 16 KiB request.
        let s3 = a.alloc(16 * 1024).unwrap();
        assert_eq!(s3.size(), 16 * 1024);
        a.release(s2);
        a.release(s3);
        assert_eq!(a.live_stacks(), 0);
    }

    #[test]
    fn concurrent_alloc_release_never_double_hands_out() {
        let a = StackAllocator::new();
        let live: Mutex<HashSet<usize>> = Mutex::new(HashSet::new());
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    for i in 0..2000 {
                        let s = a.alloc(16 * 1024).unwrap();
                        assert!(live.lock().unwrap().insert(s.lo()), "slot handed out twice");
                        mine.push(s);
                        if i % 3 == 0 {
                            let s = mine.swap_remove(i % mine.len());
                            assert!(live.lock().unwrap().remove(&s.lo()));
                            a.release(s);
                        }
                    }
                    for s in mine {
                        assert!(live.lock().unwrap().remove(&s.lo()));
                        a.release(s);
                    }
                });
            }
        });
        assert_eq!(a.live_stacks(), 0);
    }

    /// 100,000 guarded stacks must not cost a mapping each: with
    /// MADV_GUARD_INSTALL they are a few dozen regions, usually merged into
    /// one mapping by the kernel. Counts only the mappings over our stacks,
    /// so other tests mapping memory meanwhile can't disturb it.
    #[test]
    fn many_stacks_few_mappings() {
        let a = StackAllocator::new();
        if a.mode == GuardMode::Mprotect {
            eprintln!("skipped: no MADV_GUARD_INSTALL on this kernel");
            return;
        }
        const N: usize = 100_000;
        let stacks: Vec<Stack> = (0..N).map(|_| a.alloc(64 * 1024).unwrap()).collect();
        // Touching pages (one stack in a hundred, to keep RSS small) must
        // not split anything either.
        for s in stacks.iter().step_by(100) {
            // SAFETY: the word below the top is inside the usable range.
            unsafe { ((s.top() - 8) as *mut u64).write_volatile(1) };
        }
        assert_eq!(a.live_stacks(), N);
        assert!(a.reserved_bytes() >= N * (64 * 1024 + page_size()));
        let lo = stacks.iter().map(|s| s.guard().start).min().unwrap();
        let hi = stacks.iter().map(Stack::top).max().unwrap();
        let mappings = mappings_over(lo..hi);
        // One per region at most (26 here); other tests' mappings may land
        // between our regions, hence the slack.
        assert!(mappings < 100, "{N} stacks cover {mappings} mappings");
        for s in stacks {
            a.release(s);
        }
        assert_eq!(a.live_stacks(), 0);
    }

    /// The fallback for kernels before 6.13: guards still work, and running
    /// out of mapping budget is an error with a clear message, not a crash.
    #[test]
    fn mprotect_fallback_stops_at_the_mapping_budget() {
        let _serial = guard::MAPPING_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = guard::mprotect_vmas() + 2 * 10;
        let a = StackAllocator::with_guards(GuardMode::Mprotect, budget);
        let mut stacks = Vec::new();
        let err = loop {
            match a.alloc(16 * 1024) {
                Ok(s) => stacks.push(s),
                Err(e) => break e,
            }
            assert!(stacks.len() <= 10, "budget not enforced");
        };
        assert_eq!(stacks.len(), 10);
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let msg = err.to_string();
        assert!(
            msg.starts_with("stack mapping limit reached: vm.max_map_count="),
            "{msg}"
        );
        // Recycling needs no new guard, so it keeps working at the limit.
        let s = stacks.pop().unwrap();
        let lo = s.lo();
        a.release(s);
        let s = a.alloc(16 * 1024).unwrap();
        assert_eq!(s.lo(), lo);
        stacks.push(s);
        for s in stacks {
            a.release(s);
        }
        let used = guard::mprotect_vmas();
        drop(a);
        assert_eq!(guard::mprotect_vmas(), used - 2 * 10, "budget returned on unmap");
    }
}
