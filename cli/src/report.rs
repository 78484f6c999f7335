//! What a command prints: a line per target and a summary, or one JSON
//! document (`--json`) whatever the targets answered.

use std::io::Write;

use intermission_core::control::{rfc3339, AppStatus, RunState};
use serde::Serialize;

use crate::call::Answer;
use crate::target::Target;

/// One target's line (or, for `status --all`, one app's of a target).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// The URL as shown: a password is `***`.
    pub target: String,
    pub host: Option<String>,
    /// The app's name, from its status.
    pub app: Option<String>,
    /// 0 when the target was not reached.
    pub http: u16,
    pub state: Option<RunState>,
    pub held: Option<u64>,
    pub in_flight: Option<u64>,
    /// When the pause ends by itself (RFC 3339), if it does.
    pub deadline: Option<String>,
    /// Everything the module's status said.
    pub status: Option<AppStatus>,
    pub ok: bool,
    pub error: Option<String>,
}

impl Row {
    /// `answer` is `None` for a target not answered (the command was
    /// interrupted while it waited).
    pub fn new(target: &Target, answer: Option<&Answer>) -> Row {
        let interrupted = Answer::failed(0, "no answer before the command was interrupted".into());
        let answer = answer.unwrap_or(&interrupted);
        Row::of(target, answer, answer.status.clone())
    }

    /// A row per app of `answer` (`status --all`), or one for the target
    /// if it has none or failed.
    pub fn per_app(target: &Target, answer: Option<&Answer>) -> Vec<Row> {
        match answer {
            Some(answer) if answer.ok && !answer.apps.is_empty() => answer
                .apps
                .iter()
                .map(|app| Row::of(target, answer, Some(app.clone())))
                .collect(),
            _ => vec![Row::new(target, answer)],
        }
    }

    fn of(target: &Target, answer: &Answer, status: Option<AppStatus>) -> Row {
        Row {
            target: target.shown_url().to_owned(),
            host: target.host.clone(),
            app: status.as_ref().map(|s| s.app.clone()),
            http: answer.http,
            state: status.as_ref().map(|s| s.state),
            held: status.as_ref().map(|s| s.held_now),
            in_flight: status.as_ref().map(|s| s.in_flight),
            deadline: status.as_ref().and_then(|s| s.deadline).map(rfc3339),
            status,
            ok: answer.ok,
            error: answer.error.clone(),
        }
    }

    /// Whether this row is in `state`.
    pub fn is(&self, state: RunState) -> bool {
        self.ok && self.state == Some(state)
    }
}

/// Everything a command says about one round of calls.
#[derive(Debug, Serialize)]
pub struct Report {
    pub action: &'static str,
    pub targets: Vec<Row>,
    pub ok: usize,
    pub failed: usize,
    pub summary: String,
    /// A row per app (`status --all`): the lines name the app.
    #[serde(skip)]
    pub per_app: bool,
}

impl Report {
    pub fn new(action: &'static str, targets: Vec<Row>, summary: String) -> Report {
        let ok = targets.iter().filter(|row| row.ok).count();
        Report {
            action,
            failed: targets.len() - ok,
            targets,
            ok,
            summary,
            per_app: false,
        }
    }

    /// Lines, as the shell script printed them.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for row in &self.targets {
            let target = match &row.host {
                Some(host) => format!("{}#{host}", row.target),
                None => row.target.clone(),
            };
            let target = match &row.app {
                Some(app) if !app.is_empty() && self.per_app => format!("{target} {app}"),
                _ => target,
            };
            let state = row.state.map_or("-", RunState::name);
            let held = row.held.map_or("-".to_owned(), |h| h.to_string());
            let in_flight = row.in_flight.map_or("-".to_owned(), |n| n.to_string());
            let until = row.deadline.as_deref().unwrap_or("-");
            let result = if row.ok { "ok" } else { "FAILED" };
            let why = row
                .error
                .as_deref()
                .filter(|_| !row.ok)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "{target:<45} {:03} {state:<8} held {held:<6} in flight {in_flight:<5} \
                 until {until:<24} {result}{why}\n",
                row.http
            ));
        }
        text.push_str(&self.summary);
        text.push('\n');
        text
    }

    /// One JSON document, on one line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report is plain data") + "\n"
    }

    pub fn print(&self, json: bool, out: &mut dyn Write) {
        let text = if json { self.json() } else { self.text() };
        // A closed stdout (a pager quit) must not stop a resume.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::SharedCredentials;

    fn shop() -> AppStatus {
        serde_json::from_str(
            "{\"app\":\"shop\",\"state\":\"paused\",\"since\":\"2026-11-23T10:15:30.123Z\",\
             \"deadline\":\"2026-11-23T10:25:30.123Z\",\"held_now\":12,\"held_in_pause\":40,\
             \"longest_wait_ms\":4212,\"in_flight\":3,\"released\":958,\"timed_out\":0,\
             \"clients_gone\":28,\"rejected\":0,\"stopped\":0,\"refused_at_shutdown\":0}",
        )
        .unwrap()
    }

    fn rows() -> Vec<Row> {
        let shared = SharedCredentials::default();
        let a = Target::from_arg("http://ops:pw@10.0.0.5/_i#shop.test", &shared).unwrap();
        let b = Target::from_arg("http://10.0.0.9/_i", &shared).unwrap();
        vec![
            Row::new(
                &a,
                Some(&Answer {
                    http: 200,
                    marked: true,
                    unreached: false,
                    status: Some(shop()),
                    apps: Vec::new(),
                    ok: true,
                    error: None,
                }),
            ),
            Row::new(
                &b,
                Some(&Answer {
                    http: 403,
                    marked: false,
                    unreached: false,
                    status: None,
                    apps: Vec::new(),
                    ok: false,
                    error: Some("HTTP 403: <html>\"quoted\"".into()),
                }),
            ),
        ]
    }

    #[test]
    fn lines_as_the_script_printed_them() {
        let report = Report::new("pause", rows(), "pause: 1 of 2 targets failed".into());
        assert_eq!(
            report.text(),
            "http://ops:***@10.0.0.5/_i#shop.test          200 paused   held 12     in flight 3     \
             until 2026-11-23T10:25:30.123Z ok\n\
             http://10.0.0.9/_i                            403 -        held -      in flight -     \
             until -                        FAILED: HTTP 403: <html>\"quoted\"\n\
             pause: 1 of 2 targets failed\n"
        );
        assert_eq!((report.ok, report.failed), (1, 1));
    }

    #[test]
    fn json_is_one_valid_document_without_passwords() {
        let report = Report::new("status", rows(), "status: 1 of 2 targets ok".into());
        let json = report.json();
        assert!(json.ends_with("}\n") && json.lines().count() == 1);
        assert!(!json.contains("pw"));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["action"], "status");
        assert_eq!(
            (value["ok"].as_u64(), value["failed"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(value["targets"][0]["target"], "http://ops:***@10.0.0.5/_i");
        assert_eq!(value["targets"][0]["host"], "shop.test");
        assert_eq!(value["targets"][0]["state"], "paused");
        assert_eq!(value["targets"][0]["deadline"], "2026-11-23T10:25:30.123Z");
        assert_eq!(value["targets"][0]["status"]["held_in_pause"], 40);
        // An older module's answer, without `bypassed`: it reads as 0.
        assert_eq!(value["targets"][0]["status"]["bypassed"], 0);
        assert_eq!(value["targets"][1]["state"], serde_json::Value::Null);
        assert_eq!(value["targets"][1]["error"], "HTTP 403: <html>\"quoted\"");
    }

    #[test]
    fn a_target_not_answered_is_a_failure_that_says_so() {
        let shared = SharedCredentials::default();
        let t = Target::from_arg("http://h/_i", &shared).unwrap();
        let row = Row::new(&t, None);
        assert!(!row.ok && row.http == 0);
        assert!(row.error.unwrap().contains("interrupted"));
    }
}
