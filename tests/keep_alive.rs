//! HTTP/1.1 keep-alive as browsers use it: a request held on a connection
//! that already carried one, with another pipelined behind it, and many
//! kept-alive connections held at once. After the resume every request is
//! answered by the upstream, in order on its connection, and the connections
//! stay usable.

mod common;

use common::*;

/// nginx echoes the request's `X-Seq` in its answer, so a test can tell which
/// answer belongs to which request on a connection.
const ECHO_SEQ: &str = "add_header X-Seq $http_x_seq;";

fn start(workers: usize) -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(workers)
            .reuseport()
            .server(&app_server("shop", &upstream, ECHO_SEQ)),
    );
    (nginx, upstream)
}

/// `GET {path}{seq}` with `X-Seq`, keeping the connection open.
fn kept_alive(path: &str, seq: usize) -> Request {
    seq_request(path, seq).keep_alive()
}

/// Asserts the answer is the upstream's, to the request `seq`, and that nginx
/// keeps the connection open after it.
fn assert_answer_to(response: &Response, seq: usize, what: &str) {
    assert_from_upstream(response, what);
    assert_eq!(
        response.header("x-seq"),
        Some(seq.to_string().as_str()),
        "{what}: the answer to another request: {response:?}"
    );
    assert_eq!(
        response.header("connection"),
        Some("keep-alive"),
        "{what}: nginx does not keep the connection: {response:?}"
    );
}

/// The upstream's hits of requests under `path`, in accept order.
fn hits_under(upstream: &Upstream, path: &str) -> Vec<Hit> {
    upstream
        .hits()
        .into_iter()
        .filter(|hit| hit.path.starts_with(path))
        .collect()
}

/// Waits until nothing of the app is held or in flight, and asserts what the
/// pause released.
fn assert_all_accounted(port: u16, released: u64) {
    let mut figures = counters(port, "");
    wait_until(BOUND, "nothing held or in flight", || {
        figures = counters(port, "");
        figures.held_now == 0 && figures.in_flight == 0
    });
    assert_eq!(
        (figures.state.as_str(), figures.released),
        ("running", released),
        "{figures:?}"
    );
}

#[test]
fn a_held_request_on_a_reused_connection_and_one_pipelined_behind_it_are_answered_in_order() {
    let (nginx, upstream) = start(1);
    let port = nginx.port();
    let mut connection = KeepAliveConnection::open(port);
    let first = connection.round_trip(&kept_alive("/item/", 0));
    assert_answer_to(&first, 0, "the request before the pause");

    pause(port, "");
    // Two requests in one write, before any answer: the first is held, the
    // second waits behind it in nginx's buffer (or the socket).
    let mut pipelined = kept_alive("/item/", 1).bytes();
    pipelined.extend(kept_alive("/item/", 2).bytes());
    connection.write(&pipelined);
    wait_until(
        BOUND,
        "the request on the reused connection to be held",
        || counters(port, "").held_now == 1,
    );
    settle();
    assert!(
        !connection.is_answered(),
        "a request was answered on the connection while its app is paused"
    );
    assert_eq!(
        upstream.count(),
        1,
        "no request may reach the upstream while paused"
    );
    assert_eq!(
        counters(port, "").held_now,
        1,
        "the pipelined request is not read as a request before the held one ends"
    );

    resume(port, "");
    assert_answer_to(
        &connection.read_response(),
        1,
        "the held request, answered first",
    );
    assert_answer_to(
        &connection.read_response(),
        2,
        "the pipelined request, answered second",
    );
    // The connection is still usable.
    assert_answer_to(
        &connection.round_trip(&kept_alive("/item/", 3)),
        3,
        "a request after the release on the same connection",
    );
    let hits = upstream.wait_for(4);
    assert_eq!(
        seqs(&hits),
        [0, 1, 2, 3],
        "the upstream sees the connection's requests in order"
    );
    assert!(
        hits.iter().all(|hit| hit.worker() == hits[0].worker()),
        "one connection, one worker: {hits:?}"
    );
    wait_for_held_count(&nginx, 1);

    // What the module did with each: only the one that came during the pause was held.
    for (seq, outcome) in [(0, "passed"), (1, "held"), (2, "passed"), (3, "passed")] {
        let uri = format!("/item/{seq}");
        let entry = nginx.wait_for_access(&format!("for {uri}"), |entry| entry.uri == uri);
        assert_eq!(
            (entry.status, entry.outcome()),
            (200, outcome),
            "{}",
            entry.line
        );
    }
    assert_all_accounted(port, 1);
    assert_no_serious_lines(&nginx);
    // A request held and released, then the last one: no extra answer came.
    assert!(
        !connection.is_answered(),
        "a stray answer on the connection"
    );
    drop(connection);
    nginx.stop();
}

/// `n` connections, each with a request answered before the pause, then
/// one request held on each, sent one after another (each once the app
/// counts the one before held): the resume releases them in that order.
fn kept_alive_connections_are_released_in_arrival_order(workers: usize, n: usize) {
    let (nginx, upstream) = start(workers);
    let port = nginx.port();
    let mut connections: Vec<KeepAliveConnection> = (0..n)
        .map(|i| {
            let mut connection = KeepAliveConnection::open(port);
            let warm_up = connection.round_trip(&kept_alive("/warm-up/", 1_000 + i));
            assert_answer_to(&warm_up, 1_000 + i, "a request before the pause");
            connection
        })
        .collect();
    upstream.wait_for(n);

    pause(port, "");
    for (i, connection) in connections.iter_mut().enumerate() {
        connection.send(&kept_alive("/item/", i));
        wait_until(BOUND, "the request to be held", || {
            counters(port, "").held_now == i as u64 + 1
        });
    }
    if workers > 1 {
        let holding = nginx
            .worker_pids()
            .into_iter()
            .filter(|&pid| connections.iter().any(|c| c.is_held_by(pid)))
            .count();
        assert_eq!(holding, workers, "every worker holds some of the requests");
    }
    settle();
    for connection in &connections {
        assert!(
            !connection.is_answered(),
            "{} was answered while its app is paused",
            connection.describe()
        );
    }
    assert!(hits_under(&upstream, "/item/").is_empty());

    resume(port, "");
    for (i, connection) in connections.iter_mut().enumerate() {
        assert_answer_to(&connection.read_response(), i, connection.describe());
    }
    let released = hits_under(&upstream, "/item/");
    if workers == 1 {
        assert_eq!(
            seqs(&released),
            (0..n).collect::<Vec<_>>(),
            "the upstream sees them in arrival order"
        );
    } else {
        assert_each_seq_once(&released, n);
        assert_ordered_per_worker(&released);
    }
    wait_for_held_count(&nginx, n);

    // Every connection is still usable, and nothing is held any more.
    for (i, connection) in connections.iter_mut().enumerate() {
        assert_answer_to(
            &connection.round_trip(&kept_alive("/after/", 2_000 + i)),
            2_000 + i,
            "a request after the release on the same connection",
        );
    }
    assert_eq!(upstream.wait_for(3 * n).len(), 3 * n);
    assert_all_accounted(port, n as u64);
    assert_no_serious_lines(&nginx);
    drop(connections);
    nginx.stop();
}

#[test]
fn kept_alive_connections_held_at_once_are_released_in_arrival_order() {
    kept_alive_connections_are_released_in_arrival_order(1, 12);
}

#[test]
fn kept_alive_connections_held_by_two_workers_are_released_in_order_per_worker() {
    kept_alive_connections_are_released_in_arrival_order(2, 24);
}

/// A browser that closes a kept-alive connection while its request is held
/// (a tab closed): nginx finalizes the request with 499, it leaves the queue,
/// and the request held on another kept-alive connection is released.
#[test]
fn a_kept_alive_connection_closed_while_held_leaves_the_queue() {
    let (nginx, upstream) = start(1);
    let port = nginx.port();
    let mut leaving = KeepAliveConnection::open(port);
    let mut staying = KeepAliveConnection::open(port);
    assert_answer_to(
        &leaving.round_trip(&kept_alive("/item/", 0)),
        0,
        "a request before the pause",
    );
    assert_answer_to(
        &staying.round_trip(&kept_alive("/item/", 1)),
        1,
        "a request before the pause",
    );

    pause(port, "");
    leaving.send(&kept_alive("/item/", 2));
    wait_until(BOUND, "the first request to be held", || {
        counters(port, "").held_now == 1
    });
    staying.send(&kept_alive("/item/", 3));
    wait_until(BOUND, "the second request to be held", || {
        counters(port, "").held_now == 2
    });
    drop(leaving);
    let entry = nginx.wait_for_access("for the request whose client left", |entry| {
        entry.uri == "/item/2"
    });
    assert_eq!(
        (entry.status, entry.outcome()),
        (499, "held"),
        "{}",
        entry.line
    );
    let mut figures = counters(port, "");
    wait_until(BOUND, "the client to be counted gone", || {
        figures = counters(port, "");
        figures.clients_gone == 1
    });
    assert_eq!(figures.held_now, 1, "{figures:?}");
    assert!(!staying.is_answered(), "the other request is still held");

    resume(port, "");
    assert_answer_to(&staying.read_response(), 3, "the request that stayed");
    assert_answer_to(
        &staying.round_trip(&kept_alive("/item/", 4)),
        4,
        "a request after the release on the same connection",
    );
    upstream.wait_for(4);
    wait_for_held_count(&nginx, 2);
    settle();
    assert_eq!(
        seqs(&upstream.hits()),
        [0, 1, 3, 4],
        "never the request whose client left"
    );
    assert_all_accounted(port, 1);
    assert_no_serious_lines(&nginx);
    drop(staying);
    nginx.stop();
}
