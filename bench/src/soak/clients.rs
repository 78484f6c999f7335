//! The soak's steady load: a fixed number of clients sending `GET /p` in a
//! loop, half on a new connection for every request, half on a kept-alive
//! one; every request counted by its outcome. The load can be stopped for a
//! moment (every request answered, every connection closed) and resumed.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::load;
use crate::servers::{HOST, PROXIED_PATH};

/// Requests a kept-alive client sends on one connection before it opens
/// another, so that kept-alive connections also come and go (and some begin
/// with a held request).
const KEEP_ALIVE_REQUESTS: usize = 100;
/// How long one request may take before it counts as failed: only a bound,
/// so that a request the module never releases ends the soak as a failure
/// instead of hanging it. Held requests wait at most a pause.
const REQUEST_BOUND: Duration = Duration::from_secs(10);
/// Failures described in the summary (all are counted).
pub const FAILURES_DESCRIBED: usize = 10;

/// Every request the load sent, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub sent: u64,
    pub answered_200: u64,
    pub other_status: u64,
    pub connection_errors: u64,
    pub timeouts: u64,
}

impl Requests {
    pub fn failed(&self) -> u64 {
        self.other_status + self.connection_errors + self.timeouts
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadState {
    Running,
    /// Clients finish the request they are on, close their connections and wait.
    Quiet,
    Stopped,
}

/// What the clients share with the driver (one thread: cells suffice).
struct Tally {
    started: Instant,
    requests: Cell<Requests>,
    in_flight: Cell<usize>,
    failures: RefCell<Vec<String>>,
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Answered(u16),
    ConnectionError(io::Error),
    TimedOut,
}

impl Tally {
    fn count(&self, outcome: Outcome) {
        let mut requests = self.requests.get();
        let failure = match outcome {
            Outcome::Answered(200) => {
                requests.answered_200 += 1;
                None
            }
            Outcome::Answered(status) => {
                requests.other_status += 1;
                Some(format!("answered {status}"))
            }
            Outcome::ConnectionError(e) => {
                requests.connection_errors += 1;
                Some(format!("connection error: {e}"))
            }
            Outcome::TimedOut => {
                requests.timeouts += 1;
                Some(format!("no answer within {} s", REQUEST_BOUND.as_secs()))
            }
        };
        self.requests.set(requests);
        let mut failures = self.failures.borrow_mut();
        if let Some(failure) = failure.filter(|_| failures.len() < FAILURES_DESCRIBED) {
            let at = self.started.elapsed().as_secs_f64();
            failures.push(format!("after {at:.3} s: {failure}"));
        }
    }
}

/// The clients, running on the current thread's task set.
pub struct Load {
    state: watch::Sender<LoadState>,
    tally: Rc<Tally>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients: odd ones keep their connection alive, even
    /// ones open one per request.
    pub fn start(addr: SocketAddr, clients: usize) -> Load {
        let (state, watched) = watch::channel(LoadState::Running);
        let tally = Rc::new(Tally {
            started: Instant::now(),
            requests: Cell::default(),
            in_flight: Cell::new(0),
            failures: RefCell::default(),
        });
        let clients = (0..clients)
            .map(|i| {
                tokio::task::spawn_local(client(addr, i % 2 == 1, watched.clone(), tally.clone()))
            })
            .collect();
        Load {
            state,
            tally,
            clients,
        }
    }

    /// Stops sending and returns once every request sent has its outcome.
    pub async fn quiesce(&self) {
        self.state.send_replace(LoadState::Quiet);
        while self.tally.in_flight.get() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn resume(&self) {
        self.state.send_replace(LoadState::Running);
    }

    /// Every request so far, by outcome.
    pub fn requests(&self) -> Requests {
        self.tally.requests.get()
    }

    /// Stops the clients once their requests are answered; what they saw.
    pub async fn stop(self) -> (Requests, Vec<String>) {
        self.state.send_replace(LoadState::Stopped);
        for client in self.clients {
            let _ = client.await;
        }
        (self.tally.requests.get(), self.tally.failures.take())
    }
}

async fn client(
    addr: SocketAddr,
    keep_alive: bool,
    mut state: watch::Receiver<LoadState>,
    tally: Rc<Tally>,
) {
    let request = format!("GET {PROXIED_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes();
    // The kept-alive connection and the requests it has carried.
    let mut connection: Option<(TcpStream, usize)> = None;
    loop {
        let current = *state.borrow_and_update();
        match current {
            LoadState::Stopped => return,
            LoadState::Quiet => {
                connection = None;
                if state.changed().await.is_err() {
                    return;
                }
                continue;
            }
            LoadState::Running => {}
        }
        let mut requests = tally.requests.get();
        requests.sent += 1;
        tally.requests.set(requests);
        tally.in_flight.set(tally.in_flight.get() + 1);
        let exchange = async {
            if keep_alive {
                kept_alive_request(addr, &request, &mut connection).await
            } else {
                load::get(addr, HOST, PROXIED_PATH)
                    .await
                    .map(|(status, _)| status)
            }
        };
        let outcome = match tokio::time::timeout(REQUEST_BOUND, exchange).await {
            Ok(Ok(status)) => Outcome::Answered(status),
            Ok(Err(e)) => Outcome::ConnectionError(e),
            Err(_) => Outcome::TimedOut,
        };
        tally.in_flight.set(tally.in_flight.get() - 1);
        tally.count(outcome);
    }
}

/// One request on the client's kept-alive connection (opened if there is
/// none). The connection is kept only after a complete answer that lets it
/// carry more: a failed or timed-out request leaves none behind.
async fn kept_alive_request(
    addr: SocketAddr,
    request: &[u8],
    connection: &mut Option<(TcpStream, usize)>,
) -> io::Result<u16> {
    let (mut stream, carried) = match connection.take() {
        Some(open) => open,
        None => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            (stream, 0)
        }
    };
    let head = load::exchange(&mut stream, request).await?;
    if head.keep_alive && carried + 1 < KEEP_ALIVE_REQUESTS {
        *connection = Some((stream, carried + 1));
    }
    Ok(head.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_each_outcome() {
        let tally = Tally {
            started: Instant::now(),
            requests: Cell::default(),
            in_flight: Cell::new(0),
            failures: RefCell::default(),
        };
        tally.count(Outcome::Answered(200));
        tally.count(Outcome::Answered(502));
        tally.count(Outcome::TimedOut);
        tally.count(Outcome::ConnectionError(
            io::ErrorKind::ConnectionReset.into(),
        ));
        let r = tally.requests.get();
        assert_eq!(
            (
                r.answered_200,
                r.other_status,
                r.timeouts,
                r.connection_errors
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(r.failed(), 3);
        assert_eq!(tally.failures.borrow().len(), 3);
    }
}
