#[gort::main(leak_check = true)]
fn main() {}
