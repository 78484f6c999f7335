//! The module's own answers (503 for stop, the hold limit and max time; 504
//! for max time) go through nginx's `error_page` like any other 503/504:
//! the operator's page, one `Retry-After`, also when the page is served
//! from a location that itself has `intermission` (the usual layout:
//! `location / { intermission; try_files $uri @app; }`) and with
//! `recursive_error_pages on`. The error page's redirect is never held or
//! answered again by the module.

mod common;

use common::*;

const PAGE: &str = "<h1>Back in a minute</h1>\n";

/// The usual layout: the page is a static file found by the held
/// location's `try_files`, the app behind a named location.
fn start(recursive: bool, extra: &str) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let recursive = if recursive {
        "recursive_error_pages on;"
    } else {
        ""
    };
    let server = format!(
        "root {PREFIX_MARK}; {recursive} error_page 503 504 /maintenance.html; \
         set $app_name shop; \
         location / {{ intermission; {extra} try_files $uri @app; }} \
         location @app {{ {} }} {}",
        proxy_to(&upstream),
        control_location()
    );
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .file("maintenance.html", PAGE)
            .server(&server),
    );
    (nginx, upstream)
}

/// The operator's page with `status`, and `Retry-After` exactly as many
/// times as `retry_after` says (0 or 1).
fn assert_page(response: &Response, status: u16, retry_after: Option<&str>, what: &str) {
    assert_eq!(response.status, status, "{what}: {response:?}");
    assert_eq!(response.text(), PAGE, "{what}: the operator's page");
    let given: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(given, retry_after.into_iter().collect::<Vec<_>>(), "{what}");
}

fn held_then_stopped(recursive: bool) {
    let (nginx, upstream) = start(recursive, "");
    let port = nginx.port();
    pause(port, "");
    let held = hold_in_order(port, 4, |i| seq_request("/item/", i));
    assert_answer(&control(port, "stop"), 200, "Stopped.\n", "stop");
    for pending in held {
        let what = format!("held, then stopped: {}", pending.describe());
        assert_page(&pending.finish(), 503, Some("30"), &what);
    }
    assert_page(
        &Request::get("/new").send(port),
        503,
        Some("30"),
        "a new request while stopped",
    );
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    let figures = counters(port, "");
    assert_eq!((figures.held_now, figures.stopped), (0, 5), "{figures:?}");
    resume(port, "");
    assert_passes(port, Request::get("/after"), "after the stop");
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn a_held_request_answered_by_a_stop_gets_the_operators_page() {
    held_then_stopped(false);
}

#[test]
fn with_recursive_error_pages_a_stopped_request_still_gets_the_page_once() {
    held_then_stopped(true);
}

fn held_past_max_time(recursive: bool, status: u16, retry_after: Option<&str>) {
    let (nginx, upstream) = start(
        recursive,
        &format!("set $intermission_max_time 1s; set $intermission_on_timeout {status};"),
    );
    let port = nginx.port();
    pause(port, "");
    let response = seq_request("/item/", 0).send(port);
    assert_page(
        &response,
        status,
        retry_after,
        "held for its whole max time while the app stays paused",
    );
    let figures = counters(port, "");
    assert_eq!(figures.state, "paused", "{figures:?}");
    assert_eq!(
        (figures.held_now, figures.timed_out),
        (0, 1),
        "the page's redirect was not held again: {figures:?}"
    );
    assert_eq!(upstream.count(), 0);
    resume(port, "");
    nginx.stop();
}

#[test]
fn max_time_answered_503_gets_the_page_while_the_app_stays_paused() {
    held_past_max_time(false, 503, Some("5"));
}

#[test]
fn max_time_answered_504_gets_the_page_with_recursive_error_pages() {
    held_past_max_time(true, 504, None);
}

#[test]
fn max_time_answered_503_gets_the_page_once_with_recursive_error_pages() {
    held_past_max_time(true, 503, Some("5"));
}

#[test]
fn the_hold_limit_answers_with_the_page() {
    let (nginx, upstream) = start(true, "intermission_max_held 1;");
    let port = nginx.port();
    pause(port, "");
    let held = start_held(port, seq_request("/item/", 0));
    wait_until(BOUND, "the first request to be held", || {
        counters(port, "").held_now == 1
    });
    assert_page(
        &seq_request("/item/", 1).send(port),
        503,
        Some("5"),
        "past intermission_max_held",
    );
    let figures = counters(port, "");
    assert_eq!((figures.held_now, figures.rejected), (1, 1), "{figures:?}");
    resume(port, "");
    assert_from_upstream(&held.finish(), "the held one");
    assert_eq!(upstream.count(), 1);
    nginx.stop();
}
