//! Code addresses to frames (function, file, line), and the rule that tells
//! the runtime's own frames from the user's.
//!
//! Symbols come from the `backtrace` crate, which reads the DWARF line
//! tables (release builds have `debug = 1`) and expands inlined calls:
//! one address can give several frames, innermost first, all carrying that
//! address. Names are demangled and printed without the `::h0123abcd` hash,
//! as Rust's own backtraces show them. The first lookup parses the debug
//! info of the objects involved (tens of milliseconds); `backtrace` keeps it
//! cached for the rest of the process.
//!
//! Address lists follow `debug`'s convention: the first entry is exact, the
//! others are return addresses. `backtrace::resolve` always looks up the
//! byte before the address it is given (right for a return address, which
//! follows its call instruction), so the exact first entry is handed to it
//! one byte on.
//!
//! Runtime frames. A parked goroutine's stack starts with the park path
//! (`mcall`, `gopark`, the channel's internals) and ends with the spawn path
//! (`goroutine_trampoline`, `goroutine_entry`, `Task::run`, `catch_unwind`,
//! `FnOnce::call_once`). Neither says anything about the user's program, so
//! a dump trims them ([`trim_runtime_frames`]), keeping one frame of the
//! park path: the gort function the user's code called (`Receiver::recv`),
//! which says what the goroutine waits for, as Go's `chanrecv1` line does.
//! Which frames count as runtime is decided by the crate that owns the
//! function ([`is_runtime_frame`]).

use std::ffi::c_void;

/// What a frame's function is called when no symbol covers its address.
const UNKNOWN: &str = "?";

/// Crates whose functions are runtime machinery in a goroutine's trace.
const RUNTIME_CRATES: [&str; 4] = ["gort", "std", "core", "alloc"];

/// One symbolized frame. Inlined calls are frames of their own that share
/// the address of the frame they were inlined into.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Frame {
    /// Demangled, without the hash (`gort::chan::Receiver<T>::recv`);
    /// `"?"` when no symbol covers the address.
    pub function: String,
    /// Source file, as the debug info names it.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The entry of the address list this frame came from.
    pub ip: usize,
}

/// The frames of the addresses `ips` (first entry exact, then return
/// addresses), inlined calls expanded, innermost first. Every address gives
/// at least one frame, `"?"` if nothing is known about it.
pub(crate) fn symbolize(ips: &[usize]) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(ips.len());
    for (i, &ip) in ips.iter().enumerate() {
        // `resolve` looks up the byte before what it is given (module header).
        let given = if i == 0 { ip.wrapping_add(1) } else { ip };
        let first = frames.len();
        backtrace::resolve(given as *mut c_void, |symbol| {
            frames.push(Frame {
                function: symbol
                    .name()
                    .map_or_else(|| UNKNOWN.to_string(), |name| format!("{name:#}")),
                file: symbol.filename().map(|path| path.display().to_string()),
                line: symbol.lineno(),
                ip,
            });
        });
        if frames.len() == first {
            frames.push(Frame {
                function: UNKNOWN.to_string(),
                file: None,
                line: None,
                ip,
            });
        }
    }
    frames
}

/// Whether `frame` is the runtime's own machinery: its function belongs to
/// gort or to the standard library (`std`, `core`, `alloc`). The owner of a
/// trait method (`<gort::chan::Receiver<T> as Iterator>::next`) is the
/// crate of the type it is implemented for. gort's own unit tests (a
/// `tests` module) stand in for user code, so they are not runtime frames.
/// Functions from other crates and ones without a symbol (`"?"`, C
/// libraries) are not runtime frames either: they are what the user's
/// program ran.
pub(crate) fn is_runtime_frame(frame: &Frame) -> bool {
    let function = frame.function.as_str();
    RUNTIME_CRATES.contains(&owning_crate(function)) && !function.contains("::tests::")
}

/// The first path segment of the function's own type or module: qualifiers
/// such as `<`, `&`, `&mut `, `*const `, `dyn ` skipped.
pub(crate) fn owning_crate(function: &str) -> &str {
    let mut name = function;
    loop {
        let trimmed = name
            .trim_start_matches(['<', '&', '*', '(', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if trimmed.len() == name.len() {
            break;
        }
        name = trimmed;
    }
    name.split("::").next().unwrap_or(name)
}

/// Trim a goroutine's frames to what concerns its user: the runtime frames
/// at the bottom (the spawn path) all go, those at the top (the park path)
/// all but the last, the gort call the user's code made. A trace with no
/// user frame at all is left whole: there is nothing better to show.
pub(crate) fn trim_runtime_frames(frames: &mut Vec<Frame>) {
    let Some(first_user) = frames.iter().position(|f| !is_runtime_frame(f)) else {
        return;
    };
    let last_user = frames.iter().rposition(|f| !is_runtime_frame(f)).unwrap_or(first_user);
    frames.truncate(last_user + 1);
    frames.drain(..first_user.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.to_string(),
            file: None,
            line: None,
            ip: 0,
        }
    }

    #[test]
    fn runtime_frames_by_owning_crate() {
        for runtime in [
            "gort::sched::park::gopark",
            "gort::chan::Receiver<T>::recv",
            "<gort::chan::Receiver<T> as core::iter::traits::iterator::Iterator>::next",
            "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
            "<&mut std::io::stdio::Stdout as std::io::Write>::write",
            "std::panicking::catch_unwind::do_call",
            "core::ops::function::FnOnce::call_once",
            "gort::arch::x86_64::goroutine_trampoline",
        ] {
            assert!(is_runtime_frame(&frame(runtime)), "{runtime}");
        }
        for user in [
            "myapp::worker",
            "myapp::main::{{closure}}",
            "<myapp::Job as core::ops::drop::Drop>::drop",
            "<&mut myapp::Sink as std::io::Write>::write",
            "gort::debug::tests::worker_loop",
            "gortlike::run",
            "__GI___futex_abstimed_wait_cancelable64",
            "?",
        ] {
            assert!(!is_runtime_frame(&frame(user)), "{user}");
        }
    }

    #[test]
    fn trim_keeps_the_gort_call_and_the_user_frames() {
        let names = |frames: &[Frame]| frames.iter().map(|f| f.function.clone()).collect::<Vec<_>>();
        let mut frames: Vec<Frame> = [
            "gort::sched::schedule::mcall",
            "gort::sched::park::gopark",
            "gort::chan::hchan::Chan<T>::recv",
            "gort::chan::Receiver<T>::recv",
            "myapp::worker",
            "gort::sync::Mutex<T>::with",
            "myapp::main::{{closure}}",
            "core::ops::function::FnOnce::call_once",
            "gort::sched::schedule::goroutine_entry",
            "gort::arch::x86_64::goroutine_trampoline",
        ]
        .map(frame)
        .into();
        trim_runtime_frames(&mut frames);
        assert_eq!(
            names(&frames),
            [
                "gort::chan::Receiver<T>::recv",
                "myapp::worker",
                "gort::sync::Mutex<T>::with",
                "myapp::main::{{closure}}"
            ]
        );

        // User code on top (nothing of the park path) stays as it is.
        let mut frames: Vec<Frame> = ["myapp::spin", "gort::arch::x86_64::goroutine_trampoline"]
            .map(frame)
            .into();
        trim_runtime_frames(&mut frames);
        assert_eq!(names(&frames), ["myapp::spin"]);

        // Only runtime frames: nothing to trim to.
        let mut frames: Vec<Frame> = ["gort::sched::park::gopark", "gort::arch::x86_64::goroutine_trampoline"]
            .map(frame)
            .into();
        trim_runtime_frames(&mut frames);
        assert_eq!(frames.len(), 2);
    }
}
