//! Requests in flight: let through to the upstream while their app was
//! running, and not finished yet. A drain (`enable?drain=...`) waits for an
//! app's count to reach zero.
//!
//! Each worker counts in its own slot (`worker_slots`), so a worker that is
//! killed takes its counts with it when its slot is reclaimed, and no two
//! workers ever write the same counter. Within a slot the counts are kept per
//! hash of the app name, not per app: an app enters the app table at its
//! first pause, but the requests a first drain must wait for were let
//! through before that, and counting in the table would let any `$app_name`
//! ever seen (a `$host`, say) fill it. Two apps whose names share a counter
//! make each other's drains wait a little longer, never shorter: a drain
//! never answers "drained" while a request it waits for runs.
//!
//! Counting is two atomic operations per request on the worker's own cache
//! line, and nothing else: one when the request is let through, one when
//! nginx has finished with it.

use crate::ids::name_hash;

/// How many counters each worker slot keeps. With a handful of apps, the
/// chance that two share one is well under one in a hundred.
pub const IN_FLIGHT_COUNTERS: usize = 1024;

/// Which counter counts an app's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InFlightCounter(pub u16);

impl InFlightCounter {
    pub fn of(app_name: &[u8]) -> Self {
        InFlightCounter((name_hash(app_name) % IN_FLIGHT_COUNTERS as u64) as u16)
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_depends_only_on_the_name() {
        assert_eq!(InFlightCounter::of(b"shop"), InFlightCounter::of(b"shop"));
        assert!(InFlightCounter::of(b"").index() < IN_FLIGHT_COUNTERS);
        // A few apps spread over different counters.
        let names: [&[u8]; 4] = [b"shop", b"blog", b"api", b""];
        let mut counters: Vec<_> = names.iter().map(|n| InFlightCounter::of(n)).collect();
        counters.sort();
        counters.dedup();
        assert_eq!(counters.len(), names.len());
    }
}
