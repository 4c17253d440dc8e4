//! epoll and eventfd: the system calls behind the netpoller
//! (`netpoll/`). Thin, safe wrappers; the policy lives in `netpoll`.
//!
//! Every wrapper retries `EINTR` itself except `Epoll::wait`, whose caller
//! loops anyway (a signal ends a blocking poll early, which is harmless).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An epoll instance.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// The readiness bits gort asks for on every descriptor: both directions,
/// edge-triggered, plus peer half-close, TCP urgent data and errors (always
/// reported).
pub(crate) const INTEREST: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLET) as u32;
/// Bits that make a reader runnable.
pub(crate) const READABLE: u32 =
    (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Bits after which a short stream read may leave bytes queued: the peer
/// closed or the socket failed (the end of file or error stays queued
/// behind the data), or urgent data arrived (a read stops at its mark).
pub(crate) const SHORT_READS_UNRELIABLE: u32 =
    (libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Bits that make a writer runnable.
pub(crate) const WRITABLE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// One readiness event: its bits and the `u64` given at registration.
pub(crate) type Event = libc::epoll_event;

/// An empty event buffer slot.
pub(crate) fn empty_event() -> Event {
    libc::epoll_event { events: 0, u64: 0 }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a
        // fresh descriptor we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: `fd` was just returned to us and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watch `fd` for `events`, reporting them with `data`.
    pub(crate) fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stop watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = empty_event();
        // SAFETY: as in `add`; the kernel ignores `ev` for EPOLL_CTL_DEL but
        // old kernels required a non-null pointer.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })?;
        Ok(())
    }

    /// Wait for events, at most `timeout` (None: forever; zero: just look),
    /// to the nanosecond (`epoll_pwait2`), so that a poll sleeping until a
    /// timer does not round its deadline to milliseconds. Returns how many
    /// slots of `events` were filled; 0 on timeout or when a signal
    /// interrupted the wait.
    ///
    /// Where `epoll_pwait2` is missing (kernels before 5.11, and valgrind
    /// up to 3.21, which answer `ENOSYS`) it falls back for good to
    /// `epoll_wait`, with the timeout rounded *up* to a millisecond: a timer
    /// then fires up to a millisecond late, but a sub-millisecond sleep
    /// never turns into a busy loop of zero-timeout polls.
    pub(crate) fn wait(&self, events: &mut [Event], timeout: Option<Duration>) -> usize {
        static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
        let len = events.len().min(i32::MAX as usize) as libc::c_int;
        if !NO_PWAIT2.load(Ordering::Relaxed) {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `events` is a writable buffer of `len` epoll_events;
            // `ts_ptr` is null or points to `ts`, alive for the call; a null
            // sigmask leaves the signal mask alone.
            let n =
                unsafe { libc::epoll_pwait2(self.fd.as_raw_fd(), events.as_mut_ptr(), len, ts_ptr, std::ptr::null()) };
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                return n.max(0) as usize;
            }
            NO_PWAIT2.store(true, Ordering::Relaxed);
        }
        let millis = timeout.map_or(-1, |t| {
            t.as_nanos().div_ceil(1_000_000).min(libc::c_int::MAX as u128) as libc::c_int
        });
        // SAFETY: `events` is a writable buffer of `len` epoll_events.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), len, millis) };
        n.max(0) as usize
    }
}

/// An eventfd used as a doorbell: `ring` makes the epoll instance it is
/// registered with report it readable.
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a fresh
        // descriptor we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(EventFd {
            // SAFETY: just returned to us, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Make the descriptor readable. Any thread.
    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from `one`, alive for the call.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            // EAGAIN means the counter is saturated: it is readable already.
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Reset the counter so the next `ring` is a new edge.
    pub(crate) fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into `buf`. The descriptor is
        // non-blocking, so an already-drained counter just fails with EAGAIN.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}
