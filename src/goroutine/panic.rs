//! Panics as a goroutine's: the message names the goroutine, and, when the
//! runtime asks for Go's rule, a panic nobody joins ends the process.
//!
//! std's panic hook names the OS thread (`thread 'gort-m0' panicked at`),
//! which says nothing about a goroutine: any of them may run on any M. The
//! first runtime built wraps the hook in place then: a panic on a
//! goroutine prints `goroutine 17 "name" panicked at <location>:`, the
//! message and a backtrace as `RUST_BACKTRACE` asks, the way std's does; a
//! panic on a plain thread goes to the hook that was there before. A
//! program that sets its own hook afterwards replaces ours, which is its
//! call (`gort::try_current` lets it name goroutines too); one it set
//! before is only called for plain threads' panics.
//!
//! Go's rule (`Builder::unjoined_panic_exits`): a panic nobody will ever
//! see — its `JoinHandle` dropped without `join`, before or after the
//! panic — ends the process with a report, a dump of every goroutine and
//! status 2, instead of leaving the program running without the work that
//! goroutine was doing. The job's `Packet` tells which of the two events,
//! the panic or the handle's drop, came second (`job.rs`); that side
//! reports.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Goroutine, try_current};

/// Install the hook that names goroutines; once per process.
pub(crate) fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match try_current() {
            Some(g) => print_panic(&g, info),
            None => previous(info),
        }));
    });
}

/// std's default message, with the goroutine where std names the thread.
fn print_panic(g: &Goroutine, info: &PanicHookInfo<'_>) {
    static NOTED: AtomicBool = AtomicBool::new(false);
    let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map_or_else(|| "<unknown>".to_string(), ToString::to_string);
    let backtrace = Backtrace::capture();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{g} panicked at {location}:\n{message}");
    if backtrace.status() == BacktraceStatus::Captured {
        let _ = writeln!(err, "stack backtrace:\n{backtrace}");
    } else if !NOTED.swap(true, Ordering::Relaxed) {
        let _ = writeln!(
            err,
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
        );
    }
}

/// Go's end for a panic nobody handles: the report, every runtime's dump,
/// exit status 2. The panic's message was printed by the hook already.
pub(crate) fn unjoined_panic(g: &Goroutine) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "fatal error: unjoined {g} panicked\n");
    for sched in crate::debug::live_runtimes() {
        let _ = writeln!(err, "runtime \"{}\":\n", sched.name);
        let _ = sched.dump(&mut err);
    }
    let _ = err.flush();
    std::process::exit(2)
}
