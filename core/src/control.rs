//! What the control endpoint understands of a request: the action named by
//! its path, the query arguments it reads, and the JSON status it answers.

use std::fmt::{self, Write};

use crate::pause::AppCounters;
use crate::settings::{parse_max_time, LogSafe};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Action {
    Status,
    Enable,
    Disable,
    /// Every app's figures in Prometheus' text format.
    Metrics,
}

/// The action named by the last segment of the request path.
pub fn action_of(uri: &[u8]) -> Option<Action> {
    let last = uri.rsplit(|&b| b == b'/').next()?;
    match last {
        b"status" => Some(Action::Status),
        b"enable" => Some(Action::Enable),
        b"disable" => Some(Action::Disable),
        b"metrics" => Some(Action::Metrics),
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
    pub format: Format,
    /// `enable?ttl=TIME`: the pause ends by itself this many milliseconds
    /// after the call.
    pub ttl: Option<u64>,
    /// `enable?drain=TIME`: the answer waits, at most this many
    /// milliseconds, until the app has no request in flight.
    pub drain: Option<u64>,
}

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
                write!(f, "the \"{name}\" argument does not apply to {action:?}")
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
        for pair in query.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            if name == b"format" {
                if std::mem::replace(&mut format_seen, true) {
                    return Err(BadArgument::Repeated("format"));
                }
                args.format = match value {
                    b"json" => Format::Json,
                    b"text" => Format::Text,
                    _ => {
                        return Err(BadArgument::InvalidValue {
                            name: "format",
                            value: value.to_vec(),
                            expected: "\"json\" or \"text\"",
                        })
                    }
                };
            } else if name == b"ttl" {
                args.ttl = Some(parse_time_arg("ttl", value, &mut ttl_seen)?);
            } else if name == b"drain" {
                args.drain = Some(parse_time_arg("drain", value, &mut drain_seen)?);
            }
        }
        Ok(args)
    }

    /// Refuses arguments that `action` does not take.
    pub fn check_for(&self, action: Action) -> Result<(), BadArgument> {
        let enable_only = [("ttl", self.ttl.is_some()), ("drain", self.drain.is_some())];
        for (name, given) in enable_only {
            if given && action != Action::Enable {
                return Err(BadArgument::NotFor { name, action });
            }
        }
        Ok(())
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

/// One app's status as a JSON object, on one line.
pub fn status_json(app: &[u8], paused: bool, held_in_pause: u64, counters: &AppCounters) -> String {
    let mut json = String::from("{\"app\":");
    push_json_string(&mut json, app);
    let AppCounters {
        held_now,
        released,
        timed_out,
        clients_gone,
        refused_at_shutdown,
        rejected,
    } = counters;
    let _ = write!(
        json,
        ",\"state\":\"{}\",\"held_now\":{held_now},\"held_in_pause\":{held_in_pause},\
         \"released\":{released},\"timed_out\":{timed_out},\"clients_gone\":{clients_gone},\
         \"refused_at_shutdown\":{refused_at_shutdown},\"rejected\":{rejected}}}",
        if paused { "paused" } else { "running" }
    );
    json
}

/// One app as the metrics show it.
pub struct AppFigures<'a> {
    pub name: &'a [u8],
    pub paused: bool,
    pub held_in_pause: u64,
    pub counters: AppCounters,
}

/// Every app's figures in Prometheus' text exposition format (version 0.0.4):
/// one series per app and figure, labelled `app`.
pub fn metrics_text(apps: &[AppFigures]) -> String {
    type Figure = fn(&AppFigures) -> u64;
    const FIGURES: [(&str, &str, &str, Figure); 8] = [
        (
            "intermission_paused",
            "gauge",
            "Whether the app is paused (1) or running (0).",
            |a| u64::from(a.paused),
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
            "intermission_refused_at_shutdown_total",
            "counter",
            "Requests answered 503 because nginx was stopping.",
            |a| a.counters.refused_at_shutdown,
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

/// Appends `bytes` as a Prometheus label value: `\\`, `\"` and `\n` escaped as
/// the format requires; bytes that are not UTF-8 become U+FFFD, since label
/// values must be UTF-8.
fn push_label_value(text: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// Appends `bytes` as a JSON string. App names are bytes, not always UTF-8:
/// printable ASCII goes as is, every other byte as `\u00XX`, so the output is
/// always valid JSON and each byte can be recovered.
fn push_json_string(json: &mut String, bytes: &[u8]) {
    json.push('"');
    for &byte in bytes {
        match byte {
            b'"' => json.push_str("\\\""),
            b'\\' => json.push_str("\\\\"),
            0x20..=0x7e => json.push(byte as char),
            _ => {
                let _ = write!(json, "\\u{byte:04x}");
            }
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_one_series_per_app_and_figure() {
        let shop = AppFigures {
            name: b"shop",
            paused: true,
            held_in_pause: 7,
            counters: AppCounters {
                held_now: 2,
                released: 5,
                ..AppCounters::default()
            },
        };
        let odd = AppFigures {
            name: b"a\"b\\c\nd\xff",
            paused: false,
            held_in_pause: 0,
            counters: AppCounters::default(),
        };
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
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 16);
        assert!(metrics_text(&[]).lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn arguments_pick_the_format_and_leave_others_alone() {
        assert_eq!(ControlArgs::parse(b""), Ok(ControlArgs::default()));
        assert_eq!(
            ControlArgs::parse(b"format=json").unwrap().format,
            Format::Json
        );
        assert_eq!(
            ControlArgs::parse(b"app=shop&format=text&&x")
                .unwrap()
                .format,
            Format::Text
        );
        assert_eq!(
            ControlArgs::parse(b"app=a&app=b").unwrap().format,
            Format::Text
        );
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
            "the \"ttl\" argument does not apply to Disable"
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
        let counters = AppCounters {
            held_now: 2,
            released: 5,
            timed_out: 1,
            clients_gone: 3,
            refused_at_shutdown: 0,
            rejected: 4,
        };
        assert_eq!(
            status_json(b"shop", true, 7, &counters),
            "{\"app\":\"shop\",\"state\":\"paused\",\"held_now\":2,\"held_in_pause\":7,\
             \"released\":5,\"timed_out\":1,\"clients_gone\":3,\"refused_at_shutdown\":0,\"rejected\":4}"
        );
        let odd = status_json(b"a\"b\\c\n\xff", false, 0, &AppCounters::default());
        assert!(
            odd.starts_with("{\"app\":\"a\\\"b\\\\c\\u000a\\u00ff\",\"state\":\"running\""),
            "{odd}"
        );
        assert!(odd.is_ascii());
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
