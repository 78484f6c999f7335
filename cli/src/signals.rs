//! INT, TERM and HUP: noted, not obeyed at once, so that a pause can be
//! rolled back and a run's command stopped and waited for before the command
//! line exits; and passed on to the process group of a running command.

use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static LAST: AtomicI32 = AtomicI32::new(0);
/// How many signals have been received.
static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The process group that signals are passed on to, while a command runs.
static GROUP: AtomicI32 = AtomicI32::new(0);

/// From now on, INT, TERM and HUP are noted (and passed on) instead of
/// ending the process.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                LAST.store(signal, Ordering::SeqCst);
                COUNT.fetch_add(1, Ordering::SeqCst);
                pass_on(signal);
            }
        })?;
    Ok(())
}

fn pass_on(signal: i32) {
    let group = GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill with a negative pid signals a process group; no
        // memory is involved.
        unsafe { libc::kill(-group, signal) };
    }
}

/// The last signal received, if any.
pub fn received() -> Option<i32> {
    match LAST.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// How many signals have been received so far.
pub fn count() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// Signals from now on go to process group `group` too (0: no longer);
/// one received before is passed on at once.
pub fn pass_on_to(group: i32) {
    GROUP.store(group, Ordering::SeqCst);
    if let Some(signal) = received() {
        pass_on(signal);
    }
}

pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
