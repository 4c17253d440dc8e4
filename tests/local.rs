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
