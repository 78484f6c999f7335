//! Malformed and hostile control requests: each gets a 4xx and a line in the
//! error log, nothing changes state, and no worker dies.

mod common;

use common::*;

fn start() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_per_query_server(&upstream)),
    );
    (nginx, upstream)
}

/// Sends `request`, asserts its status and that an error_log line containing
/// `logged` appeared.
fn assert_refused(nginx: &Nginx, request: Request, status: u16, logged: &str) {
    let response = request.send(nginx.port());
    assert_eq!(response.status, status, "{response:?}");
    nginx.wait_for_error_line(&format!("containing {logged:?}"), |line| {
        line.contains(logged)
    });
}

fn assert_nothing_changed(nginx: &Nginx, workers: &[i32], apps: &[&str]) {
    let port = nginx.port();
    for app in apps {
        assert_status(port, &format!("?app={app}"), RESUMED);
    }
    assert_eq!(nginx.worker_pids(), workers, "no worker died");
    let log = nginx.error_log();
    assert_eq!(
        serious_lines(&log),
        Vec::<&str>::new(),
        "nothing serious logged"
    );
}

#[test]
fn unknown_actions_and_methods_are_refused_with_a_log_line() {
    let (nginx, _upstream) = start();
    let workers = nginx.worker_pids();
    assert_refused(
        &nginx,
        Request::get("/_intermission/pause?app=a"),
        404,
        "intermission: unknown control action in \"/_intermission/pause\"",
    );
    // Invalid UTF-8 (and a control character) once percent-decoded: logged escaped.
    assert_refused(
        &nginx,
        Request::get("/_intermission/en%FF%FEable%01?app=a"),
        404,
        "unknown control action in \"/_intermission/en\\xff\\xfeable\\x01\"",
    );
    assert_refused(
        &nginx,
        control_request("DELETE", "enable?app=a"),
        405,
        "intermission: control requests take GET, HEAD or POST, not DELETE",
    );
    assert_refused(
        &nginx,
        control_request("PAUSE", "enable?app=a"),
        405,
        "not PAUSE",
    );
    assert_nothing_changed(&nginx, &workers, &["a"]);
    nginx.stop();
}

#[test]
fn bad_repeated_and_huge_arguments_are_refused() {
    let (nginx, _upstream) = start();
    let port = nginx.port();
    let workers = nginx.worker_pids();
    assert_refused(
        &nginx,
        control_request("GET", "status?app=a&format=xml"),
        400,
        "intermission: invalid \"format\" argument \"xml\"",
    );
    assert_refused(
        &nginx,
        control_request("GET", "status?app=a&format=json&format=text"),
        400,
        "the \"format\" argument is given more than once",
    );
    // An app name past the 128 bytes the zone stores.
    let long_name = "x".repeat(200);
    assert_refused(
        &nginx,
        control_request("GET", &format!("enable?app={long_name}")),
        400,
        "$app_name is 200 bytes long, more than the 128 allowed",
    );
    // A query string of 6,000 arguments (within nginx's 8k request line).
    let many = "&b=1".repeat(1_500);
    let response = control_request("GET", &format!("status?app=a{many}")).send(port);
    assert_answer(&response, 200, RESUMED, "many arguments");
    assert_nothing_changed(&nginx, &workers, &["a", "b", &long_name[..128]]);

    // A repeated app argument: nginx's $arg_app is the first one.
    pause(port, "?app=first&app=second");
    assert_status(port, "?app=first", PAUSED);
    assert_status(port, "?app=second", RESUMED);
    resume(port, "?app=first");
    assert_nothing_changed(&nginx, &workers, &["first", "second"]);
    nginx.stop();
}

/// Oversized requests are refused by nginx itself, before the module runs,
/// with its usual status and log line (at `info`).
#[test]
fn oversized_control_requests_are_refused_by_nginx() {
    let (nginx, _upstream) = start();
    let workers = nginx.worker_pids();
    let huge_argument = "a".repeat(10_000);
    assert_refused(
        &nginx,
        control_request("GET", &format!("enable?app={huge_argument}")),
        414,
        "client sent too long URI",
    );
    assert_refused(
        &nginx,
        control_request("GET", "enable?app=a").header("X-Padding", "p".repeat(10_000)),
        400,
        "client sent too long header line",
    );
    assert_refused(
        &nginx,
        control_request("GET", "enable?app=a").header("Content-Length", "10485760"),
        413,
        "client intended to send too large body",
    );
    // A body within client_max_body_size is read and ignored.
    let response = control_request("POST", "status?app=a")
        .body(vec![b'z'; 64 * 1024])
        .send(nginx.port());
    assert_answer(&response, 200, RESUMED, "status with a body");
    assert_nothing_changed(&nginx, &workers, &["a"]);
    nginx.stop();
}
