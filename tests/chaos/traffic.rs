//! The campaign's clients: each group of requests runs on a thread of its
//! own, over one connection (HTTP/1.1 closed, kept alive or pipelined, or
//! HTTP/2 streams), and records what became of every request: answered
//! (how, and when), closed without an answer, or given up by the client.
//! Nothing here panics on what nginx does: everything is recorded.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::h2client::{H2Connection, H2Request, Transport};
use crate::scenario::ClientKind;
use crate::upstream::BODY;

/// The longest a client waits for an answer: a bound, so that a request
/// nginx never answers is reported instead of hanging the campaign.
pub const ANSWER_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Answer {
        status: u16,
        from_upstream: bool,
        retry_after: Option<String>,
    },
    /// The connection (or stream) ended without an answer.
    Closed(String),
    /// The client gave up, as planned.
    Left,
    /// No answer within `ANSWER_BOUND`.
    Unanswered,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub seq: usize,
    pub app: usize,
    pub kind: ClientKind,
    /// The first request of its connection.
    pub first: bool,
    pub sent: Instant,
    pub ended: Instant,
    pub end: End,
}

pub type Records = Arc<Mutex<Vec<Record>>>;

/// The request line and headers of request `seq` of app `name`.
fn http1(name: &str, seq: usize, close: bool) -> Vec<u8> {
    format!(
        "GET /?app={name}&seq={seq} HTTP/1.1\r\nHost: localhost\r\nX-Seq: {seq}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// Requests sent together over one connection.
pub struct Group {
    pub kind: ClientKind,
    pub app: usize,
    /// The app's name.
    pub name: String,
    pub seqs: Vec<usize>,
    /// The client gives up this long after sending.
    pub leave: Option<Duration>,
}

/// Sends `group` to `port` (`h2_port` for HTTP/2) and records its ends.
pub fn run_group(port: u16, h2_port: u16, group: Group, records: &Records) {
    let Group {
        kind,
        app,
        name,
        seqs,
        leave,
    } = group;
    let sent = Instant::now();
    let ends = match kind {
        ClientKind::H2c(_) => h2_group(h2_port, &name, &seqs, leave),
        _ => http1_group(port, kind, &name, &seqs, leave),
    };
    let mut records = records.lock().unwrap();
    for (i, (seq, (end, ended))) in seqs.into_iter().zip(ends).enumerate() {
        records.push(Record {
            seq,
            app,
            kind,
            first: i == 0,
            sent,
            ended,
            end,
        });
    }
}

fn http1_group(
    port: u16,
    kind: ClientKind,
    name: &str,
    seqs: &[usize],
    leave: Option<Duration>,
) -> Vec<(End, Instant)> {
    let stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(e) => {
            let now = Instant::now();
            return seqs
                .iter()
                .map(|_| (End::Closed(format!("connect: {e}")), now))
                .collect();
        }
    };
    let close = kind == ClientKind::Close;
    let mut bytes = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        // The last of a pipelined group asks nginx to close after it.
        bytes.extend(http1(
            name,
            seq,
            close || (i + 1 == seqs.len() && seqs.len() > 1),
        ));
    }
    let start = Instant::now();
    let mut ends = Vec::new();
    if let Err(e) = (&stream).write_all(&bytes) {
        let now = Instant::now();
        return seqs
            .iter()
            .map(|_| (End::Closed(format!("write: {e}")), now))
            .collect();
    }
    let give_up = start + leave.unwrap_or(ANSWER_BOUND);
    let on_give_up = if leave.is_some() {
        End::Left
    } else {
        End::Unanswered
    };
    let mut buffer = Vec::new();
    while ends.len() < seqs.len() {
        match read_answer(&stream, &mut buffer, give_up, &on_give_up) {
            Ok(end) => ends.push((end, Instant::now())),
            Err(end) => {
                let now = Instant::now();
                while ends.len() < seqs.len() {
                    ends.push((end.clone(), now));
                }
            }
        }
    }
    ends
}

/// Reads one answer from `stream` (what is past it stays in `buffer`).
/// `Err` with how the connection ended, or `on_give_up` when no whole
/// answer came by `give_up` (the client leaves then, or the bound passed).
fn read_answer(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    give_up: Instant,
    on_give_up: &End,
) -> Result<End, End> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((end, used)) = parse_answer(buffer) {
            buffer.drain(..used);
            return Ok(end);
        }
        let now = Instant::now();
        if now >= give_up {
            return Err(on_give_up.clone());
        }
        let _ = stream.set_read_timeout(Some((give_up - now).max(Duration::from_millis(1))));
        match (&*stream).read(&mut chunk) {
            Ok(0) => {
                // Closed: an answer without a length ends here.
                return parse_closed(buffer)
                    .ok_or_else(|| End::Closed(format!("closed after {} bytes", buffer.len())));
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(End::Closed(e.to_string())),
        }
    }
}

/// A whole answer at the start of `bytes`, and its length.
fn parse_answer(bytes: &[u8]) -> Option<(End, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")?.parse().ok()?;
    if bytes.len() < head_end + length {
        return None;
    }
    let body = &bytes[head_end..head_end + length];
    Some((answer_of(&head, body), head_end + length))
}

/// An answer whose end is the connection's.
fn parse_closed(bytes: &[u8]) -> Option<End> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    Some(answer_of(&head, &bytes[head_end..]))
}

fn answer_of(head: &str, body: &[u8]) -> End {
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    End::Answer {
        status,
        from_upstream: body == BODY.as_bytes(),
        retry_after: header(head, "retry-after").map(str::to_owned),
    }
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn h2_group(port: u16, name: &str, seqs: &[usize], leave: Option<Duration>) -> Vec<(End, Instant)> {
    let connected = std::panic::catch_unwind(|| H2Connection::connect(port, Transport::H2c));
    let Ok(mut connection) = connected else {
        let now = Instant::now();
        return seqs
            .iter()
            .map(|_| (End::Closed("HTTP/2 connect failed".into()), now))
            .collect();
    };
    let streams: Vec<_> = seqs
        .iter()
        .map(|&seq| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                connection
                    .start(H2Request::get(&format!("/?app={name}&seq={seq}")).header("x-seq", seq))
            }))
            .ok()
        })
        .collect();
    let start = Instant::now();
    if let Some(leave) = leave {
        // Leaves the unanswered ones: a reset of each, then the connection.
        while start.elapsed() < leave
            && streams.iter().flatten().any(|stream| !stream.is_answered())
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let answered: Vec<bool> = streams
            .iter()
            .map(|s| s.as_ref().is_some_and(|s| s.is_answered()))
            .collect();
        let mut ends = Vec::new();
        for (stream, answered) in streams.into_iter().zip(answered) {
            match stream {
                Some(stream) if answered => ends.push((h2_end(stream), Instant::now())),
                Some(stream) => {
                    stream.reset();
                    ends.push((End::Left, Instant::now()));
                }
                None => ends.push((End::Closed("stream not opened".into()), Instant::now())),
            }
        }
        connection.close();
        return ends;
    }
    let ends = streams
        .into_iter()
        .map(|stream| match stream {
            Some(stream) => (h2_end(stream), Instant::now()),
            None => (End::Closed("stream not opened".into()), Instant::now()),
        })
        .collect();
    connection.close();
    ends
}

fn h2_end(stream: crate::h2client::H2Stream) -> End {
    match stream.outcome() {
        Ok(response) => End::Answer {
            status: response.status,
            from_upstream: response.body == BODY.as_bytes(),
            retry_after: response
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
        Err(e) if e.starts_with("not ended") => End::Unanswered,
        Err(e) => End::Closed(e),
    }
}
