//! What a benchmark run does (its plan) and the passes it collects for each
//! workload: what the run (suite.rs) fills in and the report (report.rs)
//! reads.

use std::time::Duration;

use crate::runs::{Pass, Throughput};
use crate::servers::{Proxy, Shape};

/// How much of everything a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub repetitions: usize,
    pub hold: Duration,
    pub held_counts: Vec<usize>,
    /// The scale runs: per worker count, the held counts.
    pub scale: Vec<(usize, Vec<usize>)>,
    /// How long the scale runs hold, and how often each is repeated.
    pub scale_hold: Duration,
    pub scale_repetitions: usize,
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

/// The most requests HAProxy is compared at: one process under the same
/// descriptor limit (20,000 here) holds at most that many and still has
/// descriptors for the upstream connections of the release.
pub const HAPROXY_MOST_HELD: usize = 15_000;

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                repetitions: 1,
                hold: Duration::from_secs(2),
                held_counts: vec![1_000],
                scale: vec![(4, vec![1_000])],
                scale_hold: Duration::from_secs(1),
                scale_repetitions: 1,
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
                scale: vec![
                    (4, vec![1_000, 10_000, 15_000, 50_000]),
                    (2, vec![1_000, 10_000, 30_000]),
                ],
                scale_hold: Duration::from_secs(3),
                scale_repetitions: 3,
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
    /// `None`: the no-pause burst.
    pub proxy: Option<Proxy>,
    pub passes: Vec<Pass>,
}

impl Passes {
    /// None yet.
    pub fn new(held: usize, shape: Shape, proxy: Option<Proxy>) -> Passes {
        Passes {
            held,
            shape,
            proxy,
            passes: vec![],
        }
    }
}
