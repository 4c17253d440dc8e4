//! What a goroutine dump costs a live program, and that its cheap forms
//! are right: the memory the first dump leaves behind, the grouped dump of
//! many goroutines in a few distinct stacks (exact counts, and its time for
//! 10,000 and 100,000, printed), and SIGQUIT's `GORTDEBUG=sigquit=` levels.
//!
//! Figures are printed (`--nocapture` shows them), never asserted on time;
//! the one memory bound asserted is far above what is measured and far
//! below what symbolizing used to keep (docs/diagnostics.md).

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{HANG_GUARD, in_child, in_child_with_env};
use gort::Runtime;
use gort::chan::{Receiver, Sender, bounded};

/// A line of `/proc/self/status` in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("no {field} line"));
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB")
}

/// The calling thread's CPU time: what a dump costs on a machine other
/// programs share, where wall time also counts their turns.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[inline(never)]
fn park_in_alpha(rx: Receiver<()>) {
    let _ = rx.recv();
    std::hint::black_box(());
}

#[inline(never)]
fn park_in_beta(rx: Receiver<()>) {
    let _ = rx.recv();
    std::hint::black_box(());
}

#[inline(never)]
fn park_in_gamma(rx: Receiver<()>) {
    let _ = rx.recv();
    std::hint::black_box(());
}

/// A function that parks in `recv` until its channel closes.
type Parker = fn(Receiver<()>);

/// The parking functions, by name.
const PARKERS: [(&str, Parker); 3] = [
    ("park_in_alpha", park_in_alpha),
    ("park_in_beta", park_in_beta),
    ("park_in_gamma", park_in_gamma),
];

/// Goroutines parked in the functions of `PARKERS`, `counts[i]` in each,
/// until `release` is dropped.
struct Parked {
    release: Sender<()>,
    handles: Vec<gort::JoinHandle<()>>,
}

impl Parked {
    /// Spawn them and wait until each has at least started.
    fn spawn(rt: &Runtime, counts: [usize; 3]) -> Parked {
        let (release, rx) = bounded::<()>(0);
        let started = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for ((_, park), &n) in PARKERS.iter().zip(&counts) {
            for _ in 0..n {
                let (rx, started, park) = (rx.clone(), started.clone(), *park);
                handles.push(rt.go(move || {
                    started.fetch_add(1, Ordering::Relaxed);
                    park(rx)
                }));
            }
        }
        let total: usize = counts.iter().sum();
        let deadline = Instant::now() + HANG_GUARD;
        while started.load(Ordering::Relaxed) < total {
            assert!(Instant::now() < deadline, "goroutines never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        Parked { release, handles }
    }

    fn finish(self) {
        drop(self.release);
        for h in self.handles {
            h.join().unwrap();
        }
    }
}

/// The groups of a grouped dump: for each, its count and its text.
fn groups(dump: &str) -> Vec<(usize, &str)> {
    dump.split("\n\n")
        .filter_map(|entry| {
            let (count, _) = entry.split_once(" goroutine")?;
            Some((count.trim().parse().ok()?, entry))
        })
        .collect()
}

/// The count of the group parked in `recv` inside `function`, if one.
fn count_in(dump: &str, function: &str) -> Option<usize> {
    let in_function = |(_, text): &(usize, &str)| text.contains("[chan receive") && text.contains(function);
    let found: Vec<_> = groups(dump).into_iter().filter(in_function).collect();
    assert!(found.len() <= 1, "{function} in several groups:\n{dump}");
    found.first().map(|&(n, _)| n)
}

/// A grouped dump of `rt` once all `counts` goroutines of `PARKERS` are
/// parked (they may take a moment after they started), and the wall and
/// thread CPU time the last dump took.
fn grouped_when_parked(rt: &Runtime, counts: [usize; 3]) -> (String, Duration, Duration) {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        let mut out = Vec::new();
        rt.dump_grouped(&mut out).unwrap();
        let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
        let dump = String::from_utf8(out).unwrap();
        let parked = PARKERS.iter().map(|(name, _)| count_in(&dump, name).unwrap_or(0));
        if parked.eq(counts) {
            return (dump, wall, cpu);
        }
        assert!(Instant::now() < deadline, "never all parked:\n{dump}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn grouped_dump_counts_each_distinct_stack_exactly() {
    let rt = Runtime::builder().procs(2).build().unwrap();
    let counts = [600, 300, 100];
    let parked = Parked::spawn(&rt, counts);
    let (dump, _, _) = grouped_when_parked(&rt, counts);
    assert!(dump.starts_with("goroutines: total 1000, 3 distinct\n\n"), "{dump}");
    let groups = groups(&dump);
    assert_eq!(groups.len(), 3, "{dump}");
    // Largest first, each naming its own function and no other, its first
    // ids in order.
    for ((count, text), (name, _)) in groups.iter().zip(PARKERS) {
        assert!(text.contains(name), "{text}");
        assert_eq!(
            PARKERS.iter().filter(|(other, _)| text.contains(other)).count(),
            1,
            "{text}"
        );
        let header = text.lines().next().unwrap();
        assert!(
            header.starts_with(&format!("{count} goroutines [chan receive, up to ")),
            "{header}"
        );
        let ids: Vec<u64> = header
            .rsplit("]: ")
            .next()
            .unwrap()
            .split(", ")
            .filter_map(|id| id.parse().ok())
            .collect();
        assert_eq!(ids.len(), 8, "{header}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert!(text.contains("gort::chan::Receiver<T>::recv"), "{text}");
        assert!(text.contains("created by "), "{text}");
    }
    parked.finish();
}

#[test]
fn grouped_dump_of_10_000_and_100_000_parked_goroutines() {
    let rt = Runtime::builder().procs(2).build().unwrap();
    for n in [10_000, 100_000] {
        let counts = [n / 2, n * 3 / 10, n / 5];
        let parked = Parked::spawn(&rt, counts);
        let (dump, wall, cpu) = grouped_when_parked(&rt, counts);
        assert!(
            dump.starts_with(&format!("goroutines: total {n}, 3 distinct\n")),
            "{dump}"
        );
        let (wall_full, cpu_full) = (Instant::now(), thread_cpu());
        let mut full = Vec::new();
        rt.dump(&mut full).unwrap();
        let (wall_full, cpu_full) = (wall_full.elapsed(), thread_cpu() - cpu_full);
        let full = String::from_utf8(full).unwrap();
        assert_eq!(
            full.matches("[chan receive").count(),
            n,
            "every goroutine has its entry"
        );
        println!(
            "{n} parked goroutines: grouped dump {wall:.1?} ({cpu:.1?} CPU, {} bytes), \
             full dump {wall_full:.1?} ({cpu_full:.1?} CPU, {} bytes)",
            dump.len(),
            full.len()
        );
        parked.finish();
    }
}

/// How much the first dump of a small program leaves resident, symbols
/// included: at most `MAX_KEPT_KIB` (measured: 1.8 MB, of it 0.4 MB pages
/// of the executable; 16.6 MB before symbols were cached per address and
/// the debug info dropped after each dump).
#[test]
fn the_first_dump_leaves_little_resident_memory() {
    const MAX_KEPT_KIB: u64 = 4 * 1024;
    let Some((status, out)) = in_child("the_first_dump_leaves_little_resident_memory", || {
        let rt = Runtime::builder().procs(2).build().unwrap();
        let counts = [4, 3, 3];
        let parked = Parked::spawn(&rt, counts);
        // A settled program: everything the runtime itself allocates lazily
        // is allocated (parked goroutines, sysmon), no dump taken yet.
        std::thread::sleep(Duration::from_millis(100));
        let before = (status_kib("VmRSS"), status_kib("RssAnon"), status_kib("RssFile"));
        let mut first = Vec::new();
        rt.dump(&mut first).unwrap();
        let after = (status_kib("VmRSS"), status_kib("RssAnon"), status_kib("RssFile"));
        let mut second = Vec::new();
        rt.dump_grouped(&mut second).unwrap();
        let again = status_kib("VmRSS");
        let first = String::from_utf8(first).unwrap();
        assert_eq!(first.matches("[chan receive").count(), 10, "{first}");
        eprintln!(
            "RSS KiB before {} (anon {}, file {}), after the first dump {} (anon {}, file {}), after a second {again}",
            before.0, before.1, before.2, after.0, after.1, after.2
        );
        eprintln!("KEPT {}", after.0.saturating_sub(before.0));
        parked.finish();
    }) else {
        return;
    };
    assert!(status.success(), "{out}");
    println!("{}", out.lines().find(|l| l.starts_with("RSS")).unwrap_or("no figures"));
    let kept: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("KEPT "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(kept < MAX_KEPT_KIB, "the first dump kept {kept} KiB resident:\n{out}");
}

/// SIGQUIT with `GORTDEBUG=sigquit=LEVEL,sigquitexit=1` in a child that
/// parks 50 goroutines in `park_in_alpha` and 20 in `park_in_beta`: its
/// stderr (the dump), once it has exited with status 2 after the dump.
fn sigquit_dump(test: &str, level: &str) -> Option<String> {
    let env = format!("sigquit={level},sigquitexit=1");
    let (status, stderr) = in_child_with_env(test, &[("GORTDEBUG", OsStr::new(&env))], || {
        let rt = Runtime::builder().procs(2).build().unwrap();
        let counts = [50, 20, 0];
        let parked = Parked::spawn(&rt, counts);
        grouped_when_parked(&rt, counts);
        // SAFETY: raising a signal at ourselves; gort handles SIGQUIT.
        unsafe { libc::raise(libc::SIGQUIT) };
        // `sigquitexit=1` ends the process once the dump is written.
        std::thread::sleep(HANG_GUARD);
        parked.finish();
    })?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("SIGQUIT: goroutine dump\n"), "{stderr}");
    Some(stderr)
}

#[test]
fn sigquit_grouped_counts_identical_goroutines() {
    let Some(dump) = sigquit_dump("sigquit_grouped_counts_identical_goroutines", "grouped") else {
        return;
    };
    assert!(dump.contains("goroutines: total 70, 2 distinct"), "{dump}");
    assert_eq!(count_in(&dump, "park_in_alpha"), Some(50), "{dump}");
    assert_eq!(count_in(&dump, "park_in_beta"), Some(20), "{dump}");
    assert!(!dump.contains("\ngoroutine "), "no single entries:\n{dump}");
}

#[test]
fn sigquit_all_prints_every_goroutine() {
    let Some(dump) = sigquit_dump("sigquit_all_prints_every_goroutine", "all") else {
        return;
    };
    assert_eq!(dump.matches("\ngoroutine ").count(), 70, "{dump}");
    assert_eq!(dump.matches("park_in_alpha").count(), 50, "{dump}");
    assert!(!dump.contains("goroutines: total"), "{dump}");
}

#[test]
fn sigquit_none_prints_only_the_count() {
    let Some(dump) = sigquit_dump("sigquit_none_prints_only_the_count", "none") else {
        return;
    };
    assert!(
        dump.contains("70 goroutines (traces omitted: GORTDEBUG=sigquit=none)"),
        "{dump}"
    );
    assert!(!dump.contains("chan receive"), "{dump}");
}
