//! `RwLock`: a reader-writer lock that parks goroutines (Go's
//! sync/rwmutex.go, the same algorithm).
//!
//! # State
//!
//! - `w` (a `RawMutex`): held by the writer that owns or is acquiring the
//!   lock, so writers queue on it one at a time, with `Mutex`'s fairness.
//! - `reader_count` (atomic): readers holding or waiting for the lock; a
//!   writer that arrives subtracts `MAX_READERS`, so a negative count means
//!   "a writer is pending or holds the lock" and new readers wait on
//!   `reader_sem` instead of entering. That is what keeps a stream of
//!   readers from starving a writer.
//! - `reader_wait` (atomic): readers that were inside when the pending
//!   writer arrived and have not left yet; the last of them releases
//!   `writer_sem`, on which the writer waits.
//! - `writer_sem`, `reader_sem` (`Sema`s, see `sema.rs`): the parked
//!   writer and readers, each behind its own internal lock. A writer's
//!   unlock releases one `reader_sem` unit per reader that queued behind it.
//!
//! Read lock and unlock without a writer around are one `fetch_add` each.
//!
//! # Poisoning
//!
//! None, as for `Mutex` (see there): a panic while a guard is held releases
//! the lock during unwinding; `read` and `write` return guards directly.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, Ordering};

use super::mutex::RawMutex;
use super::sema::Sema;
use crate::sched::WaitReason;

/// Subtracted from `reader_count` by a pending writer (Go's
/// `rwmutexMaxReaders`); also the most readers at once.
const MAX_READERS: i32 = 1 << 30;

/// Go's `sync.RWMutex`, without data.
struct RawRwLock {
    w: RawMutex,
    reader_count: AtomicI32,
    reader_wait: AtomicI32,
    writer_sem: Sema,
    reader_sem: Sema,
}

impl RawRwLock {
    const fn new() -> RawRwLock {
        RawRwLock {
            w: RawMutex::new(),
            reader_count: AtomicI32::new(0),
            reader_wait: AtomicI32::new(0),
            writer_sem: Sema::new(),
            reader_sem: Sema::new(),
        }
    }

    #[inline]
    #[track_caller]
    fn read(&self) {
        crate::sched::chaos_point();
        // Acquire pairs with the Release in `unlock_write`: the last
        // writer's writes are visible (a reader that waits is ordered after
        // them by `reader_sem` instead).
        if self.reader_count.fetch_add(1, Ordering::Acquire) < 0 {
            // A writer is pending or inside: wait for its unlock.
            self.reader_sem.acquire(false, WaitReason::RwLockRead);
        }
    }

    #[inline]
    fn try_read(&self) -> bool {
        let mut c = self.reader_count.load(Ordering::Relaxed);
        loop {
            if c < 0 {
                return false;
            }
            // Acquire: as in `read`.
            match self
                .reader_count
                .compare_exchange_weak(c, c + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    #[inline]
    fn unlock_read(&self) {
        // Release pairs with the writer's Acquire in `write`: this reader's
        // reads happen before the writer's writes.
        let old = self.reader_count.fetch_sub(1, Ordering::Release);
        if old <= 0 {
            self.unlock_read_slow(old);
        }
    }

    /// A writer is pending: the last reader it waits for wakes it. `old` is
    /// `reader_count` before this reader's decrement.
    #[cold]
    fn unlock_read_slow(&self, old: i32) {
        // Unreachable through guards: no reader was counted.
        assert!(old != 0 && old != -MAX_READERS, "sync: unlock of unlocked RwLock");
        // AcqRel pairs with the other departing readers' decrements and the
        // writer's `fetch_add` here: whoever brings it to zero has seen all.
        if self.reader_wait.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.writer_sem.release(1);
        }
    }

    #[track_caller]
    fn write(&self) {
        // One writer at a time.
        self.w.lock(WaitReason::RwLockWrite);
        // Announce the writer: new readers now wait. Acquire pairs with the
        // Release of readers that already left.
        let active = self.reader_count.fetch_sub(MAX_READERS, Ordering::Acquire);
        // Wait for the readers still inside, unless they all left between
        // the two RMWs. AcqRel: as in `unlock_read_slow`.
        if active != 0 && self.reader_wait.fetch_add(active, Ordering::AcqRel) + active != 0 {
            self.writer_sem.acquire(false, WaitReason::RwLockWrite);
        }
    }

    fn try_write(&self) -> bool {
        if !self.w.try_lock() {
            return false;
        }
        // Acquire: as in `write`.
        if self
            .reader_count
            .compare_exchange(0, -MAX_READERS, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.w.unlock();
            return false;
        }
        true
    }

    fn unlock_write(&self) {
        // Release pairs with the Acquire in `read`: readers see our writes.
        let queued = self.reader_count.fetch_add(MAX_READERS, Ordering::Release) + MAX_READERS;
        // Unreachable through guards: no writer held the lock.
        assert!((0..MAX_READERS).contains(&queued), "sync: unlock of unlocked RwLock");
        // Let in the readers that queued behind us, then the next writer.
        self.reader_sem.release(queued as u32);
        self.w.unlock();
    }
}

/// A reader-writer lock protecting a `T`: many readers or one writer at a
/// time. It parks the waiting goroutine (or blocks the waiting plain
/// thread). Go's `sync.RWMutex` semantics — a waiting writer blocks new
/// readers, so writers are not starved — with std's shape, minus poisoning.
///
/// ```
/// use std::sync::Arc;
/// use gort::sync::RwLock;
///
/// let config = Arc::new(RwLock::new(String::from("v1")));
/// let reader = {
///     let config = Arc::clone(&config);
///     gort::go(move || config.read().len())
/// };
/// *config.write() = String::from("v2");
/// assert_eq!(reader.join().unwrap(), 2);
/// assert_eq!(*config.read(), "v2");
/// ```
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: writers get exclusive access (needs `T: Send`: the `T` may be
// used from any thread), readers shared access from several threads at
// once (needs `T: Sync`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to an `RwLock`'s data; releases it on drop.
///
/// ```
/// let lock = gort::sync::RwLock::new(5);
/// let (a, b) = (lock.read(), lock.read());
/// assert_eq!(*a + *b, 10);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// `Send` and `Sync` iff `T: Sync`.
    _marker: PhantomData<&'a T>,
}

/// Exclusive access to an `RwLock`'s data; releases it on drop.
///
/// ```
/// let lock = gort::sync::RwLock::new(vec![1]);
/// lock.write().push(2);
/// assert_eq!(*lock.read(), [1, 2]);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// `Send` iff `T: Send`, `Sync` iff `T: Sync` (and `Send`).
    _marker: PhantomData<&'a mut T>,
}

impl<T> RwLock<T> {
    /// A new, unlocked lock; `const`, so it can be a `static`.
    ///
    /// ```
    /// static ROUTES: gort::sync::RwLock<Vec<&str>> = gort::sync::RwLock::new(Vec::new());
    /// ROUTES.write().push("/");
    /// assert_eq!(ROUTES.read().len(), 1);
    /// ```
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consume the lock and return the data.
    ///
    /// ```
    /// assert_eq!(gort::sync::RwLock::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Lock for reading, parking while a writer holds the lock or waits for
    /// it. Taking a read lock twice in one goroutine can deadlock if a
    /// writer arrives in between (as in Go).
    ///
    /// ```
    /// let lock = gort::sync::RwLock::new(1);
    /// assert_eq!(*lock.read(), 1);
    /// ```
    #[inline]
    #[track_caller]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.raw.read();
        RwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        }
    }

    /// Lock for writing, parking until every reader and writer has left.
    ///
    /// ```
    /// let lock = gort::sync::RwLock::new(1);
    /// *lock.write() += 1;
    /// assert_eq!(*lock.read(), 2);
    /// ```
    #[track_caller]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.raw.write();
        RwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        }
    }

    /// Lock for reading if no writer holds or awaits the lock.
    ///
    /// ```
    /// let lock = gort::sync::RwLock::new(());
    /// let w = lock.write();
    /// assert!(lock.try_read().is_none());
    /// drop(w);
    /// assert!(lock.try_read().is_some());
    /// ```
    #[inline]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.raw.try_read().then(|| RwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Lock for writing if nobody holds the lock.
    ///
    /// ```
    /// let lock = gort::sync::RwLock::new(());
    /// let r = lock.read();
    /// assert!(lock.try_write().is_none());
    /// drop(r);
    /// assert!(lock.try_write().is_some());
    /// ```
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw.try_write().then(|| RwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// The data, through an exclusive borrow: no locking needed.
    ///
    /// ```
    /// let mut lock = gort::sync::RwLock::new(1);
    /// *lock.get_mut() = 2;
    /// assert_eq!(*lock.read(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while a read lock is held, so there
        // is no writer; other readers only read.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.unlock_read();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the write lock is held, so no
        // one else has a reference to the data.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.unlock_write();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
