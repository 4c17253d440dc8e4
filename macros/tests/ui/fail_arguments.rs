#[gort::test]
fn takes_an_argument(n: u32) {
    assert_eq!(n, 1);
}

fn main() {}
