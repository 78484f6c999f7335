//! `.../stop`: every request of the app, those already held included, is
//! answered 503 with `Retry-After` at once, through nginx's error handling;
//! health checks still pass; `.../disable` ends it, `.../enable` turns it
//! back into a pause.

mod common;

use common::*;

const STOPPED: &str = "Stopped.\n";
const SORRY_PAGE: &str = "Down for maintenance.\n";

/// The shop with an error page for 503 and a health check path.
fn start(workers: usize) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = format!(
        "error_page 503 /sorry.html; location = /sorry.html {{ root {PREFIX_MARK}; }} {}",
        app_server(
            "shop",
            &upstream,
            "set $intermission_health_check_path /health;"
        )
    );
    let nginx = Nginx::start(
        Config::new()
            .workers(workers)
            .file("sorry.html", SORRY_PAGE)
            .server(&server),
    );
    (nginx, upstream)
}

fn assert_stopped_answer(response: &Response, what: &str) {
    assert_answer(response, 503, SORRY_PAGE, what);
    assert_eq!(
        response.header("retry-after"),
        Some("30"),
        "{what}: {response:?}"
    );
}

#[test]
fn a_stop_answers_held_and_new_requests_503_and_disable_ends_it() {
    const HELD: usize = 12;
    let (nginx, upstream) = start(2);
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });

    assert_answer(&control(port, "stop"), 200, STOPPED, "stop");
    for pending in held {
        let what = pending.describe().to_owned();
        assert_stopped_answer(&pending.finish(), &what);
    }
    assert_stopped_answer(
        &Request::get("/new").send(port),
        "a new request while stopped",
    );
    assert_passes(
        port,
        Request::get("/health"),
        "the health check while stopped",
    );
    assert_eq!(
        upstream.count(),
        1,
        "only the health check reached the upstream"
    );
    assert_status(port, "", STOPPED);
    assert_eq!(control(port, "stop").status, 304, "stop on a stopped app");
    let figures = counters(port, "");
    assert_eq!(
        (figures.state.as_str(), figures.stopped, figures.held_now),
        ("stopped", HELD as u64 + 1, 0),
        "{figures:?}"
    );
    nginx.wait_for_error_line("about the stop", |line| {
        line.contains("[error]")
            && line.contains("intermission: app \"shop\" stopped, for at most ")
            && line.contains(" s: answering its requests 503, those held included")
    });
    let stopped_entry = nginx.wait_for_access("for the new request", |e| e.uri == "/new");
    assert_eq!(stopped_entry.outcome(), "stopped", "{}", stopped_entry.line);

    resume(port, "");
    assert_passes(port, Request::get("/after"), "a request after disable");
    assert_status(port, "", RESUMED);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn enable_turns_a_stop_into_a_pause_and_a_stop_ends_at_its_ttl() {
    let (nginx, upstream) = start(1);
    let port = nginx.port();
    assert_answer(&control(port, "stop"), 200, STOPPED, "stop a running app");
    assert_stopped_answer(&Request::get("/x").send(port), "while stopped");

    pause(port, "");
    assert_status(port, "", PAUSED);
    let held = start_held(port, seq_request("/item/", 0));
    assert_still_held([&held]);
    resume(port, "");
    assert_from_upstream(&held.finish(), "held after the stop became a pause");

    assert_answer(
        &control(port, "stop?ttl=300ms"),
        200,
        STOPPED,
        "a stop with a ttl",
    );
    wait_until(BOUND, "the stop to end at its deadline", || {
        control(port, "status").text() == RESUMED
    });
    assert_passes(port, Request::get("/after"), "after the stop's deadline");
    assert_eq!(upstream.count(), 2);
    assert_eq!(
        control(port, "stop?drain=5").status,
        400,
        "drain is for enable"
    );
    nginx.stop();
}
