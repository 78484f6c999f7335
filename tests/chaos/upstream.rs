//! The campaign's upstream: answers every request (a thread per
//! connection), records when each arrived and what nginx said of it, and
//! behaves as the campaign asks for a while: slow, resetting, or down.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::scenario::UpstreamMode;

pub const BODY: &str = "hello from upstream\n";

/// One request the upstream read.
#[derive(Clone, Debug)]
pub struct Hit {
    pub seq: usize,
    /// `$intermission_outcome` as nginx proxied it.
    pub outcome: String,
    pub at: Instant,
}

struct Shared {
    hits: Mutex<Vec<Hit>>,
    mode: Mutex<UpstreamMode>,
    stop: AtomicBool,
}

pub struct ChaosUpstream {
    handle: Handle,
}

/// What sets the upstream's mode, from any thread.
#[derive(Clone)]
pub struct Handle {
    port: u16,
    shared: Arc<Shared>,
    listener: Arc<Mutex<Option<TcpListener>>>,
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(4096)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl ChaosUpstream {
    pub fn start() -> ChaosUpstream {
        let listener = listen(0).expect("the upstream listens");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            hits: Mutex::new(Vec::new()),
            mode: Mutex::new(UpstreamMode::Normal),
            stop: AtomicBool::new(false),
        });
        let listener = Arc::new(Mutex::new(Some(listener)));
        let (theirs, their_listener) = (shared.clone(), listener.clone());
        thread::spawn(move || accept_loop(&theirs, &their_listener));
        ChaosUpstream {
            handle: Handle {
                port,
                shared,
                listener,
            },
        }
    }

    pub fn port(&self) -> u16 {
        self.handle.port
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn set_mode(&self, mode: UpstreamMode) {
        self.handle.set_mode(mode);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.handle.shared.hits.lock().unwrap().clone()
    }
}

impl Handle {
    /// Behaves as `mode` from now on. `Down` closes the listening socket
    /// (connections are refused); leaving it listens again on the port.
    pub fn set_mode(&self, mode: UpstreamMode) {
        let mut listener = self.listener.lock().unwrap();
        match mode {
            UpstreamMode::Down => *listener = None,
            _ if listener.is_none() => {
                // The port may be held for a moment by connections closing.
                for _ in 0..100 {
                    if let Ok(l) = listen(self.port) {
                        *listener = Some(l);
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            _ => {}
        }
        *self.shared.mode.lock().unwrap() = mode;
    }
}

impl Drop for ChaosUpstream {
    fn drop(&mut self) {
        self.handle.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &Mutex<Option<TcpListener>>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = listener.lock().unwrap().as_ref().map(TcpListener::accept);
        match accepted {
            Some(Ok((stream, _))) => {
                let shared = shared.clone();
                thread::spawn(move || serve(&shared, stream));
            }
            _ => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Answers the requests of one connection (nginx may keep it alive).
fn serve(shared: &Shared, stream: TcpStream) {
    let mode = *shared.mode.lock().unwrap();
    if mode == UpstreamMode::Resetting {
        // Closed with unread data: the kernel resets the connection.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        return;
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
    let mut writer = stream;
    loop {
        let (mut seq, mut outcome, mut length) = (None, String::new(), 0usize);
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "x-seq" => seq = value.parse().ok(),
                    "x-outcome" => outcome = value.to_owned(),
                    "content-length" => length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        if let Some(seq) = seq {
            shared.hits.lock().unwrap().push(Hit {
                seq,
                outcome,
                at: Instant::now(),
            });
        }
        // The mode is read, and its lock let go, before the sleep: the
        // connections are slow side by side, not one after another.
        let mode = *shared.mode.lock().unwrap();
        if let UpstreamMode::Slow(ms) = mode {
            thread::sleep(Duration::from_millis(ms));
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
