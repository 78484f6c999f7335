//! The module under HTTP/2, as browsers connect: cleartext with prior
//! knowledge (h2c) and TLS with ALPN `h2`. Many streams held on one
//! connection are released in the order they were opened; streams the
//! client resets leave at once and never reach the upstream; a connection
//! closed with streams held leaves nothing behind; a request body sent under
//! HTTP/2 flow control while held reaches the upstream whole.
//!
//! Each test runs once per transport. nginx 1.25.1 and later turn HTTP/2 on
//! with `http2 on;` (`listen ... http2` still works there, with a warning);
//! older ones (Debian 12's 1.22) only know `listen ... http2`. The control
//! endpoint is on a second, HTTP/1.1 server of the same app: a 1.22 h2c port
//! speaks nothing but HTTP/2.

mod common;
#[path = "common/h2client.rs"]
mod h2client;

use common::*;
use h2client::{certificate, H2Connection, H2Request, H2Stream, Transport};

/// nginx with app `shop`: server 0 speaks HTTP/2 over `transport` with `/`
/// held; server 1 is the usual HTTP/1.1 `app_server` with the control endpoint.
fn start_h2_shop(transport: Transport) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let modern = Nginx::version() >= (1, 25, 1);
    let tls = "ssl_certificate @PREFIX@/cert.pem; ssl_certificate_key @PREFIX@/key.pem; \
               ssl_protocols TLSv1.2 TLSv1.3;";
    let (listen, directives) = match (transport, modern) {
        (Transport::H2c, true) => ("", "http2 on;".to_owned()),
        (Transport::H2c, false) => ("http2", String::new()),
        (Transport::Tls, true) => ("ssl", format!("http2 on; {tls}")),
        (Transport::Tls, false) => ("ssl http2", tls.to_owned()),
    };
    let h2_server = format!(
        "{directives} {} {}",
        set_app_name("shop"),
        held_location("/", &upstream, "")
    );
    let mut config = Config::new()
        .server_listening(listen, &h2_server)
        .server(&app_server("shop", &upstream, ""));
    if transport == Transport::Tls {
        let certificate = certificate();
        config = config
            .file("cert.pem", &certificate.cert_pem)
            .file("key.pem", &certificate.key_pem);
    }
    let nginx = Nginx::start(config);
    // The right directive for this version: no warning that it is deprecated.
    let log = nginx.error_log();
    assert!(
        !log.contains("deprecated"),
        "the configuration uses a deprecated directive:\n{log}"
    );
    (nginx, upstream)
}

/// The HTTP/2 port and the control (HTTP/1.1) port.
fn ports(nginx: &Nginx) -> (u16, u16) {
    (nginx.server_port(0), nginx.server_port(1))
}

/// `GET /item/{seq}` with `X-Seq: seq`, as `seq_request` for HTTP/1.1.
fn h2_seq_request(seq: usize) -> H2Request {
    H2Request::get(&format!("/item/{seq}")).header("x-seq", seq)
}

/// Opens one stream per seq on `connection`, back to back, then waits until
/// the app holds `held_before + seqs.len()` requests.
fn hold_streams(
    connection: &mut H2Connection,
    control: u16,
    seqs: impl IntoIterator<Item = usize>,
) -> Vec<H2Stream> {
    let before = counters(control, "").held_now;
    let streams: Vec<H2Stream> = seqs
        .into_iter()
        .map(|seq| connection.start(h2_seq_request(seq)))
        .collect();
    assert!(
        streams.windows(2).all(|w| w[0].id < w[1].id),
        "streams are opened in the order they were started"
    );
    let want = before + streams.len() as u64;
    let mut held = 0;
    wait_until(BOUND, &format!("{want} requests held"), || {
        held = counters(control, "").held_now;
        held >= want
    });
    assert_eq!(held, want, "held more requests than were sent");
    streams
}

/// After a `settle`, asserts that none of these streams has been answered.
fn assert_streams_still_held(streams: &[H2Stream]) {
    settle();
    for stream in streams {
        assert!(
            !stream.is_answered(),
            "{} was answered although its app is paused",
            stream.describe()
        );
    }
}

/// Reads every stream's answer and asserts each came from the upstream.
fn finish_all_streams_from_upstream(streams: Vec<H2Stream>) {
    for stream in streams {
        let what = stream.describe().to_owned();
        let response = stream.finish();
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, UPSTREAM_BODY),
            "{what}: {response:?}"
        );
    }
}

// ---- 1. many streams held on one connection, released in stream order ----

fn streams_on_one_connection_are_released_in_the_order_they_were_opened(transport: Transport) {
    const N: usize = 20;
    let (nginx, upstream) = start_h2_shop(transport);
    let (port, control) = ports(&nginx);
    pause(control, "");
    let mut connection = H2Connection::connect(port, transport);
    let streams = hold_streams(&mut connection, control, 0..N);
    assert_streams_still_held(&streams);
    assert_eq!(
        upstream.count(),
        0,
        "no request may reach the upstream while paused"
    );
    assert!(connection.is_open(), "nginx closed the connection");

    resume(control, "");
    finish_all_streams_from_upstream(streams);
    let hits = upstream.wait_for(N);
    assert_eq!(
        seqs(&hits),
        (0..N).collect::<Vec<_>>(),
        "upstream accept order must be the order the streams were opened"
    );
    wait_for_held_count(&nginx, N);
    settle();
    assert_eq!(upstream.count(), N, "a request reached the upstream twice");
    let figures = counters(control, "");
    assert_eq!((figures.held_now, figures.released), (0, N as u64));
    assert!(connection.is_open(), "the connection outlives its streams");
    connection.close();
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn h2c_streams_on_one_connection_are_released_in_the_order_they_were_opened() {
    streams_on_one_connection_are_released_in_the_order_they_were_opened(Transport::H2c);
}

#[test]
fn tls_h2_streams_on_one_connection_are_released_in_the_order_they_were_opened() {
    streams_on_one_connection_are_released_in_the_order_they_were_opened(Transport::Tls);
}

// ---- 2. streams the client resets leave at once ----

fn reset_streams_leave_at_once_and_never_reach_the_upstream(transport: Transport) {
    const N: usize = 12;
    // First, middle and last in the queue.
    const RESET: [usize; 3] = [0, 5, 11];
    let (nginx, upstream) = start_h2_shop(transport);
    let (port, control) = ports(&nginx);
    pause(control, "");
    let mut connection = H2Connection::connect(port, transport);
    let (reset, held): (Vec<_>, Vec<_>) = hold_streams(&mut connection, control, 0..N)
        .into_iter()
        .enumerate()
        .partition(|(seq, _)| RESET.contains(seq));
    for (_, stream) in &reset {
        stream.reset();
    }

    // They leave at once, while the app is still paused.
    let remaining = (N - RESET.len()) as u64;
    let mut figures = counters(control, "");
    wait_until(BOUND, "the reset streams to leave the queue", || {
        figures = counters(control, "");
        figures.held_now <= remaining && figures.clients_gone >= RESET.len() as u64
    });
    assert_eq!(
        (
            figures.state.as_str(),
            figures.held_now,
            figures.clients_gone
        ),
        ("paused", remaining, RESET.len() as u64),
        "{figures:?}"
    );
    for seq in RESET {
        let uri = format!("/item/{seq}");
        nginx.wait_for_access(&format!("499 for {uri}"), |e| {
            e.status == 499 && e.uri == uri
        });
    }
    for (_, stream) in reset {
        let what = stream.describe().to_owned();
        if let Ok(response) = stream.outcome() {
            panic!("{what} was reset by the client, yet answered: {response:?}");
        }
    }
    let held: Vec<H2Stream> = held.into_iter().map(|(_, stream)| stream).collect();
    assert_streams_still_held(&held);
    assert_eq!(upstream.count(), 0);
    assert!(
        connection.is_open(),
        "resetting streams must not close the connection"
    );

    resume(control, "");
    finish_all_streams_from_upstream(held);
    let expected: Vec<usize> = (0..N).filter(|seq| !RESET.contains(seq)).collect();
    upstream.wait_for(expected.len());
    wait_for_held_count(&nginx, N);
    settle();
    assert_eq!(
        seqs(&upstream.hits()),
        expected,
        "the others, in order; never one that was reset"
    );
    let figures = counters(control, "");
    assert_eq!(
        (figures.held_now, figures.released, figures.clients_gone),
        (0, remaining, RESET.len() as u64),
        "{figures:?}"
    );
    connection.close();
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn h2c_reset_streams_leave_at_once_and_never_reach_the_upstream() {
    reset_streams_leave_at_once_and_never_reach_the_upstream(Transport::H2c);
}

#[test]
fn tls_h2_reset_streams_leave_at_once_and_never_reach_the_upstream() {
    reset_streams_leave_at_once_and_never_reach_the_upstream(Transport::Tls);
}

// ---- 3. the whole connection closed with streams held ----

fn a_closed_connection_leaves_nothing_held(transport: Transport) {
    const N: usize = 10;
    const LATER: usize = 5;
    let (nginx, upstream) = start_h2_shop(transport);
    let (port, control) = ports(&nginx);
    let workers = nginx.worker_pids();
    pause(control, "");
    let mut connection = H2Connection::connect(port, transport);
    let streams = hold_streams(&mut connection, control, 0..N);
    connection.close();
    drop(streams);

    let mut figures = counters(control, "");
    wait_until(BOUND, "the closed connection's requests to leave", || {
        figures = counters(control, "");
        figures.held_now == 0 && figures.clients_gone >= N as u64
    });
    assert_eq!(
        (figures.state.as_str(), figures.clients_gone),
        ("paused", N as u64),
        "{figures:?}"
    );
    for seq in 0..N {
        let uri = format!("/item/{seq}");
        nginx.wait_for_access(&format!("499 for {uri}"), |e| {
            e.status == 499 && e.uri == uri
        });
    }
    assert_no_serious_lines(&nginx);

    resume(control, "");
    wait_for_held_count(&nginx, N);
    settle();
    assert_eq!(
        upstream.count(),
        0,
        "a request of a closed connection reached the upstream"
    );

    // A later pause holds and releases as usual.
    pause(control, "");
    let mut connection = H2Connection::connect(port, transport);
    let streams = hold_streams(&mut connection, control, N..N + LATER);
    assert_streams_still_held(&streams);
    resume(control, "");
    finish_all_streams_from_upstream(streams);
    assert_eq!(
        seqs(&upstream.wait_for(LATER)),
        (N..N + LATER).collect::<Vec<_>>()
    );
    wait_for_held_count(&nginx, LATER);
    connection.close();
    let figures = counters(control, "");
    assert_eq!(
        (figures.held_now, figures.released, figures.clients_gone),
        (0, LATER as u64, N as u64),
        "{figures:?}"
    );
    assert_eq!(nginx.worker_pids(), workers, "a worker was replaced");
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn h2c_a_closed_connection_leaves_nothing_held() {
    a_closed_connection_leaves_nothing_held(Transport::H2c);
}

#[test]
fn tls_h2_a_closed_connection_leaves_nothing_held() {
    a_closed_connection_leaves_nothing_held(Transport::Tls);
}

// ---- 4. a request body sent under flow control while held ----

/// 300 KB, different for every seq and without a short period, so that a
/// lost, repeated or swapped piece shows.
fn body_for(seq: usize) -> Vec<u8> {
    const LEN: usize = 300 * 1024;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (seq as u64 + 1);
    (0..LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn a_request_body_sent_while_held_reaches_the_upstream_whole(transport: Transport) {
    const POSTS: usize = 2;
    let (nginx, upstream) = start_h2_shop(transport);
    let (port, control) = ports(&nginx);
    pause(control, "");
    let mut connection = H2Connection::connect(port, transport);
    let streams: Vec<H2Stream> = (0..POSTS)
        .map(|seq| {
            connection.start(
                H2Request::post(&format!("/upload/{seq}"), body_for(seq)).header("x-seq", seq),
            )
        })
        .collect();
    wait_until(BOUND, "the uploads to be held", || {
        counters(control, "").held_now == POSTS as u64
    });
    assert_streams_still_held(&streams);
    assert_eq!(upstream.count(), 0);
    for (seq, stream) in streams.iter().enumerate() {
        // nginx lets a held request's body in only as far as its stream's
        // window (http2_body_preread_size): the rest waits for the release.
        let sent = stream.body_sent();
        eprintln!(
            "{}: {sent} bytes of the body sent while held",
            stream.describe()
        );
        assert!(
            sent < body_for(seq).len(),
            "{}: the whole body went in while held ({sent} bytes): flow control was not exercised",
            stream.describe()
        );
    }

    resume(control, "");
    finish_all_streams_from_upstream(streams);
    let hits = upstream.wait_for(POSTS);
    wait_for_held_count(&nginx, POSTS);
    settle();
    assert_eq!(upstream.count(), POSTS);
    assert_each_seq_once(&hits, POSTS);
    for hit in &hits {
        let expected = body_for(hit.seq());
        assert_eq!(
            hit.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "{}",
            hit.path
        );
        assert_eq!(hit.body.len(), expected.len(), "{}: body length", hit.path);
        assert!(
            hit.body == expected,
            "{}: the body reached the upstream changed (first difference at byte {:?})",
            hit.path,
            hit.body.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    connection.close();
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn h2c_a_request_body_sent_while_held_reaches_the_upstream_whole() {
    a_request_body_sent_while_held_reaches_the_upstream_whole(Transport::H2c);
}

#[test]
fn tls_h2_a_request_body_sent_while_held_reaches_the_upstream_whole() {
    a_request_body_sent_while_held_reaches_the_upstream_whole(Transport::Tls);
}
