//! The load client split over processes, for more held requests than one
//! process may have descriptors (20,000 here) and more than one source
//! address has ephemeral ports (about 28,000 on Linux's default range).
//!
//! The run starts `senders` child processes (`intermission-bench send`),
//! each with its own loopback source address (127.0.0.2, .3, ...) and its
//! own range of sequence numbers. Each opens its connections one after
//! another, sends `GET /r/<seq>` on each, says `sent` on its standard
//! output, and once every answer is in, writes one line per request:
//! `seq status nanoseconds` (the completion time on the machine's monotonic
//! clock, which every process reads alike), or `seq -` for none, and last
//! `cpu nanoseconds`, the CPU it used. The order
//! the module keeps is the order nginx received the requests in (its
//! tickets), so senders running side by side lose nothing the report reads.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::load::{read_answer, request, Answer};

/// Requests one sender opens connections for: well under a process's
/// descriptor limit and a source address's ephemeral ports.
pub const PER_SENDER: usize = 12_500;

/// How many senders `n` requests need.
pub fn senders_for(n: usize) -> usize {
    n.div_ceil(PER_SENDER).max(1)
}

/// The source address of sender `index`: 127.0.0.2 onwards (127.0.0.1 is
/// left to nginx's own connections to the upstream).
fn source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (index / 250) as u8, (2 + index % 250) as u8)
}

/// The sequence numbers of sender `index` of `senders`, for `n` requests.
fn range_of(n: usize, senders: usize, index: usize) -> (usize, usize) {
    let first = n * index / senders;
    let end = n * (index + 1) / senders;
    (first, end - first)
}

/// Running senders.
pub struct Senders {
    children: Vec<(Child, BufReader<ChildStdout>)>,
    n: usize,
}

impl Senders {
    /// Starts senders for `n` requests to `addr` and returns once every
    /// request is sent.
    pub fn send(addr: SocketAddr, host: &str, n: usize) -> io::Result<Senders> {
        let senders = senders_for(n);
        let mut children = Vec::with_capacity(senders);
        for index in 0..senders {
            let (first, count) = range_of(n, senders, index);
            let mut child = Command::new(std::env::current_exe()?)
                .arg("send")
                .args([
                    addr.to_string(),
                    host.to_owned(),
                    source(index).to_string(),
                    first.to_string(),
                    count.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().expect("piped stdout");
            children.push((child, BufReader::new(stdout)));
        }
        let mut senders = Senders { children, n };
        for (_, stdout) in &mut senders.children {
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            if line.trim() != "sent" {
                return Err(io::Error::other(format!(
                    "a sender stopped before sending everything: {line:?}"
                )));
            }
        }
        Ok(senders)
    }

    /// The process ids of the senders (their CPU is the client's).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(child, _)| child.id()).collect()
    }

    /// Every answer, entry `seq` for request `seq`, and the CPU the
    /// senders used in all; blocks until every sender has its answers (each
    /// bounds its wait by `ANSWER_BOUND`).
    pub fn answers(mut self) -> io::Result<(Vec<Option<Answer>>, Duration)> {
        let mut answers = vec![None; self.n];
        let mut cpu = Duration::ZERO;
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        for (child, stdout) in &mut self.children {
            for line in stdout.lines() {
                let line = line?;
                let mut words = line.split(' ');
                let first = words.next();
                if first == Some("cpu") {
                    cpu += Duration::from_nanos(parse(words.next())?);
                    continue;
                }
                let seq: usize = parse(first)?;
                let (Some(status), Some(ns)) = (words.next(), words.next()) else {
                    continue;
                };
                let completed_ns: u64 = parse(Some(ns))?;
                let completed = if completed_ns >= now_ns {
                    now + Duration::from_nanos(completed_ns - now_ns)
                } else {
                    now - Duration::from_nanos(now_ns - completed_ns)
                };
                if let Some(answer) = answers.get_mut(seq) {
                    *answer = Some(Answer {
                        status: parse(Some(status))?,
                        completed,
                    });
                }
            }
            child.wait()?;
        }
        Ok((answers, cpu))
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse<T: std::str::FromStr>(word: Option<&str>) -> io::Result<T> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| io::Error::other(format!("a sender wrote {word:?}")))
}

/// The machine's monotonic clock, in nanoseconds: the same in every process.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(clock, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// One sender (`intermission-bench send ADDR HOST SOURCE FIRST COUNT`):
/// opens `count` connections from `source`, one after another, sends
/// request `first + i` on the `i`-th, and reports as described above.
pub async fn sender(args: &[String]) -> io::Result<()> {
    let [addr, host, source, first, count] = args else {
        return Err(io::Error::other("send ADDR HOST SOURCE FIRST COUNT"));
    };
    let invalid = |what: &str| io::Error::other(format!("send: invalid {what}"));
    let addr: SocketAddr = addr.parse().map_err(|_| invalid("ADDR"))?;
    let source: Ipv4Addr = source.parse().map_err(|_| invalid("SOURCE"))?;
    let first: usize = first.parse().map_err(|_| invalid("FIRST"))?;
    let count: usize = count.parse().map_err(|_| invalid("COUNT"))?;
    let mut tasks = Vec::with_capacity(count);
    for seq in first..first + count {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
        let mut stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&request(seq, host)).await?;
        tasks.push((seq, tokio::task::spawn_local(read_answer(stream))));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "sent")?;
    out.flush()?;
    let mut answers = Vec::with_capacity(count);
    for (seq, task) in tasks {
        answers.push((seq, task.await.ok().flatten()));
    }
    // Instants are this process's; the report gives the monotonic clock's
    // nanoseconds, which the run's process reads alike.
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    let mut report = String::with_capacity(count * 24);
    for (seq, answer) in answers {
        match answer {
            Some(answer) => {
                let before = now.saturating_duration_since(answer.completed).as_nanos() as u64;
                report.push_str(&format!("{seq} {} {}\n", answer.status, now_ns - before));
            }
            None => report.push_str(&format!("{seq} -\n")),
        }
    }
    let cpu = clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    report.push_str(&format!("cpu {cpu}\n"));
    out.write_all(report.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_request_once() {
        for n in [1, 999, 12_500, 12_501, 50_000, 50_003] {
            let senders = senders_for(n);
            let mut next = 0;
            for index in 0..senders {
                let (first, count) = range_of(n, senders, index);
                assert_eq!(first, next);
                assert!(count <= PER_SENDER);
                next += count;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn senders_have_their_own_source_addresses() {
        assert_eq!(senders_for(50_000), 4);
        assert_eq!(source(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source(3), Ipv4Addr::new(127, 0, 0, 5));
        assert_ne!(source(0), source(250));
    }
}
