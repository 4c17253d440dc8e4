//! The lists kept under `Sched::lock`, linked through the Gs and Ms they
//! hold (Go's `gQueue` and `muintptr` lists through `schedlink`).
//!
//! Nothing may allocate under `Sched::lock` (the rule is in `sched/mod.rs`:
//! a goroutine stopped by a preemption signal inside the program's
//! allocator may hold the allocator's lock, and the runtime must be able to
//! queue it and hand its M a P without ever waiting for that lock). A
//! `VecDeque` or `Vec` grows by allocating when it is full, so the global
//! run queue and the idle M list are intrusive: a G or M carries the link
//! to the next one in its own `schedlink`, which only the holder of
//! `Sched::lock` reads or writes while the object is on a list. An object
//! is on at most one of these lists at a time (a queued G is owned by the
//! queue; an idle M sleeps in `stopm`).

use super::g::GPtr;
use super::m::MPtr;

/// The global run queue: FIFO of Gs, linked through `G::schedlink`.
#[derive(Default)]
pub(crate) struct GQueue {
    head: Option<GPtr>,
    tail: Option<GPtr>,
    len: usize,
    /// How many of them are locked to an M (`G::lockedm`, which does not
    /// change while the queue owns the G): `take_first_locked` walks the
    /// queue only when there is one to find.
    locked: usize,
    /// Set at shutdown (under `Sched::lock`, with the flag): nothing runs
    /// from the queue any more, and a goroutine that runs on P-less after
    /// the shutdown may still have an entry in it, which a second push
    /// would corrupt; so pushes are dropped (`Sched::abandon_unstarted`
    /// finds unstarted goroutines through `allgs`, not the queue).
    closed: bool,
}

// SAFETY: a GQueue lives inside `Sched::lock`; the Gs it links are owned by
// it while queued, and GPtr is Send.
unsafe impl Send for GQueue {}

impl GQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push_back(&mut self, g: GPtr) {
        if self.closed {
            return;
        }
        debug_assert!(self.tail != Some(g) && g.schedlink.get().is_none(), "a G queued twice");
        self.locked += usize::from(g.lockedm.get().is_some());
        g.schedlink.set(None);
        match self.tail {
            Some(tail) => tail.schedlink.set(Some(g)),
            None => self.head = Some(g),
        }
        self.tail = Some(g);
        self.len += 1;
    }

    /// Stop taking Gs (shutdown).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether the G at the head is locked to an M.
    pub(crate) fn front_is_locked(&self) -> bool {
        self.head.is_some_and(|g| g.lockedm.get().is_some())
    }

    pub(crate) fn pop_front(&mut self) -> Option<GPtr> {
        let g = self.head?;
        self.head = g.schedlink.take();
        if self.head.is_none() {
            self.tail = None;
        }
        self.len -= 1;
        self.locked -= usize::from(g.lockedm.get().is_some());
        Some(g)
    }

    /// Unlink and return the first G locked to an M. A walk, taken only on
    /// the rare path that needs it (`Sched::startm` with no idle M) and
    /// only when there is such a G.
    pub(crate) fn take_first_locked(&mut self) -> Option<GPtr> {
        if self.locked == 0 {
            return None;
        }
        self.unlink_first(|g| g.lockedm.get().is_some())
    }

    /// Unlink `g` if it is queued; returns whether it was. A walk, for a
    /// preempted goroutine taking itself back (`sleep_until_handed_p`).
    pub(crate) fn remove(&mut self, g: GPtr) -> bool {
        self.unlink_first(|queued| queued == g).is_some()
    }

    fn unlink_first(&mut self, pick: impl Fn(GPtr) -> bool) -> Option<GPtr> {
        let mut prev: Option<GPtr> = None;
        let mut at = self.head;
        while let Some(g) = at {
            let next = g.schedlink.get();
            if pick(g) {
                match prev {
                    Some(prev) => prev.schedlink.set(next),
                    None => self.head = next,
                }
                if self.tail == Some(g) {
                    self.tail = prev;
                }
                g.schedlink.set(None);
                self.len -= 1;
                self.locked -= usize::from(g.lockedm.get().is_some());
                return Some(g);
            }
            prev = Some(g);
            at = next;
        }
        None
    }
}

impl Extend<GPtr> for GQueue {
    fn extend<I: IntoIterator<Item = GPtr>>(&mut self, gs: I) {
        for g in gs {
            self.push_back(g);
        }
    }
}

/// The idle M list: LIFO of Ms asleep in `stopm`, linked through
/// `M::schedlink`.
#[derive(Default)]
pub(crate) struct MStack {
    top: Option<MPtr>,
    len: usize,
}

// SAFETY: as for GQueue: an MStack lives inside `Sched::lock`, and an M on
// it sleeps until whoever takes it off wakes it.
unsafe impl Send for MStack {}

impl MStack {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, m: MPtr) {
        m.get().schedlink.set(self.top);
        self.top = Some(m);
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<MPtr> {
        let m = self.top?;
        self.top = m.get().schedlink.take();
        self.len -= 1;
        Some(m)
    }

    /// Unlink `m` if it is on the list; returns whether it was.
    pub(crate) fn remove(&mut self, m: MPtr) -> bool {
        let mut prev: Option<MPtr> = None;
        let mut at = self.top;
        while let Some(cur) = at {
            let next = cur.get().schedlink.get();
            if cur == m {
                match prev {
                    Some(prev) => prev.get().schedlink.set(next),
                    None => self.top = next,
                }
                cur.get().schedlink.set(None);
                self.len -= 1;
                return true;
            }
            prev = Some(cur);
            at = next;
        }
        false
    }

    pub(crate) fn clear(&mut self) {
        while self.pop().is_some() {}
    }
}
