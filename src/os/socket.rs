//! The two system calls on a connected stream socket's hot path, `recv` and
//! `send`, made through glibc's bare `syscall` rather than its `recv` and
//! `send` wrappers. Those wrappers are pthread cancellation points: each
//! call switches asynchronous cancellation on and off around the system
//! call. Threads running Rust are never cancelled, so that work buys
//! nothing here; skipping it took a `tcp_echo` round trip from about 994
//! to 902 user-space instructions (callgrind, one P).
//!
//! Same semantics as std's `TcpStream::read` and `write` (flags 0 and
//! `MSG_NOSIGNAL`, length capped at `isize::MAX`); `errno` is read
//! right after the call, on the thread that made it.
//!
//! `send_vectored` is `write_vectored` as `sendmsg` with `MSG_NOSIGNAL`:
//! std's `writev` raises SIGPIPE on a connection the peer has closed,
//! which kills a program that has not left SIGPIPE ignored.

use std::io;
use std::os::fd::RawFd;

/// Read what is there into `buf` (0: end of stream).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its whole length during the call.
    unsafe { transfer(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), 0) }
}

/// Write as much of `buf` as the socket takes; a closed peer is `EPIPE`,
/// never SIGPIPE.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its whole length; sendto only reads it.
    unsafe {
        transfer(
            libc::SYS_sendto,
            fd,
            buf.as_ptr().cast_mut(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    }
}

/// Write as much of `bufs`, in order, as the socket takes; a closed peer
/// is `EPIPE`, never SIGPIPE.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // Linux's `UIO_MAXIOV`; std's `writev` caps its count the same way.
    const MAX_SLICES: usize = 1024;
    // SAFETY: an all-zero `msghdr` is a valid value (no name, no control
    // data, no slices).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` (std documents it); sendmsg
    // only reads the slices.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = bufs.len().min(MAX_SLICES);
    // SAFETY: `msg` points at `bufs`, alive and readable for the call.
    let n = unsafe { libc::syscall(libc::SYS_sendmsg, fd, &msg as *const libc::msghdr, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recvfrom` or `sendto` (`nr`) on `len` bytes at `buf`, with no address,
/// as `recv` and `send` make them.
///
/// # Safety
/// `buf` must be valid for `len` bytes for what `nr` does with them.
unsafe fn transfer(nr: libc::c_long, fd: RawFd, buf: *mut u8, len: usize, flags: libc::c_int) -> io::Result<usize> {
    let len = len.min(isize::MAX as usize);
    // SAFETY: the caller vouches for `buf`; the address arguments are a
    // null pointer and a zero (recvfrom's null length pointer, sendto's
    // zero length), which the kernel reads as "no address".
    let n = unsafe { libc::syscall(nr, fd, buf, len, flags, std::ptr::null_mut::<libc::sockaddr>(), 0usize) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
