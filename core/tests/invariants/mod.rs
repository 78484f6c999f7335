//! What must hold of everything the module parses from a request or a
//! variable, whatever the input: each function here takes one input, works
//! out what a plain reference says of it, and panics if the code disagrees.
//!
//! Shared by the property tests (`tests/properties.rs`, which generate the
//! inputs with proptest) and the coverage-guided fuzz targets (`fuzz/`, which
//! include this file and get their inputs from libFuzzer), so that both check
//! the same things. The references are written from what the README and the
//! doc comments say each value means, not from the code under test.
//!
//! The inputs derive `Arbitrary` under `cfg(fuzzing)`, which `cargo fuzz` sets
//! (and `core/Cargo.toml` declares): only the fuzz targets need it.

use std::collections::BTreeMap;

use intermission_core::app_table::{AppSlot, AppTable, TableFull, TableHeader};
use intermission_core::control::{
    action_of, Action, AppReport, BadArgument, ControlArgs, Format, RunState,
};
use intermission_core::counters::AppCounters;
use intermission_core::ids::MAX_APP_NAME_LEN;
use intermission_core::ids::{AppId, Millis, Phase, Ticket};
use intermission_core::pause::{AppState, PauseOutcome, ResumeOutcome};
use intermission_core::queue::{HeldQueue, Taken};
use intermission_core::settings::{
    check_app_name, parse_max_time, parse_on_timeout, AppLabel, AppNameTooLong, Exemption,
    ExemptionCheck, InvalidMaxTime, LogSafe, OnTimeout, LONGEST_MAX_TIME_MS,
};

// ---------------------------------------------------------------------------
// Control paths

/// The control endpoint acts only when the path's last segment is exactly
/// `status`, `enable`, `disable` or `metrics`.
pub fn control_path(uri: &[u8]) {
    let last_segment_is = |name: &[u8]| {
        uri == name
            || (uri.len() > name.len()
                && uri.ends_with(name)
                && uri[uri.len() - name.len() - 1] == b'/')
    };
    let expected = [
        (&b"status"[..], Action::Status),
        (b"enable", Action::Enable),
        (b"disable", Action::Disable),
        (b"metrics", Action::Metrics),
        (b"stop", Action::Stop),
    ]
    .into_iter()
    .find(|(name, _)| last_segment_is(name))
    .map(|(_, action)| action);
    assert_eq!(action_of(uri), expected, "path \"{}\"", LogSafe(uri));
}

// ---------------------------------------------------------------------------
// Control query arguments

/// The control endpoint reads only `format` (`json` or `text`), `ttl` and
/// `drain` (times above zero, at most a day) from the raw query string, each
/// at most once, and ignores every other argument.
pub fn control_args(query: &[u8]) {
    let values_of = |wanted: &[u8]| -> Vec<&[u8]> {
        query
            .split(|&b| b == b'&')
            .filter_map(|pair| {
                let mut parts = pair.splitn(2, |&b| b == b'=');
                let name = parts.next()?;
                (name == wanted).then(|| parts.next().unwrap_or(b""))
            })
            .collect()
    };
    let format = match values_of(b"format").as_slice() {
        [] => Some(None),
        [b"text"] => Some(Some(Format::Text)),
        [b"json"] => Some(Some(Format::Json)),
        _ => None,
    };
    let all = match query
        .split(|&b| b == b'&')
        .filter(|pair| pair.splitn(2, |&b| b == b'=').next() == Some(b"all"))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Some(false),
        [b"all"] => Some(true),
        _ => None,
    };
    let time_of = |name: &[u8]| match values_of(name).as_slice() {
        [] => Some(None),
        [value] => match parse_max_time(value) {
            Ok(ms) if ms > 0 => Some(Some(ms)),
            _ => None,
        },
        _ => None,
    };
    let rate = match values_of(b"rate").as_slice() {
        [] => Some(None),
        [value] => std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|r| (1..=1_000_000).contains(r))
            .map(Some),
        _ => None,
    };
    let parsed = ControlArgs::parse(query);
    match (format, time_of(b"ttl"), time_of(b"drain"), all, rate) {
        (Some(format), Some(ttl), Some(drain), Some(all), Some(rate)) => {
            assert_eq!(
                parsed,
                Ok(ControlArgs {
                    format,
                    all,
                    ttl,
                    drain,
                    rate
                }),
                "query \"{}\"",
                LogSafe(query)
            )
        }
        _ => {
            let refusal = parsed.expect_err("a bad or repeated argument is refused");
            let text = refusal.to_string();
            assert!(
                ["\"format\"", "\"ttl\"", "\"drain\"", "\"all\"", "\"rate\""]
                    .iter()
                    .any(|name| text.contains(name)),
                "the refusal names the argument: {text}"
            );
            assert!(!matches!(refusal, BadArgument::NotFor { .. }));
        }
    }
}

/// The JSON status is one line of valid JSON (read by a real JSON parser)
/// that names the app by its text (its bytes where they are UTF-8, U+FFFD
/// where not), the same name as the metrics and the text status give.
pub fn status_json_of(app: &[u8], figures: [u64; 7]) {
    use intermission_core::control::{app_name_text, metrics_text, status_all_text};
    use intermission_core::in_flight::InFlight;

    let [held_in_pause, held_now, released, timed_out, clients_gone, refused_at_shutdown, rejected] =
        figures;
    let counters = AppCounters {
        held_now,
        released,
        timed_out,
        clients_gone,
        refused_at_shutdown,
        rejected,
        stopped: released ^ rejected,
        unheld: timed_out ^ clients_gone,
        bypassed: held_now ^ rejected,
    };
    let report = AppReport {
        name: app,
        state: [RunState::Running, RunState::Paused, RunState::Stopped]
            [(held_in_pause % 3) as usize],
        since: (held_now % 2 == 1).then_some(held_now / 1_000_000),
        deadline: (timed_out % 2 == 1).then_some(timed_out / 1_000_000),
        held_in_pause,
        longest_wait_ms: clients_gone,
        in_flight: InFlight {
            requests: rejected,
            upgraded: released,
        },
        counters,
    };
    let json = report.json();
    assert!(!json.contains('\n'), "{json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let name = app_name_text(app);
    assert_eq!(parsed["app"].as_str(), Some(&*name), "{json}");
    for (key, value) in [
        ("held_now", held_now),
        ("held_in_pause", held_in_pause),
        ("released", released),
        ("timed_out", timed_out),
        ("clients_gone", clients_gone),
        ("refused_at_shutdown", refused_at_shutdown),
        ("rejected", rejected),
        ("in_flight", rejected),
        ("upgraded", released),
        ("unheld", timed_out ^ clients_gone),
        ("bypassed", held_now ^ rejected),
    ] {
        assert_eq!(parsed[key].as_u64(), Some(value), "{key} in {json}");
    }
    // The same name in the metrics (label escapes aside) and the text status
    // (control characters and backslashes escaped aside).
    if !name
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == '"')
    {
        let metrics = metrics_text(std::slice::from_ref(&report));
        assert!(
            metrics.contains(&format!("{{app=\"{name}\"}}")),
            "{metrics}"
        );
        let text = status_all_text(std::slice::from_ref(&report));
        assert!(text.starts_with(&format!("{name} ")), "{text}");
    }
}

// ---------------------------------------------------------------------------
// `$intermission_on_timeout`

/// `pass`, `503` or `504` with blanks around; anything else is invalid.
pub fn on_timeout(value: &[u8]) {
    let expected = match value.trim_ascii() {
        b"pass" => Some(OnTimeout::Pass),
        b"503" => Some(OnTimeout::Answer(503)),
        b"504" => Some(OnTimeout::Answer(504)),
        _ => None,
    };
    assert_eq!(
        parse_on_timeout(value).ok(),
        expected,
        "value \"{}\"",
        LogSafe(value)
    );
}

// ---------------------------------------------------------------------------
// `$intermission_max_time`

/// `$intermission_max_time` against the README: blanks around, at most one
/// `-`, digits, optionally a `.` and more digits, optionally one unit (`ms`,
/// `s`, `m`, `h`; seconds without); truncated to whole milliseconds; zero
/// (even negative zero) is zero, anything else negative is refused, and so is
/// anything over a day.
pub fn max_time(value: &[u8]) {
    let parsed = parse_max_time(value);
    if let Ok(ms) = parsed {
        assert!(
            ms <= LONGEST_MAX_TIME_MS,
            "\"{}\" gave {ms} ms",
            LogSafe(value)
        );
    }
    match reference_max_time(value) {
        Err(invalid) => assert_eq!(parsed, Err(invalid), "\"{}\"", LogSafe(value)),
        Ok(ReferenceMs {
            negative,
            low,
            high,
        }) => {
            let expected: Vec<_> = (low..=high)
                .map(|ms| signed_and_limited(negative, ms))
                .collect();
            assert!(
                expected.contains(&parsed),
                "\"{}\" gave {parsed:?}, expected one of {expected:?}",
                LogSafe(value)
            );
        }
    }
}

/// A well-formed value's milliseconds before its sign and the one-day limit
/// apply. `low` and `high` differ (by one) only when a fraction too long for
/// exact `u128` arithmetic leaves its last millisecond undecided.
struct ReferenceMs {
    negative: bool,
    low: u128,
    high: u128,
}

/// Digits of a fraction the reference computes with exactly: 10^30 times the
/// longest unit (an hour in ms) still fits in a `u128`.
const EXACT_FRACTION_DIGITS: usize = 30;

fn reference_max_time(value: &[u8]) -> Result<ReferenceMs, InvalidMaxTime> {
    let value = value.trim_ascii();
    let (negative, value) = match value.strip_prefix(b"-") {
        Some(unsigned) => (true, unsigned.trim_ascii()),
        None => (false, value),
    };
    let units: [(&[u8], u128); 4] = [(b"ms", 1), (b"s", 1_000), (b"m", 60_000), (b"h", 3_600_000)];
    let (number, unit_ms) = units
        .iter()
        .find_map(|&(suffix, ms)| value.strip_suffix(suffix).map(|number| (number, ms)))
        .unwrap_or((value, 1_000));
    let is_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mut parts = number.splitn(2, |&b| b == b'.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
        return Err(InvalidMaxTime::NotANumber);
    }

    // Any whole number of over 20 significant digits is far beyond a day.
    let whole = &whole[whole.iter().take_while(|&&d| d == b'0').count()..];
    let whole = if whole.len() > 20 {
        10u128.pow(20)
    } else {
        decimal(whole)
    };

    let fraction = fraction.unwrap_or_default();
    let fraction =
        &fraction[..fraction.len() - fraction.iter().rev().take_while(|&&d| d == b'0').count()];
    let (fraction_low, fraction_high) = if fraction.len() <= EXACT_FRACTION_DIGITS {
        let ms = decimal(fraction) * unit_ms / 10u128.pow(fraction.len() as u32);
        (ms, ms)
    } else {
        // The digits past the 30th add less than unit_ms / 10^30: they carry
        // into the milliseconds only if what the 30 leave is that close to
        // the next one.
        let scaled = decimal(&fraction[..EXACT_FRACTION_DIGITS]) * unit_ms;
        let one = 10u128.pow(EXACT_FRACTION_DIGITS as u32);
        let ms = scaled / one;
        (ms, ms + u128::from(scaled % one + unit_ms > one))
    };
    Ok(ReferenceMs {
        negative,
        low: whole * unit_ms + fraction_low,
        high: whole * unit_ms + fraction_high,
    })
}

fn decimal(digits: &[u8]) -> u128 {
    digits.iter().fold(0, |n, d| n * 10 + u128::from(d - b'0'))
}

fn signed_and_limited(negative: bool, ms: u128) -> Result<u64, InvalidMaxTime> {
    match ms {
        0 => Ok(0),
        _ if negative => Err(InvalidMaxTime::Negative),
        _ if ms > u128::from(LONGEST_MAX_TIME_MS) => Err(InvalidMaxTime::TooLong),
        _ => Ok(ms as u64),
    }
}

// ---------------------------------------------------------------------------
// `$app_name` (and the query arguments configs copy into it)

/// Names of up to `MAX_APP_NAME_LEN` bytes pass unchanged; longer ones are
/// refused with their length.
pub fn app_name(name: &[u8]) {
    match check_app_name(name) {
        Ok(checked) => {
            assert!(
                name.len() <= MAX_APP_NAME_LEN,
                "{} bytes accepted",
                name.len()
            );
            assert!(
                std::ptr::eq(checked, name),
                "the accepted name is the name given"
            );
        }
        Err(AppNameTooLong { len }) => {
            assert!(
                name.len() > MAX_APP_NAME_LEN,
                "{} bytes refused",
                name.len()
            );
            assert_eq!(len, name.len());
        }
    }
}

/// A table of `1 + capacity % 32` slots driven by `ops`.
#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct AppTableRun {
    pub capacity: u8,
    pub ops: Vec<TableOp>,
}

#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum TableOp {
    /// A pause of the app with this name (the control endpoint's
    /// `find_or_add`), once the name passed `check_app_name`.
    Add(Vec<u8>),
    /// `Add` again of a name seen before (the `pick`th, round robin).
    AddSeen {
        pick: u8,
    },
    /// A request's lookup of this name.
    Find(Vec<u8>),
    /// A lookup of a name seen before with one byte more.
    FindLonger {
        pick: u8,
        extra: u8,
    },
    /// Pause of the `pick`th app in the table (round robin).
    Pause {
        pick: u8,
    },
    Resume {
        pick: u8,
    },
}

/// Checks the app table against a map of name to id: an added name is found
/// under the id it got, names never share an id, the lock is taken exactly
/// when a slot is written, a full table refuses new names and leaves the
/// others (and their pause state) as they were.
pub fn app_table(run: &AppTableRun) {
    let capacity = 1 + usize::from(run.capacity) % 32;
    let header = TableHeader::new(
        capacity,
        1,
        0,
        intermission_core::in_flight::NameKey([1, 2]),
    );
    let slots: Vec<AppSlot> = (0..capacity).map(|_| AppSlot::default()).collect();
    let table = AppTable::new(&header, &slots);

    let mut ids: BTreeMap<Vec<u8>, AppId> = BTreeMap::new();
    let mut paused: BTreeMap<AppId, bool> = BTreeMap::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();

    for op in &run.ops {
        match op {
            TableOp::Add(name) => {
                seen.push(name.clone());
                add(&table, &mut ids, name);
            }
            TableOp::AddSeen { pick } => {
                if let Some(name) = pick_from(&seen, *pick) {
                    add(&table, &mut ids, &name.clone());
                }
            }
            TableOp::Find(name) => {
                assert_eq!(table.find(name), ids.get(name).copied());
            }
            TableOp::FindLonger { pick, extra } => {
                if let Some(name) = pick_from(&seen, *pick) {
                    let mut longer = name.clone();
                    longer.push(*extra);
                    assert_eq!(table.find(&longer), ids.get(&longer).copied());
                }
            }
            TableOp::Pause { pick } => {
                if let Some(app) = pick_app(&ids, *pick) {
                    let was_paused = paused.insert(app, true).unwrap_or(false);
                    let expected = if was_paused {
                        PauseOutcome::AlreadyPaused
                    } else {
                        PauseOutcome::Paused
                    };
                    assert_eq!(table.pause(app), expected);
                }
            }
            TableOp::Resume { pick } => {
                if let Some(app) = pick_app(&ids, *pick) {
                    let was_paused = paused.insert(app, false).unwrap_or(false);
                    let expected = if was_paused {
                        ResumeOutcome::Resumed { held: 0 }
                    } else {
                        ResumeOutcome::NotPaused
                    };
                    assert_eq!(table.resume(app), expected);
                }
            }
        }

        for (name, &app) in &ids {
            assert_eq!(table.find(name), Some(app), "\"{}\"", LogSafe(name));
            assert_eq!(&table.name(app), name);
            let is_paused = paused.get(&app).copied().unwrap_or(false);
            assert_eq!(table.state(app).is_paused(), is_paused);
        }
        assert_eq!(table.apps_in_use(), ids.len());
        assert_eq!(table.any_paused(), paused.values().any(|&p| p));
    }
}

fn add(table: &AppTable<'_>, ids: &mut BTreeMap<Vec<u8>, AppId>, name: &[u8]) {
    app_name(name);
    if check_app_name(name).is_err() {
        // What the module does with a name it refuses: nothing, and it is
        // never found.
        assert_eq!(table.find(name), None);
        return;
    }
    let mut locks = 0;
    let added = table.find_or_add(name, || locks += 1);
    match ids.get(name) {
        Some(&app) => {
            assert_eq!(added, Ok(app), "\"{}\" found again", LogSafe(name));
            assert_eq!(locks, 0, "no lock to find an app");
        }
        None if ids.len() < table.capacity() => {
            let app = added.unwrap_or_else(|TableFull| {
                panic!(
                    "\"{}\" refused with {} of {} slots in use",
                    LogSafe(name),
                    ids.len(),
                    table.capacity()
                )
            });
            assert!((app.0 as usize) < table.capacity());
            assert!(
                !ids.values().any(|&other| other == app),
                "{app:?} given twice"
            );
            assert_eq!(locks, 1, "the lock is held while a slot is written");
            ids.insert(name.to_vec(), app);
        }
        None => assert_eq!(
            added,
            Err(TableFull),
            "\"{}\" in a full table",
            LogSafe(name)
        ),
    }
}

fn pick_from<T>(items: &[T], pick: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[usize::from(pick) % items.len()])
}

fn pick_app(ids: &BTreeMap<Vec<u8>, AppId>, pick: u8) -> Option<AppId> {
    pick_from(&ids.values().copied().collect::<Vec<_>>(), pick).copied()
}

// ---------------------------------------------------------------------------
// User agent and health-check path

#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct ExemptionInput {
    pub uri: Vec<u8>,
    pub user_agent: Option<Vec<u8>>,
    pub health_check_path: Option<Vec<u8>>,
    /// `$intermission_bypass`.
    pub bypass: Option<Vec<u8>>,
    pub privileged_user_agent: Option<Vec<u8>>,
}

impl ExemptionInput {
    /// The same request with the privileged agent's string put into its user
    /// agent at `at` (modulo its length): inputs taken at random almost never
    /// contain it by chance.
    pub fn quoting_privileged_agent(mut self, at: usize) -> Self {
        if let Some(privileged) = &self.privileged_user_agent {
            let agent = self.user_agent.get_or_insert_with(Vec::new);
            let at = at % (agent.len() + 1);
            agent.splice(at..at, privileged.iter().copied());
        }
        self
    }
}

/// `/up` and the configured health-check path (when not empty) pass as
/// health checks; otherwise a `$intermission_bypass` that is neither empty
/// nor `0`; otherwise a user agent containing the configured privileged
/// string (when not empty) passes, or, for a privileged value `~EXPR` or
/// `~*EXPR` (EXPR not empty), one the regex matcher says matches EXPR (here
/// a stand-in for nginx's PCRE: the agent ends with EXPR); everything else
/// is held.
pub fn exemption(input: &ExemptionInput) {
    let contains = |haystack: &[u8], needle: &[u8]| {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    };
    let uri = input.uri.as_slice();
    let is_health_check = uri == b"/up"
        || input
            .health_check_path
            .as_deref()
            .is_some_and(|path| !path.is_empty() && path == uri);
    let stand_in = |agent: &[u8], expression: &[u8]| agent.ends_with(expression);
    let is_privileged = match (&input.user_agent, &input.privileged_user_agent) {
        (Some(agent), Some(privileged)) => {
            let expression = privileged
                .strip_prefix(b"~*")
                .or_else(|| privileged.strip_prefix(b"~"));
            match expression {
                Some(expression) => !expression.is_empty() && stand_in(agent, expression),
                None => !privileged.is_empty() && contains(agent, privileged),
            }
        }
        _ => false,
    };
    let bypassed = input
        .bypass
        .as_deref()
        .is_some_and(|value| !matches!(value, b"" | b"0"));
    let expected = if is_health_check {
        Some(Exemption::HealthCheck)
    } else if bypassed {
        Some(Exemption::Bypass)
    } else if is_privileged {
        Some(Exemption::PrivilegedUserAgent)
    } else {
        None
    };
    let check = ExemptionCheck {
        uri,
        user_agent: input.user_agent.as_deref(),
        health_check_path: input.health_check_path.as_deref(),
        bypass: input.bypass.as_deref(),
        privileged_user_agent: input.privileged_user_agent.as_deref(),
        regex_matches: &|regex, agent| stand_in(agent, regex.pattern),
    };
    assert_eq!(check.exemption(), expected, "{input:?}");
}

// ---------------------------------------------------------------------------
// What log lines print of untrusted bytes

/// Bytes `LogSafe` prints as they are.
const SHOWN_AS_IS: std::ops::RangeInclusive<u8> = 0x20..=0x7e;
const LOG_LIMIT: usize = 256;
const CUT_MARK: &str = "...";

/// `LogSafe` prints printable ASCII only, with no `"` (the log lines quote
/// with it) and `\` only to start an escape; at most 256 bytes of the input,
/// then `...`; and what it prints decodes back to exactly those bytes.
pub fn log_safe(bytes: &[u8]) {
    let shown = LogSafe(bytes).to_string();
    assert!(
        shown.len() <= 4 * LOG_LIMIT + CUT_MARK.len(),
        "{} bytes printed for {}",
        shown.len(),
        bytes.len()
    );
    let is_cut = bytes.len() > LOG_LIMIT;
    let escaped = match shown.strip_suffix(CUT_MARK) {
        Some(before_mark) if is_cut => before_mark,
        _ => {
            assert!(!is_cut, "{} bytes printed without {CUT_MARK}", bytes.len());
            &shown
        }
    };
    let mut decoded = Vec::new();
    let mut rest = escaped.as_bytes();
    while let Some((&first, after)) = rest.split_first() {
        assert!(
            SHOWN_AS_IS.contains(&first),
            "{first:#04x} printed in {shown:?}"
        );
        assert_ne!(first, b'"', "a quote printed as is in {shown:?}");
        if first == b'\\' {
            let (escape, after_escape) = after.split_at_checked(3).expect("\\ starts \\xNN");
            assert_eq!(escape[0], b'x', "\\ starts \\xNN in {shown:?}");
            let hex = std::str::from_utf8(&escape[1..]).expect("hex digits are ASCII");
            assert!(
                hex.bytes().all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f')),
                "{hex:?}"
            );
            let byte = u8::from_str_radix(hex, 16).expect("two hex digits");
            assert!(
                !SHOWN_AS_IS.contains(&byte) || byte == b'"' || byte == b'\\',
                "{byte:#04x} escaped though printable"
            );
            decoded.push(byte);
            rest = after_escape;
        } else {
            decoded.push(first);
            rest = after;
        }
    }
    assert_eq!(decoded, &bytes[..bytes.len().min(LOG_LIMIT)]);

    let label = AppLabel(bytes).to_string();
    if bytes.is_empty() {
        assert_eq!(label, "the default app");
    } else {
        assert_eq!(label, format!("app \"{shown}\""));
    }
}

// ---------------------------------------------------------------------------
// The held-request queue

/// The apps the queue runs sees: few, so that ops meet, and not contiguous.
const QUEUE_APPS: [AppId; 4] = [AppId(0), AppId(3), AppId(7), AppId(40)];

#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum QueueOp {
    /// The control endpoint pauses an app (`app` modulo the four apps).
    Pause {
        app: u8,
    },
    Resume {
        app: u8,
    },
    /// A request of `app` arrives and is held for `max_time` ms if the app
    /// is paused, after other workers took `taken_elsewhere` tickets.
    Hold {
        app: u8,
        taken_elsewhere: u8,
        max_time: u16,
    },
    /// The client of the `pick`th held request of `app` goes away; past the
    /// last held one, a ticket this queue does not hold.
    Forget {
        app: u8,
        pick: u8,
    },
    /// The worker releases at most `limit` requests of resumed apps.
    Release {
        limit: u8,
    },
    /// `elapsed` ms pass; the worker lets at most `limit` expired requests go.
    Expire {
        elapsed: u16,
        limit: u8,
    },
}

/// A held request as the model keeps it; `request` numbers the holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    app: AppId,
    ticket: Ticket,
    phase: Phase,
    deadline: Millis,
    request: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    Released,
    Expired,
    Forgotten,
}

/// Runs `ops` on a `HeldQueue` and on a plain list of held requests, with the
/// apps' real pause state, and checks that both agree after every op: releases
/// are each app's due requests in ticket order (apps in id order), expiries
/// are earliest deadline first, forgotten requests never come out, and in the
/// end every held request left exactly once.
pub fn held_queue(ops: &[QueueOp]) {
    let states: [AppState; QUEUE_APPS.len()] = Default::default();
    let state_of = |app: AppId| {
        &states[QUEUE_APPS
            .iter()
            .position(|&a| a == app)
            .expect("one of QUEUE_APPS")]
    };
    let phase_of = |app: AppId| state_of(app).phase();
    let app_of = |index: u8| QUEUE_APPS[usize::from(index) % QUEUE_APPS.len()];

    let mut queue: HeldQueue<u32> = HeldQueue::default();
    let mut model: Vec<Held> = Vec::new();
    let mut left: Vec<Option<Left>> = Vec::new();
    let mut now: Millis = 1_000;

    for op in ops {
        match *op {
            QueueOp::Pause { app } => {
                state_of(app_of(app)).pause();
            }
            QueueOp::Resume { app } => {
                state_of(app_of(app)).resume();
            }
            QueueOp::Hold {
                app,
                taken_elsewhere,
                max_time,
            } => {
                let app = app_of(app);
                let state = state_of(app);
                let phase = state.phase();
                if phase.is_paused() {
                    for _ in 0..taken_elsewhere {
                        state.take_ticket();
                    }
                    let ticket = state.take_ticket();
                    let deadline = now + Millis::from(max_time);
                    let request = left.len() as u32;
                    left.push(None);
                    queue.hold(app, ticket, phase, deadline, request);
                    model.push(Held {
                        app,
                        ticket,
                        phase,
                        deadline,
                        request,
                    });
                }
            }
            QueueOp::Forget { app, pick } => {
                let app = app_of(app);
                let mut tickets: Vec<Ticket> = model
                    .iter()
                    .filter(|h| h.app == app)
                    .map(|h| h.ticket)
                    .collect();
                tickets.sort();
                // Past the held ones, `pick` counts tickets from 0: some held
                // here, some let go already, some held by other workers.
                let ticket = match tickets.get(usize::from(pick)) {
                    Some(&held) => held,
                    None => Ticket(u64::from(pick) - tickets.len() as u64),
                };
                let held = model
                    .iter()
                    .position(|h| h.app == app && h.ticket == ticket);
                let forgotten = queue.forget(app, ticket);
                match held {
                    Some(index) => {
                        let held = model.remove(index);
                        assert_eq!(forgotten, Some(held.request));
                        record(&mut left, held.request, Left::Forgotten);
                    }
                    None => assert_eq!(forgotten, None, "{app:?} {ticket:?} is not held"),
                }
            }
            QueueOp::Release { limit } => {
                let limit = usize::from(limit);
                let released = release_in_app_order(&mut queue, phase_of, limit);
                let mut due: Vec<Held> = model
                    .iter()
                    .copied()
                    .filter(|h| h.phase != phase_of(h.app))
                    .collect();
                due.sort_by_key(|h| (h.app, h.ticket));
                due.truncate(limit);
                assert_eq!(released, expected(&due), "release of at most {limit}");
                for held in &due {
                    record(&mut left, held.request, Left::Released);
                }
                model.retain(|h| !due.iter().any(|d| d.request == h.request));
            }
            QueueOp::Expire { elapsed, limit } => {
                now += Millis::from(elapsed);
                let limit = usize::from(limit);
                let expired = tuples(queue.take_expired(now, limit));
                let mut due: Vec<Held> = model
                    .iter()
                    .copied()
                    .filter(|h| h.deadline <= now)
                    .collect();
                due.sort_by_key(|h| (h.deadline, h.app, h.ticket));
                due.truncate(limit);
                assert_eq!(
                    expired,
                    expected(&due),
                    "expiry at {now} of at most {limit}"
                );
                for held in &due {
                    record(&mut left, held.request, Left::Expired);
                }
                model.retain(|h| !due.iter().any(|d| d.request == h.request));
            }
        }
        assert_eq!(queue.len(), model.len());
        assert_eq!(queue.is_empty(), model.is_empty());
        assert_eq!(
            queue.next_deadline(),
            model.iter().map(|h| h.deadline).min()
        );
    }

    // Resume everything: whatever is still held comes out, in order.
    for state in &states {
        state.resume();
    }
    let released = release_in_app_order(&mut queue, phase_of, usize::MAX);
    model.sort_by_key(|h| (h.app, h.ticket));
    assert_eq!(released, expected(&model), "final release");
    for held in &model {
        record(&mut left, held.request, Left::Released);
    }
    assert!(queue.is_empty());
    assert_eq!(queue.next_deadline(), None);
    assert!(
        left.iter().all(Option::is_some),
        "every held request left once"
    );
}

/// What a worker's pass takes of every app, apps in id order, each app's
/// due requests in ticket order, at most `limit` in all.
fn release_in_app_order(
    queue: &mut HeldQueue<u32>,
    phase_of: impl Fn(AppId) -> Phase,
    limit: usize,
) -> Vec<(AppId, Ticket, u32)> {
    let mut released = Vec::new();
    let apps: Vec<AppId> = queue.apps().collect();
    for app in apps {
        let room = limit - released.len();
        released.extend(tuples(
            queue.take_due(app, phase_of(app), room, |_, _| true),
        ));
    }
    released
}

fn tuples(taken: Vec<Taken<u32>>) -> Vec<(AppId, Ticket, u32)> {
    taken
        .into_iter()
        .map(|t| (t.app, t.ticket, t.request))
        .collect()
}

fn record(left: &mut [Option<Left>], request: u32, how: Left) {
    let slot = &mut left[request as usize];
    assert_eq!(
        *slot, None,
        "request {request} left twice ({how:?} after {slot:?})"
    );
    *slot = Some(how);
}

fn expected(held: &[Held]) -> Vec<(AppId, Ticket, u32)> {
    held.iter().map(|h| (h.app, h.ticket, h.request)).collect()
}

// ---------------------------------------------------------------------------
// In-flight counting

/// Requests of apps `names` enter, switch protocols and leave in the order
/// `order` picks (each pick, modulo, a running request to end or upgrade or
/// an app to start one of), in the slots of two workers and the shared slot:
/// each app's count is the number of its running requests, apart for those
/// that switched protocols, whichever slot counted them, and 0 once all
/// ended; the text each request keeps of its count reads back as it; and
/// when a worker's slot is reclaimed (it died), its requests stop counting.
pub fn in_flight(names: &[Vec<u8>], order: &[usize]) {
    use intermission_core::in_flight::{AppKey, Counted, InFlight, NameKey};
    use intermission_core::worker_slots::{Owner, SlotId, WorkerSlot, WorkerSlots, SHARED_SLOT};

    let key = NameKey([0x5eed, 0xcafe]);
    let memory: Vec<WorkerSlot> = (0..3).map(|_| WorkerSlot::default()).collect();
    let slots = WorkerSlots::new(&memory);
    let owners = [
        Owner {
            pid: 10,
            started: 1,
        },
        Owner {
            pid: 11,
            started: 1,
        },
    ];
    let workers: Vec<SlotId> = owners
        .iter()
        .map(|&owner| slots.claim(owner).expect("two free slots"))
        .chain([SHARED_SLOT])
        .collect();
    struct Running {
        slot: SlotId,
        app: AppKey,
        counted: Counted,
        text: &'static [u8],
    }
    let mut running: Vec<Running> = Vec::new();
    let check = |running: &[Running]| {
        for name in names {
            let app = key.app_key(name);
            let of_app = running.iter().filter(|r| r.app == app);
            let expected = InFlight {
                requests: of_app.clone().filter(|r| !r.counted.upgraded).count() as u64,
                upgraded: of_app.filter(|r| r.counted.upgraded).count() as u64,
            };
            assert_eq!(slots.in_flight(app), expected);
        }
    };
    for (step, pick) in order.iter().enumerate() {
        let at = pick % (running.len() + names.len());
        if at < running.len() {
            assert_eq!(
                Counted::of_text(running[at].text),
                Some(running[at].counted)
            );
            if step % 3 == 0 && !running[at].counted.upgraded {
                let r = &mut running[at];
                slots.get(r.slot).upgrade(r.counted.counter);
                r.counted.upgraded = true;
                r.text = r.counted.text();
            } else {
                let r = running.swap_remove(at);
                slots
                    .get(r.slot)
                    .leave(r.counted.counter, r.counted.upgraded);
            }
        } else {
            let app = key.app_key(&names[at - running.len()]);
            let slot = workers[step % workers.len()];
            let counted = Counted::by(slots.get(slot).enter(app));
            running.push(Running {
                slot,
                app,
                counted,
                text: counted.text(),
            });
        }
        check(&running);
    }
    // The first worker dies: its slot is reclaimed, and what it counted is gone.
    assert!(slots.reclaim(workers[0], owners[0], |_, _| ()));
    running.retain(|r| r.slot != workers[0]);
    check(&running);
    for r in running.drain(..) {
        slots
            .get(r.slot)
            .leave(r.counted.counter, r.counted.upgraded);
    }
    check(&running);
}

/// Counting by name with a worker's memos (`enter_named`) counts every
/// request in the entry that counting by the name's keyed hash (`enter`)
/// would, whatever the names' order. The names (`ops`' first of each pair,
/// modulo their number) have one length and differ in one or two bytes, so
/// only their content tells them apart, and every other request's name is
/// copied into the same buffer, so that different names come at the same
/// address, as names taken from requests do; one name is too long to
/// remember; and far more apps come and go than a table has entries, so
/// entries are given to other apps. The memos count in two tables in turn
/// (a process that comes to count in another slot), so what they remember
/// of one table is wrong for the other; and every 64th op draws a new
/// secret. `ops`' second: 0 or 1 leaves (the request at that place among
/// those in flight), anything else enters.
pub fn in_flight_memo(ops: &[(u16, u8)]) {
    use intermission_core::in_flight::{InFlightTable, NameKey, NameMemos};

    let mut names: Vec<Vec<u8>> = (0..400)
        .map(|i| format!("app{i:03}").into_bytes())
        .collect();
    names.push(vec![b'a'; MAX_APP_NAME_LEN + 1]);
    names.push(Vec::new());
    // (counted by the hash, counted with the memo), twice.
    let tables: [(InFlightTable, InFlightTable); 2] = Default::default();
    let mut memos = NameMemos::new();
    let mut buffer = Vec::with_capacity(MAX_APP_NAME_LEN + 1);
    let mut secret = NameKey([0x5eed, 0xcafe]);
    let mut running = Vec::new();
    for (step, &(pick, action)) in ops.iter().enumerate() {
        if step % 64 == 63 {
            secret = NameKey([secret.0[0] + 1, secret.0[1]]);
        }
        let pick = usize::from(pick);
        if action < 2 && !running.is_empty() {
            let (table, counter) = running.swap_remove(pick % running.len());
            let (plain, memoed): &(InFlightTable, InFlightTable) = &tables[table];
            plain.leave(counter, false);
            memoed.leave(counter, false);
            continue;
        }
        let table = step / 100 % 2;
        let (plain, memoed) = &tables[table];
        let mut name = &names[pick % names.len()];
        if step % 2 == 1 {
            buffer.clear();
            buffer.extend_from_slice(name);
            name = &buffer;
        }
        let expected = plain.enter(secret.app_key(name), true);
        let counted = memoed.enter_named(&mut memos, secret, name, true);
        assert_eq!(counted, expected, "step {step}: {}", LogSafe(name));
        running.push((table, counted));
    }
    for (plain, memoed) in &tables {
        for name in &names {
            let app = secret.app_key(name);
            assert_eq!(memoed.count(app), plain.count(app));
        }
        assert_eq!(memoed.total(), plain.total());
    }
}

/// `rfc3339` of Unix milliseconds agrees with a plain count of days and
/// months from 1970.
pub fn rfc3339_of(unix_ms: u64) {
    let text = intermission_core::control::rfc3339(unix_ms);
    let mut days = unix_ms / 86_400_000;
    let mut year = 1970u64;
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    let ms = unix_ms % 86_400_000;
    let expected = format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        month + 1,
        days + 1,
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    );
    assert_eq!(text, expected, "{unix_ms}");
}

// ---------------------------------------------------------------------------
// Paced release

/// A pause of `held` requests released at `rate` per second, looked at by
/// workers at the times `times` (ms after the release): the requests that
/// may go are always the oldest; never more than 1 + rate × seconds of them
/// (plus one per request of the backlog that left early); exactly that many
/// when workers look every 10 ms; and in any second no more than the rate
/// plus a burst of 50 ms worth.
pub fn paced_release(rate: u64, held: u64, times: &[u64], left_early: u64) {
    let app = AppState::new();
    app.pause_until(0, None);
    let held_in = app.phase();
    let tickets: Vec<Ticket> = (0..held).map(|_| app.take_ticket()).collect();
    assert_eq!(app.resume_paced(5, rate), ResumeOutcome::Resumed { held });
    // Requests whose turn had come (at the release, the oldest's) leave.
    for _ in 0..left_early {
        app.record_left_paced(held_in, Ticket(0), 5);
    }
    let going = |t: u64| -> u64 {
        let may: Vec<bool> = tickets
            .iter()
            .map(|&ticket| app.may_release(held_in, ticket, 5 + t))
            .collect();
        let count = may.iter().filter(|&&m| m).count();
        assert!(may.iter().skip(count).all(|&m| !m), "the oldest go first");
        count as u64
    };
    let mut times = times.to_vec();
    times.sort_unstable();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for &t in &times {
        let count = going(t);
        let most = (1 + rate.saturating_mul(t) / 1000 + left_early).min(held);
        assert!(count <= most, "rate {rate}, {t} ms: {count} > {most}");
        assert!(seen.last().is_none_or(|&(_, c)| count >= c), "never fewer");
        seen.push((t, count));
    }
    // In any second, at most the rate and one burst more.
    for (i, &(t, count)) in seen.iter().enumerate() {
        if let Some(&(_, before)) = seen[..i].iter().rev().find(|(u, _)| t - u >= 1000) {
            assert!(count - before <= rate + (rate / 20).max(1) + 1, "{seen:?}");
        }
    }
    // Workers looking every 10 ms from here on: exactly the rate.
    let from = times.last().copied().unwrap_or(0);
    let base = going(from);
    for step in 1..=300 {
        let t = from + step * 10;
        let count = going(t);
        let earned = rate * (step * 10) / 1000;
        // Within one turn: the part of a turn earned before `from` counts.
        assert!(
            count <= (base + earned + 1).min(held),
            "rate {rate}: {count} at {t} ms"
        );
        assert!(
            count + 1 >= (base + earned).min(held),
            "rate {rate}: {count} at {t} ms"
        );
    }
}

// ---------------------------------------------------------------------------
// One order across workers

/// What happens to the held requests of one app on three workers.
#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum OrderOp {
    /// A request arrives at `worker` while the app is paused, after
    /// `skipped` tickets went to requests that were not held.
    Hold { worker: u8, skipped: u8 },
    /// The client of the `pick`th request `worker` holds goes away.
    Leave { worker: u8, pick: u8 },
    /// `worker` takes at most `limit` due requests the window lets go; they
    /// are waking until its next `Wake`.
    Pass { worker: u8, limit: u8 },
    /// `worker`'s waking requests run on: nginx sends them to the upstream
    /// (over a connection it may still be opening), and until `Send` they
    /// keep their place.
    Wake { worker: u8 },
    /// The `pick`th request `worker` is sending reaches the upstream (one
    /// over a kept-alive connection overtakes one whose connection opens).
    Send { worker: u8, pick: u8 },
    /// `worker` is killed; another process reclaims its slot, and the
    /// master starts a new worker in its place.
    Die { worker: u8 },
    /// The app is resumed (once).
    Resume,
    /// `worker` stops running (SIGSTOP, swapped out): it takes no pass and
    /// looks at no wake-up until `Cont`.
    Stop { worker: u8 },
    /// `worker` runs again.
    Cont { worker: u8 },
    /// The clock moves on by `ms`.
    Tick { ms: u16 },
}

const ORDER_WORKERS: usize = 3;

struct OrderWorker {
    queue: HeldQueue<u64>,
    /// Taken by a pass, not yet run on.
    waking: Vec<Ticket>,
    /// Run on, not yet at the upstream, oldest first.
    sending: std::collections::VecDeque<Ticket>,
    slot: intermission_core::worker_slots::SlotId,
    owner: intermission_core::worker_slots::Owner,
}

/// Three workers hold requests of one app, publish their place in its order
/// in their slots, and release as the order window lets them while clients
/// leave, workers stop and run again, and die; then everything left is
/// released. Each held request ends exactly once (run on, left, or lost
/// with its worker), and nothing is ever stuck: a worker blocked by a
/// stopped one's place goes on once `STALL_BOUND_MS` has passed since it
/// asked that one to look. Unless a worker stopped, the requests run on
/// (the upstream sees them) within the window of their arrival order.
pub fn order_across_workers(ops: &[OrderOp]) {
    use intermission_core::order::{Window, ORDER_WINDOW, STALL_BOUND_MS};
    use intermission_core::worker_slots::{Owner, WorkerSlot, WorkerSlots};

    const APP: AppId = AppId(1);
    let memory: Vec<WorkerSlot> = (0..=ORDER_WORKERS).map(|_| WorkerSlot::default()).collect();
    let slots = WorkerSlots::new(&memory);
    let state = AppState::new();
    state.pause();
    let held_in = state.phase();
    let mut next_pid = 100;
    let mut spawn = |slots: &WorkerSlots<'_>| {
        next_pid += 1;
        let owner = Owner {
            pid: next_pid,
            started: 1,
        };
        OrderWorker {
            queue: HeldQueue::default(),
            waking: Vec::new(),
            sending: std::collections::VecDeque::new(),
            slot: slots.claim(owner).expect("a slot for each worker"),
            owner,
        }
    };
    let mut workers: Vec<OrderWorker> = (0..ORDER_WORKERS).map(|_| spawn(&slots)).collect();
    let publish = |worker: &OrderWorker| {
        let held = worker.queue.held_of(APP) as u64;
        assert!(slots
            .get(worker.slot)
            .publish(APP, held, worker.queue.lowest(APP)));
    };
    let mut ended: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut ran_on: Vec<u64> = Vec::new();
    let mut end = |ticket: u64, how: &'static str| {
        if let Some(before) = ended.insert(ticket, how) {
            panic!("ticket {ticket} ended twice: {before}, then {how}");
        }
    };
    let mut held_tickets = Vec::new();
    let mut now: Millis = 1;
    let mut stopped = [false; ORDER_WORKERS];
    let mut ever_stopped = false;

    // A pass looks at its wake-up, releases what the window lets go, and
    // asks the worker whose place stops it to look (the engine's `pass`).
    let pass = |worker: &mut OrderWorker, limit: usize, slots: &WorkerSlots<'_>, now| -> usize {
        slots.get(worker.slot).take_wake();
        let elsewhere = slots.order_elsewhere(APP, worker.slot, now);
        let own = worker.queue.lowest_on_its_way(APP);
        let mut window = Window::new(elsewhere.map(|(ticket, _)| ticket), own);
        let mut blocked_by = None;
        let taken = worker
            .queue
            .take_due(APP, state.phase(), limit, |_, ticket| {
                if !window.admits(ticket) {
                    blocked_by = elsewhere
                        .filter(|&(lowest, _)| Some(lowest) == window.start())
                        .map(|(_, slot)| slot);
                    return false;
                }
                window.take(ticket);
                true
            });
        for t in &taken {
            worker.queue.mark_waking(APP, t.ticket);
            worker.waking.push(t.ticket);
        }
        if let Some(slot) = blocked_by {
            slots.get(slot).mark_woken(now);
        }
        taken.len()
    };
    let wake = |worker: &mut OrderWorker| {
        for ticket in std::mem::take(&mut worker.waking) {
            assert!(worker.queue.mark_sending(APP, ticket));
            worker.sending.push_back(ticket);
        }
    };
    // The upstream gets the `pick`th request the worker is sending; it
    // leaves the order then, not before.
    let send = |worker: &mut OrderWorker, pick: usize, ran_on: &mut Vec<u64>| -> Option<u64> {
        if worker.sending.is_empty() {
            return None;
        }
        let ticket = worker.sending.remove(pick % worker.sending.len())?;
        assert!(worker.queue.leave(APP, ticket));
        ran_on.push(ticket.0);
        Some(ticket.0)
    };

    for op in ops {
        match *op {
            OrderOp::Hold { worker, skipped } => {
                if !state.is_paused() {
                    continue;
                }
                for _ in 0..skipped % 4 {
                    state.take_ticket();
                }
                let ticket = state.take_ticket();
                let worker = &mut workers[usize::from(worker) % ORDER_WORKERS];
                worker.queue.hold(APP, ticket, held_in, u64::MAX, ticket.0);
                held_tickets.push(ticket.0);
                publish(worker);
            }
            OrderOp::Leave { worker, pick } => {
                let worker = &mut workers[usize::from(worker) % ORDER_WORKERS];
                let held = worker.queue.held_of(APP);
                if held == 0 {
                    continue;
                }
                // The pick-th held ticket, found by taking and putting back.
                let all = worker
                    .queue
                    .take_due(APP, Phase(u64::MAX - 1), usize::MAX, |_, _| true);
                let gone = all[usize::from(pick) % all.len()].ticket;
                for t in all {
                    worker
                        .queue
                        .hold(APP, t.ticket, t.held_in, u64::MAX, t.request);
                }
                assert_eq!(worker.queue.forget(APP, gone), Some(gone.0));
                end(gone.0, "left");
                publish(worker);
            }
            OrderOp::Pass { worker, limit } => {
                let index = usize::from(worker) % ORDER_WORKERS;
                if stopped[index] {
                    continue;
                }
                let worker = &mut workers[index];
                pass(worker, usize::from(limit), &slots, now);
                publish(worker);
            }
            OrderOp::Wake { worker } => {
                let index = usize::from(worker) % ORDER_WORKERS;
                if stopped[index] {
                    continue;
                }
                wake(&mut workers[index]);
            }
            OrderOp::Send { worker, pick } => {
                let index = usize::from(worker) % ORDER_WORKERS;
                if stopped[index] {
                    continue;
                }
                let worker = &mut workers[index];
                if let Some(ticket) = send(worker, usize::from(pick), &mut ran_on) {
                    end(ticket, "ran on");
                }
                publish(worker);
            }
            OrderOp::Die { worker } => {
                let index = usize::from(worker) % ORDER_WORKERS;
                let (slot, owner) = (workers[index].slot, workers[index].owner);
                assert!(slots.reclaim(slot, owner, |_, _| ()));
                let dead = std::mem::replace(&mut workers[index], spawn(&slots));
                // Its requests die with it: every ticket it held or woke.
                let mut lost = dead.queue;
                while let Some(lowest) = lost.lowest(APP) {
                    if !lost.leave(APP, lowest) {
                        assert_eq!(lost.forget(APP, lowest), Some(lowest.0));
                    }
                    end(lowest.0, "lost");
                }
            }
            OrderOp::Resume => {
                state.resume();
            }
            OrderOp::Stop { worker } => {
                stopped[usize::from(worker) % ORDER_WORKERS] = true;
                ever_stopped = true;
            }
            OrderOp::Cont { worker } => {
                stopped[usize::from(worker) % ORDER_WORKERS] = false;
            }
            OrderOp::Tick { ms } => now += Millis::from(ms),
        }
    }

    // The release goes to its end, passes and wake-ups in turns: first with
    // the workers still stopped kept stopped (the others must finish all
    // they hold, waiting for them at most the stall bound), then all.
    state.resume();
    for phase in ["while some are stopped", "once all run"] {
        if phase == "once all run" {
            stopped = [false; ORDER_WORKERS];
        }
        let mut idle_turns = 0;
        let mut turn = 0;
        let running: Vec<usize> = (0..ORDER_WORKERS).filter(|&w| !stopped[w]).collect();
        if running.is_empty() {
            continue;
        }
        while running
            .iter()
            .any(|&w| workers[w].queue.lowest(APP).is_some())
        {
            let worker = &mut workers[running[turn % running.len()]];
            turn += 1;
            let taken = pass(worker, 16, &slots, now);
            wake(worker);
            let mut sent = 0;
            while let Some(ticket) = send(worker, turn, &mut ran_on) {
                end(ticket, "ran on");
                sent += 1;
            }
            publish(worker);
            if taken == 0 && sent == 0 {
                idle_turns += 1;
                if idle_turns > 2 * running.len() {
                    // Blocked by a stopped worker: its bound passes.
                    now += STALL_BOUND_MS;
                    assert!(
                        idle_turns <= 4 * running.len(),
                        "stuck {phase} with {:?}",
                        workers
                            .iter()
                            .map(|w| w.queue.lowest(APP))
                            .collect::<Vec<_>>()
                    );
                }
            } else {
                idle_turns = 0;
            }
        }
    }

    for ticket in held_tickets {
        assert!(ended.contains_key(&ticket), "ticket {ticket} never ended");
    }
    if ever_stopped {
        // Order yielded to availability.
        return;
    }
    let mut sorted = ran_on.clone();
    sorted.sort_unstable();
    for (position, ticket) in ran_on.iter().enumerate() {
        let rank = sorted.partition_point(|t| t < ticket);
        assert!(
            position.abs_diff(rank) < ORDER_WINDOW as usize,
            "ticket {ticket} ran on at {position}, {} places from its arrival rank {rank}",
            position.abs_diff(rank)
        );
    }
}

// ---------------------------------------------------------------------------
// The state file

/// Any bytes read as a state file: no panic; what reads is rendered back to
/// the same file (but for the last line's newline, which a hand edit may
/// drop), and a rendered file reads back as itself; an error names a line of
/// the input (from 1 to one past its last).
pub fn state_file(bytes: &[u8]) {
    use intermission_core::state_file::StateFile;
    match StateFile::parse(bytes) {
        Ok(file) => {
            let text = file.render();
            assert_eq!(StateFile::parse(text.as_bytes()).as_ref(), Ok(&file));
            let unterminated = text.as_bytes().strip_suffix(b"\n");
            assert!(
                text.as_bytes() == bytes || unterminated == Some(bytes),
                "a file that reads is in its one written form: {:?} from {:?}",
                text,
                String::from_utf8_lossy(bytes)
            );
        }
        Err(bad) => {
            let lines = bytes.split(|&b| b == b'\n').count();
            assert!(
                bad.line >= 1 && bad.line <= lines + 1,
                "{bad} for {lines} lines"
            );
            assert!(!bad.reason.is_empty());
        }
    }
}

/// A state file of these apps reads back as written, whatever their names.
pub fn state_file_round_trip(saved: u64, apps: &[(Vec<u8>, bool, u64, Option<u64>)]) {
    use intermission_core::state_file::{SavedApp, StateFile};
    let mut names = std::collections::HashSet::new();
    let file = StateFile {
        saved,
        generation: saved / 3,
        writer: saved.rotate_left(7),
        apps: apps
            .iter()
            .filter(|(name, ..)| check_app_name(name).is_ok() && names.insert(name.clone()))
            .map(|(name, stopped, since, deadline)| SavedApp {
                name: name.clone(),
                stopped: *stopped,
                since: *since,
                deadline: *deadline,
            })
            .collect(),
    };
    let text = file.render();
    assert!(
        text.lines().count() == file.apps.len() + 3,
        "one line per app: {text}"
    );
    assert_eq!(StateFile::parse(text.as_bytes()), Ok(file));
}
