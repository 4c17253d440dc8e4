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

use std::io;
use std::os::fd::RawFd;

/// Read what is there into `buf` (0: end of stream).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    // SAFETY: `buf` is writable for `len` bytes during the call; the address
    // arguments are null, as recv(2) passes them.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            len,
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    result(n)
}

/// Write as much of `buf` as the socket takes; a closed peer is `EPIPE`,
/// never SIGPIPE.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    // SAFETY: `buf` is readable for `len` bytes during the call; a null
    // address of length 0 is what send(2) passes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            len,
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    result(n)
}

fn result(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
