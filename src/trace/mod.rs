//! Execution traces: what every P ran, when, and why it stopped — Go's
//! `runtime/trace`, written as Chrome trace-event JSON that Perfetto UI
//! (<https://ui.perfetto.dev>) and chrome://tracing open as they are.
//!
//! ```
//! let path = std::env::temp_dir().join(format!("gort-doc-trace-{}.json", std::process::id()));
//! gort::trace::start(&path)?;
//! let sum = gort::run(|| {
//!     let (tx, rx) = gort::chan::bounded(0);
//!     gort::go(move || (1..=10u64).for_each(|i| tx.send(i).unwrap()));
//!     rx.iter().sum::<u64>()
//! });
//! gort::trace::stop()?;
//! assert_eq!(sum, 55);
//! let json = std::fs::read_to_string(&path)?;
//! assert!(json.starts_with("{\"traceEvents\":[") && json.contains("\"ph\":\"X\""));
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Starting and stopping
//!
//! [`start`] begins recording every runtime of the process into a file;
//! [`stop`] stops, writes what is still buffered and finishes the file.
//! Without code changes, `GORTTRACE=path` starts a trace when the process
//! builds its first runtime; it is finished by [`stop`], or else by an
//! `atexit` handler when the process exits normally (returning from `main`,
//! `std::process::exit`, or gort's own exit on deadlock). A process killed
//! by a signal, or an explicit `start` never followed by `stop`, leaves the
//! file unfinished.
//!
//! Only one trace runs at a time. A [`start`] while one runs — say, a
//! program that traces part of itself, run with `GORTTRACE` — fails with
//! `ErrorKind::AlreadyExists`, naming the file being written, and leaves
//! that trace alone: as Go's `trace.Start` returns an error when tracing is
//! already on, never a panic. Such a program should take that error as
//! "already traced" and then not call [`stop`], which would end the other
//! trace early (the tour does so).
//!
//! # What is in it
//!
//! One process per runtime (named after it, numbered from 1 in the order
//! runtimes were built) with one track per P ("P0", "P1", ...) and one
//! "no P" track for events of plain threads, sysmon and Ms in system calls.
//! On the P tracks, every stretch a goroutine ran is a complete slice named
//! `G<id> <name>` (args: `goid`); a goroutine running when the trace starts
//! shows up from its next stretch. Instant events, all with `cat` "sched":
//!
//! | name | args | meaning |
//! |---|---|---|
//! | `spawn` | `goid`, `parent` | `parent` (0: a plain thread) spawned `goid` |
//! | `park` | `goid`, `reason` | `goid` parked, e.g. "chan receive", "sleep", "IO wait", "sync.Mutex.Lock" (the words goroutine dumps use) |
//! | `ready` | `goid`, `by` | `by` (0: a timer, the poller, a plain thread) made `goid` runnable |
//! | `yield` | `goid` | `yield_now` |
//! | `preempt` | `goid`, `how` | "cooperative": sysmon's request, honoured at a runtime call; "signal": stopped by SIGURG |
//! | `preempt_request`, `preempt_signal` | — | sysmon asked the P's goroutine to yield; then signalled it |
//! | `blocked` | — | sysmon found the P's thread blocked in the kernel outside `gort::blocking` |
//! | `syscall_enter`, `syscall_exit` | `goid` | `gort::blocking` calls its function (on the P's track), which returns (on the P's track if the goroutine got a P back meanwhile, else on "no P") |
//! | `syscall_handoff` | `goid` | sysmon took the P from `goid`'s system call (annotated, or a `blocked` one) and handed it on |
//! | `steal` | `from`, `count` | this P stole `count` goroutines from P `from` |
//! | `netpoll` | `ready` | a network poll made `ready` goroutines runnable |
//!
//! `otherData.dropped_events` counts events lost because the writer fell
//! behind (see below); it is 0 in a complete trace. `tools/gort-trace`
//! renders a trace as an SVG timeline.
//!
//! # Cost
//!
//! Off: one predictable branch per scheduler event. On: per event, a clock
//! read and a few bytes appended to the running P's own buffer, without
//! locks or atomic read-modify-writes (`buffer.rs`); a background thread
//! turns full buffers into JSON. Memory is bounded: when the writer falls
//! behind, whole buffers are dropped and counted rather than queued.

mod buffer;
mod event;
mod hooks;
mod writer;

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, Once, PoisonError};
use std::thread::JoinHandle;

pub(crate) use buffer::PTrace;
pub(crate) use hooks::{
    acquired, blocked, netpoll, on, preempt_request, preempt_signal, preempted, ready, released, slice_begin,
    slice_end, spawn, steal, syscall_enter, syscall_exit, syscall_handoff,
};

use crate::sched::timers::nanotime;

/// Full buffers waiting for the writer before new ones are dropped
/// (64 KiB each).
const QUEUED_CHUNKS: usize = 64;

/// The running trace: its writer thread, and the file it writes (for the
/// error of a second `start`). Held by `start` and `stop` while they work,
/// so they never overlap.
static SESSION: Mutex<Option<(JoinHandle<io::Result<()>>, PathBuf)>> = Mutex::new(None);
/// Names of the runtimes built so far; runtime `n` is at index `n - 1`.
static RUNTIMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Start recording an execution trace of every gort runtime of the process
/// into a new file at `path` (truncated if it exists).
///
/// Fails if the file cannot be created, or if a trace is already running
/// (`ErrorKind::AlreadyExists`; that trace goes on: module header).
///
/// ```
/// let path = std::env::temp_dir().join(format!("gort-doc-start-{}.json", std::process::id()));
/// gort::trace::start(&path)?;
/// let again = gort::trace::start(&path).unwrap_err();
/// assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists, "one trace at a time");
/// gort::trace::stop()?;
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn start(path: impl AsRef<Path>) -> io::Result<()> {
    let mut session = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, running)) = &*session {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("a gort trace is already running, into {}", running.display()),
        ));
    }
    let path = path.as_ref();
    let file = File::create(path)?;
    let (tx, rx) = mpsc::sync_channel(QUEUED_CHUNKS);
    let writer = writer::spawn(file, nanotime(), rx)?;
    buffer::enable(tx);
    *session = Some((writer, path.to_path_buf()));
    Ok(())
}

/// Stop the running trace, write out what is still buffered, and finish
/// the file. Returns the first error writing the file met. Without a
/// running trace, does nothing. May be called from a goroutine (it waits
/// for the writer the way [`crate::blocking`] calls do) or a plain thread.
pub fn stop() -> io::Result<()> {
    let mut session = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((writer, _)) = session.take() else {
        return Ok(());
    };
    let (chunks, tx) = buffer::disable();
    crate::sched::blocking(move || {
        if let Some(tx) = tx {
            for chunk in chunks {
                // Fails only if the writer has given up on an error, which
                // `join` reports.
                let _ = tx.send(chunk);
            }
        }
        writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the gort trace writer panicked")))
    })
}

/// Note a runtime being built and return its trace id (its `pid`, from 1).
/// The first call starts the trace `GORTTRACE` asks for.
pub(crate) fn register_runtime(name: &str) -> u32 {
    static FROM_ENV: Once = Once::new();
    FROM_ENV.call_once(|| {
        if let Some(path) = std::env::var_os("GORTTRACE").filter(|p| !p.is_empty()) {
            start_from_env(&path);
        }
    });
    let mut names = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
    names.push(name.to_string());
    names.len() as u32
}

fn start_from_env(path: &OsStr) {
    if let Err(e) = start(path) {
        let path = path.to_string_lossy();
        if e.kind() == io::ErrorKind::AlreadyExists {
            eprintln!("gort: GORTTRACE={path:?} ignored: the program started a trace of its own first");
        } else {
            eprintln!("gort: GORTTRACE={path:?}: {e}; no trace; accepted: GORTTRACE=PATH, a file gort can create");
        }
        return;
    }
    // SAFETY: `stop_at_exit` is a plain function that never unwinds.
    if unsafe { libc::atexit(stop_at_exit) } != 0 {
        eprintln!("gort: GORTTRACE: cannot finish the trace at exit; call gort::trace::stop()");
    }
}

/// `atexit` handler of a trace started by `GORTTRACE`.
extern "C" fn stop_at_exit() {
    if let Err(e) = stop() {
        eprintln!("gort: GORTTRACE: writing the trace failed: {e}");
    }
}

/// The names of the runtimes built so far, by trace id - 1.
fn runtime_names() -> Vec<String> {
    RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
