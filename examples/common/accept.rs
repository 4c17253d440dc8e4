//! The accept loop of the example servers (`echo`, `http_hello`), shared
//! by `#[path]` (a folder without `main.rs` is no example of its own).
//!
//! A failed accept — the process out of descriptors (`EMFILE`), a
//! connection reset while queued — concerns a connection, not the server,
//! so the loop reports it and goes on. But such a failure can persist (the
//! descriptors stay exhausted while the connections that hold them live)
//! and the listener stays readable meanwhile, so retrying at once would
//! spin a P on it; after each failure the loop pauses, for a time that
//! doubles while failures go on, as Go's net/http `Server.Serve` does. The
//! loop ends when the listener is closed: `incoming()` ends there.

use std::io;
use std::time::Duration;

/// The first pause after a failed accept (Go's net/http's).
const PAUSE_MIN: Duration = Duration::from_millis(5);
/// The longest pause: bounds how late the server notices it can accept
/// again (Go's net/http's).
const PAUSE_MAX: Duration = Duration::from_secs(1);

/// The connections of `incoming`, until its listener is closed; each
/// failure is reported on stderr and paced as the module header says.
pub fn accepted<C>(incoming: impl Iterator<Item = io::Result<C>>) -> impl Iterator<Item = C> {
    let mut pause = Duration::ZERO;
    incoming.filter_map(move |conn| match conn {
        Ok(conn) => {
            pause = Duration::ZERO;
            Some(conn)
        }
        Err(e) => {
            pause = (pause * 2).clamp(PAUSE_MIN, PAUSE_MAX);
            eprintln!("accept: {e} (pausing {} ms)", pause.as_millis());
            gort::time::sleep(pause);
            None
        }
    })
}
