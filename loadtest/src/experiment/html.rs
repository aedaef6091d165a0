//! `report.html`: one self-contained page (no scripts, no external fonts,
//! styles or images) with the verdict, the summary figures, the
//! expectations, four charts drawn with `plotters` as inline SVG, and the
//! events table.
//!
//! Every chart has the same time axis and the same vertical markers:
//! timeline actions, step changes and aborts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::RGBColor;

use super::report::{EventKind, ExperimentReport, rate};

/// Chart width in pixels, the legend's included.
const WIDTH: u32 = 1000;
/// Chart height in pixels.
const HEIGHT: u32 = 300;
/// The legend's width, right of the plot.
const LEGEND_WIDTH: u32 = 170;

/// Series colours (the "tab10" palette), by upstream or route order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a chart, possibly broken into segments.
struct Line {
    label: String,
    color: RGBColor,
    width: u32,
    dashed: bool,
    segments: Vec<Vec<(f64, f64)>>,
}

/// A vertical marker.
#[derive(Debug, Clone, Copy)]
struct Marker {
    t: f64,
    kind: MarkerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum MarkerKind {
    Config,
    Fault,
    Command,
    Step,
    Abort,
}

// === impl MarkerKind ===

impl MarkerKind {
    fn label(self) -> &'static str {
        match self {
            Self::Config => "config change",
            Self::Fault => "fault",
            Self::Command => "command",
            Self::Step => "step change",
            Self::Abort => "abort",
        }
    }

    fn style(self) -> ShapeStyle {
        let (color, width) = match self {
            Self::Config => (RGBColor(0, 90, 200), 2),
            Self::Fault => (RGBColor(214, 39, 40), 2),
            Self::Command => (RGBColor(120, 40, 160), 2),
            Self::Step => (RGBColor(150, 150, 150), 1),
            Self::Abort => (RGBColor(0, 0, 0), 3),
        };
        ShapeStyle {
            color: color.to_rgba(),
            filled: false,
            stroke_width: width,
        }
    }
}

/// The page for `report`.
///
/// # Errors
/// A message when a chart cannot be drawn.
pub(crate) fn render(report: &ExperimentReport) -> Result<String, String> {
    let x_max = report.duration_seconds.max(1.0);
    let markers = markers(report);
    let upstream_names = upstream_names(report);
    let color_of = |i: usize| PALETTE[i % PALETTE.len()];

    // (1) canary weight per route.
    let mut routes: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for s in &report.samples {
        let points = routes.entry(s.route.as_str()).or_default();
        // Hold the previous value until the change, so steps look like steps.
        if let Some(&(_, w)) = points.last()
            && w != s.weight
        {
            points.push((s.t, w));
        }
        points.push((s.t, s.weight));
    }
    let weight_lines: Vec<Line> = routes
        .into_iter()
        .enumerate()
        .map(|(i, (route, points))| Line {
            label: format!("route {route}"),
            color: color_of(i),
            width: 2,
            dashed: false,
            segments: vec![points],
        })
        .collect();
    let weight = chart(
        "Canary weight per route",
        "weight (%)",
        x_max,
        (0.0, 105.0),
        &weight_lines,
        &markers,
    )?;

    // (2) request rate, (3) error rate, (4) latency per upstream.
    let mut rate_lines = Vec::new();
    let mut error_lines = Vec::new();
    let mut latency_lines = Vec::new();
    let (mut max_rate, mut max_error, mut max_latency) = (1.0f64, 1.0f64, 1.0f64);
    for (i, name) in upstream_names.iter().enumerate() {
        let label = display_name(name);
        let mut requests = Vec::new();
        let mut errors = Segments::default();
        let mut p50 = Segments::default();
        let mut p99 = Segments::default();
        for s in &report.seconds {
            let mid = s.t as f64 + 0.5;
            let u = s.upstreams.get(name.as_str());
            let n = u.map_or(0, |u| u.requests);
            requests.push((mid, n as f64));
            max_rate = max_rate.max(n as f64);
            match u.filter(|u| u.requests > 0) {
                Some(u) => {
                    let pct = rate(u.errors, u.requests) * 100.0;
                    max_error = max_error.max(pct);
                    errors.push((mid, pct));
                    if let (Some(a), Some(b)) = (u.p50_ms, u.p99_ms) {
                        max_latency = max_latency.max(b);
                        p50.push((mid, a));
                        p99.push((mid, b));
                    }
                }
                None => {
                    errors.gap();
                    p50.gap();
                    p99.gap();
                }
            }
        }
        let color = color_of(i);
        rate_lines.push(Line {
            label: label.clone(),
            color,
            width: 2,
            dashed: false,
            segments: vec![requests],
        });
        error_lines.push(Line {
            label: label.clone(),
            color,
            width: 2,
            dashed: false,
            segments: errors.done(),
        });
        latency_lines.push(Line {
            label: format!("{label} p50"),
            color,
            width: 2,
            dashed: false,
            segments: p50.done(),
        });
        latency_lines.push(Line {
            label: format!("{label} p99"),
            color,
            width: 1,
            dashed: true,
            segments: p99.done(),
        });
    }
    let requests = chart(
        "Requests per second per upstream",
        "req/s",
        x_max,
        (0.0, max_rate * 1.1),
        &rate_lines,
        &markers,
    )?;
    let errors = chart(
        "Error rate per upstream (5xx share of its responses)",
        "errors (%)",
        x_max,
        (0.0, (max_error * 1.1).min(105.0)),
        &error_lines,
        &markers,
    )?;
    let latency = chart(
        "Latency per upstream (p50 solid, p99 dashed; from the scheduled send time)",
        "latency (ms)",
        x_max,
        (0.0, max_latency * 1.1),
        &latency_lines,
        &markers,
    )?;

    let mut page = String::with_capacity(256 * 1024);
    header(&mut page, report);
    for (id, svg) in [
        ("weight", weight),
        ("requests", requests),
        ("errors", errors),
        ("latency", latency),
    ] {
        let _ = writeln!(page, "<figure id=\"chart-{id}\">{svg}</figure>");
    }
    events_table(&mut page, report);
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

/// The scenario's upstreams first, then any other name seen (`-` last).
fn upstream_names(report: &ExperimentReport) -> Vec<String> {
    let mut names: Vec<String> = report.upstreams.iter().map(|u| u.name.clone()).collect();
    let mut others: Vec<String> = report
        .seconds
        .iter()
        .flat_map(|s| s.upstreams.keys())
        .filter(|n| !names.contains(n))
        .cloned()
        .collect();
    others.sort_by_key(|n| (n == "-", n.clone()));
    others.dedup();
    names.extend(others);
    names
}

fn display_name(name: &str) -> String {
    if name == "-" {
        "weir itself".to_owned()
    } else {
        name.to_owned()
    }
}

fn markers(report: &ExperimentReport) -> Vec<Marker> {
    report
        .events
        .iter()
        .filter_map(|e| {
            let kind = match e.kind {
                EventKind::Config => MarkerKind::Config,
                EventKind::Fault => MarkerKind::Fault,
                EventKind::Command => MarkerKind::Command,
                EventKind::Step | EventKind::Stage => MarkerKind::Step,
                EventKind::Abort => MarkerKind::Abort,
                EventKind::Phase
                | EventKind::Weight
                | EventKind::Revision
                | EventKind::Weir
                | EventKind::Smoke
                | EventKind::Prometheus => {
                    return None;
                }
            };
            Some(Marker { t: e.t, kind })
        })
        .collect()
}

/// Builds line segments, starting a new one after each gap.
#[derive(Default)]
struct Segments(Vec<Vec<(f64, f64)>>, bool);

// === impl Segments ===

impl Segments {
    fn push(&mut self, point: (f64, f64)) {
        if self.0.is_empty() || self.1 {
            self.0.push(Vec::new());
            self.1 = false;
        }
        if let Some(last) = self.0.last_mut() {
            last.push(point);
        }
    }

    fn gap(&mut self) {
        self.1 = true;
    }

    fn done(self) -> Vec<Vec<(f64, f64)>> {
        self.0
    }
}

/// One chart as an SVG element (without the XML namespace URL, which
/// inline SVG in HTML does not need). The legend is drawn beside the plot,
/// one entry per line and per marker kind present.
fn chart(
    title: &str,
    y_desc: &str,
    x_max: f64,
    (y_min, y_max): (f64, f64),
    lines: &[Line],
    markers: &[Marker],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time since the start of the load (s)")
            .y_desc(y_desc)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut entries: Vec<(String, ShapeStyle, Glyph)> = Vec::new();
        for line in lines {
            let style = ShapeStyle {
                color: line.color.to_rgba(),
                filled: false,
                stroke_width: line.width,
            };
            for segment in line.segments.iter().filter(|s| !s.is_empty()) {
                if line.dashed {
                    chart.draw_series(DashedLineSeries::new(segment.iter().copied(), 4, 3, style))
                } else {
                    chart.draw_series(LineSeries::new(segment.iter().copied(), style))
                }
                .map_err(|e| e.to_string())?;
            }
            let glyph = if line.dashed {
                Glyph::Dashed
            } else {
                Glyph::Line
            };
            entries.push((line.label.clone(), style, glyph));
        }
        let mut kinds: Vec<MarkerKind> = markers.iter().map(|m| m.kind).collect();
        kinds.sort();
        kinds.dedup();
        for m in markers {
            chart
                .draw_series(DashedLineSeries::new(
                    [(m.t, y_min), (m.t, y_max)],
                    6,
                    if m.kind == MarkerKind::Abort { 2 } else { 4 },
                    m.kind.style(),
                ))
                .map_err(|e| e.to_string())?;
        }
        for kind in kinds {
            entries.push((kind.label().to_owned(), kind.style(), Glyph::Marker));
        }
        draw_legend(&legend, &entries)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glyph {
    Line,
    Dashed,
    Marker,
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, ShapeStyle, Glyph)],
) -> Result<(), String> {
    let row = 18;
    let top = 36;
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, (label, style, glyph)) in entries.iter().enumerate() {
        let y = top + row * i32::try_from(i).unwrap_or(0);
        match glyph {
            Glyph::Line => area.draw(&PathElement::new(vec![(8, y), (32, y)], *style)),
            Glyph::Dashed => area
                .draw(&PathElement::new(vec![(8, y), (16, y)], *style))
                .and_then(|()| area.draw(&PathElement::new(vec![(22, y), (30, y)], *style))),
            Glyph::Marker => area.draw(&PathElement::new(vec![(20, y - 7), (20, y + 7)], *style)),
        }
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(label.clone(), (40, y - 7), font.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1100px}\
h1{margin-bottom:.2em}.pass{color:#1a7f37}.fail{color:#c62828}\
table{border-collapse:collapse;margin:.6em 0 1.2em}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.92em}\
th{background:#f4f4f4}td.num{text-align:right}figure{margin:1em 0}\
.meta{color:#555}";

fn header(page: &mut String, report: &ExperimentReport) {
    let name = escape(&report.scenario);
    let (class, verdict) = if report.passed {
        ("pass", "PASS: all expectations held")
    } else {
        ("fail", "FAIL: an expectation did not hold")
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>weir experiment {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>weir experiment: {name}</h1>\n<p class=\"{class}\"><strong>{verdict}</strong></p>\n\
         <p class=\"meta\">started {} · {} s of load at {} req/s{} · speed ×{} · weir {} · {}</p>\n",
        escape(&report.started_at),
        report.duration_seconds,
        report.load.rate,
        report
            .load
            .users
            .map_or(String::new(), |u| format!(", {u} users")),
        report.speed,
        escape(&report.weir.binary),
        escape(&report.weir.stopped),
    );

    page.push_str("<h2>Summary</h2>\n");
    let s = &report.summary;
    let _ = writeln!(
        page,
        "<p>{} requests scheduled, {} without any response.</p>",
        s.requests, s.failed
    );
    if s.aborts.is_empty() {
        page.push_str("<p>No abort.</p>\n");
    } else {
        page.push_str(
            "<table><tr><th>abort</th><th>canary</th><th>upstream</th><th>first failure (s)</th>\
             <th>weight 0 (s)</th><th>first failure → weight 0</th><th>answers from it since the fault</th>\
             <th>errors</th><th>reason</th></tr>\n",
        );
        for a in &s.aborts {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.2} ({})</td>\
                 <td class=\"num\">{:.2}</td><td class=\"num\"><strong>{:.2} s</strong></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&a.route),
                escape(a.revision.as_deref().unwrap_or("?")),
                escape(a.upstream.as_deref().unwrap_or("?")),
                a.first_failure_at,
                escape(&a.first_failure_from),
                a.weight_zero_at,
                a.seconds_to_weight_zero,
                a.canary_requests,
                a.canary_errors,
                escape(&a.reason),
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str(
        "<table><tr><th>upstream</th><th>requests that reached it</th><th>of which failed by fault</th>\
         <th>responses seen by the load</th><th>5xx seen</th><th>5xx share</th></tr>\n",
    );
    for (name, u) in &s.upstreams {
        let opt = |v: Option<u64>| v.map_or("–".to_owned(), |v| v.to_string());
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.2} %</td></tr>",
            escape(&display_name(name)),
            opt(u.received),
            opt(u.received_errors),
            u.responses,
            u.errors,
            rate(u.errors, u.responses) * 100.0
        );
    }
    page.push_str("</table>\n<h2>Expectations</h2>\n<table><tr><th>#</th><th>result</th><th>expected</th><th>observed</th></tr>\n");
    for e in &report.expectations {
        let (class, word) = if e.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"{class}\"><strong>{word}</strong></td><td>{}: {}</td><td>{}</td></tr>",
            e.index,
            escape(&e.kind),
            escape(&e.expected),
            escape(&e.detail)
        );
    }
    page.push_str("</table>\n<h2>Charts</h2>\n");
}

fn events_table(page: &mut String, report: &ExperimentReport) {
    page.push_str("<h2>Events</h2>\n<table><tr><th>t (s)</th><th>kind</th><th>what</th></tr>\n");
    for e in &report.events {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{:.2}</td><td>{}</td><td>{}</td></tr>",
            e.t,
            escape(&kind),
            escape(&e.text)
        );
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests;
