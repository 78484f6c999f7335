//! Writing the state file off the event loop.
//!
//! A write syncs the disk twice, and a slow or hung disk must stop no
//! worker: each worker that saves has a thread of its own for it (started
//! at its first save), which never touches nginx (no log, no pool, no
//! event), only the file and the zone's atomics. Writers are serialised
//! among themselves alone, by an exclusive `flock` on the file's directory
//! (every worker of every nginx binary that uses the file takes it; the
//! kernel drops it if a worker dies), never by the zone's lock, which
//! requests may take. Each write renders the zone as it is when the lock is
//! taken, so whichever writes last writes the last state.
//!
//! The control call that asked for a write waits for it without blocking
//! its worker (at most a bound, `control::wait`): the thread tells the
//! worker's event loop each time it has written, through an eventfd that
//! nginx watches like a connection.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use nginx_sys::ngx_event_t;

use crate::nginx::{guard_ffi, WatchedSocket};
use intermission_core::app_table::AppTable;

/// What the worker and its writer thread share (process-local: the thread
/// is the worker's own).
#[derive(Default)]
struct Shared {
    /// Writes asked for so far, and done so far (each write covers every
    /// ask made before it began).
    asked: u64,
    done: u64,
    /// The outcome of the last write: `None` if it succeeded.
    last_error: Option<String>,
    stopping: bool,
}

/// A worker's writer thread.
pub struct Writer {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// The eventfd the thread signals after each write, watched by nginx.
    written: WatchedSocket,
}

thread_local! {
    /// Called in the worker's event loop after each write.
    static ON_WRITTEN: std::cell::Cell<Option<fn()>> = const { std::cell::Cell::new(None) };
}

/// A write asked for: `Writer::outcome` says when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask(u64);

/// What became of a write.
pub enum Outcome {
    Pending,
    Written,
    Failed(String),
}

impl Writer {
    /// Starts the thread that writes the state of `table` to `path`, with
    /// every signal blocked in it (nginx's signals are for the worker's
    /// own thread, whose event loop must see them); `on_written` runs in
    /// the worker's event loop after each write.
    pub fn start(
        path: PathBuf,
        table: AppTable<'static>,
        on_written: fn(),
    ) -> std::io::Result<Self> {
        // SAFETY: `eventfd` returns a new descriptor this function owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just opened, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let theirs_fd = fd.try_clone()?;
        let written = WatchedSocket::watch(std::os::fd::IntoRawFd::into_raw_fd(fd), on_eventfd)
            .ok_or_else(|| std::io::Error::other("no free connection in worker_connections"))?;
        ON_WRITTEN.set(Some(on_written));
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let spawned = with_signals_blocked(|| {
            thread::Builder::new()
                .name("intermission-state-writer".into())
                .spawn(move || write_when_asked(&theirs, &path, table, &theirs_fd))
                .map(drop)
        });
        if let Err(e) = spawned {
            written.close();
            return Err(e);
        }
        Ok(Writer { shared, written })
    }

    /// Asks for the zone's state to be written.
    pub fn ask(&self) -> Ask {
        let (lock, wake) = &*self.shared;
        let mut shared = lock.lock().unwrap_or_else(PoisonError::into_inner);
        shared.asked += 1;
        wake.notify_one();
        Ask(shared.asked)
    }

    /// What became of `ask`.
    pub fn outcome(&self, ask: Ask) -> Outcome {
        let shared = self.shared.0.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.done < ask.0 {
            return Outcome::Pending;
        }
        match &shared.last_error {
            None => Outcome::Written,
            Some(e) => Outcome::Failed(e.clone()),
        }
    }

    /// The worker exits: what was asked is written first, for at most
    /// `within` (a hung disk does not keep the worker), then the thread ends.
    pub fn finish(self, within: Duration) {
        let (lock, wake) = &*self.shared;
        let mut shared = lock.lock().unwrap_or_else(PoisonError::into_inner);
        shared.stopping = true;
        wake.notify_all();
        let _ = wake
            .wait_timeout_while(shared, within, |shared| shared.done < shared.asked)
            .map_err(PoisonError::into_inner);
        self.written.close();
    }
}

/// The writer thread signalled a write (or nginx shuts the worker down,
/// which changes nothing here: the worker still answers its calls).
unsafe extern "C" fn on_eventfd(event: *mut ngx_event_t) {
    guard_ffi(crate::nginx::cycle_log(), (), || {
        let _ = WatchedSocket::take_close_request(event);
        // SAFETY: the event is the read event of the eventfd's connection.
        let fd = unsafe { WatchedSocket::fd_of(event) };
        let mut count = [0u8; 8];
        // SAFETY: reading the eventfd's 8-byte counter into a buffer of 8.
        unsafe { libc::read(fd, count.as_mut_ptr().cast(), count.len()) };
        if let Some(on_written) = ON_WRITTEN.get() {
            on_written();
        }
    })
}

/// The writer thread: writes whenever asked, and tells the event loop
/// through `written`, until the worker exits.
fn write_when_asked(
    shared: &(Mutex<Shared>, Condvar),
    path: &Path,
    table: AppTable<'static>,
    written: &OwnedFd,
) {
    let (lock, wake) = shared;
    loop {
        let target = {
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while state.done == state.asked && !state.stopping {
                state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.done == state.asked {
                return;
            }
            state.asked
        };
        let result = write_locked(path, table);
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.done = target;
        state.last_error = result.err().map(|e| e.to_string());
        wake.notify_all();
        drop(state);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing the 8-byte increment to the eventfd this thread
        // shares; a full counter (never, at one a write) only drops a wake-up.
        unsafe { libc::write(written.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// Writes the zone's state under the directory's lock.
fn write_locked(path: &Path, table: AppTable<'static>) -> std::io::Result<()> {
    let dir = super::directory_of(path);
    let dir = File::open(dir)?;
    // SAFETY: `flock` on a descriptor this function owns; it blocks this
    // thread only, and closing the descriptor releases the lock.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    super::write_state(path, table)
}

/// Runs `f` with every signal blocked in this thread, as a thread started
/// in it inherits them; restores the mask after.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: `sigfillset` and `pthread_sigmask` on masks on this stack.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        result
    }
}
