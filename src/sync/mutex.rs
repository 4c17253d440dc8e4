//! `Mutex`: mutual exclusion that parks goroutines (Go's sync/mutex.go).
//!
//! `RawMutex` is Go's `sync.Mutex` algorithm; `Mutex<T>` wraps it around
//! the data it protects, with std's shape. `RwLock` (its writers' lock) and
//! `Once` use `RawMutex` too.
//!
//! # State
//!
//! One `AtomicU32`: bit 0 `LOCKED`, bit 1 `WOKEN` (a waiter has been woken
//! or a spinner is about to take the lock: `unlock` need not wake another),
//! bit 2 `STARVING`, and above them the number of waiters counted as
//! blocked on `sema`. `sema` (see `sema.rs`) holds the parked waiters behind
//! its own short internal lock. Lock and unlock without contention are one
//! CAS and one `fetch_sub`; nothing else is touched.
//!
//! # Normal and starvation mode (Go's design)
//!
//! In normal mode waiters queue FIFO, but a woken waiter does not own the
//! mutex: it competes with newly arriving goroutines, which have the
//! advantage of already running (and may spin briefly when other Ps can be
//! running the holder). A woken waiter that loses requeues at the *front*.
//! This "barging" gives the best throughput.
//!
//! A waiter that has waited more than 1 ms switches the mutex to starvation
//! mode: `unlock` then hands ownership directly to the head waiter (leaving
//! `LOCKED` clear but `STARVING` set, so newcomers neither take the lock nor
//! spin, and queue at the tail). The waiter that receives it sets `LOCKED`
//! itself, and switches back to normal mode if it waited less than 1 ms or
//! is the last waiter. So no waiter starves.
//!
//! # Poisoning
//!
//! None, as in Go (and parking_lot): a panic while the lock is held
//! releases it when the guard is dropped during unwinding, and `lock`
//! returns the guard directly. Data that must stay consistent across a
//! panic needs its own care, as it would in Go.
//!
//! Ownership: the lock has no owner identity, so a guard may be sent to and
//! dropped by another goroutine or thread (`MutexGuard: Send` for `T: Send`),
//! as Go allows `Unlock` from another goroutine.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::sema::Sema;
use crate::sched::{WaitReason, current_m, yield_now};

const LOCKED: u32 = 1;
const WOKEN: u32 = 2;
const STARVING: u32 = 4;
const WAITER_SHIFT: u32 = 3;
const WAITER: u32 = 1 << WAITER_SHIFT;

/// A waiter that has waited this long switches the mutex to starvation mode.
const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);
/// Spin rounds before parking (Go's `active_spin`), and pauses per round.
const SPIN_ROUNDS: u32 = 4;
const SPIN_PAUSES: u32 = 30;

/// Go's `sync.Mutex`, without data. Any goroutine or thread.
pub(crate) struct RawMutex {
    state: AtomicU32,
    sema: Sema,
}

impl RawMutex {
    pub(crate) const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            sema: Sema::new(),
        }
    }

    /// Acquire the lock; a waiter parks with `reason`.
    #[inline]
    #[track_caller]
    pub(crate) fn lock(&self, reason: WaitReason) {
        crate::sched::chaos_point();
        // Acquire pairs with the Release in `unlock`: the previous holder's
        // writes are visible.
        if self
            .state
            .compare_exchange_weak(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(reason);
        }
    }

    /// Acquire the lock if that needs no waiting. Fails in starvation mode,
    /// where the lock belongs to the head waiter.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        // Acquire: as in `lock`.
        old & (LOCKED | STARVING) == 0
            && self
                .state
                .compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Release the lock, waking at most one waiter. The caller holds it.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release pairs with the Acquire of whoever takes the lock next.
        let old = self.state.fetch_sub(LOCKED, Ordering::Release);
        if old != LOCKED {
            self.unlock_slow(old);
        }
        crate::sched::chaos_point();
    }

    #[cold]
    #[track_caller]
    fn lock_slow(&self, reason: WaitReason) {
        let mut wait_start: Option<Instant> = None;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while the holder may be about to release: not in
            // starvation mode, where the lock goes to the head waiter anyway.
            if old & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                // Set WOKEN so that `unlock` does not wake a waiter we are
                // about to beat to the lock.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange_weak(old, old | WOKEN, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    awoke = true;
                }
                for _ in 0..SPIN_PAUSES {
                    std::hint::spin_loop();
                }
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            // A starving mutex belongs to the head waiter: newcomers queue.
            if old & STARVING == 0 {
                new |= LOCKED;
            }
            if old & (LOCKED | STARVING) != 0 {
                new += WAITER;
            }
            // Switch to starvation mode, unless the mutex was just released:
            // `unlock` expects a starving mutex to have waiters.
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                // We were woken (or claimed WOKEN while spinning): the flag
                // is ours to clear whatever happens.
                debug_assert!(new & WOKEN != 0, "sync: inconsistent mutex state");
                new &= !WOKEN;
            }
            // Acquire pairs with the Release in `unlock` when this CAS takes
            // the lock.
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return;
                    }
                    // Counted as a waiter: park. One woken before goes back
                    // to the head of the queue.
                    let lifo = wait_start.is_some();
                    let start = *wait_start.get_or_insert_with(Instant::now);
                    self.sema.acquire(lifo, reason);
                    starving = starving || start.elapsed() > STARVATION_THRESHOLD;
                    old = self.state.load(Ordering::Relaxed);
                    if old & STARVING != 0 {
                        // Ownership was handed to us, but LOCKED is clear and
                        // we are still counted as a waiter: fix both.
                        debug_assert!(
                            old & (LOCKED | WOKEN) == 0 && old >> WAITER_SHIFT != 0,
                            "sync: inconsistent mutex state"
                        );
                        let mut delta = WAITER - LOCKED;
                        if !starving || old >> WAITER_SHIFT == 1 {
                            // Leave starvation mode: it is slow, and two
                            // goroutines could otherwise hand the lock back
                            // and forth in it forever.
                            delta += STARVING;
                        }
                        // Acquire pairs with the Release `fetch_sub` of the
                        // unlock that handed the lock over (this RMW reads
                        // from its release sequence).
                        self.state.fetch_sub(delta, Ordering::Acquire);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(now) => old = now,
            }
        }
    }

    /// `old` is the state before `unlock` cleared `LOCKED`.
    #[cold]
    fn unlock_slow(&self, old: u32) {
        // Unreachable through guards; a bug must not go unnoticed (the
        // state word would now be corrupt).
        assert!(old & LOCKED != 0, "sync: unlock of unlocked mutex");
        let mut state = old - LOCKED;
        if state & STARVING != 0 {
            // Hand ownership to the head waiter (LOCKED stays clear, but
            // STARVING keeps newcomers off), and yield so it runs at once.
            // Not while unwinding: std counts panics per thread, so a
            // goroutine must not move to another thread mid-unwind.
            self.sema.release(1);
            if !std::thread::panicking() {
                yield_now();
            }
            return;
        }
        loop {
            // Nobody to wake, or someone already woken, spinning or holding
            // the lock: it will take care of the waiters.
            if state >> WAITER_SHIFT == 0 || state & (LOCKED | WOKEN | STARVING) != 0 {
                return;
            }
            // Take the right to wake one waiter.
            match self.state.compare_exchange_weak(
                state,
                (state - WAITER) | WOKEN,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.sema.release(1);
                    return;
                }
                Err(now) => state = now,
            }
        }
    }
}

/// Whether spinning for the lock can pay off (Go's `sync_runtime_canSpin`,
/// simplified): only a few rounds, and only if the holder may be running
/// meanwhile — on another P, or anywhere when the caller is a plain thread.
fn can_spin(iter: u32) -> bool {
    iter < SPIN_ROUNDS && current_m().is_none_or(|m| m.sched.gomaxprocs() > 1)
}

/// A mutual-exclusion lock protecting a `T`, which parks the waiting
/// goroutine (or blocks the waiting plain thread). Go's `sync.Mutex`
/// semantics with std's shape, minus poisoning (see the module docs): no
/// waiter starves, and a goroutine that holds it may migrate threads.
///
/// ```
/// use std::sync::Arc;
/// use gort::sync::Mutex;
///
/// let counter = Arc::new(Mutex::new(0));
/// let handles: Vec<_> = (0..10)
///     .map(|_| {
///         let counter = Arc::clone(&counter);
///         gort::go(move || *counter.lock() += 1)
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 10);
/// ```
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one holder at a time access to the `T`, which may
// be a different thread than the one that created it: `T: Send` suffices.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Proof that a `Mutex` is locked; derefs to the data; unlocks on drop.
///
/// ```
/// let m = gort::sync::Mutex::new(vec![1]);
/// let mut guard = m.lock();
/// guard.push(2);
/// drop(guard);
/// assert_eq!(*m.lock(), [1, 2]);
/// ```
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(super) mutex: &'a Mutex<T>,
    /// `Send` iff `T: Send`, `Sync` iff `T: Sync` (and `Send`).
    _marker: PhantomData<&'a mut T>,
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex; `const`, so it can be a `static`.
    ///
    /// ```
    /// static NAMES: gort::sync::Mutex<Vec<&str>> = gort::sync::Mutex::new(Vec::new());
    /// NAMES.lock().push("gopher");
    /// assert_eq!(NAMES.lock().len(), 1);
    /// ```
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consume the mutex and return the data.
    ///
    /// ```
    /// let m = gort::sync::Mutex::new(String::from("x"));
    /// assert_eq!(m.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Lock, parking the goroutine (or blocking the thread) until the lock
    /// is free. Locking a mutex the caller already holds deadlocks.
    ///
    /// ```
    /// let m = gort::sync::Mutex::new(1);
    /// *m.lock() += 1;
    /// assert_eq!(*m.lock(), 2);
    /// ```
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock(WaitReason::Mutex);
        MutexGuard {
            mutex: self,
            _marker: PhantomData,
        }
    }

    /// Lock if that needs no waiting; `None` if the mutex is held (or
    /// promised to a waiter in starvation mode).
    ///
    /// ```
    /// let m = gort::sync::Mutex::new(());
    /// let guard = m.try_lock().unwrap();
    /// assert!(m.try_lock().is_none());
    /// drop(guard);
    /// assert!(m.try_lock().is_some());
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().then(|| MutexGuard {
            mutex: self,
            _marker: PhantomData,
        })
    }

    /// The data, through an exclusive borrow: no locking needed.
    ///
    /// ```
    /// let mut m = gort::sync::Mutex::new(1);
    /// *m.get_mut() = 5;
    /// assert_eq!(*m.lock(), 5);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no one
        // else has a reference to the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
