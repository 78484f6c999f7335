//! The soak (scripts/soak): many pause/release cycles of one app while a
//! steady load runs, checking that no request is lost or fails, that the
//! workers' memory stays flat and that no worker crashed.
//!
//! A fixed number of clients (clients.rs) send `GET /p` in a loop through
//! nginx with the module (two workers) to the recording upstream, which
//! answers `/p` without recording it (a soak's worth of records would only
//! grow the upstream). Each cycle pauses the app, holds for a while so that the
//! requests sent meanwhile are held, resumes it and runs unpaused for a
//! while; the two durations come from a seeded generator, so that a run can
//! be repeated.
//!
//! Worker memory is read with the load stopped for a moment (every request
//! answered, every client connection closed) so that the figure is the
//! workers' own, not that of whatever happened to be in flight.

mod clients;

use std::fmt::Write as _;
use std::io;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::proc_stats;
use crate::runs;
use crate::servers::{lines_at_levels, Proxy, Server, Setup, Shape};
use clients::{Load, Requests, FAILURES_DESCRIBED};

pub const DEFAULT_CYCLES: usize = 1_000;
pub const DEFAULT_CLIENTS: usize = 48;
pub const DEFAULT_SEED: u64 = 1;

const WORKERS: usize = 2;
/// How long each pause lasts: long enough that every client has a request
/// held (unpaused, a request takes a small part of it: see
/// bench/results/results.md).
const PAUSE_MS: RangeInclusive<u64> = 10..=60;
/// How long the app runs unpaused between pauses: the released requests and
/// some new ones go through.
const UNPAUSED_MS: RangeInclusive<u64> = 10..=40;
/// Load before the first cycle: nginx's first requests allocate what later
/// ones reuse, which is not what the soak looks for.
const WARM_UP: Duration = Duration::from_secs(1);
/// Quiet time before a memory reading, for nginx to see the clients'
/// connections closed and free them.
const SETTLE: Duration = Duration::from_millis(300);
/// The most the workers' memory may change from the baseline cycle to the last.
pub const RSS_TOLERANCE: f64 = 0.05;
/// Error-log levels that fail the soak.
const SEVERE_LEVELS: [&str; 3] = ["[alert]", "[crit]", "[emerg]"];
/// The module's notice on each resume, followed by the number of requests held.
const RESUMED_NOTICE: &str = "resumed, the pause held ";

/// What a soak does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub cycles: usize,
    pub clients: usize,
    pub seed: u64,
}

/// The cycle whose memory reading the last one is compared with: cycle 100,
/// after the workers' pools and caches have grown to their working size;
/// a tenth of the way in for shorter soaks.
pub fn baseline_cycle(cycles: usize) -> usize {
    (cycles / 10).clamp(1, 100)
}

/// The cycles after which memory is read: the baseline, every quarter and
/// the last.
pub fn sample_cycles(cycles: usize) -> Vec<usize> {
    let baseline = baseline_cycle(cycles);
    let mut at: Vec<usize> = [baseline, cycles / 4, cycles / 2, cycles * 3 / 4, cycles]
        .into_iter()
        .filter(|&c| c >= baseline)
        .collect();
    at.sort_unstable();
    at.dedup();
    at
}

/// SplitMix64, a small seeded generator: the soak's durations are
/// irregular, so pauses meet requests at every stage, yet repeatable.
struct Durations(u64);

impl Durations {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn millis_in(&mut self, range: RangeInclusive<u64>) -> Duration {
        let span = range.end() - range.start() + 1;
        Duration::from_millis(range.start() + self.next() % span)
    }
}

/// The workers' total resident memory after a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySample {
    pub cycle: usize,
    pub rss_bytes: u64,
}

/// Everything a soak saw, and its verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub plan: Plan,
    pub duration: Duration,
    pub requests: Requests,
    /// The first failed requests, described.
    pub failures: Vec<String>,
    pub control_calls: usize,
    /// Control calls that did not answer 200, described.
    pub control_failures: Vec<String>,
    /// Requests held by each pause, from the module's notices.
    pub held_per_pause: Vec<u64>,
    pub memory: Vec<MemorySample>,
    /// Error-log lines at `[alert]`, `[crit]` or `[emerg]`.
    pub severe_log_lines: Vec<String>,
    /// Error-log lines at `[error]`: reported, and failed requests would show.
    pub error_log_lines: Vec<String>,
    pub workers_before: Vec<u32>,
    pub workers_after: Vec<u32>,
}

/// The requests each pause held, from the module's notices
/// (`intermission: ... resumed, the pause held N requests`), in log order.
pub fn held_per_pause(error_log: &str) -> Vec<u64> {
    error_log
        .lines()
        .filter_map(|line| {
            let after = &line[line.find(RESUMED_NOTICE)? + RESUMED_NOTICE.len()..];
            after.split(' ').next()?.parse().ok()
        })
        .collect()
}

/// The relative change from `baseline` to `last` (0.05 is 5 % more).
pub fn relative_change(baseline: u64, last: u64) -> Option<f64> {
    (baseline > 0).then(|| (last as f64 - baseline as f64) / baseline as f64)
}

impl Summary {
    fn rss_at(&self, cycle: usize) -> Option<u64> {
        self.memory
            .iter()
            .find(|s| s.cycle == cycle)
            .map(|s| s.rss_bytes)
    }

    /// The workers' memory change from the baseline cycle to the last.
    pub fn memory_change(&self) -> Option<f64> {
        relative_change(
            self.rss_at(baseline_cycle(self.plan.cycles))?,
            self.rss_at(self.plan.cycles)?,
        )
    }

    /// What went wrong; empty if the soak passed.
    pub fn failed_checks(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let r = &self.requests;
        if r.failed() > 0 {
            failed.push(format!(
                "{} requests failed ({} answered other than 200, {} connection errors, {} timeouts)",
                r.failed(),
                r.other_status,
                r.connection_errors,
                r.timeouts
            ));
        }
        if r.answered_200 != r.sent {
            failed.push(format!(
                "{} requests sent, {} answered 200",
                r.sent, r.answered_200
            ));
        }
        if !self.control_failures.is_empty() {
            failed.push(format!(
                "{} of {} control calls did not answer 200",
                self.control_failures.len(),
                self.control_calls
            ));
        }
        if self.held_per_pause.iter().sum::<u64>() == 0 {
            failed.push("no request was held: the pauses did not meet the load".to_owned());
        }
        match self.memory_change() {
            None => failed.push("no memory reading at the baseline and last cycles".to_owned()),
            Some(change) if change.abs() > RSS_TOLERANCE => failed.push(format!(
                "worker memory changed {:+.1} % from cycle {} to cycle {} (at most {:.0} % allowed)",
                change * 100.0,
                baseline_cycle(self.plan.cycles),
                self.plan.cycles,
                RSS_TOLERANCE * 100.0
            )),
            Some(_) => {}
        }
        if !self.severe_log_lines.is_empty() {
            failed.push(format!(
                "{} error-log lines at [alert], [crit] or [emerg]",
                self.severe_log_lines.len()
            ));
        }
        if self.workers_after != self.workers_before || self.workers_before.len() != WORKERS {
            failed.push(format!(
                "worker processes changed from {:?} to {:?} (a worker died)",
                self.workers_before, self.workers_after
            ));
        }
        failed
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_plan(&mut out);
        self.write_requests(&mut out);
        self.write_held(&mut out);
        self.write_control_calls(&mut out);
        self.write_memory(&mut out);
        self.write_error_log(&mut out);
        self.write_workers(&mut out);
        self.write_verdict(&mut out);
        out
    }

    fn write_plan(&self, out: &mut String) {
        let p = &self.plan;
        let _ = writeln!(
            out,
            "soak: {} cycles in {:.1} s; pauses of {}-{} ms, {}-{} ms unpaused between (seed {})",
            p.cycles,
            self.duration.as_secs_f64(),
            PAUSE_MS.start(),
            PAUSE_MS.end(),
            UNPAUSED_MS.start(),
            UNPAUSED_MS.end(),
            p.seed
        );
        let _ = writeln!(
            out,
            "load: {} clients ({} keep-alive, {} new connection per request), {WORKERS} nginx workers",
            p.clients,
            p.clients / 2,
            p.clients - p.clients / 2
        );
    }

    fn write_requests(&self, out: &mut String) {
        let r = &self.requests;
        let _ = writeln!(
            out,
            "requests: {} sent, {} answered 200, {} failed ({} other status, {} connection errors, {} timeouts); {:.0} per second",
            grouped(r.sent),
            grouped(r.answered_200),
            grouped(r.failed()),
            r.other_status,
            r.connection_errors,
            r.timeouts,
            r.sent as f64 / self.duration.as_secs_f64().max(1e-9)
        );
        for failure in &self.failures {
            let _ = writeln!(out, "  failed: {failure}");
        }
    }

    fn write_held(&self, out: &mut String) {
        let held: u64 = self.held_per_pause.iter().sum();
        let pauses = self.held_per_pause.len();
        let _ = writeln!(
            out,
            "held while paused: {} requests over {pauses} pauses ({:.1} per pause, at most {}), from the module's notices",
            grouped(held),
            held as f64 / pauses.max(1) as f64,
            self.held_per_pause.iter().max().unwrap_or(&0)
        );
    }

    fn write_control_calls(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "control calls: {}, {} not answered 200",
            self.control_calls,
            self.control_failures.len()
        );
        for failure in self.control_failures.iter().take(FAILURES_DESCRIBED) {
            let _ = writeln!(out, "  {failure}");
        }
    }

    fn write_memory(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "worker memory (RSS of the {WORKERS} workers, load stopped):"
        );
        for sample in &self.memory {
            let _ = writeln!(
                out,
                "  after cycle {:>6}: {:>9} KiB",
                sample.cycle,
                grouped(sample.rss_bytes / 1024)
            );
        }
        let _ = writeln!(
            out,
            "  change from cycle {} to cycle {}: {} (at most ±{:.0} %)",
            baseline_cycle(self.plan.cycles),
            self.plan.cycles,
            self.memory_change()
                .map_or("unknown".to_owned(), |c| format!("{:+.2} %", c * 100.0)),
            RSS_TOLERANCE * 100.0
        );
    }

    fn write_error_log(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "error log: {} lines at [alert]/[crit]/[emerg], {} at [error]",
            self.severe_log_lines.len(),
            self.error_log_lines.len()
        );
        for line in self
            .severe_log_lines
            .iter()
            .chain(&self.error_log_lines)
            .take(FAILURES_DESCRIBED)
        {
            let _ = writeln!(out, "  {line}");
        }
    }

    fn write_workers(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "workers: {:?} at the start, {:?} at the end",
            self.workers_before, self.workers_after
        );
    }

    /// `PASSED`, or a `FAILED` line per failed check.
    fn write_verdict(&self, out: &mut String) {
        let failed = self.failed_checks();
        if failed.is_empty() {
            let _ = writeln!(out, "PASSED");
        } else {
            for check in failed {
                let _ = writeln!(out, "FAILED: {check}");
            }
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let lead = (digits.len() - 1) % 3 + 1;
    let mut out = digits[..lead].to_owned();
    for group in digits.as_bytes()[lead..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

/// The workers' total resident memory, read with the load stopped.
async fn quiet_rss(load: &Load, server: &Server) -> u64 {
    load.quiesce().await;
    tokio::time::sleep(SETTLE).await;
    let (_, rss) = proc_stats::totals(&server.measured_pids());
    load.resume();
    rss
}

/// Runs the soak, prints its summary and fails if any check did.
pub async fn run(setup: &Setup, plan: Plan) -> io::Result<()> {
    let server = Server::start(
        setup,
        Proxy::Module,
        Shape::workers(WORKERS),
        runs::free_addr()?,
        "soak",
    )?;
    let workers_before = server.measured_pids();
    let started = Instant::now();
    let load = Load::start(server.listen, plan.clients);
    tokio::time::sleep(WARM_UP).await;
    let first_reading = MemorySample {
        cycle: 0,
        rss_bytes: quiet_rss(&load, &server).await,
    };
    let cycles = pause_and_resume(plan, &server, &load, started, first_reading).await;
    let (requests, failures) = load.stop().await;
    let duration = started.elapsed();
    let error_log = server.error_log();
    let summary = Summary {
        plan,
        duration,
        requests,
        failures,
        control_calls: cycles.control_calls,
        control_failures: cycles.control_failures,
        held_per_pause: held_per_pause(&error_log),
        memory: cycles.memory,
        severe_log_lines: lines_at_levels(&error_log, &SEVERE_LEVELS),
        error_log_lines: lines_at_levels(&error_log, &["[error]"]),
        workers_before,
        workers_after: server.measured_pids(),
    };
    print!("{}", summary.render());
    let failed = summary.failed_checks();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "soak failed: {}",
            failed.join("; ")
        )))
    }
}

/// What the cycles saw besides the load's own count.
struct Cycles {
    control_calls: usize,
    control_failures: Vec<String>,
    /// `first_reading`, then a reading after each of `sample_cycles`.
    memory: Vec<MemorySample>,
}

/// The plan's cycles: pause, hold, resume, run unpaused; memory read after
/// the cycles of `sample_cycles`, with progress on stderr.
async fn pause_and_resume(
    plan: Plan,
    server: &Server,
    load: &Load,
    started: Instant,
    first_reading: MemorySample,
) -> Cycles {
    let mut cycles = Cycles {
        control_calls: 0,
        control_failures: Vec::new(),
        memory: vec![first_reading],
    };
    let sample_at = sample_cycles(plan.cycles);
    let mut durations = Durations(plan.seed);
    for cycle in 1..=plan.cycles {
        let pause = durations.millis_in(PAUSE_MS);
        let unpaused = durations.millis_in(UNPAUSED_MS);
        for (action, then) in [("enable", pause), ("disable", unpaused)] {
            cycles.control_calls += 1;
            if let Err(e) = runs::control(server, action).await {
                cycles.control_failures.push(format!("cycle {cycle}: {e}"));
            }
            tokio::time::sleep(then).await;
        }
        if sample_at.contains(&cycle) {
            let rss_bytes = quiet_rss(load, server).await;
            cycles.memory.push(MemorySample { cycle, rss_bytes });
            let requests = load.requests();
            eprintln!(
                "soak: cycle {cycle}/{}: {} requests, {} failed, worker RSS {} KiB, {:.1} s",
                plan.cycles,
                grouped(requests.sent),
                requests.failed(),
                grouped(rss_bytes / 1024),
                started.elapsed().as_secs_f64()
            );
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> Summary {
        Summary {
            plan: Plan {
                cycles: 1_000,
                clients: 48,
                seed: 1,
            },
            duration: Duration::from_secs(70),
            requests: Requests {
                sent: 500_000,
                answered_200: 500_000,
                ..Requests::default()
            },
            failures: vec![],
            control_calls: 2_000,
            control_failures: vec![],
            held_per_pause: vec![40; 1_000],
            memory: vec![
                MemorySample {
                    cycle: 100,
                    rss_bytes: 10_000_000,
                },
                MemorySample {
                    cycle: 1_000,
                    rss_bytes: 10_400_000,
                },
            ],
            severe_log_lines: vec![],
            error_log_lines: vec![],
            workers_before: vec![10, 11],
            workers_after: vec![10, 11],
        }
    }

    #[test]
    fn a_clean_soak_passes() {
        let summary = passing();
        assert_eq!(summary.failed_checks(), Vec::<String>::new());
        assert!((summary.memory_change().unwrap() - 0.04).abs() < 1e-9);
        assert!(summary.render().ends_with("PASSED\n"));
    }

    #[test]
    fn memory_growth_beyond_five_percent_fails() {
        let mut summary = passing();
        summary.memory[1].rss_bytes = 10_600_000;
        let failed = summary.failed_checks();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("+6.0 %"), "{failed:?}");
        summary.memory[1].rss_bytes = 9_400_000;
        assert_eq!(summary.failed_checks().len(), 1, "shrinking counts too");
        summary.memory[1].rss_bytes = 9_500_000;
        assert!(summary.failed_checks().is_empty(), "5 % exactly is flat");
    }

    #[test]
    fn missing_memory_readings_fail() {
        let mut summary = passing();
        summary.memory.truncate(1);
        assert_eq!(summary.memory_change(), None);
        assert_eq!(summary.failed_checks().len(), 1);
    }

    #[test]
    fn lost_and_failed_requests_fail() {
        let mut summary = passing();
        summary.requests.answered_200 -= 3;
        summary.requests.timeouts = 1;
        let failed = summary.failed_checks();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].starts_with("1 requests failed"));
        assert!(failed[1].contains("500000 requests sent, 499997 answered 200"));
    }

    #[test]
    fn control_failures_crashes_and_alerts_fail() {
        let mut summary = passing();
        summary.control_failures = vec!["cycle 7: enable answered 304: ".to_owned()];
        summary.workers_after = vec![10, 12];
        summary.severe_log_lines =
            vec!["[alert] 1#1: worker process 11 exited on signal 11".to_owned()];
        summary.held_per_pause = vec![0; 1_000];
        let failed = summary.failed_checks();
        assert_eq!(failed.len(), 4, "{failed:?}");
        assert!(summary
            .render()
            .contains("FAILED: worker processes changed"));
    }

    #[test]
    fn held_counts_come_from_the_resume_notices() {
        let log = "\
2024/01/01 00:00:00 [notice] 11#11: *1 intermission: the default app paused, client: 127.0.0.1
2024/01/01 00:00:00 [notice] 11#11: *9 intermission: the default app resumed, the pause held 42 requests, client: 127.0.0.1
2024/01/01 00:00:00 [notice] 12#12: *20 intermission: app \"shop\" resumed, the pause held 1 request, client: 127.0.0.1
2024/01/01 00:00:00 [notice] 12#12: *21 intermission: the default app resumed, the pause held 0 requests
";
        assert_eq!(held_per_pause(log), [42, 1, 0]);
    }

    #[test]
    fn memory_is_read_at_the_baseline_every_quarter_and_the_end() {
        assert_eq!(sample_cycles(1_000), [100, 250, 500, 750, 1_000]);
        assert_eq!(sample_cycles(5_000), [100, 1_250, 2_500, 3_750, 5_000]);
        assert_eq!(sample_cycles(40), [4, 10, 20, 30, 40]);
        assert_eq!(sample_cycles(1), [1]);
        assert_eq!(baseline_cycle(1_000), 100);
    }

    #[test]
    fn relative_changes() {
        assert_eq!(relative_change(100, 105), Some(0.05));
        assert_eq!(relative_change(200, 150), Some(-0.25));
        assert_eq!(relative_change(0, 1), None);
    }

    #[test]
    fn durations_repeat_with_the_seed_and_stay_in_range() {
        let take = |seed| {
            let mut d = Durations(seed);
            (0..1_000)
                .map(|_| d.millis_in(PAUSE_MS).as_millis() as u64)
                .collect::<Vec<_>>()
        };
        let run = take(1);
        assert_eq!(run, take(1));
        assert_ne!(run, take(2));
        assert!(run.iter().all(|ms| PAUSE_MS.contains(ms)));
        assert!(run.contains(PAUSE_MS.start()) && run.contains(PAUSE_MS.end()));
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    /// The summary of a passing and of a failing soak, pinned: the text must
    /// not change when the code that writes it is reshaped.
    #[test]
    fn a_summary_renders_as_before() {
        let mut failing = passing();
        failing.failures = vec!["after 1.000 s: answered 502".into()];
        failing.requests.other_status = 1;
        failing.requests.answered_200 -= 1;
        failing.control_failures = vec!["cycle 7: enable answered 500: busy".to_owned()];
        failing.workers_after = vec![10, 12];
        failing.severe_log_lines =
            vec!["[alert] 1#1: worker process 11 exited on signal 11".to_owned()];
        failing.error_log_lines = vec!["[error] x".to_owned()];
        failing.memory.truncate(1);
        let rendered = format!("{}\n=====\n{}", passing().render(), failing.render());
        assert_eq!(rendered, include_str!("../testdata/soak-summary.txt"));
    }
}
