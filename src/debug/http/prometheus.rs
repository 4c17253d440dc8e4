//! `/metrics`: the runtime's metrics in the Prometheus text exposition
//! format, one sample per runtime, labelled with its name (`runtime="gort"`),
//! every name prefixed `gort_`. Counters end in `_total`; the rest are
//! gauges. Read from [`Metrics`](crate::runtime::Metrics), which is O(Ps)
//! per runtime, so a scrape costs the same with a million goroutines.

use std::fmt::Write as _;

use crate::runtime::Metrics;

/// One exported metric: name, help, type, and how to read it.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&Metrics) -> u64,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "gort_goroutines",
        help: "Goroutines alive.",
        kind: "gauge",
        value: |m| m.goroutines_live as u64,
    },
    Family {
        name: "gort_goroutines_created_total",
        help: "Goroutines spawned since the runtime started.",
        kind: "counter",
        value: |m| m.goroutines_created,
    },
    Family {
        name: "gort_context_switches_total",
        help: "Goroutine switches.",
        kind: "counter",
        value: |m| m.context_switches,
    },
];

/// Append the exposition of every live runtime to `out`.
pub(crate) fn render(out: &mut String) {
    let runtimes: Vec<_> = crate::debug::live_runtimes()
        .into_iter()
        .map(|s| (s.name.clone(), s.metrics()))
        .collect();
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (name, m) in &runtimes {
            let _ = writeln!(
                out,
                "{}{{runtime=\"{}\"}} {}",
                family.name,
                escape(name),
                (family.value)(m)
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
