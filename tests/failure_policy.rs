//! When the module cannot do its job, one policy: never send to an app that
//! is paused (its upstream is under maintenance), never stand between a
//! running app and its users. A request of a paused app that cannot be held
//! (no memory, no release engine) is answered 503 with `Retry-After` and
//! counted (`unheld`). A panic is caught at the FFI edge, logged at
//! `alert`, counted (`internal_errors`), and the request answered by the
//! same policy: 503 while an app is paused, passed while none is; a control
//! call gets 500. The worker lives on. Debug builds reach these paths on
//! request (src/test_probe.rs).

mod common;

use common::*;

const PANIC_HEADER: &str = "X-Intermission-Test-Panic";

fn assert_panic_logged(nginx: &Nginx, at: &str, times: usize) {
    let needle =
        format!("intermission: internal error: panic asked for by the test header at \"{at}\"");
    wait_until(
        BOUND,
        &format!("{times} lines containing {needle:?}"),
        || {
            nginx
                .error_log()
                .lines()
                .filter(|line| line.contains("[alert]") && line.contains(&needle))
                .count()
                == times
        },
    );
}

#[test]
fn panics_are_answered_by_the_policy_logged_counted_and_the_workers_live_on() {
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let workers = nginx.worker_pids();

    // In the control endpoint.
    let response = control_request("GET", "enable")
        .header(PANIC_HEADER, "control")
        .send(port);
    assert_eq!(response.status, 500, "{response:?}");
    assert_panic_logged(&nginx, "control", 1);
    assert_status(port, "", RESUMED);

    // In the phase handler, while nothing is paused: it passes.
    let response = seq_request("/running/", 99)
        .header(PANIC_HEADER, "hold")
        .send(port);
    assert_from_upstream(&response, "a panic while nothing is paused");
    assert_panic_logged(&nginx, "hold", 1);

    // In the phase handler, while paused: 503, never the upstream.
    pause(port, "");
    let response = Request::get("/hold")
        .header(PANIC_HEADER, "hold")
        .send(port);
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.header("retry-after"), Some("5"), "{response:?}");
    assert_panic_logged(&nginx, "hold", 2);
    assert_eq!(upstream.count(), 1, "only the request sent while running");

    // In the wake-up of a released request: it gets its 503, and the
    // requests around it are released as usual.
    let held = vec![
        start_held(port, seq_request("/item/", 0)),
        start_held(port, seq_request("/item/", 1).header(PANIC_HEADER, "wake")),
        start_held(port, seq_request("/item/", 2)),
    ];
    assert_still_held(&held);
    resume(port, "");
    let answers: Vec<u16> = held.into_iter().map(|p| p.finish().status).collect();
    assert_eq!(answers, [200, 503, 200]);
    assert_panic_logged(&nginx, "wake", 1);
    assert_eq!(seqs(&upstream.wait_for(3)), [99, 0, 2]);
    assert_eq!(
        module_figure(port, "internal_errors"),
        4,
        "every panic counted"
    );

    assert_eq!(nginx.worker_pids(), workers, "no worker died");
    assert_passes(port, Request::get("/after"), "a request after the panics");
    nginx.stop();
}

/// Workers whose release engine did not start hold nothing: the requests of
/// a paused app are answered 503, counted, never sent upstream.
#[test]
fn without_a_release_engine_a_paused_apps_requests_are_answered_503_and_counted() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .main("env INTERMISSION_TEST_NO_ENGINE=1;")
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    assert_passes(port, seq_request("/item/", 0), "while running");
    pause(port, "");
    let response = Request::get("/item/1").send(port);
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.header("retry-after"), Some("5"), "{response:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&control(port, "status?format=json").body).unwrap();
    assert_eq!(json["unheld"], 1, "{json}");
    assert_eq!(json["held_now"], 0, "{json}");
    assert_eq!(upstream.count(), 1, "only the request sent while running");
    let metrics = control(port, "metrics").text();
    assert!(
        metrics.contains("\nintermission_unheld_total{app=\"shop\"} 1\n"),
        "{metrics}"
    );
    let entry = nginx.wait_for_access("the 503", |e| e.uri == "/item/1");
    assert_eq!(entry.outcome(), "unheld");
    nginx.wait_for_error_line("saying why", |l| {
        l.contains(
            "this worker's release engine did not start: a request of app \"shop\" is answered 503",
        )
    });
    nginx.stop();
}
