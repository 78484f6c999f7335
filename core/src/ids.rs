//! The small values every other part of the crate passes around: which app,
//! which request of it, which pause, what time, why a held request was
//! let go, and how long an app's name may be. A leaf module: it depends on nothing else in the crate, so the
//! modules that use these types never depend on each other for them.

/// Milliseconds on nginx's monotonic clock (`ngx_current_msec`).
pub type Millis = u64;

/// The wall-clock time (Unix ms) of `at` on nginx's monotonic clock, given
/// that the monotonic `now` is `wall_now`: as far before or after it.
pub fn wall_time(at: Millis, now: Millis, wall_now: Millis) -> Millis {
    wall_now
        .saturating_sub(now.saturating_sub(at))
        .saturating_add(at.saturating_sub(now))
}

/// Longest app name (`$app_name`) the app table stores, and a state file
/// or the control endpoint accepts.
pub const MAX_APP_NAME_LEN: usize = 128;

/// Index of an app's slot in the app table: stable for the life of the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(pub u32);

/// A held request's place in its app's queue: tickets are handed out from one
/// counter per app, so they order the requests of every worker by arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Where an app stands in its pause/resume history.
///
/// Every pause and every resume advances the phase by one, so an odd phase is
/// paused and an even phase is running. A held request remembers the phase it
/// was held in and is due as soon as the app's phase differs from it, even if
/// the app was resumed and paused again before its worker looked; what it is
/// due for is `AppState::due`'s to say (a stop answers it, and a new pause
/// holds it again, since a pause lets nothing through).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Phase(pub u64);

impl Phase {
    pub fn is_paused(self) -> bool {
        self.0 % 2 == 1
    }

    /// A request held in `self` is due once the app has moved on to `now`.
    pub fn is_due_at(self, now: Phase) -> bool {
        self != now
    }
}

/// Why a held request leaves its worker's queue.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Release {
    /// Its app was resumed: it goes on to the upstream.
    Resumed,
    /// It was held for its `$intermission_max_time` while the app stayed
    /// paused.
    TimedOut,
    /// nginx is shutting down for good while the app is paused: it is
    /// answered 503 rather than dropped with the worker.
    ShuttingDown,
    /// Its app was stopped (`.../stop`): it is answered 503 at once.
    Stopped,
}

/// FNV-1a: stable across builds and processes, which the shared table needs
/// (std's hashers may change between Rust releases).
pub fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_are_as_far_from_now_as_their_monotonic_times() {
        assert_eq!(wall_time(1_000, 1_000, 50_000), 50_000);
        assert_eq!(wall_time(400, 1_000, 50_000), 49_400);
        assert_eq!(wall_time(1_600, 1_000, 50_000), 50_600);
        assert_eq!(wall_time(0, u64::MAX, 5), 0, "never below zero");
        assert_eq!(wall_time(u64::MAX, 0, 5), u64::MAX, "never past the end");
    }

    #[test]
    fn odd_phases_are_paused_and_any_move_makes_a_request_due() {
        assert!(!Phase(0).is_paused());
        assert!(Phase(1).is_paused());
        assert!(!Phase(1).is_due_at(Phase(1)));
        assert!(Phase(1).is_due_at(Phase(2)));
        // Resumed and paused again before the worker looked: still due.
        assert!(Phase(1).is_due_at(Phase(3)));
    }
}
