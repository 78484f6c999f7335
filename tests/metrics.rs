//! `.../metrics`: every app's state and counters in Prometheus' text format.

mod common;

use common::*;

fn metrics(port: u16) -> String {
    let response = control(port, "metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{response:?}"
    );
    response.text()
}

fn assert_series(text: &str, series: &str, value: u64) {
    let line = format!("{series} {value}");
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

#[test]
fn metrics_show_every_app_and_its_counters() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_per_query_server(&upstream)),
    );
    let port = nginx.port();
    let empty = metrics(port);
    assert!(
        empty
            .lines()
            .all(|line| line.starts_with('#') || !line.contains("{app=")),
        "no app yet, no app's series:\n{empty}"
    );
    assert_series(&empty, "intermission_internal_errors_total", 0);
    assert_series(&empty, "intermission_app_names_too_long_total", 0);
    assert!(
        empty.contains("# TYPE intermission_released_total counter"),
        "{empty}"
    );

    // "blog": paused, one request held and released.
    pause(port, "?app=blog");
    let released = start_held(port, Request::get("/?app=blog"));
    // nginx has read it; it is held once its worker has run its phases.
    wait_until(BOUND, "the blog request to be held", || {
        counters(port, "app=blog").held_now == 1
    });
    resume(port, "?app=blog");
    assert_from_upstream(&released.finish(), "released");
    // "shop": paused, two held now.
    pause(port, "?app=shop");
    let held = start_in_order(port, 2, |i| seq_request("/?app=shop&i=", i));
    // nginx has read them; they count once their worker has run their phases.
    wait_until(BOUND, "both to be held", || {
        counters(port, "app=shop").held_now == 2
    });

    let text = metrics(port);
    assert_series(&text, "intermission_paused{app=\"shop\"}", 1);
    assert_series(&text, "intermission_held{app=\"shop\"}", 2);
    assert_series(&text, "intermission_held_in_pause{app=\"shop\"}", 2);
    assert_series(&text, "intermission_paused{app=\"blog\"}", 0);
    assert_series(&text, "intermission_held{app=\"blog\"}", 0);
    assert_series(&text, "intermission_released_total{app=\"blog\"}", 1);
    assert_series(&text, "intermission_clients_gone_total{app=\"shop\"}", 0);

    resume(port, "?app=shop");
    finish_all_from_upstream(held);
    let text = metrics(port);
    assert_series(&text, "intermission_paused{app=\"shop\"}", 0);
    assert_series(&text, "intermission_released_total{app=\"shop\"}", 2);
    nginx.stop();
}
