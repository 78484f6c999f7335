//! Watching the state file for writes by another nginx: during a binary
//! upgrade (`USR2`), the old and the new binary run side by side, each with
//! its own zone, and both accept requests and control calls until the old
//! master is told to quit. A control call changes one zone and writes the
//! file; every worker of both binaries watches the file's directory with
//! inotify in its event loop (no polling), reads the file when it is
//! replaced, and applies to its own zone a state newer than the one it has
//! (the file's generation). So a `disable` answered by either binary
//! releases what the workers of both hold.
//!
//! The writes of a worker's own binary reach it too; their generation is
//! the zone's own, and it skips them.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nginx_sys::{ngx_event_t, ngx_shm_zone_t, NGX_LOG_NOTICE, NGX_LOG_WARN};
use ngx::ngx_log_error;

use intermission_core::settings::AppLabel;
use intermission_core::state_file::{Applied, StateFile};

use crate::nginx::{self, guard_ffi, WatchedSocket};
use crate::release;
use crate::zone::{self, ZoneLock};

struct Watch {
    socket: WatchedSocket,
    path: PathBuf,
    /// The file's name in its directory, as inotify reports it.
    name: OsString,
    zone: &'static ngx_shm_zone_t,
}

thread_local! {
    /// This worker's watch (a worker is one thread).
    static WATCH: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

/// In a worker as it starts: watches the state file at `path` for the zone
/// `zone`. A directory that cannot be watched is logged; the worker runs on.
pub fn start(path: &[u8], zone: &'static ngx_shm_zone_t) {
    let path = PathBuf::from(OsStr::from_bytes(path));
    let log = nginx::cycle_log();
    match watch_directory(&path) {
        Ok((socket, name)) => {
            WATCH.with_borrow_mut(|watch| {
                *watch = Some(Watch {
                    socket,
                    path: path.clone(),
                    name,
                    zone,
                })
            });
            // What the other binary wrote between the master's restore and
            // this worker's start.
            apply(&path, zone);
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "intermission: cannot watch the state file \"{}\" for changes made by another \
                 nginx binary (a binary upgrade): {e}",
                path.display()
            );
        }
    }
}

/// In a worker as it exits.
pub fn stop() {
    if let Some(watch) = WATCH.with_borrow_mut(Option::take) {
        watch.socket.close();
    }
}

fn watch_directory(path: &Path) -> io::Result<(WatchedSocket, OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?
        .to_owned();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: plain system calls on a descriptor this function owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // The file is replaced by a rename (IN_MOVED_TO); an administrator's
    // editor may write it in place (IN_CLOSE_WRITE).
    // SAFETY: `fd` is the inotify descriptor above, `dir` a C string.
    let added = unsafe {
        libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE)
    };
    if added < 0 {
        let error = io::Error::last_os_error();
        // SAFETY: closing the descriptor this function opened.
        unsafe { libc::close(fd) };
        return Err(error);
    }
    let socket = WatchedSocket::watch(fd, on_change)
        .ok_or_else(|| io::Error::other("no free connection in worker_connections"))?;
    Ok((socket, name))
}

/// nginx's event loop: the directory changed (or the worker shuts down).
unsafe extern "C" fn on_change(event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), || {
        if WatchedSocket::take_close_request(event) {
            // Shutting down: during a binary upgrade the worker keeps
            // holding, and follows the file until it exits (`stop`).
            return;
        }
        let changed = WATCH.with_borrow(|watch| {
            let watch = watch.as_ref()?;
            names_the_file(watch.socket.fd(), &watch.name).then(|| (watch.path.clone(), watch.zone))
        });
        if let Some((path, zone)) = changed {
            apply(&path, zone);
        }
    })
}

/// Reads every event inotify has; true if one names the file.
fn names_the_file(fd: i32, name: &OsStr) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut buffer = [0u8; 4096];
    let mut named = false;
    loop {
        // SAFETY: reading into a buffer of this length from the inotify
        // descriptor this worker owns.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        let Ok(read) = usize::try_from(read) else {
            // Would block: all read (or an error, which the next event retries).
            return named;
        };
        if read == 0 {
            return named;
        }
        let mut at = 0;
        while at + HEADER <= read {
            // The kernel writes whole events: a header, then `len` bytes of
            // name padded with NULs.
            let len = u32::from_ne_bytes(buffer[at + 12..at + 16].try_into().unwrap()) as usize;
            let end = (at + HEADER + len).min(read);
            let event_name = &buffer[at + HEADER..end];
            let event_name = &event_name[..event_name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(event_name.len())];
            let mask = u32::from_ne_bytes(buffer[at + 4..at + 8].try_into().unwrap());
            // A full queue lost events: the file may have changed.
            named |= event_name == name.as_bytes() || mask & libc::IN_Q_OVERFLOW != 0;
            at = end;
        }
    }
}

/// Applies the file at `path` to this worker's zone if it is newer.
fn apply(path: &Path, zone: &'static ngx_shm_zone_t) {
    let log = nginx::cycle_log();
    let Some(header) = zone::header(zone) else {
        return;
    };
    let file = match super::read(path).map(|bytes| StateFile::parse(&bytes)) {
        Ok(Ok(file)) => file,
        // Removed, or not one this module wrote: nothing to follow.
        Ok(Err(_)) | Err(_) => return,
    };
    if !header.state_is_news(&file) {
        return;
    }
    let table = zone::table(header);
    let lock = ZoneLock::acquire(zone);
    if !header.state_is_news(&file) {
        return;
    }
    let (now, wall_now) = (nginx::now_ms(), nginx::wall_clock_ms());
    let (changed, no_room) = table.apply_state_file(&file, now, wall_now);
    header.adopt_state_generation(file.generation);
    drop(lock);
    for (app, applied) in &changed {
        let what = match applied {
            Applied::Paused => "paused",
            Applied::Stopped => "stopped",
            Applied::Resumed => "resumed",
            Applied::DeadlineMoved => "given a new deadline",
        };
        ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "intermission: {} {what} by another nginx binary (the state file \"{}\")",
            AppLabel(&table.name(*app)),
            path.display()
        );
    }
    for name in &no_room {
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "intermission: {} from the state file does not fit in the shared zone",
            AppLabel(name)
        );
    }
    if !changed.is_empty() {
        release::state_changed();
    }
}
