//! One call to one target: the control action, then the target's JSON
//! status (read into the module's own status type), and whether the call
//! did what it asked. A target that is not an `intermission_control`
//! location (its answers lack the module's `X-Intermission-Version`
//! header), or that holds the call, gets a hint at what is likely wrong.

use std::path::Path;
use std::time::Duration;

use intermission_core::control::{AllAnswer, AppStatus};

use crate::target::Target;

/// The header the module puts on every answer of its control endpoint.
const MARKER: &str = "x-intermission-version";

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
    /// The HTTP status of the action; 0 when the target was not reached, or
    /// did not answer in time.
    pub http: u16,
    /// The answer came from the module's control endpoint (it carried its
    /// `X-Intermission-Version` header), not from a proxy in front.
    pub marked: bool,
    /// The call never reached nginx (the connection was refused, the host
    /// not found): it changed nothing there.
    pub unreached: bool,
    /// The target's app as its status said after the action, if it did.
    pub status: Option<AppStatus>,
    /// Every app of the target (`status --all`).
    pub apps: Vec<AppStatus>,
    /// Whether the action did what it asked.
    pub ok: bool,
    /// Why not, in one short line.
    pub error: Option<String>,
}

impl Answer {
    /// Whether an `enable` (or `stop`) that got this answer may have paused
    /// the target (and a rollback must resume it): the module said so (200,
    /// or 504 for a drain out of time), or failed in a way that does not
    /// say (a 5xx of its own but 507, "no room"), or the answer is not the
    /// module's: none came (a timeout, a reset), or a proxy in front gave
    /// its own (a 502, 503 or 504). A 304 (paused before this call) and the
    /// module's refusals (4xx, 507) paused nothing.
    pub fn may_have_paused(&self) -> bool {
        if self.unreached {
            return false;
        }
        !self.marked || matches!(self.http, 200 | 500..=506 | 508..=599)
    }

    /// A failure with `error` as its reason (`http` 0: no answer).
    pub fn failed(http: u16, error: String) -> Answer {
        Answer {
            http,
            marked: false,
            unreached: false,
            status: None,
            apps: Vec::new(),
            ok: false,
            error: Some(error),
        }
    }
}

/// Longest error text kept from an answer.
const ERROR_CHARS: usize = 200;

/// The HTTP client every call of a command shares: the system's
/// certificate store for https:// targets, or `cacert`.
pub fn agent(cacert: Option<&Path>) -> Result<ureq::Agent, String> {
    use ureq::tls::{RootCerts, TlsConfig};
    let roots = match cacert {
        None => RootCerts::PlatformVerifier,
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --cacert file \"{}\": {e}", path.display()))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "--cacert file \"{}\" holds no PEM certificate",
                    path.display()
                ));
            }
            RootCerts::new_with_certs(&certs)
        }
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into())
}

/// Calls `verb` (with `query`, such as `?ttl=5m`) on `target`, each HTTP
/// call allowed `limit`; `all`: the status of every app (`status?all`).
pub fn call(
    agent: &ureq::Agent,
    target: &Target,
    verb: Verb,
    query: &str,
    limit: Duration,
    all: bool,
) -> Answer {
    if verb == Verb::Status {
        return match status(agent, target, limit, all) {
            Ok(Read::App(http, answer)) => Answer {
                http,
                marked: true,
                unreached: false,
                status: Some(answer),
                apps: Vec::new(),
                ok: true,
                error: None,
            },
            Ok(Read::Apps(http, apps)) => Answer {
                http,
                marked: true,
                unreached: false,
                status: None,
                apps,
                ok: true,
                error: None,
            },
            Ok(Read::Not(http, marked, why)) => Answer {
                marked,
                ..Answer::failed(http, why)
            },
            Err(why) => unreached(target, &why),
        };
    }
    let mut request = agent
        .post(target.url_of(&format!("{}{query}", verb.path())))
        .config()
        .timeout_global(Some(limit))
        .build();
    if let Some(host) = &target.host {
        request = request.header("Host", host);
    }
    if let Some(authorization) = target.authorization() {
        request = request.header("Authorization", authorization);
    }
    let (http, marked, body) = match request.send_empty() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.headers().contains_key(MARKER),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(why) => return unreached(target, &why),
    };
    if !marked {
        return Answer::failed(http, not_the_control_location(target, http, &body));
    }
    let ok = matches!(http, 200 | 304);
    let status = match status(agent, target, limit, false) {
        Ok(Read::App(_, answer)) => Some(answer),
        _ => None,
    };
    Answer {
        http,
        marked: true,
        unreached: false,
        status,
        apps: Vec::new(),
        ok,
        error: (!ok).then(|| short(&target.redact(&format!("HTTP {http}: {}", first_line(&body))))),
    }
}

/// What a status call read.
enum Read {
    App(u16, AppStatus),
    Apps(u16, Vec<AppStatus>),
    /// Not a status, and why; whether the module said so.
    Not(u16, bool, String),
}

/// The target's JSON status; `Err` when it was not reached.
fn status(
    agent: &ureq::Agent,
    target: &Target,
    limit: Duration,
    all: bool,
) -> Result<Read, ureq::Error> {
    let action = if all { "status?all" } else { "status" };
    let mut request = agent
        .get(target.url_of(action))
        .config()
        .timeout_global(Some(limit))
        .build()
        .header("Accept", "application/json");
    if let Some(host) = &target.host {
        request = request.header("Host", host);
    }
    if let Some(authorization) = target.authorization() {
        request = request.header("Authorization", authorization);
    }
    let mut response = request.call()?;
    let http = response.status().as_u16();
    let marked = response.headers().contains_key(MARKER);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if !marked {
        return Ok(Read::Not(
            http,
            false,
            not_the_control_location(target, http, &body),
        ));
    }
    if http != 200 {
        return Ok(Read::Not(
            http,
            true,
            short(&target.redact(&format!("HTTP {http}: {}", first_line(&body)))),
        ));
    }
    let parsed = if all {
        serde_json::from_str::<AllAnswer>(&body).map(|all| Read::Apps(http, all.apps))
    } else {
        serde_json::from_str::<AppStatus>(&body).map(|app| Read::App(http, app))
    };
    Ok(parsed.unwrap_or_else(|e| {
        Read::Not(
            http,
            true,
            short(&format!(
                "not a status this command knows ({e}): is the module newer than the command?"
            )),
        )
    }))
}

/// What an answer without the module's marker says, and the likely
/// mistake: the target is not an `intermission_control` location, or
/// something in front of nginx answered.
fn not_the_control_location(target: &Target, http: u16, body: &str) -> String {
    let line = first_line(body);
    let text = match http {
        401 | 403 => format!(
            "HTTP {http}: {line} (the control location refused access: its allow/deny or \
             auth_basic)"
        ),
        404 => format!(
            "HTTP 404: no intermission_control location at {}",
            target.shown_url()
        ),
        200..=399 => format!(
            "HTTP {http} not from the module (no X-Intermission-Version header): this is not \
             the intermission_control location; point the target at it, not at the site"
        ),
        500..=599 => format!(
            "HTTP {http} from something in front of nginx (no X-Intermission-Version header): \
             {line}"
        ),
        _ => format!("HTTP {http}: {line}"),
    };
    short(&target.redact(&text))
}

fn unreached(target: &Target, why: &ureq::Error) -> Answer {
    let hint = match why {
        ureq::Error::Timeout(_) => {
            "; if it is a location with `intermission` (a site URL) rather than \
             `intermission_control`, its requests are held while the app is paused"
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            "; for a certificate of your own authority, --cacert FILE"
        }
        ureq::Error::Io(e) if e.to_string().contains("certificate") => {
            "; for a certificate of your own authority, --cacert FILE"
        }
        _ => "",
    };
    // A call that never reached nginx changed nothing there.
    let never_sent = match why {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    };
    Answer {
        unreached: never_sent,
        ..Answer::failed(0, short(&target.redact(&format!("{why}{hint}"))))
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

    #[test]
    fn only_the_modules_304_or_refusal_says_an_enable_paused_nothing() {
        let answer = |http, marked| Answer {
            marked,
            ..Answer::failed(http, String::new())
        };
        for http in [0, 200, 304, 400, 403, 500, 502, 503, 504, 507] {
            assert!(
                answer(http, false).may_have_paused(),
                "{http}, not the module's"
            );
        }
        let refused = Answer {
            unreached: true,
            ..answer(0, false)
        };
        assert!(!refused.may_have_paused(), "never reached nginx");
        for http in [200, 500, 504] {
            assert!(answer(http, true).may_have_paused(), "{http}");
        }
        for http in [304, 400, 401, 403, 404, 405, 409, 507] {
            assert!(!answer(http, true).may_have_paused(), "{http}");
        }
    }
}
