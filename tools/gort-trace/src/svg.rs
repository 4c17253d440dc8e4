//! Drawing a `Timeline` as an SVG document.
//!
//! Layout, top to bottom: a title; one lane per P — a band of marks above a
//! row of goroutine slices, with the P's name on the left — over a shared
//! time axis with ticks at round intervals; a legend. Each goroutine keeps
//! one colour wherever it runs (a hash of its id), so migrations and
//! interleavings are visible at a glance. A slice is labelled when its
//! label fits inside it, and carries a tooltip (`<title>`) with its
//! goroutine and length.
//!
//! Output size stays proportional to the picture, not to the trace:
//! slices narrower than a pixel are merged into grey "busy" runs, and at
//! most one mark of each kind is drawn per pixel column.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::timeline::{Lane, MarkKind, Timeline};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 44.0;
/// Height of a lane's mark band and of its slice row.
const MARK_BAND: f64 = 16.0;
const ROW: f64 = 24.0;
const LANE_GAP: f64 = 8.0;
const AXIS: f64 = 34.0;
const LEGEND: f64 = 30.0;
/// Average glyph width at the 11 px label size, for "does it fit".
const CHAR_WIDTH: f64 = 6.4;
const BUSY_COLOUR: &str = "#9aa0a6";

/// Render `timeline`; `title` heads the picture.
pub fn render(timeline: &Timeline, title: &str) -> String {
    let lane_pitch = MARK_BAND + ROW + LANE_GAP;
    let plot_bottom = TOP + lane_pitch * timeline.lanes.len() as f64;
    let height = plot_bottom + AXIS + LEGEND;
    let scale = Scale {
        from: timeline.from,
        to: timeline.to,
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="12" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    axis(&mut svg, &scale, plot_bottom);
    for (i, lane) in timeline.lanes.iter().enumerate() {
        lane_svg(&mut svg, &scale, lane, TOP + lane_pitch * i as f64);
    }
    legend(&mut svg, plot_bottom + AXIS);
    svg.push_str("</svg>\n");
    svg
}

/// Time (µs) to x (px).
struct Scale {
    from: f64,
    to: f64,
}

impl Scale {
    fn x(&self, t: f64) -> f64 {
        let t = t.clamp(self.from, self.to);
        LEFT + (t - self.from) / (self.to - self.from) * (WIDTH - LEFT - RIGHT)
    }
}

/// A round tick interval giving about `target` ticks over `span`.
pub fn tick_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A time (µs) as the axis shows it.
fn time_label(us: f64, step: f64) -> String {
    if step >= 1000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} µs", trim(us))
    }
}

/// A number without needless decimals.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn axis(svg: &mut String, scale: &Scale, bottom: f64) {
    let step = tick_step(scale.to - scale.from, 10.0);
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#444"/>"##,
        WIDTH - RIGHT
    );
    let mut t = (scale.from / step).ceil() * step;
    while t <= scale.to {
        let x = scale.x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#e3e3e3"/><line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            time_label(t, step)
        );
        t += step;
    }
}

/// A goroutine's colour: a hue from a hash of its id.
pub fn colour(goid: u64) -> String {
    let mut h = goid.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let hue = (h % 360) as f64;
    let (r, g, b) = hsl_to_rgb(hue, 0.60, 0.62);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn hsl_to_rgb(hue: f64, saturation: f64, lightness: f64) -> (u8, u8, u8) {
    let chroma = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let sector = hue / 60.0;
    let x = chroma * (1.0 - (sector % 2.0 - 1.0).abs());
    let (r, g, b) = match sector as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = lightness - chroma / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round() as u8;
    (byte(r), byte(g), byte(b))
}

/// Slices narrower than a pixel that follow each other closely, drawn as one.
struct BusyRun {
    x0: f64,
    x1: f64,
    slices: usize,
}

fn lane_svg(svg: &mut String, scale: &Scale, lane: &Lane, top: f64) {
    let row = top + MARK_BAND;
    let _ = writeln!(svg, r#"<g class="lane">"#);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text><rect x="{LEFT}" y="{row}" width="{:.1}" height="{ROW}" fill="#f6f6f6"/>"##,
        LEFT - 8.0,
        row + ROW / 2.0 + 4.0,
        escape(&lane.title),
        WIDTH - LEFT - RIGHT
    );
    let mut busy: Option<BusyRun> = None;
    for slice in &lane.slices {
        let (x0, x1) = (scale.x(slice.start), scale.x(slice.end));
        if x1 - x0 < 1.0 {
            match &mut busy {
                Some(run) if x0 - run.x1 < 1.0 => {
                    run.x1 = run.x1.max(x1);
                    run.slices += 1;
                }
                _ => {
                    flush_busy(svg, busy.take(), row);
                    busy = Some(BusyRun { x0, x1, slices: 1 });
                }
            }
            continue;
        }
        flush_busy(svg, busy.take(), row);
        let width = x1 - x0;
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{row}" width="{width:.1}" height="{ROW}" fill="{}"><title>{} — {}</title></rect>"#,
            colour(slice.goid),
            escape(&slice.label),
            duration(slice.end - slice.start)
        );
        let short = format!("G{}", slice.goid);
        let label = [slice.label.as_str(), short.as_str()]
            .into_iter()
            .find(|l| l.chars().count() as f64 * CHAR_WIDTH + 6.0 <= width);
        if let Some(label) = label {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" pointer-events="none">{}</text>"#,
                x0 + 3.0,
                row + ROW / 2.0 + 4.0,
                escape(label)
            );
        }
        svg.push('\n');
    }
    flush_busy(svg, busy, row);
    let mut drawn = HashSet::new();
    for mark in &lane.marks {
        let x = scale.x(mark.at);
        if drawn.insert((mark.kind, x.round() as i64)) {
            mark_svg(svg, mark.kind, x, top);
        }
    }
    let _ = writeln!(svg, "</g>");
}

fn flush_busy(svg: &mut String, run: Option<BusyRun>, row: f64) {
    if let Some(run) = run {
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{row}" width="{:.1}" height="{ROW}" fill="{BUSY_COLOUR}"><title>{} short slices</title></rect>"#,
            run.x0,
            (run.x1 - run.x0).max(1.0),
            run.slices
        );
    }
}

/// A mark's glyph, in the band above a lane's row (`top` is the band's
/// top): preemptions and system calls in its upper half, parks as ticks in
/// its lower half, so that a preemption and the park that follows it at
/// the same pixel both show.
fn mark_svg(svg: &mut String, kind: MarkKind, x: f64, top: f64) {
    let _ = match kind {
        MarkKind::Park => writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#555" stroke-width="1"/>"##,
            top + 9.0,
            top + MARK_BAND
        ),
        MarkKind::Preempt => writeln!(
            svg,
            r##"<path d="M{:.1} {:.1}h8l-4 7z" fill="#d93025"/>"##,
            x - 4.0,
            top + 1.0
        ),
        MarkKind::Syscall => writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="6" height="6" fill="#1a73e8"/>"##,
            x - 3.0,
            top + 1.5
        ),
    };
}

/// Draws a legend glyph with its left edge at `x`, centred on `y`.
type Glyph = fn(f64, f64) -> String;

fn legend(svg: &mut String, top: f64) {
    let y = top + 14.0;
    let items: [(Glyph, &str); 5] = [
        (
            |x, y| {
                format!(
                    r#"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{}"/>"#,
                    y - 5.0,
                    colour(1)
                )
            },
            "goroutine running (one colour per goroutine)",
        ),
        (
            |x, y| {
                format!(
                    r#"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{BUSY_COLOUR}"/>"#,
                    y - 5.0
                )
            },
            "many short slices",
        ),
        (
            |x, y| {
                let x = x + 6.0;
                format!(
                    r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#555"/>"##,
                    y - 4.0,
                    y + 4.0
                )
            },
            "park",
        ),
        (
            |x, y| format!(r##"<path d="M{:.1} {:.1}h8l-4 7z" fill="#d93025"/>"##, x + 2.0, y - 4.0),
            "preempt",
        ),
        (
            |x, y| {
                format!(
                    r##"<rect x="{:.1}" y="{:.1}" width="6" height="6" fill="#1a73e8"/>"##,
                    x + 3.0,
                    y - 3.0
                )
            },
            "system call",
        ),
    ];
    let mut x = LEFT;
    for (glyph, text) in items {
        let _ = writeln!(
            svg,
            r#"{}<text x="{:.1}" y="{:.1}">{text}</text>"#,
            glyph(x, y),
            x + 16.0,
            y + 4.0
        );
        x += 16.0 + text.chars().count() as f64 * CHAR_WIDTH + 24.0;
    }
}

/// A length in µs, as a tooltip shows it.
fn duration(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Text escaped for SVG. Characters XML cannot hold at all (most C0
/// controls, which a goroutine name may contain) become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::sample;

    /// Checks that tags nest (a small XML well-formedness check) and
    /// returns how many elements each name has.
    fn element_counts(svg: &str) -> std::collections::HashMap<String, usize> {
        let mut open: Vec<String> = Vec::new();
        let mut counts = std::collections::HashMap::new();
        let mut rest = svg;
        while let Some(at) = rest.find('<') {
            let end = rest[at..].find('>').expect("unclosed tag") + at;
            let tag = &rest[at + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name = tag.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
                *counts.entry(name.clone()).or_insert(0) += 1;
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed {open:?}");
        counts
    }

    #[test]
    fn one_lane_per_p_with_slices_marks_axis_and_legend() {
        let timeline = Timeline::new(&sample(), None, None).unwrap();
        let svg = render(&timeline, "a <sample> & more");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        let counts = element_counts(&svg);
        assert_eq!(counts["svg"], 1);
        assert_eq!(svg.matches(r#"<g class="lane">"#).count(), 3);
        assert!(svg.contains("a &lt;sample&gt; &amp; more"));
        // Two wide slices on P0 with their own colours and labels; P1's two
        // one-microsecond slices merge into one busy run.
        assert!(svg.contains(&format!(r#"fill="{}"><title>G1 — 900.0 µs</title>"#, colour(1))));
        assert!(svg.contains(">G2</text>"));
        assert!(svg.contains("<title>2 short slices</title>"));
        assert_eq!(svg.matches("#d93025").count(), 2, "a preempt mark and its legend");
        assert!(
            svg.contains(">1 ms</text>") && svg.contains(">5 ms</text>"),
            "a tick every millisecond"
        );
        assert!(svg.contains(">system call</text>"));
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        // A goroutine name may hold any character JSON can carry, and
        // XML 1.0 has no way, not even a character reference, to write
        // most C0 controls.
        let mut timeline = Timeline::new(&sample(), None, None).unwrap();
        timeline.lanes[0].slices[0].label = "G1 \u{1b}[31mred\u{7}\u{ffff}".to_string();
        let svg = render(&timeline, "bell\u{0}");
        let forbidden: Vec<char> = svg
            .chars()
            .filter(|&c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}'))
            .collect();
        assert!(forbidden.is_empty(), "{forbidden:?}");
        assert!(svg.contains("<title>G1 \u{fffd}[31mred\u{fffd}\u{fffd} — 900.0 µs</title>"));
        assert!(svg.contains(">bell\u{fffd}</text>"));
        element_counts(&svg);
    }

    #[test]
    fn ticks_are_round_and_colours_stable() {
        assert_eq!(tick_step(1000.0, 10.0), 100.0);
        assert_eq!(tick_step(1300.0, 10.0), 200.0);
        assert_eq!(tick_step(40_000.0, 10.0), 5000.0);
        assert_eq!(tick_step(7.0, 10.0), 1.0);
        assert_eq!(colour(42), colour(42));
        assert_ne!(colour(1), colour(2));
        assert_eq!(time_label(2500.0, 500.0), "2500 µs");
        assert_eq!(time_label(2500.0, 1000.0), "2.5 ms");
    }
}
