//! The proxies under test, each started fresh in its own directory with a
//! generated configuration, all in front of the same upstream.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc_stats;

/// What sits between the client and the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// nginx without the module.
    PlainNginx,
    /// nginx with the module loaded and `intermission` on in the location.
    Module,
    /// nginx without the module, every request but the first parked by
    /// `limit_req` (no `nodelay`): nginx's own way of parking a request, the
    /// floor for the memory a parked request needs.
    LimitReq,
    /// HAProxy queueing requests for a server whose one slot is taken.
    Haproxy,
}

impl Proxy {
    pub fn label(self) -> &'static str {
        match self {
            Proxy::PlainNginx => "nginx",
            Proxy::Module => "nginx + intermission",
            Proxy::LimitReq => "nginx limit_req",
            Proxy::Haproxy => "HAProxy server queue",
        }
    }
}

/// Where the programs are and where runs may write.
#[derive(Clone, Debug)]
pub struct Setup {
    pub nginx: PathBuf,
    pub module: PathBuf,
    pub haproxy: PathBuf,
    /// The `intermission` command line, for the fleet runs.
    pub cli: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub upstream: SocketAddr,
    pub upstream_pid: u32,
    /// Descriptors each process may open (the hard limit, raised to by main).
    pub fd_limit: u64,
}

/// How a proxy under test is set up, beyond which proxy it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// nginx workers, or HAProxy threads.
    pub workers: usize,
    /// Upstream connections kept alive and reused (nginx's `keepalive` in an
    /// `upstream` block, HAProxy's connection reuse), as production
    /// configurations have it; else one connection per request.
    pub keepalive: bool,
    /// nginx's `worker_connections`; `None`: as many as descriptors allow.
    pub connections: Option<usize>,
    /// The client split over sender processes (spread.rs), for more
    /// requests than one process may hold.
    pub spread: bool,
}

impl Shape {
    pub fn workers(workers: usize) -> Shape {
        Shape {
            workers,
            keepalive: false,
            connections: None,
            spread: false,
        }
    }

    pub fn spread(self) -> Shape {
        Shape {
            spread: true,
            ..self
        }
    }

    pub fn keepalive(self, keepalive: bool) -> Shape {
        Shape { keepalive, ..self }
    }

    pub fn connections(self, connections: usize) -> Shape {
        Shape {
            connections: Some(connections),
            ..self
        }
    }
}

/// A running proxy; stopped (and its clients disconnected) on drop.
pub struct Server {
    child: Child,
    pub proxy: Proxy,
    pub listen: SocketAddr,
    pub dir: PathBuf,
}

/// The `Host` every request carries (HAProxy and nginx ignore it here).
pub const HOST: &str = "bench.test";
/// A static file served by nginx for the static-file throughput runs.
pub const STATIC_PATH: &str = "/static.txt";
/// A proxied path the upstream answers without recording.
pub const PROXIED_PATH: &str = "/p";
/// The name of HAProxy's admin socket in the server directory.
pub const HAPROXY_SOCKET: &str = "admin.sock";

impl Server {
    pub fn start(
        setup: &Setup,
        proxy: Proxy,
        shape: Shape,
        listen: SocketAddr,
        name: &str,
    ) -> io::Result<Server> {
        let workers = shape.workers;
        let dir = setup.work_dir.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("logs"))?;
        fs::create_dir_all(dir.join("html"))?;
        fs::write(
            dir.join("html").join(&STATIC_PATH[1..]),
            "static file, 32 bytes of text..\n",
        )?;
        let mut command = match proxy {
            Proxy::Haproxy => {
                fs::write(
                    dir.join("haproxy.cfg"),
                    haproxy_config(setup, shape, listen, &dir),
                )?;
                let mut c = Command::new(&setup.haproxy);
                c.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
                c
            }
            _ => {
                fs::write(
                    dir.join("nginx.conf"),
                    nginx_config(setup, proxy, shape, listen),
                )?;
                let mut c = Command::new(&setup.nginx);
                c.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("logs/stderr.log"))?)
            .spawn()?;
        let server = Server {
            child,
            proxy,
            listen,
            dir,
        };
        server.wait_ready(workers)?;
        Ok(server)
    }

    /// Waits until the port accepts and (nginx) every worker has started.
    fn wait_ready(&self, workers: usize) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = std::net::TcpStream::connect(self.listen).is_ok();
            let started = self.proxy == Proxy::Haproxy
                || proc_stats::children(self.child.id()).len() >= workers;
            if listening && started {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.join("logs/stderr.log")).unwrap_or_default();
                let errors =
                    fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{} did not start on {}:\n{log}{errors}",
                    self.proxy.label(),
                    self.listen
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The processes that do the work: nginx's workers, or HAProxy itself.
    pub fn measured_pids(&self) -> Vec<u32> {
        match self.proxy {
            Proxy::Haproxy => vec![self.child.id()],
            _ => proc_stats::children(self.child.id()),
        }
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join(HAPROXY_SOCKET)
    }

    /// nginx's error log so far (empty if there is none).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// Lines of nginx's error log at `[alert]`, `[crit]`, `[emerg]` or `[error]`.
    pub fn error_lines(&self) -> Vec<String> {
        lines_at_levels(
            &self.error_log(),
            &["[alert]", "[crit]", "[emerg]", "[error]"],
        )
    }
}

/// The lines of an nginx error log at any of `levels` (written `"[alert]"`).
pub fn lines_at_levels(log: &str, levels: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| levels.iter().any(|level| l.contains(level)))
        .map(str::to_owned)
        .collect()
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: nginx's and HAProxy's fast shutdown; held clients are closed.
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_config(setup: &Setup, proxy: Proxy, shape: Shape, listen: SocketAddr) -> String {
    let mut conf = String::new();
    if proxy == Proxy::Module {
        let _ = writeln!(conf, "load_module {};", setup.module.display());
    }
    let workers = shape.workers;
    // Held requests need a descriptor each, and another at release for their
    // upstream connection; a few are left for logs and listeners.
    let connections = shape
        .connections
        .map_or(setup.fd_limit.saturating_sub(64), |c| c as u64);
    // With several workers, each gets its own listening socket, as busy
    // sites configure: connections spread over every worker.
    let reuseport = if workers > 1 { " reuseport" } else { "" };
    let (upstream_block, upstream, keepalive) = nginx_upstream(setup, shape);
    let _ = write!(
        conf,
        "worker_processes {workers};
worker_rlimit_nofile {fd_limit};
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log notice;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    {log_level}
    {limit_req_zone}
    {upstream_block}
    server {{
        listen {listen} backlog=65535{reuseport};
        {hold}
        location {STATIC_PATH} {{ root html; }}
        location / {{
            proxy_set_header X-Worker $pid;
            {ticket}
            {keepalive}
            proxy_pass http://{upstream};
        }}
        {control}
    }}
}}
",
        fd_limit = setup.fd_limit,
        limit_req_zone = if proxy == Proxy::LimitReq {
            // One key for every request, 1 request a minute: all but the first wait.
            "limit_req_zone $server_port zone=hold:1m rate=1r/m;"
        } else {
            ""
        },
        hold = match proxy {
            Proxy::Module => "intermission;",
            Proxy::LimitReq => "limit_req zone=hold burst=100000;",
            _ => "",
        },
        // The upstream is told each held request's place in the order nginx
        // received them, to tell the module's order from the order nginx's
        // workers happened to read the requests in.
        ticket = if proxy == Proxy::Module {
            "proxy_set_header X-Ticket $intermission_ticket;"
        } else {
            ""
        },
        // The module's pause and resume lines at `notice`, below the
        // `[error]` lines the reports count as trouble.
        log_level = if proxy == Proxy::Module {
            "intermission_log_level notice;"
        } else {
            ""
        },
        control = if proxy == Proxy::Module {
            "location /_intermission { allow 127.0.0.1; deny all; intermission_control; }"
        } else {
            ""
        },
    );
    conf
}

/// How nginx reaches the upstream: an `upstream` block (empty without
/// keep-alive), the name `proxy_pass` uses, and the directives that keep
/// connections alive (empty without).
fn nginx_upstream(setup: &Setup, shape: Shape) -> (String, String, &'static str) {
    if shape.keepalive {
        (
            format!(
                "upstream backend {{ server {}; keepalive 512; }}",
                setup.upstream
            ),
            "backend".to_owned(),
            "proxy_http_version 1.1; proxy_set_header Connection \"\";",
        )
    } else {
        (String::new(), setup.upstream.to_string(), "")
    }
}

/// HAProxy holds requests in a server queue: the server takes one connection
/// (`maxconn 1`) and the run fills that slot with a request the upstream never
/// answers, so every later request waits in the queue. Raising the server's
/// maxconn on the admin socket releases the queue. `timeout queue` must
/// outlast the pause or HAProxy answers 503.
/// `threads` plays the part of nginx's worker count.
fn haproxy_config(setup: &Setup, shape: Shape, listen: SocketAddr, dir: &Path) -> String {
    let threads = shape.workers;
    // One server connection per request, or connections kept and reused by
    // any request (nginx's `keepalive` pool does the same).
    let server_connections = if shape.keepalive {
        "http-reuse always"
    } else {
        "option http-server-close"
    };
    // HAProxy sizes for two descriptors per connection, but a queued client
    // has only one: allow as many clients as descriptors, and keep the
    // release within them (`release_slots`). Without `no strict-limits`
    // HAProxy refuses to start when it cannot get 2 x maxconn descriptors.
    let maxconn = setup.fd_limit.saturating_sub(100);
    format!(
        "global
    nbthread {threads}
    maxconn {maxconn}
    ulimit-n {fd_limit}
    no strict-limits
    stats socket {socket} level admin
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout queue 300s
    {server_connections}
frontend bench
    bind {listen} backlog 65535
    maxconn {maxconn}
    default_backend app
backend app
    server app {upstream} maxconn 1 pool-purge-delay 60s
",
        socket = dir.join(HAPROXY_SOCKET).display(),
        fd_limit = setup.fd_limit,
        upstream = setup.upstream,
    )
}

/// How many server connections HAProxy may open at release: every held
/// request at once, as the module releases them, as far as the descriptors
/// left after `held` clients allow.
pub fn release_slots(setup: &Setup, held: usize) -> u64 {
    (held as u64)
        .min(setup.fd_limit.saturating_sub(held as u64 + 200))
        .max(1)
}
