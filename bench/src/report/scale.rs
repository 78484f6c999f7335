//! The scale section of results.md: holding and releasing up to 50,000
//! requests on several workers, the module beside HAProxy and limit_req,
//! with the targets and their verdicts.

use std::fmt::Write as _;

use super::{find, median_of, paired_ratio, ratio, secs, verdict, Report, ORDER_TARGET};
use crate::plan::{Passes, HAPROXY_MOST_HELD};
use crate::runs::Pass;
use crate::servers::{Proxy, Shape};

/// Bytes per held request, at most this many times limit_req's.
const MEMORY_TARGET: f64 = 1.02;
/// Time per released request at the largest count, at most this many times
/// the figure at the smallest.
const PER_REQUEST_TARGET: f64 = 1.20;
/// The module's release time, at most this many times HAProxy's, with
/// upstream keep-alive.
const VS_HAPROXY_TARGET: f64 = 0.6;
/// CPU while holding, per 10 s held, below which it reads 0.000.
const ZERO_CPU: f64 = 0.0005;

/// The workers the order target is set for.
const ORDER_WORKERS: usize = 4;

/// One row's figures, medians over its repetitions.
struct Figures {
    hold_cpu: Option<f64>,
    bytes: Option<f64>,
    last: Option<f64>,
    upstream_busy: Option<f64>,
    failed: usize,
    from_arrival: Option<usize>,
    /// The same over requests sent on upstream connections used before.
    from_arrival_reused: Option<usize>,
}

impl Figures {
    fn of(passes: &[Pass]) -> Figures {
        Figures {
            hold_cpu: median_of(passes, |p| p.hold_cpu_per_10s.map(secs)),
            bytes: median_of(passes, |p| p.bytes_per_held),
            last: median_of(passes, |p| p.last().map(secs)),
            // The upstream's CPU over the release's length: under 1, its one
            // thread waited for work part of the time.
            upstream_busy: median_of(passes, |p| Some(secs(p.release_cpu?[1]) / secs(p.last()?))),
            failed: passes.iter().map(|p| p.failed + p.leaked).sum(),
            from_arrival: passes
                .iter()
                .filter_map(|p| p.order.max_displacement_from_arrival)
                .max(),
            from_arrival_reused: passes
                .iter()
                .filter_map(|p| p.order.max_displacement_from_arrival_reused)
                .max(),
        }
    }
}

fn shape(workers: usize, keepalive: bool) -> Shape {
    Shape::workers(workers).keepalive(keepalive).spread()
}

fn upstream_label(keepalive: bool) -> &'static str {
    if keepalive {
        "kept alive"
    } else {
        "one per request"
    }
}

pub fn write_scale(md: &mut String, report: &Report) {
    if report.scale.is_empty() {
        return;
    }
    let plan = &report.plan;
    let _ = writeln!(
        md,
        "\n**Scale** (nginx workers listening with `reuseport`; HAProxy one process with as many \
         threads): requests held {:.0} s, then released; upstream connections one per request, \
         or kept alive (nginx's `keepalive 512`, HAProxy's `http-reuse always`, both pools warmed \
         before the pause); the client spread over processes, 12,500 connections each from \
         127.0.0.2, .3, ...; {} repetition(s), medians. HAProxy is compared up to {} held: one \
         process under the same descriptor limit. *Upstream busy*: the upstream's CPU time over \
         the release's length (its one thread; under 1, it waited for work). *From arrival*: \
         the farthest any request reached the upstream from its place in the order nginx \
         received them in (its ticket), with kept-alive connections by the kernel's receive \
         time stamps, and in brackets the farthest among the requests a worker sent on an \
         upstream connection it had used before (not one it opened for the request).\n",
        plan.scale_hold.as_secs_f64(),
        plan.scale_repetitions,
        fmt_count(HAPROXY_MOST_HELD),
    );
    let _ = writeln!(
        md,
        "| Workers | Upstream connections | Held | Holder | CPU s per 10 s held | bytes per held | ÷ limit_req's | release | per released request | module ÷ HAProxy | upstream busy | failed | from arrival |"
    );
    let _ = writeln!(
        md,
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (workers, counts) in &plan.scale {
        for keepalive in [false, true] {
            for &n in counts {
                write_rows(md, report, *workers, keepalive, n);
            }
        }
    }
    write_targets(md, report);
}

fn write_rows(md: &mut String, report: &Report, workers: usize, keepalive: bool, n: usize) {
    let at = shape(workers, keepalive);
    let module = find(&report.scale, n, at, Some(Proxy::Module));
    let haproxy = find(&report.scale, n, at, Some(Proxy::Haproxy));
    let floor = limit_req_bytes(report, workers, n);
    for passes in [
        module,
        haproxy,
        find(&report.scale, n, at, Some(Proxy::LimitReq)),
    ]
    .into_iter()
    .flatten()
    {
        let figures = Figures::of(&passes.passes);
        let proxy = passes.proxy.expect("a proxy");
        let is_module = proxy == Proxy::Module;
        let vs_floor = figures.bytes.zip(floor).map(|(b, f)| b / f);
        let vs_haproxy = module
            .zip(haproxy)
            .and_then(|(m, h)| paired_ratio(&m.passes, &h.passes, super::last));
        let released = proxy != Proxy::LimitReq;
        let _ = writeln!(
            md,
            "| {workers} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            upstream_label(keepalive),
            fmt_count(n),
            proxy.label(),
            figures.hold_cpu.map_or("–".into(), |c| format!("{c:.3}")),
            figures.bytes.map_or("–".into(), |b| format!("{b:.0}")),
            // limit_req is measured with new upstream connections, whose
            // proxies hold no warmed pool of kept-alive ones.
            if is_module && !keepalive {
                ratio(vs_floor)
            } else {
                String::new()
            },
            if released {
                seconds(figures.last)
            } else {
                "–".into()
            },
            if released {
                per_request(figures.last, n)
            } else {
                "–".into()
            },
            if is_module {
                ratio(vs_haproxy)
            } else {
                String::new()
            },
            if released {
                ratio(figures.upstream_busy)
            } else {
                "–".into()
            },
            if figures.failed == 0 {
                "0".into()
            } else {
                format!("**{}**", figures.failed)
            },
            if is_module {
                from_arrival(&figures, keepalive)
            } else {
                "–".into()
            },
        );
    }
}

/// The farthest from arrival; with kept-alive connections, then the
/// farthest among requests sent on a connection the worker had used before.
fn from_arrival(figures: &Figures, keepalive: bool) -> String {
    let all = figures.from_arrival.map_or("–".into(), |d| d.to_string());
    match figures.from_arrival_reused {
        Some(reused) if keepalive => format!("{all} ({reused})"),
        _ => all,
    }
}

/// limit_req's bytes per held request on `workers` at `n` (it parks the
/// same way whatever the upstream connections).
fn limit_req_bytes(report: &Report, workers: usize, n: usize) -> Option<f64> {
    let passes = find(
        &report.scale,
        n,
        shape(workers, false),
        Some(Proxy::LimitReq),
    )?;
    median_of(&passes.passes, |p| p.bytes_per_held)
}

fn module_rows(report: &Report) -> impl Iterator<Item = &Passes> {
    report
        .scale
        .iter()
        .filter(|p| p.proxy == Some(Proxy::Module))
}

/// The targets, each with the figure that decides it.
fn write_targets(md: &mut String, report: &Report) {
    let _ = writeln!(md, "\n| Scale target | figure | verdict |");
    let _ = writeln!(md, "|---|---|---|");
    write_holding_targets(md, report);
    write_release_targets(md, report);
}

/// The largest of some figures, if any.
fn largest(figures: impl Iterator<Item = f64>) -> Option<f64> {
    figures.fold(None, |most: Option<f64>, f| {
        Some(most.map_or(f, |m| m.max(f)))
    })
}

/// CPU and memory while holding.
fn write_holding_targets(md: &mut String, report: &Report) {
    let cpu = largest(module_rows(report).filter_map(|p| Figures::of(&p.passes).hold_cpu));
    let _ = writeln!(
        md,
        "| CPU while holding 0 at every size | at most {} s per 10 s held | {} |",
        cpu.map_or("–".into(), |c| format!("{c:.3}")),
        verdict(cpu.map(|c| c < ZERO_CPU)),
    );
    let memory = largest(
        module_rows(report)
            .filter(|p| !p.shape.keepalive)
            .filter_map(|p| {
                let bytes = Figures::of(&p.passes).bytes?;
                Some(bytes / limit_req_bytes(report, p.shape.workers, p.held)?)
            }),
    );
    let _ = writeln!(
        md,
        "| bytes per held at most limit_req's + {:.0} % | at most {} of limit_req's | {} |",
        (MEMORY_TARGET - 1.0) * 100.0,
        ratio(memory),
        verdict(memory.map(|r| r <= MEMORY_TARGET)),
    );
}

/// Release time per request across sizes and against HAProxy's, order and
/// failures.
fn write_release_targets(md: &mut String, report: &Report) {
    for keepalive in [true, false] {
        let growth = per_request_growth(report, keepalive);
        let _ = writeln!(
            md,
            "| time per released request at the largest count within +{:.0} % of the smallest's, {ORDER_WORKERS} workers, upstream {} | {} | {} |",
            (PER_REQUEST_TARGET - 1.0) * 100.0,
            upstream_label(keepalive),
            growth.as_ref().map_or("–".into(), |(small, large, r)| format!(
                "{small} → {large} ({r:.2}×)"
            )),
            verdict(growth.as_ref().map(|(_, _, r)| *r <= PER_REQUEST_TARGET)),
        );
    }
    let vs_haproxy = largest(
        module_rows(report)
            .filter(|p| p.shape.keepalive)
            .filter_map(|m| {
                let h = find(&report.scale, m.held, m.shape, Some(Proxy::Haproxy))?;
                paired_ratio(&m.passes, &h.passes, super::last)
            }),
    );
    let _ = writeln!(
        md,
        "| release at most {VS_HAPROXY_TARGET} of HAProxy's time at every size both hold, upstream kept alive | at most {} | {} |",
        ratio(vs_haproxy),
        verdict(vs_haproxy.map(|r| r <= VS_HAPROXY_TARGET)),
    );
    let order = module_rows(report)
        .filter(|p| p.shape.workers == ORDER_WORKERS)
        .filter_map(|p| Figures::of(&p.passes).from_arrival)
        .max();
    let _ = writeln!(
        md,
        "| order within {ORDER_TARGET} places on {ORDER_WORKERS} workers | farthest {} | {} |",
        order.map_or("–".into(), |d| d.to_string()),
        verdict(order.map(|d| d <= ORDER_TARGET)),
    );
    let failed: usize = report
        .scale
        .iter()
        .flat_map(|p| &p.passes)
        .map(|p| p.failed + p.leaked)
        .sum();
    let _ = writeln!(
        md,
        "| nothing fails | {failed} failed | {} |",
        verdict(Some(failed == 0)),
    );
}

/// On `ORDER_WORKERS` workers: the time per released request at the
/// smallest and largest counts, and their ratio.
fn per_request_growth(report: &Report, keepalive: bool) -> Option<(String, String, f64)> {
    let (_, counts) = report
        .plan
        .scale
        .iter()
        .find(|(workers, _)| *workers == ORDER_WORKERS)?;
    let (&small, &large) = (counts.first()?, counts.last()?);
    let each = |n: usize| {
        let passes = find(
            &report.scale,
            n,
            shape(ORDER_WORKERS, keepalive),
            Some(Proxy::Module),
        )?;
        Some(Figures::of(&passes.passes).last? / n as f64)
    };
    let (a, b) = (each(small)?, each(large)?);
    Some((
        per_request(Some(a * small as f64), small),
        per_request(Some(b * large as f64), large),
        b / a,
    ))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("–".into(), |s| {
        if s < 1.0 {
            format!("{:.0} ms", s * 1000.0)
        } else {
            format!("{s:.2} s")
        }
    })
}

fn per_request(last: Option<f64>, n: usize) -> String {
    last.map_or("–".into(), |s| {
        format!("{:.1} µs", s * 1e6 / n.max(1) as f64)
    })
}

/// 50000 as 50,000.
pub fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
