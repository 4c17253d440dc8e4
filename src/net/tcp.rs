//! TCP: `TcpListener` and `TcpStream` with std::net's names and shapes,
//! parking the goroutine instead of blocking the thread (Go's net.TCPConn,
//! net.TCPListener).
//!
//! Decisions (where std and Go differ):
//! - Handles are shared, not duplicated: `try_clone` returns another handle
//!   to the same descriptor (no `dup`), and `close` — Go's `Close` — wakes
//!   every goroutine blocked on it with an error, whichever handle it used,
//!   and shuts the connection down (the peer reads end-of-file; a listener
//!   stops listening). The descriptor is released when the last handle is
//!   dropped. The close's error is recognised by `net::is_closed`, and
//!   ends `incoming()` (std's never ends).
//! - `set_nonblocking` is refused with `InvalidInput`: the descriptor is
//!   always non-blocking underneath, and a blocked operation parks only the
//!   goroutine. Use a goroutine per connection instead of polling.
//! - Read and write timeouts behave as std's (per call), and expiring is
//!   `TimedOut`, never `WouldBlock`.
//! - Name resolution in `connect`/`bind` uses std's `ToSocketAddrs`, which
//!   blocks the thread for names that are not literal addresses; it runs as
//!   a blocking call (`gort::blocking`), so the P goes on without it.
//! - From a plain thread (not a goroutine) every call works and blocks the
//!   thread.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::fd::NetFd;
use super::{each_addr, unwrap_only_handle};
use crate::netpoll::timeout_error;

/// A TCP socket server, listening for connections (std's `TcpListener`).
///
/// ```
/// use std::io::{Read, Write};
/// gort::run(|| {
///     let listener = gort::net::TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     let server = gort::go(move || -> std::io::Result<()> {
///         let (mut conn, _) = listener.accept()?;
///         let mut buf = [0; 5];
///         conn.read_exact(&mut buf)?;
///         conn.write_all(&buf)
///     });
///     let mut client = gort::net::TcpStream::connect(addr)?;
///     client.write_all(b"hello")?;
///     let mut echo = [0; 5];
///     client.read_exact(&mut echo)?;
///     assert_eq!(&echo, b"hello");
///     server.join().unwrap()
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TcpListener {
    fd: Arc<NetFd<std::net::TcpListener>>,
}

impl TcpListener {
    /// Bind to `addr` and listen (each resolved address is tried in turn).
    ///
    /// Unlike std (128), the backlog is the kernel's maximum
    /// (`net.core.somaxconn`), as in Go, so that a burst of connections is
    /// not answered with dropped SYNs and one-second retransmissions.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let sock = Socket::new(
                Domain::for_address(a),
                Type::STREAM.nonblocking().cloexec(),
                Some(Protocol::TCP),
            )?;
            // As std does on Unix: rebinding a port in TIME_WAIT is allowed.
            sock.set_reuse_address(true)?;
            sock.bind(&a.into())?;
            // The kernel clamps the backlog to somaxconn.
            sock.listen(i32::MAX)?;
            Ok(TcpListener {
                fd: Arc::new(NetFd::new(sock.into())?),
            })
        })
    }

    /// Wrap a listener made by std; it is switched to non-blocking mode.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            fd: Arc::new(NetFd::new(listener)?),
        })
    }

    /// Turn this listener back into a blocking std one. Fails (returning
    /// nothing) if other handles to it exist.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let listener = unwrap_only_handle(self.fd)?;
        listener.set_nonblocking(false)?;
        Ok(listener)
    }

    /// Accept a connection, parking the goroutine until one arrives.
    #[track_caller]
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sock, addr) = self
            .fd
            .read(|l| SockRef::from(l).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC))?;
        let addr = addr
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
        Ok((TcpStream::from_nonblocking(sock.into())?, addr))
    }

    /// An iterator of accepted connections (std's `incoming`) that ends
    /// once the listener is closed or its runtime dropped (`net::is_closed`)
    /// rather than yield that error for ever; it yields every other error.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            ended: false,
        }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().local_addr()
    }

    handle_methods!();

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.sock().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.sock().ttl()
    }
}

impl TryFrom<std::net::TcpListener> for TcpListener {
    type Error = io::Error;
    fn try_from(l: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::from_std(l)
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The iterator of [`TcpListener::incoming`]; ends once the listener is
/// closed.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    /// The listener was found closed: `None` from now on.
    ended: bool,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        super::next_incoming(&mut self.ended, || self.listener.accept().map(|(s, _)| s))
    }
}

impl std::iter::FusedIterator for Incoming<'_> {}

/// After a wait for writability, the outcome of a non-blocking `connect`:
/// connected, failed, or not known yet (a stale edge: see netpoll). Not
/// inlined, for the reason `net/fd.rs`'s `attempt` gives: its system calls
/// read `errno` after a park, maybe on another thread than the `connect`'s.
#[inline(never)]
fn handshake_done(sock: &std::net::TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// A TCP connection (std's `TcpStream`). `Read` and `Write` are
/// implemented for `&TcpStream` too, so one goroutine can read while
/// another writes.
#[derive(Clone)]
pub struct TcpStream {
    fd: Arc<NetFd<std::net::TcpStream>>,
}

impl TcpStream {
    /// Connect to `addr` (each resolved address is tried in turn), parking
    /// the goroutine while the handshake is in progress.
    #[track_caller]
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_deadline(&a, None))
    }

    /// Connect to `addr`, giving up with `TimedOut` once `timeout` has
    /// passed (Go's `DialTimeout`). `addr` is an address or a name
    /// (`"localhost:8080"`): each address it resolves to is tried in turn
    /// until the one deadline; resolving the name is not bounded by it.
    /// A zero `timeout` is an error, as in std.
    ///
    /// ```
    /// use std::time::Duration;
    /// let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let port = listener.local_addr().unwrap().port();
    /// let s = gort::net::TcpStream::connect_timeout(format!("localhost:{port}"), Duration::from_secs(5));
    /// assert!(s.is_ok());
    /// ```
    #[track_caller]
    pub fn connect_timeout<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        let deadline = crate::sched::timers::deadline_after(timeout);
        each_addr(addr, |a| TcpStream::connect_deadline(&a, deadline))
    }

    #[track_caller]
    fn connect_deadline(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let sock = Socket::new(
            Domain::for_address(*addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        let in_progress = match sock.connect(&(*addr).into()) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e),
        };
        let stream = TcpStream::from_nonblocking(sock.into())?;
        if in_progress {
            loop {
                stream.fd.wait_writable(deadline)?;
                if handshake_done(stream.fd.sock())? {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(timeout_error());
                }
            }
        }
        Ok(stream)
    }

    /// Connect to `addr` as [`connect`](TcpStream::connect) does, bounded
    /// by `ctx` (Go's `Dialer.DialContext`): each attempt gives up at the
    /// context's deadline, and the call returns as soon as the context is
    /// done, with its [`context::Error`](crate::context::Error) inside the
    /// `io::Error` (`TimedOut` for a deadline; see its `From`). Name
    /// resolution is not bounded by the context.
    ///
    /// The shape: a context that can be cancelled runs each attempt on a
    /// goroutine of its own and waits for the first of its result and the
    /// context; an attempt cut short by a cancellation is abandoned, ends
    /// by itself (at the context's deadline if it has one, else when the
    /// kernel gives up on the handshake) and closes its socket. A context
    /// that can never be done connects in place.
    ///
    /// ```
    /// use gort::context::Context;
    /// use gort::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// gort::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(10));
    ///     let conn = TcpStream::connect_ctx(&ctx, listener.local_addr().unwrap()).unwrap();
    ///     assert_eq!(conn.peer_addr().unwrap(), listener.local_addr().unwrap());
    ///
    ///     let (done, cancel) = Context::background().with_cancel();
    ///     cancel.cancel();
    ///     let err = TcpStream::connect_ctx(&done, listener.local_addr().unwrap()).unwrap_err();
    ///     assert_eq!(err.to_string(), "context canceled");
    /// });
    /// ```
    #[track_caller]
    pub fn connect_ctx<A: ToSocketAddrs>(ctx: &crate::context::Context, addr: A) -> io::Result<TcpStream> {
        if !ctx.can_be_done() {
            return TcpStream::connect(addr);
        }
        each_addr(addr, |a| {
            if let Some(e) = ctx.err() {
                return Err(e.into());
            }
            let (tx, rx) = crate::chan::bounded(1);
            let deadline = ctx.deadline();
            // An abandoned attempt's send fails and its stream is dropped.
            crate::go(move || tx.send(TcpStream::connect_deadline(&a, deadline)));
            crate::select! {
                recv(rx) -> r => r.unwrap_or_else(|_| Err(io::Error::other("the connecting goroutine panicked"))),
                recv(ctx.done()) -> _ => Err(ctx.err().expect("done means cancelled").into()),
            }
        })
    }

    fn from_nonblocking(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            fd: Arc::new(NetFd::new(stream)?),
        })
    }

    /// Wrap a connected std stream; it is switched to non-blocking mode.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_nonblocking(stream)
    }

    /// Turn this stream back into a blocking std one. Fails if other
    /// handles to it exist.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
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

    /// Receive data without removing it from the queue, parking until some
    /// arrives.
    #[track_caller]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_bytes(buf.len(), |s| s.peek(buf))
    }

    /// Set `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.fd.sock().set_nodelay(nodelay)
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd.sock().nodelay()
    }

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.sock().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.sock().ttl()
    }

    timeouts!();

    handle_methods!();
}

impl TryFrom<std::net::TcpStream> for TcpStream {
    type Error = io::Error;
    fn try_from(s: std::net::TcpStream) -> io::Result<TcpStream> {
        TcpStream::from_std(s)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

stream_io!(TcpStream);
fd_traits!(TcpStream, std::net::TcpStream);
fd_traits!(TcpListener, std::net::TcpListener);
