//! `$intermission_bypass`: while an app is paused, a request whose value is
//! neither empty nor `0` goes to the upstream at once (outcome `bypassed`),
//! whatever defines it (`map`, `geo`, `set`); the others are held and, after
//! the resume, reach the upstream in the order they arrived. Every request
//! let through at once while paused or stopped counts in `bypassed`.

mod common;

use std::net::Ipv4Addr;

use common::*;

/// Reads pass and writes wait, on two workers: the example the README gives.
const READS_PASS: &str = "map $request_method $intermission_bypass { GET 1; HEAD 1; default 0; }";

/// The shop on two workers with `http` text added; the upstream is told each
/// held request's ticket.
fn shop_with(http: &str, upstream: &Upstream) -> Nginx {
    Nginx::start(
        Config::new()
            .workers(2)
            .reuseport()
            .http(http)
            .server(&app_server(
                "shop",
                upstream,
                "proxy_set_header X-Ticket $intermission_ticket;",
            )),
    )
}

fn write(seq: usize) -> Request {
    Request::new("POST", &format!("/write/{seq}"))
        .header("X-Seq", seq.to_string())
        .body("order")
}

fn read(seq: usize) -> Request {
    seq_request("/read/", seq)
}

#[test]
fn reads_pass_while_writes_wait_and_then_go_in_arrival_order() {
    const WRITES: usize = 12;
    const READS: usize = 6;
    let upstream = Upstream::start();
    let nginx = shop_with(READS_PASS, &upstream);
    let port = nginx.port();
    pause(port, "");
    // Writes and reads interleaved: each read is answered while the writes
    // sent before it are still held.
    let mut writes = Vec::new();
    for round in 0..READS {
        writes.extend(hold_in_order(port, WRITES / READS, |i| {
            write(round * (WRITES / READS) + i)
        }));
        assert_passes(port, read(1_000 + round), "a GET while paused");
    }
    let head = Request::new("HEAD", "/read/head").send(port);
    assert_eq!(head.status, 200, "a HEAD while paused: {head:?}");
    assert_still_held(&writes);
    let during = upstream.hits();
    assert_eq!(
        during.len(),
        READS + 1,
        "only the reads reached the upstream"
    );
    assert!(
        during.iter().all(|hit| hit.path.starts_with("/read/")),
        "{during:#?}"
    );
    assert_eq!(counters(port, "").held_now, WRITES as u64);

    resume(port, "");
    finish_all_from_upstream(writes);
    let hits = upstream.wait_for(READS + 1 + WRITES);
    let written: Vec<Hit> = hits
        .into_iter()
        .filter(|hit| hit.path.starts_with("/write/"))
        .collect();
    assert_each_seq_once(&written, WRITES);
    for hit in &written {
        assert_eq!(
            hit.header("x-ticket"),
            Some(hit.seq().to_string().as_str()),
            "each write was held with the ticket of its arrival position"
        );
    }
    assert_ordered_per_worker(&written);
    let bypassed = nginx.wait_for_access("of a read, bypassed", |entry| {
        entry.uri.starts_with("/read/") && entry.outcome() == "bypassed"
    });
    assert_eq!(bypassed.status, 200);
    let held = nginx.wait_for_access("of a write, held", |entry| {
        entry.method == "POST" && entry.outcome() == "held"
    });
    assert_eq!(held.status, 200);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn empty_and_zero_hold_any_other_value_passes() {
    let upstream = Upstream::start();
    // Set in the server, from a header, so that each request says its own.
    let nginx = Nginx::start(Config::new().workers(2).server(&format!(
        "set $intermission_bypass $http_x_bypass; {}",
        app_server("shop", &upstream, "")
    )));
    let port = nginx.port();
    pause(port, "");
    let held: Vec<Pending> = [None, Some(""), Some("0")]
        .into_iter()
        .enumerate()
        .map(|(seq, value)| {
            let request = seq_request("/item/", seq);
            start_held(
                port,
                match value {
                    Some(value) => request.header("X-Bypass", value),
                    None => request,
                },
            )
        })
        .collect();
    for value in ["1", "yes"] {
        assert_passes(
            port,
            Request::get("/item/x").header("X-Bypass", value),
            &format!("$intermission_bypass {value:?}"),
        );
    }
    assert_still_held(&held);
    assert_eq!(counters(port, "").held_now, 3);
    resume(port, "");
    finish_all_from_upstream(held);
    nginx.stop();
}

#[test]
fn a_geo_block_lets_one_address_through() {
    let upstream = Upstream::start();
    let nginx = shop_with(
        "geo $remote_addr $intermission_bypass { default 0; 127.0.0.1 1; }",
        &upstream,
    );
    let port = nginx.port();
    pause(port, "");
    let elsewhere = start_held(
        port,
        seq_request("/item/", 0).source_address(Ipv4Addr::new(127, 0, 0, 2)),
    );
    assert_passes(port, seq_request("/item/", 1), "a request from 127.0.0.1");
    assert_still_held([&elsewhere]);
    resume(port, "");
    assert_from_upstream(&elsewhere.finish(), "the request from 127.0.0.2");
    nginx.stop();
}

#[test]
fn a_stopped_app_still_lets_bypassing_requests_through() {
    let upstream = Upstream::start();
    let nginx = shop_with(READS_PASS, &upstream);
    let port = nginx.port();
    assert_eq!(control(port, "stop").status, 200);
    assert_passes(port, read(0), "a GET while stopped");
    let refused = write(1).send(port);
    assert_eq!(refused.status, 503, "a POST while stopped: {refused:?}");
    let figures = counters(port, "");
    assert_eq!((figures.bypassed, figures.stopped), (1, 1), "{figures:?}");
    resume(port, "");
    nginx.stop();
}

/// `shop`'s series `name` in the metrics.
fn shop_series(port: u16, name: &str) -> u64 {
    let metrics = control(port, "metrics").text();
    let prefix = format!("{name}{{app=\"shop\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{metrics}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e} in:\n{metrics}"))
}

/// What passes at once while paused is counted in `bypassed`, in the JSON
/// status and the metrics alike: a GET through `$intermission_bypass`, the
/// health check `/up`, a location with `$intermission_max_time` 0; the
/// held writes are not, nor is anything while the app runs.
#[test]
fn requests_let_through_while_paused_are_counted_as_bypassed() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .reuseport()
            .http(READS_PASS)
            .server(&format!(
                "{} {}",
                app_server("shop", &upstream, ""),
                held_location("/now/", &upstream, "set $intermission_max_time 0;")
            )),
    );
    let port = nginx.port();
    // The app gets its slot in the zone, then runs: what passes now is
    // not bypassed, whatever it is.
    pause(port, "");
    resume(port, "");
    assert_passes(port, read(0), "a GET while running");
    assert_passes(port, Request::get("/up"), "/up while running");
    assert_passes(port, write(1), "a POST while running");
    assert_passes(
        port,
        Request::new("POST", "/now/x").body("order"),
        "max time 0, running",
    );
    assert_eq!(counters(port, "").bypassed, 0);
    assert_eq!(shop_series(port, "intermission_bypassed_total"), 0);

    pause(port, "");
    let writes = hold_in_order(port, 2, |i| write(10 + i));
    for seq in 0..3 {
        assert_passes(port, read(20 + seq), "a GET while paused");
    }
    assert_passes(port, Request::get("/up"), "/up while paused");
    assert_passes(
        port,
        Request::new("POST", "/now/x").body("order"),
        "a POST where $intermission_max_time is 0",
    );
    assert_still_held(&writes);
    let figures = counters(port, "");
    assert_eq!((figures.bypassed, figures.held_now), (5, 2), "{figures:?}");
    assert_eq!(shop_series(port, "intermission_bypassed_total"), 5);
    assert_eq!(shop_series(port, "intermission_held"), 2);

    resume(port, "");
    finish_all_from_upstream(writes);
    assert_passes(port, read(30), "a GET after the resume");
    assert_passes(port, Request::get("/up"), "/up after the resume");
    let figures = counters(port, "");
    assert_eq!((figures.bypassed, figures.released), (5, 2), "{figures:?}");
    assert_eq!(shop_series(port, "intermission_bypassed_total"), 5);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}
