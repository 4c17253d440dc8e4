//! Networking that parks goroutines, not threads (Go's package net over
//! its netpoller): std::net's types and names, backed by `netpoll`.
//!
//! A goroutine that reads a socket with no data parks; its thread runs
//! other goroutines; the poller wakes it when data arrives. Called from a
//! plain OS thread, the same types block that thread, and still work.
//! `WouldBlock` never reaches the caller; an expired timeout is `TimedOut`;
//! an operation on a socket that was `close`d — including one blocked or
//! under way at the time — fails with `NotConnected` ("use of closed
//! network connection").
//!
//! That error is for good, so a loop must not retry it: [`is_closed`] tells
//! it apart (Go's `errors.Is(err, net.ErrClosed)`) from the kernel's own
//! `ENOTCONN`, which shares its `ErrorKind`. A socket whose runtime was
//! dropped fails the same way, for the same reason. `incoming()` ends (and
//! stays ended) at that error instead of yielding it, so `for conn in
//! listener.incoming()` ends once another goroutine closes the listener;
//! its other errors concern one connection and are yielded.
//!
//! Every type converts from and to its std counterpart (`from_std`,
//! `into_std`, `TryFrom`) and an `OwnedFd` (`TryFrom` both ways, since
//! registering with the poller can fail); giving a socket back fails with
//! `ResourceBusy` while other handles to it exist (`try_clone` shares one
//! descriptor).
//!
//! A socket belongs to the runtime current when it was made (the caller's,
//! else the default one), whose Ms poll it; goroutines of any runtime, and
//! plain threads, may use it. If that runtime is dropped, operations on its
//! sockets fail.
//!
//! `tcp.rs`, `udp.rs` and `unix.rs` are thin: each type is an
//! `Arc<NetFd<std type>>` (`fd.rs` holds the retry-and-park loop), whose
//! system calls are std's (or socket2's), made on a non-blocking descriptor.

/// The methods every gort socket handle shares, for a type whose `fd`
/// field is an `Arc<NetFd<_>>` and whose `Clone` shares it.
macro_rules! handle_methods {
    () => {
        /// Take the pending `SO_ERROR`.
        pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
            self.fd.sock().take_error()
        }

        /// Another handle to the same socket (no descriptor is duplicated).
        pub fn try_clone(&self) -> std::io::Result<Self> {
            Ok(self.clone())
        }

        /// Go's `Close`: wake every goroutine blocked on this socket with an
        /// error, fail later calls, and end the connection (the peer reads
        /// end-of-file; a listener stops listening). The descriptor itself
        /// is released when the last handle drops.
        pub fn close(&self) {
            self.fd.close();
        }

        /// Refused: gort sockets park the goroutine instead (module
        /// documentation).
        pub fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
            crate::net::refuse_nonblocking(nonblocking)
        }
    };
}

/// std's timeout methods and Go's deadlines for a socket type whose `fd`
/// field is an `Arc<NetFd<_>>`, backed by timers (`net/fd.rs`).
macro_rules! timeouts {
    () => {
        /// Bound each read to `timeout` (None: no bound); a read that waits
        /// longer fails with `TimedOut`. `Some(Duration::ZERO)` is an
        /// error, as in std.
        pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
            self.fd.set_timeout(crate::netpoll::Direction::Read, timeout)
        }

        /// As `set_read_timeout`, for writes.
        pub fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
            self.fd.set_timeout(crate::netpoll::Direction::Write, timeout)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(crate::netpoll::Direction::Read))
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(crate::netpoll::Direction::Write))
        }

        /// Go's `SetReadDeadline`: once `deadline` has passed, reads fail
        /// with `TimedOut` (`"i/o timeout"`) instead of waiting — at once,
        /// even with data queued — until it is moved or cleared (`None`).
        /// Moving it, later or earlier, takes effect for a read already
        /// blocked. Works beside [`set_read_timeout`](Self::set_read_timeout):
        /// a read stops at whichever comes first.
        pub fn set_read_deadline(&self, deadline: Option<std::time::Instant>) -> std::io::Result<()> {
            self.fd.set_deadline(crate::netpoll::Direction::Read, deadline);
            Ok(())
        }

        /// As [`set_read_deadline`](Self::set_read_deadline), for writes.
        pub fn set_write_deadline(&self, deadline: Option<std::time::Instant>) -> std::io::Result<()> {
            self.fd.set_deadline(crate::netpoll::Direction::Write, deadline);
            Ok(())
        }

        /// Go's `SetDeadline`: both the read and the write deadline.
        pub fn set_deadline(&self, deadline: Option<std::time::Instant>) -> std::io::Result<()> {
            self.set_read_deadline(deadline)?;
            self.set_write_deadline(deadline)
        }

        /// The read deadline, if one is set.
        pub fn read_deadline(&self) -> Option<std::time::Instant> {
            self.fd.deadline(crate::netpoll::Direction::Read)
        }

        /// The write deadline, if one is set.
        pub fn write_deadline(&self) -> Option<std::time::Instant> {
            self.fd.deadline(crate::netpoll::Direction::Write)
        }
    };
}

/// `AsRawFd` and `AsFd` for a socket type whose `fd` field is an
/// `Arc<NetFd<_>>`, and conversions from and to an `OwnedFd` through its
/// std type `$std` (`from_std`, `into_std`). They are `TryFrom`, not
/// `FromRawFd`/`IntoRawFd`: adopting a descriptor registers it with the
/// poller, which can fail, and a handle shared by `try_clone` cannot give
/// its descriptor away.
macro_rules! fd_traits {
    ($ty:ty, $std:ty) => {
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.sock().as_raw_fd()
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.fd.sock().as_fd()
            }
        }

        impl TryFrom<std::os::fd::OwnedFd> for $ty {
            type Error = std::io::Error;

            /// Adopt a socket descriptor of the right kind (as `from_std`).
            fn try_from(fd: std::os::fd::OwnedFd) -> std::io::Result<$ty> {
                <$ty>::from_std(<$std>::from(fd))
            }
        }

        impl TryFrom<$ty> for std::os::fd::OwnedFd {
            type Error = std::io::Error;

            /// Give the descriptor back, in blocking mode (as `into_std`).
            fn try_from(socket: $ty) -> std::io::Result<std::os::fd::OwnedFd> {
                socket.into_std().map(std::os::fd::OwnedFd::from)
            }
        }
    };
}

/// `Read` and `Write` for a byte-stream socket type and for references to
/// it (so one goroutine can read while another writes), over its
/// `fd: Arc<NetFd<_>>`.
macro_rules! stream_io {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.fd.read_stream(buf.len(), |s| {
                    crate::os::recv(std::os::fd::AsRawFd::as_raw_fd(s), buf)
                })
            }

            #[track_caller]
            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.fd.read_stream(len, |mut s| s.read_vectored(bufs))
            }
        }

        impl std::io::Write for &$ty {
            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.fd
                    .write(|s| crate::os::send(std::os::fd::AsRawFd::as_raw_fd(s), buf))
            }

            #[track_caller]
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.fd
                    .write(|s| crate::os::send_vectored(std::os::fd::AsRawFd::as_raw_fd(s), bufs))
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) mod fd;
mod tcp;
mod udp;
mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixIncoming, UnixListener, UnixStream};

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use fd::NetFd;

/// Why a socket can never be used again (the payload of the error
/// [`is_closed`] recognises): Go's `net.ErrClosed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrClosed {
    /// The socket's runtime was dropped, rather than the socket closed.
    runtime_gone: bool,
}

impl ErrClosed {
    /// The error of an operation on a socket that was `close`d.
    pub(crate) fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, ErrClosed { runtime_gone: false })
    }

    /// The error of an operation on a socket whose runtime was dropped.
    pub(crate) fn runtime_gone() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, ErrClosed { runtime_gone: true })
    }
}

impl std::fmt::Display for ErrClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("use of closed network connection")?;
        if self.runtime_gone {
            f.write_str(": the runtime this socket belongs to has shut down")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrClosed {}

/// Whether `err` says its socket is closed for good — by `close`, or by the
/// drop of its runtime — so retrying is pointless (Go's `errors.Is(err,
/// net.ErrClosed)`). False for everything else, the kernel's `ENOTCONN`
/// (same `ErrorKind::NotConnected`) included.
///
/// ```
/// gort::run(|| {
///     let listener = gort::net::TcpListener::bind("127.0.0.1:0")?;
///     listener.close();
///     assert!(gort::net::is_closed(&listener.accept().unwrap_err()));
///     // `incoming()` ends at the close instead of yielding its error.
///     assert_eq!(listener.incoming().count(), 0);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn is_closed(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<ErrClosed>())
}

/// The next item of an `incoming()` iterator over `accept`: `None` once the
/// listener is closed for good (`is_closed`), which the iterator then stays.
fn next_incoming<T>(ended: &mut bool, accept: impl FnOnce() -> io::Result<T>) -> Option<io::Result<T>> {
    if *ended {
        return None;
    }
    match accept() {
        Err(e) if is_closed(&e) => {
            *ended = true;
            None
        }
        next => Some(next),
    }
}

/// Try `f` on each address `addr` resolves to; the first success, or the
/// last error. Resolving a name may wait on the network (`getaddrinfo`):
/// it runs as a blocking call, so the goroutine's P goes on with other
/// goroutines at once rather than once sysmon finds the thread asleep (as
/// Go's cgo resolver enters a system call).
fn each_addr<A: ToSocketAddrs, T>(addr: A, mut f: impl FnMut(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
}

/// The addresses `addr` resolves to, resolved as `each_addr` explains.
fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<A::Iter> {
    crate::sched::blocking(|| addr.to_socket_addrs())
}

/// `set_nonblocking(true)` is refused; `false` is what gort sockets already
/// behave like.
fn refuse_nonblocking(nonblocking: bool) -> io::Result<()> {
    if nonblocking {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "gort sockets park the goroutine instead of returning WouldBlock; non-blocking mode is not supported",
        ))
    } else {
        Ok(())
    }
}

/// The socket inside `fd`, if `fd` is its only handle (`into_std`).
fn unwrap_only_handle<S: AsRawFd>(fd: Arc<NetFd<S>>) -> io::Result<S> {
    Arc::try_unwrap(fd).map(NetFd::into_inner).map_err(|_| {
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            "other handles to this socket exist (try_clone)",
        )
    })
}
