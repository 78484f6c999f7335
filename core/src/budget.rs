//! How many held requests one pass of a worker's release engine may let go
//! to the upstream.
//!
//! Two limits: the connections the worker can open now, less those already
//! promised to requests still waking (so a release never waits for
//! connections nginx does not have), and a batch per pass (so one event-loop
//! turn never runs thousands of requests at once; the rest go next turn).
//! Answers that need no connection (503s, 504s) spend neither.
//!
//! With no connection to spare and no request of the worker's own in
//! progress (whose end would free one), one request goes anyway: nginx then
//! reuses what it can, and the worker never waits for a connection that
//! nothing of its own will free.

/// What one pass may still let go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    connections: usize,
    batch: usize,
}

/// Why a pass stopped letting requests go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spent {
    /// No connection left: the end of a request of the worker's resumes it.
    pub connections: bool,
    /// The batch is full: the next turn of the event loop resumes it.
    pub batch: bool,
}

impl Budget {
    /// `available` connections (free, or idle keep-alive ones nginx can
    /// reclaim), `waking` of them promised already, `in_progress` released
    /// requests of the worker not finished, and `batch` requests a pass.
    pub fn new(available: usize, waking: usize, in_progress: usize, batch: usize) -> Self {
        let connections = match available.saturating_sub(waking) {
            0 if in_progress == 0 && waking == 0 => 1,
            n => n,
        };
        Budget { connections, batch }
    }

    /// How many may go now.
    pub fn room(&self) -> usize {
        self.connections.min(self.batch)
    }

    /// `n` went upstream.
    pub fn spend(&mut self, n: usize) {
        self.connections = self.connections.saturating_sub(n);
        self.batch = self.batch.saturating_sub(n);
    }

    /// Why nothing more may go (both false while some may).
    pub fn spent(&self) -> Spent {
        Spent {
            connections: self.connections == 0,
            batch: self.batch == 0,
        }
    }
}

impl Spent {
    /// Something due was left for later because of these limits.
    pub fn merge(&mut self, other: Spent) {
        self.connections |= other.connections;
        self.batch |= other.batch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_goes_as_far_as_connections_and_batch_allow() {
        let mut budget = Budget::new(40, 10, 5, 16);
        assert_eq!(budget.room(), 16);
        budget.spend(16);
        assert_eq!(
            budget.spent(),
            Spent {
                connections: false,
                batch: true
            }
        );
        let mut budget = Budget::new(12, 10, 5, 16);
        assert_eq!(budget.room(), 2);
        budget.spend(2);
        assert!(budget.spent().connections);
    }

    #[test]
    fn with_nothing_of_its_own_to_wait_for_one_goes_anyway() {
        assert_eq!(Budget::new(0, 0, 0, 16).room(), 1);
        assert_eq!(Budget::new(3, 3, 0, 16).room(), 0, "one is waking");
        assert_eq!(Budget::new(0, 0, 1, 16).room(), 0, "one will end");
    }
}
