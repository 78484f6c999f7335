//! One arrival order across workers: the order window.
//!
//! Tickets come from one counter per app, so they are the arrival order
//! across all workers, but each worker can only release the requests it
//! holds itself. Each publishes the lowest ticket of each app it still
//! holds or is still waking (`worker_slots`); a worker releases ticket `t`
//! only while `t` is less than `ORDER_WINDOW` past the lowest ticket held by
//! any other worker. Every ticket more than the window before `t` has then
//! been released or has left, whichever worker held it, and the upstream
//! sees every request within about the window of its arrival position.
//!
//! A worker's own requests still on their way (waking, or sending over an
//! upstream connection being opened, and those its pass takes) bound it the
//! same way: it releases at most the window past the lowest of them
//! (`Window`). Within a worker
//! a request over a kept-alive upstream connection is written at once and
//! one over a new connection a turn or more later, so without this a worker
//! overtakes its own slow requests by as many batches as it releases
//! meanwhile.
//!
//! A ticket that will never be released (its client left, it was answered
//! at its max time, its worker died and its slot was reclaimed) is simply no
//! longer the lowest anywhere, so nothing waits for it.
//!
//! **Order yields to availability.** A worker that does not run (stopped,
//! swapped out, throttled, hung on a disk) cannot release its tickets, and
//! the others would wait for it. Once it has left a wake-up unlooked-at for
//! `STALL_BOUND_MS`, it loses its precedence: the others release past it,
//! and its own requests go when it runs again (`worker_slots`).

use crate::ids::{Millis, Ticket};

/// How far past the lowest ticket held elsewhere a worker may release.
/// Chosen with the benchmark (`intermission-bench one`, several workers,
/// upstream connections new and kept alive): wider windows released no
/// faster, and let requests land further from their send order at the
/// upstream; 16 keeps the order inside the project's target of 32 places
/// up to 50,000 held on 4 workers (bench/results/results.md).
pub const ORDER_WINDOW: u64 = 16;

/// How long a worker may leave a wake-up unlooked-at before the others stop
/// waiting for its place in the order. A worker that runs looks within
/// milliseconds (a pass is one turn of its event loop), so this only ever
/// catches workers that do not run; it bounds what one stalled worker can
/// delay the others by (see the figures in bench/README.md).
pub const STALL_BOUND_MS: Millis = 500;

/// How long a released request keeps its place while nginx opens its
/// upstream connection. A new connection is written to once it is open: on
/// loopback in the next turn of the event loop, on a LAN a round trip later
/// (a fraction of a millisecond, many turns); had the request left the order
/// as it woke, later tickets would be sent meanwhile. Bounded, and short,
/// because an upstream server that does not answer its SYNs holds its
/// requests until nginx's `proxy_connect_timeout`: with each worker at most
/// the window past its own requests on their way, the rest of a release
/// goes at least `ORDER_WINDOW` requests per bound and worker (800 a second)
/// past such a server. Order yields to availability, as for a stalled worker.
pub const SEND_BOUND_MS: Millis = 20;

/// Whether a released request that woke at `woke_at` still keeps its place
/// in the order at `now`: nginx has opened its upstream connection and not
/// yet written to it (`connecting`), and `SEND_BOUND_MS` has not passed.
pub fn keeps_place_while_sending(connecting: bool, woke_at: Millis, now: Millis) -> bool {
    connecting && now.saturating_sub(woke_at) < SEND_BOUND_MS
}

/// The tickets one pass of a worker may release: less than `ORDER_WINDOW`
/// past the lowest of its app's tickets held by another worker that runs,
/// and of its own on their way to the upstream, those it takes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: Option<Ticket>,
}

impl Window {
    pub fn new(lowest_elsewhere: Option<Ticket>, own_on_its_way: Option<Ticket>) -> Self {
        Window {
            start: lowest_elsewhere.into_iter().chain(own_on_its_way).min(),
        }
    }

    /// The lowest ticket the window counts from (`None`: no bound yet).
    pub fn start(&self) -> Option<Ticket> {
        self.start
    }

    /// Whether `ticket` may go.
    pub fn admits(&self, ticket: Ticket) -> bool {
        within_window(ticket, self.start)
    }

    /// `ticket` goes: it is on its way, and bounds the rest of the pass.
    pub fn take(&mut self, ticket: Ticket) {
        self.start = self.start.into_iter().chain([ticket]).min();
    }
}

/// Whether `ticket` may go while the lowest ticket of its app held by
/// another worker is `lowest_elsewhere` (`None`: no other worker holds any).
pub fn within_window(ticket: Ticket, lowest_elsewhere: Option<Ticket>) -> bool {
    lowest_elsewhere.is_none_or(|lowest| ticket.0 < lowest.0.saturating_add(ORDER_WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_request_keeps_its_place_only_while_connecting_and_within_the_bound() {
        assert!(keeps_place_while_sending(true, 1_000, 1_000));
        assert!(keeps_place_while_sending(
            true,
            1_000,
            1_000 + SEND_BOUND_MS - 1
        ));
        assert!(!keeps_place_while_sending(
            true,
            1_000,
            1_000 + SEND_BOUND_MS
        ));
        assert!(!keeps_place_while_sending(false, 1_000, 1_000));
        // A clock read before the wake-up (another worker's) counts as now.
        assert!(keeps_place_while_sending(true, 1_000, 900));
    }

    #[test]
    fn a_pass_window_starts_at_the_lowest_elsewhere_or_on_its_way() {
        assert_eq!(Window::new(None, None).start(), None);
        assert_eq!(Window::new(Some(Ticket(7)), None).start(), Some(Ticket(7)));
        assert_eq!(Window::new(None, Some(Ticket(9))).start(), Some(Ticket(9)));
        assert_eq!(
            Window::new(Some(Ticket(7)), Some(Ticket(9))).start(),
            Some(Ticket(7))
        );
        assert_eq!(
            Window::new(Some(Ticket(12)), Some(Ticket(9))).start(),
            Some(Ticket(9))
        );
    }

    #[test]
    fn what_a_pass_takes_bounds_the_rest_of_it() {
        let w = ORDER_WINDOW;
        let mut window = Window::new(None, None);
        assert!(window.admits(Ticket(5 + 10 * w)), "nothing on its way");
        window.take(Ticket(5));
        assert!(window.admits(Ticket(5 + w - 1)));
        assert!(!window.admits(Ticket(5 + w)));
        // Held elsewhere above what it took: its own ticket still counts.
        let mut window = Window::new(Some(Ticket(40)), None);
        window.take(Ticket(30));
        assert_eq!(window.start(), Some(Ticket(30)));
        assert!(!window.admits(Ticket(30 + w)));
    }

    #[test]
    fn the_window_opens_as_the_lowest_elsewhere_moves() {
        assert!(within_window(Ticket(1_000), None));
        let w = ORDER_WINDOW;
        assert!(within_window(Ticket(w - 1), Some(Ticket(0))));
        assert!(!within_window(Ticket(w), Some(Ticket(0))));
        assert!(within_window(Ticket(w), Some(Ticket(1))));
        assert!(within_window(
            Ticket(u64::MAX - 1),
            Some(Ticket(u64::MAX - 2))
        ));
    }

    /// Workers holding interleaved tickets, each releasing its own in order
    /// as far as the window lets it, in turns: what comes out is never more
    /// than the window away from arrival order, nothing is stuck, and
    /// tickets that leave or die with their worker do not block.
    struct World {
        held: Vec<BTreeSet<u64>>,
        released: Vec<u64>,
    }

    impl World {
        fn new(workers: usize, tickets: u64, owner: impl Fn(u64) -> usize) -> World {
            let mut held = vec![BTreeSet::new(); workers];
            for ticket in 0..tickets {
                held[owner(ticket)].insert(ticket);
            }
            World {
                held,
                released: Vec::new(),
            }
        }

        fn lowest_elsewhere(&self, worker: usize) -> Option<Ticket> {
            (0..self.held.len())
                .filter(|&other| other != worker)
                .filter_map(|other| self.held[other].first().copied())
                .min()
                .map(Ticket)
        }

        /// One worker's pass: releases up to `batch`; how many it released.
        fn pass(&mut self, worker: usize, batch: usize) -> usize {
            let mut released = 0;
            while released < batch {
                let Some(&ticket) = self.held[worker].first() else {
                    break;
                };
                if !within_window(Ticket(ticket), self.lowest_elsewhere(worker)) {
                    break;
                }
                self.held[worker].pop_first();
                self.released.push(ticket);
                released += 1;
            }
            released
        }

        fn run(&mut self, batch: usize, mut turn: impl FnMut(usize) -> usize) {
            let workers = self.held.len();
            let mut idle_rounds = 0;
            let mut round = 0;
            while self.held.iter().any(|h| !h.is_empty()) {
                let worker = turn(round) % workers;
                round += 1;
                if self.pass(worker, batch) == 0 {
                    idle_rounds += 1;
                    assert!(
                        idle_rounds < 100 * workers,
                        "stuck: {:?}",
                        self.lowest_elsewhere(worker)
                    );
                } else {
                    idle_rounds = 0;
                }
            }
        }

        fn max_displacement(&self) -> u64 {
            let mut sorted = self.released.clone();
            sorted.sort_unstable();
            self.released
                .iter()
                .enumerate()
                .map(|(position, ticket)| {
                    (position as u64).abs_diff(sorted.partition_point(|t| t < ticket) as u64)
                })
                .max()
                .unwrap_or(0)
        }
    }

    #[test]
    fn interleaved_workers_release_within_the_window() {
        for workers in [2, 4] {
            let mut world = World::new(workers, 2_000, |t| {
                (t as usize * 7 + t as usize / 3) % workers
            });
            // Uneven turns: worker 0 runs three times as often.
            world.run(64, |round| {
                if round % 4 < 3 {
                    0
                } else {
                    1 + round % (workers - 1).max(1)
                }
            });
            assert_eq!(world.released.len(), 2_000);
            assert!(
                world.max_displacement() < ORDER_WINDOW,
                "{workers} workers: {}",
                world.max_displacement()
            );
        }
    }

    #[test]
    fn leavers_and_a_dead_workers_tickets_never_block() {
        let mut world = World::new(3, 600, |t| (t % 3) as usize);
        // Clients of worker 1 leave before the release: their tickets are
        // gone from its queue.
        world.held[1].retain(|t| t % 5 != 0);
        // Worker 2 dies: its slot is reclaimed, its tickets leave the order.
        world.held[2].clear();
        world.run(16, |round| round);
        assert_eq!(world.released.len(), 200 + 200 - 40);
        assert!(world.max_displacement() < ORDER_WINDOW);
    }
}
