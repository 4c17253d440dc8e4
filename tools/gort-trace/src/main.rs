//! `gort-trace`: render a gort execution trace (the Chrome trace-event JSON
//! that `gort::trace` and `GORTTRACE` write) as an SVG timeline — one lane
//! per P, goroutine slices coloured by goroutine, marks for parks,
//! preemptions and system calls — for a README, a bug report, or a look
//! without a trace viewer.
//!
//! ```text
//! gort-trace trace.json -o out.svg [--from MS] [--to MS] [--title TEXT]
//! ```
//!
//! `--from`/`--to` pick a window in milliseconds since the trace started
//! (default: all of it). Only P tracks with something in the window get a
//! lane. The whole file is read into memory: pick a window of a long trace
//! rather than a long trace.

mod svg;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;

use timeline::Timeline;

const USAGE: &str = "usage: gort-trace TRACE.json -o OUT.svg [--from MS] [--to MS] [--title TEXT]";

/// The command line.
struct Args {
    input: PathBuf,
    output: PathBuf,
    from_ms: Option<f64>,
    to_ms: Option<f64>,
    title: Option<String>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let (mut input, mut output, mut from_ms, mut to_ms, mut title) = (None, None, None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        let ms = |flag: &str, v: String| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match arg.as_str() {
            "-o" | "--output" => output = Some(PathBuf::from(value(&arg)?)),
            "--from" => from_ms = Some(ms(&arg, value(&arg)?)?),
            "--to" => to_ms = Some(ms(&arg, value(&arg)?)?),
            "--title" => title = Some(value(&arg)?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if input.is_none() && !arg.starts_with('-') => input = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    Ok(Args {
        input: input.ok_or(USAGE)?,
        output: output.ok_or(USAGE)?,
        from_ms,
        to_ms,
        title,
    })
}

fn run(args: Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let trace: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", args.input.display()))?;
    let timeline = Timeline::new(&trace, args.from_ms, args.to_ms)?;
    let title = args.title.unwrap_or_else(|| {
        format!(
            "gort trace: {} ms to {} ms",
            trimmed(timeline.from / 1000.0),
            trimmed(timeline.to / 1000.0)
        )
    });
    let svg = svg::render(&timeline, &title);
    std::fs::write(&args.output, &svg).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let slices: usize = timeline.lanes.iter().map(|l| l.slices.len()).sum();
    eprintln!(
        "{}: {} lanes, {slices} slices, {} KiB",
        args.output.display(),
        timeline.lanes.len(),
        svg.len() / 1024
    );
    Ok(())
}

fn trimmed(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gort-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn command_line() {
        let a = args(&["t.json", "-o", "out.svg", "--from", "1.5", "--to", "20"]).unwrap();
        assert_eq!(a.input, PathBuf::from("t.json"));
        assert_eq!(a.output, PathBuf::from("out.svg"));
        assert_eq!((a.from_ms, a.to_ms), (Some(1.5), Some(20.0)));
        assert!(args(&["t.json"]).is_err(), "an output is required");
        assert!(args(&["t.json", "-o", "x.svg", "--from", "soon"]).is_err());
        assert!(args(&["t.json", "-o", "x.svg", "extra"]).is_err());
    }

    #[test]
    fn renders_a_file() {
        let dir = std::env::temp_dir();
        let input = dir.join(format!("gort-trace-tool-{}.json", std::process::id()));
        let output = input.with_extension("svg");
        std::fs::write(&input, timeline::tests::sample().to_string()).unwrap();
        run(Args {
            input: input.clone(),
            output: output.clone(),
            from_ms: None,
            to_ms: Some(4.0),
            title: None,
        })
        .unwrap();
        let svg = std::fs::read_to_string(&output).unwrap();
        assert_eq!(svg.matches(r#"<g class="lane">"#).count(), 2);
        assert!(svg.contains("gort trace: 0 ms to 4 ms"));
        std::fs::remove_file(input).unwrap();
        std::fs::remove_file(output).unwrap();
    }
}
