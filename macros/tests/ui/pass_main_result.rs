//! `main` may return a `Result` whose error is not `Send`.
use std::error::Error;

#[gort::main(procs = 2)]
fn main() -> Result<(), Box<dyn Error>> {
    let n: u32 = gort::go(|| "41".parse::<u32>()).join().unwrap()?;
    assert_eq!(n + 1, 42);
    Ok(())
}
