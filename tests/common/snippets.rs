//! Config snippets and control-endpoint calls shared by the test files.

use super::{Request, Response, Upstream};

/// Where every test config puts the control endpoint.
pub const CONTROL: &str = "/_intermission";
pub const PAUSED: &str = "Pause enabled.\n";
pub const RESUMED: &str = "Pause disabled.\n";

/// The control location, restricted to 127.0.0.1 as the documentation shows.
pub fn control_location() -> String {
    format!("location {CONTROL} {{ allow 127.0.0.1; deny all; intermission_control; }}")
}

/// Directives proxying to the upstream, telling it which worker sent the request.
pub fn proxy_to(upstream: &Upstream) -> String {
    format!(
        "proxy_set_header X-Worker $pid; proxy_pass http://127.0.0.1:{};",
        upstream.port()
    )
}

/// A location whose requests the module holds while their app is paused.
pub fn held_location(path: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "location {path} {{ intermission; {extra} {} }}",
        proxy_to(upstream)
    )
}

/// A location the module does not act on.
pub fn plain_location(path: &str, upstream: &Upstream, extra: &str) -> String {
    format!("location {path} {{ {extra} {} }}", proxy_to(upstream))
}

/// `set $app_name VALUE;` (VALUE is config text: a word, a quoted string or a variable).
pub fn set_app_name(value: &str) -> String {
    format!("set $app_name {value};")
}

/// The usual server: app `app`, `/` held (with `extra` directives), and the control endpoint.
pub fn app_server(app: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "{} {} {}",
        set_app_name(app),
        held_location("/", upstream, extra),
        control_location()
    )
}

/// nginx with `workers` workers serving the usual `app_server` for app
/// `shop` (with `extra` directives in its held location), and its upstream.
pub fn start_shop(workers: usize, extra: &str) -> (super::Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = super::Nginx::start(
        super::Config::new()
            .workers(workers)
            .server(&app_server("shop", &upstream, extra)),
    );
    (nginx, upstream)
}

/// nginx with two workers and room for thousands of held requests, in front
/// of `upstream`, with the usual `app_server` for app `shop`.
pub fn start_shop_for_thousands(upstream: &Upstream) -> super::Nginx {
    super::Nginx::start(
        super::Config::new()
            .workers(2)
            .worker_connections(8_192)
            .server(&app_server("shop", upstream, "")),
    )
}

/// A server whose app is named by the `app` query argument (`?app=a`), for
/// tests that need many apps: `/` held, and the control endpoint.
pub fn app_per_query_server(upstream: &Upstream) -> String {
    format!(
        "{} {} {}",
        set_app_name("$arg_app"),
        held_location("/", upstream, ""),
        control_location()
    )
}

/// A control call (GET); `action` may carry a query string (`enable?app=a`).
pub fn control(port: u16, action: &str) -> Response {
    control_request("GET", action).send(port)
}

pub fn control_request(method: &str, action: &str) -> Request {
    Request::new(method, &format!("{CONTROL}/{action}"))
}

/// Asserts status and exact body.
pub fn assert_answer(response: &Response, status: u16, body: &str, what: &str) {
    assert_eq!(
        (response.status, response.text().as_str()),
        (status, body),
        "{what}: {response:?}"
    );
}

/// Enables the pause and checks the answer says so.
pub fn pause(port: u16, action_suffix: &str) {
    assert_answer(
        &control(port, &format!("enable{action_suffix}")),
        200,
        PAUSED,
        "enable",
    );
}

/// Disables the pause and checks the answer says so.
pub fn resume(port: u16, action_suffix: &str) {
    assert_answer(
        &control(port, &format!("disable{action_suffix}")),
        200,
        RESUMED,
        "disable",
    );
}

/// Asserts the answer of `status`.
pub fn assert_status(port: u16, action_suffix: &str, expected: &str) {
    assert_answer(
        &control(port, &format!("status{action_suffix}")),
        200,
        expected,
        "status",
    );
}

/// An app's figures, from `status?format=json`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub app: String,
    pub state: String,
    pub held_now: u64,
    pub held_in_pause: u64,
    pub released: u64,
    pub timed_out: u64,
    pub clients_gone: u64,
    pub refused_at_shutdown: u64,
    pub rejected: u64,
    pub stopped: u64,
    /// Requests of the paused or stopped app let through at once.
    pub bypassed: u64,
    pub in_flight: u64,
    /// Requests that switched protocols (WebSocket), still open.
    pub upgraded: u64,
    pub longest_wait_ms: u64,
    /// RFC 3339, or "null".
    pub since: String,
    pub deadline: String,
}

/// Starts `n` requests of the control endpoint's app one after another, each
/// once the app counts it held (`held_now` rises by one): their tickets are
/// then the order they were sent in, whichever worker holds each. That nginx
/// has read a request is not enough with several workers: the worker that
/// read it may be descheduled before it takes its ticket, while another
/// worker takes one for the next request (seen under valgrind).
pub fn hold_in_order(
    port: u16,
    n: usize,
    make: impl Fn(usize) -> super::Request,
) -> Vec<super::Pending> {
    let before = counters(port, "").held_now;
    (0..n)
        .map(|i| {
            let pending = make(i).start(port);
            super::wait_until(super::BOUND, "the request to be held", || {
                counters(port, "").held_now > before + i as u64
            });
            pending
        })
        .collect()
}

/// `status?format=json`, with `query` added to the query string (`app=a`).
pub fn counters(port: u16, query: &str) -> Counters {
    let separator = if query.is_empty() { "" } else { "&" };
    let response = control(port, &format!("status?format=json{separator}{query}"));
    assert_eq!(response.status, 200, "status?format=json: {response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {response:?}"));
    let number = |key: &str| -> u64 {
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key:?} is not a number in {json}"))
    };
    let time = |key: &str| -> String {
        match &json[key] {
            serde_json::Value::Null => "null".to_owned(),
            serde_json::Value::String(time) => time.clone(),
            other => panic!("{key:?} is {other}, not a time or null, in {json}"),
        }
    };
    Counters {
        app: json["app"]
            .as_str()
            .unwrap_or_else(|| panic!("no app name in {json}"))
            .to_owned(),
        state: json["state"]
            .as_str()
            .unwrap_or_else(|| panic!("no state in {json}"))
            .to_owned(),
        held_now: number("held_now"),
        held_in_pause: number("held_in_pause"),
        released: number("released"),
        timed_out: number("timed_out"),
        clients_gone: number("clients_gone"),
        refused_at_shutdown: number("refused_at_shutdown"),
        rejected: number("rejected"),
        stopped: number("stopped"),
        bypassed: number("bypassed"),
        in_flight: number("in_flight"),
        upgraded: number("upgraded"),
        longest_wait_ms: number("longest_wait_ms"),
        since: time("since"),
        deadline: time("deadline"),
    }
}

/// A figure of the module's own in the JSON status (`module.NAME`).
pub fn module_figure(port: u16, name: &str) -> u64 {
    let response = control(port, "status?format=json");
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {response:?}"));
    json["module"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no module.{name} in {json}"))
}

/// A keep-alive connection for control calls, accepted by one of nginx's
/// workers (it has answered a status on it): the connection, that worker,
/// and another worker. Tests that stop a worker or take its descriptors
/// away make their calls through the other.
pub fn control_connection(nginx: &super::Nginx) -> (super::KeepAliveConnection, i32, i32) {
    let mut ops = super::KeepAliveConnection::open(nginx.port());
    assert_eq!(ops.control("status").status, 200);
    let workers = nginx.worker_pids();
    let mine = *workers
        .iter()
        .find(|&&w| ops.is_held_by(w))
        .expect("a worker has the control connection");
    let other = *workers.iter().find(|&&w| w != mine).expect("two workers");
    (ops, mine, other)
}
