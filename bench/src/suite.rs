//! Every workload, repeated and interleaved, in one run; medians and ratios
//! for the report.
//!
//! The machine is shared and its speed drifts, so every comparison is made
//! within one run: the variants of a workload take turns in each repetition,
//! and ratios are taken between figures of the same run.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::{self, Report};
use crate::runs::{self, Pass, Throughput};
use crate::servers::{Proxy, Server, Setup, Shape, PROXIED_PATH, STATIC_PATH};

/// How much of everything a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub repetitions: usize,
    pub hold: Duration,
    pub held_counts: Vec<usize>,
    pub worker_counts: Vec<usize>,
    pub wrk_secs: u64,
    pub wrk_repetitions: usize,
    /// Held, and the rate of `disable?rate=`, for the paced release.
    pub paced: (usize, u64),
    /// `worker_connections` and requests held on the one worker, for the
    /// release under connection pressure.
    pub pressure: Vec<(usize, usize)>,
    /// How many nginx the command line pauses and resumes at once.
    pub fleet_sizes: Vec<usize>,
}

/// The worker count whose holding CPU the report shows against its target.
pub const HOLDING_WORKERS: usize = 2;

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                repetitions: 1,
                hold: Duration::from_secs(2),
                held_counts: vec![1_000],
                worker_counts: vec![2],
                wrk_secs: 2,
                wrk_repetitions: 1,
                paced: (500, 1_000),
                pressure: vec![(64, 40), (768, 740)],
                fleet_sizes: vec![10, 100],
            }
        } else {
            Plan {
                quick,
                repetitions: 3,
                hold: Duration::from_secs(10),
                held_counts: vec![1_000, 10_000],
                worker_counts: vec![2, 4],
                wrk_secs: 5,
                wrk_repetitions: 5,
                paced: (2_000, 1_000),
                pressure: vec![(64, 40), (768, 740)],
                fleet_sizes: vec![10, 100, 500],
            }
        }
    }
}

/// Throughput of plain nginx and nginx with the module, for one path.
pub struct ThroughputRow {
    pub path: &'static str,
    pub plain: Vec<Throughput>,
    pub module: Vec<Throughput>,
}

/// Every pass of one proxy at one held count and shape.
pub struct Passes {
    pub held: usize,
    pub shape: Shape,
    pub proxy: Option<Proxy>, // None: the no-pause burst
    pub passes: Vec<Pass>,
}

pub async fn run_all(setup: &Setup, quick: bool, out: &Path) -> io::Result<()> {
    let plan = Plan::new(quick);
    let started = Instant::now();
    let mut report = Report::new(setup, &plan);

    for path in [PROXIED_PATH, STATIC_PATH] {
        report.throughput.push(throughput(setup, &plan, path)?);
    }
    for &n in &plan.held_counts {
        let one = Shape::workers(1);
        let mut burst = Passes {
            held: n,
            shape: one,
            proxy: None,
            passes: vec![],
        };
        let mut held: Vec<Passes> = [Proxy::Module, Proxy::Haproxy, Proxy::LimitReq]
            .into_iter()
            .map(|p| Passes {
                held: n,
                shape: one,
                proxy: Some(p),
                passes: vec![],
            })
            .collect();
        for rep in 0..plan.repetitions {
            eprintln!(
                "bench: {n} held, repetition {}/{}",
                rep + 1,
                plan.repetitions
            );
            burst.passes.push(runs::burst(setup, one, n).await?);
            for passes in &mut held {
                let proxy = passes.proxy.expect("a proxy");
                passes
                    .passes
                    .push(runs::hold_and_release(setup, proxy, one, n, plan.hold).await?);
            }
        }
        report.release.push(burst);
        report.release.extend(held);
    }
    let n = *plan.held_counts.last().expect("a held count");
    for &workers in &plan.worker_counts {
        for keepalive in [false, true] {
            let shape = Shape::workers(workers).keepalive(keepalive);
            let mut burst = Passes {
                held: n,
                shape,
                proxy: None,
                passes: vec![],
            };
            let mut held: Vec<Passes> = [Proxy::Module, Proxy::Haproxy]
                .into_iter()
                .map(|p| Passes {
                    held: n,
                    shape,
                    proxy: Some(p),
                    passes: vec![],
                })
                .collect();
            // The holding figure with several workers is taken over the
            // whole hold time; the other passes hold one second.
            let hold = if workers == HOLDING_WORKERS && !keepalive {
                plan.hold
            } else {
                Duration::from_secs(1)
            };
            for rep in 0..plan.repetitions {
                eprintln!(
                    "bench: {workers} workers{}, repetition {}/{}",
                    if keepalive {
                        ", upstream keep-alive"
                    } else {
                        ""
                    },
                    rep + 1,
                    plan.repetitions
                );
                burst.passes.push(runs::burst(setup, shape, n).await?);
                for passes in &mut held {
                    let proxy = passes.proxy.expect("a proxy");
                    passes
                        .passes
                        .push(runs::hold_and_release(setup, proxy, shape, n, hold).await?);
                }
            }
            report.workers.push(burst);
            report.workers.extend(held);
        }
    }
    let (n, rate) = plan.paced;
    for rep in 0..plan.repetitions {
        eprintln!(
            "bench: paced release, repetition {}/{}",
            rep + 1,
            plan.repetitions
        );
        report.paced.push(
            runs::paced_release(setup, Shape::workers(2), n, Duration::from_secs(1), rate).await?,
        );
    }
    for &(connections, n) in &plan.pressure {
        let shape = Shape::workers(1).connections(connections);
        let mut passes = Passes {
            held: n,
            shape,
            proxy: Some(Proxy::Module),
            passes: vec![],
        };
        for rep in 0..plan.repetitions {
            eprintln!(
                "bench: {n} held in {connections} connections, repetition {}/{}",
                rep + 1,
                plan.repetitions
            );
            passes.passes.push(
                runs::hold_and_release(setup, Proxy::Module, shape, n, Duration::from_secs(1))
                    .await?,
            );
        }
        report.pressure.push(passes);
    }
    if setup.cli.is_some() {
        for &hosts in &plan.fleet_sizes {
            eprintln!(
                "bench: a fleet of {hosts} nginx, {} repetition(s)",
                plan.repetitions
            );
            report
                .fleet
                .push(crate::fleet::fleet(setup, hosts, plan.repetitions)?);
        }
    }
    report.duration = started.elapsed();
    report::write(&report, out)
}

/// wrk against plain nginx and nginx with the module (not paused), taking
/// turns, each on a fresh server.
fn throughput(setup: &Setup, plan: &Plan, path: &'static str) -> io::Result<ThroughputRow> {
    let mut row = ThroughputRow {
        path,
        plain: vec![],
        module: vec![],
    };
    let one = Shape::workers(1);
    let plain = Server::start(
        setup,
        Proxy::PlainNginx,
        one,
        runs::free_addr()?,
        "wrk-plain",
    )?;
    let module = Server::start(setup, Proxy::Module, one, runs::free_addr()?, "wrk-module")?;
    let url = |s: &Server| format!("http://{}{path}", s.listen);
    // One warm-up each, not counted.
    runs::wrk(&url(&plain), 1)?;
    runs::wrk(&url(&module), 1)?;
    for rep in 0..plan.wrk_repetitions {
        eprintln!(
            "bench: throughput {path}, repetition {}/{}",
            rep + 1,
            plan.wrk_repetitions
        );
        row.plain.push(runs::wrk(&url(&plain), plan.wrk_secs)?);
        row.module.push(runs::wrk(&url(&module), plan.wrk_secs)?);
    }
    Ok(row)
}
