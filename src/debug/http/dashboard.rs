//! `/debug/gort/`: a self-contained HTML page about the running program
//! (no external scripts, fonts or stylesheets: it works offline), and the
//! JSON it reads its live numbers from (`/debug/gort/state.json`).

use std::fmt::Write as _;

/// The dashboard page.
pub(crate) fn page() -> &'static str {
    concat!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>gort</title></head><body>",
        "<h1>gort runtime</h1>",
        "<p><a href=\"/debug/pprof/\">profiles</a> · <a href=\"/metrics\">metrics</a> · ",
        "<a href=\"state.json\">state.json</a></p>",
        "</body></html>\n"
    )
}

/// Append the dashboard's state to `out`: per runtime, its name, Ps and
/// goroutines alive.
pub(crate) fn state_json(out: &mut String) {
    out.push_str("{\"runtimes\":[");
    for (i, sched) in crate::debug::live_runtimes().iter().enumerate() {
        let m = sched.metrics();
        let _ = write!(
            out,
            "{}{{\"name\":\"{}\",\"procs\":{},\"goroutines\":{}}}",
            if i == 0 { "" } else { "," },
            json_escape(&sched.name),
            sched.gomaxprocs(),
            m.goroutines_live
        );
    }
    out.push_str("]}");
}

/// `s` as the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
