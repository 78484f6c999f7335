//! A way for the tests to make the module panic on purpose, to prove that a
//! panic never unwinds into nginx: it is caught at the FFI edge, logged, and
//! the request is answered 500.
//!
//! Debug builds only (the builds the test suite loads): a request carrying
//! `X-Intermission-Test-Panic: POINT` panics at that point. Release builds
//! compile it to nothing.

use crate::nginx::HttpRequest;

/// Where a test can ask for a panic.
#[derive(Clone, Copy)]
pub enum Point {
    /// The precontent phase handler, deciding whether to hold.
    Hold,
    /// The wake-up of a held request that was released.
    Wake,
    /// The control endpoint's handler.
    Control,
}

impl Point {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static [u8] {
        match self {
            Point::Hold => b"hold",
            Point::Wake => b"wake",
            Point::Control => b"control",
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
