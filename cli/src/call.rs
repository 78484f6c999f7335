//! One call to one target: the control action, then the target's JSON
//! status (read into the module's own status type), and whether the call
//! did what it asked.

use std::time::Duration;

use intermission_core::control::{RunState, StatusAnswer};

use crate::target::Target;

/// A control action, as its path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Status,
    Enable,
    Disable,
    Stop,
}

impl Verb {
    pub fn path(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Enable => "enable",
            Verb::Disable => "disable",
            Verb::Stop => "stop",
        }
    }
}

/// What a target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status of the action; 0 when the target was not reached.
    pub http: u16,
    /// What its status said after the action, if it answered one.
    pub state: Option<RunState>,
    pub held: Option<u64>,
    /// Whether the action did what it asked.
    pub ok: bool,
    /// Why not, in one short line.
    pub error: Option<String>,
}

/// Longest error text kept from an answer.
const ERROR_CHARS: usize = 120;

/// Calls `verb` (with `query`, such as `?ttl=5m`) on `target`, each HTTP
/// call allowed `limit`.
pub fn call(target: &Target, verb: Verb, query: &str, limit: Duration) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(limit))
        .build()
        .into();
    if verb == Verb::Status {
        return match status(&agent, target) {
            Ok((http, Ok(answer))) => Answer {
                http,
                state: Some(answer.state),
                held: Some(answer.held_now),
                ok: true,
                error: None,
            },
            Ok((http, Err(why))) => Answer {
                http,
                state: None,
                held: None,
                ok: false,
                error: Some(why),
            },
            Err(why) => unreached(target, &why),
        };
    }
    let mut request = agent.post(target.url_of(&format!("{}{query}", verb.path())));
    if let Some(host) = &target.host {
        request = request.header("Host", host);
    }
    if let Some(authorization) = target.authorization() {
        request = request.header("Authorization", authorization);
    }
    let (http, body) = match request.send_empty() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(why) => return unreached(target, &why),
    };
    let ok = matches!(http, 200 | 304);
    let (state, held) = match status(&agent, target) {
        Ok((_, Ok(answer))) => (Some(answer.state), Some(answer.held_now)),
        _ => (None, None),
    };
    Answer {
        http,
        state,
        held,
        ok,
        error: (!ok).then(|| short(&target.redact(&format!("HTTP {http}: {}", first_line(&body))))),
    }
}

/// The target's JSON status: its HTTP status and the parsed answer, or why
/// it is not one; `Err` when it was not reached.
fn status(
    agent: &ureq::Agent,
    target: &Target,
) -> Result<(u16, Result<StatusAnswer, String>), ureq::Error> {
    let mut request = agent
        .get(target.url_of("status"))
        .header("Accept", "application/json");
    if let Some(host) = &target.host {
        request = request.header("Host", host);
    }
    if let Some(authorization) = target.authorization() {
        request = request.header("Authorization", authorization);
    }
    let mut response = request.call()?;
    let http = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if http != 200 {
        return Ok((
            http,
            Err(short(
                &target.redact(&format!("HTTP {http}: {}", first_line(&body))),
            )),
        ));
    }
    Ok((
        http,
        serde_json::from_str::<StatusAnswer>(&body).map_err(|e| {
            short(&format!(
                "not the module's status ({e}): {}",
                target.redact(first_line(&body))
            ))
        }),
    ))
}

fn unreached(target: &Target, why: &ureq::Error) -> Answer {
    Answer {
        http: 0,
        state: None,
        held: None,
        ok: false,
        error: Some(short(&target.redact(&why.to_string()))),
    }
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("").trim()
}

/// One line of at most `ERROR_CHARS` characters, control characters out.
fn short(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.chars().count() <= ERROR_CHARS {
        return cleaned;
    }
    let cut: String = cleaned.chars().take(ERROR_CHARS - 3).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_short_line() {
        assert_eq!(short("a\tb\nc"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(short(&long).chars().count(), ERROR_CHARS);
        assert!(short(&long).ends_with("..."));
        assert_eq!(first_line("\n  <html>\r\n<head>"), "<html>");
    }
}
