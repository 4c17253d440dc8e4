//! The errors of channel and select operations, shaped like
//! crossbeam-channel's (names, variants, messages, helper methods) so code
//! written against crossbeam ports by changing an import.
//!
//! A failed send always gives the value back inside the error. `Debug` for
//! the value-carrying errors prints `..` instead of the value, so they are
//! `Debug` (and `Error`) for any `T`, as crossbeam's are. No state, no
//! locks, no invariants beyond that. No Go runtime file corresponds: Go
//! reports these outcomes with `ok` booleans, `select` defaults and panics
//! (runtime/chan.go's "send on closed channel").

use std::error::Error;
use std::fmt;

/// The value of a [`send`](super::Sender::send) that failed because every
/// [`Receiver`](super::Receiver) is gone; the value comes back.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded::<u32>();
/// drop(rx);
/// assert_eq!(tx.send(7), Err(gort::chan::SendError(7)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// Why a [`try_send`](super::Sender::try_send) failed; the value comes back.
///
/// ```
/// use gort::chan::TrySendError;
/// let (tx, rx) = gort::chan::bounded(1);
/// tx.try_send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// drop(rx);
/// assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is full (an unbuffered one: no receiver is waiting).
    Full(T),
    /// Every receiver is gone.
    Disconnected(T),
}

/// Why a [`send_timeout`](super::Sender::send_timeout) failed; the value
/// comes back.
///
/// ```
/// use gort::chan::SendTimeoutError;
/// use std::time::Duration;
/// let (tx, _rx) = gort::chan::bounded(0);
/// assert_eq!(tx.send_timeout(1, Duration::from_millis(1)), Err(SendTimeoutError::Timeout(1)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// No room (or no receiver) appeared before the timeout.
    Timeout(T),
    /// Every receiver is gone.
    Disconnected(T),
}

/// A [`recv`](super::Receiver::recv) failed: the channel is empty and every
/// [`Sender`](super::Sender) is gone.
///
/// ```
/// let (tx, rx) = gort::chan::unbounded::<u32>();
/// drop(tx);
/// assert_eq!(rx.recv(), Err(gort::chan::RecvError));
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// Why a [`try_recv`](super::Receiver::try_recv) failed.
///
/// ```
/// use gort::chan::TryRecvError;
/// let (tx, rx) = gort::chan::unbounded::<u32>();
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    Empty,
    /// Empty, and every sender is gone.
    Disconnected,
}

/// Why a [`recv_timeout`](super::Receiver::recv_timeout) or
/// [`recv_deadline`](super::Receiver::recv_deadline) failed.
///
/// ```
/// use gort::chan::RecvTimeoutError;
/// use std::time::Duration;
/// let (_tx, rx) = gort::chan::unbounded::<u32>();
/// assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// Empty, and every sender is gone.
    Disconnected,
}

/// [`Select::try_select`](super::Select::try_select) found no operation
/// ready.
///
/// ```
/// let (_tx, rx) = gort::chan::unbounded::<u32>();
/// let mut sel = gort::chan::Select::new();
/// sel.recv(&rx);
/// assert!(sel.try_select().is_err());
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct TrySelectError;

/// [`Select::select_timeout`](super::Select::select_timeout) found no
/// operation ready before the timeout.
///
/// ```
/// use std::time::Duration;
/// let (_tx, rx) = gort::chan::unbounded::<u32>();
/// let mut sel = gort::chan::Select::new();
/// sel.recv(&rx);
/// assert!(sel.select_timeout(Duration::from_millis(1)).is_err());
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct SelectTimeoutError;

const DISCONNECTED_SEND: &str = "sending on a disconnected channel";

impl<T> SendError<T> {
    /// The value that could not be sent.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<String>();
    /// drop(rx);
    /// assert_eq!(tx.send("hi".into()).unwrap_err().into_inner(), "hi");
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SendError { .. }")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(DISCONNECTED_SEND)
    }
}

impl<T> Error for SendError<T> {}

impl<T> TrySendError<T> {
    /// The value that could not be sent.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert_eq!(tx.try_send(5).unwrap_err().into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
        }
    }

    /// Whether the send failed because the channel was full.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert!(tx.try_send(5).unwrap_err().is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Whether the send failed because every receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded::<u8>(1);
    /// drop(rx);
    /// assert!(tx.try_send(5).unwrap_err().is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Disconnected(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.pad("Full(..)"),
            TrySendError::Disconnected(_) => f.pad("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.pad("sending on a full channel"),
            TrySendError::Disconnected(_) => f.pad(DISCONNECTED_SEND),
        }
    }
}

impl<T> Error for TrySendError<T> {}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> TrySendError<T> {
        TrySendError::Disconnected(e.0)
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that could not be sent.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert_eq!(tx.send_timeout(5, std::time::Duration::ZERO).unwrap_err().into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => v,
        }
    }

    /// Whether the send timed out.
    ///
    /// ```
    /// let (tx, _rx) = gort::chan::bounded::<u8>(0);
    /// assert!(tx.send_timeout(5, std::time::Duration::ZERO).unwrap_err().is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }

    /// Whether the send failed because every receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::bounded::<u8>(0);
    /// drop(rx);
    /// assert!(tx.send_timeout(5, std::time::Duration::MAX).unwrap_err().is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Disconnected(_))
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.pad("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.pad("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.pad("timed out waiting on send operation"),
            SendTimeoutError::Disconnected(_) => f.pad(DISCONNECTED_SEND),
        }
    }
}

impl<T> Error for SendTimeoutError<T> {}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> SendTimeoutError<T> {
        SendTimeoutError::Disconnected(e.0)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("receiving on an empty and disconnected channel")
    }
}

impl Error for RecvError {}

impl TryRecvError {
    /// Whether the receive failed because the channel was empty.
    ///
    /// ```
    /// let (_tx, rx) = gort::chan::unbounded::<u8>();
    /// assert!(rx.try_recv().unwrap_err().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }

    /// Whether the receive failed because every sender is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<u8>();
    /// drop(tx);
    /// assert!(rx.try_recv().unwrap_err().is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Disconnected)
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.pad("receiving on an empty channel"),
            TryRecvError::Disconnected => f.pad("receiving on an empty and disconnected channel"),
        }
    }
}

impl Error for TryRecvError {}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> TryRecvError {
        TryRecvError::Disconnected
    }
}

impl RecvTimeoutError {
    /// Whether the receive timed out.
    ///
    /// ```
    /// let (_tx, rx) = gort::chan::unbounded::<u8>();
    /// assert!(rx.recv_timeout(std::time::Duration::ZERO).unwrap_err().is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }

    /// Whether the receive failed because every sender is gone.
    ///
    /// ```
    /// let (tx, rx) = gort::chan::unbounded::<u8>();
    /// drop(tx);
    /// assert!(rx.recv_timeout(std::time::Duration::MAX).unwrap_err().is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Disconnected)
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.pad("timed out waiting on receive operation"),
            RecvTimeoutError::Disconnected => f.pad("channel is empty and disconnected"),
        }
    }
}

impl Error for RecvTimeoutError {}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> RecvTimeoutError {
        RecvTimeoutError::Disconnected
    }
}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("all operations in select would block")
    }
}

impl Error for TrySelectError {}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("timed out waiting on select")
    }
}

impl Error for SelectTimeoutError {}
