//! The trace's binary event format: what the runtime appends to its buffers
//! while tracing, and what the writer thread reads back.
//!
//! An event is a kind byte followed by unsigned LEB128 varints: the
//! timestamp (`timers::nanotime`, nanoseconds on the runtime's monotonic
//! clock), then the kind's fields; a goroutine name is a varint length and
//! its UTF-8 bytes, cut to `MAX_NAME_BYTES`. A typical event takes 8 to 12
//! bytes, so a 64 KiB buffer holds several thousand.
//!
//! Encoding never allocates: the caller guarantees `MAX_EVENT_BYTES` of
//! spare capacity, so an event can be recorded where allocation is
//! forbidden (an asynchronously preempted goroutine's hook). Decoding
//! rejects malformed input by returning `None`, which ends the chunk.

use crate::sched::WaitReason;

/// Most bytes one encoded event takes: kind, three varints, a name.
pub(crate) const MAX_EVENT_BYTES: usize = 1 + 3 * 10 + 2 + MAX_NAME_BYTES;
/// Goroutine names longer than this are cut (at a character boundary).
const MAX_NAME_BYTES: usize = 64;

/// How a goroutine was preempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preemption {
    /// sysmon's request was honoured at a runtime call (a yield).
    Cooperative,
    /// SIGURG stopped it wherever it was (it keeps its thread).
    Signal,
}

/// One thing the scheduler did. Goroutine ids are `goid`s; 0 stands for
/// "no goroutine" (a plain thread, or the runtime on g0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// Goroutine `goid` starts running on this P.
    SliceBegin { goid: u64, name: &'a str },
    /// ... and stops.
    SliceEnd { goid: u64 },
    /// `parent` spawned `goid`.
    Spawn { goid: u64, parent: u64 },
    /// `goid` parked, waiting for `reason`.
    Park { goid: u64, reason: Reason },
    /// `by` made parked `goid` runnable.
    Ready { goid: u64, by: u64 },
    /// `goid` called `yield_now`.
    Yield { goid: u64 },
    /// `goid` was preempted.
    Preempt { goid: u64, how: Preemption },
    /// sysmon asked the goroutine on this P to yield (it ran past its slice).
    PreemptRequest,
    /// sysmon sent SIGURG to the M of this P (the request was not honoured).
    PreemptSignal,
    /// sysmon found the M of this P blocked in the kernel outside
    /// `gort::blocking` and asked it to give up the P.
    Blocked,
    /// `goid` entered a system call, keeping its P loosely.
    SyscallEnter { goid: u64 },
    /// `goid` is back from a system call, holding a P again.
    SyscallExit { goid: u64 },
    /// sysmon took this P from `goid`, in a system call, to run others.
    SyscallHandoff { goid: u64 },
    /// This P stole `count` goroutines from P `from`.
    Steal { from: u64, count: u64 },
    /// A network poll made `ready` goroutines runnable.
    Netpoll { ready: u64 },
}

/// Why a goroutine parked, as the trace stores it: the reason's one-byte
/// code (`WaitReason::code`), named as goroutine dumps name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reason(u8);

impl Reason {
    pub(crate) fn of(reason: WaitReason) -> Reason {
        Reason(reason.code())
    }

    /// The name the trace shows.
    pub(crate) fn name(self) -> &'static str {
        WaitReason::from_code(self.0).unwrap_or(WaitReason::None).as_str()
    }
}

mod kind {
    pub(super) const SLICE_BEGIN: u8 = 1;
    pub(super) const SLICE_END: u8 = 2;
    pub(super) const SPAWN: u8 = 3;
    pub(super) const PARK: u8 = 4;
    pub(super) const READY: u8 = 5;
    pub(super) const YIELD: u8 = 6;
    pub(super) const PREEMPT_COOPERATIVE: u8 = 7;
    pub(super) const PREEMPT_SIGNAL: u8 = 8;
    pub(super) const PREEMPT_REQUEST: u8 = 9;
    pub(super) const PREEMPT_SIGNAL_SENT: u8 = 10;
    pub(super) const BLOCKED: u8 = 11;
    pub(super) const SYSCALL_ENTER: u8 = 12;
    pub(super) const SYSCALL_EXIT: u8 = 13;
    pub(super) const SYSCALL_HANDOFF: u8 = 14;
    pub(super) const STEAL: u8 = 15;
    pub(super) const NETPOLL: u8 = 16;
}

/// Append `v` as an unsigned LEB128 varint (at most 10 bytes).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read a varint from the front of `input`.
pub(crate) fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// `name` cut to at most `MAX_NAME_BYTES`, at a character boundary.
fn cut(name: &str) -> &str {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let end = (0..=MAX_NAME_BYTES)
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0);
    &name[..end]
}

impl Event<'_> {
    /// Append this event at time `ts`. The caller leaves at least
    /// `MAX_EVENT_BYTES` of spare capacity in `out`, so this never allocates.
    pub(crate) fn encode(&self, ts: u64, out: &mut Vec<u8>) {
        debug_assert!(out.capacity() - out.len() >= MAX_EVENT_BYTES);
        let (code, a, b) = match *self {
            Event::SliceBegin { goid, .. } => (kind::SLICE_BEGIN, Some(goid), None),
            Event::SliceEnd { goid } => (kind::SLICE_END, Some(goid), None),
            Event::Spawn { goid, parent } => (kind::SPAWN, Some(goid), Some(parent)),
            Event::Park { goid, reason } => (kind::PARK, Some(goid), Some(u64::from(reason.0))),
            Event::Ready { goid, by } => (kind::READY, Some(goid), Some(by)),
            Event::Yield { goid } => (kind::YIELD, Some(goid), None),
            Event::Preempt {
                goid,
                how: Preemption::Cooperative,
            } => (kind::PREEMPT_COOPERATIVE, Some(goid), None),
            Event::Preempt {
                goid,
                how: Preemption::Signal,
            } => (kind::PREEMPT_SIGNAL, Some(goid), None),
            Event::PreemptRequest => (kind::PREEMPT_REQUEST, None, None),
            Event::PreemptSignal => (kind::PREEMPT_SIGNAL_SENT, None, None),
            Event::Blocked => (kind::BLOCKED, None, None),
            Event::SyscallEnter { goid } => (kind::SYSCALL_ENTER, Some(goid), None),
            Event::SyscallExit { goid } => (kind::SYSCALL_EXIT, Some(goid), None),
            Event::SyscallHandoff { goid } => (kind::SYSCALL_HANDOFF, Some(goid), None),
            Event::Steal { from, count } => (kind::STEAL, Some(from), Some(count)),
            Event::Netpoll { ready } => (kind::NETPOLL, Some(ready), None),
        };
        out.push(code);
        put_varint(out, ts);
        for field in [a, b].into_iter().flatten() {
            put_varint(out, field);
        }
        if let Event::SliceBegin { name, .. } = *self {
            let name = cut(name);
            put_varint(out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
        }
    }

    /// Read one event and its timestamp from the front of `input`.
    pub(crate) fn decode<'a>(input: &mut &'a [u8]) -> Option<(u64, Event<'a>)> {
        let (&code, rest) = input.split_first()?;
        *input = rest;
        let ts = take_varint(input)?;
        let event = match code {
            kind::SLICE_BEGIN => {
                let goid = take_varint(input)?;
                let len = usize::try_from(take_varint(input)?).ok()?;
                if len > input.len() {
                    return None;
                }
                let (bytes, rest) = input.split_at(len);
                *input = rest;
                let name = std::str::from_utf8(bytes).ok()?;
                Event::SliceBegin { goid, name }
            }
            kind::SLICE_END => Event::SliceEnd {
                goid: take_varint(input)?,
            },
            kind::SPAWN => Event::Spawn {
                goid: take_varint(input)?,
                parent: take_varint(input)?,
            },
            kind::PARK => Event::Park {
                goid: take_varint(input)?,
                reason: Reason::of(WaitReason::from_code(u8::try_from(take_varint(input)?).ok()?)?),
            },
            kind::READY => Event::Ready {
                goid: take_varint(input)?,
                by: take_varint(input)?,
            },
            kind::YIELD => Event::Yield {
                goid: take_varint(input)?,
            },
            kind::PREEMPT_COOPERATIVE => Event::Preempt {
                goid: take_varint(input)?,
                how: Preemption::Cooperative,
            },
            kind::PREEMPT_SIGNAL => Event::Preempt {
                goid: take_varint(input)?,
                how: Preemption::Signal,
            },
            kind::PREEMPT_REQUEST => Event::PreemptRequest,
            kind::PREEMPT_SIGNAL_SENT => Event::PreemptSignal,
            kind::BLOCKED => Event::Blocked,
            kind::SYSCALL_ENTER => Event::SyscallEnter {
                goid: take_varint(input)?,
            },
            kind::SYSCALL_EXIT => Event::SyscallExit {
                goid: take_varint(input)?,
            },
            kind::SYSCALL_HANDOFF => Event::SyscallHandoff {
                goid: take_varint(input)?,
            },
            kind::STEAL => Event::Steal {
                from: take_varint(input)?,
                count: take_varint(input)?,
            },
            kind::NETPOLL => Event::Netpoll {
                ready: take_varint(input)?,
            },
            _ => return None,
        };
        Some((ts, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let long = "é".repeat(100);
        let events = [
            Event::SliceBegin { goid: 7, name: "main" },
            Event::SliceBegin { goid: 8, name: &long },
            Event::SliceEnd { goid: 7 },
            Event::Spawn { goid: 9, parent: 0 },
            Event::Park {
                goid: 9,
                reason: Reason::of(WaitReason::IoWait),
            },
            Event::Ready { goid: 9, by: 7 },
            Event::Yield { goid: 1 },
            Event::Preempt {
                goid: 3,
                how: Preemption::Signal,
            },
            Event::Preempt {
                goid: 3,
                how: Preemption::Cooperative,
            },
            Event::PreemptRequest,
            Event::PreemptSignal,
            Event::Blocked,
            Event::SyscallEnter { goid: u64::MAX },
            Event::SyscallExit { goid: 2 },
            Event::SyscallHandoff { goid: 2 },
            Event::Steal { from: 1, count: 128 },
            Event::Netpoll { ready: 3 },
        ];
        let mut buf = Vec::with_capacity(events.len() * MAX_EVENT_BYTES);
        for (ts, e) in events.iter().enumerate() {
            e.encode(ts as u64 * 1_000_000_007, &mut buf);
        }
        let mut input = &buf[..];
        for (ts, e) in events.iter().enumerate() {
            let (got_ts, got) = Event::decode(&mut input).expect("decodes");
            assert_eq!(got_ts, ts as u64 * 1_000_000_007);
            match (e, got) {
                (Event::SliceBegin { name, .. }, Event::SliceBegin { name: cut_name, .. }) if name.len() > 64 => {
                    assert!(cut_name.len() <= MAX_NAME_BYTES && name.starts_with(cut_name));
                }
                _ => assert_eq!(*e, got),
            }
        }
        assert!(input.is_empty());
    }

    #[test]
    fn reason_codes_index_their_table() {
        for code in 0..=u8::MAX {
            if let Some(reason) = WaitReason::from_code(code) {
                assert_eq!(Reason::of(reason), Reason(code));
            }
        }
        assert_eq!(
            WaitReason::from_code(WaitReason::IoWait.code()),
            Some(WaitReason::IoWait)
        );
        assert_eq!(Reason::of(WaitReason::ChanReceive).name(), "chan receive");
    }

    #[test]
    fn truncated_input_is_rejected() {
        let mut buf = Vec::with_capacity(MAX_EVENT_BYTES);
        Event::Steal { from: 300, count: 2 }.encode(1 << 40, &mut buf);
        for len in 0..buf.len() {
            assert_eq!(Event::decode(&mut &buf[..len]), None);
        }
    }
}
