//! Ways for the tests to reach the module's failure paths on purpose, in
//! debug builds only (the builds the test suite loads); release builds
//! compile them to nothing:
//! - a request carrying `X-Intermission-Test-Panic: POINT` panics at that
//!   point, to prove that a panic never unwinds into nginx (it is caught at
//!   the FFI edge, logged, counted, and the request answered);
//! - a request carrying `X-Intermission-Test-Delay: POINT=MS` stops its
//!   worker for MS milliseconds at that point, to open the window of a race
//!   between workers wide enough for a test to hit it every time;
//! - `env INTERMISSION_TEST_NO_ENGINE;` in nginx.conf (with that variable
//!   set) keeps the workers' release engines from starting;
//! - `env INTERMISSION_TEST_LATE_WORKER=MS;` makes every worker but the
//!   first (by number) wait MS milliseconds as it starts, before its
//!   release engine starts and it reads the state file, so that another
//!   worker serves requests first.

use crate::nginx::HttpRequest;

/// Where a test can ask for a panic or a delay.
#[derive(Clone, Copy)]
pub enum Point {
    /// The precontent phase handler, deciding whether to hold.
    Hold,
    /// The wake-up of a held request that was released.
    Wake,
    /// The control endpoint's handler.
    Control,
    /// A request just counted in flight, before it looks whether its app
    /// was paused meanwhile.
    Counted,
}

impl Point {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static [u8] {
        match self {
            Point::Hold => b"hold",
            Point::Wake => b"wake",
            Point::Control => b"control",
            Point::Counted => b"counted",
        }
    }
}

#[cfg(debug_assertions)]
pub fn panic_if_asked(r: &HttpRequest, at: Point) {
    if r.header_in(b"X-Intermission-Test-Panic") == Some(at.name()) {
        panic!(
            "panic asked for by the test header at \"{}\"",
            String::from_utf8_lossy(at.name())
        );
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_if_asked(_r: &HttpRequest, _at: Point) {}

#[cfg(debug_assertions)]
pub fn delay_if_asked(r: &HttpRequest, at: Point) {
    let Some(value) = r.header_in(b"X-Intermission-Test-Delay") else {
        return;
    };
    let Some(ms) = value
        .strip_prefix(at.name())
        .and_then(|rest| rest.strip_prefix(b"="))
        .and_then(|ms| std::str::from_utf8(ms).ok()?.parse::<u64>().ok())
    else {
        return;
    };
    std::thread::sleep(std::time::Duration::from_millis(ms.min(5_000)));
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn delay_if_asked(_r: &HttpRequest, _at: Point) {}

/// Whether the test asks for workers without a release engine.
#[cfg(debug_assertions)]
pub fn engine_disabled() -> bool {
    std::env::var_os("INTERMISSION_TEST_NO_ENGINE").is_some()
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn engine_disabled() -> bool {
    false
}

/// A worker that is not the first waits as it starts, if the test asks
/// (`INTERMISSION_TEST_LATE_WORKER=MS`).
/// True if it waited.
#[cfg(debug_assertions)]
pub fn start_late_if_asked(worker: usize) -> bool {
    let delay = std::env::var("INTERMISSION_TEST_LATE_WORKER")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok());
    match delay {
        Some(ms) if worker > 0 => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            true
        }
        _ => false,
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn start_late_if_asked(_worker: usize) -> bool {
    false
}
