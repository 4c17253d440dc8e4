//! Machine-dependent context switching and asynchronous preemption. This is
//! the only module that knows registers (DESIGN.md §2); a port to another
//! architecture adds a sibling of `x86_64.rs` with the same three items
//! (`Context`, `switch`, and `Context::for_entry`) and of `preempt.rs` with
//! `inject_async_preempt` and its trampoline.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("gort supports x86_64 Linux only (see DESIGN.md §3)");

mod preempt;
mod x86_64;

pub(crate) use preempt::inject_async_preempt;
pub(crate) use x86_64::{Context, switch};
