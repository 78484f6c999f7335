//! A minimal HTTP/1.1 client: one request per TCP connection, `Connection:
//! close` unless asked to keep the connection alive (then the answer is read
//! by its length and the connection can stay open, idle, as a browser's
//! does), blocking std sockets whose timeouts are only bounds.
//!
//! A request can be sent and answered at once (`Request::send`) or started and
//! left waiting (`Request::start` gives a `Pending`): held requests need no
//! thread, the kernel keeps their answer until the test reads it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{poll_until, scaled, sockdiag, BOUND};

#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    source: Option<Ipv4Addr>,
    keep_alive: bool,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Self {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            source: None,
            keep_alive: false,
        }
    }

    /// Sends no `Connection: close`: nginx keeps the connection open after
    /// its answer (see `Pending::finish_keeping_open`).
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// Adds a header; the value may hold any bytes but CR and LF.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// A request body (sent with its Content-Length).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Connects from this loopback address (any of 127.0.0.0/8) instead of 127.0.0.1.
    pub fn source_address(mut self, source: Ipv4Addr) -> Self {
        self.source = Some(source);
        self
    }

    fn describe(&self, port: u16) -> String {
        format!("{} {} (port {port})", self.method, self.target)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let connection = if self.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let mut bytes =
            format!("{} {} HTTP/1.1\r\n{connection}", self.method, self.target).into_bytes();
        // `localhost` unless the request names its own.
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            bytes.extend_from_slice(b"Host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || !matches!(self.method.as_str(), "GET" | "HEAD") {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// The request as written on the wire (for `KeepAliveConnection`, or to
    /// send it in parts).
    pub fn bytes(&self) -> Vec<u8> {
        self.to_bytes()
    }

    /// Connects and writes the request; the answer is read later.
    pub fn start(&self, port: u16) -> Pending {
        let what = self.describe(port);
        let stream =
            connect(port, self.source).unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"));
        (&stream)
            .write_all(&self.to_bytes())
            .unwrap_or_else(|e| panic!("{what}: cannot write: {e}"));
        let local_port = stream.local_addr().expect("local address").port();
        Pending {
            stream,
            local_port,
            server_port: port,
            body_len: self.body.len(),
            keep_alive: self.keep_alive,
            what,
        }
    }

    /// Sends the request and reads the whole answer.
    pub fn send(&self, port: u16) -> Response {
        self.start(port).finish()
    }
}

fn connect(port: u16, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(source) = source {
        socket.bind(&SockAddr::from(SocketAddr::from((source, 0))))?;
    }
    socket.connect_timeout(
        &SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port))),
        scaled(BOUND),
    )?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(scaled(BOUND)))?;
    stream.set_write_timeout(Some(scaled(BOUND)))?;
    Ok(stream)
}

/// A request written to nginx whose answer has not been read yet.
pub struct Pending {
    stream: TcpStream,
    local_port: u16,
    server_port: u16,
    /// nginx reads a request body only in the content phase: while a request
    /// is held, up to this many bytes may stay unread in its socket.
    body_len: usize,
    keep_alive: bool,
    what: String,
}

impl Pending {
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Whether nginx answered or closed the connection (nothing is consumed).
    pub fn is_answered(&self) -> bool {
        self.stream.set_nonblocking(true).expect("set_nonblocking");
        let answered = match self.stream.peek(&mut [0u8; 1]) {
            Ok(_) => true, // bytes, or 0 for end of stream
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(_) => true, // reset
        };
        self.stream.set_nonblocking(false).expect("set_nonblocking");
        answered
    }

    /// Waits until nginx has read this request (or already answered it).
    pub fn wait_read(&self) {
        wait_all_read(std::slice::from_ref(self));
    }

    /// Reads the whole answer (nginx closes the connection after it, or, for
    /// a keep-alive request, the answer's length says where it ends).
    pub fn finish(self) -> Response {
        self.finish_keeping_open().0
    }

    /// Reads the whole answer, and returns the connection too: for a
    /// keep-alive request it stays open and idle until dropped.
    pub fn finish_keeping_open(mut self) -> (Response, TcpStream) {
        if self.keep_alive {
            let response = read_by_length(&mut self.stream).unwrap_or_else(|e| {
                panic!("{}: no complete answer within {BOUND:?}: {e}", self.what)
            });
            return (response, self.stream);
        }
        let mut raw = Vec::new();
        if let Err(e) = self.stream.read_to_end(&mut raw) {
            panic!(
                "{}: no complete answer within {BOUND:?}: {e} (got {:?})",
                self.what,
                String::from_utf8_lossy(&raw)
            );
        }
        let response = Response::parse(&raw).unwrap_or_else(|| {
            panic!(
                "{}: malformed answer {:?}",
                self.what,
                String::from_utf8_lossy(&raw)
            )
        });
        (response, self.stream)
    }

    /// Whether nginx process `pid` has this connection open (which worker
    /// accepted it).
    pub fn is_held_by(&self, pid: i32) -> bool {
        super::sockdiag::server_side_inode(self.server_port, self.local_port)
            .is_some_and(|inode| super::procfs::holds_socket(pid, inode))
    }

    /// Closes the connection without reading the answer, as a client that gives up.
    pub fn close(self) {
        drop(self.stream);
    }
}

/// Waits until nginx has read every one of these requests' heads (or
/// answered them). Once it has, nginx has run the request through its phases
/// in the same event: a held request is parked in the module.
pub fn wait_all_read(pending: &[Pending]) {
    let Some(first) = pending.first() else { return };
    let server_port = first.server_port;
    assert!(
        pending.iter().all(|p| p.server_port == server_port),
        "requests to one port at a time"
    );
    let mut unread: Vec<&Pending> = pending.iter().collect();
    let done = poll_until(BOUND, || {
        let unread_bytes = sockdiag::unread_by_client(server_port);
        let head_read = |p: &Pending| {
            unread_bytes
                .get(&p.local_port)
                .is_some_and(|&n| n as usize <= p.body_len)
        };
        unread.retain(|p| !head_read(p) && !p.is_answered());
        unread.is_empty()
    });
    assert!(
        done,
        "nginx did not read {} request(s) within {BOUND:?}, e.g. {}",
        unread.len(),
        unread[0].what
    );
}

/// Reads one answer from a connection that stays open: the head, then as
/// many body bytes as `Content-Length` says (or the chunks, to the last).
fn read_by_length(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let body = &raw[end + 4..];
            let complete = match length {
                Some(length) => body.len() >= length,
                None if head.contains("transfer-encoding: chunked") => {
                    body.windows(5).any(|w| w == b"0\r\n\r\n")
                }
                None => true,
            };
            if complete {
                return Response::parse(&raw)
                    .ok_or_else(|| std::io::Error::other("malformed answer"));
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Response::parse(&raw)
                .ok_or_else(|| std::io::Error::other("connection closed before the answer"));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// One client connection kept alive, as a browser keeps one: requests are
/// written as raw bytes (several may be written before any answer, pipelined)
/// and answers read one after another by their length (`Content-Length` or
/// chunks), whatever is left over kept for the next.
pub struct KeepAliveConnection {
    stream: TcpStream,
    /// Bytes read past the last answer returned.
    buffered: Vec<u8>,
    local_port: u16,
    server_port: u16,
    what: String,
}

impl KeepAliveConnection {
    pub fn open(port: u16) -> KeepAliveConnection {
        let stream =
            connect(port, None).unwrap_or_else(|e| panic!("port {port}: cannot connect: {e}"));
        let local_port = stream.local_addr().expect("local address").port();
        KeepAliveConnection {
            stream,
            buffered: Vec::new(),
            local_port,
            server_port: port,
            what: format!("keep-alive connection {local_port} (port {port})"),
        }
    }

    pub fn describe(&self) -> &str {
        &self.what
    }

    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Writes raw bytes: a request, several, or part of one.
    pub fn write(&mut self, bytes: &[u8]) {
        (&self.stream)
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: cannot write: {e}", self.what));
    }

    /// Writes a request (which should be `keep_alive()`).
    pub fn send(&mut self, request: &Request) {
        self.write(&request.bytes());
    }

    /// Sends a request and reads its answer.
    pub fn round_trip(&mut self, request: &Request) -> Response {
        self.send(request);
        self.read_response()
    }

    /// A control call (GET) on this connection; `action` as for `control`.
    pub fn control(&mut self, action: &str) -> Response {
        self.round_trip(&super::control_request("GET", action).keep_alive())
    }

    /// Another handle on the socket, e.g. for a thread that writes a body
    /// while this one reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("cloning the socket")
    }

    /// Whether nginx has sent anything (or closed the connection) not read yet.
    pub fn is_answered(&self) -> bool {
        if !self.buffered.is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).expect("set_nonblocking");
        let answered = match self.stream.peek(&mut [0u8; 1]) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        self.stream.set_nonblocking(false).expect("set_nonblocking");
        answered
    }

    /// Bytes written to nginx that it has not read from its socket yet
    /// (None once the connection is gone).
    pub fn unread_by_nginx(&self) -> Option<u32> {
        sockdiag::unread_by_client(self.server_port)
            .get(&self.local_port)
            .copied()
    }

    /// Whether nginx process `pid` has this connection open.
    pub fn is_held_by(&self, pid: i32) -> bool {
        sockdiag::server_side_inode(self.server_port, self.local_port)
            .is_some_and(|inode| super::procfs::holds_socket(pid, inode))
    }

    /// Reads the next answer (bounded by the socket timeout).
    pub fn read_response(&mut self) -> Response {
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(len) = answer_length(&self.buffered) {
                let rest = self.buffered.split_off(len);
                let raw = std::mem::replace(&mut self.buffered, rest);
                return Response::parse(&raw).unwrap_or_else(|| {
                    panic!(
                        "{}: malformed answer {:?}",
                        self.what,
                        String::from_utf8_lossy(&raw)
                    )
                });
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "{}: nginx closed the connection before a complete answer (got {:?})",
                    self.what,
                    String::from_utf8_lossy(&self.buffered)
                ),
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "{}: no complete answer within {BOUND:?}: {e} (got {:?})",
                    self.what,
                    String::from_utf8_lossy(&self.buffered)
                ),
            }
        }
    }

    /// Asserts nginx has closed the connection (reads to its end; bytes
    /// that were still coming fail the test).
    pub fn assert_closed(mut self) {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        self.buffered.extend_from_slice(&rest);
        assert!(
            self.buffered.is_empty(),
            "{}: unexpected bytes {:?}",
            self.what,
            String::from_utf8_lossy(&self.buffered)
        );
    }
}

/// The length of the first complete answer in `raw`, if it is all there:
/// its head, then `Content-Length` bytes or its chunks to the last (no
/// trailers); an answer with neither (204, 304) ends with its head.
fn answer_length(raw: &[u8]) -> Option<usize> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().ok()?;
        return (raw.len() >= head_end + length).then_some(head_end + length);
    }
    if header("transfer-encoding").is_some_and(|te| te == "chunked") {
        let mut at = head_end;
        loop {
            let line_end = at + raw[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // The empty line after the last chunk.
                return (raw.len() >= at + 2).then_some(at + 2);
            }
            at += size + 2;
            if raw.len() < at {
                return None;
            }
        }
    }
    Some(head_end)
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Option<Response> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        };
        if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            response.body = dechunk(&response.body)?;
        }
        Some(response)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}
