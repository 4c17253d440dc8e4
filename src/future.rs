//! Futures on goroutines: `block_on` polls a `Future` on the calling
//! goroutine and parks only that goroutine while the future is pending.
//!
//! Most of Rust's network ecosystem is async. A goroutine is already a
//! stack that can be suspended, so it needs no executor: it polls the
//! future itself, and when the future returns `Pending` it parks (Go's
//! `gopark`) until the future's `Waker` readies it (`goready`), then polls
//! again. The thread under it runs other goroutines meanwhile. On a plain
//! thread — no runtime, or a thread that is not an M — the same loop
//! sleeps the thread instead.
//!
//! # The wake protocol
//!
//! One `Signal` per call, shared by the caller and every clone of the
//! waker, holds a state word:
//!
//! ```text
//!            poll → Pending        wake
//!  POLLING ─────────────────→ PARKED ───→ NOTIFIED ─→ (caller) POLLING
//!     │ wake                                  ↑
//!     └───────────────────────────────────────┘
//! ```
//!
//! - The caller polls in `POLLING`. When the future is pending it parks,
//!   and the park's registration — which runs once the goroutine's context
//!   is saved (`park_if`) — moves `POLLING → PARKED`. If a wake came first
//!   the state is `NOTIFIED`, the move fails, and the park is cancelled:
//!   the caller polls again at once. So a wake before or during the poll is
//!   never lost.
//! - A wake moves `POLLING → NOTIFIED` (nothing else to do: the caller will
//!   see it), `NOTIFIED` stays (repeated wakes coalesce into one poll), and
//!   `PARKED → NOTIFIED` — only that one — also readies the caller. The
//!   move is a CAS, so of any number of concurrent wakes exactly one
//!   readies a parked caller, which is what `goready` and a thread's
//!   one-shot note require (each park is woken exactly once).
//! - Back from the park, the caller swaps the state to `POLLING` (Acquire,
//!   pairing with the waker's Release), so the poll sees whatever the waker
//!   published before waking.
//!
//! The waker may outlive the call (futures keep wakers in queues and
//! timers). It never touches the caller except in `PARKED`, which exists
//! only while the caller is parked inside a call, so a late wake after
//! `block_on` has returned only flips a word in the `Signal`, which the
//! waker's own reference keeps alive. The G it names may by then run other
//! code, or, once the goroutine has ended and dropped its cached `Signal`,
//! another goroutine: it is not touched.
//!
//! # Reuse
//!
//! Each goroutine (and plain thread) keeps one `Signal` for all its calls,
//! with its goroutine-local values (`goroutine/local.rs`), so a call
//! allocates nothing after the first and its waker is the same from call
//! to call — a future that keeps the waker it was last given (`will_wake`)
//! need not clone a new one. The price is that a waker kept from an
//! earlier call can wake a later one: a spurious poll, which every future
//! must tolerate, and never a spurious wake of anything else, since the
//! waiter is only readied out of `PARKED`, which only a call in progress
//! enters. A call nested in a future's `poll` uses a fresh `Signal`.
//!
//! # Rules for users
//!
//! - A goroutine may resume on another OS thread after each park (the
//!   crate's migration rule). A future that relies on a thread-local
//!   context across `Pending` — Tokio's reactor and timers (`Handle::enter`),
//!   for example — does not work here; such futures run on a Tokio runtime
//!   through the `tokio` feature instead. Executor-agnostic futures (futures'
//!   channels, `async-channel`, `event-listener`, gort's own channel futures)
//!   work directly.
//! - A future that wakes itself and returns `Pending` (a yield) is polled
//!   again at once without a park; like any busy goroutine, it is
//!   preempted at the end of its slice.
//!
//! # The deadlock check
//!
//! A goroutine waiting here shows `[future]` in dumps and counts, for the
//! deadlock check (`debug/deadlock.rs`), as parked on something another
//! party must end — like a channel receive. Its waker can be held by a
//! goroutine or by an OS thread, and the check already treats any thread
//! outside the runtime that is not asleep in a gort wait as a potential
//! waker: a Tokio worker, a thread pool, a thread that owns the sending end
//! of a futures channel. So the report fires only when every goroutine is
//! parked and no outside thread could call the waker — a real deadlock. A
//! plain thread in `block_on` is registered as asleep only while parked,
//! and the waker's own wake-up ends that (the rule in `debug/threads.rs`).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crate::goroutine::with_map;
use crate::sched::{WaitReason, Waiter, park_if};

const POLLING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// A goroutine's (or thread's) reusable `Signal` and the waker made of
/// it, kept with its goroutine-local values.
pub(crate) struct CachedSignal {
    signal: Arc<Signal>,
    waker: Waker,
}

/// The caller's cached `Signal`, lent to one `block_on` call and given back
/// when it ends (even by a panic in `poll`). A nested call — `block_on`
/// inside a future's `poll` — finds the cache empty and makes its own: two
/// calls sharing one state word would let the inner one consume a wake
/// meant for the outer.
struct SignalLoan(Option<CachedSignal>);

impl SignalLoan {
    fn take() -> SignalLoan {
        let cached = match with_map(|map| map.future_signal.take()) {
            Some(cached) => {
                // Wakes of earlier calls may have left NOTIFIED: the first
                // poll comes before any park, so nothing they announced can
                // be missed.
                cached.signal.state.store(POLLING, Ordering::Relaxed);
                cached
            }
            None => {
                let signal = Arc::new(Signal {
                    state: AtomicU8::new(POLLING),
                    waiter: Waiter::current(),
                });
                let waker = Waker::from(Arc::clone(&signal));
                CachedSignal { signal, waker }
            }
        };
        SignalLoan(Some(cached))
    }

    fn get(&self) -> &CachedSignal {
        self.0.as_ref().expect("lent until dropped")
    }
}

impl Drop for SignalLoan {
    fn drop(&mut self) {
        let cached = self.0.take();
        with_map(|map| {
            if map.future_signal.is_none() {
                map.future_signal = cached;
            }
        });
    }
}

/// What a waker shares with the `block_on` calls of one goroutine (or
/// thread) (module header: the wake protocol, and reuse).
pub(crate) struct Signal {
    state: AtomicU8,
    /// The caller: only readied on the `PARKED → NOTIFIED` move.
    waiter: Waiter,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = match state {
                NOTIFIED => return,
                POLLING | PARKED => NOTIFIED,
                _ => unreachable!("future signal in state {state}"),
            };
            // Release: what the waker wrote before waking is visible to the
            // poll that follows (the caller's Acquire swap).
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state == PARKED {
            self.waiter.clone().wake();
        }
    }
}

/// Run a future to completion on the calling goroutine, parking only the
/// goroutine while the future is pending; returns its output.
///
/// The future is polled on the goroutine's own stack; when it returns
/// `Pending`, the goroutine parks (shown as `[future]` in dumps) and its
/// OS thread runs other goroutines until the future's waker is called —
/// from any goroutine or thread, before, during or after the park: no wake
/// is lost, and any number of wakes while one poll is pending cost one
/// poll. Called on a plain thread (outside any runtime), it blocks that
/// thread instead, like `futures::executor::block_on`.
///
/// Any executor-agnostic future works: futures' and `async-channel`'s
/// channels, `event-listener`-based code, `join!`/`select!` over them,
/// gort's own channel futures. Futures that need Tokio's reactor or timers
/// run through the `tokio` feature instead (see the module
/// [`gort::future`](crate::future) header for why: a goroutine may resume
/// on another thread).
///
/// # Examples
///
/// A goroutine waits for a value sent through a `futures`-style oneshot
/// made from std parts; a plain thread completes it.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::sync::{Arc, Mutex};
/// use std::task::{Context, Poll, Waker};
///
/// #[derive(Default)]
/// struct Slot { value: Option<u32>, waker: Option<Waker> }
/// struct Recv(Arc<Mutex<Slot>>);
/// impl Future for Recv {
///     type Output = u32;
///     fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
///         let mut slot = self.0.lock().unwrap();
///         match slot.value.take() {
///             Some(v) => Poll::Ready(v),
///             None => {
///                 slot.waker = Some(cx.waker().clone());
///                 Poll::Pending
///             }
///         }
///     }
/// }
///
/// let answer = gort::run(|| {
///     let slot = Arc::new(Mutex::new(Slot::default()));
///     let theirs = Arc::clone(&slot);
///     std::thread::spawn(move || {
///         let waker = {
///             let mut s = theirs.lock().unwrap();
///             s.value = Some(42);
///             s.waker.take()
///         };
///         if let Some(w) = waker {
///             w.wake();
///         }
///     });
///     gort::block_on(Recv(slot))
/// });
/// assert_eq!(answer, 42);
/// ```
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let loan = SignalLoan::take();
    let CachedSignal { signal, waker } = loan.get();
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        park_if(
            || {
                signal
                    .state
                    .compare_exchange(POLLING, PARKED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            },
            WaitReason::Future,
        );
        // Woken, or the park was cancelled by an earlier wake: either way
        // the state is NOTIFIED. Acquire pairs with the waker's Release.
        let seen = signal.state.swap(POLLING, Ordering::Acquire);
        debug_assert_eq!(seen, NOTIFIED);
    }
}
