//! The control endpoint: `intermission_control;` in a location answers
//! `.../status`, `.../enable`, `.../disable` and `.../stop` for the app of
//! the control request itself (its own `$app_name`), so each virtual host's
//! endpoint controls its own app. `status?format=json` answers the app's
//! counters, `.../metrics` every app's, for Prometheus.
//!
//! Calls that change an app's state take the zone's lock while they do
//! (control calls are rare), so calls reaching different workers at once
//! apply one after the other; then every worker is woken to act on it.

mod drain;
mod wait;

use std::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_core_loc_conf_t, ngx_http_request_t, ngx_int_t, ngx_uint_t,
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED,
    NGX_HTTP_NOT_FOUND, NGX_HTTP_POST, NGX_LOG_ALERT, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_NOTICE,
    NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::NgxHttpCoreModule;
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::config::{LocConf, MainConf};
use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest};
use crate::state_file::{self, Ask};
use crate::test_probe::{self, Point};
use crate::zone::{self, ZoneLock, ZONE_NAME};
use crate::{release, IntermissionModule};
use drain::Drain;
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::control::{
    action_of, metrics_text, status_all_json, status_all_text, Action, AppReport, CommonReports,
    ControlArgs, Format, ModuleReport, RunState,
};
use intermission_core::ids::{wall_time, AppId};
use intermission_core::pause::{AppCounters, PauseOutcome, ResumeOutcome, StopOutcome};
use intermission_core::settings::{check_app_name, AppLabel, LogSafe, Seconds};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use wait::Then;

const HTTP_OK: ngx_uint_t = 200;
const HTTP_NOT_MODIFIED: ngx_uint_t = 304;
const HTTP_BAD_REQUEST: ngx_uint_t = 400;
const HTTP_INSUFFICIENT_STORAGE: ngx_uint_t = 507;

/// The header on every answer of the control endpoint, with the module's
/// version: the ops command line checks for it.
const MARKER: &str = "X-Intermission-Version";

pub const ENABLED: &[u8] = b"Pause enabled.\n";
const DISABLED: &[u8] = b"Pause disabled.\n";
/// Old scripts know only the two answers above; a stop is new, so it says so.
const STOPPED: &[u8] = b"Stopped.\n";

/// `intermission_control;`: this location answers the control endpoint.
pub extern "C" fn set_intermission_control(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's location configuration.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    // SAFETY: called in a location block, where the core module's location
    // configuration exists.
    let Some(core) = (unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) }) else {
        return NGX_CONF_ERROR;
    };
    let core: &mut ngx_http_core_loc_conf_t = core;
    if core.handler.is_some() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"intermission_control\" directive: this location already has a content handler"
        );
        return NGX_CONF_ERROR;
    }
    core.handler = Some(handle_control_request);
    conf.control = true;
    NGX_CONF_OK
}

/// The content handler of `intermission_control` locations.
pub extern "C" fn handle_control_request(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    guard_ffi(r.log(), NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        test_probe::panic_if_asked(&r, Point::Control);
        control(r)
    })
}

fn control(r: HttpRequest) -> ngx_int_t {
    // Every answer of the endpoint says it is the module's (error pages
    // included: nginx keeps the header): a client told a site's URL, or a
    // proxy's own error, can tell it is not talking to the endpoint.
    r.add_response_header(MARKER, crate::VERSION);
    // Existing ops scripts use GET; POST is what a careful client sends.
    if r.method() & (NGX_HTTP_GET | NGX_HTTP_HEAD | NGX_HTTP_POST) as ngx_uint_t == 0 {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: control requests take GET, HEAD or POST, not {}",
            LogSafe(r.method_name())
        );
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = r.discard_body();
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let Some(action) = action_of(r.uri()) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: unknown control action in \"{}\", expected \".../status\", \".../enable\", \".../disable\", \".../stop\" or \".../metrics\"",
            LogSafe(r.uri())
        );
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    let args = match ControlArgs::parse(r.args()) {
        Ok(args) => args,
        Err(bad) => return refuse(&r, bad),
    };
    if let Err(bad) = args.check_for(action) {
        return refuse(&r, bad);
    }
    let (Some(main), Some(location)) = (
        IntermissionModule::main_conf(r.as_raw()),
        IntermissionModule::location_conf(r.as_raw()),
    ) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some((zone, header)) = main
        .zone()
        .and_then(|zone| Some((zone, zone::header(zone)?)))
    else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let table = zone::table(header);
    let name = match check_app_name(main.variables.app_name(&r)) {
        Ok(name) => name,
        Err(too_long) => return refuse(&r, too_long),
    };

    let now = nginx::now_ms();
    // A pause past its deadline ends before anything else is answered.
    if let Some(app) = table.find(name) {
        release::end_pause_if_past_deadline(r.log(), table, app, now);
    }

    match action {
        Action::Status => {
            // The counts of a worker that died are taken back first.
            release::reclaim_dead_workers(now);
            let format = args.format_for(r.header_in(b"accept"));
            let fields = report_fields(main, header, table);
            if args.all {
                let names = every_app(&r, table, now);
                let reports = reports_of(header, table, &names, now);
                return match format {
                    Format::Text => r.send_text(HTTP_OK, status_all_text(&reports).as_bytes()),
                    Format::Json => {
                        r.send_json(HTTP_OK, status_all_json(&reports, &fields).as_bytes())
                    }
                };
            }
            let report = report(header, table, table.find(name), name, now);
            match format {
                Format::Text => r.send_text(
                    HTTP_OK,
                    match report.state {
                        RunState::Running => DISABLED,
                        RunState::Paused => ENABLED,
                        RunState::Stopped => STOPPED,
                    },
                ),
                Format::Json => r.send_json(HTTP_OK, (report.json_with(&fields) + "\n").as_bytes()),
            }
        }
        Action::Stop => {
            let lock = ZoneLock::acquire(zone);
            let Ok(app) = table.find_or_add(name, || ()) else {
                drop(lock);
                return zone_full(&r, name, &table, main.zone_size());
            };
            let lasts = args.ttl.or(location.max_pause());
            let deadline = lasts.map(|ms| now + ms);
            let outcome = table.stop_until(app, now, deadline);
            let moved = args.ttl.is_some()
                && outcome != StopOutcome::StoppedRunning
                && table.state(app).move_deadline(deadline);
            // Whether this call set the deadline or a pause before it did.
            let until = Until(table.state(app).deadline().map(|d| d.saturating_sub(now)));
            let changed = outcome != StopOutcome::AlreadyStopped || moved;
            drop(lock);
            if !changed {
                return r.send_text(HTTP_NOT_MODIFIED, b"");
            }
            let write = save_state(main, table, &r);
            ngx_log_error!(
                NGX_LOG_NOTICE,
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
            wait::answer_after(&r, write, then_answer(HTTP_OK, STOPPED), now)
        }
        Action::Enable => {
            let lock = ZoneLock::acquire(zone);
            let Ok(app) = table.find_or_add(name, || ()) else {
                drop(lock);
                return zone_full(&r, name, &table, main.zone_size());
            };
            let was_stopped = table.state(app).is_stopped();
            let lasts = args.ttl.or(location.max_pause());
            let deadline = lasts.map(|ms| now + ms);
            let outcome = table.pause_until(app, now, deadline);
            // A ttl on a paused app moves its deadline: an ops script can
            // keep a long pause alive by calling again.
            let moved = outcome == PauseOutcome::AlreadyPaused
                && args.ttl.is_some()
                && table.state(app).move_deadline(deadline);
            drop(lock);
            let write = (outcome == PauseOutcome::Paused || moved || was_stopped)
                .then(|| save_state(main, table, &r))
                .flatten();
            let until = Until(lasts);
            let changed = match outcome {
                PauseOutcome::Paused => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        r.log(),
                        "intermission: {} paused{until}",
                        AppLabel(name)
                    );
                    true
                }
                PauseOutcome::AlreadyPaused if moved => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        r.log(),
                        "intermission: {} stays paused{until}",
                        AppLabel(name)
                    );
                    true
                }
                PauseOutcome::AlreadyPaused if was_stopped => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        r.log(),
                        "intermission: {} was stopped, and is paused now: holding its requests",
                        AppLabel(name)
                    );
                    true
                }
                PauseOutcome::AlreadyPaused => false,
            };
            if changed {
                // Holding workers set their timers for the new deadline.
                release::state_changed();
            }
            let then = match args.drain {
                // Paused now or before: either way the caller wants to
                // know that the app is quiet.
                Some(drain) => Then::Drain(Drain::new(table, app, name, drain, now)),
                None if changed => then_answer(HTTP_OK, ENABLED),
                None => then_answer(HTTP_NOT_MODIFIED, b""),
            };
            wait::answer_after(&r, write, then, now)
        }
        Action::Metrics => {
            release::reclaim_dead_workers(now);
            let names = every_app(&r, table, now);
            let reports = reports_of(header, table, &names, now);
            let mut metrics = metrics_text(&reports);
            metrics.push_str(&module_report(header).metrics());
            if main.state_file().is_some() {
                metrics.push_str(&state_file::report(table).metrics());
            }
            r.send_body(
                HTTP_OK,
                ngx::ngx_string!("text/plain; version=0.0.4; charset=utf-8"),
                metrics.as_bytes(),
            )
        }
        Action::Disable => {
            let Some(app) = table.find(name) else {
                return r.send_text(HTTP_NOT_MODIFIED, b"");
            };
            let lock = ZoneLock::acquire(zone);
            let outcome = match args.rate {
                Some(rate) => table.resume_paced(app, now, rate),
                None => table.resume(app),
            };
            // A plain disable during a paced release lets the rest go.
            let pacing_ended = outcome == ResumeOutcome::NotPaused
                && args.rate.is_none()
                && table.end_pacing(app, now);
            drop(lock);
            let write = (outcome != ResumeOutcome::NotPaused)
                .then(|| save_state(main, table, &r))
                .flatten();
            match outcome {
                ResumeOutcome::Resumed { held } => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        r.log(),
                        "intermission: {} resumed, the pause held {held} request{}{}",
                        AppLabel(name),
                        if held == 1 { "" } else { "s" },
                        PacedAt(args.rate)
                    );
                }
                ResumeOutcome::NotPaused if pacing_ended => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        r.log(),
                        "intermission: {} releases the rest of its paced backlog at once",
                        AppLabel(name)
                    );
                }
                ResumeOutcome::NotPaused => return r.send_text(HTTP_NOT_MODIFIED, b""),
            }
            release::state_changed();
            wait::answer_after(&r, write, then_answer(HTTP_OK, DISABLED), now)
        }
    }
}

/// The status's fields beside the app's own: the module's report, and the
/// state file's when one is configured.
fn report_fields(main: &MainConf, header: &'static TableHeader, table: AppTable) -> CommonReports {
    CommonReports {
        module: module_report(header),
        state_file: main.state_file().map(|_| state_file::report(table)),
    }
}

/// What the status and the metrics say of the module itself.
fn module_report(header: &'static TableHeader) -> ModuleReport {
    let (internal_errors, app_names_too_long) = header.error_counts();
    ModuleReport {
        internal_errors,
        app_names_too_long,
        release_passes: zone::worker_slots(header).passes(),
    }
}

/// With `intermission_state_file`, has the zone's pause state written to it
/// after a change: the write the answer waits for.
fn save_state(main: &MainConf, table: AppTable<'static>, r: &HttpRequest) -> Option<Ask> {
    let path = main.state_file()?;
    match state_file::save(path, table, wait::on_state_written) {
        Ok(ask) => Some(ask),
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                r.log(),
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

/// A control request that cannot be obeyed as asked: 400, saying why, in the
/// answer and in the error log.
fn refuse(r: &HttpRequest, why: impl std::fmt::Display) -> ngx_int_t {
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "intermission: {why}, control request refused"
    );
    r.send_text(
        HTTP_BAD_REQUEST,
        format!("intermission: {why}\n").as_bytes(),
    )
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

/// Every app in the zone with its name, each pause past its deadline ended
/// first.
fn every_app(r: &HttpRequest, table: AppTable<'static>, now: u64) -> Vec<(AppId, Vec<u8>)> {
    table
        .apps()
        .map(|app| {
            release::end_pause_if_past_deadline(r.log(), table, app, now);
            (app, table.name(app))
        })
        .collect()
}

fn reports_of<'n>(
    header: &'static TableHeader,
    table: AppTable<'static>,
    apps: &'n [(AppId, Vec<u8>)],
    now: u64,
) -> Vec<AppReport<'n>> {
    apps.iter()
        .map(|(app, name)| report(header, table, Some(*app), name, now))
        .collect()
}

/// What the status and metrics say of an app (`None`: never paused, so not
/// in the table), at `now` on nginx's monotonic clock.
fn report<'n>(
    header: &'static TableHeader,
    table: AppTable<'static>,
    app: Option<AppId>,
    name: &'n [u8],
    now: u64,
) -> AppReport<'n> {
    let in_flight = zone::worker_slots(header).in_flight(header.name_key().app_key(name));
    let Some(state) = app.map(|app| table.state(app)) else {
        return AppReport {
            name,
            state: RunState::Running,
            since: None,
            deadline: None,
            held_in_pause: 0,
            longest_wait_ms: 0,
            in_flight,
            counters: AppCounters::default(),
        };
    };
    let run_state = if state.is_stopped() {
        RunState::Stopped
    } else if state.is_paused() {
        RunState::Paused
    } else {
        RunState::Running
    };
    // The zone keeps nginx's monotonic clock; the answer shows wall-clock
    // times, as far from now as those are.
    let wall_now = nginx::wall_clock_ms();
    let wall = |at: u64| wall_time(at, now, wall_now);
    let paused = run_state != RunState::Running;
    AppReport {
        name,
        state: run_state,
        since: paused.then(|| {
            state
                .restored_since()
                .unwrap_or_else(|| wall(state.paused_at()))
        }),
        deadline: state.deadline().filter(|_| paused).map(wall),
        held_in_pause: state.held_in_pause(),
        longest_wait_ms: state.longest_wait(now),
        in_flight,
        counters: state.counters(),
    }
}

/// The answer when the zone has no room for another app: 507, logged.
fn zone_full(r: &HttpRequest, name: &[u8], table: &AppTable, zone_size: usize) -> ngx_int_t {
    let message = zone_full_message(name, table, zone_size);
    ngx_log_error!(NGX_LOG_ERR, r.log(), "{message}");
    r.send_text(HTTP_INSUFFICIENT_STORAGE, format!("{message}\n").as_bytes())
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
