//! Waits a context can cut short: the shared step of `time::sleep_ctx`,
//! `WaitGroup::wait_ctx` and `Semaphore::acquire_ctx`.
//!
//! Every gort wait parks on a `WaitToken` that several wakers may race to
//! claim — the primitive's own waker, a deadline's timer — and exactly one
//! wins (`sched/park.rs`). A context joins that race as one more waker:
//! the token is registered with the context's canceler (`cancel.rs`,
//! `Child::Wake`), whose cancellation claims it with the tag `CTX_DONE`.
//! The loser's side is undone as for a deadline: the primitive withdraws
//! the waiter from its queue, and the registration is withdrawn here. A
//! context done before the registration is refused it, and the token is
//! claimed at once; the wait then does not park at all (a token completed
//! before its waiter parks cancels the park).
//!
//! So waiting on a context costs one registration (a lock and a map
//! insert), no goroutine, and no timer of its own: a context's deadline is
//! its canceler's single timer, shared by every wait on it.

use std::sync::Arc;
use std::time::Instant;

use super::Context;
use super::cancel::{CTX_DONE, Child};
use crate::sched::{WaitReason, WaitToken};

/// Park on `token`, already registered with the primitive, until a waker
/// claims it, `deadline` passes (`TIMED_OUT`), or `ctx` (if any) is done
/// (`CTX_DONE`); returns the winner's tag.
#[track_caller]
pub(crate) fn wait(
    ctx: Option<&Context>,
    token: &Arc<WaitToken>,
    deadline: Option<Instant>,
    reason: WaitReason,
) -> usize {
    let registered = ctx
        .and_then(Context::canceler)
        .and_then(|c| match c.register(Child::Wake(Arc::clone(token))) {
            Ok(id) => Some((c, id)),
            Err(_) => {
                if let Some(claim) = WaitToken::claim(Arc::clone(token), CTX_DONE) {
                    claim.done();
                }
                None
            }
        });
    let tag = token.wait(deadline, reason);
    if let Some((c, id)) = registered {
        drop(c.unregister(id));
    }
    tag
}
