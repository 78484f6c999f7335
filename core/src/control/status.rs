//! The status of the apps: one schema, written by the module and read by its
//! clients (the ops command line), so that the two cannot drift apart; and
//! its JSON (`status?format=json`, `status?all`) and text forms.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::json::to_json;
use super::time;
use crate::counters::AppCounters;
use crate::in_flight::InFlight;

/// Whether an app runs, holds its requests, or answers them 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What the module gathers of one app to answer the status or the metrics:
/// its name as bytes, its counts as the zone keeps them.
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

/// One app's status: an object of `status?format=json`'s answer, and of
/// `apps` in `status?all`'s. Clients read answers of older modules, which
/// lack `upgraded`, `unheld` and `bypassed`, and ignore fields they do not
/// know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The app's name as text (`app_name_text`).
    pub app: String,
    pub state: RunState,
    /// When the current pause or stop began (wall clock, Unix ms); RFC 3339
    /// or null in JSON.
    #[serde(default, with = "time::optional")]
    pub since: Option<u64>,
    /// When it ends by itself, likewise.
    #[serde(default, with = "time::optional")]
    pub deadline: Option<u64>,
    /// Requests held right now, by all workers.
    pub held_now: u64,
    /// Requests held during the current pause, or the last one.
    pub held_in_pause: u64,
    pub longest_wait_ms: u64,
    /// Requests let through while the app ran, not finished yet: what a
    /// drain waits for.
    pub in_flight: u64,
    /// Requests that switched protocols (WebSocket) and are still open;
    /// drains do not wait for them.
    #[serde(default)]
    pub upgraded: u64,
    pub released: u64,
    pub timed_out: u64,
    pub clients_gone: u64,
    pub rejected: u64,
    pub stopped: u64,
    pub refused_at_shutdown: u64,
    /// Requests of the paused app that could not be held and were answered
    /// 503.
    #[serde(default)]
    pub unheld: u64,
    /// Requests of the paused or stopped app let through at once, unheld:
    /// exempt (health check path, privileged user agent,
    /// `$intermission_bypass`) or with `$intermission_max_time` 0.
    #[serde(default)]
    pub bypassed: u64,
}

/// What the status says of the module itself, the same for every app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleReport {
    /// Panics the module caught (each logged at `alert`).
    pub internal_errors: u64,
    /// Requests whose `$app_name` was too long to name an app: let through.
    pub app_names_too_long: u64,
    /// Looks the workers' release engines took at their queues: flat while
    /// they only hold, since nothing runs on a clock.
    pub release_passes: u64,
}

/// What the status says of the state file (`intermission_state_file`), when
/// one is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateFileReport {
    /// When nginx restored the pause state from it (wall clock, Unix ms),
    /// if it did: at the start of the zone, from a file it could read.
    #[serde(with = "time::optional")]
    pub restored_at: Option<u64>,
    /// Apps paused or stopped again from it (not those whose deadline had
    /// passed).
    pub restored_apps: u64,
    /// Why the file could not be read, when it could not: nothing was
    /// restored (a missing file is no error).
    pub restore_error: Option<String>,
    /// When it was last written, if it was since the zone began.
    #[serde(with = "time::optional")]
    pub saved_at: Option<u64>,
    /// Writes that failed (each one logged with its reason).
    pub save_errors: u64,
}

/// The reports beside the apps' own figures in the JSON status, the same
/// for every app: the module's, and the state file's when one is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonReports {
    #[serde(default)]
    pub module: ModuleReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<StateFileReport>,
}

/// `status?format=json`: the app's status, then the common reports, in one
/// object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppAnswer {
    #[serde(flatten)]
    pub status: AppStatus,
    #[serde(flatten)]
    pub common: CommonReports,
}

/// `status?all&format=json`: every app's status, then the common reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllAnswer {
    pub apps: Vec<AppStatus>,
    #[serde(flatten)]
    pub common: CommonReports,
}

impl AppReport<'_> {
    /// The app's status, as the JSON and text answers and the metrics give it.
    pub fn status(&self) -> AppStatus {
        let AppCounters {
            held_now,
            released,
            timed_out,
            clients_gone,
            refused_at_shutdown,
            rejected,
            stopped,
            unheld,
            bypassed,
        } = self.counters;
        AppStatus {
            app: app_name_text(self.name).into_owned(),
            state: self.state,
            since: self.since,
            deadline: self.deadline,
            held_now,
            held_in_pause: self.held_in_pause,
            longest_wait_ms: self.longest_wait_ms,
            in_flight: self.in_flight.requests,
            upgraded: self.in_flight.upgraded,
            released,
            timed_out,
            clients_gone,
            rejected,
            stopped,
            refused_at_shutdown,
            unheld,
            bypassed,
        }
    }

    /// `status?format=json` without its newline: the app's status with the
    /// common reports after its own fields, on one line.
    pub fn json_with(&self, common: &CommonReports) -> String {
        to_json(&AppAnswer {
            status: self.status(),
            common: common.clone(),
        })
    }

    /// The app's status alone as JSON, on one line.
    pub fn json(&self) -> String {
        to_json(&self.status())
    }
}

/// `status?all&format=json`: every app, then the common reports, in one
/// object on one line, ended by a newline.
pub fn status_all_json(apps: &[AppReport], common: &CommonReports) -> String {
    let answer = AllAnswer {
        apps: apps.iter().map(AppReport::status).collect(),
        common: common.clone(),
    };
    to_json(&answer) + "\n"
}

/// `status?all` as text: one line per app, its name (as in JSON and the
/// metrics; see `push_text_name`) and its state.
pub fn status_all_text(apps: &[AppReport]) -> String {
    let mut text = String::new();
    for status in apps.iter().map(AppReport::status) {
        push_text_name(&mut text, &status.app);
        let _ = writeln!(text, " {}", status.state.name());
    }
    text
}

/// An app name as text, the same in every answer (JSON, text status,
/// metrics): names are bytes, usually UTF-8 (`set $app_name "café";`), which
/// is kept as it is; bytes that are not UTF-8 become U+FFFD, since all three
/// formats are UTF-8 text.
pub fn app_name_text(name: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(name)
}

/// Appends an app name to the text status: its text, with control
/// characters and `\` escaped as `\xNN` (so one app is one line).
fn push_text_name(text: &mut String, name: &str) {
    for c in name.chars() {
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
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A report of `name` in `state` with nothing counted.
    pub(in crate::control) fn report(name: &[u8], state: RunState) -> AppReport<'_> {
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

    fn shop() -> AppReport<'static> {
        AppReport {
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
                bypassed: 9,
            },
            ..report(b"shop", RunState::Paused)
        }
    }

    const SHOP: &str = "{\"app\":\"shop\",\"state\":\"paused\",\
        \"since\":\"2026-11-23T10:15:30.123Z\",\"deadline\":\"2026-11-23T10:25:30.123Z\",\
        \"held_now\":2,\"held_in_pause\":7,\"longest_wait_ms\":1500,\"in_flight\":3,\
        \"upgraded\":1,\"released\":5,\"timed_out\":1,\"clients_gone\":3,\"rejected\":4,\
        \"stopped\":6,\"refused_at_shutdown\":0,\"unheld\":8,\"bypassed\":9}";

    const MODULE: &str =
        "\"module\":{\"internal_errors\":1,\"app_names_too_long\":2,\"release_passes\":3}";

    /// A state file restored from at start and written since.
    pub(in crate::control) fn restored() -> StateFileReport {
        StateFileReport {
            restored_at: Some(1_796_040_000_123),
            restored_apps: 2,
            restore_error: None,
            saved_at: Some(1_796_040_001_000),
            save_errors: 1,
        }
    }

    fn common(state_file: Option<StateFileReport>) -> CommonReports {
        CommonReports {
            module: ModuleReport {
                internal_errors: 1,
                app_names_too_long: 2,
                release_passes: 3,
            },
            state_file,
        }
    }

    #[test]
    fn the_status_json_is_these_exact_bytes() {
        assert_eq!(shop().json(), SHOP);
        let restored = StateFileReport {
            restored_at: Some(1_796_040_000_123),
            restored_apps: 2,
            restore_error: Some("line 3: \"since\"\tis\u{7f}not a time".into()),
            saved_at: None,
            save_errors: 1,
        };
        let state_file = "\"state_file\":{\"restored_at\":\"2026-11-30T12:00:00.123Z\",\
            \"restored_apps\":2,\"restore_error\":\"line 3: \\\"since\\\"\\tis\\u007fnot a time\",\
            \"saved_at\":null,\"save_errors\":1}";
        assert_eq!(
            shop().json_with(&common(Some(restored.clone()))),
            format!("{},{MODULE},{state_file}}}", &SHOP[..SHOP.len() - 1])
        );
        assert_eq!(
            shop().json_with(&common(None)),
            format!("{},{MODULE}}}", &SHOP[..SHOP.len() - 1])
        );
        assert_eq!(
            status_all_json(
                &[shop(), report(b"blog", RunState::Stopped)],
                &common(Some(restored))
            ),
            format!(
                "{{\"apps\":[{SHOP},{{\"app\":\"blog\",\"state\":\"stopped\",\"since\":null,\
                 \"deadline\":null,\"held_now\":0,\"held_in_pause\":0,\"longest_wait_ms\":0,\
                 \"in_flight\":0,\"upgraded\":0,\"released\":0,\"timed_out\":0,\
                 \"clients_gone\":0,\"rejected\":0,\"stopped\":0,\"refused_at_shutdown\":0,\
                 \"unheld\":0,\"bypassed\":0}}],{MODULE},{state_file}}}\n"
            )
        );
        assert_eq!(
            status_all_json(&[], &common(None)),
            format!("{{\"apps\":[],{MODULE}}}\n")
        );
    }

    #[test]
    fn app_names_are_their_text_escaped_as_the_module_always_did() {
        let odd = report(b"a\"b\\c\n\x01\x08\x0c\x7f\xff", RunState::Running).json();
        assert!(
            odd.starts_with(
                "{\"app\":\"a\\\"b\\\\c\\n\\u0001\\u0008\\u000c\\u007f\u{fffd}\",\
                 \"state\":\"running\",\"since\":null,\"deadline\":null,"
            ),
            "{odd}"
        );
        // UTF-8 names are UTF-8 text, the same as in the metrics and the
        // text status; a JSON parser reads back exactly the name.
        let cafe = report("café ☕".as_bytes(), RunState::Paused);
        let parsed: serde_json::Value = serde_json::from_str(&cafe.json()).unwrap();
        assert_eq!(parsed["app"], "café ☕");
        assert_eq!(status_all_text(&[cafe]), "café ☕ paused\n");
        for name in [&b"a\"b\\c\n\x01\xff"[..], b"\x7f\t\r", "日本".as_bytes()] {
            let parsed: serde_json::Value =
                serde_json::from_str(&report(name, RunState::Running).json()).unwrap();
            assert_eq!(parsed["app"], *String::from_utf8_lossy(name));
        }
        assert_eq!(
            status_all_text(&[
                report(b"shop", RunState::Paused),
                report(b"b\nx", RunState::Stopped)
            ]),
            "shop paused\nb\\x0ax stopped\n"
        );
    }

    #[test]
    fn clients_read_back_what_the_module_writes() {
        let restored = restored();
        let answer: AppAnswer =
            serde_json::from_str(&shop().json_with(&common(Some(restored.clone())))).unwrap();
        assert_eq!(answer.status, shop().status());
        assert_eq!(answer.common, common(Some(restored)));
        let status: AppStatus = serde_json::from_str(&shop().json_with(&common(None))).unwrap();
        assert_eq!(status, shop().status());
        let all: AllAnswer =
            serde_json::from_str(&status_all_json(&[shop(), shop()], &common(None))).unwrap();
        assert_eq!(all.apps, vec![shop().status(); 2]);
        assert_eq!(all.common, common(None));
    }

    #[test]
    fn clients_read_older_and_newer_modules() {
        // Before `upgraded`, `unheld`, `bypassed` and the common reports; and a field
        // no client knows yet.
        let older = "{\"app\":\"shop\",\"state\":\"paused\",\"since\":null,\
            \"deadline\":\"2026-11-23T10:25:30.123Z\",\"held_now\":12,\"held_in_pause\":40,\
            \"longest_wait_ms\":4212,\"in_flight\":3,\"released\":958,\"timed_out\":0,\
            \"clients_gone\":28,\"rejected\":0,\"stopped\":0,\"refused_at_shutdown\":0,\
            \"from_the_future\":[1,{\"x\":null}]}";
        let status: AppStatus = serde_json::from_str(older).unwrap();
        assert_eq!((status.upgraded, status.unheld, status.bypassed), (0, 0, 0));
        assert_eq!(status.deadline, Some(1_795_429_530_123));
        let answer: AppAnswer = serde_json::from_str(older).unwrap();
        assert_eq!(answer.common, CommonReports::default());
        let all: AllAnswer = serde_json::from_str(&format!(
            "{{\"apps\":[{older}],\"module\":{{\"internal_errors\":4}},\"new\":1}}"
        ))
        .unwrap();
        assert_eq!(all.apps, vec![status]);
        assert_eq!(all.common.module.internal_errors, 4);
        assert!(serde_json::from_str::<AppStatus>(
            &older.replace("2026-11-23T10:25:30.123Z", "tomorrow")
        )
        .is_err());
    }

    /// Names rich in what escaping must get right: quotes, backslashes,
    /// control bytes, DEL, bytes that are not UTF-8, multi-byte UTF-8.
    fn name() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (0u8..=0x20).prop_map(|b| vec![b]),
            Just(b"\x7f\"\\/".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
            any::<char>().prop_map(|c| c.to_string().into_bytes()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn any_status_is_one_line_that_clients_read_back(
            name in name(),
            since in prop::option::of(any::<u64>()),
            figures in any::<[u64; 7]>(),
            restore_error in prop::option::of(name()),
        ) {
            let app = AppReport {
                since,
                deadline: since.map(|t| t / 2),
                held_in_pause: figures[0],
                in_flight: InFlight { requests: figures[1], upgraded: figures[2] },
                counters: AppCounters {
                    held_now: figures[3],
                    unheld: figures[4],
                    bypassed: figures[6],
                    ..AppCounters::default()
                },
                ..report(&name, RunState::Stopped)
            };
            let common = common(Some(StateFileReport {
                restored_at: since,
                restore_error: restore_error.map(|e| String::from_utf8_lossy(&e).into_owned()),
                save_errors: figures[5],
                ..StateFileReport::default()
            }));
            let json = app.json_with(&common);
            prop_assert!(!json.bytes().any(|b| b < 0x20 || b == 0x7f), "{}", json);
            let answer: AppAnswer = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&answer.status, &app.status());
            prop_assert_eq!(&answer.common, &common);
            let all: AllAnswer = serde_json::from_str(&status_all_json(&[app], &common)).unwrap();
            prop_assert_eq!(all, AllAnswer { apps: vec![answer.status], common });
        }
    }
}
