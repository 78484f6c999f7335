//! `intermission_max_held`: past it, a request of the paused app is answered
//! 503 with `Retry-After` at once instead of being held, and counted.

mod common;

use common::*;

#[test]
fn past_the_limit_requests_get_503_at_once_and_are_counted() {
    const LIMIT: usize = 6;
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .http(&format!("intermission_max_held {LIMIT};"))
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    // Two workers share the one limit.
    let held = start_in_order(port, LIMIT, |i| seq_request("/item/", i));
    // nginx has read them; they count once their workers have run their phases.
    wait_until(BOUND, "all six to be held", || {
        counters(port, "").held_now == LIMIT as u64
    });
    for i in LIMIT..LIMIT + 3 {
        let response = seq_request("/item/", i).send(port);
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(response.header("retry-after"), Some("5"), "{response:?}");
    }
    nginx.wait_for_error_line("about the limit", |line| {
        line.contains("[warn]")
            && line.contains("intermission: app \"shop\" already holds its intermission_max_held of 6 requests, answering 503")
    });
    assert_still_held(&held);
    let figures = counters(port, "");
    assert_eq!(
        (figures.held_now, figures.rejected),
        (LIMIT as u64, 3),
        "{figures:?}"
    );
    // Health checks are not held, so the limit does not touch them.
    assert_passes(port, Request::get("/up"), "the health check");

    resume(port, "");
    finish_all_from_upstream(held);
    assert_each_seq_once(&upstream.wait_for(LIMIT + 1)[1..], LIMIT);
    assert_passes(port, Request::get("/after"), "a request once resumed");
    nginx.stop();
}

/// A limit set on one location applies to the requests held there; a
/// location without one holds without limit.
#[test]
fn the_limit_is_per_location_and_zero_holds_nothing() {
    let upstream = Upstream::start();
    let server = format!(
        "{} {} {} {}",
        set_app_name("shop"),
        held_location("/", &upstream, ""),
        held_location("/checkout", &upstream, "intermission_max_held 0;"),
        control_location()
    );
    let nginx = Nginx::start(Config::new().server(&server));
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, 3, |i| seq_request("/page/", i));
    wait_until(BOUND, "the three to be held", || {
        counters(port, "").held_now == 3
    });
    let refused = Request::get("/checkout").send(port);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_still_held(&held);
    resume(port, "");
    finish_all_from_upstream(held);
    assert_eq!(counters(port, "").rejected, 1);
    nginx.stop();
}
