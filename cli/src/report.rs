//! What a command prints: a line per target and a summary, or one JSON
//! document (`--json`) whatever the targets answered.

use std::io::Write;

use intermission_core::control::RunState;
use serde::Serialize;

use crate::call::Answer;
use crate::target::Target;

/// One target's line.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// The URL as shown: a password is `***`.
    pub target: String,
    pub host: Option<String>,
    /// 0 when the target was not reached.
    pub http: u16,
    pub state: Option<RunState>,
    pub held: Option<u64>,
    pub ok: bool,
    pub error: Option<String>,
}

impl Row {
    /// `answer` is `None` for a target not answered (the command was
    /// interrupted while it waited).
    pub fn new(target: &Target, answer: Option<&Answer>) -> Row {
        let interrupted = Answer {
            http: 0,
            state: None,
            held: None,
            ok: false,
            error: Some("no answer before the command was interrupted".into()),
        };
        let answer = answer.unwrap_or(&interrupted);
        Row {
            target: target.shown_url().to_owned(),
            host: target.host.clone(),
            http: answer.http,
            state: answer.state,
            held: answer.held,
            ok: answer.ok,
            error: answer.error.clone(),
        }
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
            let state = row.state.map_or("-", RunState::name);
            let held = row.held.map_or("-".to_owned(), |h| h.to_string());
            let result = if row.ok { "ok" } else { "FAILED" };
            let why = row
                .error
                .as_deref()
                .filter(|_| !row.ok)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "{target:<45} {:03} {state:<8} held {held:<6} {result}{why}\n",
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

    fn rows() -> Vec<Row> {
        let shared = SharedCredentials::default();
        let a = Target::from_arg("http://ops:pw@10.0.0.5/_i#shop.test", &shared).unwrap();
        let b = Target::from_arg("http://10.0.0.9/_i", &shared).unwrap();
        vec![
            Row::new(
                &a,
                Some(&Answer {
                    http: 200,
                    state: Some(RunState::Paused),
                    held: Some(12),
                    ok: true,
                    error: None,
                }),
            ),
            Row::new(
                &b,
                Some(&Answer {
                    http: 403,
                    state: None,
                    held: None,
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
            "http://ops:***@10.0.0.5/_i#shop.test          200 paused   held 12     ok\n\
             http://10.0.0.9/_i                            403 -        held -      FAILED: HTTP 403: <html>\"quoted\"\n\
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
