//! A pause ends by itself at its deadline: `enable?ttl=TIME`, or
//! `intermission_max_pause` when the call names none. A dead ops script can
//! no longer leave a site paused.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn a_pause_with_a_ttl_ends_by_itself_and_releases_in_order() {
    const HELD: usize = 8;
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    let enable = control(port, "enable?ttl=3s");
    assert_answer(&enable, 200, PAUSED, "enable with a ttl");
    nginx.wait_for_error_line("saying how long the pause lasts", |line| {
        line.contains("intermission: app \"shop\" paused, for at most 3.000 s")
    });
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    assert_still_held(&held);

    // Nobody calls disable.
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD);
    assert_each_seq_once(&hits, HELD);
    assert_ordered_per_worker(&hits);
    nginx.wait_for_error_line("about the deadline", |line| {
        line.contains("intermission: app \"shop\" reached the deadline of its pause after 3.")
            && line.contains(&format!("the pause held {HELD} requests"))
    });
    assert_status(port, "", RESUMED);
    assert_eq!(counters(port, "").released, HELD as u64);
    nginx.stop();
}

/// With nothing held and no traffic, the pause is over as soon as anyone
/// looks: the status answers that it has ended.
#[test]
fn the_default_deadline_comes_from_intermission_max_pause() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .http("intermission_max_pause 300ms;")
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    nginx.wait_for_error_line("saying how long the pause lasts", |line| {
        line.contains("intermission: app \"shop\" paused, for at most 0.300 s")
    });
    wait_until(BOUND, "the pause to end at its deadline", || {
        control(port, "status").text() == RESUMED
    });
    assert_passes(port, Request::get("/after"), "a request after the deadline");
    nginx.stop();
}

#[test]
fn enable_with_a_ttl_moves_the_deadline_and_off_means_none() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .http("intermission_max_pause off;")
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    nginx.wait_for_error_line("saying the pause has no deadline", |line| {
        line.contains("intermission: app \"shop\" paused, with no deadline")
    });
    // Without a ttl a second enable changes nothing; with one, it sets the deadline.
    assert_eq!(control(port, "enable").status, 304);
    assert_answer(
        &control(port, "enable?ttl=0.2"),
        200,
        PAUSED,
        "a short deadline",
    );
    assert_answer(
        &control(port, "enable?ttl=10m"),
        200,
        PAUSED,
        "moved further",
    );
    nginx.wait_for_error_line("about the moved deadline", |line| {
        line.contains("intermission: app \"shop\" stays paused, for at most 600.000 s")
    });
    // Well past the 0.2 s first set: still paused.
    thread::sleep(Duration::from_millis(600));
    assert_status(port, "", PAUSED);
    resume(port, "");
    nginx.stop();
}

#[test]
fn bad_ttls_are_refused_naming_the_argument() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_server("shop", &upstream, "")));
    let port = nginx.port();
    for (call, message) in [
        (
            "enable?ttl=0",
            "intermission: invalid \"ttl\" argument \"0\"",
        ),
        (
            "enable?ttl=soon",
            "intermission: invalid \"ttl\" argument \"soon\"",
        ),
        (
            "enable?ttl=2d",
            "intermission: invalid \"ttl\" argument \"2d\"",
        ),
        (
            "enable?ttl=5&ttl=6",
            "the \"ttl\" argument is given more than once",
        ),
        (
            "disable?ttl=5",
            "the \"ttl\" argument does not apply to Disable",
        ),
        (
            "status?ttl=5",
            "the \"ttl\" argument does not apply to Status",
        ),
    ] {
        let response = control(port, call);
        assert_eq!(response.status, 400, "{call}: {response:?}");
        assert!(response.text().contains(message), "{call}: {response:?}");
        nginx.wait_for_error_line(&format!("for {call}"), |line| line.contains(message));
    }
    assert_status(port, "", RESUMED);
    nginx.stop();
}
