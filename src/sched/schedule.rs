//! The scheduling loop: `schedule`, `find_runnable`, `execute`, the global
//! queue, stealing, and `newproc` (Go's proc.go functions of those names).
//!
//! Everything here runs on an M's g0 stack except `newproc`, which runs on
//! whatever goroutine or thread spawns, and `goroutine_entry`/`goexit`,
//! which run on the new goroutine's stack.

use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::g::{G, GPtr, GStatus, Task};
use super::m::{M, MPtr, NoPreempt, Pending, current_m};
use super::p::{P, PPtr, PStatus};
use super::poll::Woke;
use super::preempt;
use super::runq::RunQueue;
use super::timers::{NO_TIMER, nanotime};
use super::{Locked, Sched, lock_sched};
use crate::arch::{Context, switch};
use crate::trace;

/// What `schedule` does after `execute`.
enum After {
    /// Run this goroutine at once (a park whose callback declined).
    Run(GPtr),
    /// Find the next goroutine.
    Schedule,
    /// The goroutine locked to this thread exited: the thread ends too.
    ExitThread,
}

/// Every this many slices a P looks at the global queue before its own, so
/// that two goroutines that keep readying each other on one P cannot starve
/// the global queue. 61 is Go's choice: prime, so it does not resonate with
/// periodic patterns in programs.
const GLOBAL_CHECK_TICKS: u32 = 61;
/// Passes over all Ps a spinning M makes before giving up (Go: 4).
const STEAL_TRIES: usize = 4;
/// How long a thief leaves a running P's `runnext` alone.
const RUNNEXT_GRACE: std::time::Duration = std::time::Duration::from_micros(3);
/// Stacks an idle M releases to the kernel before looking for work again.
const SCAVENGE_BATCH: usize = 256;
/// An idle M scavenges only if no timer is due within this many nanoseconds.
const SCAVENGE_MIN_IDLE_NS: u64 = 10_000_000;

impl Sched {
    /// Put `g` on `p`'s local queue (on `runnext` if `next`); spill half the
    /// queue to the global one if it is full. Holder of `p` only. Returns
    /// whether the queue now holds work beyond `runnext`.
    pub(crate) fn runqput(&self, p: &P, g: GPtr, next: bool) -> bool {
        p.runq.push(g.as_non_null(), next, |batch| {
            let mut l = lock_sched(&self.lock);
            l.runq.extend(batch.map(GPtr::from_non_null));
            self.runqsize.store(l.runq.len(), Ordering::Relaxed);
        })
    }

    /// Take a batch from the global queue: one to run now, and up to half a
    /// local queue's worth (fairly shared among Ps) onto `p`'s local queue.
    /// With `max == 1`, just one. Holder of `p` only.
    pub(super) fn globrunqget(&self, p: &P, max: usize) -> Option<GPtr> {
        if self.runqsize.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut l = lock_sched(&self.lock);
        let len = l.runq.len();
        if len == 0 {
            return None;
        }
        let fair = len / self.gomaxprocs().max(1) + 1;
        let n = len.min(fair).min(max).clamp(1, RunQueue::<G>::CAPACITY / 2);
        let g = l.runq.pop_front();
        for _ in 1..n {
            // A goroutine locked to an M stays in the global queue until it
            // is picked to run: a preempted one may take itself back from
            // there (`sleep_until_handed_p`), never from a local queue.
            if l.runq.front_is_locked() {
                break;
            }
            let Some(g) = l.runq.pop_front() else { break };
            // We are here only with an empty local queue, we take at most
            // half its capacity, and only its holder (us) adds to it.
            p.runq.push(g.as_non_null(), false, |_| {
                unreachable!("local queue overflow in globrunqget")
            });
        }
        self.runqsize.store(l.runq.len(), Ordering::Relaxed);
        g
    }

    /// Try to steal a batch of goroutines from another P into `m`'s (Go's
    /// `stealWork`). Victims are tried from a random start; the last pass
    /// also takes victims' `runnext`.
    pub(super) fn steal_work(&self, m: &M) -> Option<GPtr> {
        let p = m.p();
        let n = self.gomaxprocs();
        for pass in 0..STEAL_TRIES {
            let last = pass == STEAL_TRIES - 1;
            let start = (m.fastrand() % n as u64) as usize;
            for i in 0..n {
                let id = (start + i) % n;
                if id == p.id {
                    continue;
                }
                let Some(victim) = self.p(id) else { continue };
                let mut stolen = victim.runq.steal_into(&p.runq, None);
                if stolen.is_none()
                    && last
                    && let Some(seen) = victim.runq.peek_runnext()
                {
                    if victim.status() == PStatus::Running {
                        // A running P's `runnext` is usually the partner of
                        // the goroutine running there (a channel peer it just
                        // readied), about to run within microseconds.
                        // Stealing it would split the pair across cores; give
                        // the owner that long first, and take only the same
                        // goroutine afterwards (Go waits 3 µs too).
                        runnext_grace();
                    }
                    stolen = victim.runq.steal_into(&p.runq, Some(seen));
                }
                if let Some(g) = stolen {
                    self.steals.fetch_add(1, Ordering::Relaxed);
                    trace::steal(&p, id);
                    return Some(GPtr::from_non_null(g));
                }
            }
        }
        None
    }

    /// Whether any P's local queue has work (used after giving up spinning).
    fn any_local_work(&self) -> bool {
        (0..self.gomaxprocs())
            .filter_map(|id| self.p(id))
            .any(|p| !p.runq.is_empty())
    }

    /// Find a goroutine to run (Go's `findRunnable`). Blocks (parks the M)
    /// until there is one. Returns the G and whether it inherits the current
    /// time slice. Returns None when the runtime shuts down, with the M's P
    /// released. On g0, holding a P.
    fn find_runnable(&self, m: &M) -> Option<(GPtr, bool)> {
        'top: loop {
            if self.is_shut_down() {
                self.release_p_at_shutdown(&mut lock_sched(&self.lock), m);
                return None;
            }
            let p = m.p();
            if p.id >= self.gomaxprocs() && !self.retire_p(m) {
                self.drop_spinning(m);
                if !self.stopm(m) {
                    return None;
                }
                continue 'top;
            }
            let p = m.p();
            if p.preempt.load(Ordering::Relaxed) {
                self.end_inherited_slice(&p);
            }
            // The timers run below wake goroutines from g0, maybe before
            // this M's first traced slice: `goready` records their `ready`
            // events only once the M's tracing byte is set.
            if trace::on() {
                m.set_tracing(true);
            }
            if p.timer0.load(Ordering::Relaxed) != NO_TIMER {
                self.run_timers(&p, nanotime());
            }
            if p.tick().is_multiple_of(GLOBAL_CHECK_TICKS) {
                if let Some(g) = self.globrunqget(&p, 1) {
                    return Some((g, false));
                }
                if let Some(g) = self.poll_network_if_overdue(m) {
                    return Some((g, false));
                }
            }
            if let Some(found) = self.chaos_pick(m, &p) {
                return Some(found);
            }
            if let Some((g, inherit)) = p.runq.pop() {
                return Some((GPtr::from_non_null(g), inherit));
            }
            if let Some(g) = self.globrunqget(&p, usize::MAX) {
                return Some((g, false));
            }
            // Timers of idle Ps are ours to run; what they ready lands on our P.
            let next_timer = self.run_all_timers();
            if let Some((g, inherit)) = p.runq.pop() {
                return Some((GPtr::from_non_null(g), inherit));
            }

            // Spin only while fewer than half of the busy Ps have a spinner:
            // beyond that, spinning burns CPU the running Ms could use.
            let busy = self.gomaxprocs().saturating_sub(self.npidle.load(Ordering::SeqCst));
            if m.spinning.get() || 2 * self.nmspinning.load(Ordering::SeqCst) < busy {
                if !m.spinning.get() {
                    m.spinning.set(true);
                    self.nmspinning.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(g) = self.steal_work(m) {
                    return Some((g, false));
                }
            }

            // Nothing to run for a while: a good time to return cached
            // stacks' memory, a batch at a time, looking for work in between.
            // Not when a timer is due soon: releasing memory costs system
            // calls and TLB shootdowns that would delay it.
            let idle_for_long = next_timer == NO_TIMER || next_timer.saturating_sub(nanotime()) > SCAVENGE_MIN_IDLE_NS;
            if idle_for_long && self.stacks.scavenge(SCAVENGE_BATCH) {
                continue 'top;
            }

            // Nothing anywhere: give the P back and sleep.
            {
                let mut l = lock_sched(&self.lock);
                if !l.runq.is_empty() {
                    drop(l);
                    continue 'top;
                }
                self.release_idle_p(&mut l, m);
            }
            let was_spinning = m.spinning.get();
            self.drop_spinning(m);
            // The spinner/submitter race (sched/mod.rs): now that we no longer
            // count as spinning, look once more for work someone published
            // while we were; if there is some, take an idle P and go back.
            if was_spinning
                && (self.any_local_work() || self.runqsize.load(Ordering::SeqCst) > 0)
                && let Some(p) = self.lock_pidleget()
            {
                self.acquirep(m, p);
                m.spinning.set(true);
                self.nmspinning.fetch_add(1, Ordering::SeqCst);
                continue 'top;
            }
            // A timer started since `run_all_timers` looked, by someone whose
            // `wakep` found us spinning or our P busy: now that neither is
            // so any more, its heap's earliest deadline is visible.
            let next_timer = next_timer.min(self.earliest_timer());
            if self.needs_sleeper(next_timer) {
                match self.sleep_until_work(m, next_timer) {
                    Some(Woke::WithP) => continue 'top,
                    Some(Woke::Run(g)) => return Some((g, false)),
                    Some(Woke::WithoutP) | None => {}
                }
            }
            if !self.stopm(m) {
                return None;
            }
        }
    }

    /// sysmon asked the goroutine on `p` to yield, and it has stopped
    /// running (parked, yielded or ended): honour the request by ending the
    /// time slice it handed down. Its `runnext` partner goes to the back of
    /// the queue, so a pair of goroutines readying each other cannot keep
    /// the P from the rest of its queue (Go breaks such pairs the same way,
    /// by sending the preempted one to the global queue). Holder of `p`.
    fn end_inherited_slice(&self, p: &P) {
        p.preempt.store(false, Ordering::Relaxed);
        p.schedtick.store(p.tick().wrapping_add(1), Ordering::Relaxed);
        if let Some(g) = p.runq.take_runnext() {
            self.runqput(p, GPtr::from_non_null(g), false);
        }
    }

    /// Stop counting `m` as spinning, if it was.
    fn drop_spinning(&self, m: &M) {
        if m.spinning.replace(false) {
            self.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A spinning M found work: stop spinning, and since there may be more
    /// work, make sure some other M is looking (Go's `resetspinning`).
    fn reset_spinning(&self, m: &M) {
        if m.spinning.get() {
            self.drop_spinning(m);
            self.wakep();
        }
    }

    /// The scheduler loop of M `m`, on its g0 stack. Returns when the
    /// runtime shuts down, or when a goroutine locked to this thread exits
    /// (the thread goes with it); then with the P it held, for the caller
    /// to hand on once the thread no longer counts (`mstart`).
    pub(crate) fn schedule(&self, m: &M) -> Option<PPtr> {
        let mut next = None;
        loop {
            if next.is_none()
                && let Some(locked) = m.lockedg.get()
            {
                // A locked M runs only its goroutine: sleep until it is
                // runnable and someone hands us a P for it.
                if !self.stoplockedm(m) {
                    return None;
                }
                next = Some(locked);
            }
            let (g, inherit) = match next.take() {
                Some(g) => (g, true),
                None => self.find_runnable(m)?,
            };
            self.reset_spinning(m);
            if let Some(owner) = g.lockedm.get()
                && owner != MPtr::new(m)
            {
                if !self.startlockedm(m, owner) {
                    return None;
                }
                continue;
            }
            // One test of the tracer per slice: the untraced `execute` has
            // no trace code in it at all (`trace/hooks.rs`).
            let after = if trace::on() {
                self.execute::<true>(m, g, inherit)
            } else {
                self.execute::<false>(m, g, inherit)
            };
            match after {
                After::Run(g) => next = Some(g),
                After::Schedule => {}
                After::ExitThread => return m.p.get().map(|_| self.releasep(m)),
            }
        }
    }

    /// The runtime shut down: `m` lets its P go idle, if it holds one. Idle
    /// Ps hold no goroutines: what never ran waits in the global queue.
    /// `Sched::lock` held.
    fn release_p_at_shutdown(&self, l: &mut Locked, m: &M) {
        if let Some(p) = m.p.get() {
            self.runq_to_global(l, &p);
            self.release_idle_p(l, m);
        }
    }

    /// `g` must run on M `owner`, which sleeps until it does: give it our P
    /// and stop (Go's `startlockedm`). On g0, holding a P. Returns false if
    /// `m` should end its thread (see `stopm`).
    ///
    /// Under `Sched::lock`, which `begin_shutdown` sets the flag under: an
    /// owner that has seen the runtime shut down may have left its sleep and
    /// ended its thread, and its M with it, so after the flag nothing of it
    /// may be touched; before it, the owner cannot go until we are done.
    fn startlockedm(&self, m: &M, owner: MPtr) -> bool {
        {
            let mut l = lock_sched(&self.lock);
            if self.is_shut_down() {
                // `g` stays unrun, as every goroutine still queued then.
                self.release_p_at_shutdown(&mut l, m);
                return false;
            }
            let p = self.releasep(m);
            // `owner` sleeps in `stoplockedm` or `wait_for_turn` and reads
            // `nextp` after its note's Acquire.
            owner.get().nextp.set(Some(p));
            owner.get().park.wakeup();
        }
        self.stopm(m)
    }

    /// The goroutine locked to `m` is not runnable: hand off our P and
    /// sleep until `startlockedm` gives us one (Go's `stoplockedm`).
    /// Returns false if the runtime shut down meanwhile.
    fn stoplockedm(&self, m: &M) -> bool {
        if let Some(p) = m.p.get().map(|_| self.releasep(m)) {
            self.handoffp(p);
        }
        loop {
            if self.is_shut_down() {
                self.drop_handed_p(m);
                return false;
            }
            m.park.sleep();
            m.park.clear();
            if let Some(p) = m.nextp.take() {
                self.acquirep(m, p);
                m.spinning.set(false);
                return true;
            }
        }
    }

    /// Run `g` on `m` until it switches back, then finish what it asked g0
    /// to do (Go's `execute` plus the `mcall` callbacks). `TRACED`: record
    /// the slice, and the park or yield that ends it.
    fn execute<const TRACED: bool>(&self, m: &M, g: GPtr, inherit: bool) -> After {
        let p = m.p();
        if !inherit {
            p.schedtick.store(p.tick().wrapping_add(1), Ordering::Relaxed);
        }
        P::count(&p.ran);
        // SAFETY: we own `g` (it came off a run queue or out of a park), so
        // its stack and context are ours to set up.
        if unsafe { (*g.stack.get()).is_none() } && !self.give_stack(&p, g) {
            self.goexit0(&p, g);
            return After::Schedule;
        }
        if let Some(at) = g.take_runnable_stamp() {
            p.histograms.sched_latency.record_owned(nanotime().saturating_sub(at));
        }
        p.running.store(g.id(), Ordering::Relaxed);
        g.set_status(GStatus::Running);
        m.curg.set(Some(g));
        if TRACED {
            trace::slice_begin(m, &p, g);
        }
        // SAFETY: g0's context slot is ours; g's context was saved by
        // `switch` or made by `for_entry`, its stack is alive, and no other
        // M resumes it (we own it).
        unsafe { switch(m.g0.get(), g.ctx.get()) };
        m.curg.set(None);
        // The section `mcall` opened; a preemption that arrived during it is
        // moot, the goroutine has stopped running.
        m.locks.set(m.locks.get() - 1);
        m.preempt_pending.set(false);
        m.signal_request.store(super::preempt::REQUEST_NONE, Ordering::Relaxed);
        // The goroutine may have come back with another P (it waited for
        // one after a preemption or a system call): read it again. At
        // shutdown it may have come back with none (`sleep_until_handed_p`).
        let p = m.p.get();
        if let Some(p) = p {
            p.running.store(0, Ordering::Relaxed);
        }
        let pending = m.pending.replace(Pending::None);
        if TRACED && let Some(p) = p.as_deref() {
            trace::slice_end(p, g, &pending);
        }
        match pending {
            Pending::Yield => {
                g.stamp_runnable();
                g.set_status(GStatus::Runnable);
                self.globrunqput(g);
                After::Schedule
            }
            Pending::Park { unlock, data } => {
                g.set_status(GStatus::Waiting);
                // SAFETY: `gopark` stored a matching fn/data pair whose data
                // lives on g's stack, which is suspended and alive.
                if unsafe { unlock(data) } {
                    After::Schedule
                } else if p.is_none() {
                    // Woken before it parked, but back without a P at
                    // shutdown: it cannot run here any more than a yield
                    // could, so it is left runnable in the global queue.
                    g.set_status(GStatus::Runnable);
                    self.globrunqput(g);
                    After::Schedule
                } else {
                    g.set_status(GStatus::Runnable);
                    After::Run(g)
                }
            }
            Pending::Exit => {
                let locked = m.lockedg.get() == Some(g);
                match p {
                    Some(p) => self.goexit0(&p, g),
                    None => self.goexit_without_p(g),
                }
                if locked {
                    m.lockedg.set(None);
                    m.locked_count.set(0);
                    After::ExitThread
                } else {
                    After::Schedule
                }
            }
            Pending::None => unreachable!("a goroutine switched to g0 without saying why"),
        }
    }

    /// Attach a stack to a G that runs for the first time and was spawned
    /// without one. On failure the goroutine cannot run: its closure is
    /// dropped (its JoinHandle reports the error) and false is returned.
    fn give_stack(&self, p: &P, g: GPtr) -> bool {
        // SAFETY: we hold `p`, so its stack cache is ours.
        let local = unsafe { &mut *p.stacks.get() };
        match self.stacks.get(Some(local), g.stack_size.get() as usize) {
            Ok(stack) => {
                // SAFETY: we own g and it is not running; the stack is ours.
                unsafe { set_entry(g, stack) };
                true
            }
            Err(e) => {
                // On g0: not through std's stderr lock (`os::write_stderr`).
                crate::os::write_stderr(&format!(
                    "gort: goroutine {} (spawned at {}) cannot run: stack allocation failed: {e}\n",
                    g.id(),
                    g.spawned_at()
                ));
                // SAFETY: we own g; dropping the task that never ran
                // abandons it, which fails its JoinHandle.
                drop(unsafe { (*g.entry.get()).take() });
                false
            }
        }
    }

    /// A goroutine ended P-less, at shutdown: there is no cache to recycle
    /// it into, so it is only counted; its G and stack go with the runtime.
    fn goexit_without_p(&self, g: GPtr) {
        g.set_status(GStatus::Dead);
        self.exited_outside.fetch_add(1, Ordering::Relaxed);
    }

    /// Recycle a finished G (Go's `goexit0`).
    fn goexit0(&self, p: &P, g: GPtr) {
        g.set_status(GStatus::Dead);
        g.lockedm.set(None);
        self.set_g_name(g, None);
        // SAFETY: we own the dead G and hold `p`; g's stack has no live
        // frames any more (we are on g0).
        unsafe {
            if let Some(stack) = (*g.stack.get()).take() {
                self.stacks.put(&mut *p.stacks.get(), stack);
            }
        }
        P::count(&p.exited);
        self.gfput(p, g);
    }
}

/// Give `g` its stack, set to start in `goroutine_entry`.
///
/// # Safety
/// The caller owns `g`, which has never run, and `stack`, which holds no
/// live frames (fresh or cached).
unsafe fn set_entry(g: GPtr, stack: crate::stack::Stack) {
    // SAFETY: by the contract; `goroutine_entry` never returns.
    unsafe {
        *g.ctx.get() = Context::for_entry(stack.top(), goroutine_entry, g.as_non_null().as_ptr() as usize);
        *g.stack.get() = Some(stack);
    }
}

/// First Rust frame of every goroutine, on its own stack.
extern "sysv64" fn goroutine_entry(g: usize) -> ! {
    let g = GPtr::from_non_null(std::ptr::NonNull::new(g as *mut _).expect("null G"));
    // SAFETY: the running G owns its fields; `entry` was set by `newproc`.
    let task = unsafe { (*g.entry.get()).take() }.expect("goroutine without a body");
    // The body catches its own panics (see `goroutine.rs`), so nothing
    // unwinds into this frame.
    task.run();
    mcall(Pending::Exit);
    unreachable!("a dead goroutine was resumed");
}

/// Switch from the running goroutine to its M's g0, which then does
/// `pending` (Go's `mcall`). Returns when the goroutine is resumed — maybe
/// on another M, except while it unwinds a panic: std counts panics per
/// thread, and the goroutine's `catch_unwind` must find its count where the
/// panic began, so an unwinding goroutine is locked to its thread (as by
/// `lock_os_thread`) until it is back. On a goroutine only.
pub(crate) fn mcall(pending: Pending) {
    let pin = !matches!(pending, Pending::Exit) && std::thread::panicking();
    if pin {
        lock_os_thread();
    }
    switch_to_g0(pending);
    if pin {
        unlock_os_thread();
    }
}

/// `mcall`'s switch itself.
fn switch_to_g0(pending: Pending) {
    let m = current_m().expect("mcall outside a goroutine");
    let g = m.curg.get().expect("mcall on g0");
    // From here to g0 the M must keep its P: no signal may move it into the
    // system-call state or preempt it. g0 (`execute`) ends the section on
    // this same M, whatever thread the goroutine later resumes on.
    m.locks.set(m.locks.get() + 1);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if m.p.get().is_none() {
        // Back from a system call whose P was retaken: g0 needs one.
        m.sched.reacquire_p(m);
    }
    m.pending.set(pending);
    // SAFETY: g is the running G, so saving into its context is ours to do;
    // g0's context was saved by `execute` on this M and is alive.
    unsafe { switch(g.ctx.get(), m.g0.get()) };
}

/// Wait about `RUNNEXT_GRACE` before stealing a running P's `runnext`.
fn runnext_grace() {
    let start = Instant::now();
    // The clock is read once per 32 pauses: a clock read costs more than a
    // pause, and the grace needs no precision.
    while start.elapsed() < RUNNEXT_GRACE {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
}

/// Create a goroutine running `f` (Go's `newproc`): put it on the current
/// P's `runnext` (it runs soon, on a warm cache), or on the global queue
/// when called from outside the runtime, and wake an idle P for it.
///
/// Its stack. Normally it gets one when it first runs (`give_stack`), so a
/// burst of spawns waiting to run holds no stacks, and the stack an ending
/// goroutine leaves in its P's cache serves the next one still warm. When
/// stacks are scarce (`StackPool::scarce`: under `RLIMIT_AS`, less than a
/// region's worth left) it takes one here instead, as Go's `newproc1`
/// always does, so that running out is an error the spawner sees: then
/// nothing is created and `task` is dropped on the caller's stack.
pub(crate) fn newproc(
    sched: &Sched,
    task: Task,
    name: Option<Arc<str>>,
    stack_size: usize,
    spawned_at: &'static Location<'static>,
) -> io::Result<u64> {
    let mut here = current_m();
    if here.is_none() {
        crate::debug::threads::note_user();
    }
    // Spawning is a cooperative preemption point; after a yield we may be
    // on another thread.
    if here.is_some_and(preempt::safe_point_on) {
        here = current_m();
    }
    // The P's free list and run queue are touched below.
    let _section = NoPreempt::on(here);
    let m = here.filter(|m| std::ptr::eq(&*m.sched, sched));
    let p: Option<PPtr> = m.and_then(|m| m.p.get());
    let stack = if sched.stacks.scarce() {
        // SAFETY: we hold `p` (our M's), so its stack cache is ours.
        let local = p.as_deref().map(|p| unsafe { &mut *p.stacks.get() });
        // On failure the section ends before `task` (a parameter) drops,
        // so the closure's drop may be preempted like any user code.
        Some(sched.stacks.get(local, stack_size)?)
    } else {
        None
    };
    let g = sched.gfget(p.as_deref(), stack_size);
    let id = sched.goidgen.fetch_add(1, Ordering::Relaxed) + 1;
    g.set_identity(
        id,
        m.and_then(|m| m.curg.get()).map_or(0, |parent| parent.id()),
        spawned_at,
    );
    sched.set_g_name(g, name);
    // SAFETY: a G fresh from the free list is owned by us, and so is the
    // stack.
    unsafe {
        *g.entry.get() = Some(task);
        if let Some(stack) = stack {
            set_entry(g, stack);
        }
    }
    match p {
        Some(p) => P::count(&p.created),
        None => {
            sched.created_outside.fetch_add(1, Ordering::Relaxed);
        }
    }
    g.stamp_runnable();
    g.set_status(GStatus::Runnable);
    trace::spawn(sched, m, g);
    match p {
        Some(p) => {
            sched.runqput(&p, g, true);
        }
        None => sched.globrunqput(g),
    }
    sched.wakep();
    Ok(id)
}

/// `runtime::lock_os_thread`: wire the running goroutine to its thread
/// (Go's `LockOSThread`; calls nest). On a plain thread, nothing to do.
pub(crate) fn lock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg.get() else { return };
    m.locked_count.set(m.locked_count.get() + 1);
    m.lockedg.set(Some(g));
    g.lockedm.set(Some(MPtr::new(m)));
}

/// `runtime::unlock_os_thread`: undo one `lock_os_thread`; the last one
/// lets the goroutine migrate again.
///
/// Except after shutdown: a goroutine may then run on P-less while a stale
/// run-queue entry of it remains, and its `lockedm` is what sends an M that
/// picks the entry through `startlockedm` instead of into its context
/// (`sleep_until_handed_p`). Nothing is scheduled any more, so the lock it
/// keeps changes nothing else.
pub(crate) fn unlock_os_thread() {
    let Some(m) = current_m() else { return };
    let Some(g) = m.curg.get() else { return };
    match m.locked_count.get() {
        0 => {}
        1 => {
            m.locked_count.set(0);
            m.lockedg.set(None);
            if !m.sched.is_shut_down() {
                g.lockedm.set(None);
            }
        }
        n => m.locked_count.set(n - 1),
    }
}
