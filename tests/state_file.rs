//! `intermission_state_file`: a pause survives an nginx restart. Each test
//! stops nginx and starts another on the same file, as `systemctl restart`
//! does.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn start(file: &Path, upstream: &Upstream) -> Nginx {
    Nginx::start(
        Config::new()
            .workers(2)
            .http(&format!("intermission_state_file {};", file.display()))
            .server(&app_per_query_server(upstream)),
    )
}

/// A hung disk under the state file: a FIFO in place of each worker's
/// temporary file, which nobody reads, so opening it for writing blocks.
struct HungDisk(Vec<std::path::PathBuf>);

impl HungDisk {
    fn under(dir: &StateDir, nginx: &Nginx) -> HungDisk {
        let fifos: Vec<std::path::PathBuf> = nginx
            .worker_pids()
            .into_iter()
            .map(|pid| dir.0.join(format!("state.{pid}.tmp")))
            .collect();
        for fifo in &fifos {
            let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: creating a FIFO at a path of the test's own directory.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        }
        HungDisk(fifos)
    }

    /// The disk comes back: each FIFO is opened (which ends the hung
    /// write, in error) and removed.
    fn ends(self) {
        use std::os::unix::fs::OpenOptionsExt;
        for fifo in &self.0 {
            let reader = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .unwrap();
            let _ = fs::remove_file(fifo);
            drop(reader);
        }
    }
}

/// Waits until app `shop` holds `n` requests.
fn wait_held(port: u16, n: u64) {
    wait_until(BOUND, &format!("{n} held"), || {
        status_json(port, "app=shop")["held_now"] == n
    });
}

fn status_json(port: u16, query: &str) -> serde_json::Value {
    let response = control(port, &format!("status?format=json&{query}"));
    assert_eq!(response.status, 200, "{response:?}");
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

/// Milliseconds since the epoch of an RFC 3339 time the status wrote
/// (`2026-11-30T12:00:00.123Z`), by comparing with a second status: only
/// differences matter here, so it parses the time of day and the day.
fn ms_of(time: &serde_json::Value) -> u64 {
    let text = time
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {time}"));
    let (date, clock) = text.trim_end_matches('Z').split_once('T').unwrap();
    let day: u64 = date.rsplit('-').next().unwrap().parse().unwrap();
    let mut parts = clock.split(':');
    let hours: u64 = parts.next().unwrap().parse().unwrap();
    let minutes: u64 = parts.next().unwrap().parse().unwrap();
    let seconds: f64 = parts.next().unwrap().parse().unwrap();
    ((day * 24 + hours) * 60 + minutes) * 60_000 + (seconds * 1000.0).round() as u64
}

#[test]
fn a_pause_with_a_ttl_survives_a_restart_and_a_disable_releases_what_the_new_nginx_holds() {
    let dir = StateDir::new("ttl");
    let upstream = Upstream::start();
    let first = start(&dir.file(), &upstream);
    pause(first.port(), "?app=shop&ttl=10m");
    let before = status_json(first.port(), "app=shop");
    assert!(dir.text().contains(" name=shop\n"), "{}", dir.text());
    first.stop();

    let second = start(&dir.file(), &upstream);
    let port = second.port();
    let after = status_json(port, "app=shop");
    assert_eq!(after["state"], "paused", "{after}");
    for key in ["since", "deadline"] {
        let (was, is) = (ms_of(&before[key]), ms_of(&after[key]));
        assert!(
            was.abs_diff(is) <= 50,
            "{key} was {} and is {}",
            before[key],
            after[key]
        );
    }
    assert_eq!(after["state_file"]["restored_apps"], 1, "{after}");
    assert!(after["state_file"]["restored_at"].is_string(), "{after}");
    assert!(after["state_file"]["restore_error"].is_null(), "{after}");
    second.wait_for_error_line("saying shop was restored", |l| {
        l.contains("[notice]") && l.contains("app \"shop\" paused again from the state file")
    });
    // Another app was never paused: it runs.
    assert_passes(
        port,
        Request::get("/?app=blog"),
        "an app that was not paused",
    );

    let held = start_held(port, Request::get("/?app=shop"));
    wait_held(second.port(), 1);
    assert_still_held([&held]);
    assert_eq!(
        upstream.count(),
        1,
        "only blog's request reached the upstream"
    );
    resume(port, "?app=shop");
    assert_from_upstream(&held.finish(), "the request held by the restarted nginx");
    assert_eq!(status_json(port, "app=shop")["state"], "running");
    assert!(
        !dir.text().contains("name=shop"),
        "the resume is saved: {}",
        dir.text()
    );
    assert_no_serious_lines(&second);
}

#[test]
fn a_ttl_that_runs_out_while_nginx_is_down_ends_the_pause() {
    let dir = StateDir::new("expired");
    let upstream = Upstream::start();
    let first = start(&dir.file(), &upstream);
    pause(first.port(), "?app=shop&ttl=1s");
    first.stop();
    std::thread::sleep(Duration::from_millis(1_300));

    let second = start(&dir.file(), &upstream);
    let status = status_json(second.port(), "app=shop");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["state_file"]["restored_apps"], 0, "{status}");
    second.wait_for_error_line("saying the pause ended", |l| {
        l.contains("[notice]") && l.contains("the pause of app \"shop\" ended while nginx was down")
    });
    assert_passes(
        second.port(),
        Request::get("/?app=shop"),
        "the app whose pause ended",
    );
}

/// A worker that starts after another has changed the zone, while that
/// change is still on its way to the file, must not take the file its
/// master restored from for news and stop the app again. (Found as a rare
/// failure of `a_stop_is_restored_as_a_stop`, when the second worker
/// happened to start in that window; here the write hangs on a FIFO, as in
/// the hung-disk test, and the second worker starts late, so it always
/// does.)
#[test]
fn a_late_worker_does_not_undo_a_resume_still_being_written() {
    let dir = StateDir::new("late-worker");
    let upstream = Upstream::start();
    let first = start(&dir.file(), &upstream);
    assert_eq!(control(first.port(), "stop?app=shop").status, 200);
    first.stop();

    let second = Nginx::start(
        Config::new()
            .workers(2)
            .main("env INTERMISSION_TEST_LATE_WORKER=3000;")
            .http(&format!(
                "intermission_state_file {};",
                dir.file().display()
            ))
            .server(&app_per_query_server(&upstream)),
    );
    let hung = HungDisk::under(&dir, &second);
    let disable = control_request("GET", "disable?app=shop").start(second.port());
    wait_until(BOUND, "the resume in the zone", || {
        status_json(second.port(), "app=shop")["state"] == "running"
    });
    second.wait_for_error_line("the late worker's start", |line| {
        line.contains("test probe: a late worker has started")
    });
    assert_eq!(status_json(second.port(), "app=shop")["state"], "running");
    assert!(
        !second.error_log().contains("by another nginx binary"),
        "{}",
        second.error_log()
    );
    assert_eq!(disable.finish().status, 200);
    hung.ends();
    for i in 0..4 {
        assert_passes(
            second.port(),
            Request::get("/?app=shop"),
            &format!("request {i}"),
        );
    }
    second.stop();
}

#[test]
fn a_stop_is_restored_as_a_stop() {
    let dir = StateDir::new("stop");
    let upstream = Upstream::start();
    let first = start(&dir.file(), &upstream);
    assert_eq!(control(first.port(), "stop?app=shop").status, 200);
    first.stop();

    let second = start(&dir.file(), &upstream);
    assert_eq!(status_json(second.port(), "app=shop")["state"], "stopped");
    let answer = Request::get("/?app=shop").send(second.port());
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
    assert_eq!(upstream.count(), 0);
    resume(second.port(), "?app=shop");
    assert_passes(
        second.port(),
        Request::get("/?app=shop"),
        "after the disable",
    );
}

#[test]
fn a_corrupt_file_is_logged_and_nginx_starts_with_nothing_paused() {
    let dir = StateDir::new("corrupt");
    fs::write(
        dir.file(),
        "intermission-state 1\nsaved 1 generation 1 writer 0000000000000001\npaused since=x deadline=none name=shop\n",
    )
    .unwrap();
    let upstream = Upstream::start();
    let nginx = start(&dir.file(), &upstream);
    let line = nginx.wait_for_error_line("saying the file is unreadable", |l| {
        l.contains("[alert]") && l.contains("cannot restore the pause state from")
    });
    assert!(
        line.contains("line 3") && line.contains("starting with nothing paused"),
        "{line}"
    );
    let status = status_json(nginx.port(), "app=shop");
    assert_eq!(status["state"], "running", "{status}");
    assert!(
        status["state_file"]["restore_error"]
            .as_str()
            .unwrap()
            .contains("line 3"),
        "{status}"
    );
    assert!(status["state_file"]["restored_at"].is_null(), "{status}");
    let metrics = control(nginx.port(), "metrics").text();
    assert!(
        metrics.contains("\nintermission_state_restore_failed 1\n"),
        "{metrics}"
    );
    assert_passes(
        nginx.port(),
        Request::get("/?app=shop"),
        "nothing is paused",
    );

    // The next change writes a good file over it.
    pause(nginx.port(), "?app=shop");
    assert!(
        dir.text().starts_with("intermission-state 1\n"),
        "{}",
        dir.text()
    );
    assert!(dir.text().ends_with("end apps=1\n"), "{}", dir.text());
}

#[test]
fn an_unwritable_place_is_logged_and_the_pause_still_works() {
    let dir = StateDir::new("unwritable");
    // A file where the directory should be: no user, root included, can
    // create the state file there.
    fs::write(dir.0.join("not-a-directory"), "").unwrap();
    let file = dir.0.join("not-a-directory").join("state");
    let upstream = Upstream::start();
    let nginx = start(&file, &upstream);
    pause(nginx.port(), "?app=shop");
    let line = nginx.wait_for_error_line("saying the write failed", |l| {
        l.contains("[alert]") && l.contains("cannot write the state file")
    });
    assert!(
        line.contains("a restart would not restore this change"),
        "{line}"
    );
    let status = status_json(nginx.port(), "app=shop");
    assert_eq!(status["state"], "paused", "the pause stands: {status}");
    assert_eq!(status["state_file"]["save_errors"], 1, "{status}");
    assert!(status["state_file"]["saved_at"].is_null(), "{status}");
    let held = start_held(nginx.port(), Request::get("/?app=shop"));
    wait_held(nginx.port(), 1);
    resume(nginx.port(), "?app=shop");
    assert_from_upstream(&held.finish(), "held while the file could not be written");
}

#[test]
fn a_reload_keeps_the_zone_and_a_reload_that_replaces_it_restores_the_file() {
    let dir = StateDir::new("reload");
    let upstream = Upstream::start();
    let config = |zone: &str| {
        Config::new()
            .workers(2)
            .http(&format!(
                "intermission_state_file {}; intermission_zone {zone};",
                dir.file().display()
            ))
            .server(&app_per_query_server(&upstream))
    };
    let nginx = Nginx::start(config("1m"));
    let port = nginx.port();
    pause(port, "?app=shop&ttl=10m");
    let before = status_json(port, "app=shop");

    // Same zone: it carries the pause; nothing is restored.
    nginx.reload();
    let after = status_json(port, "app=shop");
    assert_eq!(after["state"], "paused");
    assert!(ms_of(&after["since"]).abs_diff(ms_of(&before["since"])) <= 50);
    assert!(after["state_file"]["restored_at"].is_null(), "{after}");

    // Another size: nginx replaces the zone, and the file fills the new one.
    nginx.rewrite_config(config("2m"));
    nginx.reload();
    let replaced = status_json(port, "app=shop");
    assert_eq!(replaced["state"], "paused", "{replaced}");
    assert_eq!(replaced["state_file"]["restored_apps"], 1, "{replaced}");
    assert!(ms_of(&before["deadline"]).abs_diff(ms_of(&replaced["deadline"])) <= 50);
    let held = start_held(port, Request::get("/?app=shop"));
    wait_held(nginx.port(), 1);
    resume(port, "?app=shop");
    assert_from_upstream(&held.finish(), "held after the reload");
    assert_no_serious_lines(&nginx);
}

#[test]
fn bad_paths_fail_nginx_t_naming_the_directive() {
    let upstream = Upstream::start();
    // `nginx -t` reads no state file, however broken.
    let dir = StateDir::new("nginx-t");
    fs::write(dir.file(), "not a state file").unwrap();
    let (ok, output) = Nginx::test_config(
        &Config::new()
            .http(&format!(
                "intermission_state_file {};",
                dir.file().display()
            ))
            .server(&app_per_query_server(&upstream)),
    );
    assert!(ok && !output.contains("restore"), "{output}");
    for (value, says) in [("/var/lib/", "invalid path"), ("\"\"", "invalid path")] {
        let (ok, output) = Nginx::test_config(
            &Config::new()
                .http(&format!("intermission_state_file {value};"))
                .server(&app_per_query_server(&upstream)),
        );
        assert!(!ok, "{value} accepted: {output}");
        assert!(
            output.contains(says) && output.contains("\"intermission_state_file\""),
            "{output}"
        );
    }
    let (ok, output) = Nginx::test_config(
        &Config::new()
            .http("intermission_state_file off;")
            .server(&app_per_query_server(&upstream)),
    );
    assert!(ok, "off: {output}");
    let (ok, output) = Nginx::test_config(
        &Config::new()
            .http("intermission_state_file a; intermission_state_file b;")
            .server(&app_per_query_server(&upstream)),
    );
    assert!(!ok && output.contains("is duplicate"), "{output}");
}

/// A disk that hangs on the state file's write stops no worker: the write
/// happens on a thread of its own, under a lock only writers take; the
/// control call answers after a bound, saying so; requests are served
/// meanwhile, and a pause whose deadline passes ends (no request path takes
/// a lock a writer holds). A FIFO in place of a worker's
/// temporary file stands for the hung disk: opening it for writing blocks
/// until a reader comes.
#[test]
fn a_hung_disk_stops_no_worker_and_the_control_call_answers_after_a_bound() {
    let dir = StateDir::new("hung");
    let file = dir.file();
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .http(&format!("intermission_state_file {};", file.display()))
            .server(&format!(
                "{} {}",
                app_per_query_server(&upstream),
                plain_location("/plain/", &upstream, "")
            )),
    );
    let port = nginx.port();
    let hung = HungDisk::under(&dir, &nginx);

    let enable = control_request("GET", "enable?app=shop&ttl=1s").start(port);
    // The write hangs; every worker serves on.
    for i in 0..20 {
        assert_passes(port, seq_request("/plain/", i), "while the write hangs");
    }
    // The pause reached its deadline: requests of the app pass again.
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    assert_passes(
        port,
        Request::get("/?app=shop").header("X-Seq", "20"),
        "past the pause's deadline",
    );
    assert_answer(&enable.finish(), 200, PAUSED, "the enable, after its bound");
    nginx.wait_for_error_line("saying the write is slow", |l| {
        l.contains("the state file is still being written after 5.000 s")
    });

    // The disk comes back; later writes work.
    hung.ends();
    wait_until(BOUND, "the hung write to end", || {
        status_json(port, "app=shop")["state_file"]["save_errors"] == 1
    });
    pause(port, "?app=shop");
    wait_until(BOUND, "the file to say shop is paused", || {
        dir.text().contains(" name=shop\n")
    });
    resume(port, "?app=shop");
    assert!(!dir.text().contains("name=shop"), "{}", dir.text());
    nginx.stop();
}

/// A host that boots with its clock behind the one that wrote the file
/// would restore a pause whose deadline is years away: it lasts no longer
/// than it was set to last in all, and the log says why.
#[test]
fn a_clock_behind_the_files_restores_the_pause_for_its_length_not_years() {
    use intermission_core::state_file::{SavedApp, StateFile};
    let dir = StateDir::new("clock-behind");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Written by a clock five years ahead of this one: paused for a minute.
    let ahead = now + 5 * 365 * 24 * 3_600_000;
    let file = StateFile {
        saved: ahead,
        generation: 1,
        writer: 1,
        apps: vec![SavedApp {
            name: b"shop".to_vec(),
            stopped: false,
            since: ahead,
            deadline: Some(ahead + 60_000),
        }],
    };
    fs::write(dir.file(), file.render()).unwrap();
    let upstream = Upstream::start();
    let nginx = start(&dir.file(), &upstream);
    let status = status_json(nginx.port(), "app=shop");
    assert_eq!(status["state"], "paused", "{status}");
    // RFC 3339 times of one format compare as their text does.
    let latest = intermission_core::control::rfc3339(now + 61_000);
    assert!(
        status["deadline"].as_str().unwrap() <= latest.as_str(),
        "the deadline is at most a minute away ({latest}): {status}"
    );
    nginx.wait_for_error_line("saying the deadline was clamped", |l| {
        l.contains("[warn]") && l.contains("is further away than its pause was set to last")
    });
    nginx.stop();
}
