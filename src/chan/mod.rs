//! Channels: typed, multi-producer multi-consumer queues that park the
//! waiting goroutine, never its thread (Go's `chan`, runtime/chan.go and
//! runtime/select.go), with crossbeam-channel's API.
//!
//! ```
//! let (tx, rx) = gort::chan::bounded(0); // unbuffered: a rendezvous
//! let h = gort::go(move || {
//!     for i in 0..3 {
//!         tx.send(i).unwrap();
//!     }
//! }); // `tx` is dropped here: the channel disconnects
//! assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
//! h.join().unwrap();
//! ```
//!
//! # Semantics (Go's, in crossbeam's shape)
//!
//! - [`bounded(n)`](bounded) buffers `n` values; `bounded(0)` has no buffer:
//!   `send` returns only once a receiver has taken the value.
//!   [`unbounded`] never blocks a sender. (`bounded(usize::MAX)` is
//!   unbounded too.)
//! - Each channel is FIFO: values leave in the order their sends completed,
//!   and parked senders and receivers are served first come, first served.
//! - Dropping every [`Sender`], or [`Sender::close`] (Go's `close(ch)`),
//!   closes the channel: sends fail, receivers drain the buffer, then get
//!   `Err`, and parked senders resume with their values. Dropping every [`Receiver`]
//!   disconnects it for senders: `send` fails at once with the value in the
//!   error, parked senders resume with their values back, and buffered
//!   values are dropped. Nobody stays parked on a channel nobody can use.
//! - Goroutines park; a plain thread (`main`, a `#[test]`) blocks. Both can
//!   be on either end of the same channel.
//! - Timeouts: a zero timeout tries once; one whose deadline is past the
//!   end of the clock (`Duration::MAX`) waits forever, with no timer (the
//!   `time` module's rule).
//! - [`select!`](crate::select) and [`Select`] wait on several operations at
//!   once and choose among ready ones uniformly at random. [`never`] is a
//!   receiver that is never ready (Go's nil channel), to switch an arm off.
//! - Async code awaits [`Receiver::recv_async`] and [`Sender::send_async`]
//!   without blocking its executor's thread; both are cancel-safe
//!   (`future.rs`).
//!
//! # Structure
//!
//! `hchan.rs` is the channel (buffer, wait queues, hand-off, its locking
//! and invariants); `select.rs` the select engine, the `Select` builder and
//! the `select!` macro (lock order for several channels); `tasks.rs` the
//! channel's waiting futures and `future.rs` the futures themselves;
//! `error.rs` the error types. This file holds the handles: a `Sender` or `Receiver` is one
//! `Arc` of the channel; the channel counts the handles of each side to know
//! when a side is gone. The handles have no state of their own.

mod error;
mod future;
mod hchan;
mod select;
mod tasks;

pub use error::{
    RecvError, RecvTimeoutError, SelectTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySelectError,
    TrySendError,
};
#[cfg(feature = "stream")]
pub use future::RecvStream;
pub use future::{RecvFut, SendFut};
#[doc(hidden)]
pub use select::__private;
pub use select::{Select, SelectedOperation};

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hchan::{Chan, UNBOUNDED, Wait};

use crate::sched::timers::Wanted;

/// A channel with a buffer of `cap` values; `cap == 0` makes every send a
/// rendezvous with a receiver.
///
/// ```
/// let (tx, rx) = gort::chan::bounded(2);
/// tx.send('a').unwrap();
/// tx.send('b').unwrap();
/// assert!(tx.is_full());
/// assert_eq!(rx.recv(), Ok('a'));
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan::new(cap));
    (
        Sender {
            chan: Arc::clone(&chan),
        },
        Receiver { chan },
    )
}

/// A channel without a bound: `send` never blocks.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded();
/// for i in 0..1000 {
///     tx.send(i).unwrap();
/// }
/// assert_eq!(rx.len(), 1000);
/// assert_eq!(rx.capacity(), None);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(UNBOUNDED)
}

/// A receiver that is never ready: no value ever arrives and it never
/// closes (crossbeam's `never`, Go's nil channel). Put it in place of a
/// closed input to switch a [`select!`](crate::select) arm off. A plain
/// `recv` on it waits forever (a goroutine doing so with nothing else to
/// wait for is reported by the deadlock check, as in Go).
///
/// ```
/// use std::time::Duration;
/// let (tx, rx) = gort::chan::unbounded::<u8>();
/// drop(tx);
/// let mut rx = rx;
/// assert!(rx.recv().is_err()); // closed: ready at once, forever
/// rx = gort::chan::never();
/// let got = gort::select! {
///     recv(rx) -> v => panic!("never() was ready: {v:?}"),
///     default(Duration::from_millis(5)) => "switched off",
/// };
/// assert_eq!(got, "switched off");
/// ```
pub fn never<T>() -> Receiver<T> {
    // The channel counts one sender that is never made, so it never closes.
    Receiver {
        chan: Arc::new(Chan::new(0)),
    }
}

/// The sending end of a channel. Clone it for more producers; the channel
/// disconnects for receivers when the last clone is dropped.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded();
/// let tx2 = tx.clone();
/// gort::go(move || tx.send(1).unwrap()).join().unwrap();
/// gort::go(move || tx2.send(2).unwrap()).join().unwrap();
/// let mut got: Vec<i32> = rx.iter().collect();
/// got.sort();
/// assert_eq!(got, [1, 2]);
/// ```
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving end of a channel. Clone it for more consumers (each value
/// goes to one of them); the channel disconnects for senders when the last
/// clone is dropped.
///
/// ```
/// let (tx, rx) = gort::chan::bounded(1);
/// let rx2 = rx.clone();
/// tx.send(5).unwrap();
/// assert_eq!(rx2.recv(), Ok(5));
/// assert!(rx.try_recv().is_err());
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

// As crossbeam's: a panic never leaves a channel's state half-updated (no
// user code runs under its lock).
impl<T> UnwindSafe for Sender<T> {}
impl<T> RefUnwindSafe for Sender<T> {}
impl<T> UnwindSafe for Receiver<T> {}
impl<T> RefUnwindSafe for Receiver<T> {}

impl<T> Sender<T> {
    /// Send `v`, parking while the channel is full (for `bounded(0)`: until
    /// a receiver takes it). Fails at once, giving `v` back, if every
    /// receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded(0);
    /// let h = gort::go(move || rx.recv().unwrap());
    /// tx.send("ping").unwrap(); // returns once the goroutine has it
    /// assert_eq!(h.join().unwrap(), "ping");
    /// ```
    #[track_caller]
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.chan.send(v, Wait::Forever).map_err(|e| SendError(e.into_inner()))
    }

    /// Send `v` only if that can be done without waiting.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded(1);
    /// assert!(tx.try_send(1).is_ok());
    /// assert!(tx.try_send(2).unwrap_err().is_full());
    /// ```
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        self.chan.send(v, Wait::Never).map_err(|e| match e {
            SendTimeoutError::Timeout(v) => TrySendError::Full(v),
            SendTimeoutError::Disconnected(v) => TrySendError::Disconnected(v),
        })
    }

    /// Like [`send`](Sender::send), giving up after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = gort::chan::bounded(0);
    /// assert!(tx.send_timeout(1, Duration::from_millis(1)).unwrap_err().is_timeout());
    /// gort::go(move || rx.recv().unwrap());
    /// assert!(tx.send_timeout(2, Duration::from_secs(60)).is_ok());
    /// ```
    #[track_caller]
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.chan.send(v, Wait::timeout(timeout))
    }

    /// Like [`send`](Sender::send), giving up at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (tx, _rx) = gort::chan::bounded(0);
    /// let r = tx.send_deadline(1, Instant::now() + Duration::from_millis(1));
    /// assert!(r.unwrap_err().is_timeout());
    /// ```
    #[track_caller]
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.chan.send(v, Wait::Until(deadline))
    }

    /// Send `v` from async code: the returned future resolves as
    /// [`send`](Sender::send) returns, without blocking the executor's
    /// thread. Dropping it before it resolves drops `v` unless a receiver
    /// already took it (see [`SendFut`]).
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded(1);
    /// futures::executor::block_on(async {
    ///     tx.send_async(1).await.unwrap();
    ///     let full = tx.send_async(2); // no room until `rx` receives
    ///     let (sent, got) = futures::join!(full, async { rx.recv_async().await });
    ///     assert_eq!((sent, got), (Ok(()), Ok(1)));
    /// });
    /// assert_eq!(rx.try_recv(), Ok(2));
    /// ```
    pub fn send_async(&self, v: T) -> SendFut<'_, T> {
        SendFut::new(self, v)
    }

    /// Close the channel for every sender (Go's `close(ch)`): later sends
    /// fail with [`SendError`], senders waiting (parked or in a
    /// [`SendFut`]) resume with their values back, and receivers drain what
    /// is buffered, then get `Err(RecvError)`. Returns `false` if the channel
    /// was already closed (then it does nothing; Go would panic). Dropping
    /// the last sender closes the channel too.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// let tx2 = tx.clone();
    /// tx.send(1).unwrap();
    /// assert!(tx.close());
    /// assert!(!tx2.close());
    /// assert_eq!(tx2.send(2), Err(gort::chan::SendError(2)));
    /// assert_eq!(rx.recv(), Ok(1));
    /// assert!(rx.recv().is_err());
    /// ```
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    /// Whether the channel is closed by [`close`](Sender::close) (while a
    /// sender exists, nothing else closes it).
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert!(!tx.is_closed());
    /// tx.close();
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Values buffered now.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded(4);
    /// tx.send(()).unwrap();
    /// assert_eq!(tx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether nothing is buffered (always true for `bounded(0)`).
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::unbounded::<u8>();
    /// assert!(tx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (always true for `bounded(0)`, never for
    /// an unbounded channel).
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert!(tx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// The buffer size; `None` for an unbounded channel.
    ///
    /// ```
    /// assert_eq!(gort::chan::bounded::<u8>(3).0.capacity(), Some(3));
    /// assert_eq!(gort::chan::unbounded::<u8>().0.capacity(), None);
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }
}

impl<T> Receiver<T> {
    /// Receive a value, parking while the channel is empty. `Err` once the
    /// channel is empty and every sender is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// gort::go(move || tx.send(42).unwrap());
    /// assert_eq!(rx.recv(), Ok(42));
    /// assert!(rx.recv().is_err()); // the goroutine dropped `tx`
    /// ```
    #[track_caller]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv(Wait::Forever).map_err(|_| RecvError)
    }

    /// Receive a value only if one is ready now.
    ///
    /// ```
    /// use gort::chan::TryRecvError;
    /// let (tx, rx) = gort::chan::unbounded();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.recv(Wait::Never).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Like [`recv`](Receiver::recv), giving up after `timeout`.
    ///
    /// ```
    /// use gort::chan::RecvTimeoutError;
    /// use std::time::Duration;
    /// let (tx, rx) = gort::chan::bounded::<u8>(0);
    /// assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
    /// drop(tx);
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Err(RecvTimeoutError::Disconnected));
    /// ```
    #[track_caller]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Wait::timeout(timeout))
    }

    /// Like [`recv`](Receiver::recv), giving up at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (_tx, rx) = gort::chan::unbounded::<u8>();
    /// assert!(rx.recv_deadline(Instant::now() + Duration::from_millis(1)).is_err());
    /// ```
    #[track_caller]
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Wait::Until(deadline))
    }

    /// Receive from async code: the returned future resolves as
    /// [`recv`](Receiver::recv) returns, without blocking the executor's
    /// thread. Dropping it unfinished loses no value (see [`RecvFut`]).
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// gort::go(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    /// let sum = futures::executor::block_on(async {
    ///     let mut sum = 0;
    ///     while let Ok(v) = rx.recv_async().await {
    ///         sum += v;
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, 6);
    /// ```
    pub fn recv_async(&self) -> RecvFut<'_, T> {
        RecvFut::new(self)
    }

    /// This receiver as a `futures_core::Stream` of its values, ending once
    /// the channel is empty and closed (cargo feature `stream`).
    ///
    /// ```
    /// use futures::StreamExt;
    /// let (tx, rx) = gort::chan::bounded(0);
    /// gort::go(move || tx.send("only").unwrap());
    /// let mut s = rx.into_stream();
    /// futures::executor::block_on(async {
    ///     assert_eq!(s.next().await, Some("only"));
    ///     assert_eq!(s.next().await, None);
    /// });
    /// ```
    #[cfg(feature = "stream")]
    pub fn into_stream(self) -> RecvStream<T> {
        RecvStream::new(self)
    }

    /// Whether the channel is closed ([`Sender::close`], or every sender
    /// gone). Values may still be buffered.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// tx.send(1).unwrap();
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// assert_eq!(rx.recv(), Ok(1));
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// A blocking iterator: `recv` until the channel is disconnected.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// gort::go(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    /// assert_eq!(rx.iter().sum::<i32>(), 6);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator over the values ready now.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]); // `tx` still alive
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Values buffered now.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded();
    /// tx.send(0).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether nothing is buffered (always true for `bounded(0)`).
    ///
    /// ```
    /// let (_tx, rx) = gort::chan::bounded::<u8>(1);
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (always true for `bounded(0)`, never for
    /// an unbounded channel).
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded(1);
    /// tx.send(1).unwrap();
    /// assert!(rx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// The buffer size; `None` for an unbounded channel.
    ///
    /// ```
    /// assert_eq!(gort::chan::bounded::<u8>(0).1.capacity(), Some(0));
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }
}

impl<T> Sender<T> {
    /// Whether `rx` receives from this very channel.
    pub(crate) fn same_channel(&self, rx: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &rx.chan)
    }

    /// Whether a receiver is parked on the channel, waiting for a value
    /// (the deadlock check's question about signal channels).
    pub(crate) fn receiver_waiting(&self) -> bool {
        self.chan.receiver_waiting()
    }

    /// Whether every `Receiver` is gone.
    pub(crate) fn is_disconnected(&self) -> bool {
        !self.chan.has_receivers()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.add_sender();
        Sender {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T: Send + 'static> Sender<T> {
    /// A weak handle that says whether any `Receiver` of the channel is
    /// left: the runtime's timers drop a channel timer nobody can receive
    /// from. It is on the channel itself, not on this sender, because a
    /// timer heap upgrades it under its lock and that upgrade can end up
    /// the last reference: a channel with no sender or receiver left only
    /// frees memory when it goes, where a sender's drop wakes receivers.
    pub(crate) fn receivers_wanted(&self) -> Weak<dyn Wanted> {
        Arc::downgrade(&self.chan) as Weak<Chan<T>>
    }
}

impl<T: Send> Wanted for Chan<T> {
    fn still_wanted(&self) -> bool {
        self.has_receivers()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.release_sender();
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.chan.add_receiver();
        Receiver {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.release_receiver();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

/// Blocking iterator from [`Receiver::iter`]; ends when the channel is
/// empty and disconnected.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded();
/// tx.send("x").unwrap();
/// drop(tx);
/// let mut it = rx.iter();
/// assert_eq!(it.next(), Some("x"));
/// assert_eq!(it.next(), None);
/// ```
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator from [`Receiver::try_iter`]; ends at the first
/// moment nothing is ready.
///
/// ```
/// let (_tx, rx) = gort::chan::unbounded::<u8>();
/// assert_eq!(rx.try_iter().next(), None);
/// ```
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator (`for v in rx`); ends when the channel is empty
/// and disconnected.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded();
/// gort::go(move || tx.send(7).unwrap());
/// for v in rx {
///     assert_eq!(v, 7);
/// }
/// ```
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Iter { .. }")
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("TryIter { .. }")
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("IntoIter { .. }")
    }
}
