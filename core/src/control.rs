//! What the control endpoint understands of a request: the action named by
//! its path, the query arguments it reads, and the JSON status it answers.

use std::fmt::{self, Write};

use crate::in_flight::InFlight;
use crate::pause::AppCounters;
use crate::settings::{parse_max_time, LogSafe};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Action {
    Status,
    Enable,
    Disable,
    /// Every app's figures in Prometheus' text format.
    Metrics,
    /// Answers every request of the app 503 until `Disable` (or `Enable`).
    Stop,
}

impl Action {
    /// The action as the path names it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Metrics => "metrics",
            Action::Stop => "stop",
        }
    }
}

/// The action named by the last segment of the request path.
pub fn action_of(uri: &[u8]) -> Option<Action> {
    let last = uri.rsplit(|&b| b == b'/').next()?;
    match last {
        b"status" => Some(Action::Status),
        b"enable" => Some(Action::Enable),
        b"disable" => Some(Action::Disable),
        b"metrics" => Some(Action::Metrics),
        b"stop" => Some(Action::Stop),
        _ => None,
    }
}

/// How the status is answered.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Default)]
pub enum Format {
    /// `Pause enabled.` / `Pause disabled.`, as the old script answered.
    #[default]
    Text,
    Json,
}

/// The query arguments the control endpoint reads. Any other argument is left
/// alone: configurations name the app with one (`set $app_name $arg_app;`).
#[derive(Debug, PartialEq, Eq, Default)]
pub struct ControlArgs {
    /// `None`: not asked for by argument (the `Accept` header may ask).
    pub format: Option<Format>,
    /// `status?all`: every app, not only the call's own.
    pub all: bool,
    /// `enable?ttl=TIME`: the pause ends by itself this many milliseconds
    /// after the call.
    pub ttl: Option<u64>,
    /// `enable?drain=TIME`: the answer waits, at most this many
    /// milliseconds, until the app has no request in flight.
    pub drain: Option<u64>,
    /// `disable?rate=N`: release the held requests at most N per second.
    pub rate: Option<u64>,
}

/// The highest `rate` taken: beyond it a pace would not be felt.
pub const MAX_RELEASE_RATE: u64 = 1_000_000;

/// A control request whose arguments cannot be obeyed: answered 400.
#[derive(Debug, PartialEq, Eq)]
pub enum BadArgument {
    Repeated(&'static str),
    /// An argument the action does not take.
    NotFor {
        name: &'static str,
        action: Action,
    },
    InvalidValue {
        name: &'static str,
        value: Vec<u8>,
        expected: &'static str,
    },
}

impl fmt::Display for BadArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadArgument::Repeated(name) => {
                write!(f, "the \"{name}\" argument is given more than once")
            }
            BadArgument::NotFor { name, action } => {
                write!(
                    f,
                    "the \"{name}\" argument does not apply to {}",
                    action.name()
                )
            }
            BadArgument::InvalidValue {
                name,
                value,
                expected,
            } => write!(
                f,
                "invalid \"{name}\" argument \"{}\", expected {expected}",
                LogSafe(value)
            ),
        }
    }
}

impl ControlArgs {
    /// Parses a raw query string (`r->args`: still percent-encoded).
    pub fn parse(query: &[u8]) -> Result<ControlArgs, BadArgument> {
        let mut args = ControlArgs::default();
        let mut format_seen = false;
        let mut ttl_seen = false;
        let mut drain_seen = false;
        let mut all_seen = false;
        let mut rate_seen = false;
        for pair in query.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            if name == b"format" {
                if std::mem::replace(&mut format_seen, true) {
                    return Err(BadArgument::Repeated("format"));
                }
                args.format = Some(match value {
                    b"json" => Format::Json,
                    b"text" => Format::Text,
                    _ => {
                        return Err(BadArgument::InvalidValue {
                            name: "format",
                            value: value.to_vec(),
                            expected: "\"json\" or \"text\"",
                        })
                    }
                });
            } else if name == b"ttl" {
                args.ttl = Some(parse_time_arg("ttl", value, &mut ttl_seen)?);
            } else if name == b"drain" {
                args.drain = Some(parse_time_arg("drain", value, &mut drain_seen)?);
            } else if name == b"rate" {
                if std::mem::replace(&mut rate_seen, true) {
                    return Err(BadArgument::Repeated("rate"));
                }
                let rate = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|rate| (1..=MAX_RELEASE_RATE).contains(rate));
                let Some(rate) = rate else {
                    return Err(BadArgument::InvalidValue {
                        name: "rate",
                        value: value.to_vec(),
                        expected: "a whole number of requests per second from 1 to 1000000",
                    });
                };
                args.rate = Some(rate);
            } else if name == b"all" {
                if std::mem::replace(&mut all_seen, true) {
                    return Err(BadArgument::Repeated("all"));
                }
                if pair.contains(&b'=') {
                    return Err(BadArgument::InvalidValue {
                        name: "all",
                        value: value.to_vec(),
                        expected: "no value (\"?all\")",
                    });
                }
                args.all = true;
            }
        }
        Ok(args)
    }

    /// Refuses arguments that `action` does not take.
    pub fn check_for(&self, action: Action) -> Result<(), BadArgument> {
        let takes = [
            (
                "ttl",
                self.ttl.is_some(),
                &[Action::Enable, Action::Stop][..],
            ),
            ("drain", self.drain.is_some(), &[Action::Enable]),
            ("all", self.all, &[Action::Status]),
            ("rate", self.rate.is_some(), &[Action::Disable]),
        ];
        for (name, given, actions) in takes {
            if given && !actions.contains(&action) {
                return Err(BadArgument::NotFor { name, action });
            }
        }
        Ok(())
    }

    /// The format of the answer: the `format` argument, else JSON if the
    /// `Accept` header names `application/json`, else text.
    pub fn format_for(&self, accept: Option<&[u8]>) -> Format {
        self.format.unwrap_or(if accept.is_some_and(accepts_json) {
            Format::Json
        } else {
            Format::Text
        })
    }
}

/// Whether an `Accept` header asks for `application/json`: names it with a
/// weight above zero (`;q=0` refuses it, RFC 9110 section 12.5.1). `*/*`
/// alone does not count: old scripts send it.
pub fn accepts_json(accept: &[u8]) -> bool {
    accept.split(|&b| b == b',').any(|entry| {
        let mut parts = entry.split(|&b| b == b';');
        let media = parts.next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(b"application/json")
            && parts.all(|parameter| !is_zero_weight(parameter))
    })
}

/// `q=0`, `q=0.0`, ... `q=0.000` (any case, spaces around `=` allowed).
fn is_zero_weight(parameter: &[u8]) -> bool {
    let Some(eq) = parameter.iter().position(|&b| b == b'=') else {
        return false;
    };
    let (name, value) = (
        parameter[..eq].trim_ascii(),
        parameter[eq + 1..].trim_ascii(),
    );
    if !name.eq_ignore_ascii_case(b"q") {
        return false;
    }
    match value.split_first() {
        Some((b'0', rest)) => match rest.split_first() {
            None => true,
            Some((b'.', decimals)) => decimals.len() <= 3 && decimals.iter().all(|&b| b == b'0'),
            Some(_) => false,
        },
        _ => false,
    }
}

/// A time argument (`ttl`, `drain`): seconds or a number with one unit, more
/// than 0 and at most a day, given once. In milliseconds.
fn parse_time_arg(name: &'static str, value: &[u8], seen: &mut bool) -> Result<u64, BadArgument> {
    if std::mem::replace(seen, true) {
        return Err(BadArgument::Repeated(name));
    }
    match parse_max_time(value) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(BadArgument::InvalidValue {
            name,
            value: value.to_vec(),
            expected: "a time of more than 0 and at most a day, such as 30, 90s or 5m",
        }),
    }
}

/// Whether an app runs, holds its requests, or answers them 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum RunState {
    Running,
    Paused,
    Stopped,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Stopped => "stopped",
        }
    }
}

/// Everything the status and the metrics say about one app.
pub struct AppReport<'a> {
    pub name: &'a [u8],
    pub state: RunState,
    /// When the current pause or stop began, as wall-clock Unix milliseconds.
    pub since: Option<u64>,
    /// When it ends by itself, likewise.
    pub deadline: Option<u64>,
    pub held_in_pause: u64,
    pub longest_wait_ms: u64,
    pub in_flight: InFlight,
    pub counters: AppCounters,
}

impl AppReport<'_> {
    /// The app as a JSON object, on one line, with `fields` (`"name":value`,
    /// such as the module's and the state file's reports) after its own.
    pub fn json_with(&self, fields: &[String]) -> String {
        let mut json = self.json();
        for field in fields {
            json.pop();
            json.push(',');
            json.push_str(field);
            json.push('}');
        }
        json
    }

    /// The app as a JSON object, on one line.
    pub fn json(&self) -> String {
        let mut json = String::from("{\"app\":");
        push_json_string(&mut json, self.name);
        let time =
            |ms: Option<u64>| ms.map_or("null".to_owned(), |ms| format!("\"{}\"", rfc3339(ms)));
        let AppCounters {
            held_now,
            released,
            timed_out,
            clients_gone,
            refused_at_shutdown,
            rejected,
            stopped,
            unheld,
        } = self.counters;
        let _ = write!(
            json,
            ",\"state\":\"{}\",\"since\":{},\"deadline\":{},\"held_now\":{held_now},\
             \"held_in_pause\":{},\"longest_wait_ms\":{},\"in_flight\":{},\"upgraded\":{},\
             \"released\":{released},\"timed_out\":{timed_out},\"clients_gone\":{clients_gone},\
             \"rejected\":{rejected},\"stopped\":{stopped},\
             \"refused_at_shutdown\":{refused_at_shutdown},\"unheld\":{unheld}}}",
            self.state.name(),
            time(self.since),
            time(self.deadline),
            self.held_in_pause,
            self.longest_wait_ms,
            self.in_flight.requests,
            self.in_flight.upgraded,
        );
        json
    }
}

/// One app's JSON status as the control endpoint answers it (`AppReport::json`),
/// as its clients (the ops command line) read it: one type for both sides,
/// so that they cannot drift apart. With the `serde` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StatusAnswer {
    pub app: String,
    pub state: RunState,
    /// RFC 3339, UTC.
    pub since: Option<String>,
    pub deadline: Option<String>,
    pub held_now: u64,
    pub held_in_pause: u64,
    pub longest_wait_ms: u64,
    pub in_flight: u64,
    /// Requests that switched protocols (WebSocket) and are still open;
    /// drains do not wait for them. Absent from answers of older modules.
    #[cfg_attr(feature = "serde", serde(default))]
    pub upgraded: u64,
    pub released: u64,
    pub timed_out: u64,
    pub clients_gone: u64,
    pub rejected: u64,
    pub stopped: u64,
    pub refused_at_shutdown: u64,
    /// Requests of the paused app that could not be held and were answered
    /// 503. Absent from answers of older modules.
    #[cfg_attr(feature = "serde", serde(default))]
    pub unheld: u64,
}

/// `status?all&format=json`: every app, in one object, with `fields`
/// (`"name":value`: the module's and the state file's reports).
pub fn status_all_json(apps: &[AppReport], fields: &[String]) -> String {
    let objects: Vec<String> = apps.iter().map(AppReport::json).collect();
    let fields: String = fields.iter().map(|field| format!(",{field}")).collect();
    format!("{{\"apps\":[{}]{fields}}}\n", objects.join(","))
}

/// `status?all` as text: one line per app, its name (as in JSON and the
/// metrics; see `push_text_name`) and its state.
pub fn status_all_text(apps: &[AppReport]) -> String {
    let mut text = String::new();
    for app in apps {
        push_text_name(&mut text, app.name);
        let _ = writeln!(text, " {}", app.state.name());
    }
    text
}

/// Unix milliseconds as RFC 3339 in UTC, with milliseconds:
/// `2026-11-23T10:15:30.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (h, m, sec, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

/// Every app's figures in Prometheus' text exposition format (version 0.0.4):
/// one series per app and figure, labelled `app`.
pub fn metrics_text(apps: &[AppReport]) -> String {
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

/// What the status and the metrics say of the module itself, for every app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleReport {
    /// Panics the module caught (each logged at `alert`).
    pub internal_errors: u64,
    /// Requests whose `$app_name` was too long to name an app: let through.
    pub app_names_too_long: u64,
    /// Looks the workers' release engines took at their queues: flat while
    /// they only hold, since nothing runs on a clock.
    pub release_passes: u64,
}

impl ModuleReport {
    /// `"module":{...}`, for the JSON status.
    pub fn json_field(&self) -> String {
        format!(
            "\"module\":{{\"internal_errors\":{},\"app_names_too_long\":{},\"release_passes\":{}}}",
            self.internal_errors, self.app_names_too_long, self.release_passes
        )
    }

    /// The module's figures for Prometheus.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        for (name, help, value) in [
            (
                "intermission_internal_errors_total",
                "Panics the module caught; each is logged at alert.",
                self.internal_errors,
            ),
            (
                "intermission_app_names_too_long_total",
                "Requests whose $app_name was too long to name an app (let through).",
                self.app_names_too_long,
            ),
            (
                "intermission_release_passes_total",
                "Looks the release engines took at their held requests.",
                self.release_passes,
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        text
    }
}

/// What the status and the metrics say of the state file
/// (`intermission_state_file`), when one is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFileReport {
    /// When nginx restored the pause state from it (wall clock, Unix ms),
    /// if it did: at the start of the zone, from a file it could read.
    pub restored_at: Option<u64>,
    /// Apps paused or stopped again from it (not those whose deadline had
    /// passed).
    pub restored_apps: u64,
    /// Why the file could not be read, when it could not: nothing was
    /// restored (a missing file is no error).
    pub restore_error: Option<String>,
    /// When it was last written, if it was since the zone began.
    pub saved_at: Option<u64>,
    /// Writes that failed (each one logged with its reason).
    pub save_errors: u64,
}

impl StateFileReport {
    /// `"state_file":{...}`, for the JSON status.
    pub fn json_field(&self) -> String {
        let time =
            |ms: Option<u64>| ms.map_or("null".to_owned(), |ms| format!("\"{}\"", rfc3339(ms)));
        let mut json = format!(
            "\"state_file\":{{\"restored_at\":{},\"restored_apps\":{},\"restore_error\":",
            time(self.restored_at),
            self.restored_apps
        );
        match &self.restore_error {
            Some(error) => push_json_string(&mut json, error.as_bytes()),
            None => json.push_str("null"),
        }
        let _ = write!(
            json,
            ",\"saved_at\":{},\"save_errors\":{}}}",
            time(self.saved_at),
            self.save_errors
        );
        json
    }

    /// The state file's figures for Prometheus.
    pub fn metrics(&self) -> String {
        let seconds = |ms: Option<u64>| {
            ms.map_or("0".to_owned(), |ms| {
                format!("{}.{:03}", ms / 1000, ms % 1000)
            })
        };
        format!(
            "# HELP intermission_state_restored_timestamp_seconds When the pause state was restored \
             from intermission_state_file (0: it was not).\n\
             # TYPE intermission_state_restored_timestamp_seconds gauge\n\
             intermission_state_restored_timestamp_seconds {}\n\
             # HELP intermission_state_restored_apps Apps paused or stopped again from the state file.\n\
             # TYPE intermission_state_restored_apps gauge\n\
             intermission_state_restored_apps {}\n\
             # HELP intermission_state_restore_failed Whether the state file could not be read at start (1): nothing was restored.\n\
             # TYPE intermission_state_restore_failed gauge\n\
             intermission_state_restore_failed {}\n\
             # HELP intermission_state_save_errors_total Writes of the state file that failed.\n\
             # TYPE intermission_state_save_errors_total counter\n\
             intermission_state_save_errors_total {}\n",
            seconds(self.restored_at),
            self.restored_apps,
            u64::from(self.restore_error.is_some()),
            self.save_errors
        )
    }
}

/// Appends an app name as a Prometheus label value: its text (label values
/// are UTF-8), with `\\`, `\"` and `\n` escaped as the format requires.
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

/// An app name as text, the same in every answer (JSON, text status,
/// metrics): names are bytes, usually UTF-8 (`set $app_name "café";`), which
/// is kept as it is; bytes that are not UTF-8 become U+FFFD, since all three
/// formats are UTF-8 text.
pub fn app_name_text(name: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(name)
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

/// Appends an app name to the text status: its text, with control
/// characters and `\` escaped as `\xNN` (so one app is one line).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "serde")]
    #[test]
    fn the_status_json_reads_back_as_the_shared_status_type() {
        let report = AppReport {
            name: b"shop",
            state: RunState::Stopped,
            since: Some(1_795_000_000_000),
            deadline: None,
            held_in_pause: 4,
            longest_wait_ms: 1_500,
            in_flight: InFlight {
                requests: 3,
                upgraded: 2,
            },
            counters: AppCounters {
                held_now: 2,
                released: 5,
                timed_out: 1,
                clients_gone: 6,
                refused_at_shutdown: 7,
                rejected: 8,
                stopped: 9,
                unheld: 10,
            },
        };
        let answer: StatusAnswer = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(
            answer,
            StatusAnswer {
                app: "shop".into(),
                state: RunState::Stopped,
                since: Some(rfc3339(1_795_000_000_000)),
                deadline: None,
                held_now: 2,
                held_in_pause: 4,
                longest_wait_ms: 1_500,
                in_flight: 3,
                upgraded: 2,
                released: 5,
                timed_out: 1,
                clients_gone: 6,
                rejected: 8,
                stopped: 9,
                refused_at_shutdown: 7,
                unheld: 10,
            }
        );
    }

    fn report(name: &[u8], state: RunState) -> AppReport<'_> {
        AppReport {
            name,
            state,
            since: None,
            deadline: None,
            held_in_pause: 0,
            longest_wait_ms: 0,
            in_flight: InFlight::default(),
            counters: AppCounters::default(),
        }
    }

    #[test]
    fn metrics_have_one_series_per_app_and_figure() {
        let shop = AppReport {
            held_in_pause: 7,
            counters: AppCounters {
                held_now: 2,
                released: 5,
                ..AppCounters::default()
            },
            ..report(b"shop", RunState::Stopped)
        };
        let odd = report(b"a\"b\\c\nd\xff", RunState::Running);
        let text = metrics_text(&[shop, odd]);
        assert!(
            text.contains("# TYPE intermission_paused gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("\nintermission_paused{app=\"shop\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nintermission_held{app=\"shop\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("\nintermission_released_total{app=\"shop\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("\nintermission_paused{app=\"a\\\"b\\\\c\\nd\u{fffd}\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nintermission_stopped{app=\"shop\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 26);
        assert!(metrics_text(&[]).lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn arguments_pick_the_format_and_leave_others_alone() {
        assert_eq!(ControlArgs::parse(b""), Ok(ControlArgs::default()));
        assert_eq!(
            ControlArgs::parse(b"format=json").unwrap().format,
            Some(Format::Json)
        );
        assert_eq!(
            ControlArgs::parse(b"app=shop&format=text&&x")
                .unwrap()
                .format,
            Some(Format::Text)
        );
        assert_eq!(ControlArgs::parse(b"app=a&app=b").unwrap().format, None);
    }

    #[test]
    fn ttl_takes_a_time_for_enable_only() {
        assert_eq!(ControlArgs::parse(b"ttl=30").unwrap().ttl, Some(30_000));
        assert_eq!(
            ControlArgs::parse(b"app=a&ttl=1.5m").unwrap().ttl,
            Some(90_000)
        );
        for bad in [&b"ttl=0"[..], b"ttl=-5", b"ttl=2d", b"ttl=", b"ttl=999999"] {
            let refused = ControlArgs::parse(bad).unwrap_err();
            assert!(
                refused.to_string().starts_with("invalid \"ttl\" argument"),
                "{refused}"
            );
        }
        assert_eq!(
            ControlArgs::parse(b"ttl=1&ttl=2"),
            Err(BadArgument::Repeated("ttl"))
        );
        let args = ControlArgs::parse(b"ttl=10").unwrap();
        assert_eq!(args.check_for(Action::Enable), Ok(()));
        let refused = args.check_for(Action::Disable).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the \"ttl\" argument does not apply to disable"
        );
    }

    #[test]
    fn drain_takes_a_time_for_enable_only() {
        let args = ControlArgs::parse(b"drain=30&ttl=5m").unwrap();
        assert_eq!((args.drain, args.ttl), (Some(30_000), Some(300_000)));
        assert_eq!(args.check_for(Action::Enable), Ok(()));
        assert_eq!(
            ControlArgs::parse(b"drain=2s")
                .unwrap()
                .check_for(Action::Status),
            Err(BadArgument::NotFor {
                name: "drain",
                action: Action::Status
            })
        );
        assert_eq!(
            ControlArgs::parse(b"drain=1&drain=1"),
            Err(BadArgument::Repeated("drain"))
        );
        for bad in [&b"drain=0"[..], b"drain=", b"drain=x", b"drain=25h"] {
            let refused = ControlArgs::parse(bad).unwrap_err().to_string();
            assert!(
                refused.starts_with("invalid \"drain\" argument"),
                "{refused}"
            );
        }
    }

    #[test]
    fn bad_or_repeated_format_is_refused_naming_it() {
        let repeated = ControlArgs::parse(b"format=json&format=json").unwrap_err();
        assert_eq!(repeated, BadArgument::Repeated("format"));
        assert!(repeated.to_string().contains("\"format\""));
        let bad = ControlArgs::parse(b"format=xml%FF").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "invalid \"format\" argument \"xml%FF\", expected \"json\" or \"text\""
        );
        assert!(ControlArgs::parse(b"format").is_err());
    }

    #[test]
    fn status_json_is_one_valid_object_whatever_the_name() {
        let shop = AppReport {
            since: Some(1_795_428_930_123),
            deadline: Some(1_795_429_530_123),
            held_in_pause: 7,
            longest_wait_ms: 1_500,
            in_flight: InFlight {
                requests: 3,
                upgraded: 1,
            },
            counters: AppCounters {
                held_now: 2,
                released: 5,
                timed_out: 1,
                clients_gone: 3,
                refused_at_shutdown: 0,
                rejected: 4,
                stopped: 6,
                unheld: 8,
            },
            ..report(b"shop", RunState::Paused)
        };
        assert_eq!(
            shop.json(),
            "{\"app\":\"shop\",\"state\":\"paused\",\"since\":\"2026-11-23T10:15:30.123Z\",\
             \"deadline\":\"2026-11-23T10:25:30.123Z\",\"held_now\":2,\"held_in_pause\":7,\
             \"longest_wait_ms\":1500,\"in_flight\":3,\"upgraded\":1,\"released\":5,\"timed_out\":1,\
             \"clients_gone\":3,\"rejected\":4,\"stopped\":6,\"refused_at_shutdown\":0,\
             \"unheld\":8}"
        );
        let odd = report(b"a\"b\\c\n\x01\xff", RunState::Running).json();
        assert!(
            odd.starts_with(
                "{\"app\":\"a\\\"b\\\\c\\n\\u0001\u{fffd}\",\"state\":\"running\",\"since\":null,\"deadline\":null,"
            ),
            "{odd}"
        );
        // UTF-8 names are UTF-8 text, the same as in the metrics and the
        // text status; a JSON parser reads back exactly the name.
        let cafe = report("café ☕".as_bytes(), RunState::Paused);
        let parsed: serde_json::Value = serde_json::from_str(&cafe.json()).unwrap();
        assert_eq!(parsed["app"], "café ☕");
        assert!(metrics_text(std::slice::from_ref(&cafe)).contains("{app=\"café ☕\"}"));
        assert_eq!(status_all_text(&[cafe]), "café ☕ paused\n");
        for name in [&b"a\"b\\c\n\x01\xff"[..], b"\x7f\t\r", "日本".as_bytes()] {
            let parsed: serde_json::Value =
                serde_json::from_str(&report(name, RunState::Running).json()).unwrap();
            assert_eq!(parsed["app"], *String::from_utf8_lossy(name));
        }
        let all = status_all_json(&[shop, report(b"blog", RunState::Stopped)], &[]);
        assert!(all.starts_with("{\"apps\":[{\"app\":\"shop\""), "{all}");
        assert!(
            all.ends_with("\"refused_at_shutdown\":0,\"unheld\":0}]}\n"),
            "{all}"
        );
        assert_eq!(
            status_all_text(&[
                report(b"shop", RunState::Paused),
                report(b"b\nx", RunState::Stopped)
            ]),
            "shop paused\nb\\x0ax stopped\n"
        );
        assert_eq!(status_all_json(&[], &[]), "{\"apps\":[]}\n");
    }

    #[test]
    fn the_state_file_report_is_valid_json_and_metrics() {
        let restored = StateFileReport {
            restored_at: Some(1_796_040_000_123),
            restored_apps: 2,
            restore_error: None,
            saved_at: Some(1_796_040_001_000),
            save_errors: 1,
        };
        let shop = report(b"shop", RunState::Paused);
        let parsed: serde_json::Value =
            serde_json::from_str(&shop.json_with(&[restored.json_field()])).unwrap();
        assert_eq!(parsed["app"], "shop");
        assert_eq!(
            parsed["state_file"]["restored_at"],
            "2026-11-30T12:00:00.123Z"
        );
        assert_eq!(parsed["state_file"]["restored_apps"], 2);
        assert_eq!(
            parsed["state_file"]["restore_error"],
            serde_json::Value::Null
        );
        assert_eq!(parsed["state_file"]["save_errors"], 1);
        assert_eq!(shop.json_with(&[]), shop.json());

        let failed = StateFileReport {
            restore_error: Some("line 3: \"since\" is not a time".into()),
            ..StateFileReport::default()
        };
        let all: serde_json::Value =
            serde_json::from_str(&status_all_json(&[shop], &[failed.json_field()])).unwrap();
        assert_eq!(
            all["state_file"]["restore_error"],
            "line 3: \"since\" is not a time"
        );
        assert_eq!(all["state_file"]["restored_at"], serde_json::Value::Null);

        let metrics = restored.metrics();
        assert!(
            metrics.contains("\nintermission_state_restored_timestamp_seconds 1796040000.123\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nintermission_state_restored_apps 2\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nintermission_state_restore_failed 0\n"),
            "{metrics}"
        );
        assert!(failed
            .metrics()
            .contains("\nintermission_state_restore_failed 1\n"));
        assert!(failed
            .metrics()
            .contains("\nintermission_state_restored_timestamp_seconds 0\n"));
    }

    #[test]
    fn rfc3339_dates_are_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn accept_selects_json_only_when_it_names_it_and_format_wins() {
        for accept in [
            &b"application/json"[..],
            b"text/html, Application/JSON;q=0.9",
            b"application/json ; charset=utf-8",
            b"application/json;q=0.001",
            b"application/json;q=0.5, application/json;q=0",
        ] {
            assert!(
                accepts_json(accept),
                "{:?}",
                String::from_utf8_lossy(accept)
            );
        }
        for accept in [
            &b"*/*"[..],
            b"text/plain",
            b"application/jsonx",
            b"",
            b"application/json;q=0",
            b"application/json; Q = 0.000",
            b"text/html, application/json;q=0.0",
        ] {
            assert!(
                !accepts_json(accept),
                "{:?}",
                String::from_utf8_lossy(accept)
            );
        }
        let none = ControlArgs::parse(b"").unwrap();
        assert_eq!(none.format_for(Some(b"application/json")), Format::Json);
        assert_eq!(none.format_for(None), Format::Text);
        let text = ControlArgs::parse(b"format=text").unwrap();
        assert_eq!(text.format_for(Some(b"application/json")), Format::Text);
    }

    #[test]
    fn rate_is_a_whole_number_for_disable_only() {
        assert_eq!(ControlArgs::parse(b"rate=50").unwrap().rate, Some(50));
        for bad in [
            &b"rate=0"[..],
            b"rate=",
            b"rate=1.5",
            b"rate=-3",
            b"rate=1000001",
            b"rate=+5",
        ] {
            let refused = ControlArgs::parse(bad).unwrap_err().to_string();
            assert!(
                refused.starts_with("invalid \"rate\" argument"),
                "{refused}"
            );
        }
        assert_eq!(
            ControlArgs::parse(b"rate=1&rate=2"),
            Err(BadArgument::Repeated("rate"))
        );
        let rate = ControlArgs::parse(b"rate=10").unwrap();
        assert_eq!(rate.check_for(Action::Disable), Ok(()));
        assert!(rate.check_for(Action::Enable).is_err());
    }

    #[test]
    fn all_is_a_bare_flag_for_status_only() {
        assert!(ControlArgs::parse(b"all").unwrap().all);
        assert!(ControlArgs::parse(b"format=json&all&app=x").unwrap().all);
        assert_eq!(
            ControlArgs::parse(b"all&all"),
            Err(BadArgument::Repeated("all"))
        );
        assert_eq!(
            ControlArgs::parse(b"all=1").unwrap_err().to_string(),
            "invalid \"all\" argument \"1\", expected no value (\"?all\")"
        );
        let all = ControlArgs::parse(b"all").unwrap();
        assert_eq!(all.check_for(Action::Status), Ok(()));
        assert!(all.check_for(Action::Enable).is_err());
        let ttl = ControlArgs::parse(b"ttl=5").unwrap();
        assert_eq!(ttl.check_for(Action::Stop), Ok(()));
        assert_eq!(action_of(b"/_intermission/stop"), Some(Action::Stop));
    }

    #[test]
    fn the_last_path_segment_picks_the_action() {
        assert_eq!(action_of(b"/_intermission/status"), Some(Action::Status));
        assert_eq!(action_of(b"/_intermission/enable"), Some(Action::Enable));
        assert_eq!(
            action_of(b"/ops/shop/_intermission/disable"),
            Some(Action::Disable)
        );
        assert_eq!(action_of(b"disable"), Some(Action::Disable));
        assert_eq!(action_of(b"/_intermission/metrics"), Some(Action::Metrics));
    }

    #[test]
    fn anything_else_is_not_an_action() {
        for uri in [
            &b"/_intermission"[..],
            b"/_intermission/",
            b"/_intermission/enable/",
            b"/_intermission/Enable",
            b"/_intermission/enablex",
            b"",
        ] {
            assert_eq!(action_of(uri), None, "{:?}", String::from_utf8_lossy(uri));
        }
    }
}
