//! The Markdown table and the SVG plot of a run.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::runs::{Pass, Throughput};
use crate::servers::{Proxy, Setup, Shape};
use crate::suite::{Passes, Plan, ThroughputRow, HOLDING_WORKERS};

pub struct Report {
    pub machine: String,
    pub plan: Plan,
    pub throughput: Vec<ThroughputRow>,
    /// One worker: the burst, then module, HAProxy and limit_req, per held count.
    pub release: Vec<Passes>,
    /// The largest held count with several workers: burst, then module.
    pub workers: Vec<Passes>,
    /// Released by `disable?rate=`, 2 workers (`plan.paced`).
    pub paced: Vec<Pass>,
    /// One worker with most of its `worker_connections` held (`plan.pressure`).
    pub pressure: Vec<Passes>,
    /// The command line on fleets of nginx (`plan.fleet_sizes`).
    pub fleet: Vec<crate::fleet::FleetTimes>,
    pub duration: Duration,
}

impl Report {
    pub fn new(setup: &Setup, plan: &Plan) -> Report {
        Report {
            machine: describe_machine(setup),
            plan: plan.clone(),
            throughput: vec![],
            release: vec![],
            workers: vec![],
            paced: vec![],
            pressure: vec![],
            fleet: vec![],
            duration: Duration::ZERO,
        }
    }
}

fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("{} ({e})", program.display()))
}

fn describe_machine(setup: &Setup) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), Linux {}, {}, {}, descriptors per process: {}; all on 127.0.0.1",
        kernel.trim(),
        first_line(&setup.nginx, &["-v"]).replace("nginx version: ", ""),
        first_line(&setup.haproxy, &["-v"])
            .split(" - ")
            .next()
            .unwrap_or(""),
        setup.fd_limit
    )
}

// ------------------------------------------------------------------ figures

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn median_of(passes: &[Pass], figure: impl Fn(&Pass) -> Option<f64>) -> Option<f64> {
    median(passes.iter().filter_map(figure).collect())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(value: Option<f64>) -> String {
    value.map_or("–".into(), |s| format!("{:.0} ms", s * 1000.0))
}

fn ratio(value: Option<f64>) -> String {
    // Three places: the throughput targets are 1 % apart from 1.
    value.map_or("–".into(), |r| format!("{r:.3}"))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "–",
    }
}

fn last(p: &Pass) -> Option<f64> {
    p.last().map(secs)
}

fn first(p: &Pass) -> Option<f64> {
    p.first().map(secs)
}

/// Ratios of paired figures (the same repetition), then their median.
fn paired_ratio(a: &[Pass], b: &[Pass], figure: impl Fn(&Pass) -> Option<f64>) -> Option<f64> {
    median(
        a.iter()
            .zip(b)
            .filter_map(|(a, b)| Some(figure(a)? / figure(b)?))
            .collect(),
    )
}

fn find(rows: &[Passes], held: usize, shape: Shape, proxy: Option<Proxy>) -> Option<&Passes> {
    rows.iter()
        .find(|p| p.held == held && p.shape == shape && p.proxy == proxy)
}

/// The module's order target across workers: `ORDER_WINDOW`.
const ORDER_TARGET: usize = 64;

/// The module's holding CPU target, per 10 s held.
const HOLD_CPU_TARGET: f64 = 0.01;

fn failures(passes: &[Pass]) -> String {
    let failed: usize = passes.iter().map(|p| p.failed + p.leaked).sum();
    let sent: usize = passes.iter().map(|p| p.held).sum();
    if failed == 0 {
        "0".into()
    } else {
        format!("**{failed} of {sent}**")
    }
}

fn order(passes: &[Pass]) -> (String, String, String) {
    let share = median_of(passes, |p| {
        (p.order.seen > 0).then_some(p.order.in_order_share)
    });
    let per_worker = median_of(passes, |p| {
        (p.order.seen > 0).then_some(p.order.in_order_share_per_worker)
    });
    let displaced = passes.iter().map(|p| p.order.max_displacement).max();
    (
        share.map_or("–".into(), |s| format!("{:.1} %", s * 100.0)),
        per_worker.map_or("–".into(), |s| format!("{:.1} %", s * 100.0)),
        displaced.map_or("–".into(), |d| d.to_string()),
    )
}

fn throughput_median(samples: &[Throughput], figure: impl Fn(&Throughput) -> f64) -> Option<f64> {
    median(samples.iter().map(figure).collect())
}

// -------------------------------------------------------------------- table

pub fn markdown(report: &Report) -> String {
    let plan = &report.plan;
    let mut md = String::new();
    let _ = writeln!(md, "Machine: {}.", report.machine);
    let _ = writeln!(
        md,
        "Run: `scripts/bench{}`, {} repetition(s) per figure (medians), {:.0} s in all.\n",
        if plan.quick { " --quick" } else { "" },
        plan.repetitions,
        report.duration.as_secs_f64()
    );

    let _ = writeln!(
        md,
        "**Not paused** (wrk, 1 thread, 64 connections, {} s × {}, turns taken; 1 nginx worker)\n",
        plan.wrk_secs, plan.wrk_repetitions
    );
    let _ = writeln!(md, "| Path | nginx req/s | with module req/s | ratio | target ≥ 0.99 | nginx p99 | with module p99 | p99 ratio | target ≤ 1.05 |");
    let _ = writeln!(md, "|---|---:|---:|---:|---|---:|---:|---:|---|");
    for row in &report.throughput {
        let rps = |s: &[Throughput]| throughput_median(s, |t| t.requests_per_sec);
        let p99 = |s: &[Throughput]| throughput_median(s, |t| t.p99_ms);
        let pair = |f: fn(&Throughput) -> f64| {
            median(
                row.module
                    .iter()
                    .zip(&row.plain)
                    .map(|(m, p)| f(m) / f(p))
                    .collect(),
            )
        };
        let rps_ratio = pair(|t| t.requests_per_sec);
        let p99_ratio = pair(|t| t.p99_ms);
        let _ = writeln!(
            md,
            "| `{}` ({}) | {:.0} | {:.0} | {} | {} | {:.2} ms | {:.2} ms | {} | {} |",
            row.path,
            if row.path.ends_with(".txt") {
                "static file"
            } else {
                "proxied"
            },
            rps(&row.plain).unwrap_or(0.0),
            rps(&row.module).unwrap_or(0.0),
            ratio(rps_ratio),
            verdict(rps_ratio.map(|r| r >= 0.99)),
            p99(&row.plain).unwrap_or(0.0),
            p99(&row.module).unwrap_or(0.0),
            ratio(p99_ratio),
            verdict(p99_ratio.map(|r| r <= 1.05)),
        );
    }

    let _ = writeln!(
        md,
        "\n**Holding** for {:.0} s (nginx workers; HAProxy with as many threads). CPU of every \
         worker (HAProxy: its process) while holding, per 10 s held.\n",
        plan.hold.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| Held | Workers | Holder | CPU s per 10 s held | target < {HOLD_CPU_TARGET} | bytes per held request | target |"
    );
    let _ = writeln!(md, "|---:|---:|---|---:|---|---:|---|");
    let one = Shape::workers(1);
    for &n in &plan.held_counts {
        let mem = |proxy| {
            find(&report.release, n, one, Some(proxy))
                .and_then(|p| median_of(&p.passes, |p| p.bytes_per_held))
        };
        let (haproxy_mem, floor_mem) = (mem(Proxy::Haproxy), mem(Proxy::LimitReq));
        for proxy in [Proxy::Module, Proxy::LimitReq, Proxy::Haproxy] {
            let Some(passes) = find(&report.release, n, one, Some(proxy)) else {
                continue;
            };
            let cpu = median_of(&passes.passes, |p| p.hold_cpu_per_10s.map(secs));
            let bytes = mem(proxy);
            let (cpu_target, mem_target) = if proxy == Proxy::Module {
                let vs_haproxy = bytes.zip(haproxy_mem).map(|(b, h)| b / h);
                let vs_floor = bytes.zip(floor_mem).map(|(b, f)| b / f);
                (
                    verdict(cpu.map(|c| c < HOLD_CPU_TARGET)).to_owned(),
                    format!(
                        "{} HAProxy's (≤ 1.00: {}); {} limit_req's (≤ 1.10: {})",
                        ratio(vs_haproxy),
                        verdict(vs_haproxy.map(|r| r <= 1.0)),
                        ratio(vs_floor),
                        verdict(vs_floor.map(|r| r <= 1.10)),
                    ),
                )
            } else {
                (String::new(), String::new())
            };
            let _ = writeln!(
                md,
                "| {n} | 1 | {} | {} | {cpu_target} | {} | {mem_target} |",
                proxy.label(),
                cpu.map_or("–".into(), |c| format!("{c:.3}")),
                bytes.map_or("–".into(), |b| format!("{b:.0}")),
            );
        }
    }
    if let Some(&n) = plan.held_counts.last() {
        let shape = Shape::workers(HOLDING_WORKERS);
        for proxy in [Proxy::Module, Proxy::Haproxy] {
            let Some(passes) = find(&report.workers, n, shape, Some(proxy)) else {
                continue;
            };
            let cpu = median_of(&passes.passes, |p| p.hold_cpu_per_10s.map(secs));
            let target = if proxy == Proxy::Module {
                verdict(cpu.map(|c| c < HOLD_CPU_TARGET))
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {n} | {HOLDING_WORKERS} | {} | {} | {target} | | |",
                proxy.label(),
                cpu.map_or("–".into(), |c| format!("{c:.3}")),
            );
        }
    }

    let _ = writeln!(
        md,
        "\n**Release** after the hold (1 nginx worker; HAProxy with 1 thread). Times from the release call \
         (`disable`, or HAProxy's `set maxconn server`) to the first and last answer; the burst sends the \
         same requests at once to nginx with nothing paused.\n"
    );
    let _ = writeln!(md, "| Held | Released by | first | last | last ÷ burst | module ÷ HAProxy | target ≤ 0.75 | failed | in arrival order | farthest out of place |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for &n in &plan.held_counts {
        let burst = find(&report.release, n, one, None);
        let haproxy = find(&report.release, n, one, Some(Proxy::Haproxy));
        for (label, passes) in [
            ("burst, no pause", burst),
            (
                Proxy::Module.label(),
                find(&report.release, n, one, Some(Proxy::Module)),
            ),
            (Proxy::Haproxy.label(), haproxy),
        ] {
            let Some(passes) = passes else { continue };
            let vs_burst = burst.and_then(|b| paired_ratio(&passes.passes, &b.passes, last));
            let vs_haproxy = (passes.proxy == Some(Proxy::Module))
                .then(|| haproxy.and_then(|h| paired_ratio(&passes.passes, &h.passes, last)))
                .flatten();
            let (in_order, _, displaced) = order(&passes.passes);
            let _ = writeln!(
                md,
                "| {n} | {label} | {} | {} | {} | {} | {} | {} | {in_order} | {displaced} |",
                ms(median_of(&passes.passes, first)),
                ms(median_of(&passes.passes, last)),
                if passes.proxy.is_none() {
                    "1".into()
                } else {
                    ratio(vs_burst)
                },
                ratio(vs_haproxy),
                if vs_haproxy.is_some() {
                    verdict(vs_haproxy.map(|r| r <= 0.75))
                } else {
                    ""
                },
                failures(&passes.passes),
            );
        }
    }

    if let Some(n) = plan.held_counts.last() {
        let _ = writeln!(
            md,
            "\n**Several workers** (HAProxy: as many threads; nginx listens with `reuseport`): {n} held, \
             then released; upstream connections one per request, or kept alive and reused \
             (nginx's `keepalive`, HAProxy's `http-reuse always`). Order at the upstream: by \
             connection, or by request when connections are reused. The module's order target is \
             every request within {ORDER_TARGET} places of its arrival position, across all workers. \
             *In send order* and *farthest out of place* compare with the order the client sent the \
             requests in, which the workers of nginx (or HAProxy's threads) do not read in exactly; \
             *from arrival at nginx* compares with the order nginx received them in, the module's \
             tickets (`$intermission_ticket`, passed to the upstream), which is what the module \
             keeps.\n"
        );
        let _ = writeln!(md, "| Workers | Upstream connections | Released by | first | last | last ÷ burst | module ÷ HAProxy | target ≤ 0.75 | failed | in send order | farthest out of place | from arrival at nginx | target ≤ {ORDER_TARGET} |");
        let _ = writeln!(
            md,
            "|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
        );
        for &w in &plan.worker_counts {
            for keepalive in [false, true] {
                let shape = Shape::workers(w).keepalive(keepalive);
                let burst = find(&report.workers, *n, shape, None);
                let haproxy = find(&report.workers, *n, shape, Some(Proxy::Haproxy));
                let rows = [
                    burst,
                    find(&report.workers, *n, shape, Some(Proxy::Module)),
                    haproxy,
                ];
                for passes in rows.into_iter().flatten() {
                    let is_module = passes.proxy == Some(Proxy::Module);
                    let vs_burst =
                        burst.and_then(|b| paired_ratio(&passes.passes, &b.passes, last));
                    let vs_haproxy = is_module
                        .then(|| {
                            haproxy.and_then(|h| paired_ratio(&passes.passes, &h.passes, last))
                        })
                        .flatten();
                    let (in_order, _, displaced) = order(&passes.passes);
                    let from_arrival = passes
                        .passes
                        .iter()
                        .map(|p| p.order.max_displacement_from_arrival)
                        .collect::<Option<Vec<usize>>>()
                        .and_then(|d| d.into_iter().max());
                    let _ = writeln!(
                        md,
                        "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {in_order} | {displaced} | {} | {} |",
                        if keepalive { "kept alive" } else { "one per request" },
                        passes.proxy.map_or("burst, no pause", Proxy::label),
                        ms(median_of(&passes.passes, first)),
                        ms(median_of(&passes.passes, last)),
                        ratio(vs_burst),
                        ratio(vs_haproxy),
                        if is_module { verdict(vs_haproxy.map(|r| r <= 0.75)) } else { "" },
                        failures(&passes.passes),
                        from_arrival.map_or("–".into(), |d| d.to_string()),
                        if is_module {
                            verdict(from_arrival.map(|d| d <= ORDER_TARGET))
                        } else {
                            ""
                        },
                    );
                }
            }
        }
    }

    if !report.paced.is_empty() {
        let (n, rate) = plan.paced;
        let _ = writeln!(
            md,
            "\n**Paced release** (`disable?rate={rate}`, 2 nginx workers): {n} held for 1 s. The target is the \
             rate: at most {rate} per second across both workers, the first at once, so the last about \
             {:.2} s after the release.\n",
            (n - 1) as f64 / rate as f64
        );
        let _ = writeln!(md, "| Held | rate asked | first | last | rate seen | failed | in arrival order | within each worker |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        let seen = median_of(&report.paced, |p| {
            let (first, last) = (p.first()?, p.last()?);
            let spread = last.saturating_sub(first).as_secs_f64();
            (spread > 0.0).then(|| (p.completions.len() - 1) as f64 / spread)
        });
        let (in_order, per_worker, _) = order(&report.paced);
        let _ = writeln!(
            md,
            "| {n} | {rate}/s | {} | {} | {} | {} | {in_order} | {per_worker} |",
            ms(median_of(&report.paced, first)),
            ms(median_of(&report.paced, last)),
            seen.map_or("–".into(), |r| format!("{r:.0}/s")),
            failures(&report.paced),
        );
    }

    if !report.pressure.is_empty() {
        let _ = writeln!(
            md,
            "\n**Connection pressure** (1 nginx worker, most of its `worker_connections` taken by the \
             requests it holds): time from `disable` to the first and last answer.\n"
        );
        let _ = writeln!(md, "| worker_connections | Held | first | last | failed |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        for passes in &report.pressure {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                passes.shape.connections.unwrap_or(0),
                passes.held,
                ms(median_of(&passes.passes, first)),
                ms(median_of(&passes.passes, last)),
                failures(&passes.passes),
            );
        }
    }

    if !report.fleet.is_empty() {
        let _ = writeln!(
            md,
            "\n**Fleet** (the `intermission` command line, on one nginx with one worker per host, all on \
             loopback): wall time of `pause` and `resume` of every host, all or nothing, and of a `pause` \
             with one more host that is down (refused at once), which rolls the others back. Targets: 100 \
             hosts under 0.3 s each way, 500 under 1.5 s.\n"
        );
        let _ = writeln!(
            md,
            "| Hosts | pause | resume | pause, one down, rolled back | target | failures |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---|---|");
        for times in &report.fleet {
            let median_of = |d: &[Duration]| median(d.iter().map(|d| d.as_secs_f64()).collect());
            let (pause, resume, rolled) = (
                median_of(&times.pause),
                median_of(&times.resume),
                median_of(&times.rolled_back),
            );
            let limit = match times.hosts {
                100 => Some(0.3),
                500 => Some(1.5),
                _ => None,
            };
            let target = limit.map_or(String::new(), |limit| {
                verdict(pause.zip(resume).map(|(p, r)| p < limit && r < limit)).to_owned()
            });
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {target} | {} |",
                times.hosts,
                ms(pause),
                ms(resume),
                ms(rolled),
                if times.failures.is_empty() {
                    "0".to_owned()
                } else {
                    format!("**{}**", times.failures.join("; "))
                },
            );
        }
    }

    let mut errors: Vec<&String> = report
        .release
        .iter()
        .chain(&report.workers)
        .chain(&report.pressure)
        .flat_map(|p| p.passes.iter().flat_map(|p| &p.errors))
        .chain(report.paced.iter().flat_map(|p| &p.errors))
        .collect();
    if !errors.is_empty() {
        let total = errors.len();
        errors.truncate(3);
        let _ = writeln!(
            md,
            "\nnginx error log ({total} lines at [error] or worse; the first {}):\n",
            errors.len()
        );
        for line in errors {
            let _ = writeln!(md, "    {line}");
        }
    }
    md
}

// --------------------------------------------------------------------- plot

/// Answers completed over time after the release, for the largest held
/// count: the module, HAProxy and the no-pause burst (the repetition with the
/// median last answer of each). Plain SVG, drawn here: three polylines and
/// two axes need no plotting library.
pub fn svg(report: &Report) -> String {
    let Some(&n) = report.plan.held_counts.last() else {
        return String::new();
    };
    let series: Vec<(&str, &str, &Pass)> = [
        (None, "#888888", "burst, no pause"),
        (Some(Proxy::Module), "#1f77b4", Proxy::Module.label()),
        (Some(Proxy::Haproxy), "#d62728", Proxy::Haproxy.label()),
    ]
    .into_iter()
    .filter_map(|(proxy, colour, label)| {
        let passes = &find(&report.release, n, Shape::workers(1), proxy)?.passes;
        let mut by_last: Vec<&Pass> = passes.iter().filter(|p| p.last().is_some()).collect();
        by_last.sort_by_key(|p| p.last());
        Some((colour, label, *by_last.get(by_last.len() / 2)?))
    })
    .collect();
    let max_x = series
        .iter()
        .filter_map(|(_, _, p)| p.last())
        .max()
        .unwrap_or(Duration::from_millis(1));
    let x_max_ms = nice_ceiling(max_x.as_secs_f64() * 1000.0);
    let (width, height, left, right, top, bottom) = (720.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let x = |t_ms: f64| left + plot_w * t_ms / x_max_ms;
    let y = |count: f64| top + plot_h * (1.0 - count / n as f64);

    let mut svg = String::new();
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
    for i in 0..=5 {
        let t = x_max_ms * i as f64 / 5.0;
        let count = n as f64 * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#eeeeee"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{t:.0}</text>"##,
            x(t),
            top + plot_h,
            top + plot_h + 16.0
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eeeeee"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{count:.0}</text>"##,
            y(count),
            left + plot_w,
            left - 6.0,
            y(count) + 4.0
        );
    }
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
    for (i, (colour, label, pass)) in series.iter().enumerate() {
        // At most ~400 points: every k-th completion, and the last.
        let step = (pass.completions.len() / 400).max(1);
        let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
        for (k, t) in pass.completions.iter().enumerate() {
            if k % step == 0 || k + 1 == pass.completions.len() {
                let _ = write!(
                    points,
                    " {:.1},{:.1}",
                    x(t.as_secs_f64() * 1000.0),
                    y((k + 1) as f64)
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
        );
        let ly = top + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{2:.1}" y="{3:.1}">{label}</text>"#,
            left + plot_w - 220.0,
            left + plot_w - 196.0,
            left + plot_w - 190.0,
            ly + 4.0
        );
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    let power = 10f64.powf(value.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * power)
}

pub fn write(report: &Report, out: &Path) -> io::Result<()> {
    fs::create_dir_all(out)?;
    let md = markdown(report);
    fs::write(out.join("results.md"), &md)?;
    fs::write(out.join("release.svg"), svg(report))?;
    println!("{md}");
    eprintln!(
        "bench: wrote {} and {}",
        out.join("results.md").display(),
        out.join("release.svg").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetTimes;
    use crate::order::OrderStats;
    use crate::servers::{PROXIED_PATH, STATIC_PATH};

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn axis_ends() {
        assert_eq!(nice_ceiling(830.0), 1000.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(4.2), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn paired_ratios_pair_repetitions() {
        let pass = |last_ms: u64| Pass {
            completions: vec![Duration::from_millis(last_ms)],
            ..Pass::default()
        };
        let a = [pass(100), pass(300)];
        let b = [pass(200), pass(300)];
        assert_eq!(paired_ratio(&a, &b, last), Some(0.75));
    }

    /// A pass whose `held` answers complete evenly from `first_ms` to
    /// `last_ms`, all in order.
    fn pass(held: usize, first_ms: u64, last_ms: u64) -> Pass {
        let span_us = (last_ms - first_ms) * 1000;
        let completions = (0..held as u64)
            .map(|k| {
                Duration::from_millis(first_ms)
                    + Duration::from_micros(span_us * k / (held.max(2) as u64 - 1))
            })
            .collect();
        Pass {
            held,
            completions,
            order: OrderStats {
                seen: held,
                in_order_share: 1.0,
                max_displacement: 0,
                max_displacement_from_arrival: None,
                in_order_share_per_worker: 1.0,
            },
            ..Pass::default()
        }
    }

    /// `pass`, after a hold that cost `cpu_ms` per 10 s and `bytes` per request.
    fn held(held: usize, first_ms: u64, last_ms: u64, cpu_ms: u64, bytes: Option<f64>) -> Pass {
        Pass {
            hold_cpu_per_10s: Some(Duration::from_millis(cpu_ms)),
            bytes_per_held: bytes,
            ..pass(held, first_ms, last_ms)
        }
    }

    fn out_of_order(pass: Pass, share: f64, displaced: usize, from_arrival: Option<usize>) -> Pass {
        Pass {
            order: OrderStats {
                in_order_share: share,
                max_displacement: displaced,
                max_displacement_from_arrival: from_arrival,
                in_order_share_per_worker: 1.0,
                ..pass.order
            },
            ..pass
        }
    }

    fn row(held: usize, shape: Shape, proxy: Option<Proxy>, passes: Vec<Pass>) -> Passes {
        Passes {
            held,
            shape,
            proxy,
            passes,
        }
    }

    fn throughput(figures: &[(f64, f64)]) -> Vec<Throughput> {
        figures
            .iter()
            .map(|&(requests_per_sec, p99_ms)| Throughput {
                requests_per_sec,
                p99_ms,
            })
            .collect()
    }

    fn durations(ms: &[u64]) -> Vec<Duration> {
        ms.iter().map(|&ms| Duration::from_millis(ms)).collect()
    }

    /// A run of every section, with figures that meet some targets and miss
    /// others, rows left out, failures and error-log lines.
    fn synthetic_report() -> Report {
        let plan = Plan {
            quick: false,
            repetitions: 2,
            hold: Duration::from_secs(10),
            held_counts: vec![100, 1_000],
            worker_counts: vec![2, 4],
            wrk_secs: 5,
            wrk_repetitions: 2,
            paced: (500, 1_000),
            pressure: vec![(64, 40), (768, 740)],
            fleet_sizes: vec![10, 100, 500],
        };
        let one = Shape::workers(1);
        let release = vec![
            row(100, one, None, vec![pass(100, 1, 9), pass(100, 2, 11)]),
            row(
                100,
                one,
                Some(Proxy::Module),
                vec![
                    held(100, 1, 6, 2, Some(10_500.0)),
                    held(100, 1, 7, 3, Some(10_700.0)),
                ],
            ),
            // No bytes per held request: the module's ratio to HAProxy's is unknown.
            row(
                100,
                one,
                Some(Proxy::Haproxy),
                vec![held(100, 3, 15, 40, None), held(100, 4, 16, 50, None)],
            ),
            row(
                1_000,
                one,
                None,
                vec![pass(1_000, 2, 80), pass(1_000, 2, 90)],
            ),
            row(
                1_000,
                one,
                Some(Proxy::Module),
                vec![
                    held(1_000, 3, 60, 8, Some(9_800.0)),
                    Pass {
                        failed: 3,
                        leaked: 1,
                        errors: vec![
                            "2024/01/01 00:00:00 [error] 11#11: *3 upstream timed out".into(),
                            "2024/01/01 00:00:01 [crit] 11#11: *4 connect() failed".into(),
                        ],
                        ..out_of_order(held(1_000, 4, 75, 14, Some(10_200.0)), 0.987, 12, None)
                    },
                ],
            ),
            row(
                1_000,
                one,
                Some(Proxy::LimitReq),
                vec![
                    held(1_000, 0, 0, 1, Some(9_000.0)),
                    held(1_000, 0, 0, 1, Some(9_100.0)),
                ],
            ),
            row(
                1_000,
                one,
                Some(Proxy::Haproxy),
                vec![
                    held(1_000, 5, 110, 300, Some(11_000.0)),
                    held(1_000, 6, 95, 280, Some(11_500.0)),
                ],
            ),
        ];
        let mut workers = vec![];
        for w in [2, 4] {
            for keepalive in [false, true] {
                let shape = Shape::workers(w).keepalive(keepalive);
                let slower = w as u64 * if keepalive { 2 } else { 3 };
                workers.push(row(
                    1_000,
                    shape,
                    None,
                    vec![pass(1_000, 2, 40 + slower), pass(1_000, 2, 45 + slower)],
                ));
                let from_arrival = match (w, keepalive) {
                    (2, _) => [Some(3), Some(5)],
                    (4, false) => [Some(3), None],
                    _ => [Some(70), Some(90)],
                };
                workers.push(row(
                    1_000,
                    shape,
                    Some(Proxy::Module),
                    from_arrival
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| {
                            let pass = held(1_000, 3, 30 + slower + i as u64, 9, Some(9_900.0));
                            out_of_order(pass, 0.91 - 0.01 * i as f64, 40 + w, d)
                        })
                        .collect(),
                ));
                // HAProxy with 4 threads and kept-alive connections is left out.
                if w == 4 && keepalive {
                    continue;
                }
                workers.push(row(
                    1_000,
                    shape,
                    Some(Proxy::Haproxy),
                    vec![
                        held(1_000, 5, 50 + slower, 250, None),
                        held(1_000, 5, 55 + slower, 260, None),
                    ],
                ));
            }
        }
        workers[1].passes[0]
            .errors
            .push("2024/01/01 00:00:02 [error] 12#12: *9 recv() failed".into());
        let paced_pass = |last_ms| Pass {
            order: OrderStats {
                in_order_share: 0.93,
                in_order_share_per_worker: 1.0,
                ..pass(500, 0, last_ms).order
            },
            ..pass(500, 0, last_ms)
        };
        let mut paced = vec![paced_pass(499), paced_pass(520)];
        paced[1].failed = 2;
        paced[1]
            .errors
            .push("2024/01/01 00:00:03 [alert] 1#1: worker process 12 exited".into());
        let pressure = vec![
            row(
                40,
                one.connections(64),
                Some(Proxy::Module),
                vec![pass(40, 1, 3), pass(40, 1, 4)],
            ),
            row(
                740,
                one.connections(768),
                Some(Proxy::Module),
                vec![pass(740, 2, 30), pass(740, 2, 33)],
            ),
        ];
        let fleet = vec![
            FleetTimes {
                hosts: 10,
                pause: durations(&[21, 23]),
                resume: durations(&[19, 20]),
                rolled_back: durations(&[30, 31]),
                failures: vec![],
            },
            FleetTimes {
                hosts: 100,
                pause: durations(&[120, 130]),
                resume: durations(&[110, 115]),
                rolled_back: durations(&[150, 170]),
                failures: vec![],
            },
            FleetTimes {
                hosts: 500,
                pause: durations(&[1_400, 1_700]),
                resume: durations(&[900, 950]),
                rolled_back: durations(&[2_000, 2_100]),
                failures: vec![
                    "pause of 500 failed".into(),
                    "a host stayed paused after the rollback".into(),
                ],
            },
        ];
        Report {
            machine:
                "2 cores (Test CPU @ 2.0GHz), Linux 6.1.0-test, nginx/1.26.3, HAProxy version \
                      2.6.12, descriptors per process: 65536; all on 127.0.0.1"
                    .into(),
            plan,
            throughput: vec![
                ThroughputRow {
                    path: PROXIED_PATH,
                    plain: throughput(&[(20_000.0, 3.1), (21_000.0, 3.0)]),
                    module: throughput(&[(19_900.0, 3.2), (20_500.0, 3.3)]),
                },
                ThroughputRow {
                    path: STATIC_PATH,
                    plain: throughput(&[(30_000.0, 2.0), (31_000.0, 2.1)]),
                    module: throughput(&[(29_990.0, 2.05), (30_800.0, 2.1)]),
                },
            ],
            release,
            workers,
            paced,
            pressure,
            fleet,
            duration: Duration::from_millis(529_400),
        }
    }

    /// The rendering of `synthetic_report`, pinned: the table and the plot
    /// must not change when the code that writes them is reshaped.
    #[test]
    fn a_report_renders_as_before() {
        let report = synthetic_report();
        assert_eq!(markdown(&report), include_str!("../testdata/results.md"));
        assert_eq!(svg(&report), include_str!("../testdata/release.svg"));
    }

    #[test]
    fn a_report_of_nothing_has_its_headings_and_no_plot() {
        let report = Report {
            machine: "a machine".into(),
            plan: Plan {
                held_counts: vec![],
                ..Plan::new(true)
            },
            throughput: vec![],
            release: vec![],
            workers: vec![],
            paced: vec![],
            pressure: vec![],
            fleet: vec![],
            duration: Duration::from_secs(3),
        };
        let expected = "\
Machine: a machine.
Run: `scripts/bench --quick`, 1 repetition(s) per figure (medians), 3 s in all.

**Not paused** (wrk, 1 thread, 64 connections, 2 s × 1, turns taken; 1 nginx worker)

| Path | nginx req/s | with module req/s | ratio | target ≥ 0.99 | nginx p99 | with module p99 | p99 ratio | target ≤ 1.05 |
|---|---:|---:|---:|---|---:|---:|---:|---|

**Holding** for 2 s (nginx workers; HAProxy with as many threads). CPU of every worker (HAProxy: its process) while holding, per 10 s held.

| Held | Workers | Holder | CPU s per 10 s held | target < 0.01 | bytes per held request | target |
|---:|---:|---|---:|---|---:|---|

**Release** after the hold (1 nginx worker; HAProxy with 1 thread). Times from the release call (`disable`, or HAProxy's `set maxconn server`) to the first and last answer; the burst sends the same requests at once to nginx with nothing paused.

| Held | Released by | first | last | last ÷ burst | module ÷ HAProxy | target ≤ 0.75 | failed | in arrival order | farthest out of place |
|---:|---|---:|---:|---:|---:|---|---:|---:|---:|
";
        assert_eq!(markdown(&report), expected);
        assert_eq!(svg(&report), "");
    }
}
