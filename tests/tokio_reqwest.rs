//! reqwest — a Tokio-bound HTTP client — from a thousand goroutines at
//! once through `gort::tokio`, against the `http_hello` example (gort's
//! own server, in a child process). Every response's status and body are
//! checked, and the process's threads are counted while the requests run:
//! the goroutines park while Tokio's one worker does the network I/O, so
//! the count stays within procs + Tokio's workers + a few.
#![cfg(feature = "tokio")]

mod common;

use common::examples::Server;
use common::{PeakThreads, assert_threads_within, thread_count};

const GOROUTINES: usize = 1000;

#[test]
fn reqwest_from_a_thousand_goroutines_against_http_hello() {
    let server = Server::start("http_hello");
    let before = thread_count();
    let client = reqwest::Client::new();
    let (procs, peak, answers) = gort::run(move || {
        let peak = PeakThreads::start();
        let requests: Vec<_> = (0..GOROUTINES)
            .map(|i| {
                let client = client.clone();
                let url = server.url(&format!("goroutine/{i}"));
                gort::go(move || {
                    gort::tokio::block_on(async move {
                        let response = client.get(&url).send().await?;
                        let status = response.status();
                        Ok::<_, reqwest::Error>((status, response.text().await?))
                    })
                })
            })
            .collect();
        let answers: Vec<_> = requests
            .into_iter()
            .map(|r| r.join().unwrap().expect("request failed"))
            .collect();
        (gort::runtime::procs(), peak.stop(), answers)
    });
    assert_eq!(answers.len(), GOROUTINES);
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(status.as_u16(), 200, "goroutine {i}");
        assert_eq!(body, "Hello, World!\n", "goroutine {i}");
    }
    assert_threads_within(
        &format!("reqwest: {GOROUTINES} requests answered"),
        before,
        peak,
        procs,
        gort::tokio::WORKER_THREADS,
    );
}
