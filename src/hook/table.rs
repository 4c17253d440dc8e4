//! The hook's per-descriptor table: what the hooks know about each fd
//! number, found with two loads and no lock (libco keeps the same kind of
//! table, `g_rpc_fd_map`).
//!
//! Entries live in chunks of `CHUNK` that are mapped (never `malloc`ed,
//! so a hook may make one from anywhere) the first time a descriptor in
//! their range is recorded, and never unmapped: an entry's address stays
//! valid for the life of the process, so a reader needs no reference count
//! to look at one. Descriptors past `MAX_FDS` are never hooked.
//!
//! An entry has three words:
//!
//! - `state`: 0 while nothing is known (the number is free, or was made by
//!   a call the hooks do not see); `KNOWN` once a goroutine's call has
//!   looked (`KNOWN` alone: not a socket); `MANAGED` for a socket whose
//!   `O_NONBLOCK` the hooks keep set in the kernel, with `USER_NB` the
//!   flag as its owner set it.
//! - `ops`: the calls using the entry's poll registration right now (a
//!   count), `CLOSING` while `close` retires it, and a generation bumped by
//!   each retirement, so that a thread that waited in `poll` without
//!   holding the count can tell its descriptor number was reused meanwhile.
//! - `netfd`: the socket's poll registration and its one-waiter locks
//!   (`net/fd.rs`'s `NetFd`), made the first time a goroutine has to wait
//!   on the descriptor (`NONE`, `MAKING` while one caller makes it, or
//!   `UNAVAILABLE` when the poller refused it: another owner registered it,
//!   as `gort::net` does its own sockets, or it is a regular file).
//!
//! `close` (`retire`) marks the entry `CLOSING`, wakes the goroutines
//! waiting on it, waits until the count is 0, frees the registration while
//! the descriptor is still open (so epoll forgets the right file), resets
//! the entry, and only then lets the real `close` run: no call of ours ever
//! reaches a reused descriptor number.

use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::net::fd::NetFd;
use crate::netpoll::Direction;

/// `state`: the descriptor was looked at (alone: not a socket).
pub(super) const KNOWN: u32 = 1;
/// `state`: a socket the hooks keep non-blocking in the kernel.
pub(super) const MANAGED: u32 = 2;
/// `state`: its owner asked for non-blocking mode.
pub(super) const USER_NB: u32 = 4;

const CHUNK: usize = 1024;
const CHUNKS: usize = 1024;
/// Descriptors hooked: the first 1,048,576 (the default hard limit is
/// 1,048,576 on most distributions; `RLIMIT_NOFILE` beyond is rare).
pub(super) const MAX_FDS: usize = CHUNK * CHUNKS;

const COUNT: u64 = 0xffff_ffff;
const CLOSING: u64 = 1 << 32;
const GENERATION: u64 = 1 << 33;

/// `netfd` values that are not registrations.
const NONE: usize = 0;
const MAKING: usize = 1;
const UNAVAILABLE: usize = 2;

/// A descriptor as `NetFd` holds it: the hooks never close it themselves.
pub(super) struct HookedFd(RawFd);

impl AsRawFd for HookedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

pub(super) struct Entry {
    pub(super) state: AtomicU32,
    ops: AtomicU64,
    netfd: AtomicPtr<NetFd<HookedFd>>,
}

static TABLE: [AtomicPtr<Entry>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];

fn split(fd: RawFd) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < MAX_FDS)?;
    Some((fd / CHUNK, fd % CHUNK))
}

/// The entry of `fd`, if one was ever recorded in its chunk.
#[inline]
pub(super) fn get(fd: RawFd) -> Option<&'static Entry> {
    let (chunk, i) = split(fd)?;
    let base = TABLE[chunk].load(Ordering::Acquire);
    // SAFETY: a non-null chunk is a mapping of `CHUNK` entries that is
    // never unmapped (module header).
    (!base.is_null()).then(|| unsafe { &*base.add(i) })
}

/// `fd`'s state, 0 if nothing is recorded.
#[inline]
pub(super) fn state(fd: RawFd) -> u32 {
    get(fd).map_or(0, |e| e.state.load(Ordering::Acquire))
}

/// The entry of `fd`, mapping its chunk if needed; None past `MAX_FDS` or
/// when the kernel refuses the memory (then the descriptor goes unhooked).
pub(super) fn get_or_make(fd: RawFd) -> Option<&'static Entry> {
    if let Some(e) = get(fd) {
        return Some(e);
    }
    let (chunk, i) = split(fd)?;
    let bytes = CHUNK * size_of::<Entry>();
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let mem = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return None;
    }
    // Zeroed memory is `CHUNK` valid entries: atomics at 0, null pointers.
    let fresh = mem.cast::<Entry>();
    if let Err(_other) = TABLE[chunk].compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: our mapping, never published.
        unsafe { libc::munmap(mem, bytes) };
    }
    let base = TABLE[chunk].load(Ordering::Acquire);
    // SAFETY: as in `get`.
    Some(unsafe { &*base.add(i) })
}

/// Record `state` for `fd`, a descriptor just made (an entry left behind by
/// a descriptor closed without our `close` is overwritten).
pub(super) fn record(fd: RawFd, state: u32) {
    if state == 0 {
        if let Some(e) = get(fd) {
            e.state.store(0, Ordering::Release);
        }
    } else if let Some(e) = get_or_make(fd) {
        e.state.store(state, Ordering::Release);
    }
}

/// A call's hold on an entry's registration (`ops`'s count).
pub(super) struct Hold {
    entry: &'static Entry,
    generation: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.entry.ops.fetch_sub(1, Ordering::Release);
    }
}

impl Hold {
    /// The registration, made now if this is the descriptor's first wait;
    /// None if the poller will not take it.
    pub(super) fn netfd(&self, fd: RawFd) -> Option<&NetFd<HookedFd>> {
        let e = self.entry;
        loop {
            match e.netfd.load(Ordering::Acquire) as usize {
                UNAVAILABLE => return None,
                MAKING => std::thread::yield_now(),
                NONE => {
                    if e.netfd
                        .compare_exchange(ptr::null_mut(), MAKING as *mut _, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let made = match NetFd::new(HookedFd(fd)) {
                        Ok(nfd) => {
                            for dir in [Direction::Read, Direction::Write] {
                                // The caller's SO_RCVTIMEO/SO_SNDTIMEO, which
                                // the kernel keeps for us (`setsockopt` passes
                                // them on).
                                let _ = nfd.set_timeout(dir, super::sys::timeout(fd, dir));
                            }
                            Box::into_raw(Box::new(nfd))
                        }
                        Err(_) => UNAVAILABLE as *mut _,
                    };
                    e.netfd.store(made, Ordering::Release);
                }
                // SAFETY: a registration lives until `retire` frees it,
                // which waits for our hold to end.
                p => return Some(unsafe { &*(p as *const NetFd<HookedFd>) }),
            }
        }
    }

    /// Whether this hold's descriptor number is still the one it was
    /// taken on (`renew`).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

impl Entry {
    /// Hold the entry for a call; None if it is being closed.
    pub(super) fn hold(&'static self) -> Option<Hold> {
        let seen = self.ops.fetch_add(1, Ordering::AcqRel);
        if seen & CLOSING != 0 {
            self.ops.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Hold {
            entry: self,
            generation: seen / GENERATION,
        })
    }

    /// `hold` again after a wait made without one: None if the descriptor
    /// was closed meanwhile (its number may name another file now).
    pub(super) fn renew(&'static self, generation: u64) -> Option<Hold> {
        self.hold().filter(|h| h.generation == generation)
    }

    /// Update the registration's timeout for `dir`, if it has one.
    pub(super) fn set_timeout(&'static self, dir: Direction, t: Option<Duration>) {
        let Some(hold) = self.hold() else { return };
        let p = self.netfd.load(Ordering::Acquire) as usize;
        if p > UNAVAILABLE {
            // SAFETY: as in `Hold::netfd`: our hold keeps it alive.
            let _ = unsafe { &*(p as *const NetFd<HookedFd>) }.set_timeout(dir, t);
        }
        drop(hold);
    }

    /// Whether `close` has anything to do beyond the real close.
    pub(super) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0 || self.netfd.load(Ordering::Acquire) as usize != NONE
    }

    /// The first half of `close` (module header): afterwards the entry is
    /// empty and no call of ours uses the descriptor. `yield_now` lets the
    /// callers woken here finish.
    pub(super) fn retire(&'static self, yield_now: impl Fn()) {
        let seen = self.ops.fetch_or(CLOSING, Ordering::AcqRel);
        if seen & CLOSING != 0 {
            // Another `close` of the same number races us: it retires.
            return;
        }
        loop {
            let p = self.netfd.load(Ordering::Acquire) as usize;
            if p > UNAVAILABLE {
                // SAFETY: only `retire`, which we are, frees it.
                unsafe { &*(p as *const NetFd<HookedFd>) }.evict();
            }
            if self.ops.load(Ordering::Acquire) & COUNT == 0 {
                break;
            }
            yield_now();
        }
        self.drop_netfd();
        self.state.store(0, Ordering::Release);
        let next = (seen / GENERATION).wrapping_add(1).wrapping_mul(GENERATION);
        self.ops.store(next, Ordering::Release);
    }

    /// Free the registration if no call uses it: the owner made the
    /// socket non-blocking, and may hand it to an owner that registers it
    /// itself (`gort::net`'s `from_std`).
    pub(super) fn release_netfd(&'static self) {
        let seen = self.ops.load(Ordering::Acquire);
        if seen & (COUNT | CLOSING) != 0
            || self
                .ops
                .compare_exchange(seen, seen | CLOSING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.drop_netfd();
        self.ops.store(seen, Ordering::Release);
    }

    /// Called with `CLOSING` set and no holds.
    fn drop_netfd(&self) {
        let p = self.netfd.swap(ptr::null_mut(), Ordering::AcqRel) as usize;
        if p > UNAVAILABLE {
            // SAFETY: made by `Box::into_raw` in `Hold::netfd`, and nobody
            // holds the entry; dropping it takes the fd out of epoll while
            // the descriptor is still open.
            drop(unsafe { Box::from_raw(p as *mut NetFd<HookedFd>) });
        }
    }
}
