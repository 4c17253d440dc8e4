//! The system calls behind the hooks, made with glibc's bare `syscall`:
//! the hooks replace glibc's wrappers of the same names, so they cannot
//! call those, and `dlsym(RTLD_NEXT, ...)` would add a lookup that can
//! allocate (its error string) and a per-symbol pointer to keep. On
//! x86-64 Linux every wrapper the hooks replace is one system call with
//! the same arguments, except that glibc's are pthread cancellation
//! points (Rust never cancels threads; `os/socket.rs` measured what the
//! cancellation bracket costs) and that glibc's `ppoll` and `pselect` copy
//! the timeout the kernel would update (the callers here do the same).
//!
//! Every function here is async-signal-safe: a hook called from a signal
//! handler ends up here and nowhere else.

use std::os::fd::RawFd;
use std::time::Duration;

use libc::{c_int, c_long};

use crate::netpoll::Direction;

/// The calling thread's `errno`.
#[inline]
pub(super) fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno`.
#[inline]
pub(super) fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Fail with `e` as a C call does: `errno` set, -1 returned.
pub(super) fn fail(e: c_int) -> isize {
    set_errno(e);
    -1
}

/// System call `nr` with up to six arguments, as glibc's wrapper makes it.
///
/// # Safety
/// The arguments must be valid for `nr` as its manual page says.
#[inline]
pub(super) unsafe fn call(nr: c_long, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    // SAFETY: the caller vouches for the arguments.
    unsafe { libc::syscall(nr, a, b, c, d, e, f) as isize }
}

/// `fcntl(fd, cmd, arg)` without the hook.
pub(super) fn fcntl(fd: RawFd, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: the commands used here (F_GETFL, F_SETFL) take an int or nothing.
    unsafe { call(libc::SYS_fcntl, fd as usize, cmd as usize, arg, 0, 0, 0) as c_int }
}

/// Whether `fd` is a socket (`getsockopt` fails with `ENOTSOCK` on
/// anything else).
pub(super) fn is_socket(fd: RawFd) -> bool {
    let mut ty: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are valid for writing, `len` holds its size.
    let r = unsafe {
        call(
            libc::SYS_getsockopt,
            fd as usize,
            libc::SOL_SOCKET as usize,
            libc::SO_TYPE as usize,
            &raw mut ty as usize,
            &raw mut len as usize,
            0,
        )
    };
    r == 0
}

/// `getsockopt(fd, SOL_SOCKET, opt)` for an int option.
pub(super) fn sock_int(fd: RawFd, opt: c_int) -> Result<c_int, c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: as in `is_socket`.
    let r = unsafe {
        call(
            libc::SYS_getsockopt,
            fd as usize,
            libc::SOL_SOCKET as usize,
            opt as usize,
            &raw mut v as usize,
            &raw mut len as usize,
            0,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(v) }
}

/// The socket's `SO_RCVTIMEO` (`Read`) or `SO_SNDTIMEO` (`Write`); None
/// when unset (or unreadable).
pub(super) fn timeout(fd: RawFd, dir: Direction) -> Option<Duration> {
    let opt = match dir {
        Direction::Read => libc::SO_RCVTIMEO,
        Direction::Write => libc::SO_SNDTIMEO,
    };
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid for writing, `len` holds its size.
    let r = unsafe {
        call(
            libc::SYS_getsockopt,
            fd as usize,
            libc::SOL_SOCKET as usize,
            opt as usize,
            &raw mut tv as usize,
            &raw mut len as usize,
            0,
        )
    };
    timeval_duration(r, &tv)
}

/// A `timeval` the kernel returned (`r`: the call's result) as a timeout.
pub(super) fn timeval_duration(r: isize, tv: &libc::timeval) -> Option<Duration> {
    if r < 0 || (tv.tv_sec <= 0 && tv.tv_usec <= 0) {
        return None;
    }
    Some(Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64))
}

/// Wait on a thread until `fd` is ready for `dir` or `timeout` passes:
/// the result of `poll` (0: timed out).
pub(super) fn poll_one(fd: RawFd, dir: Direction, timeout: Option<Duration>) -> isize {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.map_or(-1, |t| {
        // Round up: a timeout of 100 us must not become a busy poll.
        c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
    });
    // SAFETY: one valid pollfd.
    unsafe { call(libc::SYS_poll, &raw mut pfd as usize, 1, ms as usize, 0, 0, 0) }
}
