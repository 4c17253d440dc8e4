//! Diagnosing a running program: goroutine dumps (`dump.rs`, their stacks
//! in `stacks.rs`, the function that spawned each in `spawn_site.rs`), the
//! deadlock check sysmon runs (`deadlock.rs`, with the plain-thread
//! bookkeeping it needs in `threads.rs`), leak checks for tests
//! (`leaks.rs`), the SIGQUIT dump (`sigquit.rs`), and the live diagnostics
//! server (`http/`: pprof endpoints, metrics, dashboard) with the CPU
//! profiler (`cpuprof.rs`) and the pprof encoding (`profile.rs`) it serves.
//!
//! A registry of live runtimes lets process-wide requests (SIGQUIT) reach
//! every runtime; the `runtime::` functions act on one runtime each.
//!
//! A dump needs the frames of every goroutine, not only the caller's, and
//! most goroutines are not running: a parked goroutine is a stack pointer in
//! its G's saved `Context`, with the rest of its state in the words `switch`
//! left on its stack. Two steps turn that into `file:line` frames:
//!
//! - `unwind.rs` walks a stack to a list of code addresses: a suspended
//!   context's from the registers `arch` reads back out of it
//!   (`Context::suspended_regs`), or the calling thread's own.
//! - `symbols.rs` turns addresses into function names and source locations,
//!   inlined calls expanded, and says which frames are the runtime's own
//!   machinery, so a dump can start a goroutine's trace where user code
//!   called into gort (`Receiver::recv`) and end it at the user's closure.
//!
//! Which unwinder, and why. A suspended stack belongs to no running thread,
//! so the usual unwinders are out: libgcc's `_Unwind_Backtrace` (behind
//! `std::backtrace` and the `backtrace` crate) only walks the calling
//! thread from its current registers. `framehop` takes explicit registers
//! and a callback that reads stack memory, which is exactly this situation;
//! the callback confines every read to the goroutine's stack, so a walk over
//! a stack that changes under it (the goroutine resumed elsewhere meanwhile)
//! yields garbage addresses, never a fault. framehop unwinds with the DWARF
//! CFI in each loaded object's `.eh_frame` (indexed by `.eh_frame_hdr`), and
//! walks frame pointers only for addresses no CFI covers: Rust omits frame
//! pointers in optimised x86_64 code, so CFI is the only reliable source.
//! The calling thread's own stack is walked with the `backtrace` crate,
//! which goes through signal frames too (libgcc tracks every register;
//! framehop tracks only rip, rsp and rbp). Symbols come from the `backtrace`
//! crate for both (addr2line over the DWARF line tables, with inlined
//! frames; the symbol table where there are none).
//!
//! Address lists follow one convention: the first entry is exact (the
//! instruction the frame will execute next), every later entry is a return
//! address, looked up one byte earlier so it lands on its call instruction.
//!
//! Nothing here takes a runtime lock or needs to run on an M; the first use
//! reads the loaded objects' unwind tables (and, for symbols, their debug
//! info), which allocates and costs milliseconds, so it must not run in a
//! signal handler.

mod alloc_check;
mod cpuprof;
mod deadlock;
mod dump;
pub mod http;
mod leaks;
mod profile;
mod sigquit;
mod spawn_site;
mod stacks;
mod symbols;
pub(crate) mod threads;
mod unwind;

use std::sync::{Arc, Mutex, PoisonError, Weak};

pub use alloc_check::AllocCheck;
pub(crate) use alloc_check::NoAlloc;
pub(crate) use deadlock::DeadlockWatch;
pub use dump::{Frame, GoroutineInfo, GoroutineState};
pub use http::{Access, DebugServer, serve, serve_on};
pub use leaks::Leaks;
pub(crate) use sigquit::{SigquitDump, install as install_sigquit};

use crate::sched::Sched;

static RUNTIMES: Mutex<Vec<Weak<Sched>>> = Mutex::new(Vec::new());

/// Make a new runtime reachable by process-wide dumps.
pub(crate) fn register(sched: &Arc<Sched>) {
    let mut all = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|s| s.strong_count() > 0);
    all.push(Arc::downgrade(sched));
}

/// Every runtime still alive, oldest first.
pub(crate) fn live_runtimes() -> Vec<Arc<Sched>> {
    let all = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter().filter_map(Weak::upgrade).collect()
}

#[cfg(test)]
mod tests {
    //! A real goroutine parked in a channel receive, unwound and symbolized
    //! from another goroutine: what a dump does for each parked goroutine.

    use super::symbols::{Frame, is_runtime_frame, symbolize, trim_runtime_frames};
    use super::unwind::{StackCopy, unwind_current, unwind_suspended};
    use crate::sched::{GPtr, GStatus, current_m};
    use std::hint::black_box;
    use std::sync::Mutex;

    /// Sums what arrives until the channel closes; parks in `recv` meanwhile.
    #[inline(never)]
    fn worker_loop(rx: crate::chan::Receiver<u64>) -> u64 {
        let mut sum = 0;
        while let Ok(v) = rx.recv() {
            sum += v;
        }
        black_box(sum)
    }

    #[test]
    fn parked_goroutine_trace() {
        let (frames, own) = crate::run(|| {
            let (tx, rx) = crate::chan::bounded::<u64>(0);
            let worker_g: &'static Mutex<Option<GPtr>> = Box::leak(Box::new(Mutex::new(None)));
            let worker = crate::go(move || {
                let g = current_m().and_then(|m| m.curg.get()).expect("on a goroutine");
                *worker_g.lock().unwrap() = Some(g);
                worker_loop(rx)
            });
            let g = loop {
                if let Some(g) = *worker_g.lock().unwrap() {
                    break g;
                }
                crate::yield_now();
            };
            // The Acquire load in `status` makes the context `switch` saved
            // visible once the status reads Waiting.
            while g.status() != GStatus::Waiting {
                crate::yield_now();
            }
            // SAFETY: the worker is parked and only our send readies it, so
            // nothing writes its stack field or context until then.
            let (sp, stack) = unsafe {
                let stack = (*g.stack.get()).as_ref().expect("a started goroutine has a stack");
                ((*g.ctx.get()).saved_sp(), stack.lo()..stack.top())
            };
            let copy = StackCopy::take(sp..stack.end).expect("a parked goroutine's stack is mapped");
            let regs = copy.regs(sp).expect("a parked context");
            let mut ips = Vec::new();
            unwind_suspended(regs, &copy, &mut ips);
            let frames = symbolize(&ips);
            for v in 1..=3 {
                tx.send(v).unwrap();
            }
            drop(tx);
            assert_eq!(worker.join().unwrap(), 6);
            // This closure runs on a goroutine too: its own walk ends at
            // the entry trampoline.
            let mut own = Vec::new();
            unwind_current(&mut own);
            (frames, symbolize(&own))
        });
        let names = |frames: &[Frame]| frames.iter().map(|f| f.function.clone()).collect::<Vec<_>>();
        assert!(
            frames
                .last()
                .is_some_and(|f| f.function.ends_with("goroutine_trampoline")),
            "{:?}",
            names(&frames)
        );
        let mut trimmed = frames.clone();
        trim_runtime_frames(&mut trimmed);
        assert!(
            trimmed[0].function.ends_with("Receiver<T>::recv"),
            "{:?}",
            names(&frames)
        );
        assert!(trimmed[1].function.ends_with("worker_loop"), "{:?}", names(&frames));
        assert!(
            trimmed[1].file.as_deref().is_some_and(|f| f.ends_with("debug/mod.rs")) && trimmed[1].line.is_some(),
            "{:?}",
            trimmed[1]
        );
        assert!(!is_runtime_frame(trimmed.last().unwrap()), "{:?}", names(&trimmed));
        assert!(own[0].function.contains("parked_goroutine_trace"), "{:?}", names(&own));
        assert!(
            own.last().is_some_and(|f| f.function.ends_with("goroutine_trampoline")),
            "{:?}",
            names(&own)
        );
    }
}
