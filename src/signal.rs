//! Incoming signals as channel values (Go's `os/signal`: `Notify`, `Stop`,
//! `Reset`), delivered by the runtime itself, with no thread of their own.
//!
//! A handler may not lock or allocate, so the handler only sets the
//! signal's bit in `PENDING` and wakes the default runtime's sysmon (an
//! atomic swap and a futex wake). sysmon, at the end of its cycle, takes
//! the bits and sends each signal, without blocking, to every channel
//! registered for it (`deliver_pending`). Why sysmon and not a thread, as
//! the `ctrlc` crate has: the deadlock check counts every thread outside
//! the runtimes as a possible waker (`debug/threads.rs`), so a program with
//! such a thread that deadlocks hangs instead of reporting. sysmon is one
//! of the runtime's own threads, and the check asks this module instead
//! (`awaited`): a goroutine or thread parked on a signal channel may be
//! woken from outside, so it is not deadlocked; a program where nobody
//! waits on one is, whatever it registered.
//!
//! Invariants. A signal is caught (our handler installed, the action it
//! replaced kept in `Registry::previous`) exactly while some registration
//! wants it, so `stop` and `reset` give it back its old action — usually
//! the default, which ends the process for SIGINT and SIGTERM. sysmon
//! delivers under the registry lock, taken with `try_lock` (it must not
//! wait for a goroutine that may be preempted while holding it: the bits
//! stay pending for its next cycle), so once `stop` returns, its channel
//! gets nothing more. A channel whose receivers are all dropped is found
//! out when its signal arrives; sysmon cannot free the registration (the
//! sender's drop may free memory: `sched/mod.rs`'s allocation rule), so it
//! only marks it dead — `notify` and `stop` sweep it — and, if nobody else
//! wants the signal, restores the old action and raises it again, so that
//! dropping the receiver acts like `stop` as far as the process can tell.
//!
//! The sends are `try_send`s: they never wait, but may allocate (the
//! channel's buffer grows once, to `BUFFER`) and free a stale waiter's
//! token, as the channel timers that sysmon fires for retired Ps do; they
//! run after the cycle, with `allm` released (`sched/mod.rs`'s rule).
//!
//! Go's rules kept: delivery never blocks, so a signal that finds a
//! channel's buffer full is dropped for that channel; signals of one kind
//! that arrive before sysmon takes them count as one (as the kernel merges
//! them). Latency: sysmon is woken by the handler; a signal that arrives
//! while sysmon is in its cycle is sent at the end of it.

use std::fmt;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::chan::{Receiver, Sender, TrySendError};
use crate::sched::Sched;

/// How many signals a channel from [`notify`] buffers before it drops more.
pub const BUFFER: usize = 16;

/// One past the highest signal number a `Signal` may have (the standard
/// signals; real-time ones are left to the program).
const NSIG: i32 = 32;

/// A signal [`notify`] can deliver: a standard POSIX signal other than
/// those that cannot be caught (SIGKILL, SIGSTOP), that report a fault in
/// the thread itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
/// SIGABRT), or that gort uses (SIGURG preempts goroutines, SIGQUIT dumps
/// them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Interrupt from the terminal (Ctrl-C).
pub const SIGINT: Signal = Signal(libc::SIGINT);
/// Termination request (`kill`'s default, a service manager's stop).
pub const SIGTERM: Signal = Signal(libc::SIGTERM);
/// Hang-up: the terminal closed; daemons take it as "reload".
pub const SIGHUP: Signal = Signal(libc::SIGHUP);
/// User-defined signal 1.
pub const SIGUSR1: Signal = Signal(libc::SIGUSR1);
/// User-defined signal 2.
pub const SIGUSR2: Signal = Signal(libc::SIGUSR2);
/// The terminal's window changed size.
pub const SIGWINCH: Signal = Signal(libc::SIGWINCH);
/// A child process stopped or ended.
pub const SIGCHLD: Signal = Signal(libc::SIGCHLD);
/// Write to a pipe or socket with no reader.
pub const SIGPIPE: Signal = Signal(libc::SIGPIPE);
/// An `alarm` timer expired.
pub const SIGALRM: Signal = Signal(libc::SIGALRM);
/// Stop request from the terminal (Ctrl-Z).
pub const SIGTSTP: Signal = Signal(libc::SIGTSTP);
/// Continue after a stop.
pub const SIGCONT: Signal = Signal(libc::SIGCONT);

impl Signal {
    /// The signal numbered `signo`, if [`notify`] can deliver it (see
    /// [`Signal`]).
    ///
    /// ```
    /// use gort::signal::{Signal, SIGUSR1};
    /// assert_eq!(Signal::from_raw(libc::SIGUSR1), Some(SIGUSR1));
    /// assert_eq!(Signal::from_raw(libc::SIGKILL), None);
    /// assert_eq!(Signal::from_raw(libc::SIGURG), None);
    /// ```
    pub fn from_raw(signo: i32) -> Option<Signal> {
        let refused = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
            libc::SIGURG,
            libc::SIGQUIT,
        ];
        ((1..NSIG).contains(&signo) && !refused.contains(&signo)).then_some(Signal(signo))
    }

    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    fn bit(self) -> u64 {
        1 << self.0
    }

    fn all() -> impl Iterator<Item = Signal> {
        (1..NSIG).filter_map(Signal::from_raw)
    }
}

/// The C name: `SIGINT`.
impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGCONT => "SIGCONT",
            libc::SIGTSTP => "SIGTSTP",
            libc::SIGTTIN => "SIGTTIN",
            libc::SIGTTOU => "SIGTTOU",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGVTALRM => "SIGVTALRM",
            libc::SIGPROF => "SIGPROF",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGIO => "SIGIO",
            libc::SIGPWR => "SIGPWR",
            n => return write!(f, "signal {n}"),
        };
        f.write_str(name)
    }
}

/// As `Debug`: `SIGINT`.
impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Signals caught and not yet delivered, one bit per signal number.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// The default runtime's scheduler, whose sysmon the handler wakes (it
/// lives as long as the process); null until the first `notify`.
static WAKE: AtomicPtr<Sched> = AtomicPtr::new(std::ptr::null_mut());

struct Registration {
    /// The signals it wants; 0 once found dead or emptied by `reset`.
    wanted: u64,
    tx: Sender<Signal>,
}

struct Registry {
    registrations: Vec<Registration>,
    /// The action our handler replaced, for each signal caught now.
    previous: [Option<libc::sigaction>; NSIG as usize],
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    registrations: Vec::new(),
    previous: [None; NSIG as usize],
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relay `signals` to the returned channel (Go's `signal.Notify`); an empty
/// list means every signal a [`Signal`] can be. While any channel wants a
/// signal, the signal no longer has its usual effect (SIGINT and SIGTERM no
/// longer end the process): the program decides. [`stop`], or dropping
/// every receiver, gives the signal back its previous action.
///
/// The channel buffers [`BUFFER`] signals; one that arrives while the
/// buffer is full is dropped for that channel, as Go does. Delivery needs
/// no thread of its own — the default runtime's sysmon does it — so the
/// deadlock check still reports a program that deadlocks with signals
/// registered, unless something is waiting on one of their channels.
///
/// ```
/// use gort::signal::{self, SIGUSR1};
/// let rx = signal::notify(&[SIGUSR1]);
/// // SAFETY: raising a signal has no memory-safety preconditions.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// assert_eq!(rx.recv(), Ok(SIGUSR1));
/// signal::stop(&rx);
/// ```
pub fn notify(signals: &[Signal]) -> Receiver<Signal> {
    let wanted = if signals.is_empty() {
        Signal::all().fold(0, |m, s| m | s.bit())
    } else {
        signals.iter().fold(0, |m, s| m | s.bit())
    };
    let sched = crate::runtime::default_sched();
    sched.start_helper_threads();
    WAKE.store(std::ptr::from_ref(sched).cast_mut(), Ordering::Release);
    let (tx, rx) = crate::chan::bounded(BUFFER);
    let mut r = registry();
    r.registrations.retain(|reg| reg.wanted != 0);
    r.registrations.push(Registration { wanted, tx });
    for sig in Signal::all().filter(|s| wanted & s.bit() != 0) {
        if r.previous[sig.0 as usize].is_none() {
            // Our handler only touches atomics and wakes a futex.
            match crate::os::install_handler(sig.0, on_signal) {
                Ok(old) => r.previous[sig.0 as usize] = Some(old),
                Err(e) => panic!("gort::signal::notify: cannot catch {sig}: {e}"),
            }
        }
    }
    rx
}

/// Stop relaying signals to `rx`'s channel (Go's `signal.Stop`): once this
/// returns, no more arrive there. A signal no other channel wants gets
/// its previous action back. A receiver that [`notify`] did not return is
/// left alone.
///
/// ```
/// use gort::signal::{self, SIGUSR2};
/// let rx = signal::notify(&[SIGUSR2]);
/// signal::stop(&rx);
/// assert!(rx.try_recv().is_err());
/// ```
pub fn stop(rx: &Receiver<Signal>) {
    let mut r = registry();
    r.registrations
        .retain(|reg| reg.wanted != 0 && !reg.tx.same_channel(rx));
    release_unwanted(&mut r);
}

/// Undo every [`notify`] for `signals` — for every signal if the list is
/// empty — and give each its previous action back (Go's `signal.Reset`).
/// Channels still registered for other signals keep them.
///
/// ```
/// use gort::signal::{self, SIGHUP, SIGWINCH};
/// let rx = signal::notify(&[SIGHUP, SIGWINCH]);
/// signal::reset(&[SIGHUP]);
/// signal::stop(&rx);
/// ```
pub fn reset(signals: &[Signal]) {
    let mask = if signals.is_empty() {
        u64::MAX
    } else {
        signals.iter().fold(0, |m, s| m | s.bit())
    };
    let mut r = registry();
    for reg in &mut r.registrations {
        reg.wanted &= !mask;
    }
    r.registrations.retain(|reg| reg.wanted != 0);
    release_unwanted(&mut r);
}

/// Give every caught signal no live registration wants its old action back.
fn release_unwanted(r: &mut Registry) {
    let wanted = r.registrations.iter().fold(0, |m, reg| m | reg.wanted);
    for sig in Signal::all().filter(|s| wanted & s.bit() == 0) {
        if let Some(old) = r.previous[sig.0 as usize].take() {
            restore(sig, &old);
            PENDING.fetch_and(!sig.bit(), Ordering::AcqRel);
        }
    }
}

fn restore(sig: Signal, old: &libc::sigaction) {
    // SAFETY: `old` is the action sigaction gave us for this signal.
    unsafe { libc::sigaction(sig.0, old, std::ptr::null_mut()) };
}

extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // The interrupted code may be between a failed call and its read of
    // errno, which the futex call may overwrite.
    let errno = crate::os::SavedErrno::save();
    PENDING.fetch_or(1 << sig, Ordering::AcqRel);
    let sched = WAKE.load(Ordering::Acquire);
    // SAFETY: non-null, it is the default runtime's scheduler, which is
    // never freed; `wake_sysmon` is an atomic swap and a futex wake.
    if let Some(sched) = unsafe { sched.as_ref() } {
        sched.wake_sysmon();
    }
    errno.restore();
}

/// sysmon, after its cycle: send the pending signals to the channels that
/// want them (module header). Costs a load when none is pending.
pub(crate) fn deliver_pending() {
    if PENDING.load(Ordering::Acquire) == 0 {
        return;
    }
    // Not `lock`: its holder may be a preempted goroutine, which waits
    // for sysmon to run again. The bits wait for the next cycle.
    let Ok(mut r) = REGISTRY.try_lock() else { return };
    let pending = PENDING.swap(0, Ordering::AcqRel);
    let r = &mut *r;
    for sig in Signal::all().filter(|s| pending & s.bit() != 0) {
        let mut delivered = false;
        for reg in r.registrations.iter_mut().filter(|reg| reg.wanted & sig.bit() != 0) {
            match reg.tx.try_send(sig) {
                Ok(()) | Err(TrySendError::Full(_)) => delivered = true,
                Err(TrySendError::Disconnected(_)) => reg.wanted = 0,
            }
        }
        if !delivered && let Some(old) = r.previous[sig.0 as usize].take() {
            // Every receiver is gone: the signal's old effect, now.
            restore(sig, &old);
            // SAFETY: kill has no memory preconditions; getpid neither.
            unsafe { libc::kill(libc::getpid(), sig.0) };
        }
    }
}

/// Whether a goroutine or thread is parked waiting on a signal channel,
/// for the deadlock check (module header). A registry held by someone else
/// counts as "maybe": the check looks again later.
pub(crate) fn awaited() -> bool {
    let Ok(r) = REGISTRY.try_lock() else { return true };
    r.registrations
        .iter()
        .any(|reg| reg.wanted != 0 && !reg.tx.is_disconnected() && reg.tx.receiver_waiting())
}
