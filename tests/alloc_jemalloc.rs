//! The allocation storm (`common::allocation_storm`) under jemalloc, which
//! is linked into the program: a preemption signal can stop a goroutine
//! inside it holding one of its locks, and the runtime must still make
//! progress (issue 22, A.1: before the fix, 6 of 10 runs hung for good).
//! Its own test binary: the global allocator is the whole process's.

mod common;

use std::time::Duration;

#[global_allocator]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn preemption_inside_jemalloc_never_deadlocks() {
    let hung = common::count_storm_hangs(
        "preemption_inside_jemalloc_never_deadlocks",
        8,
        Duration::from_secs(3),
        false,
    );
    assert_eq!(hung, 0, "runs that hung");
}

#[test]
fn preemption_inside_jemalloc_never_deadlocks_under_chaos() {
    let hung = common::count_storm_hangs(
        "preemption_inside_jemalloc_never_deadlocks_under_chaos",
        4,
        Duration::from_secs(3),
        true,
    );
    assert_eq!(hung, 0, "runs that hung");
}
