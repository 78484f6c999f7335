//! What became of one app's held requests: counters kept in the shared zone
//! by every worker (a reload keeps them), and their reading for status.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::Release;

/// The counters of one app, inside its `AppState`.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    held_now: AtomicU64,
    released: AtomicU64,
    timed_out: AtomicU64,
    clients_gone: AtomicU64,
    refused_at_shutdown: AtomicU64,
    rejected: AtomicU64,
    stopped: AtomicU64,
    unheld: AtomicU64,
    bypassed: AtomicU64,
}

/// A reading of an app's counters, for the status endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppCounters {
    /// Held right now, by all workers. What a worker that is killed held
    /// is taken back when its slot is reclaimed (`forget_held`).
    pub held_now: u64,
    /// Released because the app was resumed.
    pub released: u64,
    /// Let through at their `$intermission_max_time` while still paused.
    pub timed_out: u64,
    /// Their client closed the connection while they were held.
    pub clients_gone: u64,
    /// Answered 503 because nginx was shutting down while the app was paused
    /// (held ones and new ones alike).
    pub refused_at_shutdown: u64,
    /// Answered 503 at once because the app already held its
    /// `intermission_max_held` requests.
    pub rejected: u64,
    /// Answered 503 because the app was stopped (held ones and new ones).
    pub stopped: u64,
    /// Requests of the paused app that the module could not hold (no
    /// memory, no release engine in their worker), answered 503 rather than
    /// sent to the app under maintenance.
    pub unheld: u64,
    /// Requests of the paused or stopped app let through at once, never
    /// held: exempt (the health check path, the privileged user agent,
    /// `$intermission_bypass`) or with `$intermission_max_time` 0.
    pub bypassed: u64,
}

impl SharedCounters {
    pub(crate) const fn new() -> Self {
        SharedCounters {
            held_now: AtomicU64::new(0),
            released: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            clients_gone: AtomicU64::new(0),
            refused_at_shutdown: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stopped: AtomicU64::new(0),
            unheld: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
        }
    }

    /// Counts a request in as held, unless `limit` are held already: then it
    /// counts it as rejected and returns false. The check and the count are
    /// one atomic step, so workers together never pass the limit.
    pub(crate) fn try_record_held(&self, limit: Option<u64>) -> bool {
        let held = self
            .held_now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                limit.is_none_or(|limit| n < limit).then_some(n + 1)
            });
        if held.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        held.is_ok()
    }

    /// A held request left, for `why`.
    pub(crate) fn record_release(&self, why: Release) {
        self.count_out();
        let counter = match why {
            Release::Resumed => &self.released,
            Release::TimedOut => &self.timed_out,
            Release::ShuttingDown => &self.refused_at_shutdown,
            Release::Stopped => &self.stopped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A held request's client closed the connection.
    pub(crate) fn record_client_gone(&self) {
        self.count_out();
        self.clients_gone.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered 503 at shutdown without having been held.
    pub(crate) fn record_refused_at_shutdown(&self) {
        self.refused_at_shutdown.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered 503 because its app is stopped, without having
    /// been held.
    pub(crate) fn record_refused_while_stopped(&self) {
        self.stopped.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of the paused app could not be held, and was answered 503.
    pub(crate) fn record_unheld(&self) {
        self.unheld.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of the paused or stopped app was let through at once.
    pub(crate) fn record_bypassed(&self) {
        self.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted in that no longer count: their worker died (its slot
    /// is reclaimed, see `worker_slots`) before counting them out.
    pub(crate) fn forget_held(&self, requests: u64) {
        let _ = self
            .held_now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(requests))
            });
    }

    /// One request fewer held; never below zero, even if a count was lost
    /// (a killed worker).
    pub(crate) fn count_out(&self) {
        let _ = self
            .held_now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn held_now(&self) -> u64 {
        self.held_now.load(Ordering::Relaxed)
    }

    pub(crate) fn read(&self) -> AppCounters {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AppCounters {
            held_now: read(&self.held_now),
            released: read(&self.released),
            timed_out: read(&self.timed_out),
            clients_gone: read(&self.clients_gone),
            refused_at_shutdown: read(&self.refused_at_shutdown),
            rejected: read(&self.rejected),
            stopped: read(&self.stopped),
            unheld: read(&self.unheld),
            bypassed: read(&self.bypassed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_held_request_is_counted_out_once_by_how_it_left() {
        let counters = SharedCounters::new();
        for _ in 0..6 {
            assert!(counters.try_record_held(None));
        }
        counters.record_release(Release::Resumed);
        counters.record_release(Release::Resumed);
        counters.record_release(Release::TimedOut);
        counters.record_release(Release::ShuttingDown);
        counters.record_client_gone();
        counters.record_refused_at_shutdown();
        counters.record_bypassed();
        counters.record_bypassed();
        assert_eq!(
            counters.read(),
            AppCounters {
                held_now: 1,
                released: 2,
                timed_out: 1,
                clients_gone: 1,
                refused_at_shutdown: 2,
                rejected: 0,
                stopped: 0,
                unheld: 0,
                bypassed: 2,
            }
        );
        counters.record_client_gone();
        counters.record_client_gone();
        assert_eq!(counters.read().held_now, 0, "never below zero");
    }

    #[test]
    fn past_the_limit_requests_are_rejected_and_counted() {
        let counters = SharedCounters::new();
        assert!(counters.try_record_held(Some(2)));
        assert!(counters.try_record_held(Some(2)));
        assert!(!counters.try_record_held(Some(2)));
        assert_eq!((counters.read().held_now, counters.read().rejected), (2, 1));
        counters.record_release(Release::Resumed);
        assert!(counters.try_record_held(Some(2)), "room again");
        assert!(!counters.try_record_held(Some(0)), "0 holds nothing");
    }

    #[test]
    fn a_dead_workers_share_is_taken_back_never_below_zero() {
        let counters = SharedCounters::new();
        for _ in 0..3 {
            assert!(counters.try_record_held(None));
        }
        counters.forget_held(2);
        assert_eq!(counters.held_now(), 1);
        assert!(counters.try_record_held(Some(2)), "room for one more");
        assert!(!counters.try_record_held(Some(2)));
        counters.forget_held(10);
        assert_eq!(counters.held_now(), 0, "never below zero");
    }
}
