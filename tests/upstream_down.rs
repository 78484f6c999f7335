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

/// A listening socket whose one-place accept queue is taken and never
/// drained: the kernel drops the SYNs of every later connection, as a
/// server behind a firewall that drops them does, so connecting to it hangs
/// until nginx's `proxy_connect_timeout`.
struct DroppingSyns {
    port: u16,
    _listener: socket2::Socket,
    _queued: std::net::TcpStream,
}

fn dropping_syns() -> DroppingSyns {
    use socket2::{Domain, Protocol, Socket, Type};
    let listener =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("a socket");
    listener
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    listener.listen(0).expect("listen");
    let port = listener
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an inet address")
        .port();
    let queued = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the one queued place");
    DroppingSyns {
        port,
        _listener: listener,
        _queued: queued,
    }
}

/// One of two upstream servers drops connections: the released requests
/// sent to it wait for the connect timeout and then go to the other. Those
/// sent to the good one must not wait with them: a released request keeps
/// its place in the order only while its connection opens and at most
/// `SEND_BOUND_MS`, so the release goes on past the hanging ones. Told by
/// the order of events, not by a time: the good server gets its first tries
/// (half the requests, alternating) before the largest pause between two
/// requests, the connect timeout.
#[test]
fn a_server_that_drops_connections_holds_up_none_of_the_others() {
    const HELD: usize = 200;
    let good = Upstream::start();
    let dropping = dropping_syns();
    let config = Config::new()
        .workers(2)
        .http(&format!(
            "upstream pair {{ server 127.0.0.1:{}; server 127.0.0.1:{}; }}",
            good.port(),
            dropping.port
        ))
        .server(&format!(
            "{} location / {{ intermission; proxy_connect_timeout 5s; proxy_pass http://pair; }} {}",
            set_app_name("shop"),
            control_location()
        ));
    let nginx = Nginx::start(config);
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    assert_still_held(&held);

    resume(port, "");
    for p in held {
        let what = p.describe().to_owned();
        assert_eq!(p.finish().status, 200, "{what}: answered by the good server");
    }
    let hits = good.wait_for(HELD);
    let mut seen = seqs(&hits);
    seen.sort_unstable();
    assert_eq!(seen, (0..HELD).collect::<Vec<_>>(), "each request once");
    let (before_largest_gap, _) = hits
        .windows(2)
        .enumerate()
        .map(|(i, pair)| (i + 1, pair[1].at.duration_since(pair[0].at)))
        .max_by_key(|&(_, gap)| gap)
        .expect("requests");
    assert!(
        before_largest_gap >= HELD / 2 - 4,
        "only {before_largest_gap} of about {} first tries reached the good server before \
         the connect timeout: the hanging connections held the release up",
        HELD / 2
    );
    assert!(
        nginx.error_log().contains("while connecting to upstream"),
        "the dropped connections timed out"
    );
    nginx.stop();
}
