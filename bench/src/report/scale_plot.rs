//! The plot of the scale runs (scale.svg): release time against the number
//! of requests held, the module and HAProxy, on logarithmic axes, drawn as
//! plain SVG.

use std::fmt::Write as _;

use super::{find, median_of, secs, Report};
use crate::servers::{Proxy, Shape};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 60.0;

/// One line: the median release time at each held count measured.
struct Line {
    label: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn lines(report: &Report) -> Vec<Line> {
    let mut lines = vec![];
    for (workers, counts) in &report.plan.scale {
        for keepalive in [true, false] {
            for (proxy, colour) in [(Proxy::Module, "#1f77b4"), (Proxy::Haproxy, "#d62728")] {
                let shape = Shape::workers(*workers).keepalive(keepalive).spread();
                let points: Vec<(f64, f64)> = counts
                    .iter()
                    .filter_map(|&n| {
                        let passes = find(&report.scale, n, shape, Some(proxy))?;
                        let last = median_of(&passes.passes, |p| p.last().map(secs))?;
                        Some((n as f64, last * 1000.0))
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let colour = if *workers == 4 {
                    colour
                } else if proxy == Proxy::Module {
                    "#9ecae1"
                } else {
                    "#fc9272"
                };
                lines.push(Line {
                    label: format!(
                        "{}, {workers} workers, {}",
                        if proxy == Proxy::Module {
                            "intermission"
                        } else {
                            "HAProxy"
                        },
                        if keepalive { "kept alive" } else { "new conn." }
                    ),
                    colour,
                    dashed: !keepalive,
                    points,
                });
            }
        }
    }
    lines
}

/// Powers of ten from below the smallest to above the largest value.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, 0f64);
    for v in values.filter(|v| *v > 0.0) {
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        return (1.0, 10.0);
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
    (low, high)
}

/// Logarithmic axes fitted to the lines' points.
struct Axes {
    x_low: f64,
    x_high: f64,
    y_low: f64,
    y_high: f64,
}

const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

impl Axes {
    fn fit(lines: &[Line]) -> Axes {
        let points = || lines.iter().flat_map(|l| l.points.iter());
        let (x_low, x_high) = decades(points().map(|p| p.0));
        let (y_low, y_high) = decades(points().map(|p| p.1));
        Axes {
            x_low,
            x_high,
            y_low,
            y_high,
        }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + PLOT_W * (v / self.x_low).log10() / (self.x_high / self.x_low).log10()
    }

    fn y(&self, v: f64) -> f64 {
        TOP + PLOT_H * (1.0 - (v / self.y_low).log10() / (self.y_high / self.y_low).log10())
    }
}

pub fn scale_svg(report: &Report) -> Option<String> {
    let lines = lines(report);
    if lines.is_empty() {
        return None;
    }
    let axes = Axes::fit(&lines);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##);
    write_axes(&mut svg, &axes);
    for (i, line) in lines.iter().enumerate() {
        write_line(&mut svg, &axes, i, line);
    }
    let _ = writeln!(svg, "</svg>");
    Some(svg)
}

/// The grid, a tick at every power of ten, the frame and the axis titles.
fn write_axes(svg: &mut String, axes: &Axes) {
    let mut tick = axes.x_low;
    while tick <= axes.x_high * 1.001 {
        let px = axes.x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 18.0,
            super::scale::fmt_count(tick as usize)
        );
        tick *= 10.0;
    }
    let mut tick = axes.y_low;
    while tick <= axes.y_high * 1.001 {
        let py = axes.y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            py + 4.0,
            if tick >= 1000.0 {
                format!("{} s", tick / 1000.0)
            } else {
                format!("{tick} ms")
            }
        );
        tick *= 10.0;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W:.1}" height="{PLOT_H:.1}" fill="none" stroke="black"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">requests held, then released (log)</text>
<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">release to last answer (log)</text>"##,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 16.0,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
    );
}

/// Line `i`: its polyline, a dot at each point and its legend entry.
fn write_line(svg: &mut String, axes: &Axes, i: usize, line: &Line) {
    let path: Vec<String> = line
        .points
        .iter()
        .map(|&(n, ms)| format!("{:.1},{:.1}", axes.x(n), axes.y(ms)))
        .collect();
    let dash = if line.dashed {
        r##" stroke-dasharray="6 4""##
    } else {
        ""
    };
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"##,
        path.join(" "),
        line.colour
    );
    for &(n, ms) in &line.points {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"##,
            axes.x(n),
            axes.y(ms),
            line.colour
        );
    }
    let ly = TOP + 10.0 + 20.0 * i as f64;
    let lx = LEFT + PLOT_W + 14.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"##,
        lx + 24.0,
        line.colour,
        lx + 30.0,
        ly + 4.0,
        line.label
    );
}
