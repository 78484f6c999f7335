//! What the control endpoint understands of a request: the action named by
//! its path, the query arguments it reads, and the JSON status it answers.

use std::fmt::{self, Write};

use crate::pause::AppCounters;
use crate::settings::LogSafe;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Action {
    Status,
    Enable,
    Disable,
}

/// The action named by the last segment of the request path.
pub fn action_of(uri: &[u8]) -> Option<Action> {
    let last = uri.rsplit(|&b| b == b'/').next()?;
    match last {
        b"status" => Some(Action::Status),
        b"enable" => Some(Action::Enable),
        b"disable" => Some(Action::Disable),
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
}

/// A control request whose arguments cannot be obeyed: answered 400.
#[derive(Debug, PartialEq, Eq)]
pub enum BadArgument {
    Repeated(&'static str),
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
            }
        }
        Ok(args)
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
