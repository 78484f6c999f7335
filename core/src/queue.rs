//! The requests one worker holds, ordered for release.
//!
//! Each nginx worker keeps its own queue: a request can only be resumed by the
//! process that owns its connection. Requests are keyed by app and ticket, so
//! releasing an app walks its requests in ticket (arrival) order; a second
//! index by deadline lets the worker find requests that reached their maximum
//! hold time without looking at the others.
//!
//! Generic over the request handle `R`, so unit tests drive it with plain
//! values; `hold.rs` stores nginx request pointers in it.

use std::collections::{BTreeMap, BTreeSet};

use crate::app_table::AppId;
use crate::pause::{is_due_for_release, Phase, Ticket};

/// Milliseconds on nginx's monotonic clock (`ngx_current_msec`).
pub type Millis = u64;

#[derive(Debug)]
struct HeldRequest<R> {
    request: R,
    held_in: Phase,
    deadline: Millis,
}

/// Why a request leaves the queue.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Release {
    /// Its app was resumed.
    Resumed,
    /// It was held for its maximum time while the app stayed paused.
    TimedOut,
    /// nginx is shutting down for good while the app is paused: it is
    /// answered 503 rather than dropped with the worker.
    ShuttingDown,
    /// Its app was stopped (`.../stop`): it is answered 503 at once.
    Stopped,
}

#[derive(Debug)]
pub struct HeldQueue<R> {
    by_app: BTreeMap<AppId, BTreeMap<Ticket, HeldRequest<R>>>,
    by_deadline: BTreeSet<(Millis, AppId, Ticket)>,
    len: usize,
}

impl<R> Default for HeldQueue<R> {
    fn default() -> Self {
        HeldQueue {
            by_app: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            len: 0,
        }
    }
}

impl<R> HeldQueue<R> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn hold(
        &mut self,
        app: AppId,
        ticket: Ticket,
        held_in: Phase,
        deadline: Millis,
        request: R,
    ) {
        let previous = self.by_app.entry(app).or_default().insert(
            ticket,
            HeldRequest {
                request,
                held_in,
                deadline,
            },
        );
        debug_assert!(previous.is_none(), "tickets are unique per app");
        self.by_deadline.insert((deadline, app, ticket));
        self.len += 1;
    }

    /// Takes a request out of the queue without releasing it (its client went
    /// away). The requests behind it are not affected.
    pub fn forget(&mut self, app: AppId, ticket: Ticket) -> Option<R> {
        let queue = self.by_app.get_mut(&app)?;
        let held = queue.remove(&ticket)?;
        if queue.is_empty() {
            self.by_app.remove(&app);
        }
        self.by_deadline.remove(&(held.deadline, app, ticket));
        self.len -= 1;
        Some(held.request)
    }

    /// Takes out at most `limit` requests whose app has moved past the phase
    /// they were held in, each app's requests in ticket order. `phase_of`
    /// reads an app's current phase from the shared zone. Fewer than `limit`
    /// taken means no more are due; otherwise the next call goes on where this
    /// one stopped.
    pub fn release_in_order(
        &mut self,
        phase_of: impl FnMut(AppId) -> Phase,
        limit: usize,
    ) -> Vec<(AppId, Ticket, R)> {
        self.release_in_order_paced(phase_of, |_, _, _| true, limit)
    }

    /// As `release_in_order`, but a due request goes only if `may_go(app,
    /// held_in, ticket)` says so (a paced release lets the oldest go
    /// first); the first one of an app that may not go stops that app's
    /// release, so what goes is always the oldest.
    pub fn release_in_order_paced(
        &mut self,
        mut phase_of: impl FnMut(AppId) -> Phase,
        mut may_go: impl FnMut(AppId, Phase, Ticket) -> bool,
        limit: usize,
    ) -> Vec<(AppId, Ticket, R)> {
        let mut released = Vec::new();
        let apps: Vec<AppId> = self.by_app.keys().copied().collect();
        for app in apps {
            if released.len() == limit {
                break;
            }
            let now = phase_of(app);
            let queue = self.by_app.get_mut(&app).expect("listed above");
            // Tickets and phases rise together, so the due requests are a prefix.
            while released.len() < limit {
                let Some(entry) = queue.first_entry() else {
                    break;
                };
                let held_in = entry.get().held_in;
                if !is_due_for_release(held_in, now) || !may_go(app, held_in, *entry.key()) {
                    break;
                }
                let (ticket, held) = entry.remove_entry();
                self.by_deadline.remove(&(held.deadline, app, ticket));
                released.push((app, ticket, held.request));
            }
            if queue.is_empty() {
                self.by_app.remove(&app);
            }
        }
        self.len -= released.len();
        released
    }

    /// Takes out at most `limit` requests whose deadline has passed, earliest
    /// first.
    pub fn take_expired(&mut self, now: Millis, limit: usize) -> Vec<(AppId, Ticket, R)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, app, ticket)) = self.by_deadline.first() {
            if deadline > now || expired.len() == limit {
                break;
            }
            if let Some(request) = self.forget(app, ticket) {
                expired.push((app, ticket, request));
            }
        }
        expired
    }

    /// Takes out at most `limit` requests whatever their app's phase, each
    /// app's in ticket order: what a worker that is shutting down still holds.
    pub fn take_all(&mut self, limit: usize) -> Vec<(AppId, Ticket, R)> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(mut queue) = self.by_app.first_entry() else {
                break;
            };
            let app = *queue.key();
            let Some((ticket, held)) = queue.get_mut().pop_first() else {
                queue.remove();
                continue;
            };
            if queue.get().is_empty() {
                queue.remove();
            }
            self.by_deadline.remove(&(held.deadline, app, ticket));
            self.len -= 1;
            taken.push((app, ticket, held.request));
        }
        taken
    }

    /// The apps this queue holds requests of.
    pub fn apps(&self) -> impl Iterator<Item = AppId> + '_ {
        self.by_app.keys().copied()
    }

    /// The earliest deadline among the held requests.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.by_deadline.first().map(|&(deadline, _, _)| deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: usize = usize::MAX;
    const SHOP: AppId = AppId(3);
    const BLOG: AppId = AppId(9);

    fn tickets(released: &[(AppId, Ticket, &'static str)]) -> Vec<u64> {
        released.iter().map(|(_, t, _)| t.0).collect()
    }

    #[test]
    fn releases_an_app_in_ticket_order_whatever_the_hold_order() {
        let mut queue = HeldQueue::default();
        for ticket in [4, 1, 3, 0, 2] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        assert!(queue.release_in_order(|_| Phase(1), ALL).is_empty());
        let released = queue.release_in_order(|_| Phase(2), ALL);
        assert_eq!(tickets(&released), [0, 1, 2, 3, 4]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn take_all_empties_the_queue_in_batches_whatever_the_phase() {
        let mut queue = HeldQueue::default();
        for ticket in [2, 0, 1] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 100, "shop");
        }
        queue.hold(BLOG, Ticket(7), Phase(5), 50, "blog");
        let first = queue.take_all(2);
        assert_eq!(tickets(&first), [0, 1]);
        assert_eq!(queue.len(), 2);
        let rest = queue.take_all(ALL);
        assert_eq!(
            rest.iter()
                .map(|(app, t, _)| (*app, t.0))
                .collect::<Vec<_>>(),
            [(SHOP, 2), (BLOG, 7)]
        );
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
        assert!(queue.take_all(ALL).is_empty());
    }

    #[test]
    fn releasing_one_app_leaves_the_others_held() {
        let mut queue = HeldQueue::default();
        queue.hold(SHOP, Ticket(0), Phase(1), 100, "shop");
        queue.hold(BLOG, Ticket(0), Phase(5), 100, "blog");
        let released =
            queue.release_in_order(|app| if app == SHOP { Phase(2) } else { Phase(5) }, ALL);
        assert_eq!(released, [(SHOP, Ticket(0), "shop")]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn requests_of_a_newer_pause_stay_held() {
        let mut queue = HeldQueue::default();
        queue.hold(SHOP, Ticket(0), Phase(1), 100, "old");
        queue.hold(SHOP, Ticket(1), Phase(3), 100, "new");
        let released = queue.release_in_order(|_| Phase(3), ALL);
        assert_eq!(released, [(SHOP, Ticket(0), "old")]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_forgotten_request_does_not_delay_those_behind_it() {
        let mut queue = HeldQueue::default();
        for ticket in 0..4 {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 100 + ticket, "r");
        }
        assert_eq!(queue.forget(SHOP, Ticket(1)), Some("r"));
        assert_eq!(queue.forget(SHOP, Ticket(1)), None);
        assert_eq!(queue.len(), 3);
        assert_eq!(
            tickets(&queue.release_in_order(|_| Phase(2), ALL)),
            [0, 2, 3]
        );
    }

    #[test]
    fn expired_requests_leave_earliest_deadline_first() {
        let mut queue = HeldQueue::default();
        queue.hold(SHOP, Ticket(0), Phase(1), 500, "late");
        queue.hold(SHOP, Ticket(1), Phase(1), 200, "early");
        queue.hold(BLOG, Ticket(0), Phase(1), 300, "blog");
        assert_eq!(queue.next_deadline(), Some(200));
        assert!(queue.take_expired(199, ALL).is_empty());
        let expired = queue.take_expired(300, ALL);
        assert_eq!(
            expired,
            [(SHOP, Ticket(1), "early"), (BLOG, Ticket(0), "blog")]
        );
        assert_eq!(queue.next_deadline(), Some(500));
        assert_eq!(tickets(&queue.release_in_order(|_| Phase(2), ALL)), [0]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_paced_release_lets_the_oldest_go_first() {
        let mut queue = HeldQueue::default();
        for ticket in 0..5 {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        let first_two = |_: AppId, _: Phase, ticket: Ticket| ticket.0 < 2;
        let released = queue.release_in_order_paced(|_| Phase(2), first_two, ALL);
        assert_eq!(tickets(&released), [0, 1]);
        let released = queue.release_in_order_paced(|_| Phase(2), |_, _, _| true, ALL);
        assert_eq!(tickets(&released), [2, 3, 4]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_limited_release_goes_on_in_order_where_it_stopped() {
        let mut queue = HeldQueue::default();
        for ticket in [5, 0, 3, 1, 4, 2] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        queue.hold(BLOG, Ticket(0), Phase(1), 1_000, "r");
        let mut batches = Vec::new();
        loop {
            let batch = queue.release_in_order(|_| Phase(2), 4);
            batches.push(tickets(&batch));
            if batch.len() < 4 {
                break;
            }
        }
        // SHOP (AppId 3) before BLOG (AppId 9), each in ticket order.
        assert_eq!(batches, [vec![0, 1, 2, 3], vec![4, 5, 0]]);
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_limited_expiry_leaves_the_rest_for_later() {
        let mut queue = HeldQueue::default();
        for (ticket, deadline) in [(0, 300), (1, 100), (2, 200)] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), deadline, "r");
        }
        assert_eq!(tickets(&queue.take_expired(300, 2)), [1, 2]);
        assert_eq!(queue.next_deadline(), Some(300));
        assert_eq!(tickets(&queue.take_expired(300, 2)), [0]);
        assert!(queue.release_in_order(|_| Phase(2), 0).is_empty());
    }
}
