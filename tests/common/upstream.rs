//! A recording upstream: one thread accepts connections strictly in the
//! kernel's order, records each request and answers `200 OK`. And a gated
//! one, which keeps every request in flight until the test opens the gate.
//!
//! The listening socket has a 4096 backlog (std's default of 128 overflows
//! when nginx releases hundreds of requests at once, and overflowing SYNs are
//! retried later, out of order).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{poll_until, scaled, BOUND};

/// The body of every upstream answer, so a test can tell them from nginx's own.
pub const UPSTREAM_BODY: &str = "hello from upstream\n";

/// One request the upstream received.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Position in accept order, from 0.
    pub index: usize,
    /// The request target, as nginx sent it.
    pub path: String,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The request body (as long as its Content-Length says).
    pub body: Vec<u8>,
    /// When the upstream had read it.
    pub at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The client's `X-Seq` header (the order the test sent requests in).
    pub fn seq(&self) -> usize {
        let seq = self
            .header("x-seq")
            .unwrap_or_else(|| panic!("upstream request without X-Seq: {self:?}"));
        seq.parse().unwrap_or_else(|_| panic!("bad X-Seq {seq:?}"))
    }

    /// The `X-Worker` header: pid of the nginx worker that proxied the request.
    pub fn worker(&self) -> &str {
        self.header("x-worker")
            .unwrap_or_else(|| panic!("upstream request without X-Worker: {self:?}"))
    }
}

/// X-Seq of every hit, in accept order.
pub fn seqs(hits: &[Hit]) -> Vec<usize> {
    hits.iter().map(Hit::seq).collect()
}

/// X-Seq of every hit in accept order, per nginx worker.
pub fn seqs_by_worker(hits: &[Hit]) -> BTreeMap<String, Vec<usize>> {
    let mut by_worker: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for hit in hits {
        by_worker
            .entry(hit.worker().to_owned())
            .or_default()
            .push(hit.seq());
    }
    by_worker
}

/// A listening socket on 127.0.0.1 with a deep backlog (see above), and its
/// port.
pub fn listen_on_loopback() -> (TcpListener, u16) {
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("upstream socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("upstream bind");
    socket.listen(4096).expect("upstream listen");
    let listener: TcpListener = socket.into();
    let port = listener.local_addr().expect("upstream address").port();
    (listener, port)
}

pub struct Upstream {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let (listener, port) = listen_on_loopback();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn({
                let (hits, stop) = (hits.clone(), stop.clone());
                move || serve(listener, &hits, &stop)
            })
            .expect("upstream thread");
        Upstream {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything received so far, in accept order.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived, and returns all of them.
    pub fn wait_for(&self, n: usize) -> Vec<Hit> {
        let arrived = poll_until(BOUND, || self.count() >= n);
        assert!(
            arrived,
            "upstream got {} of {n} requests within {BOUND:?}",
            self.count()
        );
        self.hits()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call up.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, hits: &Mutex<Vec<Hit>>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let Some(mut hit) = read_request(&mut stream) else {
            continue;
        };
        {
            let mut hits = hits.lock().unwrap();
            hit.index = hits.len();
            hits.push(hit);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UPSTREAM_BODY}",
            UPSTREAM_BODY.len()
        );
        let _ = stream.write_all(answer.as_bytes());
    }
}

/// Reads a request (head, then a Content-Length body), as a hit still to be
/// numbered; None for a connection that sent none.
fn read_request(stream: &mut TcpStream) -> Option<Hit> {
    stream
        .set_read_timeout(Some(scaled(Duration::from_secs(10))))
        .ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw.split_off(head_end);
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Hit {
        index: 0,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// An upstream that reads each request and answers none until `open` is
/// called: the requests stay in flight as long as the test wants.
pub struct GatedUpstream {
    port: u16,
    waiting: Arc<Mutex<Vec<TcpStream>>>,
    received: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GatedUpstream {
    pub fn start() -> GatedUpstream {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("gated upstream bind");
        let port = listener
            .local_addr()
            .expect("gated upstream address")
            .port();
        let waiting = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name(format!("gated-upstream-{port}"))
            .spawn({
                let (waiting, received, stop) = (waiting.clone(), received.clone(), stop.clone());
                move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(mut stream) = stream else { continue };
                        if read_request(&mut stream).is_some() {
                            waiting.lock().unwrap().push(stream);
                            *received.lock().unwrap() += 1;
                        }
                    }
                }
            })
            .expect("gated upstream thread");
        GatedUpstream {
            port,
            waiting,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests received so far (answered or not).
    pub fn received(&self) -> usize {
        *self.received.lock().unwrap()
    }

    pub fn wait_for(&self, n: usize) {
        let arrived = poll_until(BOUND, || self.received() >= n);
        assert!(
            arrived,
            "gated upstream got {} of {n} requests within {BOUND:?}",
            self.received()
        );
    }

    /// Answers every request waiting so far.
    pub fn open(&self) {
        for mut stream in self.waiting.lock().unwrap().drain(..) {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UPSTREAM_BODY}",
                UPSTREAM_BODY.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    }
}

impl Drop for GatedUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.waiting.lock().unwrap().clear();
    }
}
