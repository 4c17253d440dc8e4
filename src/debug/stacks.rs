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
//!
//! Both give code addresses, not frames: a dump groups goroutines by their
//! addresses first and symbolizes each distinct stack once ([`frames_of`]),
//! so 100,000 goroutines parked at the same place cost one lookup.

use super::dump::Frame;
use super::symbols::{self, symbolize, trim_runtime_frames};
use std::ops::Range;
use std::panic::Location;

use super::unwind::{StackCopy, unwind_current, unwind_suspended};
use crate::arch::{Context, SuspendedRegs};
use crate::sched::{GPtr, GStatus};
use crate::stack::Stack;

/// The deepest stack a dump copies, from the saved stack pointer up.
const MAX_STACK_COPY: usize = 1 << 20;

const CHANGED: &str = "stack changed while dumping";

/// The code addresses of the calling thread's stack, innermost first: the
/// gort call that took the dump on top (`gort::runtime::dump`), then the
/// caller's frames.
#[inline(never)]
pub(crate) fn current_ips() -> Vec<usize> {
    let mut ips = Vec::new();
    unwind_current(&mut ips);
    ips
}

/// The code addresses of the stacks of goroutines `gs`, which are not
/// running (first exact, then return addresses), or why there are none.
/// All the stacks are copied together, in as few system calls as the
/// kernel allows (`StackCopy::take_many`): one call per goroutine cost a
/// dump of 100,000 goroutines more than everything else it did.
///
/// Each goroutine comes with the [`stamp`] its caller read when it looked
/// at it: a stack is shown only if the goroutine is still in that same
/// stay after the copy, so what the caller read and the stack agree.
pub(crate) fn suspended_ips(gs: &[(GPtr, Stamp)]) -> Vec<Result<Vec<usize>, &'static str>> {
    let mut out: Vec<Result<Vec<usize>, &'static str>> = Vec::with_capacity(gs.len());
    let mut plans = Vec::new();
    for &(g, before) in gs {
        match Plan::new(g, before) {
            Ok(plan) => {
                plans.push((out.len(), plan));
                out.push(Err(CHANGED));
            }
            Err(note) => out.push(Err(note)),
        }
    }
    let ranges: Vec<Range<usize>> = plans.iter().map(|(_, p)| p.range.clone()).collect();
    let mut walked = Vec::new();
    StackCopy::take_many(&ranges, |i, copy| {
        let (at, plan) = &plans[i];
        if let Some(copy) = copy {
            out[*at] = plan.walk(copy, &mut walked).map(|()| walked.clone());
        }
    });
    out
}

/// What identifies one stay of a goroutine off its thread: if any of it
/// changed, the goroutine ran meanwhile.
pub(crate) type Stamp = (GStatus, u64, (&'static Location<'static>, u64), Option<SuspendedRegs>);

/// Goroutine `g`'s stamp now: status, id, where and since when it parked,
/// where preemption stopped it.
pub(crate) fn stamp(g: GPtr) -> Stamp {
    (g.status(), g.id(), g.parked(), g.interrupted())
}

/// How to walk a goroutine's stack: the part to copy, where the walk
/// starts, and the stamp to check once the copy is made.
struct Plan {
    g: GPtr,
    before: Stamp,
    range: Range<usize>,
    /// The registers the walk starts from, if not read out of the copy
    /// (a goroutine stopped by preemption, module header).
    interrupted: Option<SuspendedRegs>,
    sp: usize,
}

impl Plan {
    fn new(g: GPtr, before: Stamp) -> Result<Plan, &'static str> {
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
        // never dropped, and the stamp check after the copy discards what a
        // race made.
        let bounds = unsafe { std::ptr::read_volatile(g.stack.get().cast::<std::mem::ManuallyDrop<Option<Stack>>>()) };
        // No stack yet, or (spawned when stacks were scarce) one it has not
        // run on: not started.
        let Some((lo, top)) = bounds.as_ref().map(|s| (s.lo(), s.top())) else {
            return Err("not started yet");
        };
        let sp = match interrupted {
            Some(regs) if !from_ctx => regs.sp,
            // SAFETY: the context is read racily too (`saved_sp` is a
            // volatile read of one word); validated by the range check and
            // the stamp.
            _ => unsafe { (*g.ctx.get()).saved_sp() },
        };
        if from_ctx && sp == Context::entry_sp(top) {
            return Err("not started yet");
        }
        if !(lo..top).contains(&sp) {
            return Err(CHANGED);
        }
        Ok(Plan {
            g,
            before,
            range: sp..top.min(sp.saturating_add(MAX_STACK_COPY)),
            interrupted: interrupted.filter(|_| !from_ctx),
            sp,
        })
    }

    /// The walk over `copy` into `ips` (cleared first), if the goroutine
    /// stayed put while the copy was made.
    fn walk(&self, copy: &StackCopy, ips: &mut Vec<usize>) -> Result<(), &'static str> {
        if stamp(self.g) != self.before {
            return Err(CHANGED);
        }
        let regs = match self.interrupted {
            Some(regs) => regs,
            None => copy.regs(self.sp).ok_or(CHANGED)?,
        };
        ips.clear();
        unwind_suspended(regs, copy, ips);
        Ok(())
    }
}

/// Symbolized, runtime machinery trimmed, in the public form.
pub(crate) fn frames_of(ips: &[usize]) -> Vec<Frame> {
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
