//! The `hook-io` feature with std's own sockets: blocking calls made on
//! goroutines park them on the netpoller (a dump shows `IO wait`, and a
//! thousand of them blocked at once need no thread each), and everything
//! a blocking socket promises its owner still holds — timeouts,
//! non-blocking mode as the owner set it, close while blocked, fork — on
//! goroutines and on plain threads alike.
#![cfg(feature = "hook-io")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::guarded;

/// Threads of this process, as the kernel counts them.
fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The kernel's own O_NONBLOCK flag of `fd` (not the hooks' answer).
fn kernel_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL on an open descriptor.
    let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) } as i32;
    assert!(flags >= 0, "F_GETFL failed");
    flags & libc::O_NONBLOCK != 0
}

/// What `fcntl(F_GETFL)` tells the owner.
fn owner_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL on an open descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL failed");
    flags & libc::O_NONBLOCK != 0
}

fn runtime() -> gort::Runtime {
    gort::Runtime::builder().procs(2).build().unwrap()
}

/// A thousand goroutines blocked in std `TcpStream` reads park on the
/// netpoller: the dump shows them in `IO wait`, the process keeps about
/// procs + a few threads, and each still gets its byte.
#[test]
fn a_thousand_std_tcp_reads_park_without_a_thread_each() {
    const N: usize = 1000;
    guarded(|| {
        let rt = runtime();
        let base = os_threads();
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptor = gort::go(move || (0..N).map(|_| listener.accept().unwrap().0).collect::<Vec<_>>());
            let readers: Vec<_> = (0..N)
                .map(|i| {
                    gort::go(move || {
                        let mut s = TcpStream::connect(addr).unwrap();
                        s.write_all(&[(i % 251) as u8]).unwrap();
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b).unwrap();
                        b[0]
                    })
                })
                .collect();
            let mut served = acceptor.join().unwrap();
            // Every reader is parked in its read once its byte was accepted.
            while gort::runtime::goroutines()
                .iter()
                .filter(|g| g.wait_reason == Some("IO wait"))
                .count()
                < N
            {
                gort::time::sleep(Duration::from_millis(5));
            }
            let mut dump = Vec::new();
            gort::runtime::dump(&mut dump).unwrap();
            assert!(
                String::from_utf8_lossy(&dump).contains("IO wait"),
                "no IO wait in the dump"
            );
            let threads = os_threads() - base;
            assert!(
                threads <= 2 + 6,
                "{threads} threads beyond the {base} before the runtime, with {N} blocked reads"
            );
            // Echo each reader's byte back, plus one.
            for s in &mut served {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                s.write_all(&[b[0].wrapping_add(1)]).unwrap();
            }
            let mut got: Vec<u8> = readers.into_iter().map(|h| h.join().unwrap()).collect();
            let mut want: Vec<u8> = (0..N).map(|i| (i % 251) as u8 + 1).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want);
        });
    });
}

/// UDP and Unix stream sockets park too.
#[test]
fn std_udp_and_unix_reads_park() {
    guarded(|| {
        runtime().block_on(|| {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = udp.local_addr().unwrap();
            let reader = gort::go(move || {
                let mut b = [0u8; 16];
                let (n, _) = udp.recv_from(&mut b).unwrap();
                b[..n].to_vec()
            });
            common::wait_until_parked(&reader, "IO wait");
            UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"dgram", addr).unwrap();
            assert_eq!(reader.join().unwrap(), b"dgram");

            let (mut a, mut b) = UnixStream::pair().unwrap();
            let reader = gort::go(move || {
                let mut s = String::new();
                b.read_to_string(&mut s).unwrap();
                s
            });
            common::wait_until_parked(&reader, "IO wait");
            a.write_all(b"unix").unwrap();
            drop(a);
            assert_eq!(reader.join().unwrap(), "unix");
        });
    });
}

/// `set_read_timeout` ends a read with `WouldBlock` (EAGAIN) at the
/// deadline, on a goroutine as on a thread; a write timeout likewise once
/// the peer stops reading.
#[test]
fn timeouts_end_blocked_calls_with_eagain() {
    fn check() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let start = Instant::now();
        let e = s.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert!(
            start.elapsed() >= Duration::from_millis(45),
            "timed out early: {:?}",
            start.elapsed()
        );
        s.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
        let chunk = vec![0u8; 1 << 16];
        let e = loop {
            if let Err(e) = s.write(&chunk) {
                break e;
            }
        };
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    }
    guarded(|| {
        check();
        runtime().block_on(|| gort::go(check).join().unwrap());
    });
}

/// The owner's non-blocking mode: a socket it made non-blocking returns
/// `WouldBlock` at once, and `F_GETFL` reports the mode it set, while the
/// kernel keeps the socket non-blocking underneath once a goroutine made it.
#[test]
fn the_owners_nonblocking_mode_is_kept() {
    guarded(|| {
        runtime().block_on(|| {
            gort::go(|| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let _peer = listener.accept().unwrap();
                let fd = s.as_raw_fd();
                assert!(!owner_nonblocking(fd));
                assert!(
                    kernel_nonblocking(fd),
                    "a goroutine's socket is non-blocking in the kernel"
                );
                s.set_nonblocking(true).unwrap();
                assert!(owner_nonblocking(fd));
                assert_eq!((&s).read(&mut [0u8; 4]).unwrap_err().kind(), ErrorKind::WouldBlock);
                s.set_nonblocking(false).unwrap();
                assert!(!owner_nonblocking(fd));
                assert!(kernel_nonblocking(fd));
                // The listener too: a non-blocking accept with nobody there.
                listener.set_nonblocking(true).unwrap();
                assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
            })
            .join()
            .unwrap();
        });
    });
}

/// On a plain thread, a socket made there is left alone (blocking in the
/// kernel); one a goroutine made is still blocking for a thread that uses
/// it: its read waits for the data.
#[test]
fn plain_threads_see_blocking_sockets() {
    guarded(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = TcpStream::connect(addr).unwrap();
        assert!(!kernel_nonblocking(s.as_raw_fd()), "a thread's socket was changed");
        let (peer, _) = listener.accept().unwrap();
        drop((s, peer));

        let rt = runtime();
        let mut s = rt.block_on(move || gort::go(move || TcpStream::connect(addr).unwrap()).join().unwrap());
        assert!(kernel_nonblocking(s.as_raw_fd()));
        let (mut peer, _) = listener.accept().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(b"late").unwrap();
        });
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"late");
        writer.join().unwrap();
    });
}

/// A `close` of a descriptor a goroutine is blocked on wakes it with
/// `EBADF`, and that goroutine never reads the socket that takes the
/// number next.
#[test]
fn close_wakes_a_blocked_goroutine_with_ebadf() {
    guarded(|| {
        runtime().block_on(|| {
            let (a, b) = UnixStream::pair().unwrap();
            let fd = a.into_raw_fd();
            let reader = gort::go(move || {
                let mut buf = [0u8; 8];
                // SAFETY: a valid buffer; `fd` is closed under us on purpose.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                (n, std::io::Error::last_os_error().raw_os_error())
            });
            common::wait_until_parked(&reader, "IO wait");
            // SAFETY: we own `fd` (from into_raw_fd).
            assert_eq!(unsafe { libc::close(fd) }, 0);
            // The number is free: the next socket most likely takes it, and
            // its byte must stay unread.
            let (mut c, d) = UnixStream::pair().unwrap();
            c.write_all(b"x").unwrap();
            assert_eq!(reader.join().unwrap(), (-1, Some(libc::EBADF)));
            let mut one = [0u8; 1];
            d.set_nonblocking(true).unwrap();
            assert_eq!((&d).read(&mut one).unwrap(), 1, "the new socket's byte was taken");
            drop(b);
        });
    });
}

/// A goroutine forks; the child, which has no runtime, uses a socket the
/// parent's goroutine made (non-blocking in the kernel) as a blocking one.
#[test]
fn a_forked_child_uses_blocking_sockets() {
    guarded(|| {
        runtime().block_on(|| {
            gort::go(|| {
                let (mut a, mut b) = UnixStream::pair().unwrap();
                a.write_all(b"?").unwrap();
                b.read_exact(&mut [0u8; 1]).unwrap();
                assert!(kernel_nonblocking(b.as_raw_fd()));
                // SAFETY: the child only makes system calls and exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let mut got = [0u8; 5];
                    let ok = b.read_exact(&mut got).is_ok() && &got == b"hello";
                    // SAFETY: leaves the child at once.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) };
                }
                assert!(pid > 0, "fork failed");
                gort::time::sleep(Duration::from_millis(50));
                a.write_all(b"hello").unwrap();
                let mut status = 0;
                // SAFETY: our child.
                gort::blocking(|| unsafe { libc::waitpid(pid, &mut status, 0) });
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child failed: {status:#x}"
                );
            })
            .join()
            .unwrap();
        });
    });
}

/// Errors come through as the kernel gives them: a refused connection
/// (a connect in progress parked, then `SO_ERROR`), a broken pipe with no
/// SIGPIPE (std asks for `MSG_NOSIGNAL`), end of file.
#[test]
fn refused_connections_broken_pipes_and_eof_are_reported() {
    guarded(|| {
        runtime().block_on(|| {
            gort::go(|| {
                let port = {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    l.local_addr().unwrap()
                };
                let e = TcpStream::connect(port).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let mut s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (peer, _) = listener.accept().unwrap();
                drop(peer);
                assert_eq!(s.read(&mut [0u8; 8]).unwrap(), 0, "end of file");
                let e = loop {
                    if let Err(e) = s.write_all(&[0u8; 4096]) {
                        break e;
                    }
                };
                assert!(
                    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                    "{e}"
                );
            })
            .join()
            .unwrap();
        });
    });
}

/// A goroutine waiting in libc's `poll` on a socket parks (`IO wait`) and
/// wakes with the socket's readiness, one sleeping in a `poll` without
/// descriptors sleeps parked; a `dup` of a managed socket carries its
/// state.
#[test]
fn poll_parks_and_dup_keeps_the_state() {
    guarded(|| {
        runtime().block_on(|| {
            let (mut a, b) = UnixStream::pair().unwrap();
            let fd = b.as_raw_fd();
            let poller = gort::go(move || {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
                // Its first read on a goroutine makes the socket managed.
                assert_eq!((&b).read(&mut [0u8; 1]).unwrap(), 1);
                (n, pfd.revents, b)
            });
            common::wait_until_parked(&poller, "IO wait");
            a.write_all(b"p").unwrap();
            let (n, revents, b) = poller.join().unwrap();
            assert_eq!((n, revents & libc::POLLIN), (1, libc::POLLIN));

            // No descriptors: a sleep, which a goroutine sleeps parked.
            // SAFETY: poll with no descriptors only waits.
            let sleeper = gort::go(|| unsafe { libc::poll(std::ptr::null_mut(), 0, 200) });
            common::wait_until_parked(&sleeper, "sleep");
            assert_eq!(sleeper.join().unwrap(), 0);

            let copy = gort::go(move || {
                // SAFETY: dup of an open descriptor.
                let d = unsafe { libc::dup(b.as_raw_fd()) };
                assert!(d >= 0);
                (owner_nonblocking(d), kernel_nonblocking(d), b, d)
            });
            let (owner, kernel, _b, d) = copy.join().unwrap();
            assert!(!owner && kernel, "owner sees blocking, the kernel non-blocking");
            // SAFETY: ours.
            unsafe { libc::close(d) };
        });
    });
}
