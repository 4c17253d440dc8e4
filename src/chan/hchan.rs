//! The channel itself (Go's `hchan` in runtime/chan.go): a buffer, two wait
//! queues of sudogs, and one lock over all of it.
//!
//! # Layout
//!
//! `Chan<T>` is shared by every `Sender` and `Receiver` through one `Arc`.
//! Its `lock` is a runtime lock (`sched/lock.rs`: spins long before it
//! sleeps, since holders are running Ms with tiny critical sections — with
//! std's mutex, chan_mpmc spent a third of its time in futex calls) and the
//! guarded data sits beside it in an `UnsafeCell<State<T>>`: the lock is not
//! generic, so `select` can hold the locks of channels of different element
//! types at once (one guard each). `State` is touched only through `Chan::lock` (typed operations) or
//! by a `Port` method whose caller holds the lock (select).
//!
//! Guarded by `lock`: everything in `State` — the ring buffer `buf`, the
//! buffer slots `reserved` by a `Select` that will send later, the FIFO
//! queues `sendq`/`recvq` of parked operations, the flags `closed` and
//! `receivers_gone`, and `tasks`, the futures waiting (`tasks.rs`): the
//! wakers of receive futures and the values offered by send futures.
//! Lock-free: `cap` (immutable) and the handle counts `senders` /
//! `receivers`, which only decide who runs the disconnection.
//!
//! # Closing
//!
//! `closed` means no value will come any more: set by `Sender::close` or by
//! the last sender's drop, both `close` here (Go's `closechan`), once. From
//! then on sends fail (`target`), parked senders have been resumed with
//! their values, receivers drain the buffer and then get `Err`. The last
//! receiver's drop sets `receivers_gone` instead: sends fail, the buffer is
//! dropped.
//!
//! # Sudogs and the hand-off
//!
//! A parked operation is a `Sudog`: its waiter's `WaitToken` (shared by every
//! case of a select), its case index (the claim tag), and a pointer to its
//! value slot on the waiter's stack — an `Option<T>` holding the value for a
//! send, an `Option<Result<T, RecvError>>` to fill for a receive — or null for
//! a `Select` builder's send, which has no value yet (see `select.rs`).
//!
//! Whoever finds a sudog in a queue pops it and claims its token (a `Claim`).
//! A failed claim means the waiter is already taken — by another case of its
//! select, or by its deadline — and the sudog is dropped and the next one
//! tried. The winner then does the hand-off under the lock (write the value
//! into a receiver's slot, or take it from a sender's), releases the lock,
//! and calls `done`, which resumes the waiter. The slot pointer stays valid
//! until then because a claimed waiter cannot resume before `done`. A waiter
//! that wakes without having been dequeued (deadline, losing select cases)
//! withdraws its sudogs itself, under the lock.
//!
//! # Invariants (all under `lock`)
//!
//! - A live (unclaimed) value-carrying sender in `sendq` implies a full
//!   buffer: `buf.len() + reserved == cap`. So a receiver that frees a buffer
//!   slot admits the first live sender's value at the tail (Go's `recv` on a
//!   full buffered channel), and a receiver finding an empty buffer takes a
//!   waiting sender's value directly (an unbuffered channel).
//! - A live receiver in `recvq` implies an empty buffer and no offer; a
//!   sender serves the first live receiver before touching the buffer.
//! - An offer (a send future's value) implies a full buffer, as a parked
//!   sender does. Parked senders with a value and offers take turns when
//!   both wait (`offer_turn`); each kind is served in its own FIFO order.
//! - A receive future is registered only by a poll that found nothing to
//!   receive, under the lock of that look. Every event that makes one value
//!   available — a value buffered, a sender with its value parked, an offer
//!   made — wakes (and unregisters) the first registered one, after
//!   unlocking; `close` wakes them all. So a value that arrives after a
//!   future looked wakes a future, and one woken future that drops out
//!   passes the wake on (`tasks.rs`).
//! - Once `receivers_gone` is set, `sendq` and `buf` are empty and stay so;
//!   once `closed` is set, `sendq` and `recvq` are empty and stay so, and
//!   no receiver takes an offer. Every waiter that was queued has been
//!   claimed and resumed: senders keep their value (and get it back in the
//!   error), receivers get `Err(RecvError)`; every future has been woken
//!   (a send future takes its offer back when polled).
//!
//! The async side costs code that never uses it one branch per buffered
//! send (`notify_recv`: is any receive future registered?) and a test of
//! the empty offer queue on receives that find nothing else.
//!
//! Values of `T` are never dropped under the lock (a drop could run user
//! code that touches this channel again): disconnection moves the buffer out
//! and drops it after unlocking. Likewise wakers are cloned, woken and
//! dropped only outside it.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{self, Waker};
use std::time::{Duration, Instant};

use super::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError};
use super::select::{Poll, Port, Reservation};
use super::tasks::{Cancelled, Tasks};
use crate::sched::{Claim, RuntimeLock, RuntimeLockGuard, TIMED_OUT, WaitReason, WaitToken};

/// `cap` of an unbounded channel.
pub(super) const UNBOUNDED: usize = usize::MAX;

/// A receiver's slot: `None` until a sender (or the disconnection) fills it.
pub(super) type RecvSlot<T> = Option<Result<T, RecvError>>;

/// How long an operation may wait.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Not at all: try once.
    Never,
    /// Until this instant.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// Wait at most `d`; a `d` whose deadline is past the end of the clock
    /// means forever (`time` module header).
    pub fn timeout(d: Duration) -> Wait {
        match crate::sched::timers::deadline_after(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }

    /// `None`: give up now (`Never`, or a deadline already past); else the
    /// deadline to park with (`None` inside: no deadline).
    pub(super) fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Wait::Never => None,
            Wait::Until(t) => (Instant::now() < t).then_some(Some(t)),
            Wait::Forever => Some(None),
        }
    }
}

/// What a select case (or a plain operation) does on its channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Recv,
    /// A send whose value is in its slot (`send`, `select!`).
    Send,
    /// A send whose value comes after selection (`Select::send`); its sudog
    /// has a null slot.
    SendLater,
}

/// A parked operation (Go's `sudog`).
pub(super) struct Sudog {
    pub(super) token: Arc<WaitToken>,
    /// The claim tag: which case of the waiter's select this is.
    pub(super) case: usize,
    /// `*mut Option<T>` (send), `*mut RecvSlot<T>` (receive), or null
    /// (`Kind::SendLater`). Dereferenced only by the winner of `token`.
    pub(super) slot: *mut (),
}

impl Sudog {
    /// Claim this sudog's waiter for its case, with the waiter's slot;
    /// `None` if someone else already has.
    pub(super) fn claim(self) -> Option<(Claim, *mut ())> {
        let slot = self.slot;
        WaitToken::claim(self.token, self.case).map(|won| (won, slot))
    }
}

/// Whom an operation resumes once the lock is released.
pub(super) enum Peer {
    /// A parked goroutine or thread, claimed.
    Waiter(Claim),
    /// A future's task (`tasks.rs`): a receive future told a value is
    /// there, or a send future whose value was taken.
    Task(Waker),
}

/// Resume a peer, if there is one.
pub(super) fn wake(peer: Option<Peer>) {
    match peer {
        Some(Peer::Waiter(won)) => won.done(),
        Some(Peer::Task(w)) => w.wake(),
        None => {}
    }
}

/// Claim the first send sudog that carries its value (`carrying`), or the
/// first `Select::send` one (null slot, not `carrying`), dropping dead ones
/// of that kind on the way and leaving the other kind queued.
fn pop_live_send(q: &mut VecDeque<Sudog>, carrying: bool) -> Option<(Claim, *mut ())> {
    let mut i = 0;
    while i < q.len() {
        if q[i].slot.is_null() == carrying {
            i += 1;
            continue;
        }
        let sg = q.remove(i).expect("in bounds");
        if let Some(won) = sg.claim() {
            return Some(won);
        }
    }
    None
}

/// Pop sudogs until one can be claimed.
fn pop_live(q: &mut VecDeque<Sudog>) -> Option<(Claim, *mut ())> {
    while let Some(sg) = q.pop_front() {
        if let Some(won) = sg.claim() {
            return Some(won);
        }
    }
    None
}

/// Fill a claimed receiver's slot.
///
/// # Safety
/// `slot` is the `RecvSlot<T>` of a receive sudog of a `Chan<T>` whose token
/// the caller has won, and `done` has not been called yet.
unsafe fn deliver<T>(slot: *mut (), r: Result<T, RecvError>) {
    // SAFETY: by the contract the slot is alive (its waiter cannot resume
    // before `done`) and only the winner writes it. It holds `None`, or at
    // worst a result its owner never took (a `SelectedOperation` dropped
    // uncompleted); `write` leaks that rather than dropping it here, under
    // the lock.
    unsafe { slot.cast::<RecvSlot<T>>().write(Some(r)) }
}

/// Take a claimed sender's value.
///
/// # Safety
/// `slot` is the `Option<T>` of a value-carrying send sudog of a `Chan<T>`
/// whose token the caller has won, and `done` has not been called yet.
unsafe fn take_sent<T>(slot: *mut ()) -> T {
    // SAFETY: as in `deliver`.
    let v = unsafe { (*slot.cast::<Option<T>>()).take() };
    v.expect("a parked sender holds its value")
}

/// Laid out so that what every operation touches — the lock, `cap`, and the
/// start of `State` (buffer, `reserved`, flags) — shares one cache line, and
/// the wait queues, written only when someone parks, sit in the next one:
/// under contention fewer lines bounce between cores.
#[repr(C, align(64))]
pub(crate) struct Chan<T> {
    lock: RuntimeLock,
    cap: usize,
    state: UnsafeCell<State<T>>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

// SAFETY: `state` is accessed only under `lock`; the values it holds (and
// the ones moved through sudog slots) cross threads, hence `T: Send`.
unsafe impl<T: Send> Send for Chan<T> {}
// SAFETY: as above: all shared access to `state` is serialized by `lock`.
unsafe impl<T: Send> Sync for Chan<T> {}

#[repr(C)]
struct State<T> {
    buf: VecDeque<T>,
    /// Buffer slots promised to `Select` sends not completed yet.
    reserved: usize,
    /// No value will come any more: `close`, or the last sender dropped.
    closed: bool,
    receivers_gone: bool,
    /// An offer goes before the next parked sender (`take_waiting_value`).
    offer_turn: bool,
    sendq: VecDeque<Sudog>,
    recvq: VecDeque<Sudog>,
    /// Futures waiting (`tasks.rs`).
    tasks: Tasks<T>,
}

impl<T> State<T> {
    fn queue(&mut self, kind: Kind) -> &mut VecDeque<Sudog> {
        match kind {
            Kind::Recv => &mut self.recvq,
            Kind::Send | Kind::SendLater => &mut self.sendq,
        }
    }

    /// The next value a waiting sender has for a receiver, with that
    /// sender to resume: the first live parked sender's, or the oldest
    /// offer. When both kinds wait they take turns, so a stream of
    /// goroutines re-parking as fast as slots free cannot starve a send
    /// future, nor the reverse. Offers are left alone once the channel is
    /// closed (their futures take them back).
    fn take_waiting_value(&mut self) -> Option<(T, Peer)> {
        let offers = !self.closed && self.tasks.has_offers();
        if offers && self.offer_turn {
            self.offer_turn = false;
            return self.tasks.take_offer().map(|(v, w)| (v, Peer::Task(w)));
        }
        if let Some((won, slot)) = pop_live_send(&mut self.sendq, true) {
            if offers {
                self.offer_turn = true;
            }
            // SAFETY: a value-carrying send sudog of this channel, claimed
            // just now.
            return Some((unsafe { take_sent(slot) }, Peer::Waiter(won)));
        }
        if !offers {
            return None;
        }
        self.tasks.take_offer().map(|(v, w)| (v, Peer::Task(w)))
    }

    /// A value became available to receivers: the receive future to wake.
    #[inline]
    fn notify_recv(&mut self) -> Option<Peer> {
        if !self.tasks.has_recv() {
            return None;
        }
        self.tasks.notify_recv().map(Peer::Task)
    }
}

/// `State` with the lock held.
struct Locked<'a, T> {
    state: &'a mut State<T>,
    _guard: RuntimeLockGuard<'a>,
}

impl<T> Deref for Locked<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        self.state
    }
}

impl<T> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        self.state
    }
}

impl<T> Chan<T> {
    /// A channel with one sender and one receiver handle counted.
    pub(super) fn new(cap: usize) -> Chan<T> {
        Chan {
            lock: RuntimeLock::new(),
            cap,
            state: UnsafeCell::new(State {
                buf: VecDeque::new(),
                reserved: 0,
                closed: false,
                receivers_gone: false,
                offer_turn: false,
                sendq: VecDeque::new(),
                recvq: VecDeque::new(),
                tasks: Tasks::new(),
            }),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    fn lock(&self) -> Locked<'_, T> {
        let guard = self.lock.lock();
        // SAFETY: we hold `lock`, and the reference lives no longer than
        // the guard it is packaged with.
        let state = unsafe { &mut *self.state.get() };
        Locked { state, _guard: guard }
    }

    /// `None` for an unbounded channel.
    pub(super) fn capacity(&self) -> Option<usize> {
        Some(self.cap).filter(|&c| c != UNBOUNDED)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    /// Always true for `bounded(0)`, never for an unbounded channel.
    pub(super) fn is_full(&self) -> bool {
        self.len() >= self.cap
    }

    /// Where a send would go now (Go's `chansend` order: closed, a waiting
    /// receiver, buffer room). `None`: it would block.
    fn target(&self, st: &mut State<T>) -> Option<Reservation> {
        if st.receivers_gone || st.closed {
            return Some(Reservation::Disconnected);
        }
        if let Some((won, slot)) = pop_live(&mut st.recvq) {
            return Some(Reservation::Receiver(won, slot));
        }
        (st.buf.len() + st.reserved < self.cap).then_some(Reservation::Buffer)
    }

    /// Send without blocking; on success, the receiver to resume once the
    /// lock is released (a parked one that got the value, or a receive
    /// future told a value is buffered). `Timeout` means "would block".
    fn try_send_locked(&self, st: &mut State<T>, v: T) -> Result<Option<Peer>, SendTimeoutError<T>> {
        match self.target(st) {
            Some(Reservation::Receiver(won, slot)) => {
                // SAFETY: a receive sudog of this channel, claimed just now.
                unsafe { deliver(slot, Ok(v)) };
                Ok(Some(Peer::Waiter(won)))
            }
            Some(Reservation::Buffer) => {
                st.buf.push_back(v);
                Ok(st.notify_recv())
            }
            Some(Reservation::Disconnected) => Err(SendTimeoutError::Disconnected(v)),
            None => Err(SendTimeoutError::Timeout(v)),
        }
    }

    /// Receive without blocking (Go's `chanrecv` order: buffer, a waiting
    /// sender, closed). Returns the result (`None`: would block) and a
    /// sender to resume once the lock is released — the one whose value
    /// was taken or admitted to the buffer, or, when only `Select` sends
    /// wait, one of those woken to come back (it has no value to take).
    /// Parked senders and send futures' offers take turns
    /// (`take_waiting_value`).
    ///
    /// Senders with a value go first, ahead of `Select` sends queued
    /// earlier: a woken `Select` may pick another case, and a sender with a
    /// value left behind it would then wait beside a receiver or a free
    /// slot. A `Select` send is only woken, never admitted, so it loses no
    /// place it held.
    fn try_recv_locked(&self, st: &mut State<T>) -> (Option<Result<T, RecvError>>, Option<Peer>) {
        if let Some(v) = st.buf.pop_front() {
            return (Some(Ok(v)), self.admit(st));
        }
        if let Some((v, peer)) = st.take_waiting_value() {
            return (Some(Ok(v)), Some(peer));
        }
        match pop_live(&mut st.sendq) {
            Some((won, _)) => (None, Some(Peer::Waiter(won))),
            None if st.closed => (Some(Err(RecvError)), None),
            None => (None, None),
        }
    }

    /// A buffer slot was just freed: let a waiting sender's value in
    /// (`take_waiting_value`), else wake a `Select` send (see
    /// `try_recv_locked`).
    fn admit(&self, st: &mut State<T>) -> Option<Peer> {
        if let Some((v, peer)) = st.take_waiting_value() {
            st.buf.push_back(v);
            return Some(peer);
        }
        pop_live(&mut st.sendq).map(|(won, _)| Peer::Waiter(won))
    }

    /// `send`, `try_send`, `send_timeout`: one lock round trip on the fast
    /// path; otherwise park on `sendq` with the value in a slot on this stack.
    #[track_caller]
    pub(super) fn send(&self, v: T, wait: Wait) -> Result<(), SendTimeoutError<T>> {
        crate::sched::chaos_point();
        let mut st = self.lock();
        let v = match self.try_send_locked(&mut st, v) {
            Ok(won) => {
                drop(st);
                wake(won);
                return Ok(());
            }
            Err(SendTimeoutError::Timeout(v)) => v,
            Err(e) => return Err(e),
        };
        let Some(deadline) = wait.deadline() else {
            return Err(SendTimeoutError::Timeout(v));
        };
        let token = WaitToken::lend();
        let mut slot = Some(v);
        st.sendq.push_back(Sudog {
            token: Arc::clone(&token),
            case: 0,
            slot: (&raw mut slot).cast(),
        });
        // A receive future can take our value now.
        let task = st.notify_recv();
        drop(st);
        wake(task);
        let tag = token.wait(deadline, WaitReason::ChanSend);
        if tag == TIMED_OUT {
            self.withdraw(Kind::Send, &token, 0);
        }
        // Taken by a receiver, or still ours: time-out or disconnection.
        match slot.take() {
            None => Ok(()),
            Some(v) if tag == TIMED_OUT => Err(SendTimeoutError::Timeout(v)),
            Some(v) => Err(SendTimeoutError::Disconnected(v)),
        }
    }

    /// `recv`, `try_recv`, `recv_timeout`: like `send`, parking on `recvq`.
    #[track_caller]
    pub(super) fn recv(&self, wait: Wait) -> Result<T, RecvTimeoutError> {
        crate::sched::chaos_point();
        loop {
            let mut st = self.lock();
            let (got, won) = self.try_recv_locked(&mut st);
            let deadline = match got {
                Some(r) => {
                    drop(st);
                    wake(won);
                    return r.map_err(RecvTimeoutError::from);
                }
                None => wait.deadline(),
            };
            let Some(deadline) = deadline else {
                drop(st);
                wake(won);
                return Err(RecvTimeoutError::Timeout);
            };
            let token = WaitToken::lend();
            let mut slot: RecvSlot<T> = None;
            st.recvq.push_back(Sudog {
                token: Arc::clone(&token),
                case: 0,
                slot: (&raw mut slot).cast(),
            });
            drop(st);
            wake(won);
            if token.wait(deadline, WaitReason::ChanReceive) == TIMED_OUT {
                self.withdraw(Kind::Recv, &token, 0);
                return Err(RecvTimeoutError::Timeout);
            }
            if let Some(r) = slot {
                return r.map_err(RecvTimeoutError::from);
            }
            // Resumed with nothing: a `Select` that had reserved us for its
            // send was dropped without sending. Try again.
        }
    }

    /// Remove a waiter's sudog for `case` if no waker has dequeued it.
    pub(super) fn withdraw(&self, kind: Kind, token: &Arc<WaitToken>, case: usize) {
        let mut st = self.lock();
        let q = st.queue(kind);
        if let Some(i) = q.iter().position(|sg| sg.case == case && Arc::ptr_eq(&sg.token, token)) {
            q.remove(i);
        }
    }

    /// Complete a `Select` send with its value.
    pub(super) fn complete(&self, r: Reservation, v: T) -> Result<(), SendError<T>> {
        match r {
            Reservation::Disconnected => Err(SendError(v)),
            Reservation::Receiver(won, slot) => {
                // SAFETY: a receive sudog of this channel (the caller checked
                // the channel), claimed by the select and not resumed since.
                unsafe { deliver(slot, Ok(v)) };
                won.done();
                Ok(())
            }
            Reservation::Buffer => {
                let mut st = self.lock();
                st.reserved -= 1;
                // The slot just unreserved guarantees room, so this fails
                // only if every receiver has gone, or the channel was
                // closed, meanwhile.
                match self.try_send_locked(&mut st, v) {
                    Ok(won) => {
                        drop(st);
                        wake(won);
                        Ok(())
                    }
                    Err(e) => Err(SendError(e.into_inner())),
                }
            }
        }
    }

    pub(super) fn add_sender(&self) {
        // Relaxed: the new handle is made from a live one, as in `Arc::clone`.
        self.senders.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add_receiver(&self) {
        // Relaxed: as in `add_sender`.
        self.receivers.fetch_add(1, Ordering::Relaxed);
    }

    /// A `Sender` is dropped; the last one closes the channel.
    pub(super) fn release_sender(&self) {
        // AcqRel pairs with the other senders' decrements, as in Arc's drop:
        // the last one disconnects after every other sender is done.
        if self.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }

    /// Close the channel (Go's `closechan`): sends fail from now on, parked
    /// senders resume with their values (send futures take theirs back),
    /// parked receivers get `Err(RecvError)`, receive futures are all woken
    /// (the buffer is left to drain). False if it was closed already.
    pub(super) fn close(&self) -> bool {
        let (receivers, senders, recv_tasks, send_tasks) = {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            st.closed = true;
            (
                std::mem::take(&mut st.recvq),
                std::mem::take(&mut st.sendq),
                st.tasks.take_recv(),
                st.tasks.wake_offers(),
            )
        };
        for sg in receivers {
            if let Some((won, slot)) = sg.claim() {
                // SAFETY: a receive sudog of this channel, claimed just now.
                unsafe { deliver::<T>(slot, Err(RecvError)) };
                won.done();
            }
        }
        // Their values stay in their slots: `send` reports them back.
        for sg in senders {
            if let Some((won, _)) = sg.claim() {
                won.done();
            }
        }
        recv_tasks.into_iter().for_each(|(_, w)| w.wake());
        send_tasks.into_iter().for_each(Waker::wake);
        true
    }

    /// Whether the channel is closed (`close`, or every sender gone).
    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether a `Receiver` is left. Once false, false for good (a
    /// receiver is only ever cloned from a live one).
    /// Whether a receiver (a `recv`, or a `select` with a receive case) is
    /// parked here and nobody has claimed it yet.
    pub(super) fn receiver_waiting(&self) -> bool {
        self.lock().recvq.iter().any(|sg| !sg.token.is_claimed())
    }

    pub(super) fn has_receivers(&self) -> bool {
        self.receivers.load(Ordering::Relaxed) != 0
    }

    /// A `Receiver` is dropped; the last one wakes every parked sender with
    /// its value still in its slot, and drops what is buffered.
    pub(super) fn release_receiver(&self) {
        // AcqRel: as in `release_sender`.
        if self.receivers.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (waiters, buffered, send_tasks) = {
            let mut st = self.lock();
            st.receivers_gone = true;
            (
                std::mem::take(&mut st.sendq),
                std::mem::take(&mut st.buf),
                st.tasks.wake_offers(),
            )
        };
        for sg in waiters {
            if let Some((won, _)) = sg.claim() {
                won.done();
            }
        }
        // Send futures take their values back when polled.
        send_tasks.into_iter().for_each(Waker::wake);
        drop(buffered);
    }

    /// `RecvFut::poll`: receive now, or register the task under the same
    /// lock — so a value arriving after this look finds it registered and
    /// wakes it. `key` is the future's entry in `tasks` (`None`: never
    /// registered; reset once the future is done).
    pub(super) fn poll_recv(&self, key: &mut Option<u64>, waker: &Waker) -> task::Poll<Result<T, RecvError>> {
        // Cloned (and the replaced waker dropped) outside the lock: a
        // waker's code may use this channel.
        let new = waker.clone();
        let mut st = self.lock();
        let (got, peer) = self.try_recv_locked(&mut st);
        let (result, stale) = match got {
            Some(r) => (task::Poll::Ready(r), key.take().and_then(|k| st.tasks.done_recv(k))),
            None => (task::Poll::Pending, st.tasks.register_recv(key, new)),
        };
        drop(st);
        wake(peer);
        drop(stale);
        result
    }

    /// A `RecvFut` registered as `key` is dropped unfinished: a wake it got
    /// and did not use goes to the next receive future (`tasks.rs`).
    pub(super) fn cancel_recv(&self, key: u64) {
        let left = self.lock().tasks.cancel_recv(key);
        match left {
            Cancelled::Registered(w) => drop(w),
            Cancelled::HandOn(next) => next.into_iter().for_each(Waker::wake),
        }
    }

    /// A `SendFut`'s first poll: send now (`Ok`, with the outcome), or
    /// leave the value as an offer under the same lock (`Err`, the offer's
    /// key) and tell a receive future.
    pub(super) fn start_send(&self, v: T, waker: &Waker) -> Result<Result<(), SendError<T>>, u64> {
        // As in `poll_recv`.
        let new = waker.clone();
        let mut st = self.lock();
        let (outcome, peer) = match self.try_send_locked(&mut st, v) {
            Ok(peer) => (Ok(Ok(())), peer),
            Err(SendTimeoutError::Disconnected(v)) => (Ok(Err(SendError(v))), None),
            Err(SendTimeoutError::Timeout(v)) => {
                let key = st.tasks.key();
                st.tasks.offer(key, v, new);
                (Err(key), st.notify_recv())
            }
        };
        drop(st);
        wake(peer);
        outcome
    }

    /// A `SendFut` with an offer polled again: `Ok` if a receiver took the
    /// value, `Err` with it if the channel closed or lost its receivers
    /// first; else it waits on, with `waker`.
    pub(super) fn poll_offer(&self, key: u64, waker: &Waker) -> task::Poll<Result<(), SendError<T>>> {
        let new = waker.clone();
        let mut st = self.lock();
        if st.closed || st.receivers_gone {
            let back = st.tasks.withdraw_offer(key);
            drop(st);
            drop(new);
            return task::Poll::Ready(back.map_or(Ok(()), |(v, _)| Err(SendError(v))));
        }
        let renewed = st.tasks.renew_offer(key, new);
        drop(st);
        // The waker left over is dropped here, unlocked.
        match renewed {
            Ok(_replaced) => task::Poll::Pending,
            Err(_unused) => task::Poll::Ready(Ok(())),
        }
    }

    /// A `SendFut` with an offer is dropped: take the value back (dropped
    /// here, after unlocking) unless a receiver has it.
    pub(super) fn cancel_offer(&self, key: u64) {
        let back = self.lock().tasks.withdraw_offer(key);
        drop(back);
    }
}

impl<T> Port for Chan<T> {
    fn mutex(&self) -> &RuntimeLock {
        &self.lock
    }

    unsafe fn poll(&self, kind: Kind, slot: *mut ()) -> Poll {
        // SAFETY: the caller holds our lock (the trait's contract), and
        // this is the only reference to the state while we run.
        let st = unsafe { &mut *self.state.get() };
        match kind {
            Kind::Recv => match self.try_recv_locked(st) {
                (Some(r), won) => {
                    // SAFETY: the caller's own receive slot for this channel.
                    unsafe { deliver(slot, r) };
                    Poll::Ready(won)
                }
                (None, won) => Poll::Pending(won),
            },
            Kind::Send => {
                // SAFETY: the caller's own send slot for this channel,
                // holding the value.
                let slot = unsafe { &mut *slot.cast::<Option<T>>() };
                let v = slot.take().expect("a send case holds its value");
                match self.try_send_locked(st, v) {
                    Ok(won) => Poll::Ready(won),
                    Err(SendTimeoutError::Disconnected(v)) => {
                        *slot = Some(v);
                        Poll::Ready(None)
                    }
                    Err(SendTimeoutError::Timeout(v)) => {
                        *slot = Some(v);
                        Poll::Pending(None)
                    }
                }
            }
            Kind::SendLater => match self.target(st) {
                Some(Reservation::Buffer) => {
                    st.reserved += 1;
                    Poll::Reserved(Reservation::Buffer)
                }
                Some(r) => Poll::Reserved(r),
                None => Poll::Pending(None),
            },
        }
    }

    unsafe fn enqueue(&self, kind: Kind, sudog: Sudog) -> Option<Peer> {
        // SAFETY: as in `poll`.
        let st = unsafe { &mut *self.state.get() };
        st.queue(kind).push_back(sudog);
        // A receive future can take a parked `select!` send's value.
        if kind == Kind::Send { st.notify_recv() } else { None }
    }

    fn withdraw(&self, kind: Kind, token: &Arc<WaitToken>, case: usize) {
        Chan::withdraw(self, kind, token, case);
    }

    unsafe fn received(&self, slot: *mut ()) -> bool {
        // SAFETY: the caller's own receive slot for this channel, written
        // (if at all) by a waker that has called `done` since.
        unsafe { (*slot.cast::<RecvSlot<T>>()).is_some() }
    }

    fn unreserve(&self) {
        let mut st = self.lock();
        st.reserved -= 1;
        let won = self.admit(&mut st);
        drop(st);
        wake(won);
    }

    fn wake_next_select_send(&self) {
        let won = pop_live_send(&mut self.lock().sendq, false).map(|(won, _)| Peer::Waiter(won));
        wake(won);
    }
}
