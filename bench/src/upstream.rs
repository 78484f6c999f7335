//! The upstream every configuration under test proxies to: a small HTTP/1.1
//! server on one thread that records the order in which requests reach it.
//!
//! Order is the order of `accept()`: the kernel queues connections in the order
//! their handshakes completed, which is the order the proxy called `connect()`.
//! Both proxies open a new upstream connection per request here (nginx's
//! default HTTP/1.0 to upstreams, and this server closes every connection after
//! its answer), so accept order is the order the proxy released requests in,
//! with no noise from this server's own scheduling.
//!
//! Paths:
//! - `/r/<seq>`: answered `200`, and `<seq>` (the client's send position) is
//!   recorded with its accept position and the `X-Worker` header, if any.
//! - `/__hang`: never answered (holds HAProxy's one server slot; see servers.rs).
//! - `/__order`: answers the recorded requests, one `accept seq worker` line
//!   each, and forgets them.
//! - anything else: answered `200`, not recorded (throughput runs).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Deeper than anything released at once; the kernel caps it at somaxconn,
/// which scripts/bench raises (an overflowing SYN is retried a second later).
const LISTEN_BACKLOG: u32 = 65535;
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub accepted: u64,
    pub seq: u64,
    pub worker: u64,
}

type Log = Rc<RefCell<Vec<Arrival>>>;

/// Serves until killed.
pub fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let log: Log = Rc::default();
        let mut accepted = 0u64;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(pair) => pair,
                // Out of descriptors or similar: let the backlog hold it.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            let position = accepted;
            accepted += 1;
            tokio::task::spawn_local(answer(stream, position, log.clone()));
        }
    })
}

async fn answer(mut stream: TcpStream, accepted: u64, log: Log) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let target = head.split(' ').nth(1).unwrap_or("");
    if target == "/__hang" {
        // Wait for the peer to give up; never answer.
        while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
        return;
    }
    if target == "/__order" {
        let arrivals = std::mem::take(&mut *log.borrow_mut());
        let body: String = arrivals
            .iter()
            .map(|a| format!("{} {} {}\n", a.accepted, a.seq, a.worker))
            .collect();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        return;
    }
    if let Some(seq) = target.strip_prefix("/r/").and_then(|s| s.parse().ok()) {
        let worker = header(&head, "x-worker")
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        log.borrow_mut().push(Arrival {
            accepted,
            seq,
            worker,
        });
    }
    let _ = stream.write_all(ANSWER).await;
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a request or answer head (its first line skipped).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Parses an `/__order` answer body, sorted by accept position.
pub fn parse_order(body: &str) -> Vec<Arrival> {
    let mut arrivals: Vec<Arrival> = body
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ').map(|f| f.parse::<u64>().ok());
            Some(Arrival {
                accepted: fields.next()??,
                seq: fields.next()??,
                worker: fields.next()??,
            })
        })
        .collect();
    arrivals.sort_by_key(|a| a.accepted);
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_lines_are_sorted_by_accept_position() {
        let arrivals = parse_order("2 7 11\n0 5 10\n1 6 11\njunk\n");
        let seqs: Vec<u64> = arrivals.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(arrivals[0].worker, 10);
    }

    #[test]
    fn header_lookup_ignores_case_and_the_request_line() {
        let head = "GET /r/1 HTTP/1.0\r\nHost: x\r\nX-Worker: 42";
        assert_eq!(header(head, "x-worker"), Some("42"));
        assert_eq!(header(head, "get /r/1 http/1.0\r\nhost"), None);
    }
}
