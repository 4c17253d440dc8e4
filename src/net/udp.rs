//! UDP: `UdpSocket` with std::net's names and shapes, parking the goroutine
//! instead of blocking the thread (Go's net.UDPConn).
//!
//! The decisions of `tcp.rs` hold here too: `try_clone` shares the socket
//! (no `dup`), `close` wakes every goroutine blocked on it with
//! `NotConnected`, `set_nonblocking(true)` is refused, timeouts are std's
//! (per call, `TimedOut`), and plain threads may use the socket.
//!
//! A datagram is sent or received whole by one system call, so a `send`
//! waits only while the socket's send buffer is full, and a `recv` only
//! until the next datagram; one that does not fit `buf` is truncated, as
//! in std. Options and addresses are read straight from the socket: they
//! never wait.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use super::fd::NetFd;
use super::{each_addr, resolve, unwrap_only_handle};

/// A UDP socket (std's `UdpSocket`): `recv_from` and `send_to` park the
/// goroutine until a datagram arrives or there is room to send one.
///
/// ```
/// gort::run(|| {
///     let server = gort::net::UdpSocket::bind("127.0.0.1:0")?;
///     let addr = server.local_addr()?;
///     let echo = gort::go(move || -> std::io::Result<()> {
///         let mut buf = [0; 64];
///         let (n, from) = server.recv_from(&mut buf)?;
///         server.send_to(&buf[..n], from)?;
///         Ok(())
///     });
///     let client = gort::net::UdpSocket::bind("127.0.0.1:0")?;
///     client.connect(addr)?;
///     client.send(b"ping")?;
///     let mut buf = [0; 64];
///     let n = client.recv(&mut buf)?;
///     assert_eq!(&buf[..n], b"ping");
///     echo.join().unwrap()
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct UdpSocket {
    fd: Arc<NetFd<std::net::UdpSocket>>,
}

impl UdpSocket {
    /// Bind to `addr` (each resolved address is tried in turn).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let sock = Socket::new(
                Domain::for_address(a),
                Type::DGRAM.nonblocking().cloexec(),
                Some(Protocol::UDP),
            )?;
            sock.bind(&a.into())?;
            Ok(UdpSocket {
                fd: Arc::new(NetFd::new(sock.into())?),
            })
        })
    }

    /// Wrap a socket made by std; it is switched to non-blocking mode.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            fd: Arc::new(NetFd::new(socket)?),
        })
    }

    /// Turn this socket back into a blocking std one. Fails (returning
    /// nothing) if other handles to it exist.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let socket = unwrap_only_handle(self.fd)?;
        socket.set_nonblocking(false)?;
        Ok(socket)
    }

    /// Receive one datagram, parking until one arrives; returns its length
    /// (truncated to `buf`) and its sender.
    #[track_caller]
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.read(|s| s.recv_from(buf))
    }

    /// As `recv_from`, but the datagram stays queued.
    #[track_caller]
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.read(|s| s.peek_from(buf))
    }

    /// Send `buf` as one datagram to `addr`, parking while the send buffer
    /// is full. As in std, only the first address `addr` resolves to is used.
    #[track_caller]
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = resolve(addr)?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))?;
        self.fd.write(|s| s.send_to(buf, to))
    }

    /// Set the default peer (each resolved address is tried in turn):
    /// `send` goes there and only its datagrams are received.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |a| self.fd.sock().connect(a))
    }

    /// Send `buf` to the connected peer.
    #[track_caller]
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write(|s| s.send(buf))
    }

    /// Receive one datagram from the connected peer.
    #[track_caller]
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read(|s| s.recv(buf))
    }

    /// As `recv`, but the datagram stays queued.
    #[track_caller]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read(|s| s.peek(buf))
    }

    /// The address this socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().local_addr()
    }

    /// The connected peer (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.sock().peer_addr()
    }

    timeouts!();

    /// Set `SO_BROADCAST`.
    pub fn set_broadcast(&self, broadcast: bool) -> io::Result<()> {
        self.fd.sock().set_broadcast(broadcast)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.fd.sock().broadcast()
    }

    /// Set `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.fd.sock().set_multicast_loop_v4(on)
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.fd.sock().multicast_loop_v4()
    }

    /// Set `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.fd.sock().set_multicast_ttl_v4(ttl)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.fd.sock().multicast_ttl_v4()
    }

    /// Set `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.fd.sock().set_multicast_loop_v6(on)
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.fd.sock().multicast_loop_v6()
    }

    /// Join the IPv4 multicast group `multiaddr` on `interface`.
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.fd.sock().join_multicast_v4(multiaddr, interface)
    }

    /// Join the IPv6 multicast group `multiaddr` on interface index `interface`.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.fd.sock().join_multicast_v6(multiaddr, interface)
    }

    /// Leave an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.fd.sock().leave_multicast_v4(multiaddr, interface)
    }

    /// Leave an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.fd.sock().leave_multicast_v6(multiaddr, interface)
    }

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.sock().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.sock().ttl()
    }

    handle_methods!();
}

impl TryFrom<std::net::UdpSocket> for UdpSocket {
    type Error = io::Error;
    fn try_from(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        UdpSocket::from_std(s)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

fd_traits!(UdpSocket, std::net::UdpSocket);
