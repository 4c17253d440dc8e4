//! The network poller: goroutines wait for sockets here (Go's netpoll.go
//! and netpoll_epoll.go).
//!
//! # Design
//!
//! One epoll instance per runtime, created when its first socket is
//! registered. Every socket is registered once, edge-triggered, for both
//! directions, with a *poll descriptor* (`PollDesc`) as its event data. A
//! descriptor has a read slot and a write slot (`slot.rs`): `READY` when an
//! edge arrived that nobody consumed, or the `WaitToken` of the one
//! goroutine (or plain thread) waiting for that direction.
//!
//! An I/O operation (`net/fd.rs`) tries its system call first; only on
//! `EAGAIN` does it wait here: consume a pending edge and retry, or install
//! its token and park. The poller counts each edge per direction and then
//! fires the slots named by the event, which wakes their waiters through
//! the token — so a deadline (a timer claiming the same token) and an edge
//! can race, and exactly one of them ends the wait. The counts tell a
//! caller whether its `EAGAIN` (or short read) is older than the last edge
//! (`net/fd.rs`).
//!
//! Who polls (the scheduler side is `sched/poll.rs`): an M that finds no
//! work anywhere blocks in `epoll_wait` until the earliest timer, as the
//! runtime's one *sleeper*; an M running goroutines polls without blocking
//! at its periodic global-queue check when nobody has for `OVERDUE`. A
//! doorbell eventfd breaks the blocking poll (an earlier timer, shutdown).
//! It is level-triggered and only a blocking poll drains it: a quick poll
//! that happens to see a ring leaves it for the sleeper it was meant for.
//!
//! # Descriptor lifetime
//!
//! An event can be in flight in another M's result buffer after its socket
//! was closed, so descriptors are never freed while the poller lives: a
//! closed socket's descriptor goes to a free list and is reused. A stale
//! event for a reused descriptor marks it `READY` and counts an edge,
//! which costs its new owner a system call that fails with `EAGAIN`; a
//! stale hang-up ends the short-read shortcut (`net/fd.rs`) for that
//! socket — harmless, so no generation number is kept. A socket is
//! deregistered from epoll before its fd is closed (field order in
//! `net/fd.rs`), so a reused fd number is never deregistered by mistake.
//!
//! # Closing
//!
//! `Registration::close` (Go's `pollDesc.evict`) marks the descriptor
//! closing and fires both slots: a goroutine blocked on the socket wakes and
//! fails with "use of closed network connection"; the fd itself is released
//! only when its last user is gone, so no read ever reaches a reused fd.

mod slot;

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::os::{Epoll, Event, EventFd, INTEREST, READABLE, SHORT_READS_UNRELIABLE, WRITABLE, empty_event};
use crate::sched::{Sched, TIMED_OUT, WaitReason, WaitToken, current_m, lock, timers};
use slot::Slot;

/// Event data of the doorbell (descriptors are addresses, never 0).
const DOORBELL: u64 = 0;
/// Events taken per `epoll_wait`.
const EVENTS_PER_POLL: usize = 128;
/// Descriptors allocated at once.
const PD_CHUNK: usize = 64;
/// A poll this old makes a busy M poll (Go's sysmon uses 10 ms too).
pub(crate) const OVERDUE: Duration = Duration::from_millis(10);

/// The direction an operation waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Read,
    Write,
}

struct PollDesc {
    closing: AtomicBool,
    /// An event with `SHORT_READS_UNRELIABLE` bits was seen (an end of
    /// stream, an error, urgent data): a short read no longer shows that
    /// nothing is queued, so reads are always tried (`NetFd::read_stream`).
    /// Never cleared while registered.
    short_reads_unreliable: AtomicBool,
    /// Events dispatched so far per direction (wrapping), each counted
    /// before it fires its slot: a system call that found nothing to do at
    /// count N (an `EAGAIN`, a short read) still holds while the count is N
    /// (`NetFd::io_from`).
    read_edges: AtomicU32,
    write_edges: AtomicU32,
    read: Slot,
    write: Slot,
}

impl PollDesc {
    fn new() -> PollDesc {
        PollDesc {
            closing: AtomicBool::new(false),
            short_reads_unreliable: AtomicBool::new(false),
            read_edges: AtomicU32::new(0),
            write_edges: AtomicU32::new(0),
            read: Slot::new(),
            write: Slot::new(),
        }
    }

    fn slot(&self, dir: Direction) -> &Slot {
        match dir {
            Direction::Read => &self.read,
            Direction::Write => &self.write,
        }
    }

    fn edges(&self, dir: Direction) -> &AtomicU32 {
        match dir {
            Direction::Read => &self.read_edges,
            Direction::Write => &self.write_edges,
        }
    }
}

#[derive(Default)]
struct PdCache {
    free: Vec<NonNull<PollDesc>>,
    chunks: Vec<Box<[PollDesc]>>,
}

// SAFETY: the pointers name descriptors inside `chunks`, which this cache
// owns; PollDesc is Sync (atomics only).
unsafe impl Send for PdCache {}

/// One runtime's epoll instance and its poll descriptors.
pub(crate) struct Poller {
    epoll: Epoll,
    doorbell: EventFd,
    /// The doorbell was rung and the ring not yet seen: ring once.
    ringing: AtomicBool,
    pds: Mutex<PdCache>,
    /// Sockets registered now: whether an idle M should poll at all. Go
    /// counts parked waiters instead (`netpollWaiters`), which costs two
    /// read-modify-writes of this shared line per wait, from every M; a
    /// count of sockets changes only with `register` and its drop. An idle
    /// M that sleeps in the poll because some socket exists that nobody
    /// waits on costs nothing more than sleeping on its futex note.
    sockets: AtomicUsize,
    /// `timers::nanotime` of the last poll; 0 while an M is blocked in one.
    last_poll: AtomicU64,
    /// Polls made, and waiters their events woke (`Metrics`).
    polls: AtomicU64,
    wakeups: AtomicU64,
    shut_down: AtomicBool,
    sched: Weak<Sched>,
}

impl Poller {
    pub(crate) fn new(sched: Weak<Sched>) -> io::Result<Poller> {
        let epoll = Epoll::new()?;
        let doorbell = EventFd::new()?;
        // Level-triggered: the doorbell stays readable until drained, so a
        // ring is seen by the next poll whenever it comes.
        epoll.add(doorbell.raw(), libc::EPOLLIN as u32, DOORBELL)?;
        Ok(Poller {
            epoll,
            doorbell,
            ringing: AtomicBool::new(false),
            pds: Mutex::new(PdCache::default()),
            sockets: AtomicUsize::new(0),
            last_poll: AtomicU64::new(timers::nanotime().max(1)),
            polls: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            sched,
        })
    }

    /// Watch `fd` (non-blocking) for readiness.
    pub(crate) fn register(self: &Arc<Self>, fd: RawFd) -> io::Result<Registration> {
        let pd = {
            let mut cache = lock(&self.pds);
            if cache.free.is_empty() {
                let chunk: Box<[PollDesc]> = (0..PD_CHUNK).map(|_| PollDesc::new()).collect();
                cache.free.extend(chunk.iter().map(NonNull::from));
                cache.chunks.push(chunk);
            }
            cache.free.pop().expect("just refilled")
        };
        // SAFETY: descriptors live as long as the poller (module header).
        let desc = unsafe { pd.as_ref() };
        desc.closing.store(false, Ordering::Relaxed);
        desc.short_reads_unreliable.store(false, Ordering::Relaxed);
        desc.read.reset();
        desc.write.reset();
        // SeqCst: see `Registration::wait`'s thread waiters.
        self.sockets.fetch_add(1, Ordering::SeqCst);
        let reg = Registration {
            poller: Arc::clone(self),
            pd,
            fd,
        };
        // On failure `reg`'s drop returns the descriptor and the count (its
        // epoll delete fails harmlessly with ENOENT).
        self.epoll.add(fd, INTEREST, pd.as_ptr() as u64)?;
        Ok(reg)
    }

    /// Whether some socket is registered, so that someone may wait for it.
    pub(crate) fn has_sockets(&self) -> bool {
        self.sockets.load(Ordering::SeqCst) > 0
    }

    /// Whether an M is blocked in `epoll_wait` right now.
    pub(crate) fn is_blocked(&self) -> bool {
        self.last_poll.load(Ordering::SeqCst) == 0
    }

    /// Whether nobody has polled for `OVERDUE`.
    pub(crate) fn is_overdue(&self, now: u64) -> bool {
        let last = self.last_poll.load(Ordering::Relaxed);
        last != 0 && now.saturating_sub(last) > OVERDUE.as_nanos() as u64
    }

    /// Poll once, waiting at most `timeout` (None: until an event or the
    /// doorbell), and wake the waiters of every ready descriptor. The caller
    /// collects the goroutines made ready (`sched/poll.rs`).
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            // SeqCst: a thread waiter registers, then reads this to decide
            // whether it must start an M to poll (`Registration::wait`).
            self.last_poll.store(0, Ordering::SeqCst);
        }
        let mut events = [empty_event(); EVENTS_PER_POLL];
        let n = self.epoll.wait(&mut events, timeout);
        let now = timers::nanotime().max(1);
        if blocking {
            self.last_poll.store(now, Ordering::SeqCst);
        } else {
            // A quick poll made while the sleeper is blocked in one leaves
            // its mark (0) alone: `is_blocked` would otherwise say no, and
            // busy Ms and thread waiters would poll and wake Ms for nothing
            // until the sleeper's poll returned.
            let _ = self
                .last_poll
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| (last != 0).then_some(now));
        }
        let woken: u64 = events[..n].iter().map(|ev| self.dispatch(ev, blocking)).sum();
        self.polls.fetch_add(1, Ordering::Relaxed);
        if woken > 0 {
            self.wakeups.fetch_add(woken, Ordering::Relaxed);
        }
    }

    /// (Polls made, waiters woken by their events) so far. Any thread.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.polls.load(Ordering::Relaxed), self.wakeups.load(Ordering::Relaxed))
    }

    /// Handle one event of a poll (`blocking` or not); returns how many
    /// waiters it woke.
    fn dispatch(&self, ev: &Event, blocking: bool) -> u64 {
        let (bits, data) = (ev.events, ev.u64);
        if data == DOORBELL {
            // A ring is for the sleeper, which may be about to block: a quick
            // poll that drained it would leave it asleep with work waiting.
            if blocking {
                self.doorbell.drain();
                self.ringing.store(false, Ordering::Release);
            }
            return 0;
        }
        // SAFETY: non-doorbell data is the address of a descriptor of this
        // poller, alive as long as the poller (module header).
        let pd = unsafe { &*(data as *const PollDesc) };
        // Both before firing, so a reader woken by this edge sees them.
        if bits & SHORT_READS_UNRELIABLE != 0 {
            pd.short_reads_unreliable.store(true, Ordering::Relaxed);
        }
        let mut woken = 0;
        for (bit, dir) in [(READABLE, Direction::Read), (WRITABLE, Direction::Write)] {
            if bits & bit != 0 {
                // SeqCst: ordered before the fire below, against a waiter's
                // count load then slot check (`NetFd::io_from`).
                pd.edges(dir).fetch_add(1, Ordering::SeqCst);
                if fire(pd.slot(dir)) {
                    woken += 1;
                }
            }
        }
        woken
    }

    /// End a blocking poll early, if one is in progress (Go's
    /// `netpollBreak`). Any thread.
    pub(crate) fn wake_blocked(&self) {
        // Ring once per poll: further rings would only make more syscalls.
        if !self.ringing.swap(true, Ordering::AcqRel) {
            self.doorbell.ring();
        }
    }

    /// The runtime is shutting down: fail every current and future wait.
    pub(crate) fn shut_down(&self) {
        // SeqCst: ordered with the waiters' register-then-check, as closing is.
        self.shut_down.store(true, Ordering::SeqCst);
        // Fired outside the cache lock: waking takes scheduler locks.
        let all: Vec<NonNull<PollDesc>> = {
            let cache = lock(&self.pds);
            cache.chunks.iter().flat_map(|c| c.iter().map(NonNull::from)).collect()
        };
        for pd in all {
            // SAFETY: descriptors live as long as the poller.
            let pd = unsafe { pd.as_ref() };
            fire(&pd.read);
            fire(&pd.write);
        }
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Called by a waiter once registered: if its thread will not poll for
    /// it (a thread, or another runtime's goroutine), make sure an M of
    /// ours will. An M that goes idle after this sees the socket (counted
    /// since `register`) and polls.
    fn ensure_polled(&self) {
        if !self.polled_by_caller()
            && !self.is_blocked()
            && let Some(sched) = self.sched.upgrade()
        {
            sched.wakep();
        }
    }

    /// Whether the running goroutine belongs to this poller's runtime (so
    /// its M will poll when it goes idle).
    fn polled_by_caller(&self) -> bool {
        current_m().is_some_and(|m| m.curg.get().is_some() && std::ptr::eq(Arc::as_ptr(&m.sched), self.sched.as_ptr()))
    }
}

/// Fire `slot` and wake the waiter it held; returns whether one woke
/// (its deadline may have claimed it first).
fn fire(slot: &Slot) -> bool {
    let Some(w) = slot.fire() else { return false };
    // SAFETY: a slot holds the address of an `Arc<WaitToken>` whose
    // reference it owns (`slot.rs`); `fire` moved it to us.
    let token = unsafe { Arc::from_raw(w as *const WaitToken) };
    match WaitToken::claim(token, 0) {
        Some(claim) => {
            claim.done();
            true
        }
        None => false,
    }
}

/// A socket's membership in a poller; dropping it deregisters the fd
/// (before the fd is closed: see the module header).
pub(crate) struct Registration {
    poller: Arc<Poller>,
    pd: NonNull<PollDesc>,
    fd: RawFd,
}

// SAFETY: the descriptor is atomics only and outlives the registration
// (the poller it belongs to is kept alive by `poller`).
unsafe impl Send for Registration {}
// SAFETY: as above.
unsafe impl Sync for Registration {}

/// The error of an operation on a closed socket (Go's `ErrNetClosing`).
pub(crate) fn closed_error() -> io::Error {
    crate::net::ErrClosed::closed()
}

/// The error of an operation whose deadline passed (Go's `os.ErrDeadlineExceeded`).
pub(crate) fn timeout_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")
}

impl Registration {
    /// Register `fd` with the current runtime's poller (the caller's
    /// runtime, else the default one).
    pub(crate) fn new(fd: RawFd) -> io::Result<Registration> {
        crate::runtime::with_current(|sched| sched.poller()?.register(fd))
    }

    fn pd(&self) -> &PollDesc {
        // SAFETY: the descriptor lives as long as `self.poller`.
        unsafe { self.pd.as_ref() }
    }

    /// Wait until `dir` may be ready again after an `EAGAIN`, or until
    /// `deadline`. `Ok` means "retry the system call". Callers serialise
    /// waits per direction (one waiter per slot).
    #[track_caller]
    pub(crate) fn wait(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        let pd = self.pd();
        let slot = pd.slot(dir);
        self.check_open()?;
        if slot.take_ready() {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timeout_error());
        }
        let token = WaitToken::lend();
        let raw = Arc::into_raw(Arc::clone(&token)) as usize;
        if slot.register(raw).is_err() {
            // SAFETY: not installed, so the reference is still ours.
            drop(unsafe { Arc::from_raw(raw as *const WaitToken) });
            return Ok(());
        }
        let poller = &self.poller;
        poller.ensure_polled();
        // SeqCst load after the SeqCst install: `close` stores the flag and
        // then fires, so either we see the flag or it sees our token.
        let tag = if (pd.closing.load(Ordering::SeqCst) || poller.is_shut_down()) && slot.withdraw(raw) {
            // SAFETY: withdrawn, so the reference is ours again.
            drop(unsafe { Arc::from_raw(raw as *const WaitToken) });
            0
        } else {
            token.wait(deadline, WaitReason::IoWait)
        };
        if tag == TIMED_OUT {
            if slot.withdraw(raw) {
                // SAFETY: withdrawn, so the reference is ours again.
                drop(unsafe { Arc::from_raw(raw as *const WaitToken) });
            }
            self.check_open()?;
            return Err(timeout_error());
        }
        // Woken by an edge: consume it, since the retry will see its data.
        slot.take_ready();
        self.check_open()
    }

    /// Wait until one of `waits` (sockets and directions) sees an edge,
    /// `deadline` passes, or `ready` — asked once the waiter is registered
    /// on every slot, so that readiness from before is not missed — says
    /// there is something to do already (`poll`/`select` on a goroutine,
    /// `hook/poll.rs`). `Ok(true)`: the deadline ended the wait. The caller
    /// holds every (socket, direction)'s one-waiter lock, and names each
    /// pair once. A pending edge ends the wait at once (it may be stale:
    /// the caller checks readiness itself and waits again).
    #[cfg(feature = "hook-io")]
    #[track_caller]
    pub(crate) fn wait_any(
        waits: &[(&Registration, Direction)],
        deadline: Option<Instant>,
        ready: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        let token = WaitToken::lend();
        let raw = Arc::as_ptr(&token) as usize;
        let mut stop = false;
        for (reg, dir) in waits {
            reg.check_open()?;
            let clone = Arc::into_raw(Arc::clone(&token)) as usize;
            if reg.pd().slot(*dir).register(clone).is_err() {
                // SAFETY: not installed, so the reference is still ours.
                drop(unsafe { Arc::from_raw(clone as *const WaitToken) });
                stop = true;
            }
            reg.poller.ensure_polled();
        }
        // SeqCst loads after the SeqCst installs, as in `wait`.
        stop = stop
            || waits
                .iter()
                .any(|(reg, _)| reg.pd().closing.load(Ordering::SeqCst) || reg.poller.is_shut_down())
            || ready();
        let tag = if stop {
            0
        } else {
            token.wait(deadline, WaitReason::IoWait)
        };
        for (reg, dir) in waits {
            if reg.pd().slot(*dir).withdraw(raw) {
                // SAFETY: withdrawn, so that reference is ours again.
                drop(unsafe { Arc::from_raw(raw as *const WaitToken) });
            }
        }
        for (reg, _) in waits {
            reg.check_open()?;
        }
        Ok(tag == TIMED_OUT)
    }

    fn check_open(&self) -> io::Result<()> {
        if self.pd().closing.load(Ordering::SeqCst) {
            return Err(closed_error());
        }
        if self.poller.is_shut_down() {
            return Err(crate::net::ErrClosed::runtime_gone());
        }
        Ok(())
    }

    /// Mark the socket closed and wake whoever waits on it (Go's `evict`).
    pub(crate) fn close(&self) {
        let pd = self.pd();
        // SeqCst: see `wait`.
        pd.closing.store(true, Ordering::SeqCst);
        fire(&pd.read);
        fire(&pd.write);
    }

    /// Wake the waiter of `dir`, if any, as an edge would: it retries its
    /// call and waits again (a deadline moved: `net/fd.rs`). With nobody
    /// waiting, the slot is left ready, which costs the next wait one
    /// system call.
    pub(crate) fn poke(&self, dir: Direction) {
        fire(self.pd().slot(dir));
    }

    /// Whether a short read may have left bytes queued (an end of stream,
    /// an error or urgent data was seen).
    pub(crate) fn short_reads_unreliable(&self) -> bool {
        self.pd().short_reads_unreliable.load(Ordering::Relaxed)
    }

    /// Edges of `dir` dispatched so far (wrapping).
    pub(crate) fn edges(&self, dir: Direction) -> u32 {
        self.pd().edges(dir).load(Ordering::SeqCst)
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.pd().closing.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Nobody can be waiting: waiters borrow the registration. A failure
        // (the fd was already closed by its owner) leaves nothing registered.
        let _ = self.poller.epoll.delete(self.fd);
        lock(&self.poller.pds).free.push(self.pd);
        self.poller.sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quick poll made while another thread is blocked in the poll does
    /// not hide that thread from `is_blocked`.
    #[test]
    fn a_quick_poll_leaves_a_blocked_poll_marked() {
        let poller = Arc::new(Poller::new(Weak::new()).unwrap());
        assert!(!poller.is_blocked());
        let blocked = {
            let poller = Arc::clone(&poller);
            std::thread::spawn(move || poller.poll(None))
        };
        while !poller.is_blocked() {
            std::thread::yield_now();
        }
        poller.poll(Some(Duration::ZERO));
        assert!(poller.is_blocked());
        poller.wake_blocked();
        blocked.join().unwrap();
        assert!(!poller.is_blocked());
    }

    /// A ring meant for the sleeper survives a quick poll made between the
    /// ring and the sleeper's blocking poll.
    #[test]
    fn a_quick_poll_leaves_the_doorbell_to_the_sleeper() {
        let poller = Poller::new(Weak::new()).unwrap();
        poller.wake_blocked();
        poller.poll(Some(Duration::ZERO));
        let mut events = [empty_event(); 4];
        let n = poller.epoll.wait(&mut events, Some(Duration::ZERO));
        assert!(events[..n].iter().any(|ev| ev.u64 == DOORBELL), "the ring was drained");
        // The sleeper's poll takes it, and a later quick poll sees nothing.
        poller.poll(Some(Duration::from_secs(60)));
        assert_eq!(poller.epoll.wait(&mut events, Some(Duration::ZERO)), 0);
    }
}
