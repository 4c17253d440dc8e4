//! Linux primitives the scheduler sleeps with.
//!
//! `Note` is Go's `note` (lock_futex.go): a one-shot event an M sleeps on
//! when it has nothing to run, and that exactly one other thread wakes. It is
//! a futex word with two states, so a wake-up that arrives before the sleep
//! is never lost: the sleeper sees the word already set and does not enter
//! the kernel. `clear` re-arms it; only the sleeper calls `clear`, after it
//! has woken, so a wake-up and a clear can never race.
//!
//! The futex calls retry on `EINTR`: the preemption signal (SIGURG) makes
//! even `SA_RESTART` futex waits return early (DESIGN.md §3a).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const UNSET: u32 = 0;
const SET: u32 = 1;

/// A one-shot, futex-backed event: one thread sleeps, another wakes it.
pub(crate) struct Note {
    word: AtomicU32,
}

impl Note {
    pub(crate) const fn new() -> Note {
        Note {
            word: AtomicU32::new(UNSET),
        }
    }

    /// Sleep until `wakeup` has been called (returns at once if it already was).
    /// Any thread, but only one sleeper per note at a time.
    pub(crate) fn sleep(&self) {
        // Acquire pairs with the Release swap in `wakeup`: whatever the waker
        // wrote before waking us (an M's `nextp`, say) is visible here.
        while self.word.load(Ordering::Acquire) == UNSET {
            futex_wait(&self.word, UNSET, None);
        }
    }

    /// Like `sleep`, but give up at `deadline`; returns whether the note was
    /// set. Any thread, one sleeper at a time.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            // Acquire: as in `sleep`.
            if self.word.load(Ordering::Acquire) == SET {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            futex_wait(&self.word, UNSET, Some(deadline - now));
        }
    }

    /// Set the note and wake its sleeper, if any. Any thread.
    pub(crate) fn wakeup(&self) {
        // Release pairs with the Acquire load in `sleep`.
        if self.word.swap(SET, Ordering::Release) == UNSET {
            futex_wake(&self.word);
        }
    }

    /// Whether `wakeup` has been called since the last `clear`: the sleeper
    /// will return from `sleep` without anyone's help. Any thread.
    pub(crate) fn is_set(&self) -> bool {
        // Acquire: as in `sleep`.
        self.word.load(Ordering::Acquire) == SET
    }

    /// Re-arm after a completed `sleep`. Sleeper only.
    pub(crate) fn clear(&self) {
        self.word.store(UNSET, Ordering::Relaxed);
    }
}

/// Sleep while `*word == expected`, at most `timeout` (relative, as
/// FUTEX_WAIT takes it). EINTR, EAGAIN (the word changed) and ETIMEDOUT all
/// send the caller back to its loop, which re-checks.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT_PRIVATE reads the aligned u32 behind `word`, which
    // lives as long as this borrow; `ts_ptr` is null (no timeout) or points
    // to `ts`, alive for the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        );
    }
}

pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE_PRIVATE only uses the address as a key; it touches
    // no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Write `text` to file descriptor 2 with plain `write` calls, without
/// std's stderr lock. For the scheduler's own threads and contexts (sysmon,
/// g0): a goroutine stopped by SIGURG in the middle of an `eprintln!` keeps
/// that lock until it runs again, and the thread that would let it run
/// again must not wait for it. Lines of concurrent writers may interleave,
/// as Go's runtime prints do. Errors are ignored: there is nowhere to
/// report them.
/// Format `args` into a buffer on the stack and write it to stderr: for
/// messages from where nothing may allocate (sysmon, under a scheduler
/// lock). A message longer than the buffer is cut.
pub(crate) fn write_stderr_fmt(args: std::fmt::Arguments<'_>) {
    let mut buf = [0u8; 512];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = std::io::Write::write_fmt(&mut cursor, args);
    let n = cursor.position() as usize;
    write_bytes_to_stderr(&buf[..n]);
}

pub(crate) fn write_stderr(text: &str) {
    write_bytes_to_stderr(text.as_bytes());
}

fn write_bytes_to_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live buffer of the given length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        } else {
            return;
        }
    }
}

/// The calling thread's `errno`, kept for code that runs between two
/// instructions of someone else's — the asynchronous preemption, which may
/// interrupt a goroutine between a failed call and its read of `errno` —
/// and must leave it as it found it.
pub(crate) struct SavedErrno(libc::c_int);

impl SavedErrno {
    pub(crate) fn save() -> SavedErrno {
        // SAFETY: `__errno_location` returns this thread's errno slot,
        // valid for the thread's life.
        SavedErrno(unsafe { *libc::__errno_location() })
    }

    pub(crate) fn restore(self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}
