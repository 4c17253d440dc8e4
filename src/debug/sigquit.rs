//! SIGQUIT (Ctrl-\) prints a goroutine dump of every runtime to stderr and
//! the program keeps running. Go prints the same dump and exits with status
//! 2; `GORTDEBUG=sigquitexit=1` asks for that.
//!
//! A signal handler may not allocate or lock, and a dump does both, so the
//! handler only writes one byte into a pipe; a helper thread blocked on the
//! pipe's other end takes the dump. The write end does not block: with the
//! pipe full of requests the helper has not served (it waits for stderr,
//! say, which the interrupted thread may hold), a further SIGQUIT is
//! dropped instead of stopping its thread for ever. A handler the program
//! installed before gort's first runtime still runs after ours (chained,
//! as for SIGURG); a handler installed later replaces ours, which is the
//! program's call.
//!
//! What the dump prints is `GORTDEBUG=sigquit=LEVEL`, in the spirit of Go's
//! `GOTRACEBACK` levels ([`SigquitDump`]): `all` is Go's dump, every
//! goroutine; `grouped` counts identical goroutines together (the
//! goroutine profile's `debug=1`); `none` prints one line per runtime with
//! its goroutine count. The default, `auto`, is `all` for a runtime of up
//! to `GROUP_ABOVE` goroutines and `grouped` beyond: Go prints all, and so
//! does gort for any program a person reads the dump of, but 100,000
//! goroutines make 36 MB of near-identical entries, which a live server
//! should not pour into its log for one keystroke. Go's `single` (only the
//! current goroutine) has no meaning here, since a signal has no current
//! goroutine, and is refused like any unknown value.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::sched::Sched;

/// Past this many goroutines a runtime's `auto` SIGQUIT dump is grouped.
const GROUP_ABOVE: usize = 10_000;

/// What the SIGQUIT dump prints of each runtime (`GORTDEBUG=sigquit=...`,
/// module header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SigquitDump {
    /// A line with the goroutine count, no traces.
    None,
    /// Identical goroutines counted together (`runtime::dump_grouped`).
    Grouped,
    /// Every goroutine (`runtime::dump`), Go's dump.
    All,
    /// `All` up to `GROUP_ABOVE` goroutines, `Grouped` beyond.
    #[default]
    Auto,
}

impl SigquitDump {
    /// The level a `GORTDEBUG` value names, if any.
    pub(crate) fn parse(value: &str) -> Option<SigquitDump> {
        match value {
            "none" => Some(SigquitDump::None),
            "grouped" => Some(SigquitDump::Grouped),
            "all" => Some(SigquitDump::All),
            "auto" => Some(SigquitDump::Auto),
            _ => None,
        }
    }

    /// Write the dump of `sched` at this level.
    fn write(self, sched: &Sched, w: &mut dyn Write) -> std::io::Result<()> {
        let n = sched.num_goroutine();
        match self {
            SigquitDump::None => writeln!(w, "{n} goroutines (traces omitted: GORTDEBUG=sigquit=none)\n"),
            SigquitDump::Grouped => sched.dump_grouped(w),
            SigquitDump::Auto if n > GROUP_ABOVE => sched.dump_grouped(w),
            SigquitDump::All | SigquitDump::Auto => sched.dump(w),
        }
    }
}

/// The pipe's write end, for the handler.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALLED: std::sync::Once = std::sync::Once::new();

/// Install the handler and start the dumping thread; once per process.
pub(crate) fn install() {
    INSTALLED.call_once(|| {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return;
        }
        let [read_end, write_end] = fds;
        // SAFETY: `write_end` is the descriptor pipe2 just made; F_SETFL
        // takes no pointers.
        if unsafe { libc::fcntl(write_end, libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return;
        }
        let started = std::thread::Builder::new()
            .name("gort-sigquit".into())
            .spawn(move || dump_on_signal(read_end));
        if started.is_err() {
            return;
        }
        PIPE_WRITE.store(write_end, Ordering::Release);
        // `on_sigquit` is async-signal-safe: one `write`, then the
        // previous handler.
        if let Ok(old) = crate::os::install_handler(libc::SIGQUIT, on_sigquit) {
            let _ = PREVIOUS.set(old);
        }
    });
}

extern "C" fn on_sigquit(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // The interrupted code may be between a failed call and its read of
    // errno, which a full pipe's EAGAIN would overwrite.
    let errno = crate::os::SavedErrno::save();
    let fd = PIPE_WRITE.load(Ordering::Acquire);
    let byte = 1u8;
    // SAFETY: write(2) is async-signal-safe; `byte` outlives the call. A
    // full pipe (dumps pending) drops this request, which is fine.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    errno.restore();
    if let Some(prev) = PREVIOUS.get() {
        // SAFETY: our handler's own arguments; `prev` is what we replaced.
        unsafe { crate::os::call_previous(prev, sig, info, ctx) };
    }
}

/// The helper thread: one dump per byte read.
fn dump_on_signal(read_end: libc::c_int) {
    let _helper = super::threads::Helper::enter();
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`, which we own.
        let n = unsafe { libc::read(read_end, (&raw mut byte).cast(), 1) };
        if n == 0 {
            return;
        }
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut exit = false;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "SIGQUIT: goroutine dump\n");
        for sched in super::live_runtimes() {
            let _ = writeln!(err, "runtime \"{}\":\n", sched.name);
            let _ = sched.debug_flags().sigquit.write(&sched, &mut err);
            exit |= sched.debug_flags().sigquit_exit;
        }
        let _ = err.flush();
        if exit {
            std::process::exit(2);
        }
    }
}
