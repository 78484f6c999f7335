//! The pause and the held requests survive `nginx -s reload`.

mod common;

use common::*;

#[test]
fn held_requests_survive_a_reload_and_are_released_by_new_workers() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .http("intermission_zone 1m;")
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    let mut held = start_in_order(port, 8, |i| seq_request("/item/", i));

    let old_workers = nginx.reload();
    // From here on only new workers accept connections.
    assert_status(port, "", PAUSED);
    let late = start_held(port, seq_request("/item/", 8));
    held.push(late);
    assert_still_held(&held);
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(9);
    wait_for_held_count(&nginx, 9);
    settle();
    assert_eq!(upstream.count(), 9, "a request reached the upstream twice");
    assert_each_seq_once(&hits, 9);
    assert_ordered_per_worker(&hits);

    // With nothing left to hold, the old workers finish their graceful exit.
    wait_until(BOUND, "old workers to exit", || {
        old_workers.iter().all(|&pid| !is_alive(pid))
    });
    assert_status(port, "", RESUMED);
    nginx.stop();
}

/// 2,000 held requests through five reloads, with new requests held by each
/// new generation of workers: every one reaches the upstream exactly once,
/// in arrival order within each worker, once the pause is disabled.
#[test]
fn two_thousand_held_requests_survive_five_reloads() {
    const HELD: usize = 2_000;
    const RELOADS: usize = 5;
    const PER_RELOAD: usize = 10;
    let upstream = Upstream::start();
    let nginx = start_shop_for_thousands(&upstream);
    let port = nginx.port();
    pause(port, "");
    let mut held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    let mut retired = Vec::new();
    for reload in 0..RELOADS {
        retired.extend(nginx.reload());
        let first = HELD + reload * PER_RELOAD;
        held.extend(
            (first..first + PER_RELOAD).map(|i| start_held(port, seq_request("/item/", i))),
        );
        assert_status(port, "", PAUSED);
    }
    let total = held.len();
    assert_eq!(total, HELD + RELOADS * PER_RELOAD);
    assert_still_held(&held[held.len() - PER_RELOAD..]);
    assert!(
        held.iter().all(|p| !p.is_answered()),
        "nothing is answered while paused"
    );
    assert_eq!(upstream.count(), 0);
    // With several workers a request nginx has read may not be counted yet
    // (see `hold_in_order`).
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == total as u64
    });

    resume(port, "");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(total);
    settle();
    assert_eq!(
        upstream.count(),
        total,
        "a request reached the upstream twice"
    );
    assert_each_seq_once(&hits, total);
    assert_ordered_per_worker(&hits);
    let after = counters(port, "");
    assert_eq!(
        (after.held_now, after.released),
        (0, total as u64),
        "{after:?}"
    );
    wait_until(BOUND, "retired workers to exit", || {
        retired.iter().all(|&pid| !is_alive(pid))
    });
    nginx.stop();
}

/// A reload that changes the zone's size starts a new, empty zone: the pause
/// does not carry over, and the old workers, whose zone nobody uses any
/// more, answer what they hold 503 instead of holding it to its maximum time.
#[test]
fn a_reload_onto_a_new_zone_answers_the_old_workers_requests() {
    let upstream = Upstream::start();
    let server = app_server("shop", &upstream, "");
    let nginx = Nginx::start(Config::new().http("intermission_zone 1m;").server(&server));
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, 4, |i| seq_request("/item/", i));
    assert_still_held(&held);

    nginx.rewrite_config(Config::new().http("intermission_zone 2m;").server(&server));
    nginx.reload();
    for p in held {
        let what = p.describe().to_owned();
        assert_eq!(p.finish().status, 503, "{what}");
    }
    assert_status(port, "", RESUMED);
    assert_passes(port, Request::get("/after"), "a request after the reload");
    nginx.stop();
}

/// With `worker_shutdown_timeout`, nginx closes every connection of a
/// retired worker once it has been shutting down that long: the old
/// workers answer what they still hold 503 with `Retry-After` a little
/// before, instead of letting their clients see a closed connection.
#[test]
fn old_workers_answer_before_worker_shutdown_timeout_closes_their_connections() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .main("worker_shutdown_timeout 2s;")
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, 6, |i| seq_request("/item/", i));
    let old_workers = nginx.reload();
    // Held across the reload, as always: longer than a moment.
    assert_still_held(&held);
    for p in held {
        let what = p.describe().to_owned();
        let response = p.finish();
        assert_eq!(response.status, 503, "{what}: {response:?}");
        assert_eq!(response.header("retry-after"), Some("1"), "{what}");
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    nginx.wait_for_error_line("saying why", |line| {
        line.contains("worker_shutdown_timeout (2.000 s) is near: answering the")
    });
    wait_until(BOUND, "the old workers to exit", || {
        old_workers.iter().all(|&pid| !is_alive(pid))
    });
    // The new workers hold on.
    let late = start_held(port, seq_request("/item/", 6));
    assert_still_held([&late]);
    resume(port, "");
    assert_from_upstream(&late.finish(), "held by a new worker");
    assert_no_serious_lines(&nginx);
    nginx.stop();
}
