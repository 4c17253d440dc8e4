//! Helpers shared by integration tests that need a process of their own
//! (an exit status, a signal, stderr that must not mix with other tests').

use std::process::{Command, ExitStatus};

/// Set in a child process started by `in_child`.
pub const CHILD_ENV: &str = "GORT_TEST_CHILD";

/// In the parent: run test `test` of this same test binary in a child
/// process with `CHILD_ENV` set, and return its exit status and stderr. In
/// the child: run `body` and return `None`.
pub fn in_child(test: &str, body: impl FnOnce()) -> Option<(ExitStatus, String)> {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return None;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    Some((out.status, String::from_utf8_lossy(&out.stderr).into_owned()))
}
