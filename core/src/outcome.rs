//! What became of a request, for `$intermission_outcome` in access logs:
//! one word per outcome, a static string the module writes into the request.

use crate::ids::Release;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Let through at once: its app was running.
    Passed,
    /// Held while its app was paused; released when it resumed, or its
    /// client left while it waited.
    Held,
    /// Let through while its app was paused: a health check,
    /// `$intermission_bypass`, the privileged user agent, or an
    /// `$intermission_max_time` of 0.
    Bypassed,
    /// Held until its `$intermission_max_time`, then let through or answered
    /// as `$intermission_on_timeout` says.
    TimedOut,
    /// Answered 503 because its app already held `intermission_max_held`.
    Rejected,
    /// Answered 503 because nginx was shutting down while its app was paused.
    Shutdown,
    /// Answered 503 because its app was stopped (`.../stop`).
    Stopped,
    /// Answered 503 because its app was paused and the module could not
    /// hold it (no memory, no release engine).
    Unheld,
}

impl Outcome {
    pub const fn text(self) -> &'static [u8] {
        match self {
            Outcome::Passed => b"passed",
            Outcome::Held => b"held",
            Outcome::Bypassed => b"bypassed",
            Outcome::TimedOut => b"timed_out",
            Outcome::Rejected => b"rejected",
            Outcome::Shutdown => b"shutdown",
            Outcome::Stopped => b"stopped",
            Outcome::Unheld => b"unheld",
        }
    }

    /// The outcome of a held request, by why it was let go.
    pub const fn of_release(why: Release) -> Self {
        match why {
            Release::Resumed => Outcome::Held,
            Release::TimedOut => Outcome::TimedOut,
            Release::ShuttingDown => Outcome::Shutdown,
            Release::Stopped => Outcome::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_word() {
        let all = [
            Outcome::Passed,
            Outcome::Held,
            Outcome::Bypassed,
            Outcome::TimedOut,
            Outcome::Rejected,
            Outcome::Shutdown,
            Outcome::Stopped,
            Outcome::Unheld,
        ];
        let mut words: Vec<_> = all.iter().map(|o| o.text()).collect();
        words.sort();
        words.dedup();
        assert_eq!(words.len(), all.len());
        assert_eq!(Outcome::of_release(Release::Resumed), Outcome::Held);
        assert_eq!(Outcome::of_release(Release::TimedOut).text(), b"timed_out");
    }
}
