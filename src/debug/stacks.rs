//! Stacks for dumps: the calling goroutine's own, and those of suspended
//! goroutines, copied and unwound from their saved registers.
//!
//! (Interim: unwinding lands with the unwinder; until then stacks are
//! reported unavailable.)

use super::dump::Frame;
use crate::sched::GPtr;

/// The calling thread's stack, innermost first, dump machinery trimmed.
pub(crate) fn current() -> Vec<Frame> {
    Vec::new()
}

/// The stack of a goroutine that is not running.
pub(crate) fn suspended(_g: GPtr) -> Result<Vec<Frame>, &'static str> {
    Err("stack unavailable")
}
