//! Requests that switch protocols (101: WebSocket) leave the count a drain
//! waits for as their 101 goes out, and are reported apart (`upgraded` in
//! status and metrics) until they close: an open WebSocket never makes a
//! drain fail. Apps' drains are independent of each other.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;

/// An upstream that answers every request `101 Switching Protocols` and then
/// echoes what the client sends until it closes.
fn start_websocket_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\n\r\n",
                );
                let mut buffer = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// nginx with app `shop`: `/ws` proxied as WebSocket to `ws_port`, the rest
/// to `upstream`.
fn start(ws_port: u16, upstream_port: u16) -> Nginx {
    let server = format!(
        "set $app_name shop; \
         location /ws {{ intermission; proxy_http_version 1.1; \
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; \
             proxy_read_timeout 1h; proxy_pass http://127.0.0.1:{ws_port}; }} \
         location / {{ intermission; proxy_pass http://127.0.0.1:{upstream_port}; }} {}",
        control_location()
    );
    Nginx::start(Config::new().workers(2).server(&server))
}

/// A WebSocket client connection: the upgrade request is sent at once.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn open(port: u16) -> WebSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(scaled(BOUND))).unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .expect("write");
        WebSocket { stream }
    }

    /// Reads the answer's head; asserts it is 101; then checks the tunnel
    /// carries bytes both ways.
    fn expect_switched(&mut self) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte).expect("the answer's head");
            assert_eq!(n, 1, "closed before the answer: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        self.stream.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        self.stream.read_exact(&mut echo).expect("the echo");
        assert_eq!(&echo, b"ping");
    }

    fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn wait_for_counts(port: u16, in_flight: u64, upgraded: u64) {
    wait_until(
        BOUND,
        &format!("{in_flight} in flight and {upgraded} upgraded"),
        || {
            let figures = counters(port, "");
            (figures.in_flight, figures.upgraded) == (in_flight, upgraded)
        },
    );
}

#[test]
fn an_open_websocket_is_upgraded_not_in_flight_and_a_drain_succeeds() {
    let upstream = Upstream::start();
    let nginx = start(start_websocket_upstream(), upstream.port());
    let port = nginx.port();
    let mut sockets: Vec<WebSocket> = (0..2).map(|_| WebSocket::open(port)).collect();
    for socket in &mut sockets {
        socket.expect_switched();
    }
    wait_for_counts(port, 0, 2);

    // The drain waits for ordinary requests only: it answers 200 although
    // both WebSockets stay open.
    assert_answer(
        &control(port, "enable?drain=30"),
        200,
        PAUSED,
        "a drain with WebSockets open",
    );
    let metrics = control(port, "metrics").text();
    assert!(
        metrics.contains("\nintermission_upgraded{app=\"shop\"} 2\n")
            && metrics.contains("\nintermission_in_flight{app=\"shop\"} 0\n"),
        "{metrics}"
    );
    resume(port, "");
    for socket in sockets {
        socket.close();
    }
    wait_for_counts(port, 0, 0);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

#[test]
fn a_websocket_held_while_paused_upgrades_after_the_resume() {
    let upstream = Upstream::start();
    let nginx = start(start_websocket_upstream(), upstream.port());
    let port = nginx.port();
    pause(port, "");
    let mut socket = WebSocket::open(port);
    wait_until(BOUND, "the upgrade request to be held", || {
        counters(port, "").held_now == 1
    });
    resume(port, "");
    socket.expect_switched();
    wait_for_counts(port, 0, 1);
    assert_answer(
        &control(port, "enable?drain=30"),
        200,
        PAUSED,
        "a drain with the released WebSocket open",
    );
    resume(port, "");
    socket.close();
    wait_for_counts(port, 0, 0);
    nginx.stop();
}

/// App `a` has a request in flight; a drain of app `b` does not wait for
/// it, and a drain of `a` does. App names come from the request here
/// (`$arg_app`), as they do from `$host` on many sites.
#[test]
fn drains_of_two_apps_are_independent() {
    let gated = GatedUpstream::start();
    let server = format!(
        "{} location / {{ intermission; proxy_pass http://127.0.0.1:{}; }} {}",
        set_app_name("$arg_app"),
        gated.port(),
        control_location()
    );
    let nginx = Nginx::start(Config::new().workers(2).server(&server));
    let port = nginx.port();
    let busy = Request::get("/slow?app=a").start(port);
    gated.wait_for(1);
    assert_eq!(counters(port, "app=a").in_flight, 1);
    for other in ["b", "c", "shop", ""] {
        assert_eq!(
            counters(port, &format!("app={other}")).in_flight,
            0,
            "app {other:?}"
        );
        assert_answer(
            &control(port, &format!("enable?app={other}&drain=30")),
            200,
            PAUSED,
            &format!("the drain of app {other:?}"),
        );
        resume(port, &format!("?app={other}"));
    }
    let answer = control(port, "enable?app=a&drain=1");
    assert_eq!(
        answer.status, 504,
        "app a still has its request: {answer:?}"
    );
    resume(port, "?app=a");
    gated.open();
    assert_eq!(busy.finish().status, 200);
    wait_until(BOUND, "app a to drain", || {
        counters(port, "app=a").in_flight == 0
    });
    thread::sleep(Duration::from_millis(10));
    nginx.stop();
}
