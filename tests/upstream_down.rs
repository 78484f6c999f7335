//! The upstream is down when the pause ends: the released requests get
//! nginx's usual 502 at once, and nothing stays held.

mod common;

use std::net::TcpListener;

use common::*;

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

#[test]
fn released_requests_get_502_when_the_upstream_is_down() {
    const HELD: usize = 50;
    let server = format!(
        "{} location / {{ intermission; proxy_pass http://127.0.0.1:{}; }} {}",
        set_app_name("shop"),
        closed_port(),
        control_location()
    );
    let nginx = Nginx::start(Config::new().workers(2).server(&server));
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    assert_still_held(&held);

    resume(port, "");
    for p in held {
        let what = p.describe().to_owned();
        assert_eq!(p.finish().status, 502, "{what}");
    }
    assert!(
        nginx
            .error_log()
            .contains("(111: Connection refused) while connecting to upstream"),
        "nginx logs the refused connections as usual"
    );
    let after = counters(port, "");
    assert_eq!(
        (after.held_now, after.released),
        (0, HELD as u64),
        "{after:?}"
    );
    nginx.stop();
}
