//! Test harness for the intermission module: a real nginx per test
//! (`Nginx`), a recording upstream (`Upstream`), a small HTTP client
//! (`Request`/`Pending`), and helpers. Std only, plus libc and socket2.
//!
//! Every timeout here is a bound, so that a broken build fails instead of
//! hanging; no test depends on how fast anything is.

#![allow(dead_code, unused_imports)]

mod client;
mod kept_alive;
mod nginx;
mod procfs;
mod snippets;
mod sockdiag;
mod state_dir;
mod upstream;

use std::env;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use client::{wait_all_read, KeepAliveConnection, Pending, Request, Response};
pub use kept_alive::{KeptAliveUpstream, StampedHit};
pub use nginx::{AccessEntry, Config, Nginx, PREFIX_MARK};
pub use procfs::{children_of, cpu_ticks, holds_socket, is_alive, ticks_per_second};
pub use snippets::*;
pub use sockdiag::listening_inode;
pub use state_dir::StateDir;
pub use upstream::{seqs, seqs_by_worker, GatedUpstream, Hit, Upstream, UPSTREAM_BODY};

/// Upper bound for anything a test waits for.
pub const BOUND: Duration = Duration::from_secs(30);

/// $INTERMISSION_TIME_SCALE (a whole number, default 1): how many times
/// longer every bound is. nginx under valgrind (scripts/memcheck) runs many
/// times slower, and a bound that passes fails the test. Only bounds are
/// stretched (`poll_until`, socket timeouts, start and stop), never the
/// pauses before a "did not happen" check (`settle`) or a test's own sleeps.
/// (Most failure messages name the unscaled bound.)
pub fn time_scale() -> u32 {
    static SCALE: OnceLock<u32> = OnceLock::new();
    *SCALE.get_or_init(|| match env::var("INTERMISSION_TIME_SCALE") {
        Err(_) => 1,
        Ok(text) => match text.parse() {
            Ok(scale) if scale >= 1 => scale,
            _ => panic!("INTERMISSION_TIME_SCALE={text:?}: want a whole number >= 1"),
        },
    })
}

/// `bound` stretched by the time scale.
pub fn scaled(bound: Duration) -> Duration {
    bound * time_scale()
}

/// Polls `cond` (with a growing pause) until it holds or `bound` (scaled) passes.
pub fn poll_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + scaled(bound);
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Like `poll_until`, failing the test with `what` if the bound passes.
pub fn wait_until(bound: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(bound, cond),
        "gave up after {:?} waiting for {what}",
        scaled(bound)
    );
}

/// A pause before checking that something did *not* happen (a request was
/// not answered, did not reach the upstream). It can only make such a check
/// miss a bug, never fail a correct module.
pub fn settle() {
    thread::sleep(Duration::from_millis(300));
}

/// `GET {path}{seq}` carrying `X-Seq: seq`, which the upstream records.
pub fn seq_request(path: &str, seq: usize) -> Request {
    Request::get(&format!("{path}{seq}")).header("X-Seq", seq.to_string())
}

/// Starts `n` requests one after another, each once nginx has read the one
/// before: nginx sees them in exactly this order.
pub fn start_in_order(port: u16, n: usize, make: impl Fn(usize) -> Request) -> Vec<Pending> {
    (0..n).map(|i| start_held(port, make(i))).collect()
}

/// Starts a request and waits until nginx has read it: if its app is
/// paused, it is held from then on.
pub fn start_held(port: u16, request: Request) -> Pending {
    let pending = request.start(port);
    pending.wait_read();
    pending
}

/// After a `settle`, asserts that none of these requests has been answered.
pub fn assert_still_held<'a>(pending: impl IntoIterator<Item = &'a Pending>) {
    settle();
    for p in pending {
        assert!(
            !p.is_answered(),
            "{} was answered although its app is paused",
            p.describe()
        );
    }
}

/// Asserts the response came from the upstream.
pub fn assert_from_upstream(response: &Response, what: &str) {
    assert_answer(response, 200, UPSTREAM_BODY, what);
}

/// Reads every answer and asserts each came from the upstream.
pub fn finish_all_from_upstream(pending: Vec<Pending>) {
    for p in pending {
        let what = p.describe().to_owned();
        assert_from_upstream(&p.finish(), &what);
    }
}

/// Sends a request and asserts nginx proxied it at once (while its app may be paused).
pub fn assert_passes(port: u16, request: Request, what: &str) {
    assert_from_upstream(&request.send(port), what);
}

/// Waits for the line `disable` logs: "... held N request(s) ...".
pub fn wait_for_held_count(nginx: &Nginx, n: usize) -> String {
    let needle = format!("held {n} request");
    nginx.wait_for_error_line(&format!("containing {needle:?}"), |line| {
        line.contains(&needle)
    })
}

/// Asserts the hits' X-Seq values are each of 0..n exactly once.
pub fn assert_each_seq_once(hits: &[Hit], n: usize) {
    let mut seen = seqs(hits);
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every request must reach the upstream exactly once"
    );
}

/// Asserts that, for every nginx worker, its requests reached the upstream in
/// increasing X-Seq order (each worker releases its own in arrival order).
pub fn assert_ordered_per_worker(hits: &[Hit]) {
    for (worker, seqs) in seqs_by_worker(hits) {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "worker {worker} released out of arrival order: {seqs:?}"
        );
    }
}

/// The error_log lines at `alert`, `crit` or `emerg`, but for two that are
/// the harness's, not nginx's or the module's: the one that running under
/// valgrind causes (scripts/memcheck: valgrind keeps some descriptors for
/// itself, so nginx cannot raise RLIMIT_NOFILE), and a `bind()` that found
/// its port taken (another process took the free port the harness picked
/// before nginx bound it; nginx tries again, and started, or the harness
/// starts it again on other ports).
pub fn serious_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            ["[alert]", "[crit]", "[emerg]"]
                .iter()
                .any(|level| line.contains(level))
        })
        .filter(|line| !line.contains("setrlimit(RLIMIT_NOFILE"))
        .filter(|line| {
            !(line.contains("bind() to ") && line.contains("(98: Address already in use)"))
        })
        .collect()
}

/// Asserts that `nginx` logged nothing at `alert`, `crit` or `emerg`.
pub fn assert_no_serious_lines(nginx: &Nginx) {
    let log = nginx.error_log();
    let serious = serious_lines(&log);
    assert!(serious.is_empty(), "{serious:#?}\n{log}");
}
