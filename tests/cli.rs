//! `scripts/intermission`, the ops command line, against three real nginx on
//! different loopback ports: pause, resume and status everywhere; a target
//! that is down (the pause rolls back); `run` around a command that
//! succeeds, fails or is killed, which always leaves every target running.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/intermission")
}

fn intermission(args: &[&str]) -> Output {
    let output = Command::new(script())
        .args(args)
        .output()
        .expect("running scripts/intermission");
    eprintln!(
        "intermission {args:?}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Three nginx, each the shop in front of its own upstream.
struct Fleet {
    shops: Vec<(Nginx, Upstream)>,
}

impl Fleet {
    fn start() -> Fleet {
        Fleet {
            shops: (0..3).map(|_| start_shop(1, "")).collect(),
        }
    }

    fn targets(&self) -> Vec<String> {
        self.shops
            .iter()
            .map(|(nginx, _)| format!("http://127.0.0.1:{}{CONTROL}", nginx.port()))
            .collect()
    }

    fn ports(&self) -> Vec<u16> {
        self.shops.iter().map(|(nginx, _)| nginx.port()).collect()
    }

    fn assert_all(&self, status: &str, what: &str) {
        for port in self.ports() {
            assert_status(port, "", status);
        }
        eprintln!("all {what}");
    }

    /// Waits until every target answers that it is paused (`run` pauses
    /// them in the background).
    fn wait_all_paused(&self) {
        wait_until(BOUND, "every target to be paused", || {
            self.ports()
                .iter()
                .all(|&port| control(port, "status").text() == PAUSED)
        });
    }

    fn stop(self) {
        for (nginx, _) in self.shops {
            nginx.stop();
        }
    }
}

/// A port with nothing listening on it.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn with(args: &[&str], targets: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string())
        .chain(targets.iter().cloned())
        .collect()
}

fn run_with(args: &[String]) -> Output {
    intermission(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn pause_status_and_resume_reach_every_target() {
    let fleet = Fleet::start();
    let targets = fleet.targets();

    let paused = run_with(&with(&["pause", "--ttl", "5m"], &targets));
    assert!(paused.status.success());
    let out = stdout(&paused);
    assert_eq!(out.matches(" 200 paused ").count(), 3, "{out}");
    assert!(out.ends_with("pause: 3 of 3 targets paused\n"), "{out}");
    fleet.assert_all(PAUSED, "paused");

    let held: Vec<Pending> = fleet
        .ports()
        .into_iter()
        .map(|port| start_held(port, seq_request("/item/", 0)))
        .collect();
    wait_until(BOUND, "each target to count its held request", || {
        fleet
            .ports()
            .iter()
            .all(|&port| counters(port, "").held_now == 1)
    });
    let status = run_with(&with(&["status"], &targets));
    assert!(status.status.success());
    assert_eq!(
        stdout(&status).matches(" 200 paused   held 1 ").count(),
        3,
        "{}",
        stdout(&status)
    );

    let json = run_with(&with(&["status", "--json"], &targets));
    let json = stdout(&json);
    assert!(
        json.starts_with("{\"action\":\"status\",\"targets\":[{\"target\":\"http://127.0.0.1:"),
        "{json}"
    );
    assert_eq!(
        json.matches("\"http\":200,\"state\":\"paused\",\"held\":1,\"ok\":true,\"error\":null}")
            .count(),
        3,
        "{json}"
    );
    assert!(
        json.ends_with("],\"ok\":3,\"failed\":0,\"summary\":\"status: 3 of 3 targets ok\"}\n"),
        "{json}"
    );

    let resumed = run_with(&with(&["resume"], &targets));
    assert!(resumed.status.success());
    assert!(stdout(&resumed).ends_with("resume: 3 of 3 targets running\n"));
    finish_all_from_upstream(held);
    fleet.assert_all(RESUMED, "running");

    let stopped = run_with(&with(&["stop"], &targets));
    assert!(stopped.status.success());
    for port in fleet.ports() {
        assert_eq!(Request::get("/x").send(port).status, 503);
    }
    assert!(run_with(&with(&["resume"], &targets)).status.success());
    fleet.assert_all(RESUMED, "running after the stop");
    fleet.stop();
}

#[test]
fn a_target_that_is_down_rolls_the_pause_back() {
    let fleet = Fleet::start();
    let mut targets = fleet.targets();
    let dead = format!("http://127.0.0.1:{}{CONTROL}", dead_port());
    targets.insert(1, dead.clone());

    let paused = run_with(&with(&["pause", "--timeout", "2"], &targets));
    assert_eq!(paused.status.code(), Some(1), "one target failed");
    let out = stdout(&paused);
    assert!(
        out.contains(&dead) && out.contains(" 000 -        held -      FAILED"),
        "{out}"
    );
    assert!(
        out.contains("pause: 1 of 4 targets failed; resuming the others"),
        "{out}"
    );
    fleet.assert_all(RESUMED, "rolled back");

    // Without rollback the live ones stay paused, and resume names the one
    // it could not reach.
    let paused = run_with(&with(
        &["pause", "--no-rollback", "--timeout", "2"],
        &targets,
    ));
    assert_eq!(paused.status.code(), Some(1));
    fleet.assert_all(PAUSED, "paused without rollback");
    let resumed = run_with(&with(
        &["resume", "--retries", "1", "--timeout", "2"],
        &targets,
    ));
    assert_eq!(resumed.status.code(), Some(1));
    let out = stdout(&resumed);
    assert!(
        out.contains(&format!(
            "resume: 1 of 4 targets may still be paused after 2 tries: {dead}"
        )),
        "{out}"
    );
    fleet.assert_all(RESUMED, "resumed");
    fleet.stop();
}

#[test]
fn run_resumes_after_a_command_that_succeeds_or_fails_and_releases_what_was_held() {
    let fleet = Fleet::start();
    let targets = fleet.targets();
    let flag = std::env::temp_dir().join(format!("intermission-cli-{}", std::process::id()));
    let _ = fs::remove_file(&flag);

    let mut args = with(&["run", "--ttl", "5m"], &targets);
    args.push("--".into());
    args.extend([
        "sh".into(),
        "-c".into(),
        format!(
            "while [ ! -e '{}' ]; do sleep 0.05; done; exit 0",
            flag.display()
        ),
    ]);
    let run = spawn(&args);
    fleet.wait_all_paused();
    let held: Vec<Pending> = fleet
        .ports()
        .into_iter()
        .map(|port| start_held(port, seq_request("/item/", 0)))
        .collect();
    assert_still_held(&held);
    fs::write(&flag, "").unwrap();
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    finish_all_from_upstream(held);
    fleet.assert_all(RESUMED, "running after run");
    let _ = fs::remove_file(&flag);

    let mut args = with(&["run"], &targets);
    args.extend(["--".into(), "sh".into(), "-c".into(), "exit 3".into()]);
    assert_eq!(
        run_with(&args).status.code(),
        Some(3),
        "the command's status"
    );
    fleet.assert_all(RESUMED, "running after a failed command");

    // A target down: the pause rolls back and the command never runs.
    let mut args = with(&["run", "--timeout", "2"], &targets);
    args.insert(3, format!("http://127.0.0.1:{}{CONTROL}", dead_port()));
    args.extend([
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("touch '{}'", flag.display()),
    ]);
    assert_eq!(run_with(&args).status.code(), Some(1));
    assert!(!flag.exists(), "the command did not run");
    fleet.assert_all(RESUMED, "running after a failed pause");
    fleet.stop();
}

fn spawn(args: &[String]) -> Child {
    Command::new(script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting scripts/intermission")
}

#[test]
fn run_resumes_when_it_is_interrupted() {
    let fleet = Fleet::start();
    let targets = fleet.targets();
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut args = with(&["run"], &targets);
        args.extend(["--".into(), "sleep".into(), "30".into()]);
        let run = spawn(&args);
        fleet.wait_all_paused();
        let held = start_held(fleet.ports()[2], seq_request("/item/", 0));
        thread::sleep(Duration::from_millis(100));
        // SAFETY: signalling a child process this test started.
        unsafe { libc::kill(run.id() as i32, signal) };
        let output = run.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("resume: 3 of 3 targets running"),
            "{stderr}"
        );
        assert_from_upstream(&held.finish(), "held during the interrupted run");
        fleet.assert_all(RESUMED, "running after an interrupted run");
    }
    fleet.stop();
}

/// A target's `#HOST` picks the virtual host, so the app; `--targets` reads
/// the same from a file.
#[test]
fn a_host_per_target_picks_the_app() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&format!(
        "{} {} {}",
        set_app_name("$host"),
        held_location("/", &upstream, ""),
        control_location()
    )));
    let port = nginx.port();
    let url = format!("http://127.0.0.1:{port}{CONTROL}");
    let file = std::env::temp_dir().join(format!("intermission-targets-{}", std::process::id()));
    fs::write(&file, format!("# the shop only\n\n{url} shop.test\n")).unwrap();

    let paused = intermission(&["pause", "--targets", file.to_str().unwrap()]);
    assert!(paused.status.success());
    let shop = Request::get("/").header("Host", "shop.test");
    let held = start_held(port, shop);
    assert_still_held([&held]);
    assert_passes(
        port,
        Request::get("/").header("Host", "blog.test"),
        "another app",
    );
    assert!(intermission(&["resume", &format!("{url}#shop.test")])
        .status
        .success());
    assert_from_upstream(&held.finish(), "the shop's request");
    let _ = fs::remove_file(&file);

    // Usage errors exit 2 naming the problem.
    let bad = intermission(&["pause", "--rate", "5", &url]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate is for resume and run"));
    assert_eq!(intermission(&["pause"]).status.code(), Some(2));
    assert_eq!(
        intermission(&["run", &url]).status.code(),
        Some(2),
        "no command"
    );
    assert!(intermission(&["--help"]).status.success());
    nginx.stop();
}
