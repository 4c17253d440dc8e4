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
//! A goroutine stopped by asynchronous preemption is not suspended by
//! `switch` (its M sleeps inside the preemption hook on the goroutine's
//! stack, `sched/preempt.rs`), so its `Context` is stale; the signal handler
//! records the interrupted registers in the G (`G::interrupted`) and its
//! trace starts from them, at the exact instruction it was stopped at.

use super::dump::Frame;
use super::symbols::{self, symbolize, trim_runtime_frames};
use super::unwind::{StackCopy, unwind_current, unwind_suspended};
use crate::arch::Context;
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
    let stamp = || (g.status(), g.id(), g.parked(), g.interrupted());
    let before = stamp();
    let (status, interrupted) = (before.0, before.3);
    let from_ctx = match (status, interrupted) {
        (GStatus::Waiting, _) => true,
        (GStatus::Preempted | GStatus::Runnable, Some(_)) => false,
        // Runnable and not preempted: `switch` saved its context.
        (GStatus::Runnable, None) => true,
        (GStatus::Preempted, None) => return Err(CHANGED),
        _ => return Err("running; stack unavailable"),
    };
    // SAFETY: a racy copy of the G's stack bounds, two plain words the
    // owner may be replacing right now (the goroutine ended or started):
    // it is only used as an address range for a kernel-checked copy and
    // never dropped, and the stamp check below discards what a race made.
    let bounds = unsafe { std::ptr::read_volatile(g.stack.get().cast::<std::mem::ManuallyDrop<Option<Stack>>>()) };
    // No stack yet, or (spawned when stacks were scarce) one it has not
    // run on: not started.
    let Some((lo, top)) = bounds.as_ref().map(|s| (s.lo(), s.top())) else {
        return Err("not started yet");
    };
    let sp = match interrupted {
        Some(regs) if !from_ctx => regs.sp,
        // SAFETY: the context is read racily too (`saved_sp` is a volatile
        // read of one word); validated by the range check and the stamp.
        _ => unsafe { (*g.ctx.get()).saved_sp() },
    };
    if from_ctx && sp == Context::entry_sp(top) {
        return Err("not started yet");
    }
    if !(lo..top).contains(&sp) {
        return Err(CHANGED);
    }
    let copy = StackCopy::take(sp..top.min(sp.saturating_add(MAX_STACK_COPY))).map_err(|_| CHANGED)?;
    if stamp() != before {
        return Err(CHANGED);
    }
    let regs = match interrupted {
        Some(regs) if !from_ctx => regs,
        _ => copy.regs(sp).ok_or(CHANGED)?,
    };
    let mut ips = Vec::new();
    unwind_suspended(regs, &copy, &mut ips);
    Ok(frames_of(&ips))
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
