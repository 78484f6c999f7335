//! The actions that read: `.../status` (the call's app, or every app with
//! `?all`; text or JSON) and `.../metrics` (every app, for Prometheus), and
//! the reports of apps, of the module and of the state file that both are
//! made of.

use nginx_sys::ngx_int_t;

use super::{Call, DISABLED, ENABLED, HTTP_OK, STOPPED};
use crate::nginx::{self, HttpRequest};
use crate::{release, state_file, zone};
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::control::{
    metrics_text, status_all_json, status_all_text, AppReport, CommonReports, Format, ModuleReport,
    RunState,
};
use intermission_core::counters::AppCounters;
use intermission_core::ids::{wall_time, AppId};

/// `.../status`: the call's app, or with `?all` every app, as text or JSON.
pub(super) fn status(call: &Call) -> ngx_int_t {
    let Call {
        r,
        header,
        table,
        name,
        now,
        ..
    } = *call;
    // The counts of a worker that died are taken back first.
    release::reclaim_dead_workers(now);
    let format = call.args.format_for(r.header_in(b"accept"));
    let fields = report_fields(call);
    if call.args.all {
        let names = every_app(r, table, now);
        let reports = reports_of(header, table, &names, now);
        return match format {
            Format::Text => r.send_text(HTTP_OK, status_all_text(&reports).as_bytes()),
            Format::Json => r.send_json(HTTP_OK, status_all_json(&reports, &fields).as_bytes()),
        };
    }
    let report = app_report(header, table, table.find(name), name, now);
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

/// `.../metrics`: every app's counters, the module's and the state file's,
/// in Prometheus's text format.
pub(super) fn metrics(call: &Call) -> ngx_int_t {
    let Call {
        r,
        header,
        table,
        now,
        ..
    } = *call;
    release::reclaim_dead_workers(now);
    let names = every_app(r, table, now);
    let reports = reports_of(header, table, &names, now);
    let mut metrics = metrics_text(&reports);
    metrics.push_str(&module_report(header).metrics());
    if call.main.state_file().is_some() {
        metrics.push_str(&state_file::status(table).metrics());
    }
    r.send_body(
        HTTP_OK,
        ngx::ngx_string!("text/plain; version=0.0.4; charset=utf-8"),
        metrics.as_bytes(),
    )
}

/// The status's fields beside the app's own: the module's report, and the
/// state file's when one is configured.
fn report_fields(call: &Call) -> CommonReports {
    CommonReports {
        module: module_report(call.header),
        state_file: call
            .main
            .state_file()
            .map(|_| state_file::status(call.table)),
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

/// Every app in the zone with its name, each pause past its deadline ended
/// first.
fn every_app(r: &HttpRequest, table: AppTable<'static>, now: u64) -> Vec<(AppId, Vec<u8>)> {
    table
        .apps()
        .map(|app| {
            release::end_expired_pause_and_tell_workers(r.log(), table, app, now);
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
        .map(|(app, name)| app_report(header, table, Some(*app), name, now))
        .collect()
}

/// What the status and metrics say of an app (`None`: never paused, so not
/// in the table), at `now` on nginx's monotonic clock.
fn app_report<'n>(
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
