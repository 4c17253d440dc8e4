//! `#[gort::main]` and `#[gort::test]`: the options reach the runtime, the
//! body runs as a goroutine, results and panics reach the test harness,
//! the leak check fails a test that leaks; and misuse is a compile error
//! that says why (`macros/tests/ui`, checked with trybuild by the
//! `gort-macros` crate's own test, so that it builds only gort's
//! dependencies, not this crate's dev-dependencies).

use std::time::Duration;

#[gort::test]
fn the_body_runs_as_a_goroutine() {
    let me = gort::try_current().expect("on a goroutine");
    assert_eq!(me.name(), Some("main"));
    assert_eq!(gort::go(|| 6 * 7).join().unwrap(), 42);
}

#[gort::test(procs = 1)]
fn procs_sets_the_number_of_ps() {
    assert_eq!(gort::runtime::procs(), 1);
}

#[gort::test(procs = 3, chaos = 7, name = "chaotic", stack_size = 131072)]
fn several_options_apply_together() {
    assert_eq!(gort::runtime::procs(), 3);
    let thread = std::thread::current().name().unwrap().to_owned();
    assert!(thread.starts_with("chaotic-m"), "{thread}");
    let (tx, rx) = gort::chan::bounded(0);
    let h = gort::go(move || (1..=100u64).for_each(|i| tx.send(i).unwrap()));
    assert_eq!(rx.iter().sum::<u64>(), 5050);
    h.join().unwrap();
}

#[gort::test]
fn a_result_is_reported() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

/// The error type need not be `Send`: it is reported on the goroutine.
#[gort::test]
fn a_non_send_error_type_is_fine() -> Result<(), Box<dyn std::error::Error>> {
    let n: u8 = "7".parse()?;
    assert_eq!(n, 7);
    Ok(())
}

#[gort::test]
#[should_panic(expected = "a panic in the body")]
fn a_panic_fails_the_test() {
    panic!("a panic in the body");
}

#[gort::test(leak_check = true)]
fn the_leak_check_passes_when_goroutines_end() {
    let (tx, rx) = gort::chan::bounded(0);
    // Detached: it ends after the send, within the check's grace.
    gort::go(move || {
        gort::time::sleep(Duration::from_millis(5));
        tx.send(1).unwrap();
    });
    assert_eq!(rx.recv(), Ok(1));
}

#[gort::test(leak_check = true)]
#[should_panic(expected = "found 1 unexpected goroutine(s)")]
fn the_leak_check_fails_a_test_that_leaks() {
    let (tx, rx) = gort::chan::bounded::<()>(0);
    gort::go(move || rx.recv());
    // Kept alive past the check: the goroutine stays parked.
    std::mem::forget(tx);
}
