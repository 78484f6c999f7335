//! The load client: opens thousands of connections from one thread, sends one
//! request on each in a known order, and records when each answer completed.
//!
//! Requests are `GET /r/<seq>` where `<seq>` is the send position, so the
//! upstream's record says which request it got in which place. Every request
//! asks for `Connection: close`; an answer is complete when the server closes.
//! The soak's kept-alive clients use `exchange`, which reads one answer by
//! its Content-Length instead.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;

use crate::upstream::{find, header};

/// How long any one answer may take before the run counts it as lost. Only a
/// bound so that a broken build ends the run; never a measurement.
pub const ANSWER_BOUND: Duration = Duration::from_secs(120);

/// One answer as the client saw it.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
    pub completed: Instant,
}

/// Requests in flight: entry `i` is the request sent `i`-th.
pub struct InFlight {
    tasks: Vec<JoinHandle<Option<Answer>>>,
}

impl InFlight {
    /// No requests.
    pub fn none() -> InFlight {
        InFlight { tasks: vec![] }
    }

    /// Waits for every answer (`None` for a request that got none in time).
    pub async fn answers(self) -> Vec<Option<Answer>> {
        let mut answers = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            answers.push(task.await.ok().flatten());
        }
        answers
    }
}

pub fn request(seq: usize, host: &str) -> Vec<u8> {
    format!("GET /r/{seq} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Opens `n` connections one after another and sends request `i` on the
/// `i`-th before opening the next, so the send order is the order of the index.
/// With `gap`, waits that long after each request: near its
/// `worker_connections`, nginx closes connections it has accepted but not
/// read a request from yet to make room for new ones ("reusing
/// connections"), which a gap long enough for it to read each request
/// avoids.
pub async fn send_in_order(
    addr: SocketAddr,
    host: &str,
    n: usize,
    gap: Option<Duration>,
) -> io::Result<InFlight> {
    let mut tasks = Vec::with_capacity(n);
    for seq in 0..n {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&request(seq, host)).await?;
        tasks.push(tokio::task::spawn_local(read_answer(stream)));
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
    }
    Ok(InFlight { tasks })
}

/// Connects `n` sockets without sending anything.
pub async fn connect_all(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Sends request `i` on connection `i`, all at once, and returns when the
/// first was sent: the no-pause floor the releases are compared against.
pub async fn burst(streams: Vec<TcpStream>, host: &str) -> io::Result<(Instant, InFlight)> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(streams.len());
    for (seq, mut stream) in streams.into_iter().enumerate() {
        stream.write_all(&request(seq, host)).await?;
        tasks.push(tokio::task::spawn_local(read_answer(stream)));
    }
    Ok((started, InFlight { tasks }))
}

pub async fn read_answer(mut stream: TcpStream) -> Option<Answer> {
    let read = async {
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            if head.len() < 16 {
                head.extend_from_slice(&chunk[..n]);
            }
        }
        let completed = Instant::now();
        Some(Answer {
            status: status_of(&head)?,
            completed,
        })
    };
    tokio::time::timeout(ANSWER_BOUND, read)
        .await
        .ok()
        .flatten()
}

/// The status code of an HTTP/1.x status line.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.strip_prefix(b"HTTP/1.")?;
    std::str::from_utf8(line.get(2..5)?).ok()?.parse().ok()
}

/// What a kept-alive client needs from the head of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerHead {
    pub status: u16,
    /// Bytes of the head, up to and including the blank line.
    pub head_len: usize,
    pub content_length: usize,
    /// HTTP/1.1 without `Connection: close`: the server reads another request.
    pub keep_alive: bool,
}

/// The head of the answer at the start of `bytes`: `Ok(None)` while it is
/// incomplete; an error for an answer without a status or a Content-Length
/// (the upstream sends one, nginx passes it on; nothing here is chunked).
pub fn answer_head(bytes: &[u8]) -> io::Result<Option<AnswerHead>> {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        return Ok(None);
    };
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let status = status_of(bytes).ok_or_else(|| invalid("an answer without a status line"))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let content_length = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("an answer without a Content-Length"))?;
    let closes = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok(Some(AnswerHead {
        status,
        head_len: end + 4,
        content_length,
        keep_alive: bytes.starts_with(b"HTTP/1.1 ") && !closes,
    }))
}

/// Sends `request` on an open connection and reads its one answer, framed by
/// its Content-Length, so that the connection can carry the next request.
/// Returns the answer's head.
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> io::Result<AnswerHead> {
    stream.write_all(request).await?;
    let mut received = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the answer ended",
            ));
        }
        received.extend_from_slice(&chunk[..n]);
        if let Some(head) = answer_head(&received)? {
            let answer_len = head.head_len + head.content_length;
            if received.len() == answer_len {
                return Ok(head);
            }
            if received.len() > answer_len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bytes after the answer to the one request sent",
                ));
            }
        }
    }
}

/// One `GET` on a fresh connection: status and body.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(ANSWER_BOUND, stream.read_to_end(&mut reply))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("GET {path}")))??;
    let status = status_of(&reply).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("GET {path}: no status"))
    })?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `n` `GET`s of `path` at once, each on its own connection; returns when
/// every answer is in, with how many were not 200. What keeps proxies'
/// upstream connection pools warm, as production traffic keeps them.
pub async fn concurrent_gets(
    addr: SocketAddr,
    host: &str,
    path: &str,
    n: usize,
) -> io::Result<usize> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        tasks.push(tokio::task::spawn_local(read_answer(stream)));
    }
    let mut failed = 0;
    for task in tasks {
        if !matches!(task.await.ok().flatten(), Some(a) if a.status == 200) {
            failed += 1;
        }
    }
    Ok(failed)
}

/// Opens a connection and sends a request that is not expected to finish (the
/// request that holds HAProxy's server slot); the caller keeps it open.
pub async fn send_unanswered(addr: SocketAddr, host: &str, path: &str) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    Ok(stream)
}

/// One command on HAProxy's admin socket; returns its answer.
pub async fn haproxy_command(socket: &Path, command: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket).await?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 502 Bad Gateway"), Some(502));
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(status_of(b"SSH-2.0"), None);
    }

    #[test]
    fn answer_heads() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";
        let head = answer_head(answer).unwrap().unwrap();
        assert_eq!(
            head,
            AnswerHead {
                status: 200,
                head_len: answer.len() - 3,
                content_length: 3,
                keep_alive: true,
            }
        );
        assert_eq!(answer_head(&answer[..20]).unwrap(), None);
    }

    #[test]
    fn answers_that_end_the_connection() {
        let closing = b"HTTP/1.1 503 Busy\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n";
        let head = answer_head(closing).unwrap().unwrap();
        assert_eq!((head.status, head.keep_alive), (503, false));
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(!answer_head(http10).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn answers_without_framing_are_refused() {
        assert!(answer_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(answer_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn requests_carry_their_send_position() {
        let text = String::from_utf8(request(17, "bench")).unwrap();
        assert!(text.starts_with("GET /r/17 HTTP/1.1\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }
}
