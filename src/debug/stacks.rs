//! Stacks for dumps: the dumping goroutine's own (walked in place), and
//! those of goroutines that are not running, unwound from a copy of their
//! stack starting at the registers their last `switch` saved.
//!
//! A suspended goroutine is read without stopping it: its stack bounds and
//! saved stack pointer are read racily, its stack from that pointer up is
//! copied by the kernel (`unwind::StackCopy`), and then its status, id and
//! park stamp are read again. If any changed, it ran meanwhile and the
//! copy may be torn, so the stack is reported as changed rather than shown.
//!
//! Goroutines whose saved context is stale show no stack: a goroutine
//! stopped by asynchronous preemption is suspended inside the preemption
//! hook on its own stack (its M sleeps there, `sched/preempt.rs`), not by
//! `switch`, and it stays so, runnable, until it is handed a P again.
//! Runnable goroutines wired to a thread are skipped for that reason.

use super::dump::Frame;
use super::symbols::{self, symbolize, trim_runtime_frames};
use super::unwind::{StackCopy, unwind_current, unwind_suspended};
use crate::sched::{GPtr, GStatus};
use crate::stack::Stack;

/// The deepest stack a dump copies, from the saved stack pointer up.
const MAX_STACK_COPY: usize = 1 << 20;

const CHANGED: &str = "stack changed while dumping";

/// The calling thread's stack, innermost first: the gort call that took the
/// dump on top (`gort::runtime::dump`), then the caller's frames.
#[inline(never)]
pub(crate) fn current() -> Vec<Frame> {
    let mut ips = Vec::new();
    unwind_current(&mut ips);
    frames_of(&ips)
}

/// The stack of goroutine `g`, which is not running.
pub(crate) fn suspended(g: GPtr) -> Result<Vec<Frame>, &'static str> {
    let stamp = (g.status(), g.id(), g.parked());
    match stamp.0 {
        GStatus::Waiting => {}
        GStatus::Runnable if !is_wired_racy(g) => {}
        GStatus::Preempted | GStatus::Runnable => return Err("preempted; stack unavailable"),
        _ => return Err("running; stack unavailable"),
    }
    // SAFETY: a racy copy of the G's stack bounds, two plain words the
    // owner may be replacing right now (the goroutine ended or started):
    // it is only used as an address range for a kernel-checked copy and
    // never dropped, and the stamp check below discards what a race made.
    let bounds = unsafe { std::ptr::read_volatile(g.stack.get().cast::<std::mem::ManuallyDrop<Option<Stack>>>()) };
    let Some((lo, top)) = bounds.as_ref().map(|s| (s.lo(), s.top())) else {
        return Err("not started yet");
    };
    // SAFETY: the context is read racily too (`saved_sp` is a volatile read
    // of one word); validated by the range check and the stamp.
    let sp = unsafe { (*g.ctx.get()).saved_sp() };
    if !(lo..top).contains(&sp) {
        return Err(CHANGED);
    }
    let copy = StackCopy::take(sp..top.min(sp.saturating_add(MAX_STACK_COPY))).map_err(|_| CHANGED)?;
    if (g.status(), g.id(), g.parked()) != stamp {
        return Err(CHANGED);
    }
    let regs = copy.regs(sp).ok_or(CHANGED)?;
    let mut ips = Vec::new();
    unwind_suspended(regs, &copy, &mut ips);
    Ok(frames_of(&ips))
}

/// Whether `g` is wired to a thread (`G::lockedm`), read without owning it.
fn is_wired_racy(g: GPtr) -> bool {
    // SAFETY: `lockedm` is one pointer-sized word (an `Option` of a
    // non-null pointer); a volatile read of it may be stale but is never
    // torn, and only its null-ness is looked at.
    unsafe { std::ptr::read_volatile(g.lockedm.as_ptr()) }.is_some()
}

/// Symbolized, runtime machinery trimmed, in the public form.
fn frames_of(ips: &[usize]) -> Vec<Frame> {
    let mut frames = symbolize(ips);
    trim_runtime_frames(&mut frames);
    frames
        .into_iter()
        .map(|f: symbols::Frame| Frame {
            function: f.function,
            file: f.file,
            line: f.line,
        })
        .collect()
}
