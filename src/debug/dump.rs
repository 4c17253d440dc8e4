//! Goroutine dumps: Go's traceback of every goroutine (`runtime.Stack(buf,
//! true)`, the SIGQUIT output), and its grouped form for programs with a
//! million goroutines (the goroutine profile's `debug=1`).
//!
//! ```text
//! goroutine 7 [chan receive, 2 minutes]:
//! gort::chan::Receiver<T>::recv
//!         parked at src/main.rs:12:19
//! demo::worker_loop
//!         src/main.rs:12
//! created by demo::main in goroutine 1
//!         src/main.rs:30:5
//! ```
//!
//! What a dump knows about a goroutine comes from its G: status, wait
//! reason, where it parked (`#[track_caller]` through every public blocking
//! call), since when (sysmon's coarse clock, so waits are accurate to its
//! pacing, ≤ 10 ms) and where and by whom it was spawned. The function that
//! spawned it is found from where, at dump time (`spawn_site.rs`): a spawn
//! records a location and nothing more. Its stack comes from its saved
//! registers (`arch::Context`) for goroutines that are not running, from the
//! calling thread for the dumping goroutine itself; goroutines running on
//! other threads show no stack, as in Go.
//!
//! Nothing is stopped while a dump is taken (Go stops the world). Each G's
//! fields are read with relaxed loads, and its stack is *copied* by the
//! kernel (`os::read_own_memory_many`) before it is unwound, so a goroutine that
//! resumes meanwhile can only make its own entry stale, never make the
//! dump fault or race: after the copy the dump re-reads the goroutine's
//! status and park stamp, and drops a stack that changed under it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::panic::Location;
use std::time::Duration;

use super::{stacks, symbols};
use crate::sched::{GPtr, GStatus, Sched, current_m, nanotime};

/// What a goroutine is doing (Go's `_Grunnable`, `_Grunning`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GoroutineState {
    /// On a run queue, waiting for a processor.
    Runnable,
    /// Running on a thread.
    Running,
    /// In a blocking system call (`gort::blocking`, or detected by sysmon).
    Syscall,
    /// Parked until something wakes it; see [`GoroutineInfo::wait_reason`].
    Waiting,
    /// Stopped by an asynchronous preemption, about to be rescheduled.
    Preempted,
}

impl GoroutineState {
    fn as_str(self) -> &'static str {
        match self {
            GoroutineState::Runnable => "runnable",
            GoroutineState::Running => "running",
            GoroutineState::Syscall => "syscall",
            GoroutineState::Waiting => "waiting",
            GoroutineState::Preempted => "preempted",
        }
    }
}

/// One frame of a goroutine's stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The demangled function name, without its hash.
    pub function: String,
    /// The source file, when debug info has it.
    pub file: Option<String>,
    /// The source line, when debug info has it.
    pub line: Option<u32>,
}

/// A snapshot of one goroutine, as [`runtime::goroutines`](crate::runtime::goroutines) reports it.
#[derive(Clone, Debug)]
pub struct GoroutineInfo {
    /// The goroutine's id (`gort::current().id()`).
    pub id: u64,
    /// Its name, if it was spawned with one.
    pub name: Option<String>,
    /// What it is doing.
    pub state: GoroutineState,
    /// Why it waits, in Go's words (`"chan receive"`, `"sleep"`, `"IO wait"`,
    /// `"sync.Mutex.Lock"`, ...); `None` unless it is waiting.
    pub wait_reason: Option<&'static str>,
    /// How long it has waited (to about 10 ms); `None` unless it is waiting.
    pub waiting_for: Option<Duration>,
    /// Where its code called the blocking function it waits in.
    pub parked_at: Option<&'static Location<'static>>,
    /// Where it was spawned; [`created_by`](GoroutineInfo::created_by)
    /// names the function this is in.
    pub spawned_at: &'static Location<'static>,
    /// The goroutine that spawned it; `None` for a plain thread.
    pub parent: Option<u64>,
    /// Its stack, innermost frame first, runtime-internal frames trimmed;
    /// empty when unavailable (see [`stack_note`](GoroutineInfo::stack_note)).
    pub stack: Vec<Frame>,
    /// Why `stack` is empty or partial, if it is.
    pub stack_note: Option<&'static str>,
}

impl GoroutineInfo {
    /// The function the spawn call at [`spawned_at`](GoroutineInfo::spawned_at)
    /// is written in, demangled without its hash, as the stack's frames are
    /// (`myapp::serve`, `myapp::main::{{closure}}` for a spawn inside a
    /// closure): the name on the dump's `created by` line. Looked up in the
    /// executable's debug info on first use for each spawn site, then
    /// cached; `None` without debug info, where the dump says `gort::go`.
    pub fn created_by(&self) -> Option<&'static str> {
        super::spawn_site::spawning_function(self.spawned_at)
    }

    fn header(&self) -> String {
        let mut status = match (self.state, self.wait_reason) {
            (GoroutineState::Waiting, Some(reason)) => reason.to_string(),
            (state, _) => state.as_str().to_string(),
        };
        if let Some(waited) = self.waiting_for {
            status.push_str(", ");
            status.push_str(&format_wait(waited));
        }
        match &self.name {
            Some(name) => format!("goroutine {} \"{name}\" [{status}]:", self.id),
            None => format!("goroutine {} [{status}]:", self.id),
        }
    }

    /// The frames and the "created by" trailer, shared by single and
    /// grouped entries.
    fn write_body(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.parked_at {
            writeln!(f, "\tparked at {at}")?;
        }
        for frame in &self.stack {
            writeln!(f, "{}", frame.function)?;
            match (&frame.file, frame.line) {
                (Some(file), Some(line)) => writeln!(f, "\t{file}:{line}")?,
                (Some(file), None) => writeln!(f, "\t{file}")?,
                _ => writeln!(f, "\t?")?,
            }
        }
        if let Some(note) = self.stack_note {
            writeln!(f, "\t({note})")?;
        }
        let creator = self.created_by().unwrap_or("gort::go");
        match self.parent {
            Some(parent) => writeln!(f, "created by {creator} in goroutine {parent}")?,
            None => writeln!(f, "created by {creator} outside the runtime")?,
        }
        writeln!(f, "\t{}", self.spawned_at)
    }
}

/// Go's format: one entry of `runtime.Stack(buf, true)`.
impl fmt::Display for GoroutineInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header())?;
        self.write_body(f)
    }
}

/// Minutes as Go shows them; shorter waits (which Go omits) in ms or s.
fn format_wait(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 120 => format!("{} minutes", s / 60),
        s if s >= 60 => "1 minute".to_string(),
        s if s >= 10 => format!("{s} s"),
        _ => format!("{} ms", d.as_millis()),
    }
}

/// A goroutine as a snapshot reads it, before any symbol is looked up: its
/// entry without frames, and its stack's code addresses or why there are
/// none.
struct Seen {
    info: GoroutineInfo,
    ips: Result<Vec<usize>, &'static str>,
}

impl Seen {
    /// The entry with its frames (symbolized through the process's cache).
    fn symbolized(self) -> GoroutineInfo {
        let mut info = self.info;
        match self.ips {
            Ok(ips) => info.stack = stacks::frames_of(&ips),
            Err(note) => info.stack_note = Some(note),
        }
        info
    }
}

impl Sched {
    /// A snapshot of every live goroutine of this runtime, by id.
    pub(crate) fn goroutines(&self, with_stacks: bool) -> Vec<GoroutineInfo> {
        let _symbols = symbols::Session::begin();
        self.snapshot(with_stacks).into_iter().map(Seen::symbolized).collect()
    }

    /// Every live goroutine of this runtime, by id, stacks as addresses.
    fn snapshot(&self, with_stacks: bool) -> Vec<Seen> {
        let me = current_m()
            .filter(|m| std::ptr::eq(&*m.sched, self))
            .and_then(|m| m.curg.get());
        let now = nanotime();
        let mut out: Vec<Seen> = Vec::new();
        // Where in `out`, which G and in which stay, each stack to copy is.
        let mut suspended: Vec<(usize, (GPtr, stacks::Stamp))> = Vec::new();
        for (g, name) in self.all_gs_named() {
            let stamp = stacks::stamp(g);
            let (status, _, (parked_at, since), _) = stamp;
            let state = match status {
                GStatus::Idle | GStatus::Dead => continue,
                GStatus::Runnable => GoroutineState::Runnable,
                GStatus::Running => GoroutineState::Running,
                GStatus::Syscall => GoroutineState::Syscall,
                GStatus::Waiting => GoroutineState::Waiting,
                GStatus::Preempted => GoroutineState::Preempted,
            };
            let waiting = state == GoroutineState::Waiting;
            let info = GoroutineInfo {
                id: g.id(),
                name: name.map(|n| n.to_string()),
                state,
                wait_reason: waiting.then(|| g.wait_reason().as_str()),
                waiting_for: (waiting && since > 0).then(|| Duration::from_nanos(now.saturating_sub(since))),
                parked_at: waiting.then_some(parked_at),
                spawned_at: g.spawned_at(),
                parent: Some(g.parent()).filter(|&p| p != 0),
                stack: Vec::new(),
                stack_note: None,
            };
            // The stacks of goroutines that are not running are copied
            // below, all in one go.
            let ips = match state {
                _ if !with_stacks => Ok(Vec::new()),
                _ if me == Some(g) => Ok(stacks::current_ips()),
                GoroutineState::Running | GoroutineState::Syscall => {
                    Err("running on another thread; stack unavailable")
                }
                GoroutineState::Runnable | GoroutineState::Waiting | GoroutineState::Preempted => {
                    suspended.push((out.len(), (g, stamp)));
                    Ok(Vec::new())
                }
            };
            out.push(Seen { info, ips });
        }
        let (at, gs): (Vec<usize>, Vec<_>) = suspended.into_iter().unzip();
        for (i, ips) in at.into_iter().zip(stacks::suspended_ips(&gs)) {
            out[i].ips = ips;
        }
        out.sort_by_key(|s| s.info.id);
        out
    }

    /// Write every goroutine's entry, Go's format, blank-line separated.
    pub(crate) fn dump(&self, w: &mut dyn Write) -> io::Result<()> {
        // One session for the frames and the `created by` names.
        let _symbols = symbols::Session::begin();
        for info in self.goroutines(true) {
            writeln!(w, "{info}")?;
        }
        Ok(())
    }

    /// Write goroutines grouped by identical state, wait reason, stack and
    /// spawn site, largest group first (for huge programs: a million
    /// goroutines parked in the same place print as one entry).
    ///
    /// Linear in the goroutines: they are grouped by their stacks' code
    /// addresses with a hash map, each distinct stack is symbolized once,
    /// and groups whose addresses differ but whose frames print the same
    /// (different call sites inside trimmed runtime frames, two addresses on
    /// one line) are merged after.
    pub(crate) fn dump_grouped(&self, w: &mut dyn Write) -> io::Result<()> {
        let _symbols = symbols::Session::begin();
        let all = self.snapshot(true);
        let total = all.len();
        let mut by_address: HashMap<AddressKey, Group, BuildHasherDefault<WordHasher>> = HashMap::default();
        for Seen { info, ips } in all {
            let key = AddressKey {
                state: info.state,
                wait_reason: info.wait_reason.map(str::as_ptr),
                parked_at: info.parked_at.map(std::ptr::from_ref),
                spawned_at: std::ptr::from_ref(info.spawned_at),
                ips,
            };
            let group = by_address.entry(key).or_insert_with(|| Group {
                ids: Vec::new(),
                longest_wait: None,
                sample: info.clone(),
            });
            group.ids.push(info.id);
            group.longest_wait = group.longest_wait.max(info.waiting_for);
        }
        let mut groups: HashMap<GroupKey, Group> = HashMap::new();
        for (AddressKey { ips, .. }, mut group) in by_address {
            group.sample = Seen {
                info: group.sample,
                ips,
            }
            .symbolized();
            match groups.entry(GroupKey::of(&group.sample)) {
                Entry::Vacant(vacant) => {
                    vacant.insert(group);
                }
                Entry::Occupied(mut same) => same.get_mut().absorb(group),
            }
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        for group in &mut groups {
            group.ids.sort_unstable();
        }
        groups.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then(a.ids[0].cmp(&b.ids[0])));
        writeln!(w, "goroutines: total {total}, {} distinct\n", groups.len())?;
        for group in groups {
            writeln!(w, "{group}")?;
        }
        Ok(())
    }
}

/// What the goroutines of a first-pass group share: [`GroupKey`]'s fields
/// by identity (a `Location` or wait reason by address, which two equal
/// ones may not share: the second pass merges them), and the stack's code
/// addresses. Cheap to hash, unlike names and paths.
#[derive(PartialEq, Eq, Hash)]
struct AddressKey {
    state: GoroutineState,
    wait_reason: Option<*const u8>,
    parked_at: Option<*const Location<'static>>,
    spawned_at: *const Location<'static>,
    ips: Result<Vec<usize>, &'static str>,
}

/// A hasher for keys made of words (addresses, small integers): one
/// multiply and rotate per word (as rustc's FxHasher), where SipHash's
/// resistance to chosen keys buys nothing and cost a tenth of a grouped
/// dump.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_ne_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What the goroutines of one group share; `stack` is empty until their
/// sample is symbolized.
#[derive(PartialEq, Eq, Hash)]
struct GroupKey {
    state: GoroutineState,
    wait_reason: Option<&'static str>,
    parked_at: Option<(&'static str, u32, u32)>,
    spawned_at: (&'static str, u32, u32),
    stack: Vec<Frame>,
}

impl GroupKey {
    fn of(info: &GoroutineInfo) -> GroupKey {
        GroupKey {
            state: info.state,
            wait_reason: info.wait_reason,
            parked_at: info.parked_at.map(|l| (l.file(), l.line(), l.column())),
            spawned_at: (info.spawned_at.file(), info.spawned_at.line(), info.spawned_at.column()),
            stack: info.stack.clone(),
        }
    }
}

struct Group {
    ids: Vec<u64>,
    longest_wait: Option<Duration>,
    /// The entry of the group's first goroutine, the one printed.
    sample: GoroutineInfo,
}

impl Group {
    /// Take in the goroutines of `other`, which print the same.
    fn absorb(&mut self, other: Group) {
        if other.sample.id < self.sample.id {
            self.sample = other.sample;
        }
        self.ids.extend(other.ids);
        self.longest_wait = self.longest_wait.max(other.longest_wait);
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sample = &self.sample;
        let mut status = sample.wait_reason.unwrap_or(sample.state.as_str()).to_string();
        if let Some(waited) = self.longest_wait {
            status.push_str(", up to ");
            status.push_str(&format_wait(waited));
        }
        let shown: Vec<String> = self.ids.iter().take(8).map(u64::to_string).collect();
        let more = if self.ids.len() > shown.len() { ", ..." } else { "" };
        writeln!(
            f,
            "{} goroutine{} [{status}]: {}{more}",
            self.ids.len(),
            if self.ids.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )?;
        sample.write_body(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::WaitReason;

    #[test]
    fn waits_print_like_go() {
        assert_eq!(format_wait(Duration::from_millis(12)), "12 ms");
        assert_eq!(format_wait(Duration::from_secs(61)), "1 minute");
        assert_eq!(format_wait(Duration::from_secs(185)), "3 minutes");
        assert_eq!(WaitReason::ChanReceive.as_str(), "chan receive");
    }
}
