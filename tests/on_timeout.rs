//! `$intermission_on_timeout`: what a request held for its whole
//! `$intermission_max_time` gets while its app is still paused: `pass` (the
//! default, on to the upstream), or a 503 or 504 through nginx's error
//! handling, so an error page is shown instead.

mod common;

use common::*;

const SORRY_PAGE: &str = "Still busy, try again soon.\n";

fn start(on_timeout: &str) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = format!(
        "error_page 503 504 /sorry.html; \
         location = /sorry.html {{ root {PREFIX_MARK}; }} {} {}",
        app_server("shop", &upstream, ""),
        held_location(
            "/short/",
            &upstream,
            &format!(
                "set $intermission_max_time 500ms; set $intermission_on_timeout \"{on_timeout}\";"
            )
        )
    );
    let nginx = Nginx::start(Config::new().file("sorry.html", SORRY_PAGE).server(&server));
    (nginx, upstream)
}

fn assert_timed_out_with(status: u16, retry_after: Option<&str>) {
    let (nginx, upstream) = start(&status.to_string());
    let port = nginx.port();
    pause(port, "");
    let response = seq_request("/short/", 0).send(port);
    assert_answer(&response, status, SORRY_PAGE, "held past its max_time");
    assert_eq!(response.header("retry-after"), retry_after, "{response:?}");
    assert_eq!(upstream.count(), 0, "it never reached the upstream");
    nginx.wait_for_error_line("warning of the timeout", |line| {
        line.contains("[warn]")
            && line.contains(&format!(
                "its $intermission_max_time, is answered {status} while app \"shop\" is still paused"
            ))
    });
    let figures = counters(port, "");
    assert_eq!((figures.timed_out, figures.held_now), (1, 0), "{figures:?}");
    assert_status(port, "", PAUSED);
    resume(port, "");
    nginx.stop();
}

#[test]
fn on_timeout_503_answers_503_with_retry_after() {
    assert_timed_out_with(503, Some("5"));
}

#[test]
fn on_timeout_504_answers_504() {
    assert_timed_out_with(504, None);
}

#[test]
fn an_invalid_on_timeout_is_logged_and_passes() {
    let (nginx, upstream) = start("drop");
    let port = nginx.port();
    pause(port, "");
    assert_from_upstream(
        &seq_request("/short/", 0).send(port),
        "held past its max_time, with the default",
    );
    nginx.wait_for_error_line("about the invalid value", |line| {
        line.contains("[warn]")
            && line.contains("intermission: invalid $intermission_on_timeout \"drop\" (not \"pass\", \"503\" or \"504\"), using \"pass\"")
    });
    assert_eq!(upstream.count(), 1);
    resume(port, "");
    nginx.stop();
}
