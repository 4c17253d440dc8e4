//! The options build the main goroutine's runtime; `main` returning ends
//! the process even with a goroutine still computing.
#[gort::main(procs = 4, name = "app", detect_deadlocks = false, unjoined_panic_exits = true)]
fn main() {
    assert_eq!(gort::runtime::procs(), 4);
    assert!(std::thread::current().name().unwrap().starts_with("app-m"));
    let _forever = gort::go(|| {
        loop {
            std::hint::spin_loop();
        }
    });
}
