//! Without options, `main` runs on the default runtime, the one `gort::go`
//! from a plain thread uses too.
#[gort::main]
fn main() {
    let mine = gort::current().id();
    let from_thread = std::thread::spawn(|| gort::go(|| gort::runtime::num_goroutine()).join().unwrap())
        .join()
        .unwrap();
    // The main goroutine and the spawned one, on the same runtime.
    assert!(from_thread >= 2, "{from_thread}");
    assert!(mine >= 1);
}
