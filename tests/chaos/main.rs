//! The fault campaign: scenarios drawn from seeds, each run on a real nginx
//! with faults injected at random moments (workers killed or stopped,
//! reloads, binary upgrades in the documented sequences, the upstream down,
//! slow or resetting, clients leaving, control calls from several callers,
//! the state file's directory unwritable), then checked against the
//! invariants (`invariants`). A violation prints the seed and the scenario,
//! and the command that runs it again.
//!
//!   cargo test --test chaos -- [--seed N] [--scenarios N] [--budget SECONDS]
//!
//! (`scripts/chaos` runs it against the module's debug build.) Without
//! arguments, as part of the suite, it runs two scenarios from a seed of
//! the clock. `--budget` starts no scenario past that many seconds.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/h2client.rs"]
mod h2client;

mod invariants;
mod run;
mod scenario;
mod traffic;
mod upstream;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use scenario::Scenario;

struct Args {
    seed: u64,
    scenarios: u64,
    budget: Option<Duration>,
}

fn args() -> Option<Args> {
    let mut args = Args {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() % 1_000_000),
        scenarios: 2,
        budget: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut number = |name: &str| -> u64 {
            given
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a whole number"))
        };
        match arg.as_str() {
            "--seed" => args.seed = number("--seed"),
            "--scenarios" => args.scenarios = number("--scenarios"),
            "--budget" => args.budget = Some(Duration::from_secs(number("--budget"))),
            // cargo test's own flags mean nothing here.
            flag if flag.starts_with('-') => {}
            // A test name filter for other tests: not this one.
            filter if !"chaos".contains(filter) => return None,
            _ => {}
        }
    }
    Some(args)
}

fn main() {
    let Some(args) = args() else {
        return;
    };
    // A panic in a client or a run is recorded (a violation names it): one
    // line, not a backtrace per thread.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!(
            "      (panic in {}: {info})",
            thread.name().unwrap_or("a thread")
        );
    }));
    let started = Instant::now();
    let (mut ran, mut failed, mut faults, mut requests) = (0u64, Vec::new(), 0usize, 0usize);
    for seed in args.seed..args.seed + args.scenarios {
        if args.budget.is_some_and(|budget| started.elapsed() > budget) {
            break;
        }
        let scenario = Scenario::draw(seed);
        let began = Instant::now();
        let violations = match catch_unwind(AssertUnwindSafe(|| run::run(&scenario))) {
            Ok(observed) => invariants::check(&scenario, &observed),
            Err(panic) => vec![format!(
                "the run failed: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            )],
        };
        ran += 1;
        faults += scenario.faults.len();
        requests += scenario.requests();
        let summary = format!(
            "seed {seed}: {} worker(s){}, {} connections, {} app(s), {} requests{}, state file {}, \
             faults {:?}",
            scenario.workers,
            scenario
                .late_workers_ms
                .map(|ms| format!(" (all but one {ms} ms late to start)"))
                .unwrap_or_default(),
            scenario.worker_connections,
            scenario.apps.len(),
            scenario.requests(),
            scenario
                .bypass_digit
                .map(|digit| format!(" (seq ending in {digit} bypass)"))
                .unwrap_or_default(),
            if scenario.state_file { "on" } else { "off" },
            scenario.faults
        );
        if violations.is_empty() {
            eprintln!("ok    {summary} ({:.1} s)", began.elapsed().as_secs_f64());
        } else {
            eprintln!("FAIL  {summary}\n{scenario:#?}");
            for violation in &violations {
                eprintln!("      - {violation}");
            }
            eprintln!("      run it again: scripts/chaos --seed {seed} --scenarios 1");
            failed.push(seed);
        }
    }
    eprintln!(
        "chaos: {ran} scenarios, {requests} requests, {faults} faults injected, {} failed{} \
         in {:.0} s (first seed {})",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (seeds {failed:?})")
        },
        started.elapsed().as_secs_f64(),
        args.seed
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
