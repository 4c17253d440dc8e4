//! Signal handlers that share a signal with the program: gort's handlers
//! for SIGURG (preemption) and SIGQUIT (dumps) are installed with the
//! flags every such handler needs, and hand signals that are not theirs
//! (or that the program also wants) to whatever handler was there before.

use std::io;

/// An `SA_SIGINFO` handler.
pub(crate) type SigInfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `handler` for `sig` (`SA_SIGINFO | SA_ONSTACK | SA_RESTART`, no
/// signal masked) and return the action it replaced. `handler` must be
/// async-signal-safe.
pub(crate) fn install_handler(sig: libc::c_int, handler: SigInfoHandler) -> io::Result<libc::sigaction> {
    // SAFETY: a zeroed sigaction is a valid "no handler" value to fill.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid sigset to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: zeroed is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::sigaction(sig, &action, &mut old) } == 0 {
        Ok(old)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Run the handler `previous` names, if it names a function (not the
/// default action, not "ignore"), with the signal's own arguments.
///
/// # Safety
/// Signal context: `sig`, `info` and `ctx` are the running handler's
/// arguments, and `previous` is the action `install_handler` replaced.
pub(crate) unsafe fn call_previous(
    previous: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this as an SA_SIGINFO handler.
        let f: SigInfoHandler = unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed this as a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
