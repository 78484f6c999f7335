//! Control calls racing each other on different workers never corrupt an
//! app's state: for several seconds, 8 clients send random control calls
//! (pause, resume, stop, paced release, ttl, drain, status, metrics) to 4
//! workers while 16 clients send requests. Afterwards every request was
//! answered (200, or 503 while stopped), nothing is held or in flight, a
//! pause still holds and a resume still releases, and nothing serious was
//! logged.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const STORM: Duration = Duration::from_secs(4);
const CONTROL_CLIENTS: usize = 8;
const REQUEST_CLIENTS: usize = 16;

const CALLS: [&str; 13] = [
    "enable",
    "enable",
    "enable?ttl=1s",
    "enable?drain=200ms",
    "disable",
    "disable",
    "disable?rate=50",
    "disable?rate=1000",
    "stop",
    "stop?ttl=500ms",
    "status",
    "status?format=json",
    "metrics",
];

/// A small xorshift: the test needs varied calls, not good randomness.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }
}

#[test]
fn racing_control_calls_leave_a_sound_state_and_lose_no_request() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(4)
            .reuseport()
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let controls: Vec<_> = (0..CONTROL_CLIENTS)
        .map(|client| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1));
                let mut calls = 0;
                while !stop.load(Ordering::Relaxed) {
                    let call = CALLS[dice.roll(CALLS.len())];
                    let response = control(port, call);
                    assert!(
                        [200, 304, 409, 504].contains(&response.status),
                        "{call}: {response:?}"
                    );
                    calls += 1;
                    thread::sleep(Duration::from_millis(dice.roll(20) as u64));
                }
                calls
            })
        })
        .collect();
    let requesters: Vec<_> = (0..REQUEST_CLIENTS)
        .map(|client| {
            let (stop, answered) = (stop.clone(), answered.clone());
            thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut request = Request::get(&format!("/item/{client}-{sent}"));
                    if client % 2 == 0 {
                        request = request.keep_alive();
                    }
                    let response = request.send(port);
                    match response.status {
                        200 => assert_from_upstream(&response, "a request during the storm"),
                        503 => assert!(response.header("retry-after").is_some()),
                        _ => panic!("a request during the storm: {response:?}"),
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
                sent
            })
        })
        .collect();

    thread::sleep(STORM);
    stop.store(true, Ordering::Relaxed);
    let calls: usize = controls.into_iter().map(|t| t.join().unwrap()).sum();
    // The last word: the app runs again, whatever the storm left.
    let last = control(port, "disable");
    assert!([200, 304].contains(&last.status), "{last:?}");
    let sent: usize = requesters.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered.load(Ordering::Relaxed), sent);
    assert!(
        calls >= CONTROL_CLIENTS && sent >= REQUEST_CLIENTS,
        "the storm ran ({calls} control calls, {sent} requests in {:?})",
        started.elapsed()
    );

    // Nothing left behind.
    let mut figures = counters(port, "");
    wait_until(BOUND, "nothing held or in flight", || {
        figures = counters(port, "");
        figures.held_now == 0 && figures.in_flight == 0
    });
    assert_eq!(figures.state, "running");

    // The app still pauses, holds and releases.
    pause(port, "");
    let held = start_in_order(port, 10, |i| seq_request("/after/", i));
    assert_still_held(&held);
    resume(port, "");
    finish_all_from_upstream(held);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}
