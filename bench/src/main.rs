//! intermission-bench: the benchmark scripts/bench drives.
//!
//! ```text
//! intermission-bench run [--quick] --nginx PATH --module PATH [--haproxy PATH] [--cli PATH] [--out DIR] [--work-dir DIR]
//! intermission-bench one (module|haproxy|limit_req|burst|fleet) N WORKERS HOLD_SECS [keepalive] [spread] [connections=N] --nginx PATH --module PATH ...
//! intermission-bench soak [--cycles N] [--clients N] [--seed N] --nginx PATH --module PATH [--work-dir DIR]
//! intermission-bench upstream ADDR
//! intermission-bench send ADDR HOST SOURCE FIRST COUNT
//! ```
//!
//! `run` measures every workload and writes `results.md` and `release.svg`
//! to `--out`; `one` runs a single hold/release (or burst) and prints what it
//! saw, for profiling; `soak` pauses and resumes many times under steady load
//! and checks that nothing was lost and memory stayed flat (see soak.rs);
//! `upstream` is the recording upstream, which the others start as a child
//! process so that its CPU is its own; `send` is one of the processes the
//! client is split over for the largest runs (spread.rs).
//!
//! Client and upstream each run on one thread (tokio's current-thread
//! runtime): the machine has two cores, shared with nginx or HAProxy, and one
//! thread each keeps the three from competing more than they must.

mod fleet;
mod load;
mod order;
mod plan;
mod proc_stats;
mod report;
mod runs;
mod servers;
mod soak;
mod spread;
mod suite;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use servers::{Proxy, Setup, Shape};

fn usage() -> ! {
    eprintln!(
        "usage: intermission-bench run [--quick] --nginx PATH --module PATH [--haproxy PATH] [--cli PATH] [--out DIR] [--work-dir DIR]\n\
         \x20      intermission-bench one (module|haproxy|limit_req|burst|fleet) N WORKERS HOLD_SECS [keepalive] [spread] [connections=N] --nginx PATH --module PATH [...]\n\
         \x20      intermission-bench soak [--cycles N] [--clients N] [--seed N] --nginx PATH --module PATH [--work-dir DIR]\n\
         \x20      intermission-bench upstream ADDR"
    );
    std::process::exit(2)
}

struct Options {
    positional: Vec<String>,
    quick: bool,
    nginx: Option<PathBuf>,
    module: Option<PathBuf>,
    haproxy: PathBuf,
    cli: Option<PathBuf>,
    out: PathBuf,
    work_dir: PathBuf,
    soak: soak::Plan,
}

fn parse_options(args: impl Iterator<Item = String>) -> Options {
    let mut options = Options {
        positional: Vec::new(),
        quick: false,
        nginx: None,
        module: None,
        haproxy: PathBuf::from("/usr/sbin/haproxy"),
        cli: None,
        out: PathBuf::from("target/bench/results"),
        work_dir: PathBuf::from("target/bench/work"),
        soak: soak::Plan {
            cycles: soak::DEFAULT_CYCLES,
            clients: soak::DEFAULT_CLIENTS,
            seed: soak::DEFAULT_SEED,
        },
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--nginx" => options.nginx = Some(value().into()),
            "--module" => options.module = Some(value().into()),
            "--haproxy" => options.haproxy = value().into(),
            "--cli" => options.cli = Some(value().into()),
            "--out" => options.out = value().into(),
            "--work-dir" => options.work_dir = value().into(),
            "--cycles" => options.soak.cycles = positive(&value()) as usize,
            "--clients" => options.soak.clients = positive(&value()) as usize,
            "--seed" => options.soak.seed = value().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ if arg.starts_with("--") => usage(),
            _ => options.positional.push(arg),
        }
    }
    options
}

fn positive(text: &str) -> u64 {
    text.parse()
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| usage())
}

/// Raises this process's descriptor limit to the hard limit (children
/// inherit it) and returns it.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// The recording upstream, as a child process; killed on drop.
struct UpstreamProcess(Child);

impl UpstreamProcess {
    fn start(addr: SocketAddr) -> std::io::Result<UpstreamProcess> {
        let child = Command::new(std::env::current_exe()?)
            .arg("upstream")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .spawn()?;
        for _ in 0..250 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(UpstreamProcess(child));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other("the upstream did not start"))
    }
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| usage());
    let options = parse_options(args);
    if command == "upstream" {
        let addr: SocketAddr = options
            .positional
            .first()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage());
        raise_fd_limit();
        if let Err(e) = upstream::serve(addr) {
            eprintln!("upstream: {e}");
            std::process::exit(1);
        }
        return;
    }
    if command == "send" {
        raise_fd_limit();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        if let Err(e) = local.block_on(&runtime, spread::sender(&options.positional)) {
            eprintln!("intermission-bench send: {e}");
            std::process::exit(1);
        }
        return;
    }
    if !["run", "one", "soak"].contains(&command.as_str()) {
        usage();
    }
    let (Some(nginx), Some(module)) = (options.nginx.clone(), options.module.clone()) else {
        usage()
    };
    let fd_limit = raise_fd_limit();
    let upstream_addr = runs::free_addr().expect("a free port");
    let _upstream = UpstreamProcess::start(upstream_addr).expect("starting the upstream");
    std::fs::create_dir_all(&options.work_dir).expect("creating the work directory");
    let setup = Setup {
        nginx: absolute(nginx),
        module: absolute(module),
        haproxy: options.haproxy.clone(),
        cli: options.cli.clone().map(absolute),
        work_dir: absolute(options.work_dir.clone()),
        upstream: upstream_addr,
        upstream_pid: _upstream.0.id(),
        fd_limit,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        match command.as_str() {
            "one" => one(&setup, &options.positional).await,
            "soak" => soak::run(&setup, options.soak).await,
            _ => suite::run_all(&setup, options.quick, &options.out).await,
        }
    });
    if let Err(e) = result {
        eprintln!("intermission-bench: {e}");
        std::process::exit(1);
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::fs::canonicalize(&path).unwrap_or(path)
}

async fn one(setup: &Setup, args: &[String]) -> std::io::Result<()> {
    let [what, n, workers, hold, options @ ..] = args else {
        usage()
    };
    let mut keepalive = false;
    let mut spread = false;
    let mut connections = None;
    for option in options {
        match option.split_once('=') {
            None if option == "keepalive" => keepalive = true,
            None if option == "spread" => spread = true,
            Some(("connections", c)) => connections = Some(c.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let n: usize = n.parse().unwrap_or_else(|_| usage());
    let workers: usize = workers.parse().unwrap_or_else(|_| usage());
    let hold = Duration::from_secs_f64(hold.parse().unwrap_or_else(|_| usage()));
    let mut shape = Shape::workers(workers).keepalive(keepalive);
    if let Some(connections) = connections {
        shape = shape.connections(connections);
    }
    if spread {
        shape = shape.spread();
    }
    if what == "fleet" {
        let times = fleet::fleet(setup, n, 3)?;
        println!("fleet of {n}: {times:?}");
        return Ok(());
    }
    let pass = match what.as_str() {
        "burst" => runs::burst(setup, shape, n).await?,
        "module" => runs::hold_and_release(setup, Proxy::Module, shape, n, hold).await?,
        "haproxy" => runs::hold_and_release(setup, Proxy::Haproxy, shape, n, hold).await?,
        "limit_req" => runs::hold_and_release(setup, Proxy::LimitReq, shape, n, hold).await?,
        _ => usage(),
    };
    println!(
        "{what} n={n} workers={workers}: first {:?} last {:?} cpu(proxy,upstream,client) {:?} failed {} leaked {} cpu/10s {:?} bytes/held {:?}\n  order {:?}",
        pass.first(),
        pass.last(),
        pass.release_cpu,
        pass.failed,
        pass.leaked,
        pass.hold_cpu_per_10s,
        pass.bytes_per_held.map(|b| b.round()),
        pass.order
    );
    for line in pass.errors.iter().take(5) {
        println!("  error log: {line}");
    }
    Ok(())
}
