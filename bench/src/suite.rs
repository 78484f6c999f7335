//! Every workload, repeated and interleaved, in one run, collected for the
//! report.
//!
//! The machine is shared and its speed drifts, so every comparison is made
//! within one run: the variants of a workload take turns in each repetition,
//! and ratios are taken between figures of the same run.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fleet::{self, FleetTimes};
use crate::plan::{Passes, Plan, ThroughputRow, HAPROXY_MOST_HELD};
use crate::report::{self, Report};
use crate::runs::{self, Pass};
use crate::servers::{Proxy, Server, Setup, Shape, PROXIED_PATH, STATIC_PATH};

/// Runs every workload of the plan (`--quick`: the smaller one) and writes
/// the report to `out`.
pub async fn run_all(setup: &Setup, quick: bool, out: &Path) -> io::Result<()> {
    let plan = Plan::new(quick);
    let started = Instant::now();
    let mut report = Report::new(setup, &plan);
    for path in [PROXIED_PATH, STATIC_PATH] {
        report.throughput.push(throughput(setup, &plan, path)?);
    }
    for &n in &plan.held_counts {
        report.release.extend(one_worker(setup, &plan, n).await?);
    }
    report.scale = scale(setup, &plan).await?;
    report.paced = paced_release(setup, &plan).await?;
    for &(connections, n) in &plan.pressure {
        report
            .pressure
            .push(connection_pressure(setup, &plan, connections, n).await?);
    }
    if setup.cli.is_some() {
        report.fleet = fleets(setup, &plan)?;
    }
    report.duration = started.elapsed();
    report::write(&report, out)
}

/// `n` held on one worker: the burst, then the module, HAProxy and
/// limit_req, held for the plan's hold time.
async fn one_worker(setup: &Setup, plan: &Plan, n: usize) -> io::Result<Vec<Passes>> {
    let proxies = [Proxy::Module, Proxy::Haproxy, Proxy::LimitReq];
    let progress = format!("{n} held");
    taking_turns(
        setup,
        plan,
        Shape::workers(1),
        n,
        &proxies,
        plan.hold,
        &progress,
    )
    .await
}

/// The plan's scale runs: on each worker count, each held count, upstream
/// connections one per request and kept alive, the client spread over
/// processes: the module, HAProxy (up to `HAPROXY_MOST_HELD`) and, for
/// its memory, limit_req. No burst: the release is compared with HAProxy's
/// and with itself at other sizes.
async fn scale(setup: &Setup, plan: &Plan) -> io::Result<Vec<Passes>> {
    let mut rows = vec![];
    for (workers, counts) in &plan.scale {
        for &n in counts {
            for keepalive in [false, true] {
                let shape = Shape::workers(*workers).keepalive(keepalive).spread();
                let mut proxies = vec![Proxy::Module];
                if n <= HAPROXY_MOST_HELD {
                    proxies.push(Proxy::Haproxy);
                }
                if !keepalive {
                    proxies.push(Proxy::LimitReq);
                }
                rows.extend(
                    proxies
                        .iter()
                        .map(|&proxy| Passes::new(n, shape, Some(proxy))),
                );
            }
        }
    }
    // Every size in each repetition, so that a drift of the machine's speed
    // over the section lands on every size alike, not on the ratio of two.
    for rep in 0..plan.scale_repetitions {
        for passes in &mut rows {
            let (proxy, shape, n) = (passes.proxy.expect("a proxy"), passes.shape, passes.held);
            eprintln!(
                "bench: scale, {n} held on {} workers{}, {}, repetition {}/{}",
                shape.workers,
                if shape.keepalive {
                    ", upstream keep-alive"
                } else {
                    ""
                },
                proxy.label(),
                rep + 1,
                plan.scale_repetitions
            );
            passes
                .passes
                .push(runs::hold_and_release(setup, proxy, shape, n, plan.scale_hold).await?);
        }
    }
    Ok(rows)
}

/// The burst and each of `proxies`, `n` requests in `shape`, taking turns in
/// every repetition; the burst's passes first, then each proxy's.
async fn taking_turns(
    setup: &Setup,
    plan: &Plan,
    shape: Shape,
    n: usize,
    proxies: &[Proxy],
    hold: Duration,
    progress: &str,
) -> io::Result<Vec<Passes>> {
    let mut burst = Passes::new(n, shape, None);
    let mut held: Vec<Passes> = proxies
        .iter()
        .map(|&proxy| Passes::new(n, shape, Some(proxy)))
        .collect();
    for rep in 0..plan.repetitions {
        eprintln!(
            "bench: {progress}, repetition {}/{}",
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
    Ok(std::iter::once(burst).chain(held).collect())
}

/// The module on 2 workers, releasing by `disable?rate=` after holding for
/// a second.
async fn paced_release(setup: &Setup, plan: &Plan) -> io::Result<Vec<Pass>> {
    let (n, rate) = plan.paced;
    let mut passes = vec![];
    for rep in 0..plan.repetitions {
        eprintln!(
            "bench: paced release, repetition {}/{}",
            rep + 1,
            plan.repetitions
        );
        passes.push(
            runs::paced_release(setup, Shape::workers(2), n, Duration::from_secs(1), rate).await?,
        );
    }
    Ok(passes)
}

/// The module on one worker holding `n` requests in `connections`
/// `worker_connections` for a second.
async fn connection_pressure(
    setup: &Setup,
    plan: &Plan,
    connections: usize,
    n: usize,
) -> io::Result<Passes> {
    let shape = Shape::workers(1).connections(connections);
    let mut passes = Passes::new(n, shape, Some(Proxy::Module));
    for rep in 0..plan.repetitions {
        eprintln!(
            "bench: {n} held in {connections} connections, repetition {}/{}",
            rep + 1,
            plan.repetitions
        );
        passes.passes.push(
            runs::hold_and_release(setup, Proxy::Module, shape, n, Duration::from_secs(1)).await?,
        );
    }
    Ok(passes)
}

/// The command line on each of the plan's fleet sizes.
fn fleets(setup: &Setup, plan: &Plan) -> io::Result<Vec<FleetTimes>> {
    let mut times = vec![];
    for &hosts in &plan.fleet_sizes {
        eprintln!(
            "bench: a fleet of {hosts} nginx, {} repetition(s)",
            plan.repetitions
        );
        times.push(fleet::fleet(setup, hosts, plan.repetitions)?);
    }
    Ok(times)
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
