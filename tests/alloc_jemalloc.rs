//! The allocation storm (`common::allocation_storm`) under jemalloc, which
//! is linked into the program: a preemption signal can stop a goroutine
//! inside it holding one of its locks, and the runtime must still make
//! progress (issue 22, A.1: the issue saw 6 of 10 runs hang for good; 1 of
//! 24 hung here before the fix, under a spin-locked allocator 6 of 6).
//! Its own test binary: the global allocator is the whole process's.

mod common;

#[global_allocator]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

storm_tests!(
    preemption_inside_jemalloc_never_deadlocks,
    preemption_inside_jemalloc_never_deadlocks_under_chaos
);
