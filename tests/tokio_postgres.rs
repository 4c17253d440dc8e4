//! tokio-postgres against a real PostgreSQL server from a thousand
//! goroutines at once, through `gort::tokio`.
//!
//! The server is the throwaway cluster of `tools/services.sh start` (which
//! `.ci/run` runs), found through `GORT_PG_URL` or that script's default.
//! Without a server the test says so on stderr and passes as skipped,
//! except under `CI=true`, where it fails.
//!
//! The goroutines share `CONNECTIONS` connections (the server takes at
//! most 400): a tokio-postgres `Client` pipelines the queries of all its
//! users on its one connection, so every goroutine has its insert and its
//! select in flight at once, each goroutine parked while Tokio's worker
//! does the I/O. Every row is checked, then the table as a whole; the
//! process's threads are counted meanwhile and stay within procs +
//! Tokio's workers + a few.
#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;

use common::{PeakThreads, assert_threads_within, thread_count};
use tokio_postgres::{Client, NoTls};

const GOROUTINES: i32 = 1000;
const CONNECTIONS: usize = 32;
/// `tools/services.sh env`'s value.
const DEFAULT_URL: &str = "host=127.0.0.1 port=55432 user=postgres dbname=postgres";

#[test]
fn tokio_postgres_from_a_thousand_goroutines() {
    let url = std::env::var("GORT_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let before = thread_count();
    let table = format!("gort_tokio_{}", std::process::id());
    let outcome = gort::run(move || {
        let clients = match connect_all(&url) {
            Ok(clients) => clients,
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                return Err(format!("cannot connect to PostgreSQL at {url:?}: {e}{cause}"));
            }
        };
        let peak = PeakThreads::start();
        let setup = Arc::clone(&clients[0]);
        let create =
            format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, who text NOT NULL)");
        gort::tokio::block_on(async move { setup.batch_execute(&create).await }).expect("creating the table");
        let workers: Vec<_> = (0..GOROUTINES)
            .map(|i| {
                let client = Arc::clone(&clients[i as usize % CONNECTIONS]);
                let (insert, select) = (
                    format!("INSERT INTO {table} (id, who) VALUES ($1, $2)"),
                    format!("SELECT who, id * 2 FROM {table} WHERE id = $1"),
                );
                gort::go(move || {
                    gort::tokio::block_on(async move {
                        let who = format!("goroutine {i}");
                        let inserted = client.execute(&insert, &[&i, &who]).await?;
                        let row = client.query_one(&select, &[&i]).await?;
                        Ok::<_, tokio_postgres::Error>((inserted, row.get::<_, String>(0), row.get::<_, i32>(1)))
                    })
                })
            })
            .collect();
        for (i, worker) in (0..).zip(workers) {
            let (inserted, who, doubled) = worker.join().unwrap().expect("a query failed");
            assert_eq!((inserted, who, doubled), (1, format!("goroutine {i}"), 2 * i));
        }
        let client = Arc::clone(&clients[0]);
        let (count, sum) = gort::tokio::block_on(async move {
            let row = client
                .query_one(&format!("SELECT count(*), sum(id) FROM {table}"), &[])
                .await?;
            client.batch_execute(&format!("DROP TABLE {table}")).await?;
            Ok::<_, tokio_postgres::Error>((row.get::<_, i64>(0), row.get::<_, i64>(1)))
        })
        .expect("counting the rows");
        assert_eq!(
            (count, sum),
            (i64::from(GOROUTINES), i64::from(GOROUTINES * (GOROUTINES - 1) / 2))
        );
        Ok((gort::runtime::procs(), peak.stop()))
    });
    let (procs, peak) = match outcome {
        Ok(figures) => figures,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{why}; .ci/run starts the server with tools/services.sh start")
        }
        Err(why) => {
            eprintln!("\n*** SKIPPED tokio_postgres_from_a_thousand_goroutines: {why}");
            eprintln!("*** start the server with `tools/services.sh start` (CI=true makes this a failure)\n");
            return;
        }
    };
    assert_threads_within(
        &format!("tokio-postgres: {GOROUTINES} goroutines inserted and selected over {CONNECTIONS} connections"),
        before,
        peak,
        procs,
        gort::tokio::WORKER_THREADS,
    );
}

/// `CONNECTIONS` clients, each with its connection's future running on
/// Tokio (it does the I/O for every query of its client).
fn connect_all(url: &str) -> Result<Vec<Arc<Client>>, tokio_postgres::Error> {
    (0..CONNECTIONS)
        .map(|_| {
            let url = url.to_owned();
            gort::tokio::block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        eprintln!("tokio-postgres connection: {e}");
                    }
                });
                Ok(Arc::new(client))
            })
        })
        .collect()
}
