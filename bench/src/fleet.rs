//! The fleet runs: the `intermission` command line pausing and resuming
//! many real nginx instances (one worker each, on loopback) at once, all or
//! nothing, and rolling a pause back when one host is down.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::runs::free_addr;
use crate::servers::{Proxy, Server, Setup, Shape};

/// What one fleet size measured, a figure per repetition.
#[derive(Debug, Default)]
pub struct FleetTimes {
    pub hosts: usize,
    pub pause: Vec<Duration>,
    pub resume: Vec<Duration>,
    /// A pause with one more target that is down: the others rolled back.
    pub rolled_back: Vec<Duration>,
    /// Calls that did not end as they should (exit status, a host left
    /// paused), described.
    pub failures: Vec<String>,
}

/// Starts `hosts` nginx with the module and times the command line on them
/// `repetitions` times.
pub fn fleet(setup: &Setup, hosts: usize, repetitions: usize) -> io::Result<FleetTimes> {
    let cli = setup
        .cli
        .clone()
        .ok_or_else(|| io::Error::other("the fleet runs need --cli PATH"))?;
    // Few connections each: a worker sets up all of its worker_connections
    // at start, and hundreds of them must fit in memory together.
    let shape = Shape::workers(1).connections(64);
    let servers = (0..hosts)
        .map(|i| {
            Server::start(
                setup,
                Proxy::Module,
                shape,
                free_addr()?,
                &format!("fleet-{i}"),
            )
        })
        .collect::<io::Result<Vec<Server>>>()?;
    let file = setup.work_dir.join("fleet-targets");
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}/_intermission", s.listen))
        .collect();
    fs::write(&file, urls.join("\n") + "\n")?;
    let down = format!(
        "http://{}/_intermission",
        TcpListener::bind("127.0.0.1:0")?.local_addr()?
    );

    let mut times = FleetTimes {
        hosts,
        ..FleetTimes::default()
    };
    for _ in 0..repetitions {
        let (took, ok) = timed(&cli, &["pause", "--targets"], &file, &[])?;
        times.pause.push(took);
        if !ok {
            times.failures.push(format!("pause of {hosts} failed"));
        }
        let (took, ok) = timed(&cli, &["resume", "--targets"], &file, &[])?;
        times.resume.push(took);
        if !ok {
            times.failures.push(format!("resume of {hosts} failed"));
        }
        let (took, ok) = timed(
            &cli,
            &["pause", "--targets"],
            &file,
            &[&down, "--retries", "0"],
        )?;
        times.rolled_back.push(took);
        if ok {
            times
                .failures
                .push("a pause with a host down succeeded".into());
        }
        let (_, still_running) = timed(&cli, &["status", "--targets"], &file, &[])?;
        if !still_running || !all_running(&cli, &file)? {
            times
                .failures
                .push("a host stayed paused after the rollback".into());
        }
    }
    Ok(times)
}

/// Runs the command line on the targets of `file` (and `extra` arguments);
/// how long it took and whether it exited 0.
fn timed(cli: &Path, args: &[&str], file: &Path, extra: &[&str]) -> io::Result<(Duration, bool)> {
    let started = Instant::now();
    let output = Command::new(cli)
        .args(args)
        .arg(file)
        .args(extra)
        .output()?;
    Ok((started.elapsed(), output.status.success()))
}

/// Whether every target of `file` says it runs.
fn all_running(cli: &Path, file: &Path) -> io::Result<bool> {
    let output = Command::new(cli)
        .args(["status", "--json", "--targets"])
        .arg(file)
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| io::Error::other(format!("status --json is not JSON: {e}")))?;
    Ok(report["targets"]
        .as_array()
        .is_some_and(|rows| rows.iter().all(|row| row["state"] == "running")))
}
