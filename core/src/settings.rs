//! What a request's `$intermission_*` variables say, and how their values are
//! parsed. Plain safe Rust: `variables.rs` reads the raw values from nginx.

use std::fmt;

use crate::ids::MAX_APP_NAME_LEN;

/// `$intermission_max_time` when unset or invalid, in milliseconds.
pub const DEFAULT_MAX_TIME_MS: u64 = 300_000;

/// Longest accepted `$intermission_max_time`: a day. A longer hold is far more
/// likely a typo (milliseconds written as seconds) than an intent.
pub const LONGEST_MAX_TIME_MS: u64 = 86_400_000;

/// The path that always passes while paused, as with the old script.
pub const ALWAYS_PASSING_PATH: &[u8] = b"/up";

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum InvalidMaxTime {
    NotANumber,
    Negative,
    TooLong,
}

impl fmt::Display for InvalidMaxTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidMaxTime::NotANumber => "not a number of seconds",
            InvalidMaxTime::Negative => "negative",
            InvalidMaxTime::TooLong => "longer than a day",
        })
    }
}

/// Parses `$intermission_max_time`: seconds, as the old script took them
/// (`300`, `2.5`), or an nginx-style time with one unit (`500ms`, `30s`,
/// `5m`, `1h`). Returns milliseconds.
pub fn parse_max_time(value: &[u8]) -> Result<u64, InvalidMaxTime> {
    let value = value.trim_ascii();
    // One sign at most, and no recursion: a value of many thousand `-` must
    // not cost a stack frame each.
    if let Some(rest) = value.strip_prefix(b"-") {
        return match parse_unsigned_max_time(rest.trim_ascii()) {
            Ok(0) => Ok(0),
            Ok(_) | Err(InvalidMaxTime::TooLong) => Err(InvalidMaxTime::Negative),
            Err(e) => Err(e),
        };
    }
    parse_unsigned_max_time(value)
}

fn parse_unsigned_max_time(value: &[u8]) -> Result<u64, InvalidMaxTime> {
    let (number, unit_ms) = split_unit(value);
    let (whole, fraction) = match number.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 < number.len() => (&number[..dot], &number[dot + 1..]),
        Some(_) => return Err(InvalidMaxTime::NotANumber),
        None => (number, &b""[..]),
    };
    let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(InvalidMaxTime::NotANumber);
    }
    // Whole part: any length, saturating. Fraction: exactly, truncated to
    // whole milliseconds (the finest a timer here resolves), whatever the
    // unit: `0.0009h` is 3240 ms. Folding the digits from the last one keeps
    // the running value below `unit_ms`, and each step's truncation is the
    // same as truncating once at the end.
    let whole = whole.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let fraction_ms = fraction
        .iter()
        .rev()
        .fold(0u64, |ms, d| (u64::from(d - b'0') * unit_ms + ms) / 10);
    let total = whole.saturating_mul(unit_ms).saturating_add(fraction_ms);
    if total > LONGEST_MAX_TIME_MS {
        return Err(InvalidMaxTime::TooLong);
    }
    Ok(total)
}

fn split_unit(value: &[u8]) -> (&[u8], u64) {
    const UNITS: [(&[u8], u64); 4] = [(b"ms", 1), (b"s", 1000), (b"m", 60_000), (b"h", 3_600_000)];
    for (suffix, ms) in UNITS {
        if let Some(number) = value.strip_suffix(suffix) {
            return (number, ms);
        }
    }
    (value, 1000)
}

/// What a request held for its whole `$intermission_max_time` gets while its
/// app is still paused (`$intermission_on_timeout`).
#[derive(Debug, PartialEq, Eq, Clone, Copy, Default)]
pub enum OnTimeout {
    /// It goes on to the upstream, as with the old script.
    #[default]
    Pass,
    /// It is answered with this status (503 or 504), so an error page is
    /// shown instead of reaching a backend that may still be down.
    Answer(u16),
}

#[derive(Debug, PartialEq, Eq)]
pub struct InvalidOnTimeout;

impl fmt::Display for InvalidOnTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not \"pass\", \"503\" or \"504\"")
    }
}

/// Parses `$intermission_on_timeout`: `pass`, `503` or `504`, blanks around.
pub fn parse_on_timeout(value: &[u8]) -> Result<OnTimeout, InvalidOnTimeout> {
    match value.trim_ascii() {
        b"pass" => Ok(OnTimeout::Pass),
        b"503" => Ok(OnTimeout::Answer(503)),
        b"504" => Ok(OnTimeout::Answer(504)),
        _ => Err(InvalidOnTimeout),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct AppNameTooLong {
    pub len: usize,
}

impl fmt::Display for AppNameTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$app_name is {} bytes long, more than the {MAX_APP_NAME_LEN} allowed",
            self.len
        )
    }
}

/// Checks `$app_name`; an unset or empty name is the default app.
pub fn check_app_name(name: &[u8]) -> Result<&[u8], AppNameTooLong> {
    if name.len() > MAX_APP_NAME_LEN {
        Err(AppNameTooLong { len: name.len() })
    } else {
        Ok(name)
    }
}

/// Why a request of a paused app passes at once.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Exemption {
    HealthCheck,
    /// `$intermission_bypass` said so.
    Bypass,
    PrivilegedUserAgent,
}

/// Whether a value of `$intermission_bypass` lets a request through: any
/// value but an empty one and `0`, as `proxy_cache_bypass` reads its own.
pub fn bypasses(value: Option<&[u8]>) -> bool {
    value.is_some_and(|value| !value.is_empty() && value != b"0")
}

/// `$intermission_privileged_user_agent`, read: a string the user agent
/// contains, or, after `~` (or `~*`, ignoring case), a regular expression
/// it matches, as `map` and `if` take them.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum AgentPattern<'a> {
    Substring(&'a [u8]),
    Regex(AgentRegex<'a>),
}

/// A regular expression for nginx's PCRE to match.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub struct AgentRegex<'a> {
    pub pattern: &'a [u8],
    pub caseless: bool,
}

impl<'a> AgentPattern<'a> {
    /// `None` for an empty value, or a `~`/`~*` with no expression after
    /// it: nothing is privileged.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let regex = |pattern: &'a [u8], caseless| {
            (!pattern.is_empty()).then_some(AgentPattern::Regex(AgentRegex { pattern, caseless }))
        };
        if let Some(pattern) = value.strip_prefix(b"~*") {
            return regex(pattern, true);
        }
        if let Some(pattern) = value.strip_prefix(b"~") {
            return regex(pattern, false);
        }
        (!value.is_empty()).then_some(AgentPattern::Substring(value))
    }
}

/// Whether a user agent matches a regular expression: nginx's PCRE, in the
/// module; `false` for an expression that does not compile.
pub type RegexMatch<'f> = &'f dyn Fn(AgentRegex<'_>, &[u8]) -> bool;

/// The parts of a request that decide whether it may skip a pause.
pub struct ExemptionCheck<'a> {
    pub uri: &'a [u8],
    pub user_agent: Option<&'a [u8]>,
    pub health_check_path: Option<&'a [u8]>,
    /// `$intermission_bypass`, if set.
    pub bypass: Option<&'a [u8]>,
    pub privileged_user_agent: Option<&'a [u8]>,
    /// Asked only for a privileged user agent given as a regular
    /// expression, once nothing cheaper has exempted the request.
    pub regex_matches: RegexMatch<'a>,
}

impl ExemptionCheck<'_> {
    pub fn exemption(&self) -> Option<Exemption> {
        let is_health_check = self.uri == ALWAYS_PASSING_PATH
            || self
                .health_check_path
                .is_some_and(|path| !path.is_empty() && self.uri == path);
        if is_health_check {
            return Some(Exemption::HealthCheck);
        }
        if bypasses(self.bypass) {
            return Some(Exemption::Bypass);
        }
        let agent = self.user_agent?;
        let privileged = match AgentPattern::parse(self.privileged_user_agent?)? {
            AgentPattern::Substring(needle) => memchr::memmem::find(agent, needle).is_some(),
            AgentPattern::Regex(regex) => (self.regex_matches)(regex, agent),
        };
        privileged.then_some(Exemption::PrivilegedUserAgent)
    }
}

/// For checks that know no regular expression: none matches.
pub fn no_regex_matches(_: AgentRegex<'_>, _: &[u8]) -> bool {
    false
}

/// Renders untrusted bytes (app names, variable values) for a log line:
/// printable ASCII as is, anything else as `\xNN`, cut at 256 bytes.
pub struct LogSafe<'a>(pub &'a [u8]);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 256;
        for &byte in self.0.iter().take(LIMIT) {
            if (0x20..0x7f).contains(&byte) && byte != b'\\' && byte != b'"' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        if self.0.len() > LIMIT {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Milliseconds as log lines show a duration: `600.002 s`.
pub struct Seconds(pub u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} s", self.0 / 1000, self.0 % 1000)
    }
}

/// An app as log lines name it: the default app has an empty name.
pub struct AppLabel<'a>(pub &'a [u8]);

impl fmt::Display for AppLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("the default app")
        } else {
            write!(f, "app \"{}\"", LogSafe(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_show_milliseconds() {
        assert_eq!(Seconds(600_002).to_string(), "600.002 s");
        assert_eq!(Seconds(300).to_string(), "0.300 s");
    }

    #[test]
    fn on_timeout_is_pass_503_or_504() {
        assert_eq!(parse_on_timeout(b"pass"), Ok(OnTimeout::Pass));
        assert_eq!(parse_on_timeout(b" 503 "), Ok(OnTimeout::Answer(503)));
        assert_eq!(parse_on_timeout(b"504"), Ok(OnTimeout::Answer(504)));
        for bad in [&b""[..], b"PASS", b"500", b"502", b"5030", b"pass;"] {
            assert_eq!(parse_on_timeout(bad), Err(InvalidOnTimeout), "{bad:?}");
        }
    }

    #[test]
    fn max_time_takes_seconds_like_the_old_script() {
        assert_eq!(parse_max_time(b"300"), Ok(300_000));
        assert_eq!(parse_max_time(b" 5 "), Ok(5_000));
        assert_eq!(parse_max_time(b"0"), Ok(0));
        assert_eq!(parse_max_time(b"2.5"), Ok(2_500));
        assert_eq!(parse_max_time(b"0.0015"), Ok(1));
        assert_eq!(parse_max_time(b"-0"), Ok(0));
    }

    #[test]
    fn max_time_takes_nginx_units() {
        assert_eq!(parse_max_time(b"500ms"), Ok(500));
        assert_eq!(parse_max_time(b"30s"), Ok(30_000));
        assert_eq!(parse_max_time(b"5m"), Ok(300_000));
        assert_eq!(parse_max_time(b"1h"), Ok(3_600_000));
        assert_eq!(parse_max_time(b"1.5m"), Ok(90_000));
    }

    #[test]
    fn max_time_fractions_of_minutes_and_hours_keep_their_milliseconds() {
        // The fourth digit of a fraction of an hour is still 360 ms: it used
        // to be dropped, so that `0.0009h` meant 0, "never hold".
        assert_eq!(parse_max_time(b"0.0009h"), Ok(3_240));
        assert_eq!(parse_max_time(b"1.0001m"), Ok(60_006));
        assert_eq!(parse_max_time(b"0.00001666m"), Ok(0));
        assert_eq!(parse_max_time(b"0.00001667m"), Ok(1));
        assert_eq!(parse_max_time(b"0.9999999999999999h"), Ok(3_599_999));
        assert_eq!(parse_max_time(b"0.0015"), Ok(1));
        assert_eq!(parse_max_time(b"0.5ms"), Ok(0));
    }

    #[test]
    fn max_time_takes_one_sign_however_many_are_sent() {
        assert_eq!(parse_max_time(b"- 0"), Ok(0));
        assert_eq!(parse_max_time(b"--0"), Err(InvalidMaxTime::NotANumber));
        assert_eq!(parse_max_time(b"--5"), Err(InvalidMaxTime::NotANumber));
        // Each `-` used to cost a stack frame: this overflowed the stack.
        let mut dashes = vec![b'-'; 1_000_000];
        dashes.push(b'0');
        assert_eq!(parse_max_time(&dashes), Err(InvalidMaxTime::NotANumber));
    }

    #[test]
    fn bad_max_times_are_refused_with_the_reason() {
        for bad in [
            &b""[..],
            b"abc",
            b"5x",
            b"1e3",
            b".5",
            b"5.",
            b"ms",
            b"1 0",
            b"\xff",
            b"+5",
        ] {
            assert_eq!(
                parse_max_time(bad),
                Err(InvalidMaxTime::NotANumber),
                "{:?}",
                bad
            );
        }
        assert_eq!(parse_max_time(b"-5"), Err(InvalidMaxTime::Negative));
        assert_eq!(parse_max_time(b"-abc"), Err(InvalidMaxTime::NotANumber));
        assert_eq!(parse_max_time(b"86401"), Err(InvalidMaxTime::TooLong));
        assert_eq!(
            parse_max_time(b"99999999999999999999999"),
            Err(InvalidMaxTime::TooLong)
        );
        assert_eq!(
            parse_max_time(b"-99999999999999999999999"),
            Err(InvalidMaxTime::Negative)
        );
        assert_eq!(parse_max_time(b"86400"), Ok(LONGEST_MAX_TIME_MS));
    }

    #[test]
    fn app_names_up_to_the_limit_pass() {
        assert_eq!(check_app_name(b""), Ok(&b""[..]));
        let longest = vec![b'a'; MAX_APP_NAME_LEN];
        assert!(check_app_name(&longest).is_ok());
        let too_long = vec![b'a'; MAX_APP_NAME_LEN + 1];
        assert_eq!(check_app_name(&too_long), Err(AppNameTooLong { len: 129 }));
    }

    fn check<'a>(uri: &'a [u8], agent: Option<&'a [u8]>) -> ExemptionCheck<'a> {
        ExemptionCheck {
            uri,
            user_agent: agent,
            health_check_path: Some(b"/up/database"),
            bypass: None,
            privileged_user_agent: Some(b"Pingdom"),
            regex_matches: &no_regex_matches,
        }
    }

    #[test]
    fn a_tilde_makes_the_privileged_agent_a_regex() {
        use AgentPattern::{Regex, Substring};
        let regex =
            |pattern: &'static [u8], caseless| Some(Regex(AgentRegex { pattern, caseless }));
        assert_eq!(AgentPattern::parse(b"~^Pingdom"), regex(b"^Pingdom", false));
        assert_eq!(AgentPattern::parse(b"~*^pingdom"), regex(b"^pingdom", true));
        assert_eq!(AgentPattern::parse(b"~~x"), regex(b"~x", false));
        assert_eq!(AgentPattern::parse(b"~**"), regex(b"*", true));
        assert_eq!(AgentPattern::parse(b"Pingdom"), Some(Substring(b"Pingdom")));
        assert_eq!(AgentPattern::parse(b" ~x"), Some(Substring(b" ~x")));
        for nothing in [&b""[..], b"~", b"~*"] {
            assert_eq!(AgentPattern::parse(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn a_regex_is_asked_only_when_nothing_cheaper_exempts() {
        let asked = std::cell::RefCell::new(Vec::new());
        let matches = |regex: AgentRegex<'_>, agent: &[u8]| {
            asked
                .borrow_mut()
                .push((regex.pattern.to_vec(), regex.caseless, agent.to_vec()));
            agent.starts_with(b"Pingdom")
        };
        let mut request = check(b"/cart", Some(b"Pingdom.com_bot_version_1.4"));
        request.privileged_user_agent = Some(b"~*^pingdom");
        request.regex_matches = &matches;
        assert_eq!(request.exemption(), Some(Exemption::PrivilegedUserAgent));
        request.user_agent = Some(b"NotPingdom");
        assert_eq!(request.exemption(), None);
        request.uri = b"/up";
        assert_eq!(request.exemption(), Some(Exemption::HealthCheck));
        request.uri = b"/cart";
        request.bypass = Some(b"1");
        assert_eq!(request.exemption(), Some(Exemption::Bypass));
        request.bypass = None;
        request.user_agent = None;
        assert_eq!(request.exemption(), None);
        assert_eq!(
            *asked.borrow(),
            [
                (
                    b"^pingdom".to_vec(),
                    true,
                    b"Pingdom.com_bot_version_1.4".to_vec()
                ),
                (b"^pingdom".to_vec(), true, b"NotPingdom".to_vec()),
            ]
        );
    }

    #[test]
    fn bypass_takes_any_value_but_empty_and_zero() {
        for holds in [None, Some(&b""[..]), Some(b"0")] {
            assert!(!bypasses(holds), "{holds:?}");
            let mut held = check(b"/cart", None);
            held.bypass = holds;
            assert_eq!(held.exemption(), None, "{holds:?}");
        }
        for passes in [&b"1"[..], b"yes", b"00", b" 0", b"false"] {
            assert!(bypasses(Some(passes)), "{passes:?}");
            let mut exempt = check(b"/cart", None);
            exempt.bypass = Some(passes);
            assert_eq!(exempt.exemption(), Some(Exemption::Bypass), "{passes:?}");
        }
    }

    #[test]
    fn health_checks_and_privileged_agents_pass() {
        assert_eq!(
            check(b"/up", None).exemption(),
            Some(Exemption::HealthCheck)
        );
        assert_eq!(
            check(b"/up/database", None).exemption(),
            Some(Exemption::HealthCheck)
        );
        assert_eq!(
            check(b"/", Some(b"Mozilla/5.0 (compatible; Pingdom.com_bot)")).exemption(),
            Some(Exemption::PrivilegedUserAgent)
        );
    }

    #[test]
    fn everything_else_is_held() {
        assert_eq!(check(b"/up/", None).exemption(), None);
        assert_eq!(check(b"/up/database/x", None).exemption(), None);
        assert_eq!(check(b"/", Some(b"pingdom")).exemption(), None);
        assert_eq!(check(b"/", None).exemption(), None);
        let unset = ExemptionCheck {
            uri: b"/",
            user_agent: Some(b"anything"),
            health_check_path: Some(b""),
            bypass: Some(b""),
            privileged_user_agent: Some(b""),
            regex_matches: &no_regex_matches,
        };
        assert_eq!(unset.exemption(), None);
    }

    #[test]
    fn log_safe_escapes_what_a_log_line_must_not_carry() {
        assert_eq!(LogSafe(b"shop").to_string(), "shop");
        assert_eq!(
            LogSafe(b"a\"b\\c\n\xff").to_string(),
            "a\\x22b\\x5cc\\x0a\\xff"
        );
        assert!(LogSafe(&[b'x'; 300]).to_string().ends_with("..."));
    }

    #[test]
    fn apps_are_named_in_logs() {
        assert_eq!(AppLabel(b"").to_string(), "the default app");
        assert_eq!(AppLabel(b"shop").to_string(), "app \"shop\"");
    }
}
