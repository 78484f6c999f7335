//! What became of a request, for `$intermission_outcome` in access logs.
//!
//! The module stores the outcome's text in the request as a variable value,
//! which survives internal redirects. A request counted in flight must be
//! counted out by the same counter at its end, so its text also says which
//! counter, and whether the request switched protocols since (it is then
//! counted as upgraded): there are static copies of "passed" and of "held"
//! per counter, one set for each, and the copy the text points to says it.
//! No allocation, no lookup.

use crate::ids::Release;
use crate::in_flight::{InFlightCounter, IN_FLIGHT_ENTRIES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Let through at once: its app was running.
    Passed,
    /// Held while its app was paused; released when it resumed, or its
    /// client left while it waited.
    Held,
    /// Let through while its app was paused: a health check, the privileged
    /// user agent, or an `$intermission_max_time` of 0.
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

    /// The text of the outcome of a request that `counted` counted in
    /// flight (only requests that passed or were released by a resume are).
    pub fn text_counted_by(self, counted: Option<Counted>) -> &'static [u8] {
        match (self, counted) {
            (Outcome::Passed, Some(c)) if c.upgraded => &PASSED_UPGRADED[c.index()],
            (Outcome::Passed, Some(c)) => &PASSED_COUNTED[c.index()],
            (Outcome::Held, Some(c)) if c.upgraded => &HELD_UPGRADED[c.index()],
            (Outcome::Held, Some(c)) => &HELD_COUNTED[c.index()],
            (outcome, _) => outcome.text(),
        }
    }

    /// The counter that counted the request whose outcome text is `text`,
    /// and the outcome.
    pub fn counted_of_text(text: &[u8]) -> Option<(Outcome, Counted)> {
        let copies: [(Outcome, bool, &'static [[u8; 6]; IN_FLIGHT_ENTRIES]); 2] = [
            (Outcome::Passed, false, &PASSED_COUNTED),
            (Outcome::Passed, true, &PASSED_UPGRADED),
        ];
        let held: [(Outcome, bool, &'static [[u8; 4]; IN_FLIGHT_ENTRIES]); 2] = [
            (Outcome::Held, false, &HELD_COUNTED),
            (Outcome::Held, true, &HELD_UPGRADED),
        ];
        copies
            .iter()
            .find_map(|&(outcome, upgraded, copies)| {
                counter_of_copy(copies, text)
                    .map(|counter| (outcome, Counted { counter, upgraded }))
            })
            .or_else(|| {
                held.iter().find_map(|&(outcome, upgraded, copies)| {
                    counter_of_copy(copies, text)
                        .map(|counter| (outcome, Counted { counter, upgraded }))
                })
            })
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

/// How a request is counted in flight: by which counter, and whether it
/// switched protocols since it was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub counter: InFlightCounter,
    pub upgraded: bool,
}

impl Counted {
    pub fn by(counter: InFlightCounter) -> Self {
        Counted {
            counter,
            upgraded: false,
        }
    }

    fn index(self) -> usize {
        self.counter.index() % IN_FLIGHT_ENTRIES
    }
}

static PASSED_COUNTED: [[u8; 6]; IN_FLIGHT_ENTRIES] = [*b"passed"; IN_FLIGHT_ENTRIES];
static HELD_COUNTED: [[u8; 4]; IN_FLIGHT_ENTRIES] = [*b"held"; IN_FLIGHT_ENTRIES];
static PASSED_UPGRADED: [[u8; 6]; IN_FLIGHT_ENTRIES] = [*b"passed"; IN_FLIGHT_ENTRIES];
static HELD_UPGRADED: [[u8; 4]; IN_FLIGHT_ENTRIES] = [*b"held"; IN_FLIGHT_ENTRIES];

/// The counter whose copy `text` is, if it is one of `copies` (the very
/// bytes, not equal ones).
fn counter_of_copy<const N: usize>(
    copies: &'static [[u8; N]; IN_FLIGHT_ENTRIES],
    text: &[u8],
) -> Option<InFlightCounter> {
    if text.len() != N {
        return None;
    }
    let offset = (text.as_ptr() as usize).checked_sub(copies.as_ptr() as usize)?;
    let index = offset / N;
    (offset % N == 0 && index < IN_FLIGHT_ENTRIES).then_some(InFlightCounter(index as u16))
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

    #[test]
    fn a_counted_text_names_its_counter_and_reads_as_the_outcome() {
        for index in [0u16, 1, 117, IN_FLIGHT_ENTRIES as u16 - 1] {
            for upgraded in [false, true] {
                let counted = Counted {
                    counter: InFlightCounter(index),
                    upgraded,
                };
                for outcome in [Outcome::Passed, Outcome::Held] {
                    let text = outcome.text_counted_by(Some(counted));
                    assert_eq!(text, outcome.text());
                    assert_eq!(Outcome::counted_of_text(text), Some((outcome, counted)));
                }
            }
        }
        let copy = b"passed".to_vec();
        assert_eq!(
            Outcome::counted_of_text(&copy),
            None,
            "equal bytes elsewhere"
        );
        assert_eq!(Outcome::counted_of_text(Outcome::Passed.text()), None);
        let three = Counted::by(InFlightCounter(3));
        assert_eq!(
            Outcome::counted_of_text(Outcome::Rejected.text_counted_by(Some(three))),
            None,
            "only passed and held requests are counted"
        );
        let held = Outcome::Held.text_counted_by(Some(Counted::by(InFlightCounter(9))));
        assert_eq!(Outcome::counted_of_text(&held[1..]), None);
    }
}
