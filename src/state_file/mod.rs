//! `intermission_state_file`: the pause state kept on disk, so that nginx
//! comes back paused after a restart.
//!
//! Every control call that changes an app's state has the whole file
//! written (`intermission_core::state_file`): a temporary file next to it,
//! fsync, rename over it, fsync of the directory. The write happens on a
//! thread of the worker's (`writer`), so that a slow disk stops nothing,
//! under a lock that only writers take; the call's answer waits for it. A
//! pause that ends at its deadline does not write: the file has the
//! deadline, and a restart ends the pause by it.
//!
//! When nginx creates the zone (at start, or at a reload that replaces it),
//! the master fills it from the file before it forks the workers. A missing
//! file is normal; one that cannot be read is logged at `alert` and nginx
//! starts with nothing paused.
//!
//! During a binary upgrade, every worker follows the writes of the other
//! binary (`watch`).

mod watch;
mod writer;

pub use watch::{start as start_watching, stop as stop_watching};
pub use writer::{Ask, Outcome as WriteOutcome};

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read as _, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use nginx_sys::{ngx_log_t, NGX_LOG_ALERT, NGX_LOG_NOTICE, NGX_LOG_WARN};
use ngx::ngx_log_error;

use intermission_core::app_table::AppTable;
use intermission_core::control::StateFileReport;
use intermission_core::ids::wall_time;
use intermission_core::settings::{AppLabel, Seconds};
use intermission_core::state_file::{Restore, SavedApp, StateFile};

use crate::nginx;

/// Why the last restore found the file unreadable. Written by the master
/// before it forks the workers, which only read their copy.
static RESTORE_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// A state file larger than this is not read: a full `4m` zone's is about
/// 1 MB.
const LARGEST_FILE: u64 = 16 * 1024 * 1024;

/// The bytes of the file at `path`, at most `LARGEST_FILE` of them.
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if file.metadata()?.len() > LARGEST_FILE {
        return Err(io::Error::other(format!(
            "larger than {} MB",
            LARGEST_FILE / 1024 / 1024
        )));
    }
    let mut bytes = Vec::new();
    io::Read::take(file, LARGEST_FILE + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// In the master, as a configuration whose zone was just created starts:
/// fills the zone from the file at `path`. No worker uses the zone yet.
pub fn restore(path: &[u8], table: AppTable, log: *mut ngx_log_t) {
    let path = Path::new(OsStr::from_bytes(path));
    set_restore_error(None);
    let bytes = match read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "intermission: no state file \"{}\" yet: nothing to restore",
                path.display()
            );
            return;
        }
        Err(e) => return unreadable(path, &e.to_string(), log),
    };
    let file = match StateFile::parse(&bytes) {
        Ok(file) => file,
        Err(bad) => return unreadable(path, &bad.to_string(), log),
    };

    let (now, wall_now) = (nginx::now_ms(), nginx::wall_clock_ms());
    let mut restored = 0;
    for saved in &file.apps {
        if restore_app(table, saved, path, now, wall_now, log) {
            restored += 1;
        }
    }
    table.header().adopt_state_generation(file.generation);
    table.header().record_state_restored(wall_now, restored);
}

/// Restores one app of the file at `path` into `table`, and logs how; true
/// if it is paused or stopped again (its pause did not end while nginx was
/// down).
fn restore_app(
    table: AppTable,
    saved: &SavedApp,
    path: &Path,
    now: u64,
    wall_now: u64,
    log: *mut ngx_log_t,
) -> bool {
    let Ok(app) = table.find_or_add(&saved.name, || ()) else {
        ngx_log_error!(
            NGX_LOG_ALERT,
            log,
            "intermission: {} from the state file \"{}\" does not fit in the shared zone: \
             it is not paused; enlarge it with \"intermission_zone\"",
            AppLabel(&saved.name),
            path.display()
        );
        return false;
    };
    match table.restore(app, saved, now, wall_now) {
        Restore::Again {
            stopped,
            paused_for,
            remaining,
            clamped,
        } => {
            if clamped {
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "intermission: the deadline of {} in the state file is further away \
                     than its pause was set to last (is this host's clock behind?): \
                     it lasts {} from now instead",
                    AppLabel(&saved.name),
                    Seconds(remaining.unwrap_or(0))
                );
            }
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "intermission: {} {} again from the state file, as for {}{}",
                AppLabel(&saved.name),
                if stopped { "stopped" } else { "paused" },
                Seconds(paused_for),
                Remaining(remaining)
            );
            true
        }
        Restore::Ended { late } => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "intermission: the pause of {} ended while nginx was down: \
                 its deadline passed {} ago",
                AppLabel(&saved.name),
                Seconds(late)
            );
            false
        }
    }
}

/// The file cannot be used: said at `alert`, and in the status.
fn unreadable(path: &Path, why: &str, log: *mut ngx_log_t) {
    ngx_log_error!(
        NGX_LOG_ALERT,
        log,
        "intermission: cannot restore the pause state from \"{}\": {why}; \
         starting with nothing paused",
        path.display()
    );
    set_restore_error(Some(why.to_owned()));
}

fn set_restore_error(error: Option<String>) {
    // The master sets it before forking; nothing else ever holds it.
    if let Ok(mut slot) = RESTORE_ERROR.lock() {
        *slot = error;
    }
}

/// What the status and the metrics say of the state file.
pub fn status(table: AppTable) -> StateFileReport {
    let counts = table.header().state_file_counts();
    StateFileReport {
        restored_at: counts.restored_at,
        restored_apps: counts.restored_apps,
        restore_error: RESTORE_ERROR.lock().ok().and_then(|e| e.clone()),
        saved_at: counts.saved_at,
        save_errors: counts.save_errors,
    }
}

thread_local! {
    /// This worker's writer thread, once it has saved.
    static WRITER: std::cell::RefCell<Option<writer::Writer>> = const { std::cell::RefCell::new(None) };
}

/// Has the state of `table` written to the file at `path` (by this worker's
/// writer thread, started on first use); `on_written` runs in the worker's
/// event loop after each write. `Err` if no thread could be started.
pub fn save(path: &[u8], table: AppTable<'static>, on_written: fn()) -> io::Result<Ask> {
    WRITER.with_borrow_mut(|slot| {
        if slot.is_none() {
            let path = Path::new(OsStr::from_bytes(path)).to_owned();
            *slot = Some(writer::Writer::start(path, table, on_written)?);
        }
        Ok(slot.as_ref().expect("started above").ask())
    })
}

/// What became of a write asked for by `save`.
pub fn write_outcome(ask: Ask) -> WriteOutcome {
    WRITER.with_borrow(|slot| match slot {
        Some(writer) => writer.outcome(ask),
        None => WriteOutcome::Failed("no writer".to_owned()),
    })
}

/// As the worker exits: what it asked for is written first, for at most
/// `within`.
pub fn finish_writes(within: std::time::Duration) {
    if let Some(writer) = WRITER.with_borrow_mut(Option::take) {
        writer.finish(within);
    }
}

/// The directory the file at `path` is in.
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes every paused or stopped app of `table` to the file at `path`,
/// and counts the write (or its failure) in the zone. The caller (the
/// writer thread) holds the writers' lock, so writes follow each other.
fn write_state(path: &Path, table: AppTable) -> io::Result<()> {
    let (now, wall_now) = (monotonic_ms(), wall_clock_ms());
    let wall = |at: u64| wall_time(at, now, wall_now);
    let apps = table
        .apps()
        .filter_map(|app| {
            let state = table.state(app);
            state.is_paused().then(|| SavedApp {
                name: table.name(app),
                stopped: state.is_stopped(),
                since: state
                    .restored_since()
                    .unwrap_or_else(|| wall(state.paused_at())),
                deadline: state.deadline().map(wall),
            })
        })
        .collect();
    // Past the file's generation too: the other binary of a binary upgrade
    // may have written it.
    let in_file = read(path)
        .ok()
        .and_then(|bytes| StateFile::parse(&bytes).ok())
        .map(|file| file.generation);
    let header = table.header();
    let file = StateFile {
        saved: wall_now,
        generation: header.next_state_generation(in_file),
        writer: header.zone_id(),
        apps,
    };
    match write_atomically(path, file.render().as_bytes()) {
        Ok(()) => {
            header.adopt_state_generation(file.generation);
            header.record_state_saved(wall_now);
            Ok(())
        }
        Err(e) => {
            header.record_state_save_error();
            Err(e)
        }
    }
}

/// nginx's monotonic clock, read by the writer thread itself (nginx's cached
/// one is the worker thread's): `CLOCK_MONOTONIC` in milliseconds, as nginx
/// computes `ngx_current_msec`.
fn monotonic_ms() -> u64 {
    clock_ms(libc::CLOCK_MONOTONIC)
}

fn wall_clock_ms() -> u64 {
    clock_ms(libc::CLOCK_REALTIME)
}

fn clock_ms(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes into the timespec on this stack.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Replaces the file at `path` with `contents`, whole or not at all: a
/// temporary file in the same directory, synced, renamed over it, and the
/// directory synced so that the rename survives a crash.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = directory_of(path);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = Path::new(&temporary);
    let written = (|| {
        let mut file = File::create(temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(temporary);
    }
    written?;
    File::open(dir)?.sync_all()
}

/// "and for N s more", or nothing for a pause with no deadline.
struct Remaining(Option<u64>);

impl std::fmt::Display for Remaining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, ", for at most {} more", Seconds(ms)),
            None => f.write_str(", with no deadline"),
        }
    }
}
