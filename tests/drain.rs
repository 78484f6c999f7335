//! `enable?drain=TIME`: the pause begins at once, and the answer waits until
//! no request of the app let through before the pause is still in flight
//! (200), or the time is up (504 with the number still in flight).

mod common;

use common::*;

/// A server for app `shop` whose `/` is held while paused and proxied to the
/// gated upstream, so requests stay in flight until the test opens the gate;
/// `extra` goes into the server block.
fn start_gated(workers: usize, extra: &str) -> (Nginx, GatedUpstream) {
    let gated = GatedUpstream::start();
    let nginx = Nginx::start(Config::new().workers(workers).server(&format!(
        "{} location / {{ intermission; proxy_pass http://127.0.0.1:{}; }} {} {extra}",
        set_app_name("shop"),
        gated.port(),
        control_location()
    )));
    (nginx, gated)
}

/// Sends `n` requests to `/` that reach the gated upstream and stay there.
fn in_flight(port: u16, gated: &GatedUpstream, n: usize) -> Vec<Pending> {
    let already = gated.received();
    let pending: Vec<Pending> = (0..n)
        .map(|i| Request::get(&format!("/work/{i}")).start(port))
        .collect();
    gated.wait_for(already + n);
    pending
}

/// The time a log line gives after `after`, in seconds (`0.312 s`).
fn logged_seconds(line: &str, after: &str) -> f64 {
    let start = line.find(after).expect("the text before the time") + after.len();
    let time = line[start..].split(' ').next().unwrap_or_default();
    time.parse()
        .unwrap_or_else(|_| panic!("no time after {after:?}: {line}"))
}

#[test]
fn a_drain_answers_once_the_requests_in_flight_have_finished() {
    let (nginx, gated) = start_gated(2, "");
    let port = nginx.port();
    let working = in_flight(port, &gated, 3);

    let drain = control_request("POST", "enable?drain=30s").start(port);
    wait_until(BOUND, "the pause to begin", || {
        control(port, "status").text() == PAUSED
    });
    // Paused, but three requests are still at the upstream: no answer yet.
    let held = start_held(port, Request::get("/after-the-pause"));
    settle();
    assert!(!drain.is_answered(), "the drain answered with 3 in flight");
    assert_eq!(gated.received(), 3, "the request after the pause is held");

    gated.open();
    finish_all_from_upstream(working);
    assert_answer(&drain.finish(), 200, PAUSED, "the drain once they finished");
    nginx.wait_for_error_line("about the drain", |line| {
        line.contains("[error]")
            && line.contains("intermission: app \"shop\" drained after ")
            && line.contains("no request in flight")
    });
    assert_still_held([&held]);
    resume(port, "");
    gated.wait_for(4);
    gated.open();
    assert_from_upstream(&held.finish(), "the request held during the drain");
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn a_drain_that_runs_out_of_time_answers_504_with_the_count_and_stays_paused() {
    let (nginx, gated) = start_gated(1, "");
    let port = nginx.port();
    let working = in_flight(port, &gated, 2);

    let drain = control(port, "enable?drain=300ms");
    assert_answer(
        &drain,
        504,
        "Pause enabled, but 2 requests still in flight.\n",
        "a drain past its time",
    );
    let line = nginx.wait_for_error_line("about the drain that timed out", |line| {
        line.contains("[warn]")
            && line.contains("intermission: app \"shop\" did not drain in ")
            && line.contains("2 requests still in flight; it stays paused")
    });
    // It gave up no sooner than asked (how much later depends on the load).
    let waited = logged_seconds(&line, "did not drain in ");
    assert!(waited >= 0.3, "gave up after {waited} s: {line}");
    assert_status(port, "", PAUSED);
    assert_eq!(counters(port, "").in_flight, 2, "the status shows them too");

    // One client gives up: nginx ends its request, and it no longer counts.
    let mut working = working.into_iter();
    working.next().unwrap().close();
    wait_until(BOUND, "the closed request to be counted out", || {
        control(port, "enable?drain=10ms").text()
            == "Pause enabled, but 1 request still in flight.\n"
    });
    gated.open();
    finish_all_from_upstream(working.collect());
    // Already paused: the drain alone answers, 200 now that nothing runs.
    assert_answer(
        &control(port, "enable?drain=5s"),
        200,
        PAUSED,
        "a drain with nothing in flight",
    );
    nginx.stop();
}

/// Requests that finished before, in every way a request can finish, are no
/// longer counted; one sent through an internal redirect is counted once;
/// other apps' requests do not count.
#[test]
fn only_requests_still_running_count() {
    let gated = GatedUpstream::start();
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().workers(2).server(&format!(
        "{} {} {}
         location /missing {{ intermission; root {}/none; error_page 404 = /redirected; }}
         location /redirected {{ intermission; proxy_pass http://127.0.0.1:{}; }}
         location /blog {{ set $app_name blog; intermission; proxy_pass http://127.0.0.1:{}; }}
         location /down {{ intermission; proxy_pass http://127.0.0.1:1; }}",
        set_app_name("shop"),
        held_location("/", &upstream, ""),
        control_location(),
        PREFIX_MARK,
        upstream.port(),
        gated.port(),
    )));
    let port = nginx.port();
    for i in 0..20 {
        assert_passes(port, seq_request("/item/", i), "a plain request");
    }
    assert_from_upstream(
        &Request::get("/missing/page").send(port),
        "a request redirected by error_page",
    );
    assert_eq!(Request::get("/down").send(port).status, 502);
    // Another app's request stays in flight the whole time.
    let blog_request = Request::get("/blog/post").start(port);
    gated.wait_for(1);

    assert_answer(
        &control(port, "enable?drain=5s"),
        200,
        PAUSED,
        "a drain with nothing of the app in flight",
    );
    resume(port, "");
    gated.open();
    assert_from_upstream(&blog_request.finish(), "the other app's request");
    nginx.stop();
}

#[test]
fn a_drain_ends_with_409_when_the_pause_ends_first_and_a_client_may_give_up() {
    let (nginx, gated) = start_gated(1, "");
    let port = nginx.port();
    let working = in_flight(port, &gated, 1);

    let drain = control_request("GET", "enable?drain=30s").start(port);
    wait_until(BOUND, "the pause to begin", || {
        control(port, "status").text() == PAUSED
    });
    resume(port, "");
    assert_answer(
        &drain.finish(),
        409,
        "Pause ended before the app drained: 1 request in flight.\n",
        "a drain whose pause was disabled",
    );

    // A client that gives up on its drain: nginx ends the request and its
    // timer with it (a leftover timer would fire on freed memory).
    let drain = control_request("GET", "enable?drain=30s").start(port);
    wait_until(BOUND, "the pause to begin", || {
        control(port, "status").text() == PAUSED
    });
    drain.close();
    settle();
    assert_status(port, "", PAUSED);
    resume(port, "");
    gated.open();
    finish_all_from_upstream(working);
    assert_no_serious_lines(&nginx);
    // Graceful stop within its bound: no drain timer keeps the worker.
    nginx.stop();
}

#[test]
fn bad_drain_arguments_are_refused_naming_them() {
    let (nginx, _gated) = start_gated(1, "");
    let port = nginx.port();
    for (action, expected) in [
        (
            "enable?drain=0",
            "intermission: invalid \"drain\" argument \"0\", expected a time of more than 0 and at most a day, such as 30, 90s or 5m\n",
        ),
        (
            "enable?drain=soon",
            "intermission: invalid \"drain\" argument \"soon\", expected a time of more than 0 and at most a day, such as 30, 90s or 5m\n",
        ),
        (
            "enable?drain=1&drain=2",
            "intermission: the \"drain\" argument is given more than once\n",
        ),
        (
            "disable?drain=5",
            "intermission: the \"drain\" argument does not apply to disable\n",
        ),
    ] {
        assert_answer(&control(port, action), 400, expected, action);
    }
    assert_status(port, "", RESUMED);
    nginx.stop();
}

/// A request that was being let through as a pause began: it is counted in
/// flight before it looks whether its app was paused meanwhile, and the
/// pause flips before the drain reads the counts, so either the drain waits
/// for it or it is held; never "drained" while it goes upstream. The test
/// probe stops its worker for a while between the count and the look, with
/// the drain made by the other worker right then.
#[test]
fn a_drain_never_answers_while_a_request_that_slipped_past_the_pause_goes_upstream() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    let slipping = seq_request("/item/", 0)
        .header("X-Intermission-Test-Delay", "counted=800")
        .start(port);
    slipping.wait_read();
    // Its worker is asleep in the probe: the other answers the drain.
    let drain = control(port, "enable?drain=10s");
    assert_answer(&drain, 200, PAUSED, "the drain");
    wait_until(BOUND, "the request to be held or answered", || {
        counters(port, "").held_now == 1 || slipping.is_answered()
    });
    assert_eq!(
        upstream.count(),
        0,
        "a request went upstream after the drain answered"
    );
    resume(port, "");
    assert_from_upstream(&slipping.finish(), "released by the resume");
    nginx.stop();
}
