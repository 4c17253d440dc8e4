//! Machine-dependent context switching and asynchronous preemption. This is
//! the only module that knows registers (DESIGN.md §2); a port to another
//! architecture adds a sibling of `x86_64.rs` with the same items
//! (`Context`, `switch`, `Context::for_entry`, `Context::prefetch`, and
//! `Context::saved_sp` with `SuspendedRegs::read` for stack traces) and of
//! `preempt.rs` with `inject_async_preempt`, its trampoline,
//! `is_async_preempt` and `at_system_call`.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("gort supports x86_64 Linux only (see DESIGN.md §3)");

mod preempt;
mod x86_64;

#[cfg(test)]
pub(crate) use preempt::{HOOK_STACK_RESERVE, stack_needed};
pub(crate) use preempt::{Refusal, at_system_call, inject_async_preempt, interrupted_regs, is_async_preempt};
pub(crate) use x86_64::{Context, SuspendedRegs, switch};
