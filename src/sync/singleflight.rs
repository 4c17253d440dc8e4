//! `SingleFlight`: callers asking for the same key at the same time share
//! one execution of the work (golang.org/x/sync/singleflight).
//!
//! The map holds one `Call` per key in flight. The first caller for a key
//! inserts it; later ones find it and count themselves as duplicates.
//! Everyone then asks the call's `OnceLock` for the value: the first runs
//! its function, the others park until it is set (`once.rs`). So the
//! result is computed once per flight, and it is handed to every caller by
//! `Clone` (Go hands out the same interface value).
//!
//! A caller that gets the value removes the key if it still maps to its
//! call, so the next caller starts a new flight. A function that panics
//! leaves the cell empty (`OnceLock`'s rule): a waiting duplicate runs its
//! own function instead, and the flight goes on; the panic reaches only
//! the caller whose function panicked. The map's lock is never held while
//! a function runs.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::OnceLock;
use crate::sched::lock;

/// Deduplicates concurrent work by key.
///
/// ```
/// use gort::sync::SingleFlight;
/// use std::sync::Arc;
/// let flights = Arc::new(SingleFlight::new());
/// let (v, shared) = flights.run("config", || "loaded".to_string());
/// assert_eq!((v.as_str(), shared), ("loaded", false));
/// ```
pub struct SingleFlight<K, V> {
    calls: Mutex<HashMap<K, Arc<Call<V>>>>,
}

struct Call<V> {
    value: OnceLock<V>,
    /// Callers that joined after the first.
    dups: AtomicUsize,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// A group with nothing in flight.
    ///
    /// ```
    /// let g: gort::sync::SingleFlight<u32, u32> = gort::sync::SingleFlight::new();
    /// assert_eq!(g.run(1, || 2), (2, false));
    /// ```
    pub fn new() -> SingleFlight<K, V> {
        SingleFlight {
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Run `f` for `key` unless a call for `key` is in flight, in which
    /// case wait for that call's value instead (Go's `Do`). Returns the
    /// value and whether it was shared with another caller.
    ///
    /// ```
    /// use gort::sync::SingleFlight;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let flights = Arc::new(SingleFlight::new());
    /// let runs = Arc::new(AtomicU32::new(0));
    /// let (release, gate) = gort::chan::bounded::<()>(0);
    /// let callers: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let (flights, runs, gate) = (Arc::clone(&flights), Arc::clone(&runs), gate.clone());
    ///         gort::go(move || {
    ///             flights.run("key", || {
    ///                 runs.fetch_add(1, Ordering::SeqCst);
    ///                 let _ = gate.recv(); // held open until every caller joined
    ///                 42
    ///             })
    ///         })
    ///     })
    ///     .collect();
    /// while flights.waiting(&"key") < 3 {
    ///     gort::yield_now();
    /// }
    /// drop(release);
    /// for c in callers {
    ///     assert_eq!(c.join().unwrap(), (42, true));
    /// }
    /// assert_eq!(runs.load(Ordering::SeqCst), 1);
    /// ```
    #[track_caller]
    pub fn run(&self, key: K, f: impl FnOnce() -> V) -> (V, bool) {
        let call = {
            let mut calls = lock(&self.calls);
            match calls.get(&key) {
                Some(call) => {
                    call.dups.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(call)
                }
                None => {
                    let call = Arc::new(Call {
                        value: OnceLock::new(),
                        dups: AtomicUsize::new(0),
                    });
                    calls.insert(key.clone(), Arc::clone(&call));
                    call
                }
            }
        };
        let v = call.value.get_or_init(f).clone();
        let ended = {
            let mut calls = lock(&self.calls);
            match calls.get(&key) {
                Some(c) if Arc::ptr_eq(c, &call) => calls.remove_entry(&key),
                _ => None,
            }
        };
        // The key (user code's drop) is dropped unlocked.
        drop(ended);
        (v, call.dups.load(Ordering::Relaxed) > 0)
    }

    /// Forget the call in flight for `key`, if any: the next `run` for it
    /// starts a new one instead of waiting (Go's `Forget`).
    ///
    /// ```
    /// let g = gort::sync::SingleFlight::new();
    /// g.forget(&"nothing in flight");
    /// assert_eq!(g.run("k", || 1), (1, false));
    /// ```
    pub fn forget(&self, key: &K) {
        let forgotten = lock(&self.calls).remove_entry(key);
        drop(forgotten);
    }

    /// How many callers are waiting on the call in flight for `key`, not
    /// counting the first (0 if none is in flight).
    ///
    /// ```
    /// let g: gort::sync::SingleFlight<&str, ()> = gort::sync::SingleFlight::new();
    /// assert_eq!(g.waiting(&"k"), 0);
    /// ```
    pub fn waiting(&self, key: &K) -> usize {
        lock(&self.calls).get(key).map_or(0, |c| c.dups.load(Ordering::Relaxed))
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> SingleFlight<K, V> {
        SingleFlight::new()
    }
}

impl<K, V> fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &lock(&self.calls).len())
            .finish()
    }
}
