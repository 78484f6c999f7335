//! Runs a real nginx with the module loaded, in a fresh prefix per test.

use std::env;
use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use super::{poll_until, procfs, scaled, sockdiag, wait_until, BOUND};

const MODULE_FILE: &str = "libngx_http_intermission_module.so";
const MODULE_NAME: &str = "ngx_http_intermission_module.so";
/// Stands for the prefix directory in config text (e.g. for auth_basic_user_file).
pub const PREFIX_MARK: &str = "@PREFIX@";

/// target/<profile>, from this test binary's path (target/<profile>/deps/<test>).
fn target_profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The nginx binary: $INTERMISSION_NGINX, else the vendored build exported by
/// build.rs, else the vendored build found in target/ (same nginx-sys build).
pub fn nginx_binary() -> PathBuf {
    if let Some(path) = env::var_os("INTERMISSION_NGINX") {
        return path.into();
    }
    if let Some(path) = option_env!("INTERMISSION_NGINX_BINARY") {
        return path.into();
    }
    if let Some(path) = vendored_nginx_in_target() {
        return path;
    }
    panic!(
        "no nginx binary: set INTERMISSION_NGINX=/path/to/nginx, or build with build.rs exporting \
         INTERMISSION_NGINX_BINARY (the vendored nginx built by nginx-sys)"
    );
}

fn vendored_nginx_in_target() -> Option<PathBuf> {
    fs::read_dir(target_profile_dir().join("build"))
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("out/objs/nginx")))
        .filter(|path| path.to_string_lossy().contains("/nginx-sys-") && path.is_file())
        .max_by_key(|path| fs::metadata(path).and_then(|m| m.modified()).ok())
}

/// The module: $INTERMISSION_MODULE, else the cdylib cargo built for this
/// test run. `cargo test` leaves it in `deps/` (only `cargo build` copies it
/// up a level), and `deps/` always has the newest build.
pub fn module_path() -> PathBuf {
    let path = env::var_os("INTERMISSION_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let profile = target_profile_dir();
            [
                profile.join("deps").join(MODULE_FILE),
                profile.join(MODULE_FILE),
            ]
            .into_iter()
            .find(|path| path.is_file())
            .unwrap_or_else(|| profile.join(MODULE_FILE))
        });
    assert!(
        path.is_file(),
        "module not found at {} (build it, or set INTERMISSION_MODULE)",
        path.display()
    );
    path.canonicalize().expect("module path")
}

/// nginx needs descriptors for 1,000 held requests and their upstream
/// connections, and so does the test process.
fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    });
}

/// A fresh directory for one nginx: config, logs, temp paths, module link.
/// Removed on drop unless the test is failing or INTERMISSION_KEEP_PREFIX is set.
pub struct Prefix {
    dir: PathBuf,
}

impl Prefix {
    pub fn new() -> Prefix {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let test = thread::current()
            .name()
            .unwrap_or("test")
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = env::temp_dir()
            .join("intermission-tests")
            .join(format!("{test}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("modules")).expect("creating the prefix");
        fs::create_dir_all(dir.join("tmp")).expect("creating the prefix");
        std::os::unix::fs::symlink(module_path(), dir.join("modules").join(MODULE_NAME))
            .expect("linking the module");
        Prefix { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file's text, empty if it does not exist.
    pub fn read(&self, name: &str) -> String {
        fs::read(self.path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if thread::panicking() || env::var_os("INTERMISSION_KEEP_PREFIX").is_some() {
            eprintln!("nginx prefix kept for inspection: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The parts of an nginx config; the fixed frame (logs, paths, module,
/// listen) is added by `render`.
#[derive(Clone, Debug)]
pub struct Config {
    workers: usize,
    worker_connections: usize,
    reuseport: bool,
    main: Vec<String>,
    http: Vec<String>,
    servers: Vec<String>,
    files: Vec<(String, String)>,
    /// Extra `listen` parameters (`http2`, `ssl`) of some servers, by index.
    listen_params: Vec<(usize, String)>,
    /// `daemon on;` (see `daemon`).
    daemon: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// One worker, no server yet.
    pub fn new() -> Self {
        Config {
            workers: 1,
            worker_connections: 10000,
            reuseport: false,
            main: Vec::new(),
            http: Vec::new(),
            servers: Vec::new(),
            files: Vec::new(),
            listen_params: Vec::new(),
            daemon: false,
        }
    }

    /// `daemon on;`: the master forks away from the test (a new session
    /// and process group), as nginx runs in production. Needed for a binary
    /// upgrade: nginx ignores USR2 while the process that started it lives.
    pub fn daemon(mut self) -> Self {
        self.daemon = true;
        self
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    pub fn worker_connections(mut self, n: usize) -> Self {
        self.worker_connections = n;
        self
    }

    /// `listen ... reuseport`: each worker has its own listening socket and
    /// the kernel spreads connections over them, so requests sent one after
    /// another land on every worker (without it, the worker that wakes first
    /// takes most of them).
    pub fn reuseport(mut self) -> Self {
        self.reuseport = true;
        self
    }

    /// Text for the main context (`worker_shutdown_timeout 2s;`, `env ...;`).
    pub fn main(mut self, text: &str) -> Self {
        self.main.push(text.to_owned());
        self
    }

    /// Text for the http block (`@PREFIX@` stands for the prefix).
    pub fn http(mut self, text: &str) -> Self {
        self.http.push(text.to_owned());
        self
    }

    /// A server block's body; the harness adds its own `listen` (one port per server).
    pub fn server(mut self, body: &str) -> Self {
        self.servers.push(body.to_owned());
        self
    }

    /// A server whose `listen` carries extra parameters (`ssl`, `http2`):
    /// `listen 127.0.0.1:PORT backlog=4096 {params};`.
    pub fn server_listening(mut self, params: &str, body: &str) -> Self {
        self.listen_params
            .push((self.servers.len(), params.to_owned()));
        self.server(body)
    }

    /// A file to write into the prefix before nginx starts.
    pub fn file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_owned(), contents.to_owned()));
        self
    }

    fn render(&self, prefix: &Path, ports: &[u16]) -> String {
        let p = prefix.display();
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let reuseport = if self.reuseport { " reuseport" } else { "" };
        let servers: String = self
            .servers
            .iter()
            .zip(ports)
            .enumerate()
            .map(|(i, (body, port))| {
                let params: String = self
                    .listen_params
                    .iter()
                    .filter(|(server, _)| *server == i)
                    .map(|(_, params)| format!(" {params}"))
                    .collect();
                format!("    server {{\n        listen 127.0.0.1:{port} backlog=4096{reuseport}{params};\n        server_name localhost;\n        {body}\n    }}\n")
            })
            .collect();
        let http_extra = self.http.join("\n    ");
        let main_extra = self.main.join("\n");
        let text = format!(
            "# written by tests/common/nginx.rs
daemon {daemon};
master_process on;
worker_processes {workers};
{user}
pid {p}/nginx.pid;
error_log {p}/error.log info;
worker_rlimit_nofile 20000;
load_module {p}/modules/{MODULE_NAME};
{main_extra}

events {{
    worker_connections {worker_connections};
}}

http {{
    log_format intermission '$status $request_method \"$request_uri\" pid=$pid seq=\"$http_x_seq\" outcome=$intermission_outcome wait=\"$intermission_wait\" at=$msec took=$request_time up=$upstream_connect_time/$upstream_response_time';
    access_log {p}/access.log intermission;
    client_body_temp_path {p}/tmp/client_body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    {http_extra}
{servers}}}
",
            workers = self.workers,
            daemon = if self.daemon { "on" } else { "off" },
            worker_connections = self.worker_connections,
        );
        text.replace(PREFIX_MARK, &p.to_string())
    }

    fn write(&self, prefix: &Prefix, ports: &[u16]) {
        for (name, contents) in &self.files {
            fs::write(
                prefix.path(name),
                contents.replace(PREFIX_MARK, &prefix.dir().display().to_string()),
            )
            .expect("writing a prefix file");
        }
        fs::write(prefix.path("nginx.conf"), self.render(prefix.dir(), ports))
            .expect("writing nginx.conf");
    }
}

/// Ports the kernel considers free right now (held together so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// An nginx command line, behind $INTERMISSION_NGINX_WRAPPER if that is set:
/// a command prefix, split on whitespace (no quoting), such as
/// `valgrind --trace-children=yes ...` (scripts/memcheck). The wrapper must
/// become nginx in the same process, as valgrind does: the harness signals
/// the pid it spawned as the master and finds the workers among its children.
/// nginx runs in its prefix directory, so that a wrapper's relative paths
/// (valgrind's `--log-file=vg.%p.log`) land there, one directory per nginx.
fn nginx_command(prefix: &Prefix) -> Command {
    let wrapper = env::var("INTERMISSION_NGINX_WRAPPER").unwrap_or_default();
    let mut wrapper = wrapper.split_whitespace();
    let mut command = match wrapper.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(wrapper).arg(nginx_binary());
            command
        }
        None => Command::new(nginx_binary()),
    };
    command
        .arg("-p")
        .arg(format!("{}/", prefix.dir().display()))
        .arg("-c")
        .arg(prefix.path("nginx.conf"))
        .arg("-e")
        .arg(prefix.path("error.log"))
        .current_dir(prefix.dir())
        .stdin(Stdio::null());
    command
}

fn kill_group(child: &mut Child) {
    // nginx runs in its own process group: this reaches its workers too, even
    // old ones that a reload left behind.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// A line of the access log (format `intermission` above).
#[derive(Clone, Debug)]
pub struct AccessEntry {
    pub status: u16,
    pub method: String,
    pub uri: String,
    pub line: String,
}

impl AccessEntry {
    /// `$intermission_outcome` ("-" when the module wrote none).
    pub fn outcome(&self) -> &str {
        self.field("outcome=").unwrap_or_default()
    }

    /// `$intermission_wait`, in milliseconds; `None` when empty.
    pub fn wait_ms(&self) -> Option<u64> {
        let wait = self.field("wait=\"")?;
        let wait = wait.strip_suffix('"').unwrap_or(wait);
        (!wait.is_empty()).then(|| wait.parse().expect("a wait in milliseconds"))
    }

    fn field(&self, name: &str) -> Option<&str> {
        let start = self.line.rfind(name)? + name.len();
        self.line[start..].split(' ').next()
    }

    fn parse(line: &str) -> Option<AccessEntry> {
        let mut words = line.splitn(3, ' ');
        let status = words.next()?.parse().ok()?;
        let method = words.next()?.to_owned();
        let rest = words.next()?.strip_prefix('"')?;
        let uri = rest[..rest.find("\" pid=")?].to_owned();
        Some(AccessEntry {
            status,
            method,
            uri,
            line: line.to_owned(),
        })
    }
}

pub struct Nginx {
    config: Config,
    ports: Vec<u16>,
    child: Option<Child>,
    /// With `Config::daemon`: the master, from the pid file (the child the
    /// test spawned exited as nginx daemonized).
    daemon_master: Option<i32>,
    prefix: Prefix,
}

impl Nginx {
    /// Starts nginx and waits until it listens with all its workers.
    pub fn start(config: Config) -> Nginx {
        assert!(!config.servers.is_empty(), "a config needs a server");
        raise_fd_limit();
        let prefix = Prefix::new();
        for attempt in 1.. {
            let ports = free_ports(config.servers.len());
            config.write(&prefix, &ports);
            let _ = fs::remove_file(prefix.path("error.log"));
            let output = File::create(prefix.path("stderr.log")).expect("stderr.log");
            let mut child = nginx_command(&prefix)
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx_binary().display()));
            let ready = if config.daemon {
                wait_daemon_ready(&mut child, &prefix, &ports, config.workers).map(Some)
            } else {
                wait_ready(&mut child, &ports, config.workers).map(|()| None)
            };
            match ready {
                Ok(daemon_master) => {
                    return Nginx {
                        config,
                        ports,
                        child: Some(child),
                        daemon_master,
                        prefix,
                    }
                }
                Err(why) => {
                    if let Some(master) = read_pid(&prefix) {
                        unsafe { libc::kill(-master, libc::SIGKILL) };
                    }
                    kill_group(&mut child);
                    let logs = format!("{}{}", prefix.read("stderr.log"), prefix.read("error.log"));
                    // Another test may have taken the port between our check and nginx's bind.
                    if attempt < 5 && logs.contains("Address already in use") {
                        continue;
                    }
                    panic!("nginx did not start: {why}\n--- nginx.conf ---\n{}\n--- output ---\n{logs}", prefix.read("nginx.conf"));
                }
            }
        }
        unreachable!()
    }

    /// The version of the nginx binary the tests run (`nginx -v`), as
    /// (major, minor, patch).
    pub fn version() -> (u32, u32, u32) {
        let output = Command::new(nginx_binary())
            .arg("-v")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} -v: {e}", nginx_binary().display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let parse = || -> Option<(u32, u32, u32)> {
            let version = text.split("nginx/").nth(1)?.split_whitespace().next()?;
            let mut numbers = version.split('.').map(|n| n.parse().ok());
            Some((numbers.next()??, numbers.next()??, numbers.next()??))
        };
        parse().unwrap_or_else(|| panic!("no version in the output of nginx -v: {text:?}"))
    }

    /// Runs `nginx -t` on a config: (accepted, everything nginx printed and
    /// logged).
    pub fn test_config(config: &Config) -> (bool, String) {
        let prefix = Prefix::new();
        config.write(&prefix, &free_ports(config.servers.len()));
        let output = nginx_command(&prefix)
            .arg("-t")
            .output()
            .expect("running nginx -t");
        let text = format!(
            "{}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            prefix.read("error.log")
        );
        (output.status.success(), text)
    }

    /// Replaces nginx.conf with `config` (same servers, same ports), for a
    /// `reload` to pick up. It must keep the number of workers.
    pub fn rewrite_config(&self, config: Config) {
        assert_eq!(config.servers.len(), self.ports.len(), "same servers");
        assert_eq!(config.workers, self.config.workers, "same workers");
        config.write(&self.prefix, &self.ports);
    }

    /// The port of the first server.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// The port of server `i` (in the order they were added).
    pub fn server_port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    pub fn master_pid(&self) -> i32 {
        self.daemon_master
            .unwrap_or_else(|| self.child.as_ref().expect("nginx runs").id() as i32)
    }

    pub fn is_running(&self) -> bool {
        procfs::is_alive(self.master_pid())
    }

    /// Worker processes, including old ones still finishing after a reload.
    pub fn worker_pids(&self) -> Vec<i32> {
        procfs::children_of(self.master_pid())
    }

    /// `nginx -s reload`: HUP the master, then wait until the new workers are
    /// up and every old worker has stopped listening (old workers holding
    /// requests stay alive). Returns the old workers.
    pub fn reload(&self) -> Vec<i32> {
        let old = self.worker_pids();
        let inodes: Vec<u64> = self
            .ports
            .iter()
            .map(|&port| sockdiag::listening_inode(port).expect("nginx listens before the reload"))
            .collect();
        unsafe { libc::kill(self.master_pid(), libc::SIGHUP) };
        wait_until(
            BOUND,
            "new workers after reload, old ones no longer listening",
            || {
                let fresh = self
                    .worker_pids()
                    .into_iter()
                    .filter(|pid| !old.contains(pid))
                    .count();
                fresh >= self.config.workers
                    && old.iter().all(|&pid| {
                        !procfs::is_alive(pid)
                            || inodes.iter().all(|&i| !procfs::holds_socket(pid, i))
                    })
            },
        );
        old
    }

    /// A file in nginx's prefix (`nginx.pid`, `nginx.pid.oldbin`).
    pub fn prefix_file(&self, name: &str) -> String {
        self.prefix.read(name)
    }

    /// The path of a file in nginx's prefix.
    pub fn prefix_path(&self, name: &str) -> PathBuf {
        self.prefix.path(name)
    }

    pub fn error_log(&self) -> String {
        self.prefix.read("error.log")
    }

    pub fn access_log(&self) -> Vec<AccessEntry> {
        self.prefix
            .read("access.log")
            .lines()
            .filter_map(AccessEntry::parse)
            .collect()
    }

    /// Waits for an error_log line matching `matches`, and returns it.
    pub fn wait_for_error_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let seen = poll_until(BOUND, || {
            found = self
                .error_log()
                .lines()
                .find(|line| matches(line))
                .map(str::to_owned);
            found.is_some()
        });
        assert!(seen, "no error_log line {what} within {BOUND:?}");
        found.unwrap()
    }

    /// Waits for an access_log entry matching `matches`, and returns it.
    pub fn wait_for_access(
        &self,
        what: &str,
        matches: impl Fn(&AccessEntry) -> bool,
    ) -> AccessEntry {
        let mut found = None;
        let seen = poll_until(BOUND, || {
            found = self.access_log().into_iter().find(|entry| matches(entry));
            found.is_some()
        });
        assert!(seen, "no access_log entry {what} within {BOUND:?}");
        found.unwrap()
    }

    /// Fails the test if any nginx process (master, workers, another
    /// binary's) spins: one that uses most of a core while the test has
    /// stopped sending (the module only holds or idles then). Called as a
    /// test ends (`stop`, or dropping the nginx); a module that polls or
    /// re-arms a timer in the past fails every test this way.
    pub fn assert_not_spinning(&self) {
        const WINDOW: Duration = Duration::from_millis(150);
        let pids = procfs::with_descendants(self.master_pid());
        let before: Vec<Option<u64>> = pids.iter().map(|&pid| procfs::cpu_ticks(pid)).collect();
        let start = Instant::now();
        thread::sleep(WINDOW);
        let elapsed = start.elapsed();
        let window_ticks = elapsed.as_millis() as u64 * procfs::ticks_per_second() / 1000;
        for (&pid, before) in pids.iter().zip(before) {
            let (Some(before), Some(after)) = (before, procfs::cpu_ticks(pid)) else {
                continue;
            };
            let used = after.saturating_sub(before);
            assert!(
                used * 2 <= window_ticks.max(4),
                "nginx process {pid} used {used} of {window_ticks} clock ticks in {elapsed:?} \
                 after the test: it spins"
            );
        }
    }

    /// Graceful stop (QUIT); fails the test if nginx does not exit within the
    /// bound (e.g. a worker kept alive by a leftover timer), or spins first.
    pub fn stop(mut self) {
        self.assert_not_spinning();
        let master = self.master_pid();
        unsafe { libc::kill(master, libc::SIGQUIT) };
        let deadline = Instant::now() + scaled(BOUND);
        while Instant::now() < deadline {
            let exited = match (self.daemon_master, self.child.as_mut()) {
                (None, Some(child)) => child.try_wait().expect("waiting for nginx").is_some(),
                _ => !procfs::is_alive(master),
            };
            if exited {
                self.child = None;
                self.daemon_master = None;
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nginx did not exit within {BOUND:?} of QUIT; workers left: {:?}",
            self.worker_pids()
        );
    }

    fn dump_logs(&self) {
        let error_log = self.error_log();
        let lines: Vec<&str> = error_log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(200)..];
        eprintln!(
            "---- nginx stderr ({}) ----\n{}---- error.log, last {} of {} lines ----\n{}\n---- end of error.log ----",
            self.prefix.dir().display(),
            self.prefix.read("stderr.log"),
            tail.len(),
            lines.len(),
            tail.join("\n")
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if thread::panicking() {
            self.dump_logs();
        } else if self.child.is_some() || self.daemon_master.is_some() {
            let spinning = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.assert_not_spinning()
            }));
            if let Err(why) = spinning {
                self.dump_logs();
                self.kill_all();
                std::panic::resume_unwind(why);
            }
        }
        self.kill_all();
    }
}

impl Nginx {
    fn kill_all(&mut self) {
        if let Some(master) = self.daemon_master.take() {
            // Its own process group (setsid), with every binary a USR2
            // started and all their workers.
            unsafe { libc::kill(-master, libc::SIGKILL) };
        }
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

fn read_pid(prefix: &Prefix) -> Option<i32> {
    prefix.read("nginx.pid").trim().parse().ok()
}

/// With `daemon on`: the spawned nginx exits once the master has forked
/// away; up = the master in the pid file, its workers, every port listening.
fn wait_daemon_ready(
    child: &mut Child,
    prefix: &Prefix,
    ports: &[u16],
    workers: usize,
) -> Result<i32, String> {
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("nginx exited ({status})"));
    }
    let deadline = Instant::now() + scaled(BOUND);
    loop {
        if let Some(master) = read_pid(prefix) {
            let listening = ports
                .iter()
                .all(|&port| sockdiag::listening_inode(port).is_some());
            if listening && procfs::children_of(master).len() >= workers {
                return Ok(master);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not up within {BOUND:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Up = every port listens and the master has forked its workers.
fn wait_ready(child: &mut Child, ports: &[u16], workers: usize) -> Result<(), String> {
    let deadline = Instant::now() + scaled(BOUND);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("nginx exited ({status})"));
        }
        let listening = ports
            .iter()
            .all(|&port| sockdiag::listening_inode(port).is_some());
        if listening && procfs::children_of(child.id() as i32).len() >= workers {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not up within {BOUND:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}
