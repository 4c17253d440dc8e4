//! `Once` and `OnceLock`: one-time initialisation that parks the goroutines
//! that arrive while it runs (Go's sync/once.go, the same algorithm).
//!
//! `Once` is a `done` flag plus a `RawMutex`. The fast path is one Acquire
//! load of `done`. The slow path takes the mutex (waiters park with
//! `WaitReason::Once`), re-checks `done`, runs the closure and only then
//! sets `done` (Release), so a caller that returns has seen the closure's
//! effects, even one that returned through the fast path.
//!
//! `OnceLock<T>` is a `Once` plus the value slot, written exactly once,
//! inside the `Once`'s closure, and read only after `done` is seen set.
//!
//! # Panics in the closure (no poisoning)
//!
//! If the closure panics, the panic propagates to its caller, the mutex is
//! released during unwinding, and the `Once` stays incomplete: the next
//! caller (including one that was waiting) runs its own closure. This is
//! std's `OnceLock` behaviour, applied to `Once` too. std's `Once` would
//! poison itself instead, and Go's would count the panicked call as done;
//! gort has no poisoning anywhere, and counting a failed initialisation as
//! done would hand later callers an uninitialised state.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use super::mutex::RawMutex;
use crate::sched::WaitReason;

/// Runs a closure exactly once, however many goroutines call it; the
/// others park until it has finished.
///
/// ```
/// static INIT: gort::sync::Once = gort::sync::Once::new();
/// let mut runs = 0;
/// INIT.call_once(|| runs += 1);
/// INIT.call_once(|| runs += 1);
/// assert_eq!(runs, 1);
/// assert!(INIT.is_completed());
/// ```
pub struct Once {
    done: AtomicBool,
    m: RawMutex,
}

impl Once {
    /// A `Once` that has not run; `const`, so it can be a `static`.
    ///
    /// ```
    /// static START: gort::sync::Once = gort::sync::Once::new();
    /// assert!(!START.is_completed());
    /// ```
    pub const fn new() -> Once {
        Once {
            done: AtomicBool::new(false),
            m: RawMutex::new(),
        }
    }

    /// Run `f` if no call has completed yet; otherwise return at once. A
    /// call that arrives while another runs its closure parks until that
    /// finishes. If `f` panics the `Once` stays incomplete (see the module
    /// docs). Calling `call_once` on the same `Once` from inside `f`
    /// deadlocks.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// let once = Arc::new(gort::sync::Once::new());
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let handles: Vec<_> = (0..8)
    ///     .map(|_| {
    ///         let (once, runs) = (Arc::clone(&once), Arc::clone(&runs));
    ///         gort::go(move || once.call_once(|| { runs.fetch_add(1, Ordering::Relaxed); }))
    ///     })
    ///     .collect();
    /// handles.into_iter().for_each(|h| h.join().unwrap());
    /// assert_eq!(runs.load(Ordering::Relaxed), 1);
    /// ```
    #[inline]
    #[track_caller]
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if !self.is_completed() {
            self.call_slow(f);
        }
    }

    /// Whether a `call_once` has completed.
    ///
    /// ```
    /// let once = gort::sync::Once::new();
    /// assert!(!once.is_completed());
    /// once.call_once(|| {});
    /// assert!(once.is_completed());
    /// ```
    #[inline]
    pub fn is_completed(&self) -> bool {
        // Acquire pairs with the Release store in `call_slow`: the
        // closure's effects are visible.
        self.done.load(Ordering::Acquire)
    }

    #[cold]
    #[track_caller]
    fn call_slow<F: FnOnce()>(&self, f: F) {
        /// Releases the mutex, also when `f` unwinds.
        struct Unlock<'a>(&'a RawMutex);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        self.m.lock(WaitReason::Once);
        let _unlock = Unlock(&self.m);
        // Under the mutex, which orders us after the last holder.
        if !self.done.load(Ordering::Relaxed) {
            f();
            // Release pairs with the Acquire in `is_completed`.
            self.done.store(true, Ordering::Release);
        }
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once").field("completed", &self.is_completed()).finish()
    }
}

/// A cell written at most once, then readable by anyone without locking;
/// goroutines racing to initialise it park until the winner is done.
///
/// ```
/// use gort::sync::OnceLock;
///
/// static CONFIG: OnceLock<String> = OnceLock::new();
/// let value = gort::go(|| CONFIG.get_or_init(|| String::from("loaded")).len()).join().unwrap();
/// assert_eq!(value, 6);
/// assert_eq!(CONFIG.get().map(String::as_str), Some("loaded"));
/// ```
pub struct OnceLock<T> {
    once: Once,
    /// Initialised iff `once` is completed.
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by one thread, under `once`, and read
// only after `once` is complete; then every thread gets `&T`: sharing needs
// `T: Sync`, and the value may have been made on another thread (`T: Send`).
unsafe impl<T: Sync + Send> Sync for OnceLock<T> {}
// SAFETY: moving the cell moves the `T` it may hold.
unsafe impl<T: Send> Send for OnceLock<T> {}

// As std: a panicking initialiser leaves the cell empty, never half-written.
impl<T: RefUnwindSafe + UnwindSafe> RefUnwindSafe for OnceLock<T> {}
impl<T: UnwindSafe> UnwindSafe for OnceLock<T> {}

impl<T> OnceLock<T> {
    /// An empty cell; `const`, so it can be a `static`.
    ///
    /// ```
    /// static CELL: gort::sync::OnceLock<u32> = gort::sync::OnceLock::new();
    /// assert!(CELL.get().is_none());
    /// ```
    pub const fn new() -> OnceLock<T> {
        OnceLock {
            once: Once::new(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if initialised. Never waits.
    ///
    /// ```
    /// let cell = gort::sync::OnceLock::new();
    /// assert_eq!(cell.get(), None);
    /// cell.set(1).unwrap();
    /// assert_eq!(cell.get(), Some(&1));
    /// ```
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.once.is_completed() {
            // SAFETY: completed, so the value is initialised, and it is
            // never written again while `&self` lives.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, if initialised, through an exclusive borrow.
    ///
    /// ```
    /// let mut cell = gort::sync::OnceLock::from(1);
    /// *cell.get_mut().unwrap() += 1;
    /// assert_eq!(cell.get(), Some(&2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if self.once.is_completed() {
            // SAFETY: completed, so initialised; `&mut self` makes the
            // borrow unique.
            Some(unsafe { self.value.get_mut().assume_init_mut() })
        } else {
            None
        }
    }

    /// The value, initialising it with `f` first if it is empty. Of several
    /// goroutines racing here, exactly one runs its `f`; the others park
    /// until it is done and get its value. If `f` panics, the cell stays
    /// empty and the next caller runs its own `f`.
    ///
    /// ```
    /// let cell = gort::sync::OnceLock::new();
    /// assert_eq!(*cell.get_or_init(|| 1), 1);
    /// assert_eq!(*cell.get_or_init(|| 2), 1);
    /// ```
    #[track_caller]
    pub fn get_or_init<F: FnOnce() -> T>(&self, f: F) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        self.initialize(f);
        self.get().expect("OnceLock initialised")
    }

    /// Store `value` if the cell is empty; else give it back.
    ///
    /// ```
    /// let cell = gort::sync::OnceLock::new();
    /// assert_eq!(cell.set(1), Ok(()));
    /// assert_eq!(cell.set(2), Err(2));
    /// ```
    pub fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.initialize(|| value.take().expect("taken once"));
        match value {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }

    /// Consume the cell and return its value, if initialised.
    ///
    /// ```
    /// let cell = gort::sync::OnceLock::new();
    /// cell.set(String::from("x")).unwrap();
    /// assert_eq!(cell.into_inner().as_deref(), Some("x"));
    /// ```
    pub fn into_inner(self) -> Option<T> {
        let mut this = std::mem::ManuallyDrop::new(self);
        if this.once.is_completed() {
            // SAFETY: initialised; `this` is never dropped, so the value is
            // moved out exactly once.
            Some(unsafe { this.value.get_mut().assume_init_read() })
        } else {
            None
        }
    }

    /// Run `f` under `once` and store its result, unless already done.
    #[track_caller]
    fn initialize<F: FnOnce() -> T>(&self, f: F) {
        self.once.call_once(|| {
            let value = f();
            // SAFETY: inside the `Once`'s closure, so no one else writes the
            // slot, and no one reads it until the `Once` completes.
            unsafe { (*self.value.get()).write(value) };
        });
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> OnceLock<T> {
        OnceLock::new()
    }
}

impl<T> From<T> for OnceLock<T> {
    fn from(value: T) -> OnceLock<T> {
        let cell = OnceLock::new();
        // A fresh cell is empty.
        let _ = cell.set(value);
        cell
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("OnceLock");
        match self.get() {
            Some(v) => d.field(v),
            None => d.field(&format_args!("<uninit>")),
        };
        d.finish()
    }
}

impl<T> Drop for OnceLock<T> {
    fn drop(&mut self) {
        if self.once.is_completed() {
            // SAFETY: initialised, and dropped exactly once, here.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}
