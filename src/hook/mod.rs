//! Goroutine-aware libc socket calls (cargo feature `hook-io`): a blocking
//! socket call made on a goroutine — by std, by any crate, by a C library
//! linked into the program — parks the goroutine on the netpoller instead
//! of blocking its thread, as every socket call does in Go. The approach is
//! libco's system-call hooks: the program defines the libc entry points
//! itself (`exports.rs`), so a socket its owner believes blocking is
//! driven non-blocking underneath.
//!
//! - `table.rs`: what is known about each descriptor (one lock-free entry
//!   per fd number), and `close`'s retirement of an entry.
//! - `block.rs`: the one check every call makes, and how a call waits —
//!   parked on a goroutine, in `poll` on a thread.
//! - `poll.rs`: `poll`/`select` and friends on a goroutine.
//! - `sys.rs`: the kernel calls behind the hooks.
//! - `exports.rs`: the entry points.
//!
//! Invariants: a call not made by parkable goroutine code (a plain thread,
//! gort's own threads, a signal handler, `gort::blocking`, a forked child)
//! and a call on a descriptor the hooks do not manage (not a socket, or a
//! socket its owner made non-blocking — `gort::net`'s own among them) goes
//! to the kernel after one lookup, with the semantics it has without the
//! feature. A managed socket is non-blocking in the kernel from the first
//! time a goroutine makes or uses it; its owner still sees the mode it
//! asked for (`fcntl(F_GETFL)`, a blocking call's timeouts and errors),
//! from goroutines and threads alike. Nothing the hooks do allocates
//! unless a goroutine's call has to wait (the registration, made once per
//! socket, and `poll`'s set), so no path that runs inside the runtime
//! allocates. See docs/hook-io.md for what is and is not covered.

mod block;
mod exports;
mod poll;
mod sys;
mod table;

pub(crate) use exports::install;
