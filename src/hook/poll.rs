//! `poll`, `ppoll`, `select` and `pselect` on a goroutine: C client
//! libraries make their sockets non-blocking and wait in these (libcurl
//! in `select`, which glibc makes as `pselect6`), so a goroutine must park
//! here as it does in a read.
//!
//! The set is first checked without waiting (the system call with a zero
//! timeout). If nothing is ready, the goroutine registers on the poll slot
//! of every (descriptor, direction) in the set (`Registration::wait_any`),
//! checks once more, and parks until an edge, its deadline, or a `close`
//! of one of the descriptors; then it checks again, and waits again for
//! what is left of the timeout if nothing turned out ready (an edge may be
//! stale, or for a direction the caller did not ask about).
//!
//! Registering needs each descriptor's one-waiter lock per direction
//! (`net/fd.rs`). A set the netpoller cannot wait on goes to the kernel
//! as it is, and the thread blocks there (sysmon hands its P on, as for any
//! blocking call): a set naming more than `MAX_SET` descriptors, a regular
//! file (epoll refuses those), a socket another owner registered
//! (`gort::net`'s own), a direction another goroutine is waiting on right
//! now, or a call with a signal mask (`ppoll`/`pselect`'s mask is about
//! signals reaching the thread while it waits, which parking cannot keep).
//! Pipes and other pollable descriptors in a set are waited for like
//! sockets (only their registration is made; their reads and writes are
//! not hooked).
//!
//! A descriptor closed while the goroutine waits is reported as the kernel
//! reports a closed descriptor: `POLLNVAL` for `poll`, `EBADF` for
//! `select`.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::block::may_park;
use super::sys;
use super::table::{self, Hold};
use crate::net::fd::NetFd;
use crate::netpoll::{Direction, Registration};
use crate::sched::timers::deadline_after;
use crate::sync::DeadlineLockGuard;

/// The largest set waited for on the netpoller.
const MAX_SET: usize = 64;

/// One (descriptor, direction) of a set: `(fd, read, write)` wanted.
pub(super) type Want = (RawFd, bool, bool);

/// What a wait on a set came to.
pub(super) enum Waited {
    /// Check the set again.
    Again,
    /// The timeout passed.
    TimedOut,
    /// This descriptor was closed meanwhile.
    Closed(RawFd),
    /// The netpoller cannot wait on this set: make the call as it is.
    Cannot,
}

/// Whether a `poll`-family call may park rather than block its thread.
pub(super) fn parks() -> bool {
    may_park()
}

/// A timeout as a deadline (None: for good).
pub(super) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(deadline_after)
}

/// Park until something in `set` may be ready (module header). `ready`
/// checks the set without waiting once the goroutine is registered.
pub(super) fn wait_set(set: &[Want], deadline: Option<Instant>, ready: impl FnOnce() -> bool) -> Waited {
    if set.len() > MAX_SET {
        return Waited::Cannot;
    }
    crate::sched::safe_point();
    // Holds first (they keep the registrations alive), then the locks and
    // the waits that borrow from them.
    let mut holds: Vec<(RawFd, Hold)> = Vec::with_capacity(set.len());
    for &(fd, _, _) in set {
        let Some(entry) = table::get_or_make(fd) else {
            return Waited::Cannot;
        };
        let Some(hold) = entry.hold() else {
            return Waited::Closed(fd);
        };
        holds.push((fd, hold));
    }
    let mut nfds: Vec<&NetFd<table::HookedFd>> = Vec::with_capacity(set.len());
    for (fd, hold) in &holds {
        match hold.netfd(*fd) {
            Some(nfd) => nfds.push(nfd),
            None => return Waited::Cannot,
        }
    }
    let mut locks: Vec<DeadlineLockGuard<'_>> = Vec::with_capacity(2 * set.len());
    let mut waits: Vec<(&Registration, Direction)> = Vec::with_capacity(2 * set.len());
    for (&(_, read, write), nfd) in set.iter().zip(&nfds) {
        for (wanted, dir) in [(read, Direction::Read), (write, Direction::Write)] {
            if !wanted {
                continue;
            }
            let Some(lock) = nfd.try_lock(dir) else {
                return Waited::Cannot;
            };
            locks.push(lock);
            waits.push((nfd.registration(), dir));
        }
    }
    let r = Registration::wait_any(&waits, deadline, ready);
    drop(waits);
    drop(locks);
    match r {
        Ok(true) => Waited::TimedOut,
        Ok(false) => Waited::Again,
        Err(_) => {
            let closed = holds
                .iter()
                .zip(&nfds)
                .find(|(_, nfd)| nfd.registration().is_closed())
                .map_or(set[0].0, |((fd, _), _)| *fd);
            Waited::Closed(closed)
        }
    }
}

/// Add `(fd, read, write)` to `set`, merging a descriptor named twice.
pub(super) fn want(set: &mut Vec<Want>, fd: RawFd, read: bool, write: bool) {
    if !read && !write {
        return;
    }
    match set.iter_mut().find(|w| w.0 == fd) {
        Some(w) => {
            w.1 |= read;
            w.2 |= write;
        }
        None => set.push((fd, read, write)),
    }
}

/// Time left until `deadline` (None: for good); zero once it passed.
pub(super) fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// `poll`'s events as directions: anything but output (errors and hang-ups
/// are always reported) is a read.
pub(super) fn poll_dirs(events: libc::c_short) -> (bool, bool) {
    let out = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND;
    (events & !out != 0 || events == 0, events & out != 0)
}

/// `poll(fds, 0 timeout)` without the hook.
///
/// # Safety
/// `fds` must point at `n` valid `pollfd`s.
pub(super) unsafe fn poll_now(fds: *mut libc::pollfd, n: libc::nfds_t) -> isize {
    // SAFETY: the caller vouches for `fds`.
    unsafe { sys::call(libc::SYS_poll, fds as usize, n as usize, 0, 0, 0, 0) }
}

/// `poll` (and `ppoll` without a signal mask) on a goroutine. `blocking`
/// makes the call as it is, for what is left of the timeout.
///
/// # Safety
/// `fds` must point at `n` valid `pollfd`s.
pub(super) unsafe fn poll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: Option<Duration>,
    blocking: impl FnOnce(Option<Duration>) -> isize,
) -> isize {
    if !parks() {
        return blocking(timeout);
    }
    if n == 0 {
        // A sleep (libcurl's `Curl_wait_ms`): a goroutine's sleep.
        return match timeout {
            Some(t) => {
                crate::time::sleep(t);
                0
            }
            None => blocking(timeout),
        };
    }
    // SAFETY: the caller vouches for `fds`.
    let r = unsafe { poll_now(fds, n) };
    if r != 0 || timeout == Some(Duration::ZERO) {
        return r;
    }
    let mut set = Vec::new();
    {
        // SAFETY: as above; the slice is gone before `fds` is used again.
        let pfds = unsafe { std::slice::from_raw_parts(fds, n as usize) };
        for p in pfds.iter().filter(|p| p.fd >= 0) {
            let (read, write) = poll_dirs(p.events);
            want(&mut set, p.fd, read, write);
        }
    }
    if set.is_empty() {
        return blocking(timeout);
    }
    let deadline = deadline(timeout);
    // SAFETY: as above.
    let now = || unsafe { poll_now(fds, n) };
    loop {
        match wait_set(&set, deadline, || now() != 0) {
            Waited::Again => {}
            Waited::TimedOut => return now(),
            Waited::Closed(fd) => {
                // SAFETY: as above.
                let pfds = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
                let mut count = 0;
                for p in pfds {
                    p.revents = if p.fd == fd { libc::POLLNVAL } else { 0 };
                    count += isize::from(p.fd == fd);
                }
                return count;
            }
            Waited::Cannot => return blocking(left(deadline)),
        }
        let r = now();
        if r != 0 {
            return r;
        }
    }
}

/// The three sets of a `select`.
pub(super) type FdSets = [*mut libc::fd_set; 3];

/// `select` (and `pselect` without a signal mask) on a goroutine; the
/// caller updates a `select` timeout from the time it took.
///
/// # Safety
/// Each non-null set must be a valid `fd_set`; `nfds` at most `FD_SETSIZE`.
pub(super) unsafe fn select(
    nfds: libc::c_int,
    sets: FdSets,
    timeout: Option<Duration>,
    blocking: impl FnOnce(Option<Duration>) -> isize,
) -> isize {
    if nfds <= 0 || nfds as usize > libc::FD_SETSIZE || !parks() {
        return blocking(timeout);
    }
    // The caller's sets, which every check overwrites with its result.
    // SAFETY: the caller vouches for the non-null sets.
    let asked: [Option<libc::fd_set>; 3] = sets.map(|s| (!s.is_null()).then(|| unsafe { *s }));
    let check = || {
        for (s, a) in sets.iter().zip(&asked) {
            if let Some(a) = a {
                // SAFETY: as above.
                unsafe { **s = *a };
            }
        }
        let mut zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
        // SAFETY: valid sets (or null) and a valid timeval.
        unsafe {
            sys::call(
                libc::SYS_select,
                nfds as usize,
                sets[0] as usize,
                sets[1] as usize,
                sets[2] as usize,
                &raw mut zero as usize,
                0,
            )
        }
    };
    let r = check();
    if r != 0 || timeout == Some(Duration::ZERO) {
        return r;
    }
    let mut set = Vec::new();
    for fd in 0..nfds {
        // SAFETY: `fd` < FD_SETSIZE; the sets are valid values.
        let is = |i: usize| asked[i].as_ref().is_some_and(|s| unsafe { libc::FD_ISSET(fd, s) });
        want(&mut set, fd, is(0) || is(2), is(1));
    }
    let deadline = deadline(timeout);
    loop {
        match wait_set(&set, deadline, || check() != 0) {
            Waited::Again => {}
            Waited::TimedOut => return check(),
            Waited::Closed(_) => return sys::fail(libc::EBADF),
            Waited::Cannot => {
                for (s, a) in sets.iter().zip(&asked) {
                    if let Some(a) = a {
                        // SAFETY: as above.
                        unsafe { **s = *a };
                    }
                }
                return blocking(left(deadline));
            }
        }
        let r = check();
        if r != 0 {
            return r;
        }
    }
}
