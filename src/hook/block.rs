//! How a hooked call that may block waits: the goroutine parks on the
//! netpoller, a thread sleeps in `poll`.
//!
//! A call on a descriptor that is not a managed socket, or whose owner set
//! it non-blocking, is made as it is. A call on a managed socket (which is
//! non-blocking in the kernel but blocking for its owner) first tries the
//! system call; on `EAGAIN`:
//!
//! - on a goroutine that may park (`may_park`), through `NetFd`'s retry
//!   loop (`net/fd.rs`): the goroutine parks on the socket's poll
//!   registration, one waiter per direction, the owner's `SO_RCVTIMEO`/
//!   `SO_SNDTIMEO` as the timeout (`EAGAIN` when it passes, as the kernel
//!   reports a blocking call's timeout), and a `close` of the descriptor by
//!   anyone wakes it with `EBADF`;
//! - anywhere else (a plain thread, a signal handler, inside
//!   `gort::blocking`, a forked child), with the blocking call emulated by
//!   `poll` and a retry, so the caller sees what a blocking socket would
//!   give it. The thread does not hold the entry while it sleeps (a
//!   blocking call does not keep `close` waiting either); after it, a
//!   changed generation means the number was closed, and the call fails
//!   with `EBADF` rather than touch whatever the number names now.
//!
//! A goroutine decides whether it may park from its M (`current_m`): it
//! runs a goroutine outside any runtime critical section and outside
//! `gort::blocking`, and the stack pointer is inside that goroutine's stack
//! (a signal handler runs on the alternate signal stack, the scheduler on
//! g0). A descriptor seen for the first time on a goroutine is classified
//! once (`classify`): a socket becomes managed, anything else is left
//! alone for good (until it is closed).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use libc::c_int;

use super::sys;
use super::table::{self, Entry, KNOWN, MANAGED, USER_NB};
use crate::netpoll::Direction;
use crate::sched::current_m;

/// Set in a forked child: nothing of the runtime runs there, so no call
/// parks (`exports.rs`'s fork handler).
pub(super) static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether the caller is goroutine code that may park (module header).
#[inline]
pub(super) fn may_park() -> bool {
    if FORKED.load(Ordering::Relaxed) {
        return false;
    }
    let Some(m) = current_m() else { return false };
    let Some(g) = m.curg.get() else { return false };
    if m.locks.get() > 0 || m.in_blocking.load(Ordering::Relaxed) {
        return false;
    }
    let here = 0u8;
    let sp = &raw const here as usize;
    // SAFETY: we run on g's M, which owns g while running it.
    let Some(stack) = (unsafe { g.stack_ref() }) else {
        return false;
    };
    sp > stack.lo() && sp <= stack.top()
}

/// `fd`'s state, classifying it first if nothing is known and a goroutine
/// asks: the one check every hooked call makes.
#[inline]
pub(super) fn state_for_call(fd: RawFd) -> u32 {
    let state = table::state(fd);
    if state != 0 || !may_park() {
        return state;
    }
    classify(fd)
}

/// Look at a descriptor a goroutine uses for the first time: a socket
/// becomes managed (non-blocking in the kernel, its owner's mode kept).
#[cold]
fn classify(fd: RawFd) -> u32 {
    let Some(entry) = table::get_or_make(fd) else { return 0 };
    let state = if sys::is_socket(fd) {
        let flags = sys::fcntl(fd, libc::F_GETFL, 0);
        if flags < 0 {
            return 0;
        }
        if flags & libc::O_NONBLOCK != 0 {
            KNOWN | MANAGED | USER_NB
        } else if sys::fcntl(fd, libc::F_SETFL, (flags | libc::O_NONBLOCK) as usize) == 0 {
            KNOWN | MANAGED
        } else {
            0
        }
    } else {
        KNOWN
    };
    match entry
        .state
        .compare_exchange(0, state, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => state,
        Err(now) => now,
    }
}

/// Whether a call on a descriptor in `state` must emulate blocking.
#[inline]
pub(super) fn blocks(state: u32) -> bool {
    state & (MANAGED | USER_NB) == MANAGED
}

/// A call's result as `NetFd` takes it (`errno` read at once, on the
/// thread that made the call).
fn result(r: isize) -> io::Result<isize> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `NetFd`'s error as the C caller's `errno`: its deadline is the
/// kernel's `timed_out` (`EAGAIN`, `EINPROGRESS` for a connect), a close
/// while waiting is `EBADF`.
fn finish(r: io::Result<isize>, timed_out: c_int) -> isize {
    match r {
        Ok(n) => n,
        Err(e) => sys::fail(match e.raw_os_error() {
            Some(code) => code,
            None if e.kind() == io::ErrorKind::TimedOut => timed_out,
            None => libc::EBADF,
        }),
    }
}

/// Make the call `attempt` on `fd` for `dir`, waiting as its owner's mode
/// says (module header). `attempt` returns the system call's result with
/// `errno` set.
#[inline]
pub(super) fn io(fd: RawFd, dir: Direction, mut attempt: impl FnMut() -> isize) -> isize {
    if !blocks(state_for_call(fd)) {
        return attempt();
    }
    wait_io(fd, dir, &mut attempt)
}

#[cold]
fn wait_io(fd: RawFd, dir: Direction, attempt: &mut dyn FnMut() -> isize) -> isize {
    let Some(entry) = table::get(fd) else { return attempt() };
    let Some(hold) = entry.hold() else {
        return sys::fail(libc::EBADF);
    };
    if may_park()
        && let Some(nfd) = hold.netfd(fd)
    {
        let r = match dir {
            Direction::Read => nfd.read(|_| result(attempt())),
            Direction::Write => nfd.write(|_| result(attempt())),
        };
        return finish(r, libc::EAGAIN);
    }
    let generation = hold.generation();
    drop(hold);
    thread_io(entry, generation, fd, dir, attempt)
}

/// The blocking call emulated on a thread: try, `poll`, try again, until
/// the owner's timeout.
fn thread_io(
    entry: &'static Entry,
    generation: u64,
    fd: RawFd,
    dir: Direction,
    attempt: &mut dyn FnMut() -> isize,
) -> isize {
    let mut deadline = None;
    loop {
        let r = attempt();
        if r >= 0 || sys::errno() != libc::EAGAIN {
            return r;
        }
        let d = *deadline.get_or_insert_with(|| sys::timeout(fd, dir).and_then(crate::sched::timers::deadline_after));
        if !thread_wait(entry, generation, fd, dir, d) {
            return -1;
        }
    }
}

/// Sleep in `poll` until `fd` is ready for `dir`; false (with `errno`)
/// when `deadline` passed (`EAGAIN`) or the descriptor was closed
/// meanwhile (`EBADF`).
fn thread_wait(entry: &'static Entry, generation: u64, fd: RawFd, dir: Direction, deadline: Option<Instant>) -> bool {
    let left = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                sys::set_errno(libc::EAGAIN);
                return false;
            }
        },
    };
    let n = sys::poll_one(fd, dir, left);
    if entry.renew(generation).is_none() {
        sys::set_errno(libc::EBADF);
        return false;
    }
    if n == 0 {
        sys::set_errno(libc::EAGAIN);
        return false;
    }
    // Ready, an error to report, or EINTR: a blocking call whose signal
    // handler has SA_RESTART (std's and most handlers) carries on.
    true
}

/// `connect` as a blocking socket makes it: a connection in progress
/// waits for writability (the owner's `SO_SNDTIMEO`: `EINPROGRESS` when it
/// passes, as the kernel says), then reports `SO_ERROR`.
pub(super) fn connect(fd: RawFd, attempt: impl FnOnce() -> isize) -> isize {
    let state = state_for_call(fd);
    let r = attempt();
    if !blocks(state) || r == 0 || sys::errno() != libc::EINPROGRESS {
        return r;
    }
    wait_connected(fd)
}

#[cold]
fn wait_connected(fd: RawFd) -> isize {
    let Some(entry) = table::get(fd) else {
        return sys::fail(libc::EINPROGRESS);
    };
    let Some(hold) = entry.hold() else {
        return sys::fail(libc::EBADF);
    };
    let deadline = sys::timeout(fd, Direction::Write).and_then(crate::sched::timers::deadline_after);
    if may_park()
        && let Some(nfd) = hold.netfd(fd)
    {
        loop {
            if let Err(e) = nfd.wait_writable(deadline) {
                return finish(Err(e), libc::EINPROGRESS);
            }
            match handshake(fd) {
                Some(r) => return r,
                None if deadline.is_some_and(|d| Instant::now() >= d) => return sys::fail(libc::EINPROGRESS),
                // A stale edge (netpoll's header): wait again.
                None => {}
            }
        }
    }
    let generation = hold.generation();
    drop(hold);
    loop {
        if !thread_wait(entry, generation, fd, Direction::Write, deadline) {
            let e = sys::errno();
            return sys::fail(if e == libc::EAGAIN { libc::EINPROGRESS } else { e });
        }
        if let Some(r) = handshake(fd) {
            return r;
        }
    }
}

/// After writability, a connect's outcome: done (0), failed (-1 with its
/// error), or not known yet (None).
#[inline(never)]
fn handshake(fd: RawFd) -> Option<isize> {
    match sys::sock_int(fd, libc::SO_ERROR) {
        Ok(0) => {}
        Ok(e) | Err(e) => return Some(sys::fail(e)),
    }
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writing, `len` holds its size.
    let r = unsafe {
        sys::call(
            libc::SYS_getpeername,
            fd as usize,
            &raw mut addr as usize,
            &raw mut len as usize,
            0,
            0,
            0,
        )
    };
    match r {
        0 => Some(0),
        _ if sys::errno() == libc::ENOTCONN => None,
        _ => Some(-1),
    }
}
