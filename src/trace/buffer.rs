//! Where trace events wait before the writer thread gets them: one buffer
//! per P, one global buffer, and the protocol that lets `stop` collect
//! them while the runtime keeps running.
//!
//! # P buffers
//!
//! Every P has a `PTrace` (a field of `P`). While tracing, it holds a 64 KiB
//! byte buffer of encoded events (`event.rs`). Only the P's *owner* writes
//! it: the M holding the P, or sysmon after it has retaken the P from a
//! system call and before it hands it on. Ownership passes with the P, which
//! orders the writes, so a buffer needs no lock and its events are in time
//! order. A full buffer is handed to the writer thread through a bounded
//! channel and replaced; if the channel is full (the writer is behind) the
//! buffer's events are dropped and counted in `DROPPED`, so memory stays
//! bounded whatever the event rate.
//!
//! A few recordings run where allocation is forbidden: the asynchronous
//! preemption hook, which may have interrupted `malloc` (`Alloc::No`).
//! Those never hand off or allocate; recordings that may allocate hand off
//! a buffer once less than `RESERVE_BYTES` are free, so the others find room.
//!
//! # The global buffer
//!
//! Events recorded without a P — by plain threads, by sysmon, by an M in a
//! system call — go to one buffer behind a mutex (a leaf lock), each
//! prefixed with its runtime and track.
//!
//! # Stopping without stopping the world
//!
//! `stop` must read buffers that their owners may be writing. Each P buffer
//! has a `recording` flag its owner raises around every recording, and the
//! owner checks `ENABLED` after raising it. `stop` clears `ENABLED`, then
//! issues `membarrier(2)`: every thread of the process executes a full
//! barrier, so an owner either sees `ENABLED` false after raising its flag,
//! or raised its flag before the barrier and `stop` sees it raised and waits
//! for it to drop. So the owner pays two plain stores per recording and no
//! fence; the fence is paid once, by `stop`. Without `membarrier` (an old
//! kernel, a seccomp filter) owners fence themselves. The global buffer's
//! writers re-check `ENABLED` under its mutex instead.
//!
//! Every recording is also a `NoPreempt` section: a goroutine is never
//! preempted inside one, so no owner sleeps holding its flag, and the
//! asynchronous preemption hook never finds a recording half done.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, compiler_fence, fence};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use super::event::{Event, MAX_EVENT_BYTES, put_varint};
use crate::sched::timers::nanotime;
use crate::sched::{NoPreempt, lock};

/// Size of one buffer, a P's or the global one.
const CHUNK_BYTES: usize = 64 * 1024;
/// Free room a P's buffer keeps for recordings that may not allocate.
const RESERVE_BYTES: usize = 16 * MAX_EVENT_BYTES;
/// Most bytes a global event takes: runtime and track, then the event.
const MAX_GLOBAL_EVENT_BYTES: usize = 2 * 10 + MAX_EVENT_BYTES;

/// Whether a trace is being recorded: read (relaxed) by every hook, so
/// tracing costs one predictable branch when off.
pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);
/// `membarrier` is unavailable: owners fence around their flag themselves.
static OWNERS_FENCE: AtomicBool = AtomicBool::new(false);
/// Events lost because the writer was behind or a buffer had no room.
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The writer thread's queue while a trace runs.
static SENDER: Mutex<Option<SyncSender<Chunk>>> = Mutex::new(None);
/// Every P's buffer, so that `stop` can collect them.
static P_BUFFERS: Mutex<Vec<Arc<PBuffer>>> = Mutex::new(Vec::new());
static GLOBAL: Mutex<Pending> = Mutex::new(Pending {
    bytes: Vec::new(),
    events: 0,
    open: 0,
});

/// What the writer thread receives.
pub(crate) enum Chunk {
    /// Events of P `p` of runtime `runtime`, in time order.
    P { runtime: u32, p: u32, bytes: Vec<u8> },
    /// Events recorded without a P, each prefixed with runtime and track.
    Global { bytes: Vec<u8> },
    /// The last chunk: every P there was, as (runtime, P id), so that idle
    /// Ps get a track too.
    Ps(Vec<(u32, u32)>),
}

/// The track a global event belongs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Track {
    /// A P's track (sysmon's events about that P).
    P(u32),
    /// The runtime's track for events outside any P.
    NoP,
}

impl Track {
    fn code(self) -> u64 {
        match self {
            Track::NoP => 0,
            Track::P(id) => u64::from(id) + 1,
        }
    }

    pub(crate) fn from_code(code: u64) -> Option<Track> {
        match code {
            0 => Some(Track::NoP),
            n => u32::try_from(n - 1).ok().map(Track::P),
        }
    }
}

/// Whether a recording may allocate (hand off a full buffer, make one).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alloc {
    Yes,
    /// In the asynchronous preemption hook: drop the event if there is no room.
    No,
}

/// Encoded events not yet handed to the writer.
struct Pending {
    bytes: Vec<u8>,
    events: u64,
    /// The goroutine whose slice is open on this P (0: none); unused for
    /// the global buffer.
    open: u64,
}

/// A P's trace buffer (the `trace` field of `P`).
pub(crate) struct PTrace(Arc<PBuffer>);

struct PBuffer {
    runtime: u32,
    p: u32,
    /// Raised by the owner while it records (module header).
    recording: AtomicBool,
    pending: UnsafeCell<Pending>,
}

// SAFETY: `pending` is touched only by the P's owner inside a recording
// (flag raised, `ENABLED` seen true), by `stop` after waiting out every
// recording with tracing off, by `start` before it turns tracing on, or —
// for a P that is gone — under `P_BUFFERS` (module header).
unsafe impl Sync for PBuffer {}
// SAFETY: as above; the buffer has no thread affinity.
unsafe impl Send for PBuffer {}

impl PTrace {
    /// The buffer of P `p` of runtime `runtime`, registered for `stop`.
    pub(crate) fn new(runtime: u32, p: usize) -> PTrace {
        let mut all = lock(&P_BUFFERS);
        // A P made while tracing gets its room now, as `enable` gave the
        // others: its first recording may be one that must not allocate.
        // Relaxed: `enable` sets the flag under `P_BUFFERS`, which we hold.
        let room = if ENABLED.load(Ordering::Relaxed) {
            CHUNK_BYTES
        } else {
            0
        };
        let buffer = Arc::new(PBuffer {
            runtime,
            p: p as u32,
            recording: AtomicBool::new(false),
            pending: UnsafeCell::new(Pending {
                bytes: Vec::with_capacity(room),
                events: 0,
                open: 0,
            }),
        });
        forget_dead(&mut all);
        all.push(Arc::clone(&buffer));
        PTrace(buffer)
    }

    /// Record on this buffer as the P's owner, if tracing is on: `f` gets
    /// a recorder. The holder of the P only (or sysmon while it owns a P it
    /// retook). Never from a signal handler.
    pub(crate) fn record(&self, alloc: Alloc, f: impl FnOnce(&mut Recorder<'_>)) {
        let buffer = &*self.0;
        let _section = NoPreempt::enter();
        buffer.recording.store(true, Ordering::Relaxed);
        if still_enabled() {
            // SAFETY: we own the P (the caller's contract) and tracing is on
            // with our flag raised, so `stop` does not touch `pending` until
            // we lower it (module header).
            let pending = unsafe { &mut *buffer.pending.get() };
            f(&mut Recorder { buffer, pending, alloc });
        }
        // Release pairs with `stop`'s Acquire wait: our writes are seen.
        buffer.recording.store(false, Ordering::Release);
    }
}

/// Forget the buffers of Ps that are gone (only the registry holds them)
/// and have nothing left for the writer. `P_BUFFERS` held.
fn forget_dead(all: &mut Vec<Arc<PBuffer>>) {
    all.retain(|b| {
        if Arc::strong_count(b) > 1 {
            return true;
        }
        // `strong_count` reads Relaxed; Acquire pairs with the Release
        // decrement of the owner's last reference, so its writes to
        // `pending` are seen.
        fence(Ordering::Acquire);
        // SAFETY: a buffer only the registry holds has no owner any more,
        // and the caller holds `P_BUFFERS`.
        unsafe { !(*b.pending.get()).bytes.is_empty() }
    });
}

/// After raising a recording flag: whether tracing is still on.
fn still_enabled() -> bool {
    // `stop`'s membarrier orders the flag store before this load in
    // hardware; the compiler must not reorder them either.
    compiler_fence(Ordering::SeqCst);
    // Acquire pairs with `enable`'s Release: the buffers it prepared are seen.
    if !ENABLED.load(Ordering::Acquire) {
        return false;
    }
    if OWNERS_FENCE.load(Ordering::Relaxed) {
        // No membarrier: Dekker's fences, pairing with `disable`'s.
        fence(Ordering::SeqCst);
        return ENABLED.load(Ordering::Relaxed);
    }
    true
}

/// Appends events to the buffer of a P being recorded on.
pub(crate) struct Recorder<'a> {
    buffer: &'a PBuffer,
    pending: &'a mut Pending,
    alloc: Alloc,
}

impl Recorder<'_> {
    /// Append `event`, stamped now; drop it (counted) if there is no room.
    pub(crate) fn emit(&mut self, event: Event<'_>) {
        let ts = nanotime();
        if self.alloc == Alloc::Yes && spare(&self.pending.bytes) < RESERVE_BYTES + MAX_EVENT_BYTES {
            self.hand_off();
        }
        if spare(&self.pending.bytes) < MAX_EVENT_BYTES {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        event.encode(ts, &mut self.pending.bytes);
        self.pending.events += 1;
    }

    /// The goroutine whose slice is open on this P (0: none).
    pub(crate) fn open_slice(&self) -> u64 {
        self.pending.open
    }

    pub(crate) fn set_open_slice(&mut self, goid: u64) {
        self.pending.open = goid;
    }

    /// Send the buffer to the writer and start a fresh one.
    fn hand_off(&mut self) {
        let bytes = std::mem::replace(&mut self.pending.bytes, Vec::with_capacity(CHUNK_BYTES));
        let events = std::mem::take(&mut self.pending.events);
        if !bytes.is_empty() {
            let (runtime, p) = (self.buffer.runtime, self.buffer.p);
            send(Chunk::P { runtime, p, bytes }, events);
        }
    }
}

/// Bytes `bytes` can take without reallocating.
fn spare(bytes: &Vec<u8>) -> usize {
    bytes.capacity() - bytes.len()
}

/// Record `event` on the global buffer, for runtime `runtime`'s `track`.
/// Any thread but a signal handler.
pub(crate) fn record_global(runtime: u32, track: Track, event: Event<'_>) {
    let mut global = lock(&GLOBAL);
    // Under the lock: `stop` drains this buffer under it after turning
    // tracing off, and nothing may land in it afterwards.
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    if spare(&global.bytes) < MAX_GLOBAL_EVENT_BYTES {
        let bytes = std::mem::replace(&mut global.bytes, Vec::with_capacity(CHUNK_BYTES));
        let events = std::mem::take(&mut global.events);
        if !bytes.is_empty() {
            send(Chunk::Global { bytes }, events);
        }
    }
    put_varint(&mut global.bytes, u64::from(runtime));
    put_varint(&mut global.bytes, track.code());
    event.encode(nanotime(), &mut global.bytes);
    global.events += 1;
}

/// Give `chunk` to the writer, or count its events as dropped.
fn send(chunk: Chunk, events: u64) {
    let sent = lock(&SENDER).as_ref().is_some_and(|tx| tx.try_send(chunk).is_ok());
    if !sent {
        DROPPED.fetch_add(events, Ordering::Relaxed);
    }
}

/// Start recording into fresh buffers that are handed to `tx`. Tracing is
/// off, and no recording is in progress (`disable` waited them out).
pub(crate) fn enable(tx: SyncSender<Chunk>) {
    static BARRIER: Once = Once::new();
    BARRIER.call_once(|| {
        OWNERS_FENCE.store(!crate::os::register_process_barrier(), Ordering::Relaxed);
    });
    *lock(&SENDER) = Some(tx);
    DROPPED.store(0, Ordering::Relaxed);
    let mut all = lock(&P_BUFFERS);
    forget_dead(&mut all);
    for buffer in all.iter() {
        // SAFETY: tracing is off and no recording is in progress, so no
        // owner touches `pending` until `ENABLED` is set below.
        unsafe { (*buffer.pending.get()).bytes.reserve(CHUNK_BYTES) };
    }
    // Release pairs with `still_enabled`'s Acquire. Under `P_BUFFERS`, so
    // that a P registered after us sees it (`PTrace::new`).
    ENABLED.store(true, Ordering::Release);
}

/// Stop recording and collect every buffer, closing slices still open
/// (at the time each buffer is collected). Returns the last chunks for the writer and the sender to give
/// them to (dropping it ends the writer).
pub(crate) fn disable() -> (Vec<Chunk>, Option<SyncSender<Chunk>>) {
    ENABLED.store(false, Ordering::SeqCst);
    if OWNERS_FENCE.load(Ordering::Relaxed) {
        fence(Ordering::SeqCst);
    } else if !crate::os::process_barrier() {
        // Refused after registration succeeded (not seen in practice): a
        // recording lasts well under a microsecond, give those in flight
        // ample time to notice.
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut chunks = Vec::new();
    let mut all = lock(&P_BUFFERS);
    let ps = all.iter().map(|b| (b.runtime, b.p)).collect();
    for buffer in all.iter() {
        // Acquire pairs with `record`'s Release: its writes are visible.
        while buffer.recording.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        // SAFETY: tracing is off and this buffer's last recording is over;
        // later ones see `ENABLED` false and leave `pending` alone.
        let pending = unsafe { &mut *buffer.pending.get() };
        if pending.open != 0 {
            pending.bytes.reserve(MAX_EVENT_BYTES);
            Event::SliceEnd { goid: pending.open }.encode(nanotime(), &mut pending.bytes);
            pending.open = 0;
        }
        pending.events = 0;
        let bytes = std::mem::take(&mut pending.bytes);
        if !bytes.is_empty() {
            let (runtime, p) = (buffer.runtime, buffer.p);
            chunks.push(Chunk::P { runtime, p, bytes });
        }
    }
    all.retain(|b| Arc::strong_count(b) > 1);
    drop(all);
    let mut global = lock(&GLOBAL);
    global.events = 0;
    let bytes = std::mem::take(&mut global.bytes);
    drop(global);
    if !bytes.is_empty() {
        chunks.push(Chunk::Global { bytes });
    }
    chunks.push(Chunk::Ps(ps));
    (chunks, lock(&SENDER).take())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P made while tracing (`set_procs` growing a runtime) may be
    /// recorded on first where allocating is forbidden — by a goroutine
    /// back from a system call that acquires it (`hooks::acquired`) — so
    /// its buffer must have room from the start.
    #[test]
    fn a_buffer_made_while_tracing_takes_an_event_that_may_not_allocate() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(4);
        enable(tx);
        let trace = PTrace::new(u32::MAX, 7);
        trace.record(Alloc::No, |r| r.emit(Event::SliceEnd { goid: 1 }));
        let dropped = DROPPED.load(Ordering::Relaxed);
        let (chunks, _) = disable();
        assert_eq!(dropped, 0, "the event was dropped");
        let recorded = chunks
            .iter()
            .any(|c| matches!(c, Chunk::P { runtime: u32::MAX, p: 7, bytes } if !bytes.is_empty()));
        assert!(recorded, "no chunk for the new P");
    }
}
