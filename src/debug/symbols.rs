//! Code addresses to frames (function, file, line), and the rule that tells
//! the runtime's own frames from the user's.
//!
//! Symbols come from the `backtrace` crate, which reads the DWARF line
//! tables (release builds have `debug = 1`) and expands inlined calls:
//! one address can give several frames, innermost first, all carrying that
//! address. Names are demangled and printed without the `::h0123abcd` hash,
//! as Rust's own backtraces show them.
//!
//! What stays resident. `backtrace` answers a lookup by mapping the whole
//! object file and parsing its DWARF (the unit ranges, then every line row
//! and function of each unit an address falls in), and keeps all of it for
//! the rest of the process: the first dump of a small server that
//! symbolized its 13 MB executable grew it from 3.1 MB to 38.9 MB resident
//! for good. So the answers are kept instead, and the debug info only for as
//! long as a dump runs: every address looked up is remembered in a compact
//! cache (its frames, with names and file paths interned, so a million
//! goroutines parked at the same few addresses cost a few entries), and a
//! [`Session`] brackets each dump. When the last session ends, if anything
//! was parsed during it, `backtrace`'s parsed debug info and mappings are
//! dropped (`clear_symbol_cache`) and so is `spawn_site.rs`'s, and glibc is
//! asked to hand the freed heap back to the system. A later dump
//! pays the parse again only if it meets an address the cache has not seen.
//! The cache is bounded ([`MAX_CACHED_ADDRESSES`]): a program has finitely
//! many code addresses where goroutines park, and a cache that somehow
//! fills up (walks over garbage) is emptied and starts again.
//!
//! Address lists follow `debug`'s convention: the first entry is exact, the
//! others are return addresses. `backtrace::resolve` always looks up the
//! byte before the address it is given (right for a return address, which
//! follows its call instruction), so the exact first entry is handed to it
//! one byte on; the cache is keyed by the address handed over.
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

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

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
/// at least one frame, `"?"` if nothing is known about it. Each address is
/// looked up in the debug info once per process (module header).
pub(crate) fn symbolize(ips: &[usize]) -> Vec<Frame> {
    let _session = Session::begin();
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut frames = Vec::with_capacity(ips.len());
    for (i, &ip) in ips.iter().enumerate() {
        // `resolve` looks up the byte before what it is given (module header).
        let given = if i == 0 { ip.wrapping_add(1) } else { ip };
        for known in cache.frames_at(given) {
            frames.push(Frame {
                function: known.function.to_string(),
                file: known.file.as_deref().map(str::to_string),
                line: known.line,
                ip,
            });
        }
    }
    frames
}

/// Addresses the cache holds at most before it is emptied (module header):
/// far more than the places goroutines of a real program park at.
const MAX_CACHED_ADDRESSES: usize = 1 << 16;

static CACHE: LazyLock<Mutex<SymbolCache>> = LazyLock::new(|| {
    Mutex::new(SymbolCache {
        by_address: HashMap::new(),
        strings: HashSet::new(),
    })
});

/// The frames of every address looked up so far, by the address handed to
/// `backtrace::resolve`.
struct SymbolCache {
    by_address: HashMap<usize, Box<[CachedFrame]>>,
    /// Every function name and file path the cached frames use, once.
    strings: HashSet<Arc<str>>,
}

/// A frame as the cache keeps it; its address is the cache key.
struct CachedFrame {
    function: Arc<str>,
    file: Option<Arc<str>>,
    line: Option<u32>,
}

impl SymbolCache {
    /// The frames at `given`, looked up now if they are not known yet;
    /// at least one, `"?"` if nothing covers the address.
    fn frames_at(&mut self, given: usize) -> &[CachedFrame] {
        if !self.by_address.contains_key(&given) {
            if self.by_address.len() >= MAX_CACHED_ADDRESSES {
                self.by_address.clear();
                self.strings.clear();
            }
            let frames = self.resolve(given);
            self.by_address.insert(given, frames);
        }
        &self.by_address[&given]
    }

    fn resolve(&mut self, given: usize) -> Box<[CachedFrame]> {
        Session::note_parsed();
        let mut found = Vec::new();
        backtrace::resolve(given as *mut c_void, |symbol| {
            let function = symbol
                .name()
                .map_or_else(|| UNKNOWN.to_string(), |name| format!("{name:#}"));
            let file = symbol.filename().map(|path| path.display().to_string());
            found.push((function, file, symbol.lineno()));
        });
        if found.is_empty() {
            found.push((UNKNOWN.to_string(), None, None));
        }
        found
            .into_iter()
            .map(|(function, file, line)| CachedFrame {
                function: self.intern(function),
                file: file.map(|file| self.intern(file)),
                line,
            })
            .collect()
    }

    fn intern(&mut self, text: String) -> Arc<str> {
        if let Some(known) = self.strings.get(text.as_str()) {
            return Arc::clone(known);
        }
        let text: Arc<str> = text.into();
        self.strings.insert(Arc::clone(&text));
        text
    }
}

/// A stretch of symbol lookups (a dump) during which parsed debug info is
/// kept; when the last one open ends, whatever was parsed is dropped
/// (module header). Sessions nest and may overlap across threads.
pub(crate) struct Session(());

/// Sessions open. Lock order: `SESSIONS`, then the symbolizers' own locks
/// (`backtrace`'s, `spawn_site`'s), which it takes only when no session is
/// open, so nobody holds one of those then.
static SESSIONS: Mutex<usize> = Mutex::new(0);
/// Whether debug info was parsed since the last release.
static PARSED: AtomicBool = AtomicBool::new(false);

impl Session {
    pub(crate) fn begin() -> Session {
        *SESSIONS.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Session(())
    }

    /// Debug info is being parsed, inside a session: its end must drop it.
    pub(crate) fn note_parsed() {
        PARSED.store(true, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Held while releasing, so no session begins on half-dropped state.
        let mut open = SESSIONS.lock().unwrap_or_else(PoisonError::into_inner);
        *open -= 1;
        if *open == 0 && PARSED.swap(false, Ordering::Relaxed) {
            backtrace::clear_symbol_cache();
            super::spawn_site::release();
            // The parse's many allocations are free now, but glibc keeps
            // freed heap pages resident unless asked (measured: 3.8 of the
            // 5.6 MB a small program's first dump still held). Other
            // allocators return free memory on their own schedule.
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free memory of glibc's
            // heaps; it may run at any time outside a signal handler.
            unsafe {
                libc::malloc_trim(0)
            };
        }
    }
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

    /// What `symbolize` answered before the cache: `backtrace::resolve` of
    /// every address, straight.
    fn resolved_directly(ips: &[usize]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for (i, &ip) in ips.iter().enumerate() {
            let given = if i == 0 { ip + 1 } else { ip };
            let first = frames.len();
            backtrace::resolve(given as *mut c_void, |symbol| {
                frames.push(Frame {
                    function: symbol.name().map_or_else(|| UNKNOWN.to_string(), |n| format!("{n:#}")),
                    file: symbol.filename().map(|p| p.display().to_string()),
                    line: symbol.lineno(),
                    ip,
                });
            });
            if frames.len() == first {
                frames.push(frame(UNKNOWN));
                frames.last_mut().unwrap().ip = ip;
            }
        }
        frames
    }

    /// Its own stack, then an address no symbol covers. (A body of its
    /// own, so the linker folds no other function into it.)
    #[inline(never)]
    fn known_function() -> Vec<usize> {
        let mut ips = Vec::new();
        super::super::unwind::unwind_current(&mut ips);
        ips.push(8);
        std::hint::black_box(ips)
    }

    #[test]
    fn cached_frames_are_what_backtrace_resolves() {
        let ips = known_function();
        let first = symbolize(&ips);
        assert!(
            first[0].function.ends_with("symbols::tests::known_function"),
            "{first:?}"
        );
        assert!(
            first[0]
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("debug/symbols.rs"))
                && first[0].line.is_some()
        );
        // Every address is cached now, and the session that parsed is over:
        // the answers come from the cache, the same as before and as
        // `backtrace` gives them (with its debug info parsed anew).
        {
            let cache = CACHE.lock().unwrap();
            for (i, ip) in ips.iter().enumerate() {
                let given = if i == 0 { ip + 1 } else { *ip };
                assert!(cache.by_address.contains_key(&given), "{given:x} not cached");
            }
        }
        assert_eq!(symbolize(&ips), first);
        assert_eq!(resolved_directly(&ips), first);
        // An address no symbol covers is `?`, and cached as such.
        assert_eq!(
            first.last(),
            Some(&Frame {
                ip: 8,
                ..frame(UNKNOWN)
            })
        );
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
