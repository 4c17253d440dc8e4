//! Goroutine-aware synchronization (Go's package sync, plus
//! golang.org/x/sync/semaphore), with std::sync's names and shapes. Every
//! primitive here parks the waiting goroutine — never its thread — through
//! `sched::park`; called from a plain OS thread, it blocks that thread, so
//! goroutines and threads can share one lock.
//!
//! | type | Go | file |
//! |---|---|---|
//! | [`Mutex`] | sync.Mutex (normal and starvation mode) | `mutex.rs` |
//! | [`RwLock`] | sync.RWMutex (a waiting writer blocks new readers) | `rwlock.rs` |
//! | [`Condvar`] | sync.Cond | `condvar.rs` |
//! | [`Once`], [`OnceLock`] | sync.Once, sync.OnceValue | `once.rs` |
//! | [`WaitGroup`] | sync.WaitGroup | `waitgroup.rs` |
//! | [`Semaphore`] | x/sync/semaphore.Weighted | `semaphore.rs` |
//! | [`Barrier`] | (std::sync::Barrier) | `barrier.rs` |
//! | [`ErrGroup`] | x/sync/errgroup.Group | `errgroup.rs` |
//! | [`SingleFlight`] | x/sync/singleflight.Group | `singleflight.rs` |
//!
//! All of them queue their waiters in one shared FIFO, `sema::WaitQueue`,
//! kept behind each primitive's own short internal lock; `sema::Sema` is
//! Go's runtime semaphore on top of it, used by `Mutex` and `RwLock`.
//!
//! **No poisoning.** As in Go (and parking_lot), a panic while a guard is
//! held just releases the lock during unwinding: `Mutex::lock`,
//! `RwLock::{read, write}` and `Condvar::wait` return guards directly, not
//! `LockResult`s, and the `try_*` forms return `Option`. A `Once` or
//! `OnceLock` whose initialiser panics stays uninitialised, and the next
//! caller runs its own initialiser.

mod barrier;
mod condvar;
mod deadline_lock;
mod errgroup;
mod mutex;
mod once;
mod rwlock;
mod sema;
mod semaphore;
mod singleflight;
mod waitgroup;

pub(crate) use deadline_lock::{DeadlineLock, DeadlineLockGuard};

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use errgroup::ErrGroup;
pub use mutex::{Mutex, MutexGuard};
pub use once::{Once, OnceLock};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::Semaphore;
pub use singleflight::SingleFlight;
pub use waitgroup::{WaitGroup, WaitGroupGuard};
