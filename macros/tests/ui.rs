//! The macros' behaviour at compile time: good programs build and run,
//! misuse fails with an error that says why (the `.stderr` files).
//!
//! Here rather than in gort's own tests so that trybuild builds only what
//! gort needs, not gort's dev-dependencies (Tokio, reqwest, allocators...).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
