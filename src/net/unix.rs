//! Unix-domain stream sockets: `UnixListener` and `UnixStream` with
//! std::os::unix::net's names and shapes, parking the goroutine instead of
//! blocking the thread (Go's net.UnixListener, net.UnixConn).
//!
//! The decisions of `tcp.rs` hold here too: `try_clone` shares the socket
//! (no `dup`), `close` wakes every goroutine blocked on it with
//! `NotConnected`, `set_nonblocking(true)` is refused, timeouts are std's
//! (per call, `TimedOut`), `incoming()` ends at the close, and plain
//! threads may use these types.
//!
//! Connecting differs from TCP. On Linux a non-blocking `connect` to a
//! Unix listener either completes at once or, when the listener's accept
//! queue is full, fails with `EAGAIN` — it never returns `EINPROGRESS`, and
//! nothing is left in progress. No readiness event on the connecting
//! socket says when the queue has room (an unconnected Unix socket is
//! always writable), so `connect` retries after a sleep that doubles from
//! `CONNECT_RETRY_MIN` to `CONNECT_RETRY_MAX`: the goroutine parks, the
//! thread runs others. std's blocking `connect` waits on the same full
//! queue; Go returns the `EAGAIN` instead.
//!
//! `close` on a listener: the shutdown makes later connects fail with
//! `ConnectionRefused`, but unlike TCP's it leaves the connections already
//! queued for accept connected until the descriptor is released — their
//! clients would wait on them while any handle lives. `close` accepts and
//! drops them, so those clients read the end (or a reset, if they wrote).
//! If an accept fails — the process is out of descriptors (`EMFILE`) —
//! the rest stay queued until the last handle is dropped: `close` cannot
//! release the descriptor itself while other handles may still use it.
//!
//! As in std (and unlike Go), dropping a listener does not remove its
//! socket file.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::fd::{Closable, NetFd};
use super::unwrap_only_handle;

/// The first pause before retrying a `connect` refused with `EAGAIN`.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(1);
/// The longest pause between `connect` retries: bounds how late a
/// connection notices that the queue has room.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(50);

/// A Unix-domain socket server, listening for connections (std's
/// `UnixListener`).
///
/// ```
/// use std::io::{Read, Write};
/// let path = std::env::temp_dir().join(format!("gort-doc-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let p = path.clone();
/// gort::run(move || {
///     let listener = gort::net::UnixListener::bind(&p)?;
///     let server = gort::go(move || -> std::io::Result<()> {
///         let (mut conn, _) = listener.accept()?;
///         let mut buf = [0; 5];
///         conn.read_exact(&mut buf)?;
///         conn.write_all(&buf)
///     });
///     let mut client = gort::net::UnixStream::connect(&p)?;
///     client.write_all(b"hello")?;
///     let mut echo = [0; 5];
///     client.read_exact(&mut echo)?;
///     assert_eq!(&echo, b"hello");
///     server.join().unwrap()
/// })?;
/// std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct UnixListener {
    fd: Arc<NetFd<std::os::unix::net::UnixListener>>,
}

impl UnixListener {
    /// Bind to the socket file `path` and listen.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        // std's bind never waits, and on Linux already asks for the
        // kernel's maximum backlog, as Go does.
        UnixListener::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Bind to `addr` and listen; for an abstract address (Linux), make it
    /// with `std::os::linux::net::SocketAddrExt::from_abstract_name`.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::from_std(std::os::unix::net::UnixListener::bind_addr(addr)?)
    }

    /// Wrap a listener made by std; it is switched to non-blocking mode.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            fd: Arc::new(NetFd::new(listener)?),
        })
    }

    /// Turn this listener back into a blocking std one. Fails (returning
    /// nothing) if other handles to it exist.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        let listener = unwrap_only_handle(self.fd)?;
        listener.set_nonblocking(false)?;
        Ok(listener)
    }

    /// Accept a connection, parking the goroutine until one arrives.
    #[track_caller]
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        // std's accept gives the peer's address in std's type (which has no
        // public constructor); the accepted socket is then made non-blocking.
        let (stream, addr) = self.fd.read(|l| l.accept())?;
        Ok((UnixStream::from_std(stream)?, addr))
    }

    /// An iterator of accepted connections (std's `incoming`) that ends
    /// once the listener is closed or its runtime dropped (`net::is_closed`)
    /// rather than yield that error for ever; it yields every other error.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming {
            listener: self,
            ended: false,
        }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().local_addr()
    }

    handle_methods!();
}

impl Closable for std::os::unix::net::UnixListener {
    fn end_what_shutdown_left(&self) {
        // The shutdown refuses new connects, so the queue only empties.
        loop {
            match self.accept() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

impl TryFrom<std::os::unix::net::UnixListener> for UnixListener {
    type Error = io::Error;
    fn try_from(l: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        UnixListener::from_std(l)
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The iterator of [`UnixListener::incoming`]; ends once the listener is
/// closed.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
    /// The listener was found closed: `None` from now on.
    ended: bool,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        super::next_incoming(&mut self.ended, || self.listener.accept().map(|(s, _)| s))
    }
}

impl std::iter::FusedIterator for UnixIncoming<'_> {}

/// A Unix-domain stream connection (std's `UnixStream`). `Read` and
/// `Write` are implemented for `&UnixStream` too, so one goroutine can
/// read while another writes.
///
/// ```
/// use std::io::{Read, Write};
/// gort::run(|| {
///     let (a, mut b) = gort::net::UnixStream::pair()?;
///     let writer = gort::go(move || (&a).write_all(b"over the pair"));
///     let mut got = String::new();
///     b.read_to_string(&mut got)?; // EOF when `a` is dropped
///     writer.join().unwrap()?;
///     assert_eq!(got, "over the pair");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct UnixStream {
    fd: Arc<NetFd<std::os::unix::net::UnixStream>>,
}

impl UnixStream {
    /// Connect to the socket at `path`, parking the goroutine while the
    /// listener's queue is full (see the module documentation).
    #[track_caller]
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        // std's check: socket2 would take a NUL byte as the path's end, or
        // a leading one as an abstract name.
        UnixStream::connect_addr(&SocketAddr::from_pathname(path)?)
    }

    /// Connect to `addr`: a pathname or (Linux) an abstract address.
    #[track_caller]
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        let to = if let Some(path) = addr.as_pathname() {
            SockAddr::unix(path)?
        } else if let Some(name) = addr.as_abstract_name() {
            // socket2 spells an abstract name as a path with a leading NUL.
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            SockAddr::unix(OsStr::from_bytes(&bytes))?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot connect to an unnamed address",
            ));
        };
        UnixStream::connect_sockaddr(&to)
    }

    #[track_caller]
    fn connect_sockaddr(to: &SockAddr) -> io::Result<UnixStream> {
        let sock = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        let mut pause = CONNECT_RETRY_MIN;
        loop {
            match try_connect(&sock, to) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::time::sleep(pause);
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        UnixStream::from_nonblocking(sock.into())
    }

    /// A connected pair of sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        Ok((
            UnixStream::from_nonblocking(a.into())?,
            UnixStream::from_nonblocking(b.into())?,
        ))
    }

    fn from_nonblocking(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            fd: Arc::new(NetFd::new(stream)?),
        })
    }

    /// Wrap a connected std stream; it is switched to non-blocking mode.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_nonblocking(stream)
    }

    /// Turn this stream back into a blocking std one. Fails if other
    /// handles to it exist.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        let stream = unwrap_only_handle(self.fd)?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().local_addr()
    }

    /// Shut down the read, write, or both halves (std's `shutdown`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.fd.sock().shutdown(how)
    }

    timeouts!();

    handle_methods!();
}

/// One `connect` attempt, never inlined into the retry loop: std declares
/// `__errno_location` `#[ffi_const]`, so LLVM may reuse one errno address
/// for every attempt in a function — after a sleep that moved the goroutine
/// to another thread, the old thread's errno would be read.
#[inline(never)]
fn try_connect(sock: &Socket, to: &SockAddr) -> io::Result<()> {
    sock.connect(to)
}

impl TryFrom<std::os::unix::net::UnixStream> for UnixStream {
    type Error = io::Error;
    fn try_from(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        UnixStream::from_std(s)
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

stream_io!(UnixStream);
fd_traits!(UnixStream, std::os::unix::net::UnixStream);
fd_traits!(UnixListener, std::os::unix::net::UnixListener);
