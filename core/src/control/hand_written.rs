//! TEMPORARY: the hand-written JSON writer (and the text and metrics
//! writers) the module used before the status schema, kept only to check
//! that the new writers give the same bytes.

use std::fmt::Write;

use proptest::prelude::*;

use super::status::{AppReport, CommonReports, ModuleReport, RunState, StateFileReport};
use super::{app_name_text, metrics_text, rfc3339, status_all_json, status_all_text};
use crate::in_flight::InFlight;
use crate::pause::AppCounters;

fn json_with(report: &AppReport, fields: &[String]) -> String {
    let mut json = json(report);
    for field in fields {
        json.pop();
        json.push(',');
        json.push_str(field);
        json.push('}');
    }
    json
}

fn json(this: &AppReport) -> String {
    let mut json = String::from("{\"app\":");
    push_json_string(&mut json, this.name);
    let time = |ms: Option<u64>| ms.map_or("null".to_owned(), |ms| format!("\"{}\"", rfc3339(ms)));
    let AppCounters {
        held_now,
        released,
        timed_out,
        clients_gone,
        refused_at_shutdown,
        rejected,
        stopped,
        unheld,
    } = this.counters;
    let _ = write!(
        json,
        ",\"state\":\"{}\",\"since\":{},\"deadline\":{},\"held_now\":{held_now},\
         \"held_in_pause\":{},\"longest_wait_ms\":{},\"in_flight\":{},\"upgraded\":{},\
         \"released\":{released},\"timed_out\":{timed_out},\"clients_gone\":{clients_gone},\
         \"rejected\":{rejected},\"stopped\":{stopped},\
         \"refused_at_shutdown\":{refused_at_shutdown},\"unheld\":{unheld}}}",
        this.state.name(),
        time(this.since),
        time(this.deadline),
        this.held_in_pause,
        this.longest_wait_ms,
        this.in_flight.requests,
        this.in_flight.upgraded,
    );
    json
}

fn status_all_json_old(apps: &[AppReport], fields: &[String]) -> String {
    let objects: Vec<String> = apps.iter().map(json).collect();
    let fields: String = fields.iter().map(|field| format!(",{field}")).collect();
    format!("{{\"apps\":[{}]{fields}}}\n", objects.join(","))
}

fn module_json_field(this: &ModuleReport) -> String {
    format!(
        "\"module\":{{\"internal_errors\":{},\"app_names_too_long\":{},\"release_passes\":{}}}",
        this.internal_errors, this.app_names_too_long, this.release_passes
    )
}

fn state_file_json_field(this: &StateFileReport) -> String {
    let time = |ms: Option<u64>| ms.map_or("null".to_owned(), |ms| format!("\"{}\"", rfc3339(ms)));
    let mut json = format!(
        "\"state_file\":{{\"restored_at\":{},\"restored_apps\":{},\"restore_error\":",
        time(this.restored_at),
        this.restored_apps
    );
    match &this.restore_error {
        Some(error) => push_json_string(&mut json, error.as_bytes()),
        None => json.push_str("null"),
    }
    let _ = write!(
        json,
        ",\"saved_at\":{},\"save_errors\":{}}}",
        time(this.saved_at),
        this.save_errors
    );
    json
}

/// Appends an app name as a JSON string (RFC 8259): the name's text, with
/// `"`, `\` and the control characters escaped as JSON requires.
fn push_json_string(json: &mut String, bytes: &[u8]) {
    json.push('"');
    for c in app_name_text(bytes).chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(json, "\\u{:04x}", u32::from(c));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

fn metrics_text_old(apps: &[AppReport]) -> String {
    type Figure = fn(&AppReport) -> u64;
    const FIGURES: [(&str, &str, &str, Figure); 13] = [
        (
            "intermission_paused",
            "gauge",
            "Whether the app is paused or stopped (1) or running (0).",
            |a| u64::from(a.state != RunState::Running),
        ),
        (
            "intermission_stopped",
            "gauge",
            "Whether the app is stopped (1): its requests are answered 503.",
            |a| u64::from(a.state == RunState::Stopped),
        ),
        (
            "intermission_in_flight",
            "gauge",
            "Requests let through while the app was running and not finished yet \
             (what a drain waits for).",
            |a| a.in_flight.requests,
        ),
        (
            "intermission_upgraded",
            "gauge",
            "Requests that switched protocols (WebSocket) and are still open.",
            |a| a.in_flight.upgraded,
        ),
        (
            "intermission_held",
            "gauge",
            "Requests held right now, by all workers.",
            |a| a.counters.held_now,
        ),
        (
            "intermission_held_in_pause",
            "gauge",
            "Requests held during the current pause, or the last one.",
            |a| a.held_in_pause,
        ),
        (
            "intermission_released_total",
            "counter",
            "Held requests released by a resume.",
            |a| a.counters.released,
        ),
        (
            "intermission_timed_out_total",
            "counter",
            "Held requests whose $intermission_max_time passed while paused.",
            |a| a.counters.timed_out,
        ),
        (
            "intermission_clients_gone_total",
            "counter",
            "Held requests whose client closed the connection.",
            |a| a.counters.clients_gone,
        ),
        (
            "intermission_rejected_total",
            "counter",
            "Requests answered 503 past intermission_max_held.",
            |a| a.counters.rejected,
        ),
        (
            "intermission_stopped_total",
            "counter",
            "Requests answered 503 because the app was stopped.",
            |a| a.counters.stopped,
        ),
        (
            "intermission_refused_at_shutdown_total",
            "counter",
            "Requests answered 503 because nginx was stopping.",
            |a| a.counters.refused_at_shutdown,
        ),
        (
            "intermission_unheld_total",
            "counter",
            "Requests of the paused app that could not be held (no memory, no release \
             engine) and were answered 503.",
            |a| a.counters.unheld,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, figure) in FIGURES {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for app in apps {
            text.push_str(name);
            text.push_str("{app=\"");
            push_label_value(&mut text, app.name);
            let _ = writeln!(text, "\"}} {}", figure(app));
        }
    }
    text
}

fn status_all_text_old(apps: &[AppReport]) -> String {
    let mut text = String::new();
    for app in apps {
        push_text_name(&mut text, app.name);
        let _ = writeln!(text, " {}", app.state.name());
    }
    text
}

fn push_label_value(text: &mut String, bytes: &[u8]) {
    for c in app_name_text(bytes).chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

fn push_text_name(text: &mut String, bytes: &[u8]) {
    for c in app_name_text(bytes).chars() {
        if c.is_control() || c == '\\' {
            for byte in c.to_string().bytes() {
                let _ = write!(text, "\\x{byte:02x}");
            }
        } else {
            text.push(c);
        }
    }
}

/// Names rich in what escaping must get right: quotes, backslashes, every
/// control byte, DEL, bytes that are not UTF-8, multi-byte UTF-8.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (0u8..=0x20).prop_map(|b| vec![b]),
        Just(b"\x7f".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"/".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
        any::<char>().prop_map(|c| c.to_string().into_bytes()),
        "[a-z.-]{1,6}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn time() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0u64..253_402_300_800_000).prop_map(Some),
        any::<u64>().prop_map(Some),
    ]
}

fn error_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(name().prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

type Figures = ([u64; 8], [u64; 4]);

fn report<'a>(
    name: &'a [u8],
    state: u8,
    times: (Option<u64>, Option<u64>),
    (c, f): Figures,
) -> AppReport<'a> {
    AppReport {
        name,
        state: [RunState::Running, RunState::Paused, RunState::Stopped][usize::from(state % 3)],
        since: times.0,
        deadline: times.1,
        held_in_pause: f[0],
        longest_wait_ms: f[1],
        in_flight: InFlight {
            requests: f[2],
            upgraded: f[3],
        },
        counters: AppCounters {
            held_now: c[0],
            released: c[1],
            timed_out: c[2],
            clients_gone: c[3],
            refused_at_shutdown: c[4],
            rejected: c[5],
            stopped: c[6],
            unheld: c[7],
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn serde_writes_the_bytes_the_hand_written_writer_wrote(
        names in prop::collection::vec(name(), 0..4),
        states in prop::collection::vec(any::<u8>(), 4),
        times in prop::collection::vec((time(), time()), 4),
        figures in prop::collection::vec(any::<Figures>(), 4),
        module in any::<[u64; 3]>(),
        state_file in prop::option::of((time(), any::<u64>(), error_text(), time(), any::<u64>())),
    ) {
        let reports: Vec<AppReport> = names
            .iter()
            .enumerate()
            .map(|(i, name)| report(name, states[i], times[i], figures[i]))
            .collect();
        let module = ModuleReport {
            internal_errors: module[0],
            app_names_too_long: module[1],
            release_passes: module[2],
        };
        let state_file = state_file.map(|(restored_at, restored_apps, restore_error, saved_at, save_errors)| {
            StateFileReport { restored_at, restored_apps, restore_error, saved_at, save_errors }
        });
        let mut fields = vec![module_json_field(&module)];
        fields.extend(state_file.as_ref().map(state_file_json_field));
        let common = CommonReports { module, state_file };
        for report in &reports {
            prop_assert_eq!(report.json(), json(report));
            prop_assert_eq!(report.json_with(&common), json_with(report, &fields));
        }
        prop_assert_eq!(status_all_json(&reports, &common), status_all_json_old(&reports, &fields));
        prop_assert_eq!(status_all_text(&reports), status_all_text_old(&reports));
        prop_assert_eq!(metrics_text(&reports), metrics_text_old(&reports));
    }
}
