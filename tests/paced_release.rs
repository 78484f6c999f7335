//! `.../disable?rate=N`: the app runs again at once, and the requests its
//! pause held are released at most N per second across all workers, oldest
//! first, so a freshly promoted database is not hit by the whole queue.

mod common;

use std::time::Duration;

use common::*;

/// Arrivals at the upstream in any one-second window, at most.
fn most_in_one_second(hits: &[Hit]) -> usize {
    let mut times: Vec<_> = hits.iter().map(|h| h.at).collect();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t.duration_since(times[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_paced_release_goes_oldest_first_at_the_rate_and_new_requests_pass() {
    const HELD: usize = 40;
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });

    resume(port, "?rate=20");
    nginx.wait_for_error_line("about the paced release", |line| {
        line.contains(&format!(
            "intermission: app \"shop\" resumed, the pause held {HELD} requests, releasing them at 20 per second"
        ))
    });
    // The app runs: a new request does not wait for the backlog.
    upstream.wait_for(1);
    assert_passes(
        port,
        seq_request("/new/", 1_000),
        "a request during the paced release",
    );
    assert_status(port, "", RESUMED);

    finish_all_from_upstream(held);
    let hits: Vec<Hit> = upstream
        .wait_for(HELD + 1)
        .into_iter()
        .filter(|h| h.path.starts_with("/item/"))
        .collect();
    assert_eq!(seqs(&hits), (0..HELD).collect::<Vec<_>>(), "oldest first");
    let spread = hits.last().unwrap().at.duration_since(hits[0].at);
    // 40 at 20 per second: the first at once, the last after 39/20 s.
    assert!(
        spread >= Duration::from_millis(1_800),
        "released over {spread:?}"
    );
    assert!(
        most_in_one_second(&hits) <= 21 + 1,
        "{} in one second",
        most_in_one_second(&hits)
    );
    nginx.stop();
}

#[test]
fn two_workers_share_the_rate_and_a_plain_disable_releases_the_rest() {
    const HELD: usize = 60;
    let upstream = Upstream::start();
    let nginx = start_shop_for_thousands(&upstream);
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });
    resume(port, "?rate=10");
    upstream.wait_for(12);
    let first_second = most_in_one_second(&upstream.hits());
    assert!(
        first_second <= 11 + 2,
        "{first_second} in one second across both workers"
    );
    // The rest at once.
    resume(port, "");
    nginx.wait_for_error_line("about the rest", |line| {
        line.contains("intermission: app \"shop\" releases the rest of its paced backlog at once")
    });
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD);
    assert_each_seq_once(&hits, HELD);
    assert_ordered_per_worker(&hits);
    assert_eq!(
        control(port, "disable").status,
        304,
        "nothing left to release"
    );
    nginx.stop();
}

#[test]
fn clients_leaving_the_backlog_do_not_stop_it() {
    const HELD: usize = 12;
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    pause(port, "");
    let mut held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });
    // The four oldest leave before the release.
    for pending in held.drain(..4) {
        pending.close();
    }
    wait_until(BOUND, "the four to be counted out", || {
        counters(port, "").clients_gone == 4
    });
    resume(port, "?rate=4");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD - 4);
    assert_eq!(seqs(&hits), (4..HELD).collect::<Vec<_>>());
    nginx.stop();
}

#[test]
fn bad_rates_are_refused_naming_the_argument() {
    let (nginx, _upstream) = start_shop(1, "");
    let port = nginx.port();
    pause(port, "");
    for (action, expected) in [
        ("disable?rate=0", "intermission: invalid \"rate\" argument \"0\", expected a whole number of requests per second from 1 to 1000000\n"),
        ("disable?rate=fast", "intermission: invalid \"rate\" argument \"fast\", expected a whole number of requests per second from 1 to 1000000\n"),
        ("disable?rate=5&rate=6", "intermission: the \"rate\" argument is given more than once\n"),
        ("enable?rate=5", "intermission: the \"rate\" argument does not apply to Enable\n"),
    ] {
        assert_answer(&control(port, action), 400, expected, action);
    }
    assert_status(port, "", PAUSED);
    resume(port, "");
    nginx.stop();
}
