//! `select!` and the `Select` builder: wait on several channel operations,
//! complete exactly one (Go's runtime/select.go, `selectgo`).
//!
//! # Algorithm
//!
//! One engine, `run`, serves both front ends. It works on an array of
//! `Case`s, each naming a channel through the type-erased `Port` trait, a
//! kind (receive, send with its value, or send whose value comes later) and
//! a pointer to the case's value slot; and it reorders that array freely
//! (each case remembers its caller's index).
//!
//! 1. Lock every channel of the select. **Lock order: ascending address of
//!    the channel's lock**, each distinct channel once (the cases are sorted
//!    by that address first). This is the one place in gort that holds
//!    several channel locks at once; `sched/mod.rs` states the rule.
//! 2. Pass 1: poll the cases in a uniformly random order (a lazy
//!    Fisher–Yates shuffle of the case array, from a per-thread xorshift)
//!    and complete the first ready one, with the channel's own code for a
//!    single operation. Random order is Go's fairness: of several ready
//!    cases each is chosen with equal probability.
//! 3. None ready: with `default` (or a deadline already past), unlock and
//!    report that. Otherwise pass 2: make ONE `WaitToken`, enqueue a sudog
//!    on every channel with the case's position as its claim tag, unlock
//!    all, and park. The first waker to claim the token wins; the tag names
//!    its case and the hand-off is already in that case's slot.
//! 4. Pass 3: withdraw the sudogs of every other case, one channel lock at a
//!    time (the token is claimed, so wakers skip them meanwhile; the winner's
//!    waker dequeued its own).
//!
//! Resumes are always done after every lock is released (`Case::wake`
//! collects the claims made during pass 1).
//!
//! # The two front ends
//!
//! `select!` follows Go: every channel and send value is evaluated once, in
//! source order, on entry; the values live in slots on the caller's stack
//! (`SendArm`, `RecvArm`), a waiting receiver takes a value straight out of
//! a parked select's send slot, and the values of sends not chosen are
//! dropped. No allocation except the token when it parks.
//!
//! `Select` follows crossbeam: `send` cases get their value only after
//! `select` returns (`SelectedOperation::send`), and the chosen operation is
//! guaranteed to complete without blocking. So a ready send case is
//! *reserved* rather than done: a waiting receiver is claimed and held (it
//! stays parked until the value arrives), or a buffer slot is counted in
//! `reserved`. Parked, such a case's sudog has no value (null slot); a
//! receiver that finds it claims it just to wake the select, which polls
//! again and reserves whatever became ready. Only one such select is woken
//! per receiver or freed slot, so one that then completes another case
//! wakes the next `Select` send on that channel in its place. (So on an
//! unbuffered channel a parked `Select` send is completed by receivers that
//! wait — `recv`, `recv_timeout`, a parking select — but not by one that
//! only polls, `try_recv` or `select!` with `default`: that wakes it and
//! finds nothing.)
//! Receive cases use a slot boxed per case. A `SelectedOperation` dropped
//! without completing releases its reservation (a held receiver resumes
//! empty-handed and retries) and panics, as crossbeam's does.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{RecvError, SelectTimeoutError, SendError, TrySelectError};
use super::hchan::{Chan, Kind, Peer, RecvSlot, Sudog, Wait, wake};
use super::{Receiver, Sender};
use crate::sched::{Claim, RuntimeLock, RuntimeLockGuard};
use crate::sched::{TIMED_OUT, WaitReason, WaitToken};

/// A channel as the select engine sees it, whatever its element type.
pub(super) trait Port {
    /// The channel's lock; its address is the select lock order.
    fn mutex(&self) -> &RuntimeLock;

    /// Try to perform the case now.
    ///
    /// # Safety
    /// The caller holds `mutex()`, and `slot` is what `kind` says for this
    /// channel's element type (see `Sudog::slot`).
    unsafe fn poll(&self, kind: Kind, slot: *mut ()) -> Poll;

    /// Park a case on this channel; returns a receive future to wake once
    /// unlocked (a parked send's value is there for it to take).
    ///
    /// # Safety
    /// The caller holds `mutex()`; the sudog's slot is as for `poll`, and
    /// stays valid until the sudog is claimed or withdrawn.
    unsafe fn enqueue(&self, kind: Kind, sudog: Sudog) -> Option<Peer>;

    /// Remove a waiter's sudog for `case`, if still queued. Takes the lock.
    fn withdraw(&self, kind: Kind, token: &Arc<WaitToken>, case: usize);

    /// Whether a receive slot has been filled.
    ///
    /// # Safety
    /// `slot` is a receive slot for this channel's element type, and no
    /// waker can still be writing it (its token's wait has returned).
    unsafe fn received(&self, slot: *mut ()) -> bool;

    /// Give back a `Reservation::Buffer`. Takes the lock.
    fn unreserve(&self);

    /// A `Select` send woken to come back went for another case: wake the
    /// next one queued here in its place, as the receiver or the free slot
    /// it was woken for may still be there (if not, that one finds nothing
    /// and parks again). Takes the lock.
    fn wake_next_select_send(&self);
}

/// What polling one case found.
pub(super) enum Poll {
    /// Done (a value moved, or the channel is disconnected); resume this
    /// peer, if any, once unlocked.
    Ready(Option<Peer>),
    /// Not ready; resume this peer (a `Select` send to come back) anyway.
    Pending(Option<Peer>),
    /// A `SendLater` case is ready and reserved.
    Reserved(Reservation),
}

/// A send made ready before its value exists (`Select::send`).
pub(super) enum Reservation {
    /// Every receiver is gone: the send will fail.
    Disconnected,
    /// This parked receiver is claimed and waits for the value; its slot.
    Receiver(Claim, *mut ()),
    /// A buffer slot is counted in `reserved`.
    Buffer,
}

/// One operation of a select. Built by `RecvArm`/`SendArm` (`select!`) and
/// by `Select`.
#[doc(hidden)]
pub struct Case<'a> {
    port: &'a dyn Port,
    kind: Kind,
    slot: *mut (),
    /// The caller's index for this case (the array gets reordered).
    index: usize,
    /// This channel's lock while the select holds it; only the first case
    /// of each channel (in lock order) holds it.
    guard: Option<RuntimeLockGuard<'a>>,
    /// A peer claimed (or a task to wake) while polling or parking, to
    /// resume after unlocking.
    wake: Option<Peer>,
}

impl<'a> Case<'a> {
    fn new(port: &'a dyn Port, kind: Kind, slot: *mut (), index: usize) -> Case<'a> {
        Case {
            port,
            kind,
            slot,
            index,
            guard: None,
            wake: None,
        }
    }

    fn addr(&self) -> *const RuntimeLock {
        self.port.mutex()
    }
}

/// Release every lock the select holds, then resume the peers it claimed.
fn unlock_all(cases: &mut [Case<'_>]) {
    for c in cases.iter_mut() {
        c.guard = None;
    }
    for c in cases.iter_mut() {
        wake(c.wake.take());
    }
}

/// A uniformly distributed number in `0..n` (`n` below 2^32), from a
/// per-thread xorshift64 (Go's `cheaprandn`). Not held across a switch.
fn cheaprandn(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (((x >> 32) * n as u64) >> 32) as usize
    })
}

/// The engine (see the module header). Returns the position, in the
/// reordered `cases`, of the completed case — with its reservation for a
/// `SendLater` case — or `None` if `wait` ran out first.
#[track_caller]
fn run(cases: &mut [Case<'_>], wait: Wait) -> Option<(usize, Option<Reservation>)> {
    crate::sched::chaos_point();
    let n = cases.len();
    // The caller's index of a `SendLater` case woken to come back: what it
    // was woken for is ours to reserve, or to pass on.
    let mut woken_send = None;
    loop {
        // Lock order: ascending lock address, each channel once.
        cases.sort_unstable_by_key(Case::addr);
        for i in 0..n {
            if i == 0 || cases[i - 1].addr() != cases[i].addr() {
                cases[i].guard = Some(cases[i].port.mutex().lock());
            }
        }

        // Pass 1: the first ready case in random order.
        let mut chosen = None;
        for j in 0..n {
            if n - j > 1 {
                cases.swap(j, j + cheaprandn(n - j));
            }
            let c = &mut cases[j];
            // SAFETY: every channel of the select is locked (above), and a
            // case's slot matches its kind and channel (`Case` builders).
            match unsafe { c.port.poll(c.kind, c.slot) } {
                Poll::Ready(won) => {
                    c.wake = won;
                    chosen = Some((j, None));
                    break;
                }
                Poll::Reserved(r) => {
                    chosen = Some((j, Some(r)));
                    break;
                }
                Poll::Pending(won) => c.wake = won,
            }
        }
        if let Some((j, _)) = chosen {
            unlock_all(cases);
            if let Some(k) = woken_send
                && cases[j].index != k
                && let Some(c) = cases.iter().find(|c| c.index == k)
            {
                c.port.wake_next_select_send();
            }
            return chosen;
        }
        // Every case was polled and none was ready: whatever woke us is gone.
        woken_send = None;
        let Some(deadline) = wait.deadline() else {
            unlock_all(cases);
            return None;
        };

        // Pass 2: park on every channel with one token.
        let token = WaitToken::lend();
        for (pos, c) in cases.iter_mut().enumerate() {
            let sudog = Sudog {
                token: Arc::clone(&token),
                case: pos,
                slot: c.slot,
            };
            // SAFETY: locked; the slot outlives the wait (it is the
            // caller's, and pass 3 withdraws what no waker dequeued).
            if let Some(task) = unsafe { c.port.enqueue(c.kind, sudog) } {
                // Only a send case gives one, and polling a send case that
                // was not ready left no peer to resume (pass 1's `wake`s
                // are still due).
                debug_assert!(c.wake.is_none());
                c.wake = Some(task);
            }
        }
        unlock_all(cases);
        let tag = token.wait(deadline, WaitReason::Select);

        // Pass 3: withdraw from every channel but the winner's.
        for (pos, c) in cases.iter().enumerate() {
            if pos != tag {
                c.port.withdraw(c.kind, &token, pos);
            }
        }
        if tag == TIMED_OUT {
            return None;
        }
        let c = &cases[tag];
        match c.kind {
            // SAFETY: our own receive slot; the wait has returned.
            Kind::Recv if unsafe { !c.port.received(c.slot) } => {}
            // A receiver arrived or room appeared: poll again to reserve it.
            Kind::SendLater => woken_send = Some(c.index),
            _ => return Some((tag, None)),
        }
    }
}

/// A dynamic select over any number of operations, built at run time
/// (crossbeam's `Select`). Add operations with [`recv`](Select::recv) and
/// [`send`](Select::send), wait with [`select`](Select::select), then
/// complete the chosen operation with [`SelectedOperation::recv`] or
/// [`SelectedOperation::send`]. Send values are given only then, so on an
/// unbuffered channel a blocked `Select` send pairs with a receiver that
/// waits (`recv`, `recv_timeout`, a blocking select), not with `try_recv`;
/// [`select!`](crate::select), whose values are given up front, has no such
/// limit.
///
/// ```
/// use gort::chan::{Select, unbounded};
/// let (tx1, rx1) = unbounded::<u32>();
/// let (tx2, rx2) = unbounded::<&str>();
/// tx2.send("two").unwrap();
/// let mut sel = Select::new();
/// let i1 = sel.recv(&rx1);
/// let i2 = sel.recv(&rx2);
/// let oper = sel.select();
/// match oper.index() {
///     i if i == i1 => panic!("rx1 is empty: {:?}", oper.recv(&rx1)),
///     i if i == i2 => assert_eq!(oper.recv(&rx2), Ok("two")),
///     _ => unreachable!(),
/// }
/// # drop(tx1);
/// ```
pub struct Select<'a> {
    cases: Vec<Case<'a>>,
    /// The receive cases' boxed slots, freed with the `Select`.
    slots: Vec<BoxedSlot>,
}

/// A heap `RecvSlot<T>` with its `T` erased.
struct BoxedSlot {
    ptr: *mut (),
    free: unsafe fn(*mut ()),
}

/// # Safety
/// `p` came from `Box::<RecvSlot<T>>::into_raw` and is not used afterwards.
unsafe fn free_slot<T>(p: *mut ()) {
    // SAFETY: by the contract.
    drop(unsafe { Box::from_raw(p.cast::<RecvSlot<T>>()) });
}

impl Drop for BoxedSlot {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `free` were made together in `Select::recv`, and
        // no sudog points to the slot: a select withdraws all before
        // returning.
        unsafe { (self.free)(self.ptr) }
    }
}

impl<'a> Select<'a> {
    /// An empty select.
    ///
    /// ```
    /// let sel = gort::chan::Select::new();
    /// # drop(sel);
    /// ```
    pub fn new() -> Select<'a> {
        Select {
            cases: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Add a receive operation; returns its index.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded(1);
    /// tx.send(5).unwrap();
    /// let mut sel = gort::chan::Select::new();
    /// let i = sel.recv(&rx);
    /// let oper = sel.select();
    /// assert_eq!(oper.index(), i);
    /// assert_eq!(oper.recv(&rx), Ok(5));
    /// ```
    pub fn recv<T>(&mut self, r: &'a Receiver<T>) -> usize {
        let ptr = Box::into_raw(Box::new(RecvSlot::<T>::None)).cast::<()>();
        self.slots.push(BoxedSlot {
            ptr,
            free: free_slot::<T>,
        });
        self.push(&*r.chan, Kind::Recv, ptr)
    }

    /// Add a send operation; returns its index. The value is given to
    /// [`SelectedOperation::send`] once this operation is chosen.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded(1);
    /// let mut sel = gort::chan::Select::new();
    /// let i = sel.send(&tx);
    /// let oper = sel.select();
    /// assert_eq!(oper.index(), i);
    /// oper.send(&tx, 9).unwrap();
    /// assert_eq!(rx.recv(), Ok(9));
    /// ```
    pub fn send<T>(&mut self, s: &'a Sender<T>) -> usize {
        self.push(&*s.chan, Kind::SendLater, std::ptr::null_mut())
    }

    fn push(&mut self, port: &'a dyn Port, kind: Kind, slot: *mut ()) -> usize {
        let index = self.cases.len();
        self.cases.push(Case::new(port, kind, slot, index));
        index
    }

    /// Block until one operation is ready and choose it (uniformly at
    /// random among the ready ones). With no operations, blocks forever.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<u8>();
    /// let mut sel = gort::chan::Select::new();
    /// sel.recv(&rx);
    /// gort::go(move || tx.send(1).unwrap());
    /// assert_eq!(sel.select().recv(&rx), Ok(1));
    /// ```
    #[track_caller]
    pub fn select(&mut self) -> SelectedOperation<'_> {
        self.choose(Wait::Forever)
            .expect("a select without deadline returns with an operation")
    }

    /// Choose a ready operation if there is one, without blocking.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded::<u8>(0);
    /// let mut sel = gort::chan::Select::new();
    /// sel.recv(&rx);
    /// sel.send(&tx);
    /// assert!(sel.try_select().is_err()); // nobody on the other side
    /// ```
    pub fn try_select(&mut self) -> Result<SelectedOperation<'_>, TrySelectError> {
        self.choose(Wait::Never).ok_or(TrySelectError)
    }

    /// Like [`select`](Select::select), giving up after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = gort::chan::unbounded::<u8>();
    /// let mut sel = gort::chan::Select::new();
    /// sel.recv(&rx);
    /// assert!(sel.select_timeout(Duration::from_millis(5)).is_err());
    /// ```
    #[track_caller]
    pub fn select_timeout(&mut self, timeout: Duration) -> Result<SelectedOperation<'_>, SelectTimeoutError> {
        self.choose(Wait::timeout(timeout)).ok_or(SelectTimeoutError)
    }

    /// Like [`select`](Select::select), giving up at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (tx, rx) = gort::chan::unbounded::<u8>();
    /// tx.send(3).unwrap();
    /// let mut sel = gort::chan::Select::new();
    /// sel.recv(&rx);
    /// let oper = sel.select_deadline(Instant::now() + Duration::from_secs(1)).unwrap();
    /// assert_eq!(oper.recv(&rx), Ok(3));
    /// ```
    #[track_caller]
    pub fn select_deadline(&mut self, deadline: Instant) -> Result<SelectedOperation<'_>, SelectTimeoutError> {
        self.choose(Wait::Until(deadline)).ok_or(SelectTimeoutError)
    }

    #[track_caller]
    fn choose(&mut self, wait: Wait) -> Option<SelectedOperation<'_>> {
        let (pos, reservation) = run(&mut self.cases, wait)?;
        let c = &self.cases[pos];
        Some(SelectedOperation {
            port: c.port,
            kind: c.kind,
            slot: c.slot,
            index: c.index,
            reservation,
            completed: false,
        })
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Select::new()
    }
}

impl std::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad("Select { .. }")
    }
}

/// The operation a [`Select`] chose; complete it with
/// [`recv`](SelectedOperation::recv) or [`send`](SelectedOperation::send)
/// on the same channel. It never blocks: the select has already received
/// the value, or reserved a receiver or a buffer slot for the send.
///
/// Dropping it without completing panics (as crossbeam's does), after
/// releasing what it reserved.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded::<i32>();
/// let mut sel = gort::chan::Select::new();
/// let s = sel.send(&tx);
/// let oper = sel.select();
/// assert_eq!(oper.index(), s);
/// assert_eq!(oper.send(&tx, -1), Ok(()));
/// assert_eq!(rx.try_recv(), Ok(-1));
/// ```
#[must_use = "a selected operation must be completed with `recv` or `send`"]
pub struct SelectedOperation<'a> {
    port: &'a dyn Port,
    kind: Kind,
    slot: *mut (),
    index: usize,
    reservation: Option<Reservation>,
    completed: bool,
}

impl SelectedOperation<'_> {
    /// The index [`Select::recv`] or [`Select::send`] returned for the
    /// chosen operation.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<()>();
    /// tx.send(()).unwrap();
    /// let mut sel = gort::chan::Select::new();
    /// assert_eq!(sel.recv(&rx), 0);
    /// let oper = sel.select();
    /// assert_eq!(oper.index(), 0);
    /// oper.recv(&rx).unwrap();
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// Complete the chosen receive; `Err` if the channel was empty and
    /// disconnected.
    ///
    /// # Panics
    /// If `r` is not the receiver of the chosen operation.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<u8>();
    /// drop(tx);
    /// let mut sel = gort::chan::Select::new();
    /// sel.recv(&rx);
    /// assert!(sel.select().recv(&rx).is_err());
    /// ```
    pub fn recv<T>(mut self, r: &Receiver<T>) -> Result<T, RecvError> {
        assert!(
            self.kind == Kind::Recv && self.is(&r.chan),
            "passed a receiver that wasn't selected"
        );
        self.completed = true;
        // SAFETY: the chosen case receives on `r`'s channel, so its slot is
        // that channel's `RecvSlot<T>`, filled by the select.
        let r = unsafe { (*self.slot.cast::<RecvSlot<T>>()).take() };
        r.expect("a chosen receive has its result")
    }

    /// Complete the chosen send; `Err` gives the value back if every
    /// receiver is gone.
    ///
    /// # Panics
    /// If `s` is not the sender of the chosen operation.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded::<u8>(1);
    /// drop(rx);
    /// let mut sel = gort::chan::Select::new();
    /// sel.send(&tx);
    /// assert_eq!(sel.select().send(&tx, 4), Err(gort::chan::SendError(4)));
    /// ```
    pub fn send<T>(mut self, s: &Sender<T>, v: T) -> Result<(), SendError<T>> {
        assert!(
            self.kind == Kind::SendLater && self.is(&s.chan),
            "passed a sender that wasn't selected"
        );
        self.completed = true;
        let r = self.reservation.take().expect("a chosen send holds a reservation");
        s.chan.complete(r, v)
    }

    fn is<T>(&self, chan: &Chan<T>) -> bool {
        std::ptr::addr_eq(self.port, chan)
    }
}

impl Drop for SelectedOperation<'_> {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        match self.reservation.take() {
            // Resumed empty-handed, the receiver tries again.
            Some(Reservation::Receiver(won, _)) => won.done(),
            Some(Reservation::Buffer) => self.port.unreserve(),
            Some(Reservation::Disconnected) | None => {}
        }
        if !std::thread::panicking() {
            panic!("dropped `SelectedOperation` without completing the operation");
        }
    }
}

impl std::fmt::Debug for SelectedOperation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedOperation").field("index", &self.index).finish()
    }
}

/// What `select!` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use super::super::hchan::Wait;
    pub use super::Case;

    /// A `recv(rx) -> msg` arm: the receiver and the slot the result lands
    /// in. Built as a struct literal so that `&rx` of a temporary lives
    /// as long as the arm.
    pub struct RecvArm<'a, T> {
        pub rx: &'a Receiver<T>,
        pub slot: RecvSlot<T>,
    }

    impl<T> RecvArm<'_, T> {
        pub fn case(&mut self, index: usize) -> Case<'_> {
            Case::new(&*self.rx.chan, Kind::Recv, (&raw mut self.slot).cast(), index)
        }

        pub fn finish(self) -> Result<T, RecvError> {
            self.slot.expect("a chosen receive has its result")
        }
    }

    /// A `send(tx, v) -> res` arm: the sender and the value, until sent.
    pub struct SendArm<'a, T> {
        pub tx: &'a Sender<T>,
        pub slot: Option<T>,
    }

    impl<T> SendArm<'_, T> {
        pub fn case(&mut self, index: usize) -> Case<'_> {
            Case::new(&*self.tx.chan, Kind::Send, (&raw mut self.slot).cast(), index)
        }

        pub fn finish(self) -> Result<(), SendError<T>> {
            self.slot.map_or(Ok(()), |v| Err(SendError(v)))
        }
    }

    /// Run a `select!`: the caller's index of the completed arm, or `None`
    /// for `default`.
    #[track_caller]
    pub fn select(cases: &mut [Case<'_>], wait: Wait) -> Option<usize> {
        run(cases, wait).map(|(pos, _)| cases[pos].index)
    }

    /// A `default(timeout)` arm's wait.
    pub fn timeout(d: Duration) -> Wait {
        Wait::timeout(d)
    }
}

/// Wait on several channel operations and run the arm of the one that
/// completes (Go's `select` statement, in crossbeam's syntax).
///
/// Arms, any number and in any order, each followed by a comma unless its
/// body is a block:
///
/// - `recv(rx) -> msg => body`: `msg: Result<T, RecvError>`, `Err` when the
///   channel is empty and every sender is gone.
/// - `send(tx, value) -> res => body`: `res: Result<(), SendError<T>>`,
///   `Err` (with the value) when every receiver is gone.
/// - `default => body`: run if no operation is ready right now.
/// - `default(timeout) => body`: run if none becomes ready within `timeout`.
///
/// As in Go, every channel and send value is evaluated once, in order, on
/// entry; the values of sends not chosen are dropped. When several
/// operations are ready, one is chosen uniformly at random. Without a
/// `default` arm the caller blocks — a goroutine parks, a plain thread
/// sleeps — registered once on every channel. `rx`/`tx` may be a channel end
/// or a reference to one.
///
/// ```
/// use std::time::Duration;
/// let (tx1, rx1) = gort::chan::bounded::<u32>(1);
/// let (tx2, rx2) = gort::chan::unbounded::<String>();
/// tx2.send("hello".to_string()).unwrap();
/// let got = gort::select! {
///     recv(rx1) -> msg => format!("rx1: {msg:?}"),
///     recv(rx2) -> msg => msg.unwrap(),
///     send(tx1, 7) -> res => { res.unwrap(); "sent".to_string() }
///     default(Duration::from_secs(1)) => "timeout".to_string(),
/// };
/// assert!(got == "hello" || got == "sent");
/// ```
#[macro_export]
macro_rules! select {
    ($($arms:tt)*) => {
        $crate::__select_parse!(@arms [] [] (0) $($arms)*)
    };
}

/// The `select!` muncher: normalizes the arms, then generates the code.
/// Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // Arms: `[ [slot kind (ends) index (pat) (body)] ... ] [default] (next index)`.
    (@arms $arms:tt $default:tt ($($n:tt)*)) => {
        $crate::__select_parse!(@gen $arms $default)
    };
    (@arms $arms:tt $default:tt ($($n:tt)*) recv($rx:expr) -> $p:pat => $($rest:tt)*) => {
        $crate::__select_parse!(@body $arms $default ($($n)*)
            [RecvArm { rx: &$rx, slot: ::core::option::Option::None }] ($p) $($rest)*)
    };
    (@arms $arms:tt $default:tt ($($n:tt)*) send($tx:expr, $v:expr) -> $p:pat => $($rest:tt)*) => {
        $crate::__select_parse!(@body $arms $default ($($n)*)
            [SendArm { tx: &$tx, slot: ::core::option::Option::Some($v) }] ($p) $($rest)*)
    };
    (@arms $arms:tt [] $n:tt default => $($rest:tt)*) => {
        $crate::__select_parse!(@default $arms $n ($crate::chan::__private::Wait::Never) $($rest)*)
    };
    (@arms $arms:tt [] $n:tt default($t:expr) => $($rest:tt)*) => {
        $crate::__select_parse!(@default $arms $n ($crate::chan::__private::timeout($t)) $($rest)*)
    };
    (@arms $arms:tt [$($default:tt)+] $n:tt default $($rest:tt)*) => {
        ::core::compile_error!("a `select!` can have only one `default` arm")
    };
    (@arms $arms:tt $default:tt $n:tt $($rest:tt)+) => {
        ::core::compile_error!(
            "expected `recv(rx) -> pat => body`, `send(tx, value) -> pat => body`, `default => body` or `default(timeout) => body`"
        )
    };

    // A body: a block (comma optional) or an expression and a comma (or the end).
    (@body [$($arms:tt)*] $default:tt ($($n:tt)*) $arm:tt $p:tt { $($b:tt)* } , $($rest:tt)*) => {
        $crate::__select_parse!(@arms [$($arms)* [__slot $arm ($($n)*) $p ({ $($b)* })]] $default ($($n)* + 1) $($rest)*)
    };
    (@body [$($arms:tt)*] $default:tt ($($n:tt)*) $arm:tt $p:tt { $($b:tt)* } $($rest:tt)*) => {
        $crate::__select_parse!(@arms [$($arms)* [__slot $arm ($($n)*) $p ({ $($b)* })]] $default ($($n)* + 1) $($rest)*)
    };
    (@body [$($arms:tt)*] $default:tt ($($n:tt)*) $arm:tt $p:tt $b:expr , $($rest:tt)*) => {
        $crate::__select_parse!(@arms [$($arms)* [__slot $arm ($($n)*) $p ($b)]] $default ($($n)* + 1) $($rest)*)
    };
    (@body [$($arms:tt)*] $default:tt ($($n:tt)*) $arm:tt $p:tt $b:expr) => {
        $crate::__select_parse!(@arms [$($arms)* [__slot $arm ($($n)*) $p ($b)]] $default ($($n)* + 1))
    };

    // `default` bodies, same shapes.
    (@default $arms:tt $n:tt $wait:tt { $($b:tt)* } , $($rest:tt)*) => {
        $crate::__select_parse!(@arms $arms [$wait ({ $($b)* })] $n $($rest)*)
    };
    (@default $arms:tt $n:tt $wait:tt { $($b:tt)* } $($rest:tt)*) => {
        $crate::__select_parse!(@arms $arms [$wait ({ $($b)* })] $n $($rest)*)
    };
    (@default $arms:tt $n:tt $wait:tt $b:expr , $($rest:tt)*) => {
        $crate::__select_parse!(@arms $arms [$wait ($b)] $n $($rest)*)
    };
    (@default $arms:tt $n:tt $wait:tt $b:expr) => {
        $crate::__select_parse!(@arms $arms [$wait ($b)] $n)
    };

    // Generate. Each `__slot` comes from a different expansion, so they are
    // distinct variables (hygiene).
    (@gen [$([$slot:ident [$($arm:tt)*] $i:tt ($p:pat) ($body:expr)])*] $default:tt) => {{
        $( let mut $slot = $crate::chan::__private::$($arm)*; )*
        let __selected = $crate::chan::__private::select(
            &mut [$($slot.case $i),*],
            $crate::__select_parse!(@wait $default),
        );
        $( if __selected == ::core::option::Option::Some $i {
            let $p = $slot.finish();
            $body
        } else )* {
            $crate::__select_parse!(@fallback $default)
        }
    }};
    (@wait []) => { $crate::chan::__private::Wait::Forever };
    (@wait [$wait:tt $body:tt]) => { $wait };
    (@fallback []) => { ::core::unreachable!("select! returned without an operation") };
    (@fallback [$wait:tt ($body:expr)]) => { $body };
}
