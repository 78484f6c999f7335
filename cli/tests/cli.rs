//! The `intermission` command line against real nginx instances on
//! loopback, each the shop in front of its own upstream: pause, resume,
//! stop and status everywhere; a target that is down (the pause rolls
//! back); credentials that are used and never printed; a target that
//! answers nginx's own HTML; `run` around a command that succeeds, fails,
//! is killed, or leaves children behind; a signal during a drain; a fleet
//! of twenty; README's example of a rolled-back pause.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::Value;
use support::*;

#[test]
fn pause_status_and_resume_reach_every_target() {
    let fleet = Fleet::start(3);
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
    // The health check passes, and each target counts it in `bypassed`.
    for port in fleet.ports() {
        assert_passes(port, Request::get("/up"), "/up while paused");
    }
    let status = run_with(&with(&["status"], &targets));
    assert!(status.status.success());
    assert_eq!(
        stdout(&status).matches(" 200 paused   held 1 ").count(),
        3,
        "{}",
        stdout(&status)
    );

    let report = json(&run_with(&with(&["status", "--json"], &targets)));
    assert_eq!(report["action"], "status");
    assert_eq!(
        (report["ok"].as_u64(), report["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(report["summary"], "status: 3 of 3 targets ok");
    let rows = report["targets"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, target) in rows.iter().zip(&targets) {
        assert_eq!(row["target"], target.as_str());
        assert_eq!(row["host"], Value::Null);
        assert_eq!(
            (row["http"].as_u64(), row["held"].as_u64()),
            (Some(200), Some(1))
        );
        assert_eq!(
            (&row["state"], &row["ok"], &row["error"]),
            (&Value::from("paused"), &Value::from(true), &Value::Null)
        );
        assert_eq!(row["status"]["bypassed"].as_u64(), Some(1), "{row}");
    }

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
    let fleet = Fleet::start(3);
    let mut targets = fleet.targets();
    let dead = format!("http://127.0.0.1:{}{CONTROL}", dead_port());
    targets.insert(1, dead.clone());

    let paused = run_with(&with(&["pause", "--timeout", "2"], &targets));
    assert_eq!(paused.status.code(), Some(1), "one target failed");
    let out = stdout(&paused);
    let line = out
        .lines()
        .find(|l| l.starts_with(&dead))
        .unwrap_or_default();
    assert!(
        line.contains(" 000 -  ") && line.contains("FAILED: io: Connection refused"),
        "{out}"
    );
    assert!(
        out.contains("pause: 1 of 4 targets failed; resuming the others"),
        "{out}"
    );
    assert!(
        stderr(&paused)
            .contains("pause: rolled back: resumed the 3 target(s) this call may have paused"),
        "{}",
        stderr(&paused)
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

/// The password of a target's URL is sent (Basic auth) and printed nowhere:
/// not in the lines, not in `--json`, not in errors; a wrong one is a clear
/// failure; `INTERMISSION_USER`/`INTERMISSION_PASSWORD` serve targets
/// without credentials.
#[test]
fn credentials_are_used_and_never_printed() {
    const PASSWORD: &str = "Pa55-w0rd-never-shown";
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .file("htpasswd", &format!("ops:{{PLAIN}}{PASSWORD}\n"))
            .server(&format!(
                "{} {} location {CONTROL} {{ auth_basic \"intermission\"; \
                 auth_basic_user_file {PREFIX_MARK}/htpasswd; intermission_control; }}",
                set_app_name("shop"),
                held_location("/", &upstream, "")
            )),
    );
    let port = nginx.port();
    let with_password = format!("http://ops:{PASSWORD}@127.0.0.1:{port}{CONTROL}");
    let shown = format!("http://ops:***@127.0.0.1:{port}{CONTROL}");
    let mut outputs = Vec::new();

    let paused = intermission(&["pause", &with_password]);
    assert!(paused.status.success());
    assert!(stdout(&paused).contains(&shown), "{}", stdout(&paused));
    assert_status_with_password(port, PASSWORD, PAUSED);
    outputs.push(paused);

    let status = intermission(&["status", "--json", &with_password]);
    let report = json(&status);
    assert_eq!(report["targets"][0]["target"], shown.as_str());
    assert_eq!(report["targets"][0]["state"], "paused");
    outputs.push(status);

    let wrong = format!("http://ops:{PASSWORD}x@127.0.0.1:{port}{CONTROL}");
    let refused = intermission(&["resume", "--retries", "0", "--json", &wrong]);
    assert_eq!(refused.status.code(), Some(1));
    let report = json(&refused);
    assert_eq!(report["targets"][0]["http"], 401);
    assert!(report["targets"][0]["error"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 401"));
    outputs.push(refused);

    let bare = format!("http://127.0.0.1:{port}{CONTROL}");
    let resumed = intermission_with_env(
        &["resume", &bare],
        &[
            ("INTERMISSION_USER", "ops"),
            ("INTERMISSION_PASSWORD", PASSWORD),
        ],
    );
    assert!(resumed.status.success());
    assert_status_with_password(port, PASSWORD, RESUMED);
    outputs.push(resumed);

    for output in &outputs {
        assert!(
            !stdout(output).contains(PASSWORD) && !stderr(output).contains(PASSWORD),
            "the password was printed: {output:?}"
        );
    }
    nginx.stop();
}

fn assert_status_with_password(port: u16, password: &str, expected: &str) {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"));
    let response = control_request("GET", "status")
        .header("Authorization", format!("Basic {credentials}"))
        .send(port);
    assert_answer(&response, 200, expected, "status with the password");
}

/// A target behind `deny` answers nginx's own HTML 403 page: `--json` is
/// still one valid JSON document, with the status and a short error.
#[test]
fn a_target_that_answers_html_still_gives_valid_json() {
    let upstream = Upstream::start();
    let denied = Nginx::start(Config::new().server(&format!(
        "{} {} location {CONTROL} {{ deny all; intermission_control; }}",
        set_app_name("shop"),
        held_location("/", &upstream, "")
    )));
    let fleet = Fleet::start(1);
    let mut targets = fleet.targets();
    targets.push(format!("http://127.0.0.1:{}{CONTROL}", denied.port()));
    for action in ["status", "pause"] {
        let output = run_with(&with(&[action, "--json"], &targets));
        assert_eq!(output.status.code(), Some(1), "{action}");
        let report = json(&output);
        let row = &report["targets"][1];
        assert_eq!(row["http"], 403, "{action}: {report}");
        assert_eq!(row["ok"], false);
        let error = row["error"].as_str().unwrap();
        assert!(error.starts_with("HTTP 403: <html>"), "{action}: {error}");
        assert!(!error.contains('\n'));
    }
    fleet.assert_all(RESUMED, "rolled back after the denied target");
    denied.stop();
    fleet.stop();
}

#[test]
fn run_resumes_after_a_command_that_succeeds_or_fails_and_releases_what_was_held() {
    let fleet = Fleet::start(3);
    let targets = fleet.targets();
    let flag = temp_path("flag");
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

#[test]
fn run_resumes_when_it_is_interrupted() {
    let fleet = Fleet::start(3);
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
        let stderr = stderr(&output);
        assert!(
            stderr.contains("resume: 3 of 3 targets running"),
            "{stderr}"
        );
        assert_from_upstream(&held.finish(), "held during the interrupted run");
        fleet.assert_all(RESUMED, "running after an interrupted run");
    }
    fleet.stop();
}

/// `run` stops and waits for the whole maintenance command, the jobs its
/// shell started included, before it resumes.
#[test]
fn run_stops_and_waits_for_the_commands_children() {
    let fleet = Fleet::start(2);
    let targets = fleet.targets();
    let pid_file = temp_path("child-pid");
    let marker = temp_path("late-job");
    let _ = fs::remove_file(&pid_file);
    let _ = fs::remove_file(&marker);

    // A job left behind by a command that exits at once: the resume waits
    // for it.
    let mut args = with(&["run"], &targets);
    args.extend([
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("(sleep 0.5; touch '{}') & exit 0", marker.display()),
    ]);
    let output = run_with(&args);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        marker.exists(),
        "intermission returned before the command's job ended"
    );
    fleet.assert_all(RESUMED, "running after the job");

    // A signal reaches every process of the command, not only its shell.
    let mut args = with(&["run"], &targets);
    args.extend([
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("sleep 60 & echo $! > '{}'; wait", pid_file.display()),
    ]);
    let run = spawn(&args);
    fleet.wait_all_paused();
    wait_until(BOUND, "the command's background job", || {
        fs::read_to_string(&pid_file).is_ok_and(|t| t.trim().parse::<i32>().is_ok())
    });
    let job: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(job));
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{output:?}");
    assert!(
        !is_alive(job),
        "the command's background job {job} survived"
    );
    fleet.assert_all(RESUMED, "running after the interrupted command");
    let _ = fs::remove_file(&pid_file);
    let _ = fs::remove_file(&marker);
    fleet.stop();
}

/// Ctrl-C while a `pause --drain` waits resumes every target it paused.
#[test]
fn an_interrupted_drain_rolls_the_pause_back() {
    let gated = GatedUpstream::start();
    let shops: Vec<Nginx> = (0..3)
        .map(|_| {
            Nginx::start(Config::new().server(&format!(
                "{} location / {{ intermission; proxy_pass http://127.0.0.1:{}; }} {}",
                set_app_name("shop"),
                gated.port(),
                control_location()
            )))
        })
        .collect();
    // A request in flight on each: every drain waits.
    let working: Vec<Pending> = shops
        .iter()
        .map(|nginx| Request::get("/work").start(nginx.port()))
        .collect();
    gated.wait_for(shops.len());
    let targets: Vec<String> = shops
        .iter()
        .map(|n| format!("http://127.0.0.1:{}{CONTROL}", n.port()))
        .collect();
    let pause = spawn(&with(&["pause", "--drain", "30"], &targets));
    wait_until(BOUND, "every target to be paused", || {
        shops
            .iter()
            .all(|n| control(n.port(), "status").text() == PAUSED)
    });
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(pause.id() as i32, libc::SIGINT) };
    let output = pause.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let err = stderr(&output);
    assert!(
        err.contains("pause: rolled back: resumed the 3 target(s)"),
        "{err}"
    );
    assert!(stdout(&output).contains("pause: interrupted by SIGINT"));
    for nginx in &shops {
        assert_status(nginx.port(), "", RESUMED);
    }
    gated.open();
    finish_all_from_upstream(working);
    for nginx in shops {
        nginx.stop();
    }
}

/// Twenty nginx: pause, status and resume all of them; one down among
/// them rolls the pause back.
#[test]
fn a_fleet_of_twenty() {
    const HOSTS: usize = 20;
    let fleet = Fleet::start(HOSTS);
    let targets = fleet.targets();
    let file = temp_path("targets");
    fs::write(&file, targets.join("\n")).unwrap();
    let file = file.to_str().unwrap().to_owned();

    let paused = intermission(&["pause", "--targets", &file, "--json"]);
    assert!(paused.status.success());
    assert_eq!(json(&paused)["ok"], HOSTS as u64);
    fleet.assert_all(PAUSED, "paused");
    let status = intermission(&["status", "--targets", &file]);
    assert_eq!(stdout(&status).matches(" 200 paused ").count(), HOSTS);
    let resumed = intermission(&["resume", "--targets", &file]);
    assert!(resumed.status.success());
    fleet.assert_all(RESUMED, "resumed");

    let dead = format!("http://127.0.0.1:{}{CONTROL}", dead_port());
    let paused = intermission(&["pause", "--targets", &file, "--timeout", "2", &dead]);
    assert_eq!(paused.status.code(), Some(1));
    assert!(stdout(&paused).contains(&format!("pause: 1 of {} targets failed", HOSTS + 1)));
    fleet.assert_all(RESUMED, "rolled back");
    let _ = fs::remove_file(&file);
    fleet.stop();
}

/// A target's `#HOST` picks the virtual host, so the app; `--targets` reads
/// the same from a file. Usage errors exit 2.
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
    let file = temp_path("host-targets");
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
    assert!(stderr(&bad).contains("--rate"));
    let no_target = intermission(&["pause"]);
    assert_eq!(no_target.status.code(), Some(2));
    assert!(stderr(&no_target).contains("no target given"));
    assert_eq!(
        intermission(&["run", &url]).status.code(),
        Some(2),
        "no command"
    );
    let bad_time = intermission(&["pause", "--ttl", "soon", &url]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(stderr(&bad_time).contains("ttl"));
    assert!(intermission(&["--help"]).status.success());
    assert!(intermission(&["pause", "--help"]).status.success());
    let completions = intermission(&["completions", "bash"]);
    assert!(completions.status.success() && stdout(&completions).contains("intermission"));
    let man = intermission(&["manpage"]);
    assert!(man.status.success() && stdout(&man).contains(".TH intermission"));
    nginx.stop();
}

/// README.md's example of a pause rolled back (*Ops command line*) is
/// what the command prints, line for line, once the addresses are the
/// README's and the deadlines masked.
#[test]
fn the_readmes_rolled_back_pause_is_what_it_prints() {
    let fleet = Fleet::start(1);
    let live = fleet.targets().remove(0);
    let dead = format!("http://127.0.0.1:{}{CONTROL}", dead_port());
    let paused = run_with(&with(
        &["pause", "--timeout", "2"],
        &[live.clone(), dead.clone()],
    ));
    assert_eq!(paused.status.code(), Some(1));
    let as_in_readme = |line: &str| {
        let line = match line.split_once(' ') {
            Some((target, rest)) if target == live || target == dead => {
                let target = if target == live {
                    "http://10.0.0.5/_intermission"
                } else {
                    "http://10.0.0.9/_intermission"
                };
                format!("{target:<45} {}", rest.trim_start())
            }
            _ => line.to_owned(),
        };
        mask_deadline(&line)
    };
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let example: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ intermission pause --timeout 2 http://10.0.0.5"))
        .skip(1)
        .take_while(|l| !l.starts_with("$ "))
        .map(mask_deadline)
        .collect();
    let printed: Vec<String> = (stdout(&paused) + &stderr(&paused))
        .lines()
        .map(as_in_readme)
        .collect();
    assert_eq!(printed, example);
    fleet.stop();
}

/// `until 2026-12-03T11:34:35.121Z` as `until DEADLINE` (same width).
fn mask_deadline(line: &str) -> String {
    match line.find("until 2") {
        Some(at) => {
            let start = at + "until ".len();
            let end = (start + 24).min(line.len());
            format!("{}{:<24}{}", &line[..start], "DEADLINE", &line[end..])
        }
        None => line.to_owned(),
    }
}
