//! Requests in flight: let through to the upstream while their app was
//! running, and not finished yet. A drain (`enable?drain=...`) waits for an
//! app's count to reach zero.
//!
//! The counts live in the zone header, in a fixed array of counters indexed
//! by a hash of the app name, not in the app's table slot: an app enters the
//! table at its first pause, but the requests a first drain must wait for
//! were let through before that, and counting in the table would let any
//! `$app_name` ever seen (a `$host`, say) fill it. Two apps whose names share
//! a counter make each other's drains wait a little longer, never shorter:
//! a drain never answers "drained" while a request it waits for runs.
//!
//! Counting is two atomic operations per request and nothing else: one when
//! the request is let through, one when nginx has finished with it.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::app_table::name_hash;

/// How many counters the zone keeps. With a handful of apps, the chance that
/// two share one is well under one in a hundred.
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

/// The in-flight counters of every app.
#[repr(C)]
#[derive(Debug)]
pub struct InFlight {
    counts: [AtomicU32; IN_FLIGHT_COUNTERS],
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl InFlight {
    /// A request is let through.
    pub fn enter(&self, counter: InFlightCounter) {
        self.counts[counter.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A request counted by `enter` is finished. Never below zero.
    pub fn leave(&self, counter: InFlightCounter) {
        let _ =
            self.counts[counter.index()]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Requests in flight under `counter` right now.
    pub fn count(&self, counter: InFlightCounter) -> u32 {
        self.counts[counter.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_and_out_never_below_zero() {
        let in_flight = InFlight::default();
        let shop = InFlightCounter::of(b"shop");
        in_flight.enter(shop);
        in_flight.enter(shop);
        assert_eq!(in_flight.count(shop), 2);
        in_flight.leave(shop);
        in_flight.leave(shop);
        in_flight.leave(shop);
        assert_eq!(in_flight.count(shop), 0);
    }

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

    #[test]
    fn threads_counting_together_end_at_zero() {
        let in_flight = std::sync::Arc::new(InFlight::default());
        let counter = InFlightCounter::of(b"shop");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let in_flight = in_flight.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        in_flight.enter(counter);
                        in_flight.leave(counter);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(in_flight.count(counter), 0);
    }
}
