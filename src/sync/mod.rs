//! Goroutine-aware synchronization (Go's package sync). Every primitive
//! here parks the waiting goroutine — never its thread — through
//! `sched::park`; called from a plain OS thread, it blocks that thread.
//!
//! Only `WaitGroup` exists so far; the rest of DESIGN.md §1's list comes
//! with the channels issue.

mod waitgroup;

pub use waitgroup::WaitGroup;
