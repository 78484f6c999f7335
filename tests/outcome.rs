//! `$intermission_outcome` and `$intermission_wait` in the access log: what
//! the module did with each request, and how long a held one waited.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

/// The shop, with locations for every outcome.
fn start() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = format!(
        "{} {} {} {} {}",
        app_server(
            "shop",
            &upstream,
            "set $intermission_health_check_path /health;"
        ),
        held_location("/limited/", &upstream, "intermission_max_held 0;"),
        held_location("/short/", &upstream, "set $intermission_max_time 300ms;"),
        plain_location("/plain/", &upstream, ""),
        "location /busy.html { return 200 \"busy\\n\"; }"
    );
    let nginx = Nginx::start(Config::new().workers(2).server(&server));
    (nginx, upstream)
}

fn entry_for(nginx: &Nginx, uri: &str) -> AccessEntry {
    nginx.wait_for_access(&format!("for {uri}"), |entry| entry.uri == uri)
}

#[test]
fn each_request_is_logged_with_what_the_module_did() {
    let (nginx, _upstream) = start();
    let port = nginx.port();

    assert_passes(port, Request::get("/before"), "a request while running");
    assert_passes(
        port,
        Request::get("/plain/x"),
        "a request the module does not act on",
    );

    pause(port, "");
    let held = start_held(port, Request::get("/held"));
    let gone = start_held(port, Request::get("/gone"));
    assert_passes(
        port,
        Request::get("/health"),
        "the health check while paused",
    );
    assert_eq!(
        Request::get("/limited/x").send(port).status,
        503,
        "past intermission_max_held"
    );
    let short = Request::get("/short/x").send(port);
    assert_from_upstream(&short, "a request held past its max_time");
    // Both remaining requests wait at least this long from here.
    thread::sleep(Duration::from_millis(300));
    gone.close();
    wait_until(BOUND, "the closed request to be logged", || {
        nginx.access_log().iter().any(|e| e.uri == "/gone")
    });
    resume(port, "");
    assert_from_upstream(&held.finish(), "the held request");
    assert_passes(port, Request::get("/after"), "a request after the pause");

    let expect = |uri: &str, outcome: &str, status: u16| {
        let entry = entry_for(&nginx, uri);
        assert_eq!(
            (entry.status, entry.outcome()),
            (status, outcome),
            "{}",
            entry.line
        );
        entry
    };
    for (uri, outcome, status) in [
        ("/before", "passed", 200),
        ("/after", "passed", 200),
        ("/health", "bypassed", 200),
        ("/limited/x", "rejected", 503),
        ("/plain/x", "-", 200),
        ("/_intermission/enable", "-", 200),
    ] {
        let entry = expect(uri, outcome, status);
        assert_eq!(entry.wait_ms(), None, "not held: {}", entry.line);
    }
    let timed_out = expect("/short/x", "timed_out", 200);
    assert!(
        timed_out.wait_ms().is_some_and(|ms| ms >= 300),
        "held for its max_time of 300 ms: {}",
        timed_out.line
    );
    for (uri, status) in [("/held", 200), ("/gone", 499)] {
        let entry = expect(uri, "held", status);
        assert!(
            entry.wait_ms().is_some_and(|ms| ms >= 300),
            "held at least 300 ms: {}",
            entry.line
        );
    }
    nginx.stop();
}

/// A request rejected past the hold limit and sent by an internal redirect
/// to an error page in a held location keeps its outcome, and is not held
/// there.
#[test]
fn the_outcome_survives_an_internal_redirect() {
    let upstream = Upstream::start();
    let server = format!(
        "error_page 503 /sorry; {} {} {}",
        app_server("shop", &upstream, ""),
        held_location("/sorry", &upstream, ""),
        held_location("/limited/", &upstream, "intermission_max_held 0;"),
    );
    let nginx = Nginx::start(Config::new().server(&server));
    let port = nginx.port();
    pause(port, "");
    let response = Request::get("/limited/x").send(port);
    // The error page comes from the upstream, through a held location,
    // while the app is still paused.
    assert_answer(&response, 503, UPSTREAM_BODY, "the error page");
    let entry = entry_for(&nginx, "/limited/x");
    assert_eq!(entry.outcome(), "rejected", "{}", entry.line);
    resume(port, "");
    nginx.stop();
}
