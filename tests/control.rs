//! The control endpoint: status/enable/disable, 304s, 404, 405, access rules.

mod common;

use std::net::Ipv4Addr;

use common::*;

fn start_shop() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_server("shop", &upstream, "")));
    (nginx, upstream)
}

fn assert_not_modified(response: &Response, what: &str) {
    assert_eq!(response.status, 304, "{what}: {response:?}");
    assert!(
        response.body.is_empty(),
        "{what}: a 304 has no body: {response:?}"
    );
}

/// Every row of the control table, with one HTTP method.
fn walk_control_table(method: &str) {
    let (nginx, _upstream) = start_shop();
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
    let (nginx, _upstream) = start_shop();
    let response = control_request("HEAD", "status").send(nginx.port());
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.is_empty(), "HEAD has no body: {response:?}");
    assert_status(nginx.port(), "", RESUMED);
    nginx.stop();
}

#[test]
fn unknown_action_is_404_and_changes_nothing() {
    let (nginx, _upstream) = start_shop();
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
    let (nginx, _upstream) = start_shop();
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
#[test]
fn control_obeys_access_rules() {
    let (nginx, _upstream) = start_shop();
    let port = nginx.port();
    let outsider = control_request("GET", "enable")
        .source_address(Ipv4Addr::new(127, 0, 0, 2))
        .send(port);
    assert_eq!(outsider.status, 403, "{outsider:?}");
    assert_status(port, "", RESUMED);
    nginx.stop();
}

/// The state lives in shared memory: whichever worker answers agrees.
#[test]
fn all_workers_agree_on_the_state() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(4)
            .server(&app_server("shop", &upstream, "")),
    );
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
