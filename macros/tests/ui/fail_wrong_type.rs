#[gort::test(procs = "four")]
fn wrong_type() {}

#[gort::test(leak_check = 1)]
fn wrong_type_bool() {}

fn main() {}
