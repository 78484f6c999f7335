//! When a worker's release engine next looks at its queue by itself.
//!
//! The engine keeps one timer. Every reason to look again at a given time
//! (a held request's max time, a pause's deadline, a paced turn, a stalled
//! worker's bound) is offered here, and the timer is set for the earliest.
//! Never for a time at or before now: nginx's clock stands still within a
//! turn of the event loop, and a timer set for it would run again in the
//! same turn, forever (its handler would find the same clock and the same
//! free connections). What is due now but could not go waits for an event
//! instead: the end of a request (connections), the next turn (a full
//! batch), or another worker's wake-up.

use crate::ids::Millis;

/// The earliest time offered, but never before `now + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextLook {
    now: Millis,
    at: Option<Millis>,
}

impl NextLook {
    /// Nothing to look at yet, at `now` on nginx's clock.
    pub fn new(now: Millis) -> Self {
        NextLook { now, at: None }
    }

    /// Looks again at `at` at the latest (`None`: no reason).
    pub fn at(&mut self, at: Option<Millis>) {
        if let Some(at) = at {
            let at = at.max(self.now.saturating_add(1));
            self.at = Some(self.at.map_or(at, |earlier| earlier.min(at)));
        }
    }

    /// Looks again `delay` milliseconds from now at the latest.
    pub fn after(&mut self, delay: Millis) {
        self.at(Some(self.now.saturating_add(delay)));
    }

    /// The time to set the timer for; always after now.
    pub fn time(&self) -> Option<Millis> {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_reason_wins_and_none_is_in_the_past() {
        let mut next = NextLook::new(1_000);
        assert_eq!(next.time(), None);
        next.at(None);
        assert_eq!(next.time(), None);
        next.at(Some(5_000));
        next.after(2_000);
        assert_eq!(next.time(), Some(3_000));
        next.at(Some(400));
        assert_eq!(next.time(), Some(1_001), "a past time is the next ms");
        next.at(Some(1_000));
        assert_eq!(next.time(), Some(1_001));
        let mut end = NextLook::new(u64::MAX);
        end.at(Some(3));
        assert_eq!(end.time(), Some(u64::MAX));
    }
}
