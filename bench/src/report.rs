//! The report of a run: its Markdown tables (results.md), one per section,
//! and the SVG plot of the largest release (release.svg).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fleet::FleetTimes;
use crate::plan::{Passes, Plan, ThroughputRow};
use crate::runs::{Pass, Throughput};
use crate::servers::{Proxy, Setup, Shape};

mod plot;
mod scale;
mod scale_plot;
pub use plot::svg;
pub use scale_plot::scale_svg;

pub struct Report {
    pub machine: String,
    pub plan: Plan,
    pub throughput: Vec<ThroughputRow>,
    /// One worker: the burst, then module, HAProxy and limit_req, per held count.
    pub release: Vec<Passes>,
    /// The scale runs (`plan.scale`): module, HAProxy and limit_req.
    pub scale: Vec<Passes>,
    /// Released by `disable?rate=`, 2 workers (`plan.paced`).
    pub paced: Vec<Pass>,
    /// One worker with most of its `worker_connections` held (`plan.pressure`).
    pub pressure: Vec<Passes>,
    /// The command line on fleets of nginx (`plan.fleet_sizes`).
    pub fleet: Vec<FleetTimes>,
    pub duration: Duration,
}

impl Report {
    pub fn new(setup: &Setup, plan: &Plan) -> Report {
        Report {
            machine: describe_machine(setup),
            plan: plan.clone(),
            throughput: vec![],
            release: vec![],
            scale: vec![],
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

fn median(mut values: Vec<f64>) -> Option<f64> {
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

/// The project's order target across workers: every request within this
/// many places of its arrival position (the module's `ORDER_WINDOW` keeps
/// inside it).
const ORDER_TARGET: usize = 32;

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

/// results.md: the machine and the run, then one section per workload.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    write_machine_and_run(&mut md, report);
    write_not_paused(&mut md, report);
    write_holding(&mut md, report);
    write_release(&mut md, report);
    scale::write_scale(&mut md, report);
    write_paced_release(&mut md, report);
    write_connection_pressure(&mut md, report);
    write_fleet(&mut md, report);
    write_error_log(&mut md, report);
    md
}

fn write_machine_and_run(md: &mut String, report: &Report) {
    let plan = &report.plan;
    let _ = writeln!(md, "Machine: {}.", report.machine);
    let _ = writeln!(
        md,
        "Run: `scripts/bench{}`, {} repetition(s) per figure (medians), {:.0} s in all.\n",
        if plan.quick { " --quick" } else { "" },
        plan.repetitions,
        report.duration.as_secs_f64()
    );
}

/// Throughput and latency with nothing paused: plain nginx against nginx
/// with the module, per path.
fn write_not_paused(md: &mut String, report: &Report) {
    let _ = writeln!(
        md,
        "**Not paused** (wrk, 1 thread, 64 connections, {} s × {}, turns taken; 1 nginx worker)\n",
        report.plan.wrk_secs, report.plan.wrk_repetitions
    );
    let _ = writeln!(md, "| Path | nginx req/s | with module req/s | ratio | target ≥ 0.99 | nginx p99 | with module p99 | p99 ratio | target ≤ 1.05 |");
    let _ = writeln!(md, "|---|---:|---:|---:|---|---:|---:|---:|---|");
    for row in &report.throughput {
        write_not_paused_row(md, row);
    }
}

fn write_not_paused_row(md: &mut String, row: &ThroughputRow) {
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

/// CPU and memory while holding: one worker at every held count, then
/// `HOLDING_WORKERS` at the largest.
fn write_holding(md: &mut String, report: &Report) {
    let plan = &report.plan;
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
    for &n in &plan.held_counts {
        write_holding_one_worker(md, report, n);
    }
}

/// The module, limit_req and HAProxy holding `n` on one worker; the
/// module's memory against HAProxy's and limit_req's.
fn write_holding_one_worker(md: &mut String, report: &Report, n: usize) {
    let one = Shape::workers(1);
    let mem = |proxy| {
        find(&report.release, n, one, Some(proxy))
            .and_then(|p| median_of(&p.passes, |p| p.bytes_per_held))
    };
    let (haproxy_mem, floor_mem) = (mem(Proxy::Haproxy), mem(Proxy::LimitReq));
    for proxy in [Proxy::Module, Proxy::LimitReq, Proxy::Haproxy] {
        let Some(passes) = find(&report.release, n, one, Some(proxy)) else {
            continue;
        };
        let cpu = hold_cpu(passes);
        let bytes = mem(proxy);
        let (cpu_target, mem_target) = if proxy == Proxy::Module {
            (
                verdict(cpu.map(|c| c < HOLD_CPU_TARGET)).to_owned(),
                memory_targets(bytes, haproxy_mem, floor_mem),
            )
        } else {
            (String::new(), String::new())
        };
        let _ = writeln!(
            md,
            "| {n} | 1 | {} | {} | {cpu_target} | {} | {mem_target} |",
            proxy.label(),
            cpu_secs(cpu),
            bytes.map_or("–".into(), |b| format!("{b:.0}")),
        );
    }
}

/// The module's bytes per held request against HAProxy's and limit_req's
/// (the floor), with their verdicts.
fn memory_targets(module: Option<f64>, haproxy: Option<f64>, floor: Option<f64>) -> String {
    let vs_haproxy = module.zip(haproxy).map(|(b, h)| b / h);
    let vs_floor = module.zip(floor).map(|(b, f)| b / f);
    format!(
        "{} HAProxy's (≤ 1.00: {}); {} limit_req's (≤ 1.10: {})",
        ratio(vs_haproxy),
        verdict(vs_haproxy.map(|r| r <= 1.0)),
        ratio(vs_floor),
        verdict(vs_floor.map(|r| r <= 1.10)),
    )
}

/// Median CPU seconds per 10 s held.
fn hold_cpu(passes: &Passes) -> Option<f64> {
    median_of(&passes.passes, |p| p.hold_cpu_per_10s.map(secs))
}

fn cpu_secs(cpu: Option<f64>) -> String {
    cpu.map_or("–".into(), |c| format!("{c:.3}"))
}

/// The release on one worker at every held count: the burst, the module
/// and HAProxy.
fn write_release(md: &mut String, report: &Report) {
    let _ = writeln!(
        md,
        "\n**Release** after the hold (1 nginx worker; HAProxy with 1 thread). Times from the release call \
         (`disable`, or HAProxy's `set maxconn server`) to the first and last answer; the burst sends the \
         same requests at once to nginx with nothing paused.\n"
    );
    let _ = writeln!(md, "| Held | Released by | first | last | last ÷ burst | module ÷ HAProxy | target ≤ 0.75 | failed | in arrival order | farthest out of place |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|");
    let one = Shape::workers(1);
    for &n in &report.plan.held_counts {
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
            let (vs_burst, vs_haproxy) = release_ratios(passes, burst, haproxy);
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
}

/// The last answer's time over the burst's and, for the module, over
/// HAProxy's, paired by repetition.
fn release_ratios(
    passes: &Passes,
    burst: Option<&Passes>,
    haproxy: Option<&Passes>,
) -> (Option<f64>, Option<f64>) {
    let vs_burst = burst.and_then(|b| paired_ratio(&passes.passes, &b.passes, last));
    let vs_haproxy = (passes.proxy == Some(Proxy::Module))
        .then(|| haproxy.and_then(|h| paired_ratio(&passes.passes, &h.passes, last)))
        .flatten();
    (vs_burst, vs_haproxy)
}

/// The paced release: the rate asked against the rate seen.
fn write_paced_release(md: &mut String, report: &Report) {
    if report.paced.is_empty() {
        return;
    }
    let (n, rate) = report.plan.paced;
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

/// The release with most of one worker's `worker_connections` held.
fn write_connection_pressure(md: &mut String, report: &Report) {
    if report.pressure.is_empty() {
        return;
    }
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

/// The command line's pause, resume and rolled-back pause on fleets.
fn write_fleet(md: &mut String, report: &Report) {
    if report.fleet.is_empty() {
        return;
    }
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
        write_fleet_row(md, times);
    }
}

fn write_fleet_row(md: &mut String, times: &FleetTimes) {
    let median_secs = |d: &[Duration]| median(d.iter().map(|d| d.as_secs_f64()).collect());
    let (pause, resume, rolled) = (
        median_secs(&times.pause),
        median_secs(&times.resume),
        median_secs(&times.rolled_back),
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

/// The first few nginx error-log lines of every pass, if any.
fn write_error_log(md: &mut String, report: &Report) {
    let mut errors: Vec<&String> = report
        .release
        .iter()
        .chain(&report.scale)
        .chain(&report.pressure)
        .flat_map(|p| p.passes.iter().flat_map(|p| &p.errors))
        .chain(report.paced.iter().flat_map(|p| &p.errors))
        .collect();
    if errors.is_empty() {
        return;
    }
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

pub fn write(report: &Report, out: &Path) -> io::Result<()> {
    fs::create_dir_all(out)?;
    let md = markdown(report);
    fs::write(out.join("results.md"), &md)?;
    fs::write(out.join("release.svg"), svg(report))?;
    if let Some(scale) = scale_svg(report) {
        fs::write(out.join("scale.svg"), scale)?;
    }
    println!("{md}");
    eprintln!(
        "bench: wrote {} and {}",
        out.join("results.md").display(),
        out.join("release.svg").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
