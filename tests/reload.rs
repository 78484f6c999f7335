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
