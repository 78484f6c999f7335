//! What passes while paused: health checks, /up, privileged user agents,
//! locations with `intermission off`; and everything when not paused.

mod common;

use common::*;

const HEALTH_SETTINGS: &str = "set $intermission_health_check_path /up/database; \
     set $intermission_privileged_user_agent \"Pingdom\"; \
     set $intermission_interval 50;";

/// The default app (no $app_name) with the health-check settings on `/`.
fn start_default_app() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = format!(
        "{} {}",
        held_location("/", &upstream, HEALTH_SETTINGS),
        control_location()
    );
    let nginx = Nginx::start(Config::new().server(&server));
    (nginx, upstream)
}

#[test]
fn everything_passes_while_not_paused() {
    let (nginx, upstream) = start_default_app();
    let port = nginx.port();
    assert_passes(port, Request::get("/"), "/");
    assert_passes(port, Request::get("/some/page?x=1"), "/some/page");
    pause(port, "");
    resume(port, "");
    assert_passes(port, Request::get("/after"), "/after a pause ended");
    assert_eq!(upstream.count(), 3);
    nginx.stop();
}

#[test]
fn health_checks_and_privileged_agents_pass_while_paused() {
    let (nginx, upstream) = start_default_app();
    let port = nginx.port();
    pause(port, "");

    assert_passes(port, Request::get("/up/database"), "the health-check path");
    assert_passes(port, Request::get("/up"), "/up");
    let bot = Request::get("/").header(
        "User-Agent",
        "Mozilla/5.0 (compatible; Pingdom.com_bot_version_1.4)",
    );
    assert_passes(port, bot, "a privileged user agent");
    assert_eq!(upstream.count(), 3);
    assert_status(port, "", PAUSED);

    // Near misses are held like any request.
    let held: Vec<Pending> = [
        Request::get("/"),
        Request::get("/up/database/x"),
        Request::get("/up/"),
        Request::get("/").header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"),
    ]
    .iter()
    .map(|request| request.start(port))
    .collect();
    wait_all_read(&held);
    assert_still_held(&held);
    assert_eq!(upstream.count(), 3);

    resume(port, "");
    finish_all_from_upstream(held);
    upstream.wait_for(7);
    nginx.stop();
}

/// `intermission` at http level is inherited by servers and locations, and
/// `intermission off` in a location overrides it.
#[test]
fn intermission_off_overrides_an_inherited_on() {
    let upstream = Upstream::start();
    let server = format!(
        "{} {} location {CONTROL} {{ intermission off; allow 127.0.0.1; deny all; intermission_control; }}",
        plain_location("/free/", &upstream, "intermission off;"),
        plain_location("/held/", &upstream, ""),
    );
    let nginx = Nginx::start(Config::new().http("intermission on;").server(&server));
    let port = nginx.port();
    pause(port, "");

    assert_passes(
        port,
        Request::get("/free/page"),
        "a location with intermission off",
    );
    let held = start_held(port, Request::get("/held/page"));
    assert_still_held([&held]);
    assert_eq!(upstream.count(), 1);

    resume(port, "");
    assert_from_upstream(&held.finish(), "released");
    nginx.stop();
}

/// The control endpoint answers while paused even when `intermission` is
/// inherited from the server level, so a pause can always be ended.
#[test]
fn the_control_endpoint_is_never_held() {
    let upstream = Upstream::start();
    let server = format!(
        "intermission; {} {}",
        plain_location("/", &upstream, ""),
        control_location()
    );
    let nginx = Nginx::start(Config::new().server(&server));
    let port = nginx.port();
    pause(port, "");
    let held = start_held(port, Request::get("/page"));
    assert_still_held([&held]);
    assert_status(port, "", PAUSED);
    resume(port, "");
    assert_from_upstream(&held.finish(), "released");
    nginx.stop();
}
