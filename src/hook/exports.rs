//! The interposed libc entry points. Defined `#[unsafe(no_mangle)]` in
//! the program, they come before the C library's in symbol resolution, so
//! std, every crate and every C library linked into the program calls
//! these. Each passes its call on as the kernel call (`sys.rs`) after the
//! state check of `block.rs`, and waits the hooked way only for a socket
//! the hooks manage.
//!
//! `fcntl` and `ioctl` are variadic in C; the x86-64 calling convention
//! passes a variadic call's arguments as a fixed one's, so they are taken
//! here as one machine word, which every command they forward reads as
//! its type. `fcntl64` is `fcntl` (C code built with 64-bit file offsets
//! calls it by that name).
//!
//! Not hooked, on purpose: `shutdown` (its hang-up reaches waiters through
//! the netpoller as an edge, so a plain `shutdown` already wakes them),
//! `socketpair`, `pipe`, `open` (their descriptors are classified when a
//! goroutine first uses them), and glibc's fortified `__recv_chk` and the
//! like (they call glibc's internal `recv`, which no interposition reaches;
//! that C code then blocks its thread, with the P handed on as for any
//! blocking call).

#![allow(clippy::missing_safety_doc)]

use std::os::fd::RawFd;
use std::sync::Once;
use std::sync::atomic::Ordering;
use std::time::Duration;

use libc::{c_int, c_long, c_ulong, c_void, size_t, socklen_t, ssize_t};

use super::block::{self, FORKED, may_park};
use super::poll::{self, FdSets};
use super::sys::{self, call};
use super::table::{self, MANAGED, USER_NB};
use crate::netpoll::Direction;

/// Make sure the hooks are linked into the program and a forked child is
/// handled: called when a runtime starts.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn child() {
            FORKED.store(true, Ordering::Relaxed);
        }
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(child)) };
    });
}

/// The syscall's result as the C function's type.
fn int(r: isize) -> c_int {
    r as c_int
}

/// The state a new socket gets: managed (non-blocking in the kernel) when
/// made by a goroutine; the kernel flag to add for it.
fn new_socket_state(asked_nonblocking: bool) -> (u32, c_int) {
    if may_park() {
        let user = if asked_nonblocking { USER_NB } else { 0 };
        (table::KNOWN | MANAGED | user, libc::SOCK_NONBLOCK)
    } else {
        (0, 0)
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let (state, add) = new_socket_state(ty & libc::SOCK_NONBLOCK != 0);
    // SAFETY: plain integers.
    let fd = int(unsafe {
        call(
            libc::SYS_socket,
            domain as usize,
            (ty | add) as usize,
            protocol as usize,
            0,
            0,
            0,
        )
    });
    if fd >= 0 {
        table::record(fd, state);
    }
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller vouches for `addr`.
    int(block::connect(fd, || unsafe {
        call(libc::SYS_connect, fd as usize, addr as usize, len as usize, 0, 0, 0)
    }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's pointers, passed on.
    unsafe { accept4(fd, addr, len, 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut libc::sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    let (state, add) = new_socket_state(flags & libc::SOCK_NONBLOCK != 0);
    // SAFETY: the caller vouches for `addr` and `len`.
    let new = int(block::io(fd, Direction::Read, || unsafe {
        call(
            libc::SYS_accept4,
            fd as usize,
            addr as usize,
            len as usize,
            (flags | add) as usize,
            0,
            0,
        )
    }));
    if new >= 0 {
        table::record(new, state);
    }
    new
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    // SAFETY: the caller vouches for `buf`.
    block::io(fd, Direction::Read, || unsafe {
        call(libc::SYS_read, fd as usize, buf as usize, n, 0, 0, 0)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    // SAFETY: the caller vouches for `buf`.
    block::io(fd, Direction::Write, || unsafe {
        call(libc::SYS_write, fd as usize, buf as usize, n, 0, 0, 0)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    // SAFETY: the caller vouches for `iov`.
    block::io(fd, Direction::Read, || unsafe {
        call(libc::SYS_readv, fd as usize, iov as usize, count as usize, 0, 0, 0)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    // SAFETY: the caller vouches for `iov`.
    block::io(fd, Direction::Write, || unsafe {
        call(libc::SYS_writev, fd as usize, iov as usize, count as usize, 0, 0, 0)
    })
}

/// A transfer with `flags`: `MSG_DONTWAIT` asks for no wait at all.
fn flagged(fd: RawFd, dir: Direction, flags: c_int, attempt: impl FnMut() -> isize) -> isize {
    let mut attempt = attempt;
    if flags & libc::MSG_DONTWAIT != 0 {
        return attempt();
    }
    block::io(fd, dir, attempt)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's pointers, passed on.
    unsafe { recvfrom(fd, buf, n, flags, std::ptr::null_mut(), std::ptr::null_mut()) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut libc::sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller vouches for `buf`, `addr` and `len`.
    flagged(fd, Direction::Read, flags, || unsafe {
        call(
            libc::SYS_recvfrom,
            fd as usize,
            buf as usize,
            n,
            flags as usize,
            addr as usize,
            len as usize,
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller vouches for `msg`.
    flagged(fd, Direction::Read, flags, || unsafe {
        call(libc::SYS_recvmsg, fd as usize, msg as usize, flags as usize, 0, 0, 0)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's pointers, passed on.
    unsafe { sendto(fd, buf, n, flags, std::ptr::null(), 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const libc::sockaddr,
    len: socklen_t,
) -> ssize_t {
    // SAFETY: the caller vouches for `buf` and `addr`.
    flagged(fd, Direction::Write, flags, || unsafe {
        call(
            libc::SYS_sendto,
            fd as usize,
            buf as usize,
            n,
            flags as usize,
            addr as usize,
            len as usize,
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller vouches for `msg`.
    flagged(fd, Direction::Write, flags, || unsafe {
        call(libc::SYS_sendmsg, fd as usize, msg as usize, flags as usize, 0, 0, 0)
    })
}

/// A `poll` timeout in milliseconds (negative: none).
fn ms_timeout(ms: c_int) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn timeout_ms(t: Option<Duration>) -> c_int {
    t.map_or(-1, |t| {
        c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let blocking = |t: Option<Duration>| {
        // SAFETY: the caller vouches for `fds`.
        unsafe {
            call(
                libc::SYS_poll,
                fds as usize,
                n as usize,
                timeout_ms(t) as usize,
                0,
                0,
                0,
            )
        }
    };
    // SAFETY: as above.
    int(unsafe { poll::poll(fds, n, ms_timeout(timeout), blocking) })
}

fn timespec_duration(ts: *const libc::timespec) -> Option<Duration> {
    // SAFETY: the caller of the hook vouches for a non-null `ts`.
    let ts = unsafe { ts.as_ref() }?;
    Some(Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    ))
}

fn duration_timespec(t: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as c_long,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let blocking = |t: Option<Duration>| {
        // glibc's ppoll passes a copy: the kernel writes the time left.
        let mut copy = t.map(duration_timespec);
        let tsp = copy.as_mut().map_or(std::ptr::null_mut(), |c| c as *mut libc::timespec);
        // SAFETY: the caller vouches for `fds` and `sigmask`.
        unsafe {
            call(
                libc::SYS_ppoll,
                fds as usize,
                n as usize,
                tsp as usize,
                sigmask as usize,
                8,
                0,
            )
        }
    };
    let timeout = timespec_duration(ts);
    if !sigmask.is_null() {
        return int(blocking(timeout));
    }
    // SAFETY: as above.
    int(unsafe { poll::poll(fds, n, timeout, blocking) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    // SAFETY: the caller vouches for a non-null `tv`.
    let timeout = unsafe { tv.as_ref() }
        .map(|tv| Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64));
    let start = std::time::Instant::now();
    let blocking = |t: Option<Duration>| {
        let mut left = t.map(|t| libc::timeval {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_usec: t.subsec_micros().into(),
        });
        let tvp = left.as_mut().map_or(std::ptr::null_mut(), |l| l as *mut libc::timeval);
        // SAFETY: the caller vouches for the sets.
        unsafe {
            call(
                libc::SYS_select,
                nfds as usize,
                r as usize,
                w as usize,
                e as usize,
                tvp as usize,
                0,
            )
        }
    };
    let sets: FdSets = [r, w, e];
    // SAFETY: as above.
    let n = int(unsafe { poll::select(nfds, sets, timeout, blocking) });
    // Linux's select reports the time left in `tv`.
    if let (Some(t), false) = (timeout, tv.is_null()) {
        let left = t.saturating_sub(start.elapsed());
        // SAFETY: non-null, the caller's.
        unsafe {
            (*tv).tv_sec = left.as_secs() as libc::time_t;
            (*tv).tv_usec = left.subsec_micros().into();
        }
    }
    n
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let blocking = |t: Option<Duration>| {
        let mut copy = t.map(duration_timespec);
        let tsp = copy.as_mut().map_or(std::ptr::null_mut(), |c| c as *mut libc::timespec);
        // The kernel's sixth argument: the mask and its size.
        let mask: [usize; 2] = [sigmask as usize, 8];
        let maskp = if sigmask.is_null() { 0 } else { &raw const mask as usize };
        // SAFETY: the caller vouches for the sets and the mask.
        unsafe {
            call(
                libc::SYS_pselect6,
                nfds as usize,
                r as usize,
                w as usize,
                e as usize,
                tsp as usize,
                maskp,
            )
        }
    };
    let timeout = timespec_duration(ts);
    if !sigmask.is_null() {
        return int(blocking(timeout));
    }
    // SAFETY: as above.
    int(unsafe { poll::select(nfds, [r, w, e], timeout, blocking) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    retire(fd);
    // SAFETY: closing a descriptor number is the caller's call.
    int(unsafe { call(libc::SYS_close, fd as usize, 0, 0, 0, 0, 0) })
}

/// Empty `fd`'s entry before its number is closed or replaced.
fn retire(fd: RawFd) {
    let Some(entry) = table::get(fd).filter(|e| e.is_live()) else {
        return;
    };
    if FORKED.load(Ordering::Relaxed) {
        // Nothing waits in a child: forget the state, leave the parent's
        // registration alone.
        entry.state.store(0, Ordering::Release);
        return;
    }
    entry.retire(|| {
        if may_park() {
            crate::sched::yield_now();
        } else {
            std::thread::yield_now();
        }
    });
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller vouches for `value`.
    let r = int(unsafe {
        call(
            libc::SYS_setsockopt,
            fd as usize,
            level as usize,
            name as usize,
            value as usize,
            len as usize,
            0,
        )
    });
    let dir = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => Direction::Read,
        (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => Direction::Write,
        _ => return r,
    };
    if r == 0
        && let Some(entry) = table::get(fd)
    {
        entry.set_timeout(dir, sys::timeout(fd, dir));
    }
    r
}

/// Record the owner's non-blocking flag on a managed socket; true if it
/// is managed (then the kernel's flag stays set).
fn set_user_nonblocking(fd: RawFd, on: bool) -> bool {
    let Some(entry) = table::get(fd) else { return false };
    let managed = entry
        .state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            (s & MANAGED != 0).then_some(if on { s | USER_NB } else { s & !USER_NB })
        })
        .is_ok();
    if managed && on {
        entry.release_netfd();
    }
    if !managed && entry.state.load(Ordering::Acquire) != 0 && !on {
        // A socket a goroutine found non-blocking and left unmanaged is
        // looked at again at its next use.
        entry.state.store(0, Ordering::Release);
    }
    managed
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let state = table::state(fd);
    let mut arg = arg as usize;
    if cmd == libc::F_SETFL && set_user_nonblocking(fd, arg as c_int & libc::O_NONBLOCK != 0) {
        arg |= libc::O_NONBLOCK as usize;
    }
    // SAFETY: the caller's command and argument, passed on.
    let r = int(unsafe { call(libc::SYS_fcntl, fd as usize, cmd as usize, arg, 0, 0, 0) });
    match cmd {
        libc::F_GETFL if r >= 0 && state & MANAGED != 0 => {
            let user = if state & USER_NB != 0 { libc::O_NONBLOCK } else { 0 };
            (r & !libc::O_NONBLOCK) | user
        }
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC if r >= 0 => {
            table::record(r, state);
            r
        }
        _ => r,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the same function under its other name.
    unsafe { fcntl(fd, cmd, arg) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    let mut on: c_int = 1;
    let mut arg = arg;
    if request == libc::FIONBIO as c_ulong && !arg.is_null() {
        // SAFETY: FIONBIO's argument is a pointer to an int.
        let asked = unsafe { *arg.cast::<c_int>() } != 0;
        if set_user_nonblocking(fd, asked) {
            arg = (&raw mut on).cast();
        }
    }
    // SAFETY: the caller's request and argument, passed on.
    int(unsafe { call(libc::SYS_ioctl, fd as usize, request as usize, arg as usize, 0, 0, 0) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: plain integers.
    let new = int(unsafe { call(libc::SYS_dup, fd as usize, 0, 0, 0, 0, 0) });
    if new >= 0 {
        table::record(new, table::state(fd));
    }
    new
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: plain integers.
    unsafe { dup3_inner(old, new, 0, libc::SYS_dup2) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: plain integers.
    unsafe { dup3_inner(old, new, flags, libc::SYS_dup3) }
}

/// `dup2`/`dup3` (`nr`): the replaced descriptor is retired first, as a
/// `close` of it would be, and the new one inherits the old one's state.
///
/// # Safety
/// None beyond the system call's own rules.
unsafe fn dup3_inner(old: RawFd, new: RawFd, flags: c_int, nr: c_long) -> c_int {
    let state = table::state(old);
    if old != new {
        retire(new);
    }
    // SAFETY: plain integers.
    let r = int(unsafe { call(nr, old as usize, new as usize, flags as usize, 0, 0, 0) });
    if r >= 0 && old != new {
        table::record(r, state);
    }
    r
}
