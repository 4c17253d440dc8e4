//! # gort — Go's runtime scheduler as a Rust library
//!
//! Stackful goroutines multiplexed M:N onto OS threads by Go's GMP
//! scheduler. Write plain blocking code; get Go's concurrency.
//!
//! ```
//! let total: u64 = gort::run(|| {
//!     let handles: Vec<_> = (0..1000u64).map(|i| gort::go(move || i)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(total, 499_500);
//! ```
//!
//! ## Glossary (Go's names, kept on purpose)
//!
//! | name | meaning |
//! |---|---|
//! | **G** | a goroutine: closure, stack, saved registers, status |
//! | **M** | an OS thread ("machine"); its native stack is its **g0**, where the scheduler runs |
//! | **P** | a processor: the right to run goroutines; `procs` of them; each has a local run queue |
//! | **runnext** | a P's one-slot fast lane: the goroutine just spawned or woken runs next |
//! | **spinning** | an M without work that keeps its P a little while to steal work |
//! | **handoff** | giving a P to another M when its own M blocks |
//! | **park / ready** | `gopark` suspends a G waiting for something; `goready` makes it runnable |
//! | **global queue** | the runtime-wide run queue, checked every 61st slice |
//!
//! ## What blocks what
//!
//! | event | the G | its M (thread) | its P |
//! |---|---|---|---|
//! | `join`, `scope` end, `yield_now` | parks / requeues | runs other Gs | stays |
//! | a goroutine returns | recycled with its stack | runs other Gs | stays |
//! | no runnable G anywhere | — | spins, then sleeps on a futex | returned to the idle list |
//! | a plain thread calls `join` | — | that thread blocks (it is not an M) | — |
//! | socket read/write with no data / no room | parks (netpoller) | runs other Gs | stays |
//! | `gort::blocking(f)`, or a blocking call sysmon detects | runs `f` | blocks in the kernel | handed to another M |
//! | a goroutine runs past its slice while others wait | preempted, keeps its thread | sleeps with it | handed to another M |
//! | `lock_os_thread` goroutine parks | parks | sleeps (runs nothing else) | handed to another M |
//!
//! ## Migration rule
//!
//! A goroutine may move to another OS thread whenever it calls into the
//! runtime (join, yield, channel ops, locks, sleeps, socket I/O); an
//! asynchronous preemption never moves it. Do not hold a reference obtained
//! from `thread_local!`'s `with` across such a call, and check a failed
//! system call's `io::Error` before the next one (the compiler may keep
//! `errno`'s per-thread address across the call).
//!
//! ## Module map
//!
//! `arch` (context switch and preemption trampoline, the only assembly),
//! `stack` (guarded stack reservations), `os` (futex, epoll, signals, system
//! calls), `sched` (G, M, P, run queues, schedule, idle Ms, park, sysmon,
//! preemption, system calls), `netpoll` (epoll poll descriptors),
//! `goroutine` and `runtime` (the public API), `future` (futures on
//! goroutines), `chan`, `sync`, `context`, `time`,
//! `net`, `io`, `debug` (dumps, deadlock and leak checks), `trace`
//! (execution traces), `tokio` (Tokio-bound futures, cargo feature `tokio`).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
#![warn(missing_docs)]

mod arch;
pub mod chan;
pub mod context;
pub mod debug;
pub mod future;
pub mod goroutine;
#[cfg(feature = "hook-io")]
mod hook;
pub mod io;
pub mod net;
mod netpoll;
mod os;
pub mod runtime;
mod sched;
pub mod signal;
mod stack;
pub mod sync;
pub mod time;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod trace;

pub use future::block_on;
pub use goroutine::{JoinHandle, Scope, ScopedJoinHandle, blocking, current, go, scope, try_current, yield_now};
pub use runtime::{Error, Runtime, run};

/// Run `main`'s body as the main goroutine of a gort runtime (`#[tokio::main]`'s
/// counterpart; feature `macros`, on by default).
///
/// Without options it runs on the default runtime, as [`run`] does. Each
/// option is the [`runtime::Builder`] call of the same name and builds a
/// runtime of its own: `procs = 4`, `chaos = 7`, `stack_size = 65536`,
/// `max_threads = 100`, `name = "app"`, `detect_deadlocks = false`,
/// `unjoined_panic_exits = true`. When `main` returns, the process ends,
/// whatever goroutines still run (Go's rule). `main` may return what std's
/// `main` may — a `Result` with an error that is not `Send` too.
///
/// ```
/// #[gort::main(procs = 2)]
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let (tx, rx) = gort::chan::bounded(0);
///     gort::go(move || tx.send("42".parse::<u32>()).unwrap());
///     assert_eq!(rx.recv()??, 42);
///     Ok(())
/// }
/// ```
///
/// Misuse is a compile error that says why: an `async fn`, parameters,
/// generics, an unknown option or a value of the wrong type.
#[cfg(feature = "macros")]
pub use gort_macros::main;

/// Run a test's body as the main goroutine of a runtime of its own (feature
/// `macros`, on by default).
///
/// It takes [`main`]'s options, plus `leak_check = true`: after the body,
/// fail the test if a goroutine it started is still alive a second later,
/// with each one's stack in the message ([`Runtime::check_leaks`]). The
/// test may return a `Result`; the `should_panic` and `ignore` attributes work as
/// usual.
///
/// ```
/// #[gort::test(procs = 1, chaos = 7, leak_check = true)]
/// fn ping_pong() {
///     let (ping, pong) = (gort::chan::bounded(0), gort::chan::bounded(0));
///     let (ping_tx, ping_rx) = ping;
///     let (pong_tx, pong_rx) = pong;
///     let h = gort::go(move || ping_rx.iter().for_each(|n: u32| pong_tx.send(n + 1).unwrap()));
///     ping_tx.send(1).unwrap();
///     assert_eq!(pong_rx.recv(), Ok(2));
///     drop(ping_tx);
///     h.join().unwrap();
/// }
/// ```
#[cfg(feature = "macros")]
pub use gort_macros::test;
