//! The repository's examples as programs a test runs: built once per test
//! binary with the cargo running it, into the target directory and profile
//! of that binary (both read from its own path), then started with
//! `--port 0`, the port read from the `listening on ...` line they print.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running example server, killed when dropped, so also when a test
/// panics.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Example `name` on a free port, which it prints as `listening on
    /// [http://]127.0.0.1:N[/]`.
    pub fn start(name: &str) -> Server {
        Server::start_with_env(name, &[])
    }

    /// `start`, with the switches `env` set (and no other).
    pub fn start_with_env(name: &str, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(examples_dir().join(name))
            .args(["--port", "0"])
            .env_remove("GORTTRACE")
            .env_remove("GORTDEBUG")
            .env_remove("GORT_PROCS")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        // From here on, a panic kills the child.
        let mut server = Server { child, port: 0 };
        let mut line = String::new();
        // Returns at the first line, or at EOF if the server exits first.
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading {name}'s stdout: {e}"));
        server.port = line
            .trim_end()
            .strip_prefix("listening on ")
            .map(|addr| addr.strip_prefix("http://").unwrap_or(addr))
            .map(|addr| addr.strip_suffix('/').unwrap_or(addr))
            .and_then(|addr| addr.strip_prefix("127.0.0.1:"))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{name} printed {line:?}, not `listening on [http://]127.0.0.1:N[/]`"));
        server
    }

    /// Send the server `signal` and wait for it to exit: its status.
    pub fn signal_and_wait(mut self, signal: i32) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the child is
        // ours and not yet reaped, so the pid is still its own.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
        self.child.wait().expect("waiting for the server")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Errors mean the server already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of the examples, built once for all tests.
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test is `<target dir>/<profile dir>/deps/examples-HASH`.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("profile directory under the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("odd profile directory {}", profile_dir.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--example",
                "http_hello",
                "--example",
                "echo",
                "--example",
                "tour",
            ])
            .args(["--profile", profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of the examples failed: {status}");
        profile_dir.join("examples")
    })
}
