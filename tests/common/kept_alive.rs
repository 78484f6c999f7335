//! An upstream for proxies that keep their connections alive: each
//! connection is served by a thread of its own, request after request, and
//! each request is recorded with the time the kernel received it
//! (`SO_TIMESTAMPNS`), so that the order requests came in over many
//! connections is known exactly, whatever order the threads run in.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::upstream::listen_on_loopback;
use super::{poll_until, BOUND, UPSTREAM_BODY};

/// One request, as the kept-alive upstream received it.
#[derive(Clone, Debug)]
pub struct StampedHit {
    /// The client's `X-Seq`.
    pub seq: usize,
    /// `X-Ticket` (`$intermission_ticket`), if sent.
    pub ticket: Option<u64>,
    /// When the kernel received its first bytes (ns, wall clock).
    pub received_ns: u64,
    /// The first request on its connection: the proxy opened the
    /// connection for it.
    pub new_connection: bool,
}

pub struct KeptAliveUpstream {
    port: u16,
    answer_after: Duration,
    hits: Arc<Mutex<Vec<StampedHit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeptAliveUpstream {
    /// Answers each request `answer_after` it was read: a slow upstream
    /// keeps its connections busy, so the proxy opens more.
    pub fn start(answer_after: Duration) -> KeptAliveUpstream {
        let (listener, port) = listen_on_loopback();
        stamp_arrivals(&listener);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (hits, stop) = (hits.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let hits = hits.clone();
                        thread::spawn(move || serve_connection(stream, &hits, answer_after));
                    }
                }
            }
        });
        KeptAliveUpstream {
            port,
            answer_after,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until at least `n` requests arrived; returns them in the order
    /// the kernel received them.
    pub fn wait_for(&self, n: usize) -> Vec<StampedHit> {
        let count = || self.hits.lock().unwrap().len();
        assert!(
            poll_until(BOUND, || count() >= n),
            "upstream got {} of {n} requests within {BOUND:?}",
            count()
        );
        let mut hits = self.hits.lock().unwrap().clone();
        let unstamped = hits.iter().filter(|hit| hit.received_ns == 0).count();
        assert_eq!(unstamped, 0, "requests without the kernel's receive time");
        hits.sort_by_key(|hit| hit.received_ns);
        hits
    }
}

impl Drop for KeptAliveUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(stream: TcpStream, hits: &Mutex<Vec<StampedHit>>, answer_after: Duration) {
    use std::io::Write;
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut first_stamp = 0;
    let mut served = 0;
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match recv_stamped(&stream, &mut chunk) {
                Some((0, _)) | None => return,
                Some((n, stamp)) => {
                    if pending.is_empty() {
                        first_stamp = stamp;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                    continue;
                }
            }
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end + 4);
        let header = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        if let Some(seq) = header("x-seq").and_then(|s| s.parse().ok()) {
            hits.lock().unwrap().push(StampedHit {
                seq,
                ticket: header("x-ticket").and_then(|t| t.parse().ok()),
                received_ns: first_stamp,
                new_connection: served == 0,
            });
        }
        served += 1;
        thread::sleep(answer_after);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{UPSTREAM_BODY}",
            UPSTREAM_BODY.len()
        );
        if (&stream).write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Asks the kernel to stamp what the listener's connections receive with its
/// receive time (`SO_TIMESTAMPNS`; accepted connections inherit it, so even
/// their first bytes, which may arrive before they are accepted, have one).
fn stamp_arrivals(listener: &TcpListener) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with an int option.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        );
    }
}

/// Reads what is there, with the kernel's receive time of it (0 if none).
fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> Option<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to the iovec
    // and the control buffer, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: an open socket; msg points at live buffers.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut stamp = 0;
    // SAFETY: the CMSG macros walk the control data recvmsg wrote, within
    // msg_controllen; an SCM_TIMESTAMPNS message holds a timespec.
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
    Some((n as usize, stamp))
}
