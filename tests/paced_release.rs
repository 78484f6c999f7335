//! `.../disable?rate=N`: the app runs again at once, and the requests its
//! pause held are released at most N per second across all workers, oldest
//! first, so a freshly promoted database is not hit by the whole queue.

mod common;

use common::*;

/// Stamps each request nginx proxies with nginx's clock as it leaves for the
/// upstream (`$msec`): when the worker released it, in the clock the pace is
/// kept by. The upstream's own arrival times would count the test process's
/// scheduling too: on a loaded machine its thread may read a second's worth
/// of requests in one burst.
const STAMP: &str = "proxy_set_header X-Released $msec;";

/// When nginx released the request, in milliseconds (from `X-Released`).
fn released_ms(hit: &Hit) -> u64 {
    let stamp = hit
        .header("x-released")
        .unwrap_or_else(|| panic!("no X-Released: {hit:?}"));
    let (seconds, millis) = stamp
        .split_once('.')
        .unwrap_or_else(|| panic!("bad $msec {stamp:?}"));
    let number = |text: &str| -> u64 {
        text.parse()
            .unwrap_or_else(|_| panic!("bad $msec {stamp:?}"))
    };
    number(seconds) * 1_000 + number(millis)
}

/// Releases in any one-second window of nginx's clock, at most.
fn most_in_one_second(hits: &[Hit]) -> usize {
    let mut times: Vec<u64> = hits.iter().map(released_ms).collect();
    times.sort_unstable();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t - times[i] < 1_000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_paced_release_goes_oldest_first_at_the_rate_and_new_requests_pass() {
    const HELD: usize = 40;
    let (nginx, upstream) = start_shop(1, STAMP);
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
    let spread = released_ms(hits.last().unwrap()) - released_ms(&hits[0]);
    // 40 at 20 per second: the first at once, the last after 39/20 s.
    assert!(spread >= 1_800, "released over {spread} ms");
    // 21 fit in one second (its first and last turns); turns a busy worker
    // missed are made up 50 ms' worth at a time, one more; and a stamp has
    // millisecond resolution. All at once would be 40.
    assert!(
        most_in_one_second(&hits) <= 21 + 2,
        "{} in one second",
        most_in_one_second(&hits)
    );
    nginx.stop();
}

#[test]
fn two_workers_share_the_rate_and_a_plain_disable_releases_the_rest() {
    const HELD: usize = 60;
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_server("shop", &upstream, STAMP)),
    );
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });
    resume(port, "?rate=10");
    upstream.wait_for(12);
    // 11 fit in one second; made-up turns and the stamps' resolution, one
    // more each; the two workers' clocks, one more. All at once would be 60.
    let first_second = most_in_one_second(&upstream.hits());
    assert!(
        first_second <= 11 + 3,
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
        ("enable?rate=5", "intermission: the \"rate\" argument does not apply to enable\n"),
    ] {
        assert_answer(&control(port, action), 400, expected, action);
    }
    assert_status(port, "", PAUSED);
    resume(port, "");
    nginx.stop();
}

/// A paced release that lasts past the deadline its pause had: the old
/// deadline is no reason to look any more (the worker once kept re-arming
/// its timer for it, in the past, and spun forever in the middle of the
/// release), and the release keeps its pace to the end.
#[test]
fn a_paced_release_that_outlasts_the_pauses_deadline_keeps_its_pace_and_no_worker_spins() {
    const HELD: usize = 12;
    let (nginx, upstream) = start_shop(1, STAMP);
    let port = nginx.port();
    pause(port, "?ttl=1s");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });
    // Six per second: the last goes about two seconds after the resume,
    // well past the pause's deadline.
    resume(port, "?rate=6");
    finish_all_from_upstream(held);
    let hits = upstream.wait_for(HELD);
    assert_each_seq_once(&hits, HELD);
    assert!(
        most_in_one_second(&hits) <= 6 + 1,
        "at most the rate in any second"
    );
    nginx.assert_not_spinning();
    assert_no_serious_lines(&nginx);
    nginx.stop();
}
