//! What the module does with one request of a paused app: let it pass,
//! answer it at once, or hold it; and what a held request gets once it is
//! let go. Pure functions of what the request and the zone say, so every
//! case is a unit test; the module reads the facts and carries the verdict
//! out.

use crate::ids::{Millis, Release};
use crate::outcome::Outcome;
use crate::settings::{
    parse_max_time, parse_on_timeout, Exemption, ExemptionCheck, InvalidMaxTime, OnTimeout,
    DEFAULT_MAX_TIME_MS,
};

/// `Retry-After` of the 503 answered at shutdown: a restarted nginx is back
/// within about a second, and the request never reached the upstream, so it
/// is safe to send again.
pub const RETRY_AFTER_SHUTDOWN: &str = "1";

/// `Retry-After` of the 503 past `intermission_max_held`, and of a 503 at
/// `$intermission_max_time`: a pause lasts seconds, so a client that comes
/// back after a few finds it over, or room.
pub const RETRY_AFTER_HOLD_LIMIT: &str = "5";

/// `Retry-After` of the 503 of a stopped app: a stop is for maintenance
/// longer than a pause (minutes rather than seconds), so clients that honour
/// it should not come back every few seconds.
pub const RETRY_AFTER_STOP: &str = "30";

/// What one request of a paused app says, as read by the module.
pub struct PausedRequest<'a> {
    /// Its app is stopped, not only paused.
    pub stopped: bool,
    pub exemption: ExemptionCheck<'a>,
    /// `$intermission_max_time`, `$intermission_on_timeout`: raw, if set.
    pub max_time: Option<&'a [u8]>,
    pub on_timeout: Option<&'a [u8]>,
    /// nginx is stopping for good (not a reload).
    pub shutting_down: bool,
}

/// An answer the module gives itself, through nginx's error handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub outcome: Outcome,
}

impl Answer {
    /// The app already holds its `intermission_max_held`.
    pub const REJECTED: Answer = Answer {
        status: 503,
        retry_after: Some(RETRY_AFTER_HOLD_LIMIT),
        outcome: Outcome::Rejected,
    };
    pub const STOPPED: Answer = Answer {
        status: 503,
        retry_after: Some(RETRY_AFTER_STOP),
        outcome: Outcome::Stopped,
    };
    /// The app is paused and the module could not hold the request: never
    /// the upstream under maintenance.
    pub const UNHELD: Answer = Answer {
        status: 503,
        retry_after: Some(RETRY_AFTER_HOLD_LIMIT),
        outcome: Outcome::Unheld,
    };
    pub const SHUTDOWN: Answer = Answer {
        status: 503,
        retry_after: Some(RETRY_AFTER_SHUTDOWN),
        outcome: Outcome::Shutdown,
    };
}

/// Why a request of a paused app passes without being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    Exempt(Exemption),
    /// `$intermission_max_time` is 0: never hold it.
    NoMaxTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Bypass(Bypass),
    Answer(Answer),
    /// Hold it (if the app has room: `Answer::REJECTED` otherwise), for at
    /// most `max_time`.
    Hold {
        max_time: Millis,
        on_timeout: OnTimeout,
    },
}

/// A verdict, and the variable values that were invalid and replaced by
/// their defaults (for the error log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub invalid_max_time: Option<InvalidMaxTime>,
    pub invalid_on_timeout: bool,
}

/// What to do with a request of a paused app.
pub fn decide(request: &PausedRequest<'_>) -> Decision {
    let mut decision = Decision {
        verdict: Verdict::Bypass(Bypass::NoMaxTime),
        invalid_max_time: None,
        invalid_on_timeout: false,
    };
    if let Some(exemption) = request.exemption.exemption() {
        decision.verdict = Verdict::Bypass(Bypass::Exempt(exemption));
        return decision;
    }
    if request.stopped {
        decision.verdict = Verdict::Answer(Answer::STOPPED);
        return decision;
    }
    let max_time = match request.max_time.map(parse_max_time) {
        None => DEFAULT_MAX_TIME_MS,
        Some(Ok(ms)) => ms,
        Some(Err(invalid)) => {
            decision.invalid_max_time = Some(invalid);
            DEFAULT_MAX_TIME_MS
        }
    };
    if max_time == 0 {
        return decision;
    }
    let on_timeout = match request.on_timeout.map(parse_on_timeout) {
        None => OnTimeout::Pass,
        Some(Ok(on_timeout)) => on_timeout,
        Some(Err(_)) => {
            decision.invalid_on_timeout = true;
            OnTimeout::Pass
        }
    };
    decision.verdict = if request.shutting_down {
        Verdict::Answer(Answer::SHUTDOWN)
    } else {
        Verdict::Hold {
            max_time,
            on_timeout,
        }
    };
    decision
}

/// What a held request that was let go gets when its phases run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRelease {
    /// It goes on to the upstream.
    Pass,
    Answer(Answer),
}

impl AfterRelease {
    /// Whether it needs an upstream connection: answers are never held back
    /// for want of connections.
    pub fn goes_upstream(self) -> bool {
        self == AfterRelease::Pass
    }
}

/// What a held request gets once let go for `why`.
pub fn after_release(why: Release, on_timeout: OnTimeout) -> AfterRelease {
    match why {
        Release::Resumed => AfterRelease::Pass,
        Release::Stopped => AfterRelease::Answer(Answer::STOPPED),
        Release::ShuttingDown => AfterRelease::Answer(Answer::SHUTDOWN),
        Release::TimedOut => match on_timeout {
            OnTimeout::Pass => AfterRelease::Pass,
            OnTimeout::Answer(503) => AfterRelease::Answer(Answer {
                status: 503,
                retry_after: Some(RETRY_AFTER_HOLD_LIMIT),
                outcome: Outcome::TimedOut,
            }),
            OnTimeout::Answer(status) => AfterRelease::Answer(Answer {
                status,
                retry_after: None,
                outcome: Outcome::TimedOut,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(uri: &'a [u8]) -> PausedRequest<'a> {
        PausedRequest {
            stopped: false,
            exemption: ExemptionCheck {
                uri,
                user_agent: Some(b"curl/8"),
                health_check_path: Some(b"/healthz"),
                bypass: None,
                privileged_user_agent: Some(b"ops-bot"),
                regex_matches: &crate::settings::no_regex_matches,
            },
            max_time: None,
            on_timeout: None,
            shutting_down: false,
        }
    }

    #[test]
    fn a_plain_request_is_held_for_the_default_time() {
        assert_eq!(
            decide(&request(b"/cart")),
            Decision {
                verdict: Verdict::Hold {
                    max_time: DEFAULT_MAX_TIME_MS,
                    on_timeout: OnTimeout::Pass
                },
                invalid_max_time: None,
                invalid_on_timeout: false,
            }
        );
    }

    #[test]
    fn health_checks_and_the_privileged_agent_pass_even_when_stopped() {
        let mut health = request(b"/healthz");
        health.stopped = true;
        health.shutting_down = true;
        assert_eq!(
            decide(&health).verdict,
            Verdict::Bypass(Bypass::Exempt(Exemption::HealthCheck))
        );
        let mut agent = request(b"/cart");
        agent.exemption.user_agent = Some(b"ops-bot/2");
        agent.stopped = true;
        assert_eq!(
            decide(&agent).verdict,
            Verdict::Bypass(Bypass::Exempt(Exemption::PrivilegedUserAgent))
        );
        let mut bypassed = request(b"/cart");
        bypassed.exemption.bypass = Some(b"1");
        bypassed.stopped = true;
        assert_eq!(
            decide(&bypassed).verdict,
            Verdict::Bypass(Bypass::Exempt(Exemption::Bypass))
        );
    }

    #[test]
    fn a_stopped_app_answers_503_with_its_retry_after() {
        let mut stopped = request(b"/cart");
        stopped.stopped = true;
        stopped.max_time = Some(b"junk");
        assert_eq!(decide(&stopped).verdict, Verdict::Answer(Answer::STOPPED));
        assert_eq!(Answer::STOPPED.retry_after, Some("30"));
    }

    #[test]
    fn max_time_zero_passes_and_invalid_values_fall_back_to_defaults() {
        let mut never = request(b"/cart");
        never.max_time = Some(b"0");
        never.shutting_down = true;
        assert_eq!(decide(&never).verdict, Verdict::Bypass(Bypass::NoMaxTime));

        let mut invalid = request(b"/cart");
        invalid.max_time = Some(b"soon");
        invalid.on_timeout = Some(b"maybe");
        let decision = decide(&invalid);
        assert_eq!(
            decision.verdict,
            Verdict::Hold {
                max_time: DEFAULT_MAX_TIME_MS,
                on_timeout: OnTimeout::Pass
            }
        );
        assert_eq!(decision.invalid_max_time, Some(InvalidMaxTime::NotANumber));
        assert!(decision.invalid_on_timeout);

        let mut set = request(b"/cart");
        set.max_time = Some(b"2.5");
        set.on_timeout = Some(b"504");
        assert_eq!(
            decide(&set).verdict,
            Verdict::Hold {
                max_time: 2_500,
                on_timeout: OnTimeout::Answer(504)
            }
        );
    }

    #[test]
    fn nginx_stopping_answers_503_instead_of_holding() {
        let mut stopping = request(b"/cart");
        stopping.shutting_down = true;
        assert_eq!(decide(&stopping).verdict, Verdict::Answer(Answer::SHUTDOWN));
        assert_eq!(Answer::SHUTDOWN.retry_after, Some("1"));
    }

    #[test]
    fn a_released_request_passes_or_is_answered_by_why_it_was_let_go() {
        use AfterRelease::Pass;
        assert_eq!(
            after_release(Release::Resumed, OnTimeout::Answer(504)),
            Pass
        );
        assert_eq!(after_release(Release::TimedOut, OnTimeout::Pass), Pass);
        assert_eq!(
            after_release(Release::TimedOut, OnTimeout::Answer(503)),
            AfterRelease::Answer(Answer {
                status: 503,
                retry_after: Some("5"),
                outcome: Outcome::TimedOut
            })
        );
        assert_eq!(
            after_release(Release::TimedOut, OnTimeout::Answer(504)),
            AfterRelease::Answer(Answer {
                status: 504,
                retry_after: None,
                outcome: Outcome::TimedOut
            })
        );
        assert_eq!(
            after_release(Release::Stopped, OnTimeout::Pass),
            AfterRelease::Answer(Answer::STOPPED)
        );
        assert_eq!(
            after_release(Release::ShuttingDown, OnTimeout::Pass),
            AfterRelease::Answer(Answer::SHUTDOWN)
        );
        assert!(Pass.goes_upstream());
        assert!(!after_release(Release::Stopped, OnTimeout::Pass).goes_upstream());
    }
}
