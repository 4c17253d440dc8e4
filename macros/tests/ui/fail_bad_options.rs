#[gort::test(procs = 0)]
fn zero_procs() {}

#[gort::test(procs = 1, procs = 2)]
fn twice() {}

#[gort::test(procs)]
fn no_value() {}

#[gort::test]
fn generic<T: Default>() {}

fn main() {}
