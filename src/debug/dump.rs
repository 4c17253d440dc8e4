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
//! kernel (`os::read_own_memory`) before it is unwound, so a goroutine that
//! resumes meanwhile can only make its own entry stale, never make the
//! dump fault or race: after the copy the dump re-reads the goroutine's
//! status and park stamp, and drops a stack that changed under it.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::panic::Location;
use std::time::Duration;

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

impl Sched {
    /// A snapshot of every live goroutine of this runtime, by id.
    pub(crate) fn goroutines(&self, with_stacks: bool) -> Vec<GoroutineInfo> {
        let me = current_m()
            .filter(|m| std::ptr::eq(&*m.sched, self))
            .and_then(|m| m.curg.get());
        let now = nanotime();
        let mut out: Vec<GoroutineInfo> = self
            .all_gs_named()
            .into_iter()
            .filter_map(|(g, name)| {
                let state = match g.status() {
                    GStatus::Idle | GStatus::Dead => return None,
                    GStatus::Runnable => GoroutineState::Runnable,
                    GStatus::Running => GoroutineState::Running,
                    GStatus::Syscall => GoroutineState::Syscall,
                    GStatus::Waiting => GoroutineState::Waiting,
                    GStatus::Preempted => GoroutineState::Preempted,
                };
                let waiting = state == GoroutineState::Waiting;
                let (parked_at, since) = g.parked();
                let mut info = GoroutineInfo {
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
                if with_stacks {
                    let is_me = me == Some(g);
                    match stack_of(g, is_me, state) {
                        Ok(stack) => info.stack = stack,
                        Err(note) => info.stack_note = Some(note),
                    }
                }
                Some(info)
            })
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// Write every goroutine's entry, Go's format, blank-line separated.
    pub(crate) fn dump(&self, w: &mut dyn Write) -> io::Result<()> {
        for info in self.goroutines(true) {
            writeln!(w, "{info}")?;
        }
        Ok(())
    }

    /// Write goroutines grouped by identical state, wait reason, stack and
    /// spawn site, largest group first (for huge programs: a million
    /// goroutines parked in the same place print as one entry).
    pub(crate) fn dump_grouped(&self, w: &mut dyn Write) -> io::Result<()> {
        let all = self.goroutines(true);
        let total = all.len();
        let mut groups: HashMap<GroupKey, Group> = HashMap::new();
        for info in all {
            let key = GroupKey {
                state: info.state,
                wait_reason: info.wait_reason,
                parked_at: info.parked_at.map(|l| (l.file(), l.line(), l.column())),
                spawned_at: (info.spawned_at.file(), info.spawned_at.line(), info.spawned_at.column()),
                stack: info.stack.clone(),
            };
            let group = groups.entry(key).or_insert_with(|| Group {
                ids: Vec::new(),
                longest_wait: None,
                sample: info.clone(),
            });
            group.ids.push(info.id);
            group.longest_wait = group.longest_wait.max(info.waiting_for);
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        groups.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then(a.ids[0].cmp(&b.ids[0])));
        writeln!(w, "goroutines: total {total}, {} distinct\n", groups.len())?;
        for group in groups {
            writeln!(w, "{group}")?;
        }
        Ok(())
    }
}

#[derive(PartialEq, Eq, Hash)]
struct GroupKey {
    state: GoroutineState,
    wait_reason: Option<&'static str>,
    parked_at: Option<(&'static str, u32, u32)>,
    spawned_at: (&'static str, u32, u32),
    stack: Vec<Frame>,
}

struct Group {
    ids: Vec<u64>,
    longest_wait: Option<Duration>,
    sample: GoroutineInfo,
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

/// The stack of goroutine `g`, seen in `state`: the caller's own, or one
/// unwound from its saved registers.
fn stack_of(g: GPtr, is_me: bool, state: GoroutineState) -> Result<Vec<Frame>, &'static str> {
    match state {
        _ if is_me => Ok(super::stacks::current()),
        GoroutineState::Running | GoroutineState::Syscall => Err("running on another thread; stack unavailable"),
        GoroutineState::Runnable | GoroutineState::Waiting | GoroutineState::Preempted => super::stacks::suspended(g),
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
