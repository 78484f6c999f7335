//! The report rendered from a synthetic run that has every section, rows
//! left out, targets met and missed: pinned against bench/testdata.

use super::plot::nice_ceiling;
use super::*;
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
            max_displacement_from_arrival_reused: None,
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
    Report {
        machine: "2 cores (Test CPU @ 2.0GHz), Linux 6.1.0-test, nginx/1.26.3, HAProxy version \
                  2.6.12, descriptors per process: 65536; all on 127.0.0.1"
            .into(),
        plan: Plan {
            quick: false,
            repetitions: 2,
            hold: Duration::from_secs(10),
            held_counts: vec![100, 1_000],
            scale: vec![(4, vec![1_000, 50_000]), (2, vec![1_000])],
            scale_hold: Duration::from_secs(3),
            scale_repetitions: 2,
            wrk_secs: 5,
            wrk_repetitions: 2,
            paced: (500, 1_000),
            pressure: vec![(64, 40), (768, 740)],
            fleet_sizes: vec![10, 100, 500],
        },
        throughput: synthetic_throughput(),
        release: synthetic_release(),
        scale: synthetic_scale(),
        paced: synthetic_paced_release(),
        pressure: synthetic_connection_pressure(),
        fleet: synthetic_fleet(),
        duration: Duration::from_millis(529_400),
    }
}

/// The proxied path misses both targets, the static file meets them.
fn synthetic_throughput() -> Vec<ThroughputRow> {
    vec![
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
    ]
}

/// 100 and 1,000 held on one worker; limit_req left out at 100.
fn synthetic_release() -> Vec<Passes> {
    let one = Shape::workers(1);
    vec![
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
    ]
}

/// 1,000 and 50,000 on 4 workers, 1,000 on 2; HAProxy only at 1,000;
/// limit_req with new upstream connections only. The kept-alive release
/// at 50,000 misses the per-request and order targets; one pass fails.
fn synthetic_scale() -> Vec<Passes> {
    let mut rows = vec![];
    for (w, counts) in [(4, vec![1_000, 50_000]), (2, vec![1_000])] {
        for keepalive in [false, true] {
            let shape = Shape::workers(w).keepalive(keepalive).spread();
            for &n in &counts {
                let last = n as u64 / 25 + if keepalive && n > 1_000 { 900 } else { 0 };
                let module = (0..2)
                    .map(|i| {
                        let mut pass = held(n, 1, last + i, 0, Some(9_900.0 + i as f64));
                        pass.release_cpu = Some([
                            Duration::ZERO,
                            Duration::from_millis(last / 3),
                            Duration::ZERO,
                        ]);
                        let from_arrival = if keepalive && n > 1_000 { 40 } else { 15 };
                        let mut pass = out_of_order(pass, 0.5, 900, Some(from_arrival));
                        pass.order.max_displacement_from_arrival_reused =
                            keepalive.then_some(12 + i as usize);
                        pass
                    })
                    .collect();
                rows.push(row(n, shape, Some(Proxy::Module), module));
                if n <= 1_000 {
                    let mut slow = held(n, 9, last * 2, 1, Some(7_500.0));
                    if !keepalive && w == 2 {
                        slow.failed = 2;
                    }
                    rows.push(row(
                        n,
                        shape,
                        Some(Proxy::Haproxy),
                        vec![held(n, 9, last * 2, 1, Some(7_400.0)), slow],
                    ));
                }
                if !keepalive {
                    rows.push(row(
                        n,
                        shape,
                        Some(Proxy::LimitReq),
                        vec![
                            held(n, 0, 0, 0, Some(9_800.0)),
                            held(n, 0, 0, 0, Some(9_750.0)),
                        ],
                    ));
                }
            }
        }
    }
    rows[0].passes[0]
        .errors
        .push("2024/01/01 00:00:02 [error] 12#12: *9 recv() failed".into());
    rows
}

/// Two repetitions, one with failures and a line at [alert].
fn synthetic_paced_release() -> Vec<Pass> {
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
    paced
}

fn synthetic_connection_pressure() -> Vec<Passes> {
    let one = Shape::workers(1);
    vec![
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
    ]
}

/// No target at 10 hosts, met at 100, missed with failures at 500.
fn synthetic_fleet() -> Vec<FleetTimes> {
    vec![
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
    ]
}

/// The rendering of `synthetic_report`, pinned: the table and the plot
/// must not change when the code that writes them is reshaped.
/// `BENCH_BLESS=1 cargo test -p intermission-bench a_report_renders` writes
/// the pinned files from the code as it is: for a change to the report that
/// is meant, whose diff of bench/testdata is then read and committed.
#[test]
fn a_report_renders_as_before() {
    let report = synthetic_report();
    if std::env::var_os("BENCH_BLESS").is_some() {
        let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        std::fs::write(format!("{testdata}/results.md"), markdown(&report)).unwrap();
        std::fs::write(format!("{testdata}/release.svg"), svg(&report)).unwrap();
        std::fs::write(format!("{testdata}/scale.svg"), scale_svg(&report).unwrap()).unwrap();
    }
    assert_eq!(markdown(&report), include_str!("../../testdata/results.md"));
    assert_eq!(svg(&report), include_str!("../../testdata/release.svg"));
    assert_eq!(
        scale_svg(&report).as_deref(),
        Some(include_str!("../../testdata/scale.svg"))
    );
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
        scale: vec![],
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
    assert_eq!(scale_svg(&report), None);
}
