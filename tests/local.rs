//! `gort::local!`: values isolated per goroutine, kept across migrations,
//! dropped when the goroutine ends.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

gort::local! {
    static COUNTER: Cell<u64> = Cell::new(0);
    static LOG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

#[test]
fn values_are_isolated_per_goroutine() {
    let hs: Vec<_> = (0..200u64)
        .map(|i| {
            gort::go(move || {
                for _ in 0..=i {
                    COUNTER.with(|c| c.set(c.get() + 1));
                    gort::yield_now(); // may resume on another thread
                }
                COUNTER.with(Cell::get)
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u64 + 1);
    }
}

#[test]
fn plain_threads_have_their_own_values() {
    COUNTER.with(|c| c.set(41));
    gort::go(|| COUNTER.with(|c| assert_eq!(c.get(), 0))).join().unwrap();
    COUNTER.with(|c| assert_eq!(c.get(), 41));
}

#[test]
fn nested_keys_and_references_survive_other_initialisations() {
    let v = gort::go(|| {
        LOG.with(|log| {
            log.borrow_mut().push(1);
            // Initialising another key inside `with` must not move this value.
            COUNTER.with(|c| c.set(5));
            log.borrow_mut().push(COUNTER.with(Cell::get));
            log.borrow().clone()
        })
    });
    assert_eq!(v.join().unwrap(), [1, 5]);
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

struct Noisy;
impl Drop for Noisy {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

gort::local! {
    static NOISY: Noisy = Noisy;
}

#[test]
fn values_are_dropped_when_the_goroutine_ends_even_on_panic() {
    let before = DROPS.load(Ordering::SeqCst);
    gort::go(|| NOISY.with(|_| ())).join().unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 1, "dropped before join returned");
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = gort::go(|| NOISY.with(|_| panic!("after touching the local"))).join();
    std::panic::set_hook(old);
    assert!(r.is_err());
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 2);
    // A goroutine that never touched the key creates no value.
    gort::go(|| ()).join().unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 2);
}

gort::local! {
    static MARK: Cell<u32> = Cell::new(0);
}

/// Panics when dropped.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("goroutine-local destructor panics");
    }
}

/// Touches another key when dropped.
struct Marker;
impl Drop for Marker {
    fn drop(&mut self) {
        MARK.with(|m| m.set(7));
    }
}

gort::local! {
    static BOMB: Bomb = Bomb;
    static MARKER: Marker = Marker;
}

/// Re-creates itself (and marks) every time it is dropped.
struct Phoenix;
impl Drop for Phoenix {
    fn drop(&mut self) {
        MARK.with(|m| m.set(9));
        PHOENIX.with(|_| ());
    }
}

gort::local! {
    static PHOENIX: Phoenix = Phoenix;
}

/// Run `first` on a goroutine of a one-P runtime, then goroutines on the
/// freed G; return what each of those saw in `MARK` (0 if fresh).
fn marks_after(first: fn()) -> Vec<u32> {
    let rt = gort::Runtime::builder().procs(1).build().unwrap();
    let seen = rt.block_on(move || {
        let _ = gort::go(first).join();
        (0..20)
            .map(|_| gort::go(|| MARK.with(Cell::get)).join().unwrap())
            .collect::<Vec<_>>()
    });
    drop(rt);
    seen
}

#[test]
fn values_made_by_a_panicking_teardown_do_not_reach_the_next_goroutine() {
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let seen = marks_after(|| {
        BOMB.with(|_| ());
        MARKER.with(|_| ());
    });
    std::panic::set_hook(old);
    assert!(seen.iter().all(|&m| m == 0), "a later goroutine saw {seen:?}");
}

#[test]
fn values_that_keep_coming_back_do_not_reach_the_next_goroutine() {
    let seen = marks_after(|| PHOENIX.with(|_| ()));
    assert!(seen.iter().all(|&m| m == 0), "a later goroutine saw {seen:?}");
}
