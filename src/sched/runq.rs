//! A P's local run queue: a bounded ring of goroutines plus a one-item
//! `runnext` slot, modelled on Go's `runqput`, `runqget`, `runqputslow`,
//! `runqgrab` and `runqsteal` in `runtime/proc.go`.
//!
//! # Roles
//!
//! Each queue has exactly one *owner*, the thread (M) currently holding the P.
//! Only the owner calls `push`, `pop` and `drain`, and only the owner of `dst`
//! may pass it to `steal_into`. Any number of *thieves* (other Ms) may call
//! `steal_into` on a queue concurrently with its owner. The owner role may move
//! to another thread (handoff, procresize, shutdown), but only through
//! synchronization that makes the old owner's operations happen-before the new
//! owner's; the scheduler's P handoff provides that. Breaking the single-owner
//! rule cannot cause undefined behaviour here (every shared word is an atomic),
//! but it can lose or duplicate items, so the scheduler must uphold it.
//!
//! # Fields and who writes them
//!
//! * `tail`: stored only by the owner, read by everyone.
//! * `head`: advanced only by compare-and-swap, by the owner (`pop`, overflow)
//!   and by thieves (steal). It is never stored plainly, so every write to it is
//!   a read-modify-write; the ordering argument below relies on that.
//! * `slots`: written only by the owner, and only at index `tail` while
//!   `tail - head < CAPACITY`; read by any consumer for indices in
//!   `[head, tail)`. Item number `i` lives in slot `i % CAPACITY`.
//! * `runnext`: set to a goroutine only by the owner; emptied by CAS by the
//!   owner (`pop`) or a thief (steal with `steal_runnext`).
//!
//! The invariant is `head <= tail <= head + CAPACITY`, and the queued items
//! are exactly the indices in `[head, tail)` plus `runnext` if non-null.
//!
//! # Index width and ABA
//!
//! `head` and `tail` are 64-bit counters that only grow. At one operation per
//! nanosecond they would take five centuries to wrap, so a successful CAS on
//! `head` from `h` proves that no consumer took anything since `h` was read:
//! there is no ABA. Go uses 32-bit counters and accepts the tiny risk that a
//! thief stalled for 2^32 consumptions succeeds with a stale snapshot; on
//! x86_64 a 64-bit atomic costs the same, so we take the airtight argument.
//! tokio's packed "steal head / real head" design avoids speculative reads but
//! lets only one thief in at a time and makes `push` aware of in-progress
//! steals. We do not need it: slots are atomics, so a thief's speculative read
//! of a slot that the owner is reusing is harmless when its CAS then fails.
//!
//! # Memory ordering
//!
//! 1. Publication. The owner writes a slot and then stores `tail` with
//!    Release; a thief loads `tail` with Acquire before reading slots, so it
//!    sees the item and everything the owner did to the goroutine before
//!    queueing it. `runnext` works the same way: the owner's Release swap pairs
//!    with a thief's Acquire CAS.
//! 2. Slot reuse. A consumer reads its slots before its Release CAS on `head`;
//!    the owner loads `head` with Acquire before overwriting a slot. Since all
//!    writes to `head` are read-modify-writes, each Release CAS heads a release
//!    sequence that contains every later write, so the owner's Acquire load
//!    synchronizes with every consumer that moved `head` up to the value it
//!    read. Their reads therefore happen-before the overwrite and cannot
//!    observe it.
//! 3. Snapshots. Thieves load `head` and then `tail`, both with Acquire. Every
//!    CAS on `head` is Release and is done by a thread that had already seen a
//!    `tail` at least as large as the new head, so the thief sees `tail >= head`.
//!    The snapshot can still be stale (the queue may have moved between the two
//!    loads, making `tail - head` exceed the capacity); the thief then retries,
//!    and its CAS rejects anything else.
//!
//! The owner reads its own `tail` with Relaxed, and `pop` reads `head` with
//! Relaxed too: coherence keeps that load at or past whatever `head` the last
//! `push` saw, so slot `head` still holds item `head` (the owner has not yet
//! reused it), and if a thief got there first the CAS fails.
//!
//! # Differences from Go
//!
//! * Before stealing `runnext` from a running P, Go sleeps about 3µs so that a
//!   goroutine that has just readied another and is about to block gets to run
//!   it. That needs the victim's status, which this module does not know; the
//!   caller decides when to pass `steal_runnext` (Go only does so on the last
//!   steal round) and can back off first.
//! * `steal_into` limits the grab to the room in `dst` instead of assuming
//!   `dst` is empty, and never writes the goroutine it returns into `dst`.
//! * On overflow, the batch goes to a caller-supplied callback (which links it
//!   into the global queue under its own lock) instead of `globrunqputbatch`,
//!   and is not shuffled.
//!
//! # Thread safety
//!
//! Items are raw pointers: the queue never dereferences them, it only hands
//! each one to exactly one consumer together with a happens-before edge from
//! the producer. `RunQueue<T>` is therefore `Send + Sync` for every `T` (as its
//! atomic fields already make it); whoever dereferences an item is responsible
//! for the goroutine it points to being safe to use on that thread.

#[cfg(gort_loom)]
use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicPtr, AtomicU64},
};
use std::iter::Copied;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
#[cfg(not(gort_loom))]
use std::{
    hint::spin_loop,
    sync::atomic::{AtomicPtr, AtomicU64},
};

/// Go's size. Under loom a tiny ring lets small models reach wraparound and
/// overflow.
#[cfg(not(gort_loom))]
const CAP: usize = 256;
#[cfg(gort_loom)]
const CAP: usize = 4;

const HALF: usize = CAP / 2;
const CAP_U64: u64 = CAP as u64;
const HALF_U64: u64 = HALF as u64;

// Slot lookup masks the index, and the overflow path moves exactly half.
const _: () = assert!(CAP.is_power_of_two() && CAP >= 2);

/// 128 rather than 64 bytes because Intel's adjacent-line prefetcher pulls
/// cache lines in pairs.
#[repr(align(128))]
struct Padded<T>(T);

/// A P's local run queue; see the module documentation for the protocol.
pub(crate) struct RunQueue<T> {
    head: Padded<AtomicU64>,
    tail: Padded<AtomicU64>,
    runnext: Padded<AtomicPtr<T>>,
    slots: [AtomicPtr<T>; CAP],
}

/// The oldest half of a full ring followed by the goroutine whose `push`
/// overflowed, in FIFO order, lent to the overflow callback.
pub(crate) struct Batch<'a, T> {
    items: Copied<slice::Iter<'a, NonNull<T>>>,
}

impl<T> Iterator for Batch<'_, T> {
    type Item = NonNull<T>;

    fn next(&mut self) -> Option<NonNull<T>> {
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl<T> ExactSizeIterator for Batch<'_, T> {}

/// Converts a pointer read from a slot or `runnext` whose claim has succeeded.
/// Only non-null pointers are ever queued, so null here means the protocol is
/// broken; better to stop than to hand out a null goroutine.
fn claimed<T>(p: *mut T) -> NonNull<T> {
    NonNull::new(p).expect("run queue claimed an empty slot")
}

impl<T> RunQueue<T> {
    pub(crate) const CAPACITY: usize = CAP;

    pub(crate) fn new() -> Self {
        Self {
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            runnext: Padded(AtomicPtr::new(ptr::null_mut())),
            slots: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn slot(&self, index: u64) -> &AtomicPtr<T> {
        // Truncating to usize on a narrower target would still keep the low
        // bits, which are all the mask needs.
        &self.slots[index as usize & (CAP - 1)]
    }

    /// Owner only. Queues `g` at the tail, or, if `next`, makes it `runnext`
    /// and queues the goroutine it displaces at the tail instead.
    ///
    /// If the ring is full, the oldest half of it plus the goroutine being
    /// queued are handed to `overflow` in one batch, meant for the global
    /// queue; `overflow` is called at most once. The batch is built on the
    /// stack (about 1 KiB), so no allocation happens here.
    ///
    /// Returns whether something went into the ring (or overflowed), as
    /// opposed to only filling an empty `runnext`.
    pub(crate) fn push(&self, g: NonNull<T>, next: bool, overflow: impl FnOnce(Batch<'_, T>)) -> bool {
        let mut g = g;
        if next {
            // Release: pairs with the Acquire CAS in `steal_into`, so a thief
            // that takes `g` from runnext sees it fully prepared.
            let old = self.runnext.0.swap(g.as_ptr(), Release);
            match NonNull::new(old) {
                None => return false,
                Some(old) => g = old,
            }
        }
        let batch = loop {
            // Acquire: pairs with the Release CAS on `head` of every consumer
            // that moved it to `h` (ordering point 2), so their reads of the
            // slot we may now reuse are over.
            let h = self.head.0.load(Acquire);
            let t = self.tail.0.load(Relaxed);
            if t - h < CAP_U64 {
                self.slot(t).store(g.as_ptr(), Relaxed);
                // Release: pairs with the Acquire `tail` loads in `steal_into`
                // and `is_empty` (ordering point 1).
                self.tail.0.store(t + 1, Release);
                return true;
            }
            debug_assert_eq!(t - h, CAP_U64, "run queue holds more than its capacity");
            if let Some(batch) = self.claim_overflow(g, h) {
                break batch;
            }
            // A thief took something between our load and CAS: there is room
            // now.
        };
        overflow(Batch {
            items: batch.iter().copied(),
        });
        true
    }

    /// Takes the oldest half of a full ring (whose head was `h`) for the
    /// global queue, with `g` appended. Fails if a thief moved `head` first.
    #[cold]
    fn claim_overflow(&self, g: NonNull<T>, h: u64) -> Option<[NonNull<T>; HALF + 1]> {
        // Release: pairs with the Acquire `head` loads of thieves and
        // `is_empty`, keeping their snapshots at `tail >= head` (ordering
        // point 3).
        self.head.0.compare_exchange(h, h + HALF_U64, Release, Relaxed).ok()?;
        // Reading after the CAS is fine for the owner: only the owner writes
        // slots, and it will not until this batch is copied out.
        let mut batch = [g; HALF + 1];
        for (index, item) in (h..).zip(&mut batch[..HALF]) {
            *item = claimed(self.slot(index).load(Relaxed));
        }
        Some(batch)
    }

    /// Owner only. Takes `runnext` if set, else the oldest queued goroutine.
    /// The flag is true when the goroutine came from `runnext` and so should
    /// inherit the current time slice.
    pub(crate) fn pop(&self) -> Option<(NonNull<T>, bool)> {
        let next = self.runnext.0.load(Relaxed);
        // Release: pairs with the Acquire `runnext` load in `is_empty`, so an
        // observer that sees runnext emptied by us also sees the `tail` of any
        // push that moved the old runnext into the ring.
        if !next.is_null()
            && self
                .runnext
                .0
                .compare_exchange(next, ptr::null_mut(), Release, Relaxed)
                .is_ok()
        {
            return Some((claimed(next), true));
        }
        loop {
            let h = self.head.0.load(Relaxed);
            let t = self.tail.0.load(Relaxed);
            if h == t {
                return None;
            }
            let g = self.slot(h).load(Relaxed);
            // Release: pairs with the Acquire `head` loads of thieves and
            // `is_empty` (ordering point 3).
            if self.head.0.compare_exchange(h, h + 1, Release, Relaxed).is_ok() {
                return Some((claimed(g), false));
            }
        }
    }

    /// Any thread. Moves about half of this queue's goroutines into `dst`,
    /// which the caller must own, and returns the newest of those taken for
    /// the caller to run at once; the others are published in `dst` in FIFO
    /// order. The grab is limited to what fits in `dst` plus the returned one.
    ///
    /// If the ring is empty and `runnext` names what the caller saw in the
    /// victim's `runnext` (`peek_runnext`), takes it instead if it is still
    /// there; see the module documentation on why there is no back-off here.
    pub(crate) fn steal_into(&self, dst: &RunQueue<T>, runnext: Option<NonNull<T>>) -> Option<NonNull<T>> {
        debug_assert!(!ptr::eq(self, dst), "a P cannot steal from itself");
        let dst_tail = dst.tail.0.load(Relaxed);
        // Acquire: pairs with the Release CAS on `dst.head` of `dst`'s
        // consumers, as in `push`: the slots we are about to fill are free.
        let dst_head = dst.head.0.load(Acquire);
        let room = CAP_U64 - (dst_tail - dst_head);
        loop {
            // Acquire: pairs with the Release CAS on `head` of other consumers
            // so that the `tail` loaded next is at least `h` (ordering point 3).
            let h = self.head.0.load(Acquire);
            // Acquire: pairs with the owner's Release store of `tail`, making
            // the slots below it visible (ordering point 1).
            let t = self.tail.0.load(Acquire);
            let queued = t.wrapping_sub(h);
            let half = queued - queued / 2;
            if half == 0 {
                // Only the goroutine the caller saw there: one that has
                // replaced it since is a newer partner of the goroutine
                // running on the owner, about to run there (Go's rule too).
                let seen = runnext?;
                // Acquire: pairs with the owner's Release swap in `push`.
                return self
                    .runnext
                    .0
                    .compare_exchange(seen.as_ptr(), ptr::null_mut(), Acquire, Relaxed)
                    .is_ok()
                    .then_some(seen);
            }
            if half > HALF_U64 {
                // `head` moved on between our two loads.
                spin_loop();
                continue;
            }
            let n = half.min(room + 1);
            // Copy speculatively: after a successful CAS the owner may reuse
            // these slots at once. Slots of `dst` beyond its tail are invisible
            // to its consumers until we publish, and rewritten on a retry.
            for i in 0..n - 1 {
                let g = self.slot(h + i).load(Relaxed);
                dst.slot(dst_tail + i).store(g, Relaxed);
            }
            let last = self.slot(h + n - 1).load(Relaxed);
            // Release: pairs with the owner's Acquire `head` load in `push`
            // (ordering point 2) and with other thieves' Acquire loads
            // (ordering point 3).
            if self.head.0.compare_exchange(h, h + n, Release, Relaxed).is_ok() {
                if n > 1 {
                    // Release: pairs with the Acquire `tail` loads of `dst`'s
                    // thieves, which may pass these on again.
                    dst.tail.0.store(dst_tail + n - 1, Release);
                }
                return Some(claimed(last));
            }
        }
    }

    /// Owner only. Takes `runnext`, leaving the ring alone.
    pub(crate) fn take_runnext(&self) -> Option<NonNull<T>> {
        // Acquire: pairs with the Release swap in `push` (the owner's own,
        // or one a thief's failed CAS raced with).
        NonNull::new(self.runnext.0.swap(ptr::null_mut(), Acquire))
    }

    /// What `runnext` holds now. Any thread; a hint for `steal_into`.
    pub(crate) fn peek_runnext(&self) -> Option<NonNull<T>> {
        NonNull::new(self.runnext.0.load(Relaxed))
    }

    /// Any thread, approximate: goroutines queued, `runnext` included.
    pub(crate) fn len(&self) -> usize {
        let h = self.head.0.load(Relaxed);
        let t = self.tail.0.load(Relaxed);
        // Relaxed loads may be mutually stale; clamp rather than report
        // nonsense.
        let ring = t.saturating_sub(h).min(CAP_U64) as usize;
        ring + usize::from(!self.runnext.0.load(Relaxed).is_null())
    }

    /// Any thread. True only if the queue was seen empty in one consistent
    /// snapshot. Go's `runqempty` makes the same effort: reading `head ==
    /// tail` and then a null `runnext` is not enough, because in between a
    /// `push(_, true)` may have moved the old runnext into the ring and a
    /// `pop` may have emptied runnext. Re-reading `tail` detects that.
    ///
    /// This does not order an earlier store by the caller before these loads;
    /// a caller playing a Dekker-style handshake with `push` (a spinning M
    /// giving up) needs its own SeqCst fence, as Go gets from its
    /// sequentially consistent atomics.
    pub(crate) fn is_empty(&self) -> bool {
        loop {
            // Acquire: pairs with the Release CAS on `head` so that `tail`
            // below is at least `h` (ordering point 3).
            let h = self.head.0.load(Acquire);
            // Acquire: pairs with the owner's Release `tail` stores; mainly
            // keeps the `runnext` load from moving before this one.
            let t = self.tail.0.load(Acquire);
            // Acquire: pairs with the Release CAS in `pop`: if we see runnext
            // emptied by the owner, the re-read of `tail` sees any push that
            // preceded that pop.
            let next = self.runnext.0.load(Acquire);
            if self.tail.0.load(Relaxed) == t {
                return h == t && next.is_null();
            }
        }
    }

    /// Owner only, or any thread once the owner is stopped (the P is being
    /// retired, or the scheduler is shutting down): hands every queued
    /// goroutine to `f`, `runnext` first. Thieves may still race with this.
    pub(crate) fn drain(&self, mut f: impl FnMut(NonNull<T>)) {
        while let Some((g, _)) = self.pop() {
            f(g);
        }
    }
}

#[cfg(all(test, not(gort_loom)))]
mod tests {
    use super::{Batch, RunQueue};
    use std::ptr::{self, NonNull};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
    use std::thread;

    const CAP: usize = RunQueue::<u8>::CAPACITY;
    const HALF: usize = CAP / 2;

    // Never dereferenced, so a bare (non-zero) address is a fine identity.
    fn item(id: usize) -> NonNull<u8> {
        NonNull::new(ptr::without_provenance_mut(id + 1)).unwrap()
    }

    fn id(p: NonNull<u8>) -> usize {
        p.as_ptr().addr() - 1
    }

    fn no_overflow(_: Batch<'_, u8>) {
        panic!("unexpected overflow");
    }

    fn pop_id(q: &RunQueue<u8>) -> Option<(usize, bool)> {
        q.pop().map(|(p, inherit)| (id(p), inherit))
    }

    fn drain_ids(q: &RunQueue<u8>) -> Vec<usize> {
        let mut ids = Vec::new();
        q.drain(|p| ids.push(id(p)));
        ids
    }

    #[test]
    fn fifo() {
        let q = RunQueue::new();
        assert!(q.is_empty());
        for i in 1..=10 {
            q.push(item(i), false, no_overflow);
        }
        assert_eq!(q.len(), 10);
        for i in 1..=10 {
            assert_eq!(pop_id(&q), Some((i, false)));
        }
        assert_eq!(pop_id(&q), None);
        assert!(q.is_empty());
    }

    #[test]
    fn runnext_first_and_kick_out() {
        let q = RunQueue::new();
        q.push(item(1), false, no_overflow);
        q.push(item(2), true, no_overflow);
        assert!(!q.is_empty());
        assert_eq!(q.len(), 2);
        // 2 displaces itself from runnext; 3 takes its place.
        q.push(item(3), true, no_overflow);
        assert_eq!(q.len(), 3);
        assert_eq!(pop_id(&q), Some((3, true)));
        assert_eq!(pop_id(&q), Some((1, false)));
        assert_eq!(pop_id(&q), Some((2, false)));
        assert_eq!(pop_id(&q), None);
    }

    #[test]
    fn overflow_moves_half_plus_one_in_order() {
        let q = RunQueue::new();
        for i in 0..CAP {
            q.push(item(i), false, no_overflow);
        }
        let mut calls = 0;
        q.push(item(CAP), false, |batch| {
            calls += 1;
            assert_eq!(batch.len(), HALF + 1);
            let got: Vec<usize> = batch.map(id).collect();
            let want: Vec<usize> = (0..HALF).chain([CAP]).collect();
            assert_eq!(got, want);
        });
        assert_eq!(calls, 1);
        assert_eq!(q.len(), CAP - HALF);
        assert_eq!(drain_ids(&q), (HALF..CAP).collect::<Vec<_>>());
    }

    #[test]
    fn overflow_from_runnext_kick_out() {
        let q = RunQueue::new();
        for i in 0..CAP {
            q.push(item(i), false, no_overflow);
        }
        q.push(item(1000), true, no_overflow);
        let mut spilled = Vec::new();
        q.push(item(1001), true, |batch| spilled.extend(batch.map(id)));
        let want: Vec<usize> = (0..HALF).chain([1000]).collect();
        assert_eq!(spilled, want);
        assert_eq!(pop_id(&q), Some((1001, true)));
        assert_eq!(drain_ids(&q), (HALF..CAP).collect::<Vec<_>>());
    }

    #[test]
    fn ring_wraps_many_times() {
        let q = RunQueue::new();
        for i in 0..CAP - 1 {
            q.push(item(i), false, no_overflow);
        }
        // Nearly full, so every slot is reused each lap.
        for i in CAP - 1..20 * CAP {
            q.push(item(i), false, no_overflow);
            assert_eq!(pop_id(&q), Some((i + 1 - CAP, false)));
        }
        assert_eq!(q.len(), CAP - 1);
    }

    #[test]
    fn steal_takes_half_and_returns_newest() {
        let victim = RunQueue::new();
        let dst = RunQueue::new();
        for i in 0..10 {
            victim.push(item(i), false, no_overflow);
        }
        victim.push(item(99), true, no_overflow);
        assert_eq!(victim.steal_into(&dst, victim.peek_runnext()).map(id), Some(4));
        assert_eq!(drain_ids(&dst), vec![0, 1, 2, 3]);
        // runnext is left alone while the ring has work.
        assert_eq!(drain_ids(&victim), vec![99, 5, 6, 7, 8, 9]);

        victim.push(item(7), false, no_overflow);
        assert_eq!(victim.steal_into(&dst, None).map(id), Some(7));
        assert!(dst.is_empty() && victim.is_empty());
    }

    #[test]
    fn steal_runnext_only_when_asked() {
        let victim = RunQueue::new();
        let dst = RunQueue::new();
        assert_eq!(victim.steal_into(&dst, victim.peek_runnext()), None);
        victim.push(item(5), true, no_overflow);
        assert_eq!(victim.steal_into(&dst, None), None);
        assert_eq!(victim.steal_into(&dst, victim.peek_runnext()).map(id), Some(5));
        assert!(victim.is_empty() && dst.is_empty());
    }

    #[test]
    fn steal_limited_by_room_in_dst() {
        let victim = RunQueue::new();
        let dst = RunQueue::new();
        for i in 0..CAP {
            victim.push(item(i), false, no_overflow);
        }
        for i in 0..CAP - 2 {
            dst.push(item(1000 + i), false, no_overflow);
        }
        // Two free slots in dst, plus the one handed back.
        assert_eq!(victim.steal_into(&dst, None).map(id), Some(2));
        assert_eq!(victim.len(), CAP - 3);
        let got = drain_ids(&dst);
        assert_eq!(got[CAP - 2..], [0, 1]);
        // A full dst still lets the thief take one to run.
        for i in 0..CAP {
            dst.push(item(2000 + i), false, no_overflow);
        }
        assert_eq!(victim.steal_into(&dst, None).map(id), Some(3));
        assert_eq!(dst.len(), CAP);
    }

    #[test]
    fn stress_owner_and_two_thieves() {
        const N: usize = 1_000_000;
        let queues: [RunQueue<u64>; 3] = std::array::from_fn(|_| RunQueue::new());
        let [owner_q, q1, q2] = &queues;
        let consumed = AtomicUsize::new(0);
        let spilled: Mutex<Vec<usize>> = Mutex::new(Vec::new());

        // Reads through the pointer in the consuming thread so that a missing
        // happens-before edge shows up under a race detector; records the
        // address so the main thread can free each box once, after checking.
        let consume = |p: NonNull<u64>, seen: &mut Vec<(u64, usize)>| {
            // SAFETY: the box was leaked by the owner before being queued and
            // is freed only after all threads are joined; duplicates, if the
            // queue had a bug, would only read it twice.
            let value = unsafe { *p.as_ptr() };
            seen.push((value, p.as_ptr().expose_provenance()));
            consumed.fetch_add(1, Relaxed);
        };
        let thief = |mine: &RunQueue<u64>, other: &RunQueue<u64>| {
            let mut seen = Vec::new();
            let mut round = 0u32;
            loop {
                round = round.wrapping_add(1);
                if let Some((p, _)) = mine.pop() {
                    consume(p, &mut seen);
                    continue;
                }
                let stolen = owner_q
                    .steal_into(mine, owner_q.peek_runnext().filter(|_| round.is_multiple_of(4)))
                    .or_else(|| other.steal_into(mine, other.peek_runnext()));
                match stolen {
                    Some(p) => consume(p, &mut seen),
                    None if consumed.load(Relaxed) == N => return seen,
                    None => thread::yield_now(),
                }
            }
        };

        let seen: Vec<(u64, usize)> = thread::scope(|s| {
            let t1 = s.spawn(|| thief(q1, q2));
            let t2 = s.spawn(|| thief(q2, q1));
            let mut seen = Vec::new();
            for i in 0..N as u64 {
                let g = NonNull::from(Box::leak(Box::new(i)));
                owner_q.push(g, i.is_multiple_of(5), |batch| {
                    consumed.fetch_add(batch.len(), Relaxed);
                    let mut spilled = spilled.lock().unwrap();
                    spilled.extend(batch.map(|p| p.as_ptr().expose_provenance()));
                });
                if i.is_multiple_of(3)
                    && let Some((p, _)) = owner_q.pop()
                {
                    consume(p, &mut seen);
                }
            }
            owner_q.drain(|p| consume(p, &mut seen));
            seen.extend(t1.join().unwrap());
            seen.extend(t2.join().unwrap());
            seen
        });

        let spilled = spilled.into_inner().unwrap();
        let mut all = seen;
        all.extend(spilled.iter().map(|&addr| {
            // SAFETY: overflowed boxes are still alive (freed below).
            let value = unsafe { *ptr::with_exposed_provenance::<u64>(addr) };
            (value, addr)
        }));
        let counts: Vec<AtomicU8> = (0..N).map(|_| AtomicU8::new(0)).collect();
        for &(value, _) in &all {
            counts[value as usize].fetch_add(1, Relaxed);
        }
        let wrong = counts.iter().position(|c| c.load(Relaxed) != 1);
        assert_eq!(wrong, None, "an item was lost or delivered twice");
        assert!(!spilled.is_empty(), "the overflow path was not exercised");
        for (_, addr) in all {
            // SAFETY: each address came from `Box::leak` and, as just
            // checked, appears exactly once.
            drop(unsafe { Box::from_raw(ptr::with_exposed_provenance_mut::<u64>(addr)) });
        }
    }
}

#[cfg(all(test, gort_loom))]
mod loom_tests {
    use super::{Batch, HALF, RunQueue};
    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Mutex};
    use loom::thread;
    use std::ptr::{self, NonNull};

    /// The id lives in a loom cell, so loom reports a consumer that reads it
    /// without a happens-before edge from the owner that created it.
    struct Item(UnsafeCell<usize>);

    /// (id, address) of each delivery.
    type Seen = Vec<(usize, usize)>;

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound.get_or_insert(3);
        builder.check(f);
    }

    fn make(id: usize) -> NonNull<Item> {
        NonNull::from(Box::leak(Box::new(Item(UnsafeCell::new(id)))))
    }

    fn record(p: NonNull<Item>, seen: &mut Seen) {
        // SAFETY: items are freed only by `check_exactly_once`, after every
        // thread is joined, and nobody writes to them after creation.
        let item = unsafe { p.as_ref() };
        // SAFETY: the cell is only ever read; loom checks the read is ordered
        // after the cell's creation.
        let id = item.0.with(|v| unsafe { *v });
        seen.push((id, p.as_ptr().expose_provenance()));
    }

    fn no_overflow(_: Batch<'_, Item>) {
        panic!("unexpected overflow");
    }

    fn check_exactly_once(mut seen: Seen, n: usize) {
        seen.sort_unstable();
        let ids: Vec<usize> = seen.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, (1..=n).collect::<Vec<_>>());
        for (_, addr) in seen {
            // SAFETY: each address came from `Box::leak` in `make` and, as
            // just checked, appears exactly once.
            drop(unsafe { Box::from_raw(ptr::with_exposed_provenance_mut::<Item>(addr)) });
        }
    }

    /// A thief that steals once into its own queue, then runs what it got.
    fn spawn_thief(victim: &Arc<RunQueue<Item>>, steal_runnext: bool) -> thread::JoinHandle<Seen> {
        let victim = victim.clone();
        thread::spawn(move || {
            let mine = RunQueue::new();
            let mut seen = Vec::new();
            if let Some(p) = victim.steal_into(&mine, victim.peek_runnext().filter(|_| steal_runnext)) {
                record(p, &mut seen);
            }
            mine.drain(|p| record(p, &mut seen));
            seen
        })
    }

    #[test]
    fn push_pop_race_one_thief() {
        model(|| {
            let q = Arc::new(RunQueue::new());
            let thief = spawn_thief(&q, false);
            let mut seen = Vec::new();
            for id in 1..=3 {
                q.push(make(id), false, no_overflow);
            }
            if let Some((p, _)) = q.pop() {
                record(p, &mut seen);
            }
            // Items 4 and 5 reuse the slots of 1 and 2.
            for id in 4..=5 {
                q.push(make(id), false, no_overflow);
            }
            q.drain(|p| record(p, &mut seen));
            seen.extend(thief.join().unwrap());
            check_exactly_once(seen, 5);
        });
    }

    #[test]
    fn overflow_races_thief() {
        model(|| {
            let q = Arc::new(RunQueue::new());
            let global = Arc::new(Mutex::new(Vec::new()));
            let thief = spawn_thief(&q, false);
            let mut seen = Vec::new();
            for id in 1..=RunQueue::<Item>::CAPACITY + 1 {
                q.push(make(id), false, |batch| {
                    assert_eq!(batch.len(), HALF + 1);
                    let mut global = global.lock().unwrap();
                    let start = global.len();
                    batch.for_each(|p| record(p, &mut global));
                    let ids: Vec<usize> = global[start..].iter().map(|&(id, _)| id).collect();
                    assert!(ids.is_sorted(), "overflow batch out of order: {ids:?}");
                    assert_eq!(ids.last(), Some(&id));
                });
            }
            q.drain(|p| record(p, &mut seen));
            seen.extend(thief.join().unwrap());
            seen.extend(global.lock().unwrap().drain(..));
            check_exactly_once(seen, RunQueue::<Item>::CAPACITY + 1);
        });
    }

    #[test]
    fn stolen_items_stolen_again() {
        model(|| {
            let q = Arc::new(RunQueue::new());
            let middle = Arc::new(RunQueue::new());
            // Takes from `middle` while the first thief is still filling it,
            // checking that `steal_into` publishes what it moved.
            let second = spawn_thief(&middle, false);
            let first = {
                let (q, middle) = (q.clone(), middle.clone());
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    if let Some(p) = q.steal_into(&middle, None) {
                        record(p, &mut seen);
                    }
                    middle.drain(|p| record(p, &mut seen));
                    seen
                })
            };
            let mut seen = Vec::new();
            for id in 1..=RunQueue::<Item>::CAPACITY {
                q.push(make(id), false, no_overflow);
            }
            q.drain(|p| record(p, &mut seen));
            seen.extend(first.join().unwrap());
            seen.extend(second.join().unwrap());
            check_exactly_once(seen, RunQueue::<Item>::CAPACITY);
        });
    }

    #[test]
    fn runnext_stolen_or_popped() {
        model(|| {
            let q = Arc::new(RunQueue::new());
            let thief = spawn_thief(&q, true);
            let mut seen = Vec::new();
            q.push(make(1), true, no_overflow);
            // Kicks 1 into the ring.
            q.push(make(2), true, no_overflow);
            if let Some((p, _)) = q.pop() {
                record(p, &mut seen);
            }
            q.drain(|p| record(p, &mut seen));
            seen.extend(thief.join().unwrap());
            check_exactly_once(seen, 2);
        });
    }
}
