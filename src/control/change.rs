//! The actions that change an app's state: `.../enable` (pause),
//! `.../disable` (resume) and `.../stop`.
//!
//! A change is made under the zone's lock (control calls are rare), so calls
//! reaching different workers at once apply one after the other; it is then
//! saved to the state file, every worker is woken to act on it, and the
//! answer waits for the write (`wait`).

use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_LOG_ALERT, NGX_LOG_ERR};
use ngx::ngx_log_error;

use super::drain::Drain;
use super::wait::{self, Then};
use super::{Call, DISABLED, ENABLED, HTTP_NOT_MODIFIED, HTTP_OK, STOPPED};
use crate::state_file::{self, Ask};
use crate::zone::{ZoneLock, ZONE_NAME};
use crate::{config, release};
use intermission_core::app_table::AppTable;
use intermission_core::ids::AppId;
use intermission_core::pause::{PauseOutcome, ResumeOutcome, StopOutcome};
use intermission_core::settings::{AppLabel, Seconds};

const HTTP_INSUFFICIENT_STORAGE: ngx_uint_t = 507;

/// A change made by `change_locked`.
struct Changed<T> {
    app: AppId,
    /// What `apply` said happened.
    outcome: T,
    /// Whether anything changed: only a change is saved.
    changed: bool,
    /// The state file's write of the change, if one was asked for.
    write: Option<Ask>,
}

/// Changes the call's app under the zone's lock: finds it (or adds it to
/// the table), has `apply` change it and say what happened and whether
/// anything changed, unlocks, and has a change saved to the state file.
/// `Err`: the zone has no room for the app, answered 507.
fn change_locked<T>(
    call: &Call,
    apply: impl FnOnce(AppId) -> (T, bool),
) -> Result<Changed<T>, ngx_int_t> {
    let lock = ZoneLock::acquire(call.zone);
    let Ok(app) = call.table.find_or_add(call.name, || ()) else {
        drop(lock);
        return Err(zone_full(call));
    };
    let (outcome, changed) = apply(app);
    drop(lock);
    let write = changed.then(|| save_state(call)).flatten();
    Ok(Changed {
        app,
        outcome,
        changed,
        write,
    })
}

/// `.../stop`: the app's requests, those held included, are answered 503
/// until a `disable` or the deadline.
pub(super) fn stop(call: &Call) -> ngx_int_t {
    let Call {
        r,
        table,
        name,
        now,
        ..
    } = *call;
    let ttl = call.args.ttl;
    let deadline = ttl.or(call.location.max_pause()).map(|ms| now + ms);
    let stopped = change_locked(call, |app| {
        let outcome = table.stop_until(app, now, deadline);
        let moved = ttl.is_some()
            && outcome != StopOutcome::StoppedRunning
            && table.state(app).move_deadline(deadline);
        // Whether this call set the deadline or a pause before it did.
        let until = Until(table.state(app).deadline().map(|d| d.saturating_sub(now)));
        let changed = outcome != StopOutcome::AlreadyStopped || moved;
        ((outcome, until), changed)
    });
    let Changed {
        outcome: (outcome, until),
        changed,
        write,
        ..
    } = match stopped {
        Ok(stopped) => stopped,
        Err(rc) => return rc,
    };
    if !changed {
        return r.send_text(HTTP_NOT_MODIFIED, b"");
    }
    ngx_log_error!(
        config::audit_level(),
        r.log(),
        "intermission: {} stopped{until}: answering its requests 503{}",
        AppLabel(name),
        if outcome == StopOutcome::StoppedPaused {
            ", those held included"
        } else {
            ""
        }
    );
    release::state_changed();
    wait::answer_after(r, write, then_answer(HTTP_OK, STOPPED), now)
}

/// `.../enable`: the app's requests are held until a `disable` or the
/// deadline; with `?drain`, the answer waits until the app is quiet.
pub(super) fn enable(call: &Call) -> ngx_int_t {
    let Call {
        r,
        table,
        name,
        now,
        ..
    } = *call;
    let ttl = call.args.ttl;
    let lasts = ttl.or(call.location.max_pause());
    let deadline = lasts.map(|ms| now + ms);
    let paused = change_locked(call, |app| {
        let was_stopped = table.state(app).is_stopped();
        let outcome = table.pause_until(app, now, deadline);
        // A ttl on a paused app moves its deadline: an ops script can
        // keep a long pause alive by calling again.
        let moved = outcome == PauseOutcome::AlreadyPaused
            && ttl.is_some()
            && table.state(app).move_deadline(deadline);
        let changed = outcome == PauseOutcome::Paused || moved || was_stopped;
        ((outcome, moved, was_stopped), changed)
    });
    let Changed {
        app,
        outcome: (outcome, moved, was_stopped),
        changed,
        write,
    } = match paused {
        Ok(paused) => paused,
        Err(rc) => return rc,
    };
    let until = Until(lasts);
    match outcome {
        PauseOutcome::Paused => {
            ngx_log_error!(
                config::audit_level(),
                r.log(),
                "intermission: {} paused{until}",
                AppLabel(name)
            );
        }
        PauseOutcome::AlreadyPaused if moved => {
            ngx_log_error!(
                config::audit_level(),
                r.log(),
                "intermission: {} stays paused{until}",
                AppLabel(name)
            );
        }
        PauseOutcome::AlreadyPaused if was_stopped => {
            ngx_log_error!(
                config::audit_level(),
                r.log(),
                "intermission: {} was stopped, and is paused now: holding its requests",
                AppLabel(name)
            );
        }
        PauseOutcome::AlreadyPaused => {}
    }
    if changed {
        // Holding workers set their timers for the new deadline.
        release::state_changed();
    }
    let then = match call.args.drain {
        // Paused now or before: either way the caller wants to know that
        // the app is quiet.
        Some(drain) => Then::Drain(Drain::new(table, app, name, drain, now)),
        None if changed => then_answer(HTTP_OK, ENABLED),
        None => then_answer(HTTP_NOT_MODIFIED, b""),
    };
    wait::answer_after(r, write, then, now)
}

/// `.../disable`: the app's held requests go upstream (with `?rate`, at a
/// pace), and so do new ones.
pub(super) fn disable(call: &Call) -> ngx_int_t {
    let Call {
        r,
        table,
        name,
        now,
        ..
    } = *call;
    let rate = call.args.rate;
    let Some(app) = table.find(name) else {
        return r.send_text(HTTP_NOT_MODIFIED, b"");
    };
    let lock = ZoneLock::acquire(call.zone);
    let outcome = match rate {
        Some(rate) => table.resume_paced(app, now, rate),
        None => table.resume(app),
    };
    // A plain disable during a paced release lets the rest go.
    let pacing_ended =
        outcome == ResumeOutcome::NotPaused && rate.is_none() && table.end_pacing(app, now);
    drop(lock);
    let write = (outcome != ResumeOutcome::NotPaused)
        .then(|| save_state(call))
        .flatten();
    match outcome {
        ResumeOutcome::Resumed { held } => {
            ngx_log_error!(
                config::audit_level(),
                r.log(),
                "intermission: {} resumed, the pause held {held} request{}{}",
                AppLabel(name),
                if held == 1 { "" } else { "s" },
                PacedAt(rate)
            );
        }
        ResumeOutcome::NotPaused if pacing_ended => {
            ngx_log_error!(
                config::audit_level(),
                r.log(),
                "intermission: {} releases the rest of its paced backlog at once",
                AppLabel(name)
            );
        }
        ResumeOutcome::NotPaused => return r.send_text(HTTP_NOT_MODIFIED, b""),
    }
    release::state_changed();
    wait::answer_after(r, write, then_answer(HTTP_OK, DISABLED), now)
}

/// With `intermission_state_file`, has the zone's pause state written to it
/// after a change: the write the answer waits for.
fn save_state(call: &Call) -> Option<Ask> {
    let path = call.main.state_file()?;
    match state_file::save(path, call.table, wait::on_state_written) {
        Ok(ask) => Some(ask),
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                call.r.log(),
                "intermission: cannot write the state file: no thread to write it ({e}); \
                 a restart would not restore this change"
            );
            None
        }
    }
}

fn then_answer(status: ngx_uint_t, body: &'static [u8]) -> Then {
    Then::Answer { status, body }
}

/// The pace of a paced release, for the log line.
struct PacedAt(Option<u64>);

impl std::fmt::Display for PacedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rate) => write!(f, ", releasing them at {rate} per second"),
            None => Ok(()),
        }
    }
}

/// How long a pause lasts at most, for the log line.
struct Until(Option<u64>);

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, ", for at most {}", Seconds(ms)),
            None => f.write_str(", with no deadline"),
        }
    }
}

/// The answer when the zone has no room for another app: 507, logged.
fn zone_full(call: &Call) -> ngx_int_t {
    let message = zone_full_message(call.name, &call.table, call.main.zone_size());
    ngx_log_error!(NGX_LOG_ERR, call.r.log(), "{message}");
    call.r
        .send_text(HTTP_INSUFFICIENT_STORAGE, format!("{message}\n").as_bytes())
}

fn zone_full_message(name: &[u8], table: &AppTable, zone_size: usize) -> String {
    format!(
        "intermission: cannot pause {}: the shared zone \"{ZONE_NAME}\" ({}) is full with {} apps; \
         enlarge it with \"intermission_zone\"",
        AppLabel(name),
        human_size(zone_size),
        table.apps_in_use()
    )
}

/// A zone size as it would be written in the configuration.
fn human_size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes % MIB == 0 {
        format!("{}m", bytes / MIB)
    } else {
        format!("{}k", bytes / 1024)
    }
}
