//! A pause ends by itself at its deadline: `enable?ttl=TIME`, or
//! `intermission_max_pause` when the call names none. A dead ops script can
//! no longer leave a site paused.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The requests are held until the deadline, never released before it: the
/// check is that the upstream sees none of them earlier than the ttl after
/// the enable was sent (a lower bound, whatever the machine's load), and that
/// the pause's line counts all of them held. The ttl leaves seconds for the
/// requests to arrive before it.
#[test]
fn a_pause_with_a_ttl_ends_by_itself_and_releases_in_order() {
    const HELD: usize = 8;
    const TTL: Duration = Duration::from_secs(5);
    /// nginx's clock (CLOCK_MONOTONIC_COARSE, cached per event loop turn)
    /// may lag the test's by a tick.
    const CLOCK_SLACK: Duration = Duration::from_millis(100);
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    let enabled_at = Instant::now();
    let enable = control(port, "enable?ttl=5s");
    assert_answer(&enable, 200, PAUSED, "enable with a ttl");
    nginx.wait_for_error_line("saying how long the pause lasts", |line| {
        line.contains("intermission: app \"shop\" paused, for at most 5.000 s")
    });
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));

    // Nobody calls disable.
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD);
    assert_each_seq_once(&hits, HELD);
    assert_ordered_per_worker(&hits);
    for hit in &hits {
        let after = hit.at.duration_since(enabled_at);
        assert!(
            after + CLOCK_SLACK >= TTL,
            "{} reached the upstream {after:?} after the enable, before its ttl of {TTL:?}",
            hit.path
        );
    }
    nginx.wait_for_error_line("about the deadline", |line| {
        line.contains("intermission: app \"shop\" reached the deadline of its pause after 5.")
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
    // Without a ttl a second enable changes nothing; with one, it sets the
    // deadline, and a later one moves it. The first deadline leaves seconds
    // for the second call (the log says whether it found the app still
    // paused); the check that it no longer applies comes well after it.
    assert_eq!(control(port, "enable").status, 304);
    const FIRST_TTL: Duration = Duration::from_secs(2);
    let first_set = Instant::now();
    assert_answer(
        &control(port, "enable?ttl=2s"),
        200,
        PAUSED,
        "a first deadline",
    );
    assert_answer(
        &control(port, "enable?ttl=10m"),
        200,
        PAUSED,
        "moved further",
    );
    nginx.wait_for_error_line("about the first deadline", |line| {
        line.contains("intermission: app \"shop\" stays paused, for at most 2.000 s")
    });
    nginx.wait_for_error_line("about the moved deadline", |line| {
        line.contains("intermission: app \"shop\" stays paused, for at most 600.000 s")
    });
    // Well past the first deadline: still paused, and it never ended.
    thread::sleep(
        (first_set + FIRST_TTL + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    assert_status(port, "", PAUSED);
    assert!(
        !nginx
            .error_log()
            .contains("reached the deadline of its pause"),
        "the first deadline still ended the pause:\n{}",
        nginx.error_log()
    );
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
            "the \"ttl\" argument does not apply to disable",
        ),
        (
            "status?ttl=5",
            "the \"ttl\" argument does not apply to status",
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
