//! `intermission_log_level`: the audit lines (an app paused, stays paused,
//! resumed, stopped, drained, at its deadline) are logged at `error` by
//! default, so that an `error_log` at `error` (Debian's default) keeps the
//! audit trail; at the level the directive names otherwise.

mod common;

use std::time::Duration;

use common::*;

/// The shop, on one worker, whose requests log to `audit.log` at `error`
/// and to `all.log` at `info` (`error_log`s in the http block: what control
/// calls log goes there), with `http` added.
fn start(http: &str) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .http("error_log @PREFIX@/audit.log error; error_log @PREFIX@/all.log info;")
            .http(http)
            .server(&app_server("shop", &upstream, "")),
    );
    (nginx, upstream)
}

/// Enables, extends, resumes and stops the shop, and drains it.
fn audited_calls(port: u16) {
    pause(port, "");
    assert_eq!(control(port, "enable?ttl=10m").status, 200, "a new ttl");
    resume(port, "");
    assert_eq!(control(port, "stop").status, 200, "stop");
    assert_eq!(control(port, "enable?drain=5s").status, 200, "drain");
    resume(port, "");
}

const AUDIT_LINES: [&str; 6] = [
    "intermission: app \"shop\" paused, for at most 600.000 s",
    "intermission: app \"shop\" stays paused, for at most 600.000 s",
    "intermission: app \"shop\" resumed, the pause held 0 requests",
    "intermission: app \"shop\" stopped, for at most 600.000 s: answering its requests 503",
    "intermission: app \"shop\" was stopped, and is paused now: holding its requests",
    "intermission: app \"shop\" drained after ",
];

#[test]
fn audit_lines_are_errors_by_default() {
    let (nginx, _upstream) = start("");
    let port = nginx.port();
    audited_calls(port);
    let audit = nginx.prefix_file("audit.log");
    for line in AUDIT_LINES {
        assert!(
            audit
                .lines()
                .any(|logged| logged.contains("[error]") && logged.contains(line)),
            "no [error] line {line:?} in audit.log:\n{audit}"
        );
    }
    nginx.stop();
}

#[test]
fn the_deadline_line_is_at_the_configured_level_too() {
    let (nginx, _upstream) = start("intermission_log_level warn;");
    let port = nginx.port();
    assert_eq!(control(port, "enable?ttl=300ms").status, 200);
    let held = start_held(port, Request::get("/"));
    assert_from_upstream(&held.finish(), "the request held until the deadline");
    // The worker's timer logs to the main error log, a request to the
    // http block's: either may have seen the deadline first.
    let mut found = None;
    let seen = poll_until(Duration::from_secs(10), || {
        let logs = nginx.error_log() + &nginx.prefix_file("all.log");
        found = logs
            .lines()
            .find(|line| line.contains("intermission: app \"shop\" reached the deadline"))
            .map(str::to_owned);
        found.is_some()
    });
    assert!(seen, "no line about the deadline");
    let line = found.unwrap();
    assert!(line.contains("[warn]"), "{line}");
    nginx.stop();
}

#[test]
fn below_the_error_logs_level_they_are_not_logged() {
    let (nginx, _upstream) = start("intermission_log_level notice;");
    let port = nginx.port();
    audited_calls(port);
    // In the log at `info`, they are, at `notice`.
    let all = nginx.prefix_file("all.log");
    for line in AUDIT_LINES {
        assert!(
            all.lines()
                .any(|logged| logged.contains("[notice]") && logged.contains(line)),
            "no [notice] line {line:?} in all.log:\n{all}"
        );
    }
    let audit = nginx.prefix_file("audit.log");
    assert!(
        !audit.contains("intermission: app \"shop\""),
        "audit.log at error has the module's notices:\n{audit}"
    );
    nginx.stop();
}

#[test]
fn a_bad_level_fails_nginx_t_naming_the_directive() {
    for (http, server) in [
        ("intermission_log_level debug;", ""),
        ("intermission_log_level crit;", ""),
        (
            "intermission_log_level notice; intermission_log_level error;",
            "",
        ),
        ("", "intermission_log_level notice;"),
    ] {
        let config = Config::new().http(http).server(&format!(
            "{server} location / {{ intermission; return 204; }}"
        ));
        let (accepted, output) = Nginx::test_config(&config);
        assert!(
            !accepted,
            "nginx -t accepted {http:?} {server:?}:\n{output}"
        );
        assert!(
            output.contains("\"intermission_log_level\" directive"),
            "{http:?} {server:?}:\n{output}"
        );
    }
    let (accepted, output) = Nginx::test_config(
        &Config::new()
            .http("intermission_log_level info;")
            .server("location / { intermission; return 204; }"),
    );
    assert!(accepted, "{output}");
}
