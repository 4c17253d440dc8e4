//! Why a context is done (Go's `context.Canceled` and
//! `context.DeadlineExceeded`), and the cause a canceller may attach.
//!
//! The two reasons are a plain `Copy` enum so that `Context::err` is one
//! atomic load and no allocation: it is what every worker checks in its
//! loop. A cause (Go 1.20's `WithCancelCause`) is any error the canceller
//! chose; it is shared, not copied, by every descendant, hence the `Arc`.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a context is done: [`Context::err`](super::Context::err).
///
/// ```
/// use gort::context::{Context, Error};
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Cancelled: by a [`CancelHandle`](super::CancelHandle) (called or
    /// dropped) of this context or of an ancestor.
    Canceled,
    /// The deadline of this context or of an ancestor passed.
    DeadlineExceeded,
}

impl Error {
    /// Whether this is the deadline's doing (Go's `Timeout()` on
    /// `DeadlineExceeded`).
    ///
    /// ```
    /// assert!(gort::context::Error::DeadlineExceeded.is_timeout());
    /// assert!(!gort::context::Error::Canceled.is_timeout());
    /// ```
    pub fn is_timeout(self) -> bool {
        self == Error::DeadlineExceeded
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for Error {}

/// For I/O bounded by a context: a passed deadline is `TimedOut`, a
/// cancellation `Other` (not `Interrupted`, which std's loops retry); the
/// context's error is inside, for `get_ref().downcast_ref::<Error>()`.
///
/// ```
/// use std::io;
/// let e = io::Error::from(gort::context::Error::DeadlineExceeded);
/// assert_eq!(e.kind(), io::ErrorKind::TimedOut);
/// assert_eq!(
///     e.get_ref().and_then(|e| e.downcast_ref::<gort::context::Error>()),
///     Some(&gort::context::Error::DeadlineExceeded)
/// );
/// ```
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e {
            Error::Canceled => io::ErrorKind::Other,
            Error::DeadlineExceeded => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, e)
    }
}

/// The cause of a cancellation (Go's `context.Cause`): what was passed to
/// [`CancelHandle::cancel_with_cause`](super::CancelHandle::cancel_with_cause),
/// else the context's [`Error`].
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;
