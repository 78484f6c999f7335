//! A pause (enable or stop) that begins while a paced release is still
//! going holds the rest of that backlog again: nothing more reaches the
//! upstream until the next resume, which releases it oldest first.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

/// Holds `n` requests in order and starts a paced release at `rate` per
/// second; returns them once at least `started` reached the upstream.
fn paced_backlog(
    port: u16,
    upstream: &Upstream,
    n: usize,
    rate: u32,
    started: usize,
) -> Vec<Pending> {
    pause(port, "");
    let held = hold_in_order(port, n, |i| seq_request("/item/", i));
    let answer = control(port, &format!("disable?rate={rate}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    upstream.wait_for(started);
    held
}

#[test]
fn a_new_pause_holds_the_rest_of_a_paced_backlog_and_disable_releases_it_in_order() {
    const HELD: usize = 30;
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let held = paced_backlog(port, &upstream, HELD, 2, 2);

    pause(port, "");
    settle();
    let before = upstream.count();
    assert!(before < HELD, "the backlog was still going");
    // At 2 per second, a pace that went on would send several more here.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        upstream.count(),
        before,
        "nothing reaches the upstream during the new pause"
    );
    let figures = counters(port, "");
    assert_eq!(figures.state, "paused");
    assert_eq!(figures.held_now, (HELD - before) as u64, "{figures:?}");
    assert!(
        figures.held_in_pause >= (HELD - before) as u64,
        "the new pause counts the backlog it holds: {figures:?}"
    );

    // A plain disable releases all of the rest, oldest first.
    resume(port, "");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD);
    assert_eq!(seqs(&hits), (0..HELD).collect::<Vec<_>>(), "arrival order");
    nginx.stop();
}

#[test]
fn a_paced_release_after_the_new_pause_takes_the_old_backlog_first() {
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let mut held = paced_backlog(port, &upstream, 10, 5, 1);
    pause(port, "");
    settle();
    let before = upstream.count();
    // The new pause holds requests of its own, behind the old backlog.
    held.extend(hold_in_order(port, 5, |i| seq_request("/item/", 10 + i)));
    assert_eq!(counters(port, "").held_now, (15 - before) as u64);
    let answer = control(port, "disable?rate=50");
    assert_eq!(answer.status, 200, "{answer:?}");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(15);
    assert_eq!(
        seqs(&hits),
        (0..15).collect::<Vec<_>>(),
        "old backlog first"
    );
    nginx.stop();
}

#[test]
fn a_stop_during_a_paced_release_answers_the_rest_503() {
    const HELD: usize = 12;
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let held = paced_backlog(port, &upstream, HELD, 2, 1);
    assert_answer(&control(port, "stop"), 200, "Stopped.\n", "stop");
    settle();
    let reached = upstream.count();
    let mut stopped = 0;
    for pending in held {
        let response = pending.finish();
        match response.status {
            200 => {}
            503 => stopped += 1,
            _ => panic!("{response:?}"),
        }
    }
    assert_eq!(
        stopped,
        HELD - reached,
        "the rest of the backlog is answered 503"
    );
    assert_eq!(upstream.count(), reached);
    assert_eq!(counters(port, "").held_now, 0);
    resume(port, "");
    nginx.stop();
}
