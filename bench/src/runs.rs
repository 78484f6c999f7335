//! One measurement each: a throughput run with wrk, a burst with no pause
//! (the floor), and a hold-then-release through one of the proxies.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::load::{self, Answer, InFlight};
use crate::order::{order_stats, OrderStats};
use crate::proc_stats;
use crate::servers::{release_slots, Proxy, Server, Setup, Shape, HOST};
use crate::spread::Senders;
use crate::upstream::parse_order;

/// A free port on 127.0.0.1 (the kernel's pick; released before use).
pub fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

// ---------------------------------------------------------------- throughput

#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
}

/// `wrk` with 64 connections on one thread for `secs`.
pub fn wrk(url: &str, secs: u64) -> io::Result<Throughput> {
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "--latency", url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text)
        .ok_or_else(|| io::Error::other(format!("unreadable wrk output for {url}:\n{text}")))
}

/// Requests/sec and the 99th percentile from `wrk --latency` output. A run
/// with socket errors or non-2xx answers is refused: its figure is not
/// comparable.
pub fn parse_wrk(text: &str) -> Option<Throughput> {
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return None;
    }
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))?
        .trim();
    Some(Throughput {
        requests_per_sec,
        p99_ms: parse_duration_ms(p99)?,
    })
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

// ------------------------------------------------------------ hold / release

/// What one pass of a workload saw.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub held: usize,
    /// CPU the proxy's processes used while holding, per 10 s of holding.
    pub hold_cpu_per_10s: Option<Duration>,
    /// Resident memory growth of the proxy's processes per held request.
    pub bytes_per_held: Option<f64>,
    /// Completion times of every answer, from the release (or burst) start, sorted.
    pub completions: Vec<Duration>,
    /// Answers that were not 200, and requests that got no answer.
    pub failed: usize,
    /// Requests that reached the upstream while they should have been held.
    pub leaked: usize,
    pub order: OrderStats,
    /// CPU used from the release (or burst) start to the last answer by the
    /// proxy, the upstream and the client: what the release time is made of.
    pub release_cpu: Option<[Duration; 3]>,
    /// nginx error-log lines at [error] or worse during the pass.
    pub errors: Vec<String>,
}

impl Pass {
    pub fn first(&self) -> Option<Duration> {
        self.completions.first().copied()
    }
    pub fn last(&self) -> Option<Duration> {
        self.completions.last().copied()
    }
}

/// What the upstream saw since the last call: by connection, or by request
/// when requests shared connections (`keepalive`).
async fn upstream_order(
    setup: &Setup,
    keepalive: bool,
) -> io::Result<Vec<crate::upstream::Arrival>> {
    let (_, body) = load::get(setup.upstream, HOST, "/__order").await?;
    Ok(parse_order(&body, keepalive))
}

fn settle_time(n: usize) -> Duration {
    // Enough for the proxy to read every request already sent.
    Duration::from_millis(300 + n as u64 / 20)
}

/// CPU time so far of the proxy, the upstream and the client (this process
/// and its senders, while they run).
fn cpu_split(setup: &Setup, proxy_pids: &[u32], sent: &Sent) -> [Duration; 3] {
    let mut client = vec![std::process::id()];
    if let Sent::Spread(senders) = sent {
        client.extend(senders.pids());
    }
    [
        proc_stats::totals(proxy_pids).0,
        proc_stats::cpu_time(setup.upstream_pid),
        proc_stats::totals(&client).0,
    ]
}

/// Requests sent and not answered yet: by this process, or by senders.
pub enum Sent {
    Local(InFlight),
    Spread(Senders),
}

impl Sent {
    /// Sends `n` requests in `shape`'s way (see `send_in_order` for `gap`).
    async fn send(
        listen: SocketAddr,
        shape: Shape,
        n: usize,
        gap: Option<Duration>,
    ) -> io::Result<Sent> {
        if shape.spread {
            Ok(Sent::Spread(Senders::send(listen, HOST, n)?))
        } else {
            Ok(Sent::Local(
                load::send_in_order(listen, HOST, n, gap).await?,
            ))
        }
    }

    /// Every answer, and the CPU the senders used in all (they have
    /// exited by then; none for this process's own sending).
    async fn answers(self) -> io::Result<(Vec<Option<Answer>>, Duration)> {
        match self {
            Sent::Local(inflight) => Ok((inflight.answers().await, Duration::ZERO)),
            Sent::Spread(senders) => senders.answers(),
        }
    }
}

async fn collect(
    setup: &Setup,
    pass: &mut Pass,
    started: Instant,
    cpu_before: [Duration; 3],
    pids: &[u32],
    sent: Sent,
) -> io::Result<()> {
    let (answers, senders_cpu) = sent.answers().await?;
    pass.failed = answers
        .iter()
        .filter(|a| !matches!(a, Some(a) if a.status == 200))
        .count();
    pass.completions = answers
        .iter()
        .flatten()
        .filter(|a| a.status == 200)
        .map(|a| a.completed.saturating_duration_since(started))
        .collect();
    pass.completions.sort_unstable();
    let cpu_after = [
        proc_stats::totals(pids).0,
        proc_stats::cpu_time(setup.upstream_pid),
        proc_stats::cpu_time(std::process::id()) + senders_cpu,
    ];
    pass.release_cpu = Some([0, 1, 2].map(|i| cpu_after[i].saturating_sub(cpu_before[i])));
    Ok(())
}

/// Calls the module's control endpoint; anything but 200 is an error.
pub async fn control(server: &Server, action: &str) -> io::Result<()> {
    let (status, body) =
        load::get(server.listen, HOST, &format!("/_intermission/{action}")).await?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "{action} answered {status}: {body}"
        )));
    }
    Ok(())
}

/// `n` requests sent at once to nginx with the module loaded and not paused:
/// the time the upstream path itself needs, which no release can beat.
pub async fn burst(setup: &Setup, shape: Shape, n: usize) -> io::Result<Pass> {
    let server = Server::start(setup, Proxy::Module, shape, free_addr()?, "burst")?;
    upstream_order(setup, shape.keepalive).await?;
    let streams = load::connect_all(server.listen, n).await?;
    tokio::time::sleep(settle_time(n)).await;
    let pids = server.measured_pids();
    let cpu_before = cpu_split(setup, &pids, &Sent::Local(InFlight::none()));
    let (started, inflight) = load::burst(streams, HOST).await?;
    let mut pass = Pass {
        held: n,
        ..Pass::default()
    };
    collect(
        setup,
        &mut pass,
        started,
        cpu_before,
        &pids,
        Sent::Local(inflight),
    )
    .await?;
    pass.order = order_stats(&upstream_order(setup, shape.keepalive).await?);
    pass.errors = server.error_lines();
    Ok(pass)
}

/// Holds `n` requests in `proxy` for `hold`, measuring CPU and memory, then
/// releases them (except `limit_req`, which only parks) and measures the release.
pub async fn hold_and_release(
    setup: &Setup,
    proxy: Proxy,
    shape: Shape,
    n: usize,
    hold: Duration,
) -> io::Result<Pass> {
    hold_and_release_by(setup, proxy, shape, n, hold, "disable").await
}

/// `n` requests held by the module for `hold`, then released by
/// `disable?rate=RATE`.
pub async fn paced_release(
    setup: &Setup,
    shape: Shape,
    n: usize,
    hold: Duration,
    rate: u64,
) -> io::Result<Pass> {
    let disable = format!("disable?rate={rate}");
    hold_and_release_by(setup, Proxy::Module, shape, n, hold, &disable).await
}

/// `hold_and_release`, the module releasing by the control call `disable`.
async fn hold_and_release_by(
    setup: &Setup,
    proxy: Proxy,
    shape: Shape,
    n: usize,
    hold: Duration,
    disable: &str,
) -> io::Result<Pass> {
    let server = Server::start(setup, proxy, shape, free_addr()?, "hold")?;
    if shape.keepalive && proxy != Proxy::LimitReq {
        warm_upstream_pool(&server, shape.workers).await?;
    }
    upstream_order(setup, shape.keepalive).await?;
    let slot_holder = start_holding(&server, proxy).await?;
    let pids = server.measured_pids();
    let (_, rss_before) = proc_stats::totals(&pids);
    // Close to the connection limit, one request at a time (see
    // `send_in_order`): the release is what is measured, not how nginx
    // makes room for new connections.
    let gap = shape.connections.map(|_| Duration::from_millis(1));
    let sent = Sent::send(server.listen, shape, n, gap).await?;
    tokio::time::sleep(settle_time(n)).await;
    let (cpu_start, rss_holding) = proc_stats::totals(&pids);
    tokio::time::sleep(hold).await;
    let (cpu_end, _) = proc_stats::totals(&pids);

    let mut pass = Pass {
        held: n,
        ..Pass::default()
    };
    pass.hold_cpu_per_10s = Some((cpu_end - cpu_start).mul_f64(10.0 / hold.as_secs_f64()));
    pass.bytes_per_held = Some(rss_holding.saturating_sub(rss_before) as f64 / n as f64);
    pass.leaked = upstream_order(setup, shape.keepalive).await?.len();
    if proxy == Proxy::LimitReq {
        // Nothing to release: stopping nginx closes the parked connections.
        pass.errors = server.error_lines();
        drop(server);
        let _ = sent.answers().await;
        return Ok(pass);
    }

    let cpu_before = cpu_split(setup, &pids, &sent);
    let started = Instant::now();
    release(setup, &server, n, disable).await?;
    collect(setup, &mut pass, started, cpu_before, &pids, sent).await?;
    drop(slot_holder);
    pass.order = order_stats(&upstream_order(setup, shape.keepalive).await?);
    pass.errors = server.error_lines();
    Ok(pass)
}

/// Requests sent at once before the pause, per worker (HAProxy: thread),
/// for the proxy's pool of idle upstream connections to hold what a
/// release uses (nginx's `keepalive 512`): production traffic keeps that
/// pool warm, and a cold one mixes connection setup into the kept-alive
/// runs (a request on a new connection reaches the upstream after later
/// ones sent on idle connections, by up to the time a connection takes).
const WARM_UP_PER_WORKER: usize = 512;

async fn warm_upstream_pool(server: &Server, workers: usize) -> io::Result<()> {
    let n = WARM_UP_PER_WORKER * workers;
    // HAProxy's server takes one connection at a time until the release:
    // open it up for the warm-up.
    if server.proxy == Proxy::Haproxy {
        set_haproxy_maxconn(server, n as u64).await?;
    }
    let failed = load::concurrent_gets(server.listen, HOST, "/warm", n).await?;
    if server.proxy == Proxy::Haproxy {
        set_haproxy_maxconn(server, 1).await?;
    }
    if failed > 0 {
        return Err(io::Error::other(format!(
            "{failed} of {n} warm-up requests failed"
        )));
    }
    Ok(())
}

async fn set_haproxy_maxconn(server: &Server, maxconn: u64) -> io::Result<()> {
    let command = format!("set maxconn server app/app {maxconn}");
    let reply = load::haproxy_command(&server.admin_socket(), &command).await?;
    if !reply.trim().is_empty() {
        return Err(io::Error::other(format!(
            "HAProxy refused set maxconn: {reply}"
        )));
    }
    Ok(())
}

/// Makes `proxy` hold the requests sent from now on: the module enabled,
/// HAProxy's one server slot taken (by the connection returned, to keep
/// open until the release), limit_req's bucket emptied.
async fn start_holding(server: &Server, proxy: Proxy) -> io::Result<Option<TcpStream>> {
    match proxy {
        Proxy::Module => {
            control(server, "enable").await?;
            Ok(None)
        }
        Proxy::Haproxy => {
            let slot_holder = load::send_unanswered(server.listen, HOST, "/__hang").await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Some(slot_holder))
        }
        Proxy::LimitReq => {
            // The first request passes (the bucket starts full); the rest wait.
            let (status, _) = load::get(server.listen, HOST, "/r/first").await?;
            if status != 200 {
                return Err(io::Error::other(format!(
                    "limit_req first request answered {status}"
                )));
            }
            Ok(None)
        }
        Proxy::PlainNginx => Err(io::Error::other("plain nginx holds nothing")),
    }
}

/// Releases the `n` requests `server` holds: the module by the control call
/// `disable`, HAProxy by opening its server's slots.
async fn release(setup: &Setup, server: &Server, n: usize, disable: &str) -> io::Result<()> {
    match server.proxy {
        Proxy::Module => control(server, disable).await,
        _ => {
            // Not 0: HAProxy 2.6 reads that as "no limit" but does not
            // dequeue anything until a server connection ends.
            set_haproxy_maxconn(server, release_slots(setup, n)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 5s test @ http://127.0.0.1:8080/p
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms  520.11us  12.93ms   90.12%
  Latency Distribution
     50%    3.01ms
     75%    3.21ms
     90%    3.50ms
     99%  850.00us
  104381 requests in 5.00s, 16.23MB read
Requests/sec:  20874.12
Transfer/sec:      3.25MB
";

    #[test]
    fn wrk_figures() {
        let t = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(t.requests_per_sec, 20874.12);
        assert!((t.p99_ms - 0.85).abs() < 1e-9);
    }

    #[test]
    fn wrk_runs_with_errors_are_refused() {
        let bad = WRK_OUTPUT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(parse_wrk(&bad).is_none());
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1.50s"), Some(1500.0));
        assert_eq!(parse_duration_ms("250us"), Some(0.25));
        assert_eq!(parse_duration_ms("7ms"), Some(7.0));
        assert_eq!(parse_duration_ms("7h"), None);
    }
}
