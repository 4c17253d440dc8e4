//! Live diagnostics over HTTP: what Go programs get from `import _
//! "net/http/pprof"`, for a running gort program, readable with the tools
//! people already have.
//!
//! | path | what |
//! |---|---|
//! | `/debug/pprof/` | an index of the endpoints |
//! | `/debug/pprof/goroutine?debug=1` | the grouped goroutine dump ([`dump_grouped`](crate::runtime::dump_grouped)) |
//! | `/debug/pprof/goroutine?debug=2` | the full dump ([`dump`](crate::runtime::dump)) |
//! | `/debug/pprof/goroutine` | every goroutine's stack as a pprof profile (`go tool pprof`) |
//! | `/debug/pprof/profile?seconds=N` | a CPU profile of the whole process for N seconds (default 30), pprof format |
//! | `/debug/pprof/trace?seconds=N` | an execution trace (Chrome JSON, [`trace`](crate::trace)) of N seconds (default 1) |
//! | `/metrics` | the runtime's metrics, Prometheus text format |
//! | `/debug/gort/` | a self-contained HTML dashboard |
//!
//! Start it with [`serve`] (or [`serve_on`]), or, without changing the
//! program, with `GORTDEBUG=http=127.0.0.1:6060` (a bare port, `http=6060`,
//! means loopback; port 0 picks a free one; the address is printed on
//! stderr), which starts it when the process builds its first runtime.
//!
//! # Safe by default
//!
//! These endpoints reveal the program's internals: every goroutine's stack
//! (function names, source paths), its metrics, its timing. So the server
//! binds only loopback addresses unless [`Access::AllowRemote`] says
//! otherwise (`GORTDEBUG` never does), and it must not be the reason the
//! program it describes suffers: requests are bounded in size and time, a
//! slow client holds one parked goroutine and nothing else, connections are
//! capped (`server.rs`); profiles are bounded in length (`seconds` at most
//! `MAX_SECONDS`) and one CPU profile or trace runs at a time.
//!
//! The server runs on goroutines of the runtime it was started from (the
//! caller's, or the default one), named `debug/http` and `debug/http conn`
//! in dumps; they wait on sockets, and the deadlock check ignores them
//! (`server.rs`), so the server neither hides a deadlock of the program nor
//! causes one. Dumps and profiles cover every runtime of the process.

mod dashboard;
mod pprof;
mod prometheus;
mod server;

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::net::TcpListener;
use crate::sched::Sched;
pub(crate) use server::is_server_goroutine;
use server::{Request, Response};

/// The longest profile or trace a request may ask for, in seconds.
pub(crate) const MAX_SECONDS: u64 = 60;

/// Which addresses [`serve_on`] may bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Loopback addresses only (`127.0.0.0/8`, `::1`): reachable from this
    /// machine alone. What [`serve`] uses.
    LoopbackOnly,
    /// Any address, `0.0.0.0` included. Whoever reaches the port can read
    /// every goroutine's stack and profile the program: put it behind a
    /// firewall or an authenticating proxy.
    AllowRemote,
}

/// A running debug server; [`stop`](DebugServer::stop) it, or drop it.
#[derive(Debug)]
pub struct DebugServer {
    addr: SocketAddr,
    listener: TcpListener,
    acceptor: Option<crate::JoinHandle<()>>,
}

impl DebugServer {
    /// The address it listens on (with the port the system picked, for
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections and wait for the accept loop to end.
    /// Requests already being answered (a CPU profile, say) finish on their
    /// own connection goroutines.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.listener.close();
        if let Some(acceptor) = self.acceptor.take() {
            // The loop only ends, it does not panic; nothing to report.
            let _ = acceptor.join();
        }
    }
}

impl Drop for DebugServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serve the diagnostics endpoints (module header) on `addr`, a loopback
/// address, from goroutines of the current runtime (the caller's, or the
/// default one). Equivalent to `serve_on(addr, Access::LoopbackOnly)`.
///
/// Fails if `addr` resolves to any address that is not loopback
/// (`InvalidInput`, naming it), or if it cannot be bound.
///
/// ```
/// use std::io::{Read, Write};
/// let server = gort::debug::serve("127.0.0.1:0")?;
/// let mut conn = std::net::TcpStream::connect(server.local_addr())?;
/// conn.write_all(b"GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\nHost: x\r\n\r\n")?;
/// let mut answer = String::new();
/// conn.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
/// assert!(answer.contains("\"debug/http conn\""), "the server's goroutines are named: {answer}");
/// server.stop();
/// assert!(gort::debug::serve("0.0.0.0:0").is_err(), "not loopback");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve(addr: impl ToSocketAddrs) -> io::Result<DebugServer> {
    serve_on(addr, Access::LoopbackOnly)
}

/// [`serve`], binding any address `access` allows.
///
/// ```no_run
/// // Reachable from other machines: these endpoints reveal the program's internals.
/// let server = gort::debug::serve_on("0.0.0.0:6060", gort::debug::Access::AllowRemote)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_on(addr: impl ToSocketAddrs, access: Access) -> io::Result<DebugServer> {
    crate::runtime::with_current(|sched| start(sched, addr, access))
}

fn start(sched: &Sched, addr: impl ToSocketAddrs, access: Access) -> io::Result<DebugServer> {
    let addrs = allowed(addr, access)?;
    let listener = TcpListener::bind(&addrs[..])?;
    let addr = listener.local_addr()?;
    let serving = listener.clone();
    let acceptor = server::spawn_acceptor(sched, move || Some(serving), route)?;
    Ok(DebugServer {
        addr,
        listener,
        acceptor: Some(acceptor),
    })
}

/// The addresses `addr` resolves to, if `access` allows all of them.
fn allowed(addr: impl ToSocketAddrs, access: Access) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if access == Access::LoopbackOnly
        && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "gort::debug::serve: {remote} is not a loopback address; the debug endpoints reveal the \
                 program's internals (stacks, profiles, metrics), so binding another address takes \
                 serve_on(addr, Access::AllowRemote)"
            ),
        ));
    }
    Ok(addrs)
}

/// Start the server `GORTDEBUG=http=ADDR` asks for, on `sched`, the first
/// runtime the process builds; once per process, for the rest of it.
/// Problems are reported on stderr: the program itself did not ask for the
/// server, and runs on. The listener is bound on the server's goroutine:
/// the runtime is still being built, and a socket registers with the
/// poller of the runtime it is made on.
pub(crate) fn start_from_env(sched: &Sched) {
    static STARTED: Once = Once::new();
    let Some(addr) = sched.debug_flags().http else {
        return;
    };
    STARTED.call_once(|| {
        let listen = move || {
            let bound = allowed(addr, Access::LoopbackOnly).and_then(|addrs| TcpListener::bind(&addrs[..]));
            match bound.and_then(|l| Ok((l.local_addr()?, l))) {
                Ok((at, listener)) => {
                    eprintln!("gort: GORTDEBUG=http: diagnostics on http://{at}/debug/pprof/");
                    Some(listener)
                }
                Err(e) => {
                    eprintln!("gort: GORTDEBUG=http={addr}: {e}; no debug server");
                    None
                }
            }
        };
        if let Err(e) = server::spawn_acceptor(sched, listen, route) {
            eprintln!("gort: GORTDEBUG=http={addr}: {e}; no debug server");
        }
    });
}

/// One endpoint: its path, what it serves (for the index) and its handler.
struct Route {
    path: &'static str,
    about: &'static str,
    handler: server::Handler,
}

/// The route table, in the index's order.
const ROUTES: &[Route] = &[
    Route {
        path: "/debug/pprof/",
        about: "this index",
        handler: index,
    },
    Route {
        path: "/debug/pprof/goroutine",
        about: "stacks of all goroutines: pprof profile; ?debug=1 grouped text, ?debug=2 full dump",
        handler: goroutine,
    },
    Route {
        path: "/debug/pprof/profile",
        about: "CPU profile of the process for ?seconds=N (default 30): go tool pprof",
        handler: pprof::cpu_profile,
    },
    Route {
        path: "/debug/pprof/trace",
        about: "execution trace of ?seconds=N (default 1), Chrome JSON for Perfetto UI",
        handler: trace,
    },
    Route {
        path: "/metrics",
        about: "runtime metrics, Prometheus text format",
        handler: metrics,
    },
    Route {
        path: "/debug/gort/",
        about: "dashboard",
        handler: dashboard_page,
    },
    Route {
        path: "/debug/gort/state.json",
        about: "the dashboard's data",
        handler: dashboard_state,
    },
];

/// Answer `req` from the route table.
fn route(req: &Request) -> Response {
    match ROUTES.iter().find(|r| r.path == req.path) {
        Some(r) => (r.handler)(req),
        None if req.path == "/debug/pprof" || req.path == "/" => index(req),
        None => Response::error(404, format!("no such endpoint {:?}; see /debug/pprof/", req.path)),
    }
}

fn index(_: &Request) -> Response {
    let mut page = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>gort diagnostics</title></head><body>\
         <h1>gort diagnostics</h1><table>",
    );
    for r in ROUTES {
        let _ = write!(
            page,
            "<tr><td><a href=\"{0}\">{0}</a></td><td>{1}</td></tr>",
            r.path, r.about
        );
    }
    page.push_str("</table></body></html>\n");
    Response::ok("text/html; charset=utf-8", page)
}

fn goroutine(req: &Request) -> Response {
    let grouped = match req.param("debug") {
        None | Some("0") => return pprof::goroutine_profile(),
        Some("1") => true,
        Some("2") => false,
        Some(other) => return Response::error(400, format!("debug={other:?}: accepted debug=1 or debug=2")),
    };
    let mut out = Vec::new();
    let runtimes = super::live_runtimes();
    let many = runtimes.len() > 1;
    for sched in runtimes {
        if many {
            let _ = writeln!(out, "runtime \"{}\":\n", sched.name);
        }
        let written = if grouped {
            sched.dump_grouped(&mut out)
        } else {
            sched.dump(&mut out)
        };
        if let Err(e) = written {
            return Response::error(500, format!("dump failed: {e}"));
        }
    }
    Response::ok("text/plain; charset=utf-8", out)
}

/// The `seconds` parameter: `default` when absent, else a whole number
/// from 1 to `MAX_SECONDS`; the error response says what is accepted.
fn seconds(req: &Request, default: u64) -> Result<Duration, Response> {
    let Some(text) = req.param("seconds") else {
        return Ok(Duration::from_secs(default));
    };
    match text.parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Response::error(
            400,
            format!("seconds={text:?}: accepted a whole number of seconds from 1 to {MAX_SECONDS}"),
        )),
    }
}

/// An execution trace of the next `seconds`: `trace::start` into a
/// temporary file, sleep, `trace::stop`, answer with the file. One trace
/// runs at a time in the process (409 while one runs, whoever started it).
fn trace(req: &Request) -> Response {
    let window = match seconds(req, 1) {
        Ok(w) => w,
        Err(bad) => return bad,
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "gort-debug-trace-{}-{}.json",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = crate::trace::start(&path) {
        let status = if e.kind() == io::ErrorKind::AlreadyExists {
            409
        } else {
            500
        };
        return Response::error(status, format!("cannot start a trace: {e}"));
    }
    crate::time::sleep(window);
    let finished = crate::trace::stop();
    let json = crate::blocking(|| std::fs::read(&path));
    let _ = std::fs::remove_file(&path);
    match finished.and(json) {
        Ok(json) => Response::ok("application/json", json)
            .with_header("Content-Disposition: attachment; filename=\"trace.json\"".to_string()),
        Err(e) => Response::error(500, format!("trace failed: {e}")),
    }
}

fn metrics(_: &Request) -> Response {
    let mut out = String::new();
    prometheus::render(&mut out);
    Response::ok("text/plain; version=0.0.4; charset=utf-8", out)
}

fn dashboard_page(_: &Request) -> Response {
    Response::ok("text/html; charset=utf-8", dashboard::page())
}

fn dashboard_state(_: &Request) -> Response {
    let mut out = String::new();
    dashboard::state_json(&mut out);
    Response::ok("application/json", out)
}
