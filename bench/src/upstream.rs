//! The upstream every configuration under test proxies to: a small HTTP/1.1
//! server on one thread that records the order in which requests reach it.
//!
//! Order is the order of `accept()` when every request comes on a connection
//! of its own: the kernel queues connections in the order their handshakes
//! completed, which is the order the proxy called `connect()`, with no noise
//! from this server's own scheduling. A request that asks to close (nginx's
//! default HTTP/1.0 to upstreams, HAProxy's `http-server-close`) gets its
//! connection closed after its answer. A request that does not may be
//! followed by others on the same connection (nginx's `keepalive`, HAProxy's
//! connection reuse): then the order is the order the kernel received them
//! in (`arrived`, its receive time stamps).
//!
//! Paths:
//! - `/r/<seq>`: answered `200`, and `<seq>` (the client's send position) is
//!   recorded with its accept position and the `X-Worker` header, if any.
//! - `/__hang`: never answered (holds HAProxy's one server slot; see servers.rs).
//! - `/__order`: answers the recorded requests, one `accept seq worker
//!   arrived ticket new` line each, and forgets them.
//! - anything else: answered `200`, not recorded (throughput runs).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};

/// Deeper than anything released at once; the kernel caps it at somaxconn,
/// which scripts/bench raises (an overflowing SYN is retried a second later).
const LISTEN_BACKLOG: u32 = 65535;
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
const ANSWER_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The position of its connection in accept order.
    pub accepted: u64,
    pub seq: u64,
    pub worker: u64,
    /// When the kernel received it (ns on the wall clock): the order of
    /// requests that came on kept-alive connections.
    pub arrived: u64,
    /// Its `X-Ticket` header, if any: its place in the order nginx received
    /// the requests (`$intermission_ticket`).
    pub ticket: Option<u64>,
    /// The first request on its connection: the proxy opened one for it
    /// (with kept-alive connections, one it had no idle connection for).
    pub new_connection: bool,
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
        stamp_arrivals(socket.as_raw_fd());
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
    let mut served = 0u64;
    loop {
        let Some((head, received_ns)) = read_head(&stream, &mut buf, &mut chunk).await else {
            return;
        };
        let mut request_line = head.split(' ');
        let target = request_line.nth(1).unwrap_or("");
        let http_1_0 = head
            .lines()
            .next()
            .is_some_and(|line| line.ends_with("HTTP/1.0"));
        let closes = http_1_0
            || header(&head, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if target == "/__hang" {
            // Wait for the peer to give up; never answer.
            while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
            return;
        }
        if target == "/__order" {
            let body = order_lines(&std::mem::take(&mut *log.borrow_mut()));
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
            let ticket = header(&head, "x-ticket").and_then(|t| t.parse().ok());
            log.borrow_mut().push(Arrival {
                accepted,
                seq,
                worker,
                arrived: received_ns,
                ticket,
                new_connection: served == 0,
            });
        }
        served += 1;
        if closes {
            let _ = stream.write_all(ANSWER).await;
            return;
        }
        if stream.write_all(ANSWER_KEEP_ALIVE).await.is_err() {
            return;
        }
    }
}

/// The head of the next request on the connection (its bytes taken out of
/// `buf`), and when the kernel received its first bytes; `None` once the
/// connection ends (or sends a head of over 64 KiB).
async fn read_head(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Option<(String, u64)> {
    let mut received_ns = 0;
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some((head, received_ns));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match read_stamped(stream, chunk).await {
            Ok((0, _)) | Err(_) => return None,
            Ok((n, stamp)) => {
                if buf.is_empty() {
                    received_ns = stamp;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The `/__order` answer's body: one `accept seq worker arrived ticket new`
/// line per recorded request.
fn order_lines(arrivals: &[Arrival]) -> String {
    arrivals
        .iter()
        .map(|a| {
            let ticket = a.ticket.map_or("-".to_owned(), |t| t.to_string());
            format!(
                "{} {} {} {} {ticket} {}\n",
                a.accepted,
                a.seq,
                a.worker,
                a.arrived,
                u8::from(a.new_connection)
            )
        })
        .collect()
}

/// Asks the kernel to stamp what the connections of this listening socket
/// receive with the time it arrived (`SO_TIMESTAMPNS`): with requests on many
/// kept-alive connections, the order this one thread gets round to reading
/// them in is not the order they came in (it reads one connection's next
/// request before another's earlier one), but the kernel's stamps are. Set on
/// the listener, which accepted connections inherit it from: set on each
/// connection once accepted, what arrived before had no stamp (0) while no
/// other socket asked for stamps.
fn stamp_arrivals(listener: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a valid int option.
    unsafe {
        libc::setsockopt(
            listener,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        );
    }
}

/// Reads what is there, with the kernel's receive time of it in nanoseconds
/// (the wall clock; 0 if the kernel gave none).
async fn read_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv_stamped(stream.as_raw_fd(), buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; its pointers are set below to the
    // iovec and control buffer, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is an open socket; msg points at live buffers.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = 0;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled in,
    // within msg_controllen; a SCM_TIMESTAMPNS message holds a timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let time = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                stamp = time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
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

/// Parses an `/__order` answer body, sorted by accept position (by arrival
/// with `by_arrival`: requests shared connections).
pub fn parse_order(body: &str, by_arrival: bool) -> Vec<Arrival> {
    let mut arrivals: Vec<Arrival> = body
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some(Arrival {
                accepted: number(0)?,
                seq: number(1)?,
                worker: number(2)?,
                arrived: number(3)?,
                ticket: number(4),
                new_connection: fields.get(5) != Some(&"0"),
            })
        })
        .collect();
    if by_arrival {
        arrivals.sort_by_key(|a| a.arrived);
    } else {
        arrivals.sort_by_key(|a| a.accepted);
    }
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_lines_are_sorted_by_accept_position_or_arrival() {
        let body = "2 7 11 0 - 1\n0 5 10 2 - 0\n1 6 11 1 3 1\njunk\n";
        let seqs = |arrivals: Vec<Arrival>| arrivals.iter().map(|a| a.seq).collect::<Vec<_>>();
        let by_accept = parse_order(body, false);
        assert_eq!(by_accept[0].worker, 10);
        assert_eq!(seqs(by_accept), [5, 6, 7]);
        assert_eq!(seqs(parse_order(body, true)), [7, 6, 5]);
        assert_eq!(parse_order(body, false)[1].ticket, Some(3));
        let new: Vec<bool> = parse_order(body, false)
            .iter()
            .map(|a| a.new_connection)
            .collect();
        assert_eq!(new, [false, true, true]);
    }

    #[test]
    fn header_lookup_ignores_case_and_the_request_line() {
        let head = "GET /r/1 HTTP/1.0\r\nHost: x\r\nX-Worker: 42";
        assert_eq!(header(head, "x-worker"), Some("42"));
        assert_eq!(header(head, "get /r/1 http/1.0\r\nhost"), None);
    }
}
