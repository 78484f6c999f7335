//! A request held while its client is still sending the body: the head and
//! the first part of a 300 KB upload arrive, the request is held, more of the
//! body trickles in while it waits, and the rest comes slowly after the
//! resume. The upstream gets the whole body, byte for byte, with its length;
//! with `Content-Length` and with chunked transfer encoding.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::*;

const BODY_LEN: usize = 300 * 1024;
/// Bytes of the body (as written on the wire) sent with the head, before the
/// request is known to be held.
const WITH_THE_HEAD: usize = 8 * 1024;
/// Bytes of the body sent while the request is held. Small enough to fit in
/// the sockets' buffers: nginx reads a held request's body only once it is
/// released.
const WHILE_HELD: usize = 32 * 1024;
/// The pieces the rest is sent in, one every `PAUSE_BETWEEN`.
const PIECE: usize = 4 * 1024;
const PAUSE_BETWEEN: Duration = Duration::from_millis(5);

/// 300 KB no two 256-byte stretches of which are alike (xorshift), so a
/// piece lost, repeated or moved shows.
fn upload_body() -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..BODY_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The body in chunked transfer encoding, in chunks of varied sizes (1 byte
/// to 20 KB), so the pieces it is sent in cut chunks and their size lines.
fn chunked(body: &[u8]) -> Vec<u8> {
    let sizes = [1, 1_000, 4_096, 20_000, 7, 8_191, 333];
    let mut wire = Vec::new();
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at((*size).min(rest.len()));
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        rest = after;
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

/// Asserts the upstream got exactly `expected`, and says where it differs.
fn assert_body(hit: &Hit, expected: &[u8]) {
    assert_eq!(
        hit.header("content-length"),
        Some(expected.len().to_string().as_str()),
        "the upstream is told the body's length: {:?}",
        hit.headers
    );
    assert_eq!(hit.body.len(), expected.len(), "the body's length");
    assert!(
        hit.body == expected,
        "the body differs from byte {:?} on",
        hit.body.iter().zip(expected).position(|(a, b)| a != b)
    );
}

/// Sends `head` and the first part of `wire_body` on a kept-alive
/// connection, waits until the request is held, sends more of the body while
/// it is held, resumes while the client is still sending, sends the rest in
/// small pieces, and checks the upstream got `body` whole. The connection is
/// still usable afterwards.
fn upload_while_held(head: &str, wire_body: Vec<u8>, body: &[u8]) {
    let wire_len = wire_body.len();
    assert!(wire_len > WITH_THE_HEAD + WHILE_HELD + 16 * PIECE);
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    pause(port, "");

    let mut connection = KeepAliveConnection::open(port);
    let mut first = head.as_bytes().to_vec();
    first.extend_from_slice(&wire_body[..WITH_THE_HEAD]);
    connection.write(&first);
    wait_until(BOUND, "the upload to be held", || {
        counters(port, "").held_now == 1
    });

    // The client goes on sending, in its own thread: up to WHILE_HELD more
    // bytes while held, then, once told the app resumed, the rest.
    let sent = Arc::new(AtomicUsize::new(WITH_THE_HEAD));
    let (resumed_tx, resumed_rx) = mpsc::channel::<()>();
    let writer = thread::spawn({
        let mut socket = connection.writer();
        let sent = sent.clone();
        move || {
            let mut at = WITH_THE_HEAD;
            let mut resumed = false;
            while at < wire_body.len() {
                if !resumed && at >= WITH_THE_HEAD + WHILE_HELD {
                    resumed_rx.recv().expect("the test to resume the app");
                    resumed = true;
                }
                thread::sleep(PAUSE_BETWEEN);
                let end = (at + PIECE).min(wire_body.len());
                socket
                    .write_all(&wire_body[at..end])
                    .expect("writing the body");
                at = end;
                sent.store(at, Ordering::SeqCst);
            }
        }
    });
    wait_until(BOUND, "part of the body to be sent while held", || {
        sent.load(Ordering::SeqCst) >= WITH_THE_HEAD + WHILE_HELD
    });
    settle();
    assert!(
        !connection.is_answered(),
        "the upload was answered while its app is paused"
    );
    assert_eq!(
        upstream.count(),
        0,
        "nothing reaches the upstream while paused"
    );
    assert_eq!(counters(port, "").held_now, 1, "the upload is still held");

    resume(port, "");
    // The client is still sending: most of the body is yet to come.
    assert!(sent.load(Ordering::SeqCst) < wire_len);
    resumed_tx.send(()).expect("the writer thread runs");
    let response = connection.read_response();
    writer.join().expect("the writer thread");
    assert_from_upstream(&response, "the upload, released");
    let hits = upstream.wait_for(1);
    assert_eq!(hits.len(), 1, "the upload reached the upstream once");
    assert_eq!(hits[0].path, "/upload");
    assert_body(&hits[0], body);

    // The whole body was read: the connection goes on with the next request.
    let after = connection.round_trip(&seq_request("/after", 1).keep_alive());
    assert_from_upstream(&after, "a request after the upload on the same connection");
    wait_for_held_count(&nginx, 1);
    let mut figures = counters(port, "");
    wait_until(BOUND, "nothing held or in flight", || {
        figures = counters(port, "");
        figures.held_now == 0 && figures.in_flight == 0
    });
    assert_eq!(figures.released, 1, "{figures:?}");
    assert_no_serious_lines(&nginx);
    drop(connection);
    nginx.stop();
}

#[test]
fn a_300_kb_upload_still_being_sent_while_held_reaches_the_upstream_whole() {
    let body = upload_body();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nX-Seq: 0\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    upload_while_held(&head, body.clone(), &body);
}

#[test]
fn a_chunked_upload_still_being_sent_while_held_reaches_the_upstream_whole() {
    let body = upload_body();
    let head = "POST /upload HTTP/1.1\r\nHost: localhost\r\nX-Seq: 0\r\n\
                Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    upload_while_held(head, chunked(&body), &body);
}
