//! The plot of a run (release.svg): answers completed over time after the
//! largest release, drawn as plain SVG.

use std::fmt::Write as _;
use std::time::Duration;

use super::{find, Report};
use crate::runs::Pass;
use crate::servers::{Proxy, Shape};

/// Answers completed over time after the release, for the largest held
/// count: the module, HAProxy and the no-pause burst (the repetition with the
/// median last answer of each). Plain SVG, drawn here: three polylines and
/// two axes need no plotting library.
pub fn svg(report: &Report) -> String {
    let Some(&n) = report.plan.held_counts.last() else {
        return String::new();
    };
    let series = plotted_series(report, n);
    let latest = series
        .iter()
        .filter_map(|s| s.pass.last())
        .max()
        .unwrap_or(Duration::from_millis(1));
    let frame = Frame::new(n, latest);
    let mut svg = String::new();
    write_canvas(&mut svg, &frame);
    write_grid(&mut svg, &frame);
    write_plot_area(&mut svg, &frame);
    for (i, series) in series.iter().enumerate() {
        write_series(&mut svg, &frame, i, series);
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

/// One line of the plot: a pass and how it is drawn.
struct Series<'a> {
    colour: &'static str,
    label: &'static str,
    pass: &'a Pass,
}

/// The burst, the module and HAProxy on one worker at `n` held, each the
/// repetition with the median last answer; those not measured are left out.
fn plotted_series(report: &Report, n: usize) -> Vec<Series<'_>> {
    [
        (None, "#888888", "burst, no pause"),
        (Some(Proxy::Module), "#1f77b4", Proxy::Module.label()),
        (Some(Proxy::Haproxy), "#d62728", Proxy::Haproxy.label()),
    ]
    .into_iter()
    .filter_map(|(proxy, colour, label)| {
        let passes = &find(&report.release, n, Shape::workers(1), proxy)?.passes;
        let mut by_last: Vec<&Pass> = passes.iter().filter(|p| p.last().is_some()).collect();
        by_last.sort_by_key(|p| p.last());
        Some(Series {
            colour,
            label,
            pass: by_last.get(by_last.len() / 2)?,
        })
    })
    .collect()
}

/// The image's size, the plot area's place in it, and the axes' ends:
/// milliseconds across, answers completed (up to `n`) up.
struct Frame {
    n: usize,
    x_max_ms: f64,
    width: f64,
    height: f64,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
}

impl Frame {
    fn new(n: usize, latest: Duration) -> Frame {
        let (width, height, left, right, top, bottom) = (720.0, 400.0, 70.0, 20.0, 40.0, 50.0);
        Frame {
            n,
            x_max_ms: nice_ceiling(latest.as_secs_f64() * 1000.0),
            width,
            height,
            left,
            top,
            plot_w: width - left - right,
            plot_h: height - top - bottom,
        }
    }

    fn x(&self, t_ms: f64) -> f64 {
        self.left + self.plot_w * t_ms / self.x_max_ms
    }

    fn y(&self, count: f64) -> f64 {
        self.top + self.plot_h * (1.0 - count / self.n as f64)
    }
}

/// The opening tag, a white background and the title.
fn write_canvas(svg: &mut String, frame: &Frame) {
    let Frame {
        n, width, height, ..
    } = *frame;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{n} held requests released: answers completed after the release call</text>"#,
        width / 2.0
    );
}

/// Five steps on each axis: a grid line and its label.
fn write_grid(svg: &mut String, frame: &Frame) {
    let Frame {
        left,
        top,
        plot_w,
        plot_h,
        x_max_ms,
        n,
        ..
    } = *frame;
    for i in 0..=5 {
        let t = x_max_ms * i as f64 / 5.0;
        let count = n as f64 * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#eeeeee"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{t:.0}</text>"##,
            frame.x(t),
            top + plot_h,
            top + plot_h + 16.0
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eeeeee"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{count:.0}</text>"##,
            frame.y(count),
            left + plot_w,
            left - 6.0,
            frame.y(count) + 4.0
        );
    }
}

/// The plot area's border and the time axis's label.
fn write_plot_area(svg: &mut String, frame: &Frame) {
    let Frame {
        left,
        top,
        plot_w,
        plot_h,
        height,
        ..
    } = *frame;
    let _ = writeln!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">milliseconds after the release call (burst: after the first request was sent)</text>"#,
        left + plot_w / 2.0,
        height - 12.0
    );
}

/// The `i`-th series: its polyline, and its line in the legend.
fn write_series(svg: &mut String, frame: &Frame, i: usize, series: &Series) {
    let Series {
        colour,
        label,
        pass,
    } = series;
    // At most ~400 points: every k-th completion, and the last.
    let step = (pass.completions.len() / 400).max(1);
    let mut points = format!("{:.1},{:.1}", frame.x(0.0), frame.y(0.0));
    for (k, t) in pass.completions.iter().enumerate() {
        if k % step == 0 || k + 1 == pass.completions.len() {
            let _ = write!(
                points,
                " {:.1},{:.1}",
                frame.x(t.as_secs_f64() * 1000.0),
                frame.y((k + 1) as f64)
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
    );
    let (left, plot_w) = (frame.left, frame.plot_w);
    let ly = frame.top + 20.0 + 18.0 * i as f64;
    let _ = writeln!(
        svg,
        r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{2:.1}" y="{3:.1}">{label}</text>"#,
        left + plot_w - 220.0,
        left + plot_w - 196.0,
        left + plot_w - 190.0,
        ly + 4.0
    );
}

/// 1, 2 or 5 times a power of ten, at least `value`.
pub(super) fn nice_ceiling(value: f64) -> f64 {
    let power = 10f64.powf(value.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * power)
}
