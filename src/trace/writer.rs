//! The writer thread: turns chunks of binary events (`buffer.rs`) into the
//! Chrome trace-event JSON that Perfetto UI and chrome://tracing open.
//!
//! ```text
//! {"traceEvents":[
//! {"ph":"X","pid":1,"tid":10000,"ts":12.345,"dur":3.210,"cat":"goroutine","name":"G5 main","args":{"goid":5}},
//! {"ph":"i","s":"t","pid":1,"tid":10000,"ts":15.555,"cat":"sched","name":"park","args":{"goid":5,"reason":"chan receive"}},
//! ...
//! {"ph":"M","pid":1,"tid":10000,"name":"thread_name","args":{"name":"P0"}},
//! ],"displayTimeUnit":"ns","otherData":{"tracer":"gort","events":1234,"dropped_events":0}}
//! ```
//!
//! One process (`pid`) per runtime, numbered from 1 in the order runtimes
//! were built, named after the runtime. One thread track per P, named "P0",
//! "P1", ..., plus one named "no P" for events outside any P. Perfetto
//! treats a `tid` as naming one thread across processes (as Linux does), so
//! each runtime's tracks get their own tids: `pid * 10000 + P id`, and
//! `pid * 10000 + 9999` for "no P". Times are microseconds since the trace
//! started, with nanosecond decimals.
//!
//! A goroutine's time on a P becomes one complete slice (`"ph":"X"`): the
//! writer pairs each P's slice-begin event with the next slice-end event of
//! the same goroutine. A P's events arrive in time order (one owner at a
//! time writes its buffer), so its slices never overlap. An end without
//! its begin, or a begin without its end — possible only when a buffer
//! was dropped — is discarded. Everything else is an instant event
//! (`"ph":"i"`, thread scope). Metadata names the tracks at the end, and
//! `otherData.dropped_events` says how many events were lost.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use super::buffer::{Chunk, DROPPED, Track};
use super::event::{Event, Preemption, take_varint};

/// Tids each runtime's tracks use (module header).
const TIDS_PER_RUNTIME: u64 = 10_000;
/// The "no P" track's tid within its runtime's range.
const NO_P_TID: u64 = TIDS_PER_RUNTIME - 1;

/// Start the writer thread: it writes every chunk received to `file`
/// (times relative to `start`, a `nanotime`) and finishes the file when
/// the channel closes.
pub(crate) fn spawn(file: File, start: u64, chunks: Receiver<Chunk>) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name("gort-trace-writer".to_string())
        .spawn(move || {
            // Not a plain thread that might wake a goroutine: a traced
            // program that deadlocks is reported as an untraced one is.
            let _helper = crate::debug::threads::Helper::enter();
            let mut json = Json::new(BufWriter::new(file), start)?;
            for chunk in chunks {
                json.chunk(&chunk)?;
            }
            json.finish(&super::runtime_names(), DROPPED.load(Ordering::Relaxed))
        })
}

/// A slice begun on a P and not yet ended.
struct OpenSlice {
    goid: u64,
    ts: u64,
    name: String,
}

/// A trace file being written.
pub(crate) struct Json<W: Write> {
    out: W,
    start: u64,
    events: u64,
    /// Tracks that received an event, to be named at the end.
    tracks: BTreeSet<(u32, Track)>,
    open: HashMap<(u32, u32), OpenSlice>,
    /// Every P of every runtime, as (runtime, P id) (`Chunk::Ps`).
    ps: Vec<(u32, u32)>,
}

impl<W: Write> Json<W> {
    pub(crate) fn new(mut out: W, start: u64) -> io::Result<Json<W>> {
        out.write_all(b"{\"traceEvents\":[")?;
        Ok(Json {
            out,
            start,
            events: 0,
            tracks: BTreeSet::new(),
            open: HashMap::new(),
            ps: Vec::new(),
        })
    }

    /// Write the events of one chunk.
    pub(crate) fn chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        match chunk {
            Chunk::P { runtime, p, bytes } => {
                let mut input = &bytes[..];
                while let Some((ts, event)) = Event::decode(&mut input) {
                    self.p_event(*runtime, *p, ts, event)?;
                }
            }
            Chunk::Global { bytes } => {
                let mut input = &bytes[..];
                while let Some(runtime) = take_varint(&mut input).and_then(|r| u32::try_from(r).ok())
                    && let Some(track) = take_varint(&mut input).and_then(Track::from_code)
                    && let Some((ts, event)) = Event::decode(&mut input)
                {
                    self.instant(runtime, track, ts, &event)?;
                }
            }
            Chunk::Ps(ps) => self.ps.clone_from(ps),
        }
        Ok(())
    }

    fn p_event(&mut self, runtime: u32, p: u32, ts: u64, event: Event<'_>) -> io::Result<()> {
        match event {
            Event::SliceBegin { goid, name } => {
                let name = name.to_string();
                self.open.insert((runtime, p), OpenSlice { goid, ts, name });
                Ok(())
            }
            Event::SliceEnd { goid } => match self.open.remove(&(runtime, p)) {
                Some(open) if open.goid == goid && open.ts <= ts => self.slice(runtime, p, &open, ts),
                _ => Ok(()),
            },
            _ => self.instant(runtime, Track::P(p), ts, &event),
        }
    }

    /// Separate this event from the previous one.
    fn next_event(&mut self) -> io::Result<()> {
        self.out.write_all(if self.events == 0 { b"\n" } else { b",\n" })?;
        self.events += 1;
        Ok(())
    }

    fn slice(&mut self, runtime: u32, p: u32, open: &OpenSlice, end: u64) -> io::Result<()> {
        self.tracks.insert((runtime, Track::P(p)));
        self.next_event()?;
        let (goid, tid) = (open.goid, tid(runtime, Track::P(p)));
        let separator = if open.name.is_empty() { "" } else { " " };
        write!(
            self.out,
            r#"{{"ph":"X","pid":{runtime},"tid":{tid},"ts":{},"dur":{},"cat":"goroutine","name":"G{goid}{separator}{}","args":{{"goid":{goid}}}}}"#,
            Micros(open.ts.saturating_sub(self.start)),
            Micros(end - open.ts),
            Escaped(&open.name),
        )
    }

    fn instant(&mut self, runtime: u32, track: Track, ts: u64, event: &Event<'_>) -> io::Result<()> {
        self.tracks.insert((runtime, track));
        self.next_event()?;
        write!(
            self.out,
            r#"{{"ph":"i","s":"t","pid":{runtime},"tid":{},"ts":{},"cat":"sched","name":"{}","args":{{{}}}}}"#,
            tid(runtime, track),
            Micros(ts.saturating_sub(self.start)),
            name(event),
            Args(event),
        )
    }

    /// Name the processes and tracks (every P of a runtime that recorded
    /// anything), say what was lost, close the JSON.
    pub(crate) fn finish(mut self, runtime_names: &[String], dropped: u64) -> io::Result<()> {
        let events = self.events;
        let runtimes: BTreeSet<u32> = self.tracks.iter().map(|&(runtime, _)| runtime).collect();
        let idle = self.ps.iter().filter(|(runtime, _)| runtimes.contains(runtime));
        let idle: Vec<_> = idle.map(|&(runtime, p)| (runtime, Track::P(p))).collect();
        self.tracks.extend(idle);
        for runtime in runtimes {
            let index = (runtime as usize).wrapping_sub(1);
            let name = runtime_names.get(index).map_or("gort", String::as_str);
            let label = format!("{name} (runtime {runtime})");
            self.metadata(
                runtime,
                Track::NoP,
                "process_name",
                format_args!(r#""name":"{}""#, Escaped(&label)),
            )?;
            self.metadata(
                runtime,
                Track::NoP,
                "process_sort_index",
                format_args!(r#""sort_index":{runtime}"#),
            )?;
        }
        for (runtime, track) in std::mem::take(&mut self.tracks) {
            let (label, order) = match track {
                Track::P(p) => (format!("P{p}"), u64::from(p)),
                Track::NoP => ("no P".to_string(), NO_P_TID),
            };
            self.metadata(runtime, track, "thread_name", format_args!(r#""name":"{label}""#))?;
            self.metadata(
                runtime,
                track,
                "thread_sort_index",
                format_args!(r#""sort_index":{order}"#),
            )?;
        }
        write!(
            self.out,
            "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{{\"tracer\":\"gort\",\"events\":{events},\"dropped_events\":{dropped}}}}}\n"
        )?;
        self.out.flush()
    }

    fn metadata(&mut self, runtime: u32, track: Track, what: &str, args: fmt::Arguments<'_>) -> io::Result<()> {
        self.next_event()?;
        write!(
            self.out,
            r#"{{"ph":"M","pid":{runtime},"tid":{},"name":"{what}","args":{{{args}}}}}"#,
            tid(runtime, track)
        )
    }
}

fn tid(runtime: u32, track: Track) -> u64 {
    let base = u64::from(runtime) * TIDS_PER_RUNTIME;
    match track {
        Track::P(p) => base + u64::from(p),
        Track::NoP => base + NO_P_TID,
    }
}

/// An instant event's name.
fn name(event: &Event<'_>) -> &'static str {
    match event {
        Event::SliceBegin { .. } => "slice_begin",
        Event::SliceEnd { .. } => "slice_end",
        Event::Spawn { .. } => "spawn",
        Event::Park { .. } => "park",
        Event::Ready { .. } => "ready",
        Event::Yield { .. } => "yield",
        Event::Preempt { .. } => "preempt",
        Event::PreemptRequest => "preempt_request",
        Event::PreemptSignal => "preempt_signal",
        Event::Blocked => "blocked",
        Event::SyscallEnter { .. } => "syscall_enter",
        Event::SyscallExit { .. } => "syscall_exit",
        Event::SyscallHandoff { .. } => "syscall_handoff",
        Event::Steal { .. } => "steal",
        Event::Netpoll { .. } => "netpoll",
    }
}

/// An instant event's `args` members.
struct Args<'a>(&'a Event<'a>);

impl fmt::Display for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Event::Spawn { goid, parent } => write!(f, r#""goid":{goid},"parent":{parent}"#),
            Event::Park { goid, reason } => write!(f, r#""goid":{goid},"reason":"{}""#, reason.name()),
            Event::Ready { goid, by } => write!(f, r#""goid":{goid},"by":{by}"#),
            Event::Preempt { goid, how } => {
                let how = match how {
                    Preemption::Cooperative => "cooperative",
                    Preemption::Signal => "signal",
                };
                write!(f, r#""goid":{goid},"how":"{how}""#)
            }
            Event::SliceBegin { goid, .. }
            | Event::SliceEnd { goid }
            | Event::Yield { goid }
            | Event::SyscallEnter { goid }
            | Event::SyscallExit { goid }
            | Event::SyscallHandoff { goid } => write!(f, r#""goid":{goid}"#),
            Event::Steal { from, count } => write!(f, r#""from":{from},"count":{count}"#),
            Event::Netpoll { ready } => write!(f, r#""ready":{ready}"#),
            Event::PreemptRequest | Event::PreemptSignal | Event::Blocked => Ok(()),
        }
    }
}

/// Nanoseconds shown as microseconds with three decimals.
struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A string's contents escaped for a JSON string literal.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::WaitReason;
    use crate::trace::event::{MAX_EVENT_BYTES, Reason, put_varint};

    fn encode(events: &[(u64, Event<'_>)]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(events.len() * MAX_EVENT_BYTES);
        for (ts, e) in events {
            e.encode(*ts, &mut bytes);
        }
        bytes
    }

    #[test]
    fn slices_pair_up_and_strays_are_dropped() {
        let p = encode(&[
            (
                1_000,
                Event::SliceBegin {
                    goid: 1,
                    name: "ma\"in",
                },
            ),
            (
                2_500,
                Event::Park {
                    goid: 1,
                    reason: Reason::of(WaitReason::ChanReceive),
                },
            ),
            (3_000, Event::SliceEnd { goid: 1 }),
            (3_100, Event::SliceEnd { goid: 2 }),
            (4_000, Event::SliceBegin { goid: 3, name: "" }),
            (5_000, Event::SliceBegin { goid: 4, name: "" }),
            (6_000, Event::SliceEnd { goid: 4 }),
        ]);
        let mut global = Vec::with_capacity(64);
        put_varint(&mut global, 1);
        put_varint(&mut global, 0);
        Event::Spawn { goid: 4, parent: 0 }.encode(500, &mut global);
        let mut out = Vec::new();
        let mut json = Json::new(&mut out, 400).unwrap();
        json.chunk(&Chunk::P {
            runtime: 1,
            p: 0,
            bytes: p,
        })
        .unwrap();
        json.chunk(&Chunk::Global { bytes: global }).unwrap();
        json.chunk(&Chunk::Ps(vec![(1, 1), (2, 0)])).unwrap();
        json.finish(&["rt".to_string()], 7).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"traceEvents\":[\n"), "{text}");
        assert!(text.contains(r#""ph":"X","pid":1,"tid":10000,"ts":0.600,"dur":2.000,"cat":"goroutine","name":"G1 ma\"in","args":{"goid":1}"#), "{text}");
        assert!(
            text.contains(r#""ts":4.600,"dur":1.000,"cat":"goroutine","name":"G4","#),
            "{text}"
        );
        assert_eq!(text.matches(r#""ph":"X""#).count(), 2, "{text}");
        assert!(
            text.contains(r#""name":"park","args":{"goid":1,"reason":"chan receive"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""tid":19999,"ts":0.100,"cat":"sched","name":"spawn","args":{"goid":4,"parent":0}"#),
            "{text}"
        );
        assert!(text.contains(r#""name":"thread_name","args":{"name":"P0"}"#), "{text}");
        assert!(
            text.contains(r#""name":"thread_name","args":{"name":"no P"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""pid":1,"tid":10001,"name":"thread_name","args":{"name":"P1"}"#),
            "{text}"
        );
        assert!(!text.contains(r#""pid":2,"#), "{text}");
        assert!(
            text.contains(r#""name":"process_name","args":{"name":"rt (runtime 1)"}"#),
            "{text}"
        );
        assert!(
            text.ends_with("\"otherData\":{\"tracer\":\"gort\",\"events\":4,\"dropped_events\":7}}\n"),
            "{text}"
        );
    }
}
