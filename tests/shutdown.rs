//! Graceful shutdown (`nginx -s quit`) while requests are held: they are
//! answered 503 with `Retry-After` at once, through nginx's error handling,
//! and never reach the upstream; a reload, which retires workers the same
//! way, keeps holding instead (tests/reload.rs).

mod common;

use common::*;

const MAINTENANCE_PAGE: &str = "Back in a moment.\n";

/// The usual shop, with an `error_page 503` maintenance page.
fn shop_with_error_page(upstream: &Upstream, workers: usize) -> Config {
    let server = format!(
        "error_page 503 /maintenance.html; \
         location = /maintenance.html {{ root {PREFIX_MARK}; }} {}",
        app_server("shop", upstream, "")
    );
    Config::new()
        .workers(workers)
        .file("maintenance.html", MAINTENANCE_PAGE)
        .server(&server)
}

fn assert_refused_at_shutdown(pending: Vec<Pending>) {
    for p in pending {
        let what = p.describe().to_owned();
        let response = p.finish();
        assert_answer(&response, 503, MAINTENANCE_PAGE, &what);
        assert_eq!(
            response.header("retry-after"),
            Some("1"),
            "{what}: {response:?}"
        );
    }
}

#[test]
fn quit_answers_held_requests_503_at_once() {
    const HELD: usize = 40;
    let upstream = Upstream::start();
    let nginx = Nginx::start(shop_with_error_page(&upstream, 2));
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    assert_still_held(&held);

    quit(&nginx);
    assert_refused_at_shutdown(held);
    assert_eq!(upstream.count(), 0, "nothing may reach the upstream");
    let log = nginx.error_log();
    assert!(
        log.contains("intermission: nginx is shutting down: answering the"),
        "a line says what happened:\n{log}"
    );
    assert_eq!(
        serious_lines(&log),
        Vec::<&str>::new(),
        "nothing serious logged"
    );
    nginx.stop();
}

/// `nginx -s quit`, waiting until the master has exited. Held requests would
/// otherwise wait for `$intermission_max_time` (300 s by default): the wait
/// is bounded well below that.
fn quit(nginx: &Nginx) {
    // SAFETY: signalling the test's own child process.
    assert_eq!(unsafe { libc::kill(nginx.master_pid(), libc::SIGQUIT) }, 0);
    wait_until(BOUND, "nginx to exit after QUIT", || !nginx.is_running());
}

#[test]
fn after_a_reload_a_quit_answers_the_old_workers_requests_too() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(shop_with_error_page(&upstream, 2));
    let port = nginx.port();
    pause(port, "");
    let mut held = start_in_order(port, 10, |i| seq_request("/item/", i));
    let old_workers = nginx.reload();
    held.extend((10..20).map(|i| start_held(port, seq_request("/item/", i))));
    // The old workers keep holding across the reload...
    assert_still_held(&held);
    assert!(
        old_workers.iter().any(|&pid| is_alive(pid)),
        "old workers still hold requests"
    );
    // ...until nginx stops: then theirs are answered too, once the new
    // workers have gone.
    quit(&nginx);
    assert_refused_at_shutdown(held);
    assert_eq!(upstream.count(), 0);
    nginx.stop();
}

#[test]
fn counters_show_the_requests_refused_at_shutdown() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(shop_with_error_page(&upstream, 1));
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, 5, |i| seq_request("/item/", i));
    wait_until(BOUND, "the five to be held", || {
        counters(port, "").held_now == 5
    });
    assert_eq!(counters(port, "").refused_at_shutdown, 0);
    quit(&nginx);
    assert_refused_at_shutdown(held);
    nginx.stop();
}
