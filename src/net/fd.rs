//! `NetFd`: a non-blocking socket registered with the netpoller, and the
//! retry loop every operation runs (Go's `internal/poll.FD`).
//!
//! An operation first makes its system call directly: when data is there
//! (the common case on a busy connection) it costs nothing more. Only on
//! `WouldBlock` does it take the direction's lock — one waiter per
//! direction, as a poll slot requires; other goroutines reading the same
//! socket queue behind it, as in Go — and alternate "wait for an edge,
//! retry" until the call succeeds, the socket is closed, or the deadline
//! passes. `WouldBlock` therefore never reaches the user.
//!
//! An `EAGAIN` seen before the lock may be stale once the lock is ours:
//! the waiter ahead of us may have consumed an edge that came after our
//! call (two connections under one edge: it accepts one, and we would
//! sleep beside the other for good). Go takes the lock before the first
//! call; here the poller counts each direction's edges before it fires
//! the slot, and a caller that gets the lock retries first if the count
//! moved since its call. An unchanged count means no edge came since; the
//! next one finds us registered or leaves the slot ready, as only the
//! lock's holder waits on the slot.
//!
//! `close` (Go's): the registration is marked closed first, then the
//! socket is shut down, which wakes every waiter; they fail with
//! `NotConnected`. A call already past its closed check when `close` runs
//! gets from the kernel what the shutdown makes of it (a stream's end of
//! file, a broken pipe); those are reported as the close too, so no call
//! ever mistakes a local `close` for the peer's doing. Where the shutdown
//! leaves something alive, the socket type ends it (`Closable`: a Unix
//! listener's queued connections).
//!
//! Timeouts (`set_read_timeout`/`set_write_timeout`) are std's: each call
//! gets at most that long, counted from when it first has to wait, and then
//! fails with `TimedOut` — its wait for the direction's lock included, so a
//! caller queued behind one with a later deadline, or none, still times
//! out at its own. They are timers on the waiting goroutine's token,
//! started only if it actually parks; a timeout past the end of the clock
//! (`Duration::MAX`) is kept, reported back, and never expires (the `time`
//! module's rule).
//!
//! Deadlines (`set_read_deadline`/`set_write_deadline`) are Go's: an
//! absolute instant after which every call of that direction fails with
//! `TimedOut` instead of waiting — at once, even with data there, once it
//! has passed. A call reads the deadline again each time it is about to
//! wait, and setting one wakes the direction's waiter (as a spurious edge:
//! it retries its call and waits again), so moving a deadline — later or
//! earlier — takes effect for a call already blocked. A waiter that timed
//! out just as the deadline was moved later sees the new one and waits on.
//! Only the holder of the direction's lock re-reads it: callers queued
//! behind it wait for the lock until the deadline they saw when they
//! queued. A call with both a timeout and a deadline stops at the earlier.
//! Stored as `nanotime` in an atomic, so a call with no deadline set pays
//! one load.
//!
//! Field order matters: `reg` is declared first so it is dropped first,
//! taking the fd out of epoll before `sock` closes it.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::netpoll::{Direction, Registration, closed_error, timeout_error};
use crate::sched::WaitReason;
use crate::sync::{DeadlineLock, DeadlineLockGuard};

/// No timeout (`AtomicU64` holds nanoseconds otherwise).
const NO_TIMEOUT: u64 = 0;

/// No deadline (`AtomicU64` holds a `nanotime` otherwise).
const NO_DEADLINE: u64 = u64::MAX;

/// `NetFd::drained_at` when no short read is on record.
const NOT_DRAINED: u64 = 0;

/// `NetFd::drained_at` for a short read made at read-edge count `edges`.
fn drained_mark(edges: u32) -> u64 {
    u64::from(edges) + 1
}

/// The read-edge count a `drained_mark` was made at.
fn drained_edges(mark: u64) -> Option<u32> {
    mark.checked_sub(1).map(|edges| edges as u32)
}

/// What a short read says about a byte-stream socket type.
pub(crate) trait StreamSocket {
    /// Whether a read that returned less than asked for, made while no end
    /// of stream, error or urgent data had been seen, left nothing queued.
    /// TCP: yes. Unix streams: no — a read stops after bytes that carried
    /// descriptors, or where the sender's credentials change.
    const SHORT_READ_DRAINS: bool;
}

impl StreamSocket for std::net::TcpStream {
    const SHORT_READ_DRAINS: bool = true;
}

impl StreamSocket for std::os::unix::net::UnixStream {
    const SHORT_READ_DRAINS: bool = false;
}

/// What `NetFd::close` must end beyond what its shutdown ends.
pub(crate) trait Closable {
    /// Called after the shutdown. Only a Unix listener needs it
    /// (`unix.rs`); every other socket's shutdown ends all it has.
    fn end_what_shutdown_left(&self) {}
}

impl Closable for std::net::TcpListener {}
impl Closable for std::net::TcpStream {}
impl Closable for std::net::UdpSocket {}
impl Closable for std::os::unix::net::UnixStream {}

pub(crate) struct NetFd<S> {
    reg: Registration,
    read_lock: DeadlineLock,
    write_lock: DeadlineLock,
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// Go's deadlines, as `nanotime`s (module header).
    read_deadline: AtomicU64,
    write_deadline: AtomicU64,
    /// `drained_mark` of the read-edge count at which the last stream read
    /// came back short, else `NOT_DRAINED` (`read_stream`): a hint, never a
    /// reason to miss data.
    drained_at: AtomicU64,
    sock: S,
}

impl<S: AsRawFd> NetFd<S> {
    /// Register `sock`, which must already be non-blocking.
    pub(crate) fn new(sock: S) -> io::Result<NetFd<S>> {
        Ok(NetFd {
            reg: Registration::new(sock.as_raw_fd())?,
            read_lock: DeadlineLock::new(),
            write_lock: DeadlineLock::new(),
            read_timeout: AtomicU64::new(NO_TIMEOUT),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
            read_deadline: AtomicU64::new(NO_DEADLINE),
            write_deadline: AtomicU64::new(NO_DEADLINE),
            drained_at: AtomicU64::new(NOT_DRAINED),
            sock,
        })
    }

    /// The socket itself, for calls that never wait (addresses, options).
    pub(crate) fn sock(&self) -> &S {
        &self.sock
    }

    /// Run `op` until it does not report `WouldBlock`, waiting for the
    /// socket to become readable in between.
    #[track_caller]
    pub(crate) fn read<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.io(Direction::Read, op)
    }

    /// `read` for a stream operation that reads bytes into `len` of them
    /// without the short-read shortcut (a peek).
    #[track_caller]
    pub(crate) fn read_bytes(&self, len: usize, op: impl FnMut(&S) -> io::Result<usize>) -> io::Result<usize> {
        let n = self.read(op)?;
        self.unless_emptied_by_close(len, n)
    }

    /// As `read`, for writability.
    #[track_caller]
    pub(crate) fn write<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.io(Direction::Write, op)
    }

    /// `read` for a byte stream into buffers of `len` bytes in total.
    ///
    /// On TCP, a short read means the socket was emptied, so the next read
    /// skips the system call that would only fail with `EAGAIN` and waits
    /// for an edge at once (tokio does the same) — if no read edge has been
    /// dispatched since the short read's system call began. Bytes that
    /// arrive after that call raise an edge, which the poller counts before
    /// it fires the slot: the next read either sees the count move and
    /// tries, or waits for that very edge. The count also covers an edge
    /// taken by someone else meanwhile (a `peek` that waited, a concurrent
    /// reader). Bytes can stay queued behind a short read only after an end
    /// of stream, an error or urgent data, and once the poller has seen one
    /// of those, reads are always tried. Not for datagrams.
    #[track_caller]
    pub(crate) fn read_stream(&self, len: usize, mut op: impl FnMut(&S) -> io::Result<usize>) -> io::Result<usize>
    where
        S: StreamSocket,
    {
        let n = if S::SHORT_READ_DRAINS && len > 0 {
            let mark = self.drained_at.swap(NOT_DRAINED, Ordering::Relaxed);
            let empty_at = drained_edges(mark).filter(|_| !self.reg.short_reads_unreliable());
            let (n, edges_at_call) = self.io_from(Direction::Read, empty_at, &mut op)?;
            if n > 0 && n < len {
                self.drained_at.store(drained_mark(edges_at_call), Ordering::Relaxed);
            }
            n
        } else {
            self.io_from(Direction::Read, None, &mut op)?.0
        };
        self.unless_emptied_by_close(len, n)
    }

    /// A stream read that got nothing into a nonempty buffer after `close`
    /// got the end of file that `close`'s shutdown makes: it was already
    /// past its closed check. Report the close. (Not for datagrams: there
    /// an empty read is a datagram, and after the shutdown a non-blocking
    /// receive finds nothing rather than an end.)
    fn unless_emptied_by_close(&self, len: usize, n: usize) -> io::Result<usize> {
        if n == 0 && len > 0 && self.reg.is_closed() {
            return Err(closed_error());
        }
        Ok(n)
    }

    #[track_caller]
    fn io<R>(&self, dir: Direction, mut op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.io_from(dir, None, &mut op).map(|(r, _)| r)
    }

    /// The retry loop (module header). `empty_at`: the edge count of `dir`
    /// at which a call found nothing to do, if the caller knows one (a short
    /// read); `op` is tried only once the count has moved from it. Returns
    /// `op`'s result with the edge count read just before the call that
    /// made it.
    #[track_caller]
    fn io_from<R>(
        &self,
        dir: Direction,
        mut empty_at: Option<u32>,
        op: &mut impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<(R, u32)> {
        crate::sched::safe_point();
        if self.reg.is_closed() {
            return Err(closed_error());
        }
        let (lock, timeout) = match dir {
            Direction::Read => (&self.read_lock, &self.read_timeout),
            Direction::Write => (&self.write_lock, &self.write_timeout),
        };
        if self.deadline(dir).is_some_and(|d| Instant::now() >= d) {
            return Err(timeout_error());
        }
        let mut one_waiter = None;
        // The per-call timeout's end, fixed at the first wait.
        let mut timeout_end = None;
        loop {
            // Read before the call: an edge after it moves the count.
            let edges = self.reg.edges(dir);
            if empty_at != Some(edges) {
                match attempt(op, &self.sock) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => empty_at = Some(edges),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    done => return self.unless_closed(done).map(|r| (r, edges)),
                }
            }
            if one_waiter.is_none() {
                timeout_end = match timeout.load(Ordering::Relaxed) {
                    NO_TIMEOUT => None,
                    ns => crate::sched::timers::deadline_after(Duration::from_nanos(ns)),
                };
                one_waiter = Some(lock_until(lock, earlier(timeout_end, self.deadline(dir)))?);
                // Judge the `EAGAIN` again, now that no one else waits.
                continue;
            }
            match self.reg.wait(dir, earlier(timeout_end, self.deadline(dir))) {
                // The deadline moved later while the timer fired: wait on.
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && earlier(timeout_end, self.deadline(dir)).is_none_or(|d| Instant::now() < d) => {}
                done => done?,
            }
            empty_at = None;
        }
    }

    /// A call that failed while `close` ran reports the close, not what
    /// `close`'s shutdown made of it (a broken pipe, an invalid accept).
    fn unless_closed<R>(&self, done: io::Result<R>) -> io::Result<R> {
        match done {
            Err(_) if self.reg.is_closed() => Err(closed_error()),
            done => done,
        }
    }

    /// Wait until the socket is writable once (a non-blocking `connect` in
    /// progress), honouring `deadline`.
    #[track_caller]
    pub(crate) fn wait_writable(&self, deadline: Option<Instant>) -> io::Result<()> {
        let _one_waiter = lock_until(&self.write_lock, deadline)?;
        self.reg.wait(Direction::Write, deadline)
    }

    /// std's `set_read_timeout`: `Some(0)` is an error.
    pub(crate) fn set_timeout(&self, dir: Direction, t: Option<Duration>) -> io::Result<()> {
        let ns = match t {
            None => NO_TIMEOUT,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ));
            }
            Some(d) => d.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
        };
        let slot = match dir {
            Direction::Read => &self.read_timeout,
            Direction::Write => &self.write_timeout,
        };
        slot.store(ns, Ordering::Relaxed);
        Ok(())
    }

    /// Go's `SetReadDeadline`/`SetWriteDeadline` (module header): `None`
    /// clears it. Wakes the direction's waiter to look at it.
    pub(crate) fn set_deadline(&self, dir: Direction, deadline: Option<Instant>) {
        let at = deadline.map_or(NO_DEADLINE, |d| {
            crate::sched::timers::nanotime_of(d).min(NO_DEADLINE - 1)
        });
        let slot = match dir {
            Direction::Read => &self.read_deadline,
            Direction::Write => &self.write_deadline,
        };
        slot.store(at, Ordering::SeqCst);
        self.reg.poke(dir);
    }

    /// The deadline of `dir`, if one is set.
    pub(crate) fn deadline(&self, dir: Direction) -> Option<Instant> {
        let slot = match dir {
            Direction::Read => &self.read_deadline,
            Direction::Write => &self.write_deadline,
        };
        match slot.load(Ordering::SeqCst) {
            NO_DEADLINE => None,
            at => Some(crate::sched::timers::instant_of(at)),
        }
    }

    /// std's `read_timeout`.
    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        let slot = match dir {
            Direction::Read => &self.read_timeout,
            Direction::Write => &self.write_timeout,
        };
        match slot.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The socket, deregistered (`self` was its only handle).
    pub(crate) fn into_inner(self) -> S {
        let NetFd { reg, sock, .. } = self;
        drop(reg);
        sock
    }

    /// Go's `Close`: every goroutine blocked on this socket wakes with an
    /// error, every later operation fails, and the connection ends — the
    /// peer reads end-of-file, a listener stops listening. Go releases the
    /// descriptor itself once no operation is in flight; here it is
    /// released when the last handle is dropped, so that no handle can ever
    /// reach a reused descriptor number, and `shutdown` ends the connection
    /// meanwhile, whoever still holds a handle.
    pub(crate) fn close(&self)
    where
        S: Closable,
    {
        // First mark it closed, so that the waiters woken by the shutdown's
        // edge fail as closed rather than read its end-of-file.
        self.evict();
        // SAFETY: the descriptor is open while `self.sock` lives. Failing is
        // fine: an unconnected datagram socket has nothing to shut down.
        unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
        self.sock.end_what_shutdown_left();
    }
}

/// The earlier of two optional deadlines (`None`: never).
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<S> NetFd<S> {
    /// Mark the socket closed and wake whoever waits on it, without ending
    /// the connection: the hooks' `close` of one of several descriptors
    /// of it (`hook/table.rs`), and the first step of `close`.
    pub(crate) fn evict(&self) {
        self.reg.close();
    }

    /// The poll registration, for a wait on several sockets at once
    /// (`hook/poll.rs`), made under `try_lock`'s guard.
    #[cfg(feature = "hook-io")]
    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }

    /// The direction's one-waiter lock, if nobody holds it.
    #[cfg(feature = "hook-io")]
    pub(crate) fn try_lock(&self, dir: Direction) -> Option<DeadlineLockGuard<'_>> {
        match dir {
            Direction::Read => self.read_lock.try_lock(),
            Direction::Write => self.write_lock.try_lock(),
        }
    }
}

/// Take a direction's lock, failing with `TimedOut` at `deadline`: a waiter
/// ahead of us with a later deadline, or none, must not make us wait past
/// ours.
#[track_caller]
fn lock_until(lock: &DeadlineLock, deadline: Option<Instant>) -> io::Result<DeadlineLockGuard<'_>> {
    lock.lock_until(deadline, WaitReason::Mutex).ok_or_else(timeout_error)
}

/// Make one attempt of `op`, in a frame of its own. Not inlined on purpose:
/// std reads `errno` through `__errno_location`, which it declares constant
/// (`ffi_const`), so in one inlined body the compiler may read the second
/// attempt's error through the first attempt's thread's `errno` — and after
/// a park the goroutine may be on another thread (a reset connection then
/// looked like `EAGAIN` and parked forever).
#[inline(never)]
fn attempt<S, R>(op: &mut impl FnMut(&S) -> io::Result<R>, sock: &S) -> io::Result<R> {
    op(sock)
}
