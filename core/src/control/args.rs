//! What a control request asks: the action its path names, and the query
//! arguments the endpoint reads (format, ttl, drain, rate, all), checked
//! against the action.

use std::fmt;

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
        const NAMES: [&str; 5] = ["format", "ttl", "drain", "rate", "all"];
        let mut args = ControlArgs::default();
        let mut seen = [false; NAMES.len()];
        for pair in query.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], Some(&pair[eq + 1..])),
                None => (pair, None),
            };
            let Some(index) = NAMES.iter().position(|known| known.as_bytes() == name) else {
                continue;
            };
            let name = NAMES[index];
            if std::mem::replace(&mut seen[index], true) {
                return Err(BadArgument::Repeated(name));
            }
            let text = value.unwrap_or_default();
            match name {
                "format" => args.format = Some(parse_format(text)?),
                "ttl" => args.ttl = Some(parse_time_arg(name, text)?),
                "drain" => args.drain = Some(parse_time_arg(name, text)?),
                "rate" => args.rate = Some(parse_rate(text)?),
                // `all` is a bare flag.
                _ if value.is_some() => {
                    return Err(BadArgument::InvalidValue {
                        name,
                        value: text.to_vec(),
                        expected: "no value (\"?all\")",
                    })
                }
                _ => args.all = true,
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

/// `format`: `json` or `text`.
fn parse_format(value: &[u8]) -> Result<Format, BadArgument> {
    match value {
        b"json" => Ok(Format::Json),
        b"text" => Ok(Format::Text),
        _ => Err(BadArgument::InvalidValue {
            name: "format",
            value: value.to_vec(),
            expected: "\"json\" or \"text\"",
        }),
    }
}

/// `rate`: a whole number of requests per second, from 1 to
/// `MAX_RELEASE_RATE`, in plain digits.
fn parse_rate(value: &[u8]) -> Result<u64, BadArgument> {
    std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|rate| (1..=MAX_RELEASE_RATE).contains(rate))
        .ok_or_else(|| BadArgument::InvalidValue {
            name: "rate",
            value: value.to_vec(),
            expected: "a whole number of requests per second from 1 to 1000000",
        })
}

/// A time argument (`ttl`, `drain`): seconds or a number with one unit, more
/// than 0 and at most a day. In milliseconds.
fn parse_time_arg(name: &'static str, value: &[u8]) -> Result<u64, BadArgument> {
    match parse_max_time(value) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(BadArgument::InvalidValue {
            name,
            value: value.to_vec(),
            expected: "a time of more than 0 and at most a day, such as 30, 90s or 5m",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
