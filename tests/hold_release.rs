//! Holding requests while paused and releasing them, in arrival order, on
//! disable; clients that give up; max_time.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

/// Holds `n` requests sent in a known order, releases them, and returns what
/// the upstream saw.
fn hold_and_release_in_order(nginx: &Nginx, upstream: &Upstream, n: usize) -> Vec<Hit> {
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, n, |i| seq_request("/item/", i));
    release_all(nginx, upstream, held)
}

/// Checks that `held` are held, resumes, and returns what the upstream saw
/// once each of them has been answered by it exactly once.
fn release_all(nginx: &Nginx, upstream: &Upstream, held: Vec<Pending>) -> Vec<Hit> {
    let n = held.len();
    assert_still_held(&held);
    assert_eq!(
        upstream.count(),
        0,
        "no request may reach the upstream while paused"
    );

    resume(nginx.port(), "");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(n);
    wait_for_held_count(nginx, n);
    settle();
    assert_eq!(upstream.count(), n, "a request reached the upstream twice");
    hits
}

#[test]
fn one_worker_releases_in_arrival_order() {
    let (nginx, upstream) = start_shop(1, "");
    let hits = hold_and_release_in_order(&nginx, &upstream, 20);
    assert_eq!(
        seqs(&hits),
        (0..20).collect::<Vec<_>>(),
        "upstream accept order must be arrival order"
    );
    nginx.stop();
}

#[test]
fn four_workers_release_in_arrival_order_per_worker() {
    let (nginx, upstream) = start_shop(4, "");
    let hits = hold_and_release_in_order(&nginx, &upstream, 200);
    assert_each_seq_once(&hits, 200);
    assert_ordered_per_worker(&hits);
    let spread: Vec<usize> = seqs_by_worker(&hits).values().map(Vec::len).collect();
    eprintln!("requests per worker: {spread:?}");
    nginx.stop();
}

#[test]
fn a_thousand_held_requests_are_all_released_once() {
    const N: usize = 1000;
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    pause(port, "");
    let held: Vec<Pending> = (0..N)
        .map(|i| seq_request("/item/", i).start(port))
        .collect();
    wait_all_read(&held);
    let hits = release_all(&nginx, &upstream, held);
    assert_each_seq_once(&hits, N);
    nginx.stop();
}

/// Every released request needs an upstream connection while its client's
/// is still open. With 300 held and 400 worker_connections, releasing all at
/// once would need 600 and nginx would answer the last ones 500 ("worker
/// connections are not enough"); the release goes in batches within the free
/// connections, so every one gets its upstream answer, still in order.
#[test]
fn a_release_larger_than_the_free_connections_loses_nothing() {
    const N: usize = 300;
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .worker_connections(400)
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, N, |i| seq_request("/item/", i));
    wait_all_read(&held);
    let hits = release_all(&nginx, &upstream, held);
    assert_eq!(
        seqs(&hits),
        (0..N).collect::<Vec<_>>(),
        "upstream accept order"
    );
    assert!(
        !nginx
            .error_log()
            .contains("worker_connections are not enough"),
        "a release ran out of connections:\n{}",
        nginx.error_log()
    );
    nginx.stop();
}

/// Clients that leave (first, middle and last in the queue) are finalized
/// at once with 499; the others are still released in order.
#[test]
fn clients_that_leave_get_499_and_do_not_delay_the_others() {
    const LEAVING: [usize; 3] = [0, 3, 7];
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    pause(port, "");
    let (leaving, held): (Vec<_>, Vec<_>) = start_in_order(port, 8, |i| seq_request("/item/", i))
        .into_iter()
        .enumerate()
        .partition(|(i, _)| LEAVING.contains(i));
    for (_, pending) in leaving {
        pending.close();
    }

    // Finalized at once, while still paused.
    for i in LEAVING {
        let uri = format!("/item/{i}");
        nginx.wait_for_access(&format!("499 for {uri}"), |e| {
            e.status == 499 && e.uri == uri
        });
    }
    let held: Vec<Pending> = held.into_iter().map(|(_, pending)| pending).collect();
    assert_still_held(&held);
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    finish_all_from_upstream(held);
    upstream.wait_for(5);
    settle();
    assert_eq!(
        seqs(&upstream.hits()),
        [1, 2, 4, 5, 6],
        "the others, in order; never one that left"
    );
    nginx.stop();
}

/// A disable followed at once by an enable: whatever the first pause held
/// that had not gone yet (a worker may look only after the second pause
/// began) is held by the second pause, since a pause lets nothing through;
/// the next disable releases it with the second pause's requests, each
/// exactly once.
#[test]
fn disable_then_enable_at_once_holds_what_had_not_gone_until_the_next_disable() {
    let (nginx, upstream) = start_shop(4, "");
    let port = nginx.port();
    pause(port, "");
    let mut held = start_in_order(port, 6, |i| seq_request("/item/", i));
    resume(port, "");
    pause(port, "");
    settle();
    let gone = upstream.count();
    held.extend(start_in_order(port, 2, |i| seq_request("/item/", 6 + i)));
    settle();
    assert_eq!(
        upstream.count(),
        gone,
        "nothing reaches the upstream during the second pause"
    );
    wait_until(BOUND, "the rest to be counted as held", || {
        counters(port, "").held_now == (8 - gone) as u64
    });
    resume(port, "");
    finish_all_from_upstream(held);
    assert_each_seq_once(&upstream.wait_for(8), 8);
    settle();
    assert_eq!(upstream.count(), 8);
    nginx.stop();
}

/// `/short/` has a max_time of 1 s, `/` the default: the short one passes
/// while paused, ahead of an older request that stays held.
#[test]
fn max_time_lets_a_request_through_while_still_paused() {
    let upstream = Upstream::start();
    let server = format!(
        "{} {}",
        app_server("shop", &upstream, ""),
        held_location("/short/", &upstream, "set $intermission_max_time 1;")
    );
    let nginx = Nginx::start(Config::new().server(&server));
    let port = nginx.port();
    pause(port, "");
    let older = start_held(port, seq_request("/item/", 0));
    let short = seq_request("/short/", 1).start(port);
    assert_from_upstream(&short.finish(), "a request held past its max_time");
    assert_status(port, "", PAUSED);
    nginx.wait_for_error_line(
        "warning that max_time released a held request of shop",
        |line| {
            line.contains("[warn]")
                && line.contains("intermission")
                && (line.contains("max_time") || line.contains("held"))
                && line.contains("shop")
        },
    );
    assert_still_held([&older]);
    assert_eq!(seqs(&upstream.hits()), [1]);

    resume(port, "");
    assert_from_upstream(&older.finish(), "released by disable");
    nginx.stop();
}

/// Requests held by one pause are released by its disable; the next pause
/// holds anew.
#[test]
fn a_second_pause_holds_again() {
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    for round in 0..2 {
        pause(port, "");
        let held = start_in_order(port, 3, |i| seq_request("/item/", 3 * round + i));
        assert_still_held(&held);
        assert_eq!(
            upstream.count(),
            4 * round,
            "round {round}: nothing new reaches the upstream while paused"
        );
        resume(port, "");
        finish_all_from_upstream(held);
        assert_passes(
            port,
            seq_request("/after/", 100 + round),
            "a request after the pause",
        );
    }
    assert_eq!(upstream.wait_for(8).len(), 8);
    nginx.stop();
}

/// A held request keeps its body: nginx reads it only once released.
#[test]
fn a_held_request_keeps_its_body() {
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let body: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    pause(port, "");
    let held = start_held(
        port,
        Request::new("POST", "/form")
            .header("X-Seq", "0")
            .body(body.clone()),
    );
    assert_still_held([&held]);
    assert_eq!(upstream.count(), 0);
    resume(port, "");
    assert_from_upstream(&held.finish(), "the POST, released");
    let hits = upstream.wait_for(1);
    assert_eq!(hits[0].body, body, "the upstream gets the whole body");
    nginx.stop();
}

/// A bad $intermission_max_time logs a warning and the default (300 s) applies:
/// the request is still held after 2 s and disable releases it.
fn bad_max_time_falls_back_to_default(value: &str) {
    let (nginx, upstream) = start_shop(1, &format!("set $intermission_max_time \"{value}\";"));
    let port = nginx.port();
    pause(port, "");
    let pending = start_held(port, seq_request("/item/", 0));
    nginx.wait_for_error_line(&format!("warning about max_time {value:?}"), |line| {
        line.contains("[warn]") && line.contains("max_time")
    });
    thread::sleep(Duration::from_secs(2));
    assert_still_held([&pending]);
    assert_eq!(upstream.count(), 0);
    resume(port, "");
    assert_from_upstream(&pending.finish(), "released by disable");
    nginx.stop();
}

#[test]
fn non_numeric_max_time_falls_back_to_default() {
    bad_max_time_falls_back_to_default("abc");
}

#[test]
fn negative_max_time_falls_back_to_default() {
    bad_max_time_falls_back_to_default("-5");
}
