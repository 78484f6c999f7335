//! The module is neutral to access control: the same requests are refused
//! or allowed with and without it, paused or not; refused ones are refused
//! at once even while paused, allowed ones are held.

mod common;

use std::net::Ipv4Addr;

use common::*;

/// Allowed by address in the `satisfy any` locations.
const ALLOWED_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// base64("alice:secret") and base64("alice:wrong").
const GOOD_CREDENTIALS: &str = "Basic YWxpY2U6c2VjcmV0";
const BAD_CREDENTIALS: &str = "Basic YWxpY2U6d3Jvbmc=";

const SATISFY_ANY: &str = "satisfy any; allow 127.0.0.2; deny all; \
     auth_basic \"members\"; auth_basic_user_file @PREFIX@/htpasswd;";
const ADDRESS_ONLY: &str = "allow 127.0.0.1; deny all;";

/// A client case and the status nginx gives it by itself.
struct Case {
    what: &'static str,
    suffix: &'static str,
    source: Ipv4Addr,
    authorization: Option<&'static str>,
    expected: u16,
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

const CASES: [Case; 6] = [
    Case {
        what: "any: no credentials",
        suffix: "any/",
        source: LOCAL,
        authorization: None,
        expected: 401,
    },
    Case {
        what: "any: wrong password",
        suffix: "any/",
        source: LOCAL,
        authorization: Some(BAD_CREDENTIALS),
        expected: 401,
    },
    Case {
        what: "any: good password",
        suffix: "any/",
        source: LOCAL,
        authorization: Some(GOOD_CREDENTIALS),
        expected: 200,
    },
    Case {
        what: "any: allowed address",
        suffix: "any/",
        source: ALLOWED_ADDRESS,
        authorization: None,
        expected: 200,
    },
    Case {
        what: "address: denied",
        suffix: "ip/",
        source: ALLOWED_ADDRESS,
        authorization: None,
        expected: 403,
    },
    Case {
        what: "address: allowed",
        suffix: "ip/",
        source: LOCAL,
        authorization: None,
        expected: 200,
    },
];

impl Case {
    /// `base` is `/plain/` (no module) or `/held/` (intermission on).
    fn request(&self, base: &str) -> Request {
        let request =
            Request::get(&format!("{base}{}page", self.suffix)).source_address(self.source);
        match self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }
}

fn start() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = [
        set_app_name("shop"),
        plain_location("/plain/any/", &upstream, SATISFY_ANY),
        plain_location("/plain/ip/", &upstream, ADDRESS_ONLY),
        held_location("/held/any/", &upstream, SATISFY_ANY),
        held_location("/held/ip/", &upstream, ADDRESS_ONLY),
        control_location(),
    ]
    .join(" ");
    let config = Config::new()
        .file("htpasswd", "alice:{PLAIN}secret\n")
        .server(&server);
    (Nginx::start(config), upstream)
}

#[test]
fn access_outcomes_are_the_same_with_and_without_the_module() {
    let (nginx, _upstream) = start();
    let port = nginx.port();
    for case in &CASES {
        let without = case.request("/plain/").send(port).status;
        let with = case.request("/held/").send(port).status;
        assert_eq!(without, case.expected, "{} without the module", case.what);
        assert_eq!(
            with, without,
            "{}: the module changed the outcome",
            case.what
        );
    }
    nginx.stop();
}

#[test]
fn while_paused_refused_requests_are_refused_at_once_and_allowed_ones_held() {
    let (nginx, upstream) = start();
    let port = nginx.port();
    pause(port, "");

    let mut held = Vec::new();
    for case in &CASES {
        if case.expected == 200 {
            let pending = start_held(port, case.request("/held/"));
            held.push(pending);
        } else {
            // Answered while the app is still paused.
            let response = case.request("/held/").send(port);
            assert_eq!(response.status, case.expected, "{} while paused", case.what);
        }
    }
    assert_status(port, "", PAUSED);
    assert_still_held(&held);
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    finish_all_from_upstream(held);
    nginx.stop();
}
