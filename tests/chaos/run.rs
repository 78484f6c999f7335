//! Runs one scenario on a real nginx: starts it, pauses the apps, sends the
//! requests and injects the faults at their moments, releases the apps,
//! waits for every request to end, and gathers what the invariants are
//! checked against (`invariants`).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{children_of, is_alive, AccessEntry, Config, Nginx, StateDir};
use crate::scenario::{ClientKind, Fault, OnTimeout, Release, Scenario, Upgrade, UpstreamMode};
use crate::traffic::{self, Record, Records};
use crate::upstream::{ChaosUpstream, Hit};

/// A control call, as the campaign made it.
#[derive(Clone, Debug)]
pub struct Call {
    pub app: Option<usize>,
    pub action: String,
    pub sent: Instant,
    pub answered: Instant,
    /// `None`: no answer within the bound.
    pub status: Option<u16>,
}

/// A fault, as injected: from when to when.
#[derive(Clone, Debug)]
pub struct Injected {
    pub fault: Fault,
    pub started: Instant,
    pub ended: Instant,
}

/// Everything a run leaves for the invariants.
pub struct Observed {
    pub t0: Instant,
    pub records: Vec<Record>,
    pub hits: Vec<Hit>,
    pub calls: Vec<Call>,
    pub faults: Vec<Injected>,
    pub access: Vec<AccessEntry>,
    pub error_log: String,
    pub killed: Vec<i32>,
    /// CPU clock ticks used by each nginx process in the quiet window, and
    /// the window's length in ticks; release passes in it (`None` when the
    /// window was not quiet: something was due in it).
    pub quiet_cpu: Vec<(i32, u64)>,
    pub quiet_ticks: u64,
    pub quiet_passes: Option<(u64, u64)>,
    /// Per app at the end: (held_now, in_flight), read after everything
    /// ended.
    pub final_counts: Vec<Option<(u64, u64)>>,
    /// Whether nginx still answered at the end, and exited on QUIT.
    pub still_answering: Result<(), String>,
    pub exited: Result<(), String>,
}

/// Shared with the fault thread.
struct Live {
    port: u16,
    prefix_pid: PathBuf,
    first_master: i32,
    killed: Mutex<Vec<i32>>,
    stopped: Mutex<BTreeSet<i32>>,
    faults: Mutex<Vec<Injected>>,
    calls: Mutex<Vec<Call>>,
}

impl Live {
    /// The master that serves now (the pid file's).
    fn master(&self) -> i32 {
        fs::read_to_string(&self.prefix_pid)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(self.first_master)
    }

    /// The workers of the master that serves now.
    fn workers(&self) -> Vec<i32> {
        let master = self.master();
        let masters = self.masters();
        children_of(master)
            .into_iter()
            .filter(|pid| !masters.contains(pid))
            .collect()
    }

    /// Every nginx master alive: the first, those a USR2 started.
    fn masters(&self) -> Vec<i32> {
        let mut masters = vec![self.first_master];
        let mut at = 0;
        while at < masters.len() {
            for child in children_of(masters[at]) {
                // A master's child that has children of its own is a master.
                if !children_of(child).is_empty() && !masters.contains(&child) {
                    masters.push(child);
                }
            }
            at += 1;
        }
        let current = self.master();
        if !masters.contains(&current) {
            masters.push(current);
        }
        masters.retain(|&pid| is_alive(pid));
        masters
    }

    fn call(&self, app: Option<(usize, &str)>, action: &str) -> Call {
        let target = match app {
            Some((_, name)) if action.contains('?') => {
                format!("/_intermission/{action}&app={name}")
            }
            Some((_, name)) => format!("/_intermission/{action}?app={name}"),
            None => format!("/_intermission/{action}"),
        };
        let sent = Instant::now();
        let status = http_call(self.port, &target).map(|(status, _)| status);
        let call = Call {
            app: app.map(|(index, _)| index),
            action: action.to_owned(),
            sent,
            answered: Instant::now(),
            status,
        };
        self.calls.lock().unwrap().push(call.clone());
        call
    }
}

/// A GET with `Connection: close`: its status and body, or `None` without
/// an answer within the bound (a control call may wait for a stopped
/// worker, or a drain, or a slow disk).
pub fn http_call(port: u16, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: signalling a process of the campaign's own nginx.
    unsafe { libc::kill(pid, signal) };
}

/// The campaign's nginx configuration for `scenario`.
fn config(s: &Scenario, upstream: u16, state_file: Option<&PathBuf>) -> Config {
    let max_times: String = s
        .apps
        .iter()
        .map(|app| format!("{} {}s; ", app.name, app.max_time_s))
        .collect();
    let on_timeouts: String = s
        .apps
        .iter()
        .map(|app| {
            let value = match app.on_timeout {
                OnTimeout::Pass => "pass",
                OnTimeout::Answer503 => "503",
                OnTimeout::Answer504 => "504",
            };
            format!("{} {value}; ", app.name)
        })
        .collect();
    let mut http = format!(
        "map $arg_app $chaos_max_time {{ {max_times} default 300s; }} \
         map $arg_app $chaos_on_timeout {{ {on_timeouts} default pass; }}"
    );
    let bypassing = s
        .bypass_digit
        .map(|digit| format!("\"~{digit}$\" 1; "))
        .unwrap_or_default();
    http.push_str(&format!(
        " map $arg_seq $chaos_bypass {{ {bypassing}default 0; }}"
    ));
    if let Some(n) = s.max_held {
        http.push_str(&format!(" intermission_max_held {n};"));
    }
    if let Some(path) = state_file {
        http.push_str(&format!(" intermission_state_file {};", path.display()));
    }
    let app_location = format!(
        "set $app_name $arg_app; \
         location / {{ intermission; \
           set $intermission_max_time $chaos_max_time; \
           set $intermission_on_timeout $chaos_on_timeout; \
           set $intermission_bypass $chaos_bypass; \
           proxy_set_header X-Outcome $intermission_outcome; \
           proxy_pass http://127.0.0.1:{upstream}; }}"
    );
    let modern = Nginx::version() >= (1, 25, 1);
    let (h2_listen, h2_directive) = if modern {
        ("", "http2 on;")
    } else {
        ("http2", "")
    };
    let mut config = Config::new()
        .workers(s.workers)
        .worker_connections(s.worker_connections)
        .http(&http)
        .server(&format!(
            "{app_location} location /_intermission {{ allow 127.0.0.1; deny all; intermission_control; }}"
        ))
        .server_listening(h2_listen, &format!("{h2_directive} {app_location}"));
    if s.faults.iter().any(|(_, f)| matches!(f, Fault::Upgrade(_))) {
        config = config.daemon();
    }
    if let Some(ms) = s.late_workers_ms {
        config = config.main(&format!("env INTERMISSION_TEST_LATE_WORKER={ms};"));
    }
    config
}

/// Runs `s` and observes it.
pub fn run(s: &Scenario) -> Observed {
    let upstream = ChaosUpstream::start();
    let state_dir = s
        .state_file
        .then(|| StateDir::new(&format!("chaos-{}", s.seed)));
    let state_file = state_dir.as_ref().map(StateDir::file);
    let nginx = Nginx::start(config(s, upstream.port(), state_file.as_ref()));
    let (port, h2_port) = (nginx.server_port(0), nginx.server_port(1));
    let live = Arc::new(Live {
        port,
        prefix_pid: nginx.prefix_path("nginx.pid"),
        first_master: nginx.master_pid(),
        killed: Mutex::new(Vec::new()),
        stopped: Mutex::new(BTreeSet::new()),
        faults: Mutex::new(Vec::new()),
        calls: Mutex::new(Vec::new()),
    });

    // Pause every app.
    for (index, app) in s.apps.iter().enumerate() {
        let mut action = String::from("enable");
        let mut args = Vec::new();
        if let Some(ttl) = app.ttl_s {
            args.push(format!("ttl={ttl}s"));
        }
        if app.drain {
            args.push("drain=5s".to_owned());
        }
        if !args.is_empty() {
            action = format!("enable?{}", args.join("&"));
        }
        live.call(Some((index, &app.name)), &action);
    }

    // The hold: requests and faults, each on its own schedule.
    let t0 = Instant::now();
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    let mut seq = 0;
    let senders = {
        let groups: Vec<_> = s
            .sends
            .iter()
            .map(|send| {
                let n = match send.kind {
                    ClientKind::Pipelined(n) | ClientKind::H2c(n) => n,
                    _ => 1,
                };
                let seqs: Vec<usize> = (seq..seq + n).collect();
                seq += n;
                (send.clone(), seqs)
            })
            .collect();
        let apps: Vec<String> = s.apps.iter().map(|a| a.name.clone()).collect();
        let records = records.clone();
        thread::spawn(move || {
            for (send, seqs) in groups {
                sleep_until(t0 + Duration::from_millis(send.at_ms));
                let (records, name) = (records.clone(), apps[send.app].clone());
                let group = traffic::Group {
                    kind: send.kind,
                    app: send.app,
                    name,
                    seqs,
                    leave: send.leave_after_ms.map(Duration::from_millis),
                };
                clients.push(thread::spawn(move || {
                    traffic::run_group(port, h2_port, group, &records)
                }));
            }
            clients
        })
    };
    let fault_thread = {
        let (live, faults, state_dir) = (
            live.clone(),
            s.faults.clone(),
            state_dir.as_ref().map(|d| d.0.clone()),
        );
        let upstream_handle = upstream.handle();
        // Storms enable again only apps without a ttl: a ttl may have ended
        // a pause, which an enable would begin anew.
        let apps: Vec<(usize, String)> = s
            .apps
            .iter()
            .enumerate()
            .filter(|(_, a)| a.ttl_s.is_none())
            .map(|(i, a)| (i, a.name.clone()))
            .collect();
        let hold_ms = s.hold_ms;
        thread::spawn(move || {
            let mut timed = Vec::new();
            for (at, fault) in faults {
                sleep_until(t0 + Duration::from_millis(at));
                timed.extend(inject(
                    &live,
                    fault,
                    &upstream_handle,
                    state_dir.as_ref(),
                    &apps,
                    t0 + Duration::from_millis(hold_ms),
                ));
            }
            for handle in timed {
                let _ = handle.join();
            }
        })
    };

    // The quiet window before the release: nothing is due in it (see
    // `Scenario::quiet_window`): nginx must use no CPU and look at nothing.
    let (quiet_from, quiet_to) = s.quiet_window();
    sleep_until(t0 + Duration::from_millis(quiet_from));
    let masters_and_workers = |live: &Live| -> Vec<i32> {
        let mut pids = live.masters();
        for master in pids.clone() {
            pids.extend(children_of(master));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    };
    let pids = masters_and_workers(&live);
    let passes_before = release_passes(port);
    let cpu_before: Vec<Option<u64>> = pids.iter().map(|&p| crate::common::cpu_ticks(p)).collect();
    let window_start = Instant::now();
    sleep_until(t0 + Duration::from_millis(quiet_to));
    let window = window_start.elapsed();
    let quiet_cpu: Vec<(i32, u64)> = pids
        .iter()
        .zip(cpu_before)
        .filter_map(|(&pid, before)| {
            Some((pid, crate::common::cpu_ticks(pid)?.saturating_sub(before?)))
        })
        .collect();
    let passes_after = release_passes(port);
    let quiet_ticks = window.as_millis() as u64 * crate::common::ticks_per_second() / 1000;
    let quiet_passes = s
        .quiet_window_is_clean()
        .then_some(())
        .and(passes_before.zip(passes_after));

    // The releases.
    sleep_until(t0 + Duration::from_millis(s.hold_ms));
    for (index, app) in s.apps.iter().enumerate() {
        let app_ref = Some((index, app.name.as_str()));
        match app.release {
            Release::Disable => drop(live.call(app_ref, "disable")),
            Release::Paced(rate) => drop(live.call(app_ref, &format!("disable?rate={rate}"))),
            Release::StopThenDisable => {
                live.call(app_ref, "stop");
                thread::sleep(Duration::from_millis(300));
                live.call(app_ref, "disable");
            }
            Release::Nothing => {}
        }
    }

    // Every request ends (the clients' bound is the campaign's).
    let clients = senders.join().unwrap_or_default();
    for client in clients {
        let _ = client.join();
    }
    let _ = fault_thread.join();
    // Whatever a fault left: every worker runs, the upstream answers.
    for &pid in live.stopped.lock().unwrap().iter() {
        signal(pid, libc::SIGCONT);
    }
    upstream.set_mode(UpstreamMode::Normal);

    // Counts settle once the last answers have gone.
    let mut final_counts = Vec::new();
    for app in &s.apps {
        let mut counts = None;
        let settled = crate::common::poll_until(Duration::from_secs(15), || {
            counts = app_counts(port, &app.name);
            counts == Some((0, 0))
        });
        let _ = settled;
        final_counts.push(counts);
    }
    let still_answering = match (
        http_call(port, "/?app=idle&seq=999999"),
        http_call(port, "/_intermission/status?app=idle"),
    ) {
        (Some((200, body)), Some((200, _))) if body == crate::upstream::BODY => Ok(()),
        other => Err(format!("after the scenario: {other:?}")),
    };

    let access = nginx.access_log();
    let hits = upstream.hits();
    let exited = quit_all(&live);
    let error_log = nginx.error_log();
    drop(nginx);
    drop(state_dir);
    let faults = live.faults.lock().unwrap().clone();
    let calls = live.calls.lock().unwrap().clone();
    let killed = live.killed.lock().unwrap().clone();
    let records = records.lock().unwrap().clone();
    Observed {
        t0,
        records,
        hits,
        calls,
        faults,
        access,
        error_log,
        killed,
        quiet_cpu,
        quiet_ticks,
        quiet_passes,
        final_counts,
        still_answering,
        exited,
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

fn status_json(port: u16, query: &str) -> Option<serde_json::Value> {
    let (status, body) = http_call(port, &format!("/_intermission/status?format=json&{query}"))?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn release_passes(port: u16) -> Option<u64> {
    status_json(port, "app=idle")?["module"]["release_passes"].as_u64()
}

/// (held_now, in_flight) of an app.
fn app_counts(port: u16, app: &str) -> Option<(u64, u64)> {
    let json = status_json(port, &format!("app={app}"))?;
    Some((json["held_now"].as_u64()?, json["in_flight"].as_u64()?))
}

/// QUIT to every master; all must exit within the bound.
fn quit_all(live: &Live) -> Result<(), String> {
    let masters = live.masters();
    for &master in &masters {
        signal(master, libc::SIGQUIT);
    }
    let gone = crate::common::poll_until(Duration::from_secs(30), || {
        masters.iter().all(|&m| !is_alive(m))
    });
    if gone {
        Ok(())
    } else {
        Err(format!(
            "nginx did not exit within 30 s of QUIT: {:?} still run",
            masters.iter().filter(|&&m| is_alive(m)).collect::<Vec<_>>()
        ))
    }
}

/// Injects `fault`; returns the threads that end it later.
fn inject(
    live: &Arc<Live>,
    fault: Fault,
    upstream: &crate::upstream::Handle,
    state_dir: Option<&PathBuf>,
    apps: &[(usize, String)],
    release_at: Instant,
) -> Vec<thread::JoinHandle<()>> {
    let started = Instant::now();
    let record = move |live: &Live, ended: Instant| {
        live.faults.lock().unwrap().push(Injected {
            fault,
            started,
            ended,
        });
    };
    let mut later = Vec::new();
    match fault {
        Fault::Kill(index) => {
            let workers = live.workers();
            if let Some(&pid) = workers.get(index % workers.len().max(1)) {
                live.killed.lock().unwrap().push(pid);
                live.stopped.lock().unwrap().remove(&pid);
                signal(pid, libc::SIGKILL);
            }
            record(live, Instant::now());
        }
        Fault::Stop(index, ms) => {
            let workers = live.workers();
            if let Some(&pid) = workers.get(index % workers.len().max(1)) {
                live.stopped.lock().unwrap().insert(pid);
                signal(pid, libc::SIGSTOP);
                let live = live.clone();
                later.push(thread::spawn(move || {
                    thread::sleep(Duration::from_millis(ms));
                    signal(pid, libc::SIGCONT);
                    live.stopped.lock().unwrap().remove(&pid);
                    record(&live, Instant::now());
                }));
            }
        }
        Fault::Reload => {
            signal(live.master(), libc::SIGHUP);
            record(live, Instant::now());
        }
        Fault::Upgrade(how) => {
            upgrade(live, how);
            record(live, Instant::now());
        }
        Fault::Upstream(mode, ms) => {
            upstream.set_mode(mode);
            let (live, upstream) = (live.clone(), upstream.clone());
            later.push(thread::spawn(move || {
                thread::sleep(Duration::from_millis(ms));
                upstream.set_mode(UpstreamMode::Normal);
                record(&live, Instant::now());
            }));
        }
        Fault::ControlStorm(callers) => {
            // Status and metrics from several callers at once; before the
            // release, enables of the apps that are only paused (an enable
            // would turn a stop into a pause).
            let before_release = Instant::now() + Duration::from_millis(300) < release_at;
            let storm: Vec<_> = (0..callers)
                .map(|caller| {
                    let (live, apps) = (live.clone(), apps.to_vec());
                    thread::spawn(move || {
                        for round in 0..5 {
                            let _ = http_call(live.port, "/_intermission/status?all&format=json");
                            let _ = http_call(live.port, "/_intermission/metrics");
                            if before_release && !apps.is_empty() && (caller + round) % 2 == 0 {
                                let (index, name) = &apps[(caller + round) % apps.len()];
                                live.call(Some((*index, name)), "enable");
                            }
                        }
                    })
                })
                .collect();
            for caller in storm {
                let _ = caller.join();
            }
            record(live, Instant::now());
        }
        Fault::StateDirBroken(ms) => {
            if let Some(dir) = state_dir {
                let aside = dir.with_extension("aside");
                if fs::rename(dir, &aside).is_ok() && fs::write(dir, "not a directory").is_ok() {
                    let (live, dir) = (live.clone(), dir.clone());
                    later.push(thread::spawn(move || {
                        thread::sleep(Duration::from_millis(ms));
                        let _ = fs::remove_file(&dir);
                        let _ = fs::rename(&aside, &dir);
                        record(&live, Instant::now());
                    }));
                }
            }
        }
    }
    later
}

/// A binary upgrade in one of the documented sequences.
fn upgrade(live: &Live, how: Upgrade) {
    let old = live.master();
    signal(old, libc::SIGUSR2);
    let mut new = 0;
    let started = crate::common::poll_until(Duration::from_secs(20), || {
        new = live.master();
        new != old && !children_of(new).is_empty()
    });
    if !started {
        return;
    }
    // Its workers are up once the master has all of them.
    thread::sleep(Duration::from_millis(200));
    let old_workers = || -> Vec<i32> {
        children_of(old)
            .into_iter()
            .filter(|&pid| pid != new)
            .collect()
    };
    match how {
        Upgrade::Winch => signal(old, libc::SIGWINCH),
        Upgrade::QuitOld => signal(old, libc::SIGQUIT),
        Upgrade::Rollback => {
            signal(old, libc::SIGWINCH);
            thread::sleep(Duration::from_millis(300));
            signal(old, libc::SIGHUP);
            let _ =
                crate::common::poll_until(Duration::from_secs(10), || !old_workers().is_empty());
            signal(new, libc::SIGQUIT);
            let _ = crate::common::poll_until(Duration::from_secs(10), || live.master() == old);
        }
    }
}
