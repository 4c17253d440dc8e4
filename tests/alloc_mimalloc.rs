//! The allocation storm (`common::allocation_storm`) under mimalloc, which
//! is linked into the program: a preemption signal can stop a goroutine
//! inside it holding one of its locks, and the runtime must still make
//! progress (issue 22, A.1).
//! Its own test binary: the global allocator is the whole process's.

mod common;

#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

storm_tests!(
    preemption_inside_mimalloc_never_deadlocks,
    preemption_inside_mimalloc_never_deadlocks_under_chaos
);
