//! The control endpoint: status/enable/disable, 304s, 404, 405, access rules.

mod common;

use std::net::Ipv4Addr;

use common::*;

fn assert_not_modified(response: &Response, what: &str) {
    assert_eq!(response.status, 304, "{what}: {response:?}");
    assert!(
        response.body.is_empty(),
        "{what}: a 304 has no body: {response:?}"
    );
}

/// Every row of the control table, with one HTTP method.
fn walk_control_table(method: &str) {
    let (nginx, _upstream) = start_shop(1, "");
    let call = |action: &str| control_request(method, action).send(nginx.port());

    assert_answer(&call("status"), 200, RESUMED, "status before any pause");
    assert_answer(&call("enable"), 200, PAUSED, "enable");
    assert_answer(&call("status"), 200, PAUSED, "status while paused");
    assert_not_modified(&call("enable"), "enable while paused");
    assert_answer(&call("status"), 200, PAUSED, "status after a second enable");
    assert_answer(&call("disable"), 200, RESUMED, "disable");
    wait_for_held_count(&nginx, 0);
    assert_answer(&call("status"), 200, RESUMED, "status after disable");
    assert_not_modified(&call("disable"), "disable while not paused");
    // A second pause cycle behaves like the first.
    assert_answer(&call("enable"), 200, PAUSED, "enable again");
    assert_answer(&call("disable"), 200, RESUMED, "disable again");
    nginx.stop();
}

#[test]
fn control_table_with_get() {
    walk_control_table("GET");
}

#[test]
fn control_table_with_post() {
    walk_control_table("POST");
}

#[test]
fn head_status_answers_200_without_body() {
    let (nginx, _upstream) = start_shop(1, "");
    let response = control_request("HEAD", "status").send(nginx.port());
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.is_empty(), "HEAD has no body: {response:?}");
    assert_status(nginx.port(), "", RESUMED);
    nginx.stop();
}

#[test]
fn unknown_action_is_404_and_changes_nothing() {
    let (nginx, _upstream) = start_shop(1, "");
    let port = nginx.port();
    for target in [
        "/_intermission/pause",
        "/_intermission/enablex",
        "/_intermission/",
        "/_intermission",
        "/_intermission/enable/more",
    ] {
        let response = Request::get(target).send(port);
        assert_eq!(response.status, 404, "{target}: {response:?}");
    }
    assert_status(port, "", RESUMED);
    nginx.stop();
}

#[test]
fn other_methods_are_405_and_change_nothing() {
    let (nginx, _upstream) = start_shop(1, "");
    let port = nginx.port();
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        for action in ["enable", "status"] {
            let response = control_request(method, action).send(port);
            assert_eq!(response.status, 405, "{method} {action}: {response:?}");
        }
    }
    assert_status(port, "", RESUMED);
    nginx.stop();
}

/// The control endpoint is a content handler: nginx's allow/deny runs first.
/// A client outside the allowed addresses can neither pause nor release.
#[test]
fn outsiders_can_neither_pause_nor_release() {
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let outsider = |action: &str| {
        control_request("GET", action)
            .source_address(Ipv4Addr::new(127, 0, 0, 2))
            .send(port)
    };
    assert_eq!(outsider("enable").status, 403);
    assert_status(port, "", RESUMED);

    pause(port, "");
    let held = start_held(port, seq_request("/item/", 0));
    for action in ["disable", "status", "enable"] {
        assert_eq!(outsider(action).status, 403, "{action}");
    }
    assert_still_held([&held]);
    assert_status(port, "", PAUSED);
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    finish_all_from_upstream(vec![held]);
    nginx.stop();
}

/// `auth_basic` on the control location, with `satisfy all` and the address
/// rules: only the right credentials from an allowed address get through.
#[test]
fn auth_basic_guards_the_control_endpoint() {
    let upstream = Upstream::start();
    let control = format!(
        "location {CONTROL} {{ satisfy all; allow 127.0.0.1; deny all; \
         auth_basic \"intermission\"; auth_basic_user_file {PREFIX_MARK}/htpasswd; \
         intermission_control; }}"
    );
    let server = format!(
        "{} {} {control}",
        set_app_name("shop"),
        held_location("/", &upstream, "")
    );
    let nginx = Nginx::start(
        Config::new()
            .file("htpasswd", "ops:{PLAIN}s3cret\n")
            .server(&server),
    );
    let port = nginx.port();
    // base64 of "ops:s3cret" and "ops:wrong".
    let right = "Basic b3BzOnMzY3JldA==";
    let wrong = "Basic b3BzOndyb25n";

    let call = |action: &str, credentials: &str, from: [u8; 4]| {
        control_request("GET", action)
            .header("Authorization", credentials)
            .source_address(Ipv4Addr::from(from))
            .send(port)
    };
    const INSIDE: [u8; 4] = [127, 0, 0, 1];

    let anonymous = control_request("GET", "enable").send(port);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(
        anonymous.header("www-authenticate").is_some(),
        "{anonymous:?}"
    );
    assert_eq!(call("enable", wrong, INSIDE).status, 401);
    assert_eq!(
        call("enable", right, [127, 0, 0, 2]).status,
        403,
        "from outside"
    );
    assert_answer(
        &call("status", right, INSIDE),
        200,
        RESUMED,
        "nothing was paused",
    );

    assert_answer(
        &call("enable", right, INSIDE),
        200,
        PAUSED,
        "the operator pauses",
    );
    assert_eq!(call("disable", wrong, INSIDE).status, 401);
    assert_answer(
        &call("disable", right, INSIDE),
        200,
        RESUMED,
        "the operator resumes",
    );
    nginx.stop();
}

/// The state lives in shared memory: whichever worker answers agrees.
#[test]
fn all_workers_agree_on_the_state() {
    let (nginx, _upstream) = start_shop(4, "");
    let port = nginx.port();
    pause(port, "");
    for _ in 0..40 {
        assert_status(port, "", PAUSED);
    }
    resume(port, "");
    for _ in 0..40 {
        assert_status(port, "", RESUMED);
    }
    nginx.stop();
}

/// Every answer of the control endpoint carries the module's marker, with
/// its version, error pages included (the ops command line tells the
/// endpoint from a site's URL or a proxy's own error by it); the app's own
/// locations do not.
#[test]
fn every_control_answer_carries_the_modules_marker() {
    let (nginx, _upstream) = start_shop(1, "");
    let port = nginx.port();
    let version = env!("CARGO_PKG_VERSION");
    for (method, action, status) in [
        ("GET", "status", 200),
        ("GET", "status?format=json", 200),
        ("POST", "enable", 200),
        ("POST", "enable", 304),
        ("GET", "pause", 404),
        ("DELETE", "status", 405),
        ("GET", "status?format=xml", 400),
        ("GET", "metrics", 200),
        ("POST", "disable", 200),
    ] {
        let response = control_request(method, action).send(port);
        assert_eq!(response.status, status, "{method} {action}: {response:?}");
        assert_eq!(
            response.header("x-intermission-version"),
            Some(version),
            "{method} {action}: {response:?}"
        );
    }
    let site = Request::get("/").send(port);
    assert_eq!(site.header("x-intermission-version"), None, "{site:?}");
    nginx.stop();
}

/// A call that changes nothing answers 304 with no body (as nginx sends
/// every 304: the old script's "Pause already enabled." never reached a
/// client), and the keep-alive connection goes on with the next call.
#[test]
fn a_304_has_no_body_and_the_connection_goes_on() {
    let (nginx, _upstream) = start_shop(1, "");
    let mut ops = KeepAliveConnection::open(nginx.port());
    assert_answer(&ops.control("enable"), 200, PAUSED, "enable");
    let again = ops.control("enable");
    assert_not_modified(&again, "enable while paused");
    assert!(
        again
            .header("content-length")
            .is_none_or(|length| length == "0"),
        "a 304 announces no body: {again:?}"
    );
    assert_answer(
        &ops.control("status"),
        200,
        PAUSED,
        "status on the same connection",
    );
    assert_answer(&ops.control("disable"), 200, RESUMED, "disable");
    nginx.stop();
}
