//! Notes on stderr that no output error can stop. `eprintln!` panics when
//! stderr fails (EIO on a terminal an SSH session left, EPIPE when piped to
//! `head`), and between a pause and its resume nothing may abort the
//! command: a note that cannot be written is dropped.

use std::fmt;
use std::io::Write;

/// Writes `text` and a newline to stderr, if it can.
pub fn say(text: fmt::Arguments) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_fmt(text);
    let _ = stderr.write_all(b"\n");
}
