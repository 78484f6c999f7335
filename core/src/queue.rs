//! The requests one worker holds, ordered for release.
//!
//! Each nginx worker keeps its own queue: a request can only be resumed by the
//! process that owns its connection. Requests are kept per app by ticket, so
//! an app's requests leave in arrival order; a second index by deadline lets
//! the worker find requests that reached their maximum hold time without
//! looking at the others.
//!
//! A request released to the upstream is *waking* until its worker has run
//! it on, then *sending* until nginx has written it to its upstream (a new
//! upstream connection is written to once it is open, turns later). The
//! queue remembers those tickets too: until they leave (`leave`), they still
//! count as this worker's place in the app's order (`lowest`), which other
//! workers wait for.
//!
//! Generic over the request handle `R`, so unit tests drive it with plain
//! values; the module stores nginx request pointers in it.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{AppId, Millis, Phase, Ticket};

#[derive(Debug)]
struct HeldRequest<R> {
    request: R,
    held_in: Phase,
    deadline: Millis,
}

#[derive(Debug)]
struct AppQueue<R> {
    held: BTreeMap<Ticket, HeldRequest<R>>,
    waking: BTreeSet<Ticket>,
    sending: BTreeSet<Ticket>,
}

impl<R> Default for AppQueue<R> {
    fn default() -> Self {
        AppQueue {
            held: BTreeMap::new(),
            waking: BTreeSet::new(),
            sending: BTreeSet::new(),
        }
    }
}

impl<R> AppQueue<R> {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.waking.is_empty() && self.sending.is_empty()
    }
}

/// A request taken out of the queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken<R> {
    pub app: AppId,
    pub ticket: Ticket,
    pub held_in: Phase,
    /// Its max time, as held (to hold it again: `hold`).
    pub deadline: Millis,
    pub request: R,
}

#[derive(Debug)]
pub struct HeldQueue<R> {
    by_app: BTreeMap<AppId, AppQueue<R>>,
    by_deadline: BTreeSet<(Millis, AppId, Ticket)>,
    /// Held requests (not those waking).
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
    /// Requests held (not counting those waking).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing held (requests may still be waking).
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
        let previous = self.by_app.entry(app).or_default().held.insert(
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

    /// Takes a held request out of the queue without releasing it (its
    /// client went away). The requests behind it are not affected.
    pub fn forget(&mut self, app: AppId, ticket: Ticket) -> Option<R> {
        self.take(app, ticket).map(|taken| taken.request)
    }

    /// Takes out, oldest first, the requests of `app` that are due at its
    /// phase `now` and that `may_go(held_in, ticket)` lets go, at most
    /// `limit`. Stops at the first one that may not go, so what leaves is
    /// always the oldest. Tickets and phases rise together, so the due
    /// requests are a prefix of the app's queue.
    pub fn take_due(
        &mut self,
        app: AppId,
        now: Phase,
        limit: usize,
        mut may_go: impl FnMut(Phase, Ticket) -> bool,
    ) -> Vec<Taken<R>> {
        let mut taken = Vec::new();
        let Some(queue) = self.by_app.get_mut(&app) else {
            return taken;
        };
        while taken.len() < limit {
            let Some(entry) = queue.held.first_entry() else {
                break;
            };
            let held_in = entry.get().held_in;
            let ticket = *entry.key();
            if !held_in.is_due_at(now) || !may_go(held_in, ticket) {
                break;
            }
            let held = entry.remove();
            self.by_deadline.remove(&(held.deadline, app, ticket));
            taken.push(Taken {
                app,
                ticket,
                held_in,
                deadline: held.deadline,
                request: held.request,
            });
        }
        if queue.is_empty() {
            self.by_app.remove(&app);
        }
        self.len -= taken.len();
        taken
    }

    /// The oldest held request of `app`: its ticket and the phase it was
    /// held in.
    pub fn first(&self, app: AppId) -> Option<(Ticket, Phase)> {
        let (ticket, held) = self.by_app.get(&app)?.held.first_key_value()?;
        Some((*ticket, held.held_in))
    }

    /// Takes a held request out of the queue by its ticket.
    pub fn take(&mut self, app: AppId, ticket: Ticket) -> Option<Taken<R>> {
        let queue = self.by_app.get_mut(&app)?;
        let held = queue.held.remove(&ticket)?;
        if queue.is_empty() {
            self.by_app.remove(&app);
        }
        self.by_deadline.remove(&(held.deadline, app, ticket));
        self.len -= 1;
        Some(Taken {
            app,
            ticket,
            held_in: held.held_in,
            deadline: held.deadline,
            request: held.request,
        })
    }

    /// The held request whose deadline passed first, if one has by `now`.
    pub fn next_expired(&self, now: Millis) -> Option<(AppId, Ticket, &R)> {
        let &(deadline, app, ticket) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        let held = self.by_app.get(&app)?.held.get(&ticket)?;
        Some((app, ticket, &held.request))
    }

    /// The held requests whose deadline has passed by `now`, earliest first.
    pub fn expired(&self, now: Millis) -> impl Iterator<Item = (AppId, Ticket, &R)> + '_ {
        self.by_deadline
            .range(..(now.saturating_add(1), AppId(0), Ticket(0)))
            .filter_map(|&(_, app, ticket)| {
                let held = self.by_app.get(&app)?.held.get(&ticket)?;
                Some((app, ticket, &held.request))
            })
    }

    /// Takes out at most `limit` requests whose deadline has passed, earliest
    /// first.
    pub fn take_expired(&mut self, now: Millis, limit: usize) -> Vec<Taken<R>> {
        let mut expired = Vec::new();
        while expired.len() < limit {
            let Some((app, ticket, _)) = self.next_expired(now) else {
                break;
            };
            expired.extend(self.take(app, ticket));
        }
        expired
    }

    /// Takes out at most `limit` requests whatever their app's phase, each
    /// app's in ticket order: what a worker that is shutting down still holds.
    pub fn take_all(&mut self, limit: usize) -> Vec<Taken<R>> {
        let mut taken = Vec::new();
        let apps: Vec<AppId> = self.apps().collect();
        for app in apps {
            let queue = self.by_app.get_mut(&app).expect("listed above");
            while taken.len() < limit {
                let Some((ticket, held)) = queue.held.pop_first() else {
                    break;
                };
                self.by_deadline.remove(&(held.deadline, app, ticket));
                self.len -= 1;
                taken.push(Taken {
                    app,
                    ticket,
                    held_in: held.held_in,
                    deadline: held.deadline,
                    request: held.request,
                });
            }
            if queue.is_empty() {
                self.by_app.remove(&app);
            }
        }
        taken
    }

    /// A released request of `app` is on its way: until it leaves
    /// (`leave`), it still holds its place in the app's order.
    pub fn mark_waking(&mut self, app: AppId, ticket: Ticket) {
        self.by_app.entry(app).or_default().waking.insert(ticket);
    }

    /// A waking request has been run on: nginx is sending it to its
    /// upstream, and it keeps its place until it leaves. True if it was
    /// waking.
    pub fn mark_sending(&mut self, app: AppId, ticket: Ticket) -> bool {
        let Some(queue) = self.by_app.get_mut(&app) else {
            return false;
        };
        let was_waking = queue.waking.remove(&ticket);
        if was_waking {
            queue.sending.insert(ticket);
        }
        was_waking
    }

    /// A released request gives up its place in the order: its upstream has
    /// it, or never will (it was freed, or took longer than a place is
    /// kept). True if it was waking or sending.
    pub fn leave(&mut self, app: AppId, ticket: Ticket) -> bool {
        let Some(queue) = self.by_app.get_mut(&app) else {
            return false;
        };
        let had_place = queue.waking.remove(&ticket) | queue.sending.remove(&ticket);
        if queue.is_empty() {
            self.by_app.remove(&app);
        }
        had_place
    }

    /// This worker's place in `app`'s order: the lowest ticket it holds or
    /// is still waking or sending. `None` when it has nothing of the app.
    pub fn lowest(&self, app: AppId) -> Option<Ticket> {
        let queue = self.by_app.get(&app)?;
        let held = queue.held.first_key_value().map(|(ticket, _)| *ticket);
        let waking = queue.waking.first().copied();
        let sending = queue.sending.first().copied();
        held.into_iter().chain(waking).chain(sending).min()
    }

    /// The lowest ticket of `app` this worker released and that has not yet
    /// left the order (waking or sending).
    pub fn lowest_on_its_way(&self, app: AppId) -> Option<Ticket> {
        let queue = self.by_app.get(&app)?;
        let waking = queue.waking.first().copied();
        let sending = queue.sending.first().copied();
        waking.into_iter().chain(sending).min()
    }

    /// How many requests of `app` this worker holds (not counting waking).
    pub fn held_of(&self, app: AppId) -> usize {
        self.by_app.get(&app).map_or(0, |queue| queue.held.len())
    }

    /// Requests released and not yet run on, of every app (those sending
    /// have their upstream connection already).
    pub fn waking(&self) -> usize {
        self.by_app.values().map(|queue| queue.waking.len()).sum()
    }

    /// The apps this queue holds (or wakes) requests of.
    pub fn apps(&self) -> impl Iterator<Item = AppId> + '_ {
        self.by_app.keys().copied()
    }

    /// The earliest deadline among the held requests.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.by_deadline.first().map(|&(deadline, _, _)| deadline)
    }

    /// The earliest deadline after `now` among the held requests: those
    /// already past are due now, and wait only for what a pass lacked
    /// (connections, room in its batch), never for a clock.
    pub fn next_deadline_after(&self, now: Millis) -> Option<Millis> {
        self.by_deadline
            .range((now.saturating_add(1), AppId(0), Ticket(0))..)
            .next()
            .map(|&(deadline, _, _)| deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: usize = usize::MAX;
    const SHOP: AppId = AppId(3);
    const BLOG: AppId = AppId(9);

    fn tickets<R>(taken: &[Taken<R>]) -> Vec<u64> {
        taken.iter().map(|t| t.ticket.0).collect()
    }

    fn any(_: Phase, _: Ticket) -> bool {
        true
    }

    #[test]
    fn releases_an_app_in_ticket_order_whatever_the_hold_order() {
        let mut queue = HeldQueue::default();
        for ticket in [4, 1, 3, 0, 2] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        assert!(queue.take_due(SHOP, Phase(1), ALL, any).is_empty());
        let released = queue.take_due(SHOP, Phase(2), ALL, any);
        assert_eq!(tickets(&released), [0, 1, 2, 3, 4]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
        assert_eq!(queue.apps().count(), 0);
    }

    #[test]
    fn the_next_deadline_after_now_skips_those_already_past() {
        let mut queue = HeldQueue::default();
        for (ticket, deadline) in [(0, 100), (1, 100), (2, 250)] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), deadline, "r");
        }
        assert_eq!(queue.next_deadline(), Some(100));
        assert_eq!(queue.next_deadline_after(99), Some(100));
        assert_eq!(queue.next_deadline_after(100), Some(250));
        assert_eq!(queue.next_deadline_after(250), None);
        let taken = queue.take(SHOP, Ticket(2)).unwrap();
        assert_eq!(taken.deadline, 250);
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
            rest.iter().map(|t| (t.app, t.ticket.0)).collect::<Vec<_>>(),
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
        let released = queue.take_due(SHOP, Phase(2), ALL, any);
        assert_eq!(tickets(&released), [0]);
        assert!(queue.take_due(BLOG, Phase(5), ALL, any).is_empty());
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.first(BLOG), Some((Ticket(0), Phase(5))));
    }

    #[test]
    fn requests_of_a_newer_pause_stay_held() {
        let mut queue = HeldQueue::default();
        queue.hold(SHOP, Ticket(0), Phase(1), 100, "old");
        queue.hold(SHOP, Ticket(1), Phase(3), 100, "new");
        let released = queue.take_due(SHOP, Phase(3), ALL, any);
        assert_eq!(tickets(&released), [0]);
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
            tickets(&queue.take_due(SHOP, Phase(2), ALL, any)),
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
        assert_eq!(queue.next_expired(199), None);
        assert_eq!(queue.expired(199).count(), 0);
        assert_eq!(
            queue.expired(200).map(|(_, t, _)| t.0).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(queue.next_expired(200), Some((SHOP, Ticket(1), &"early")));
        let expired = queue.take_expired(300, ALL);
        assert_eq!(
            expired
                .iter()
                .map(|t| (t.app, t.ticket.0, t.request))
                .collect::<Vec<_>>(),
            [(SHOP, 1, "early"), (BLOG, 0, "blog")]
        );
        assert_eq!(queue.next_deadline(), Some(500));
        assert_eq!(tickets(&queue.take_due(SHOP, Phase(2), ALL, any)), [0]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_refused_request_stops_its_app_so_the_oldest_go_first() {
        let mut queue = HeldQueue::default();
        for ticket in 0..5 {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        let first_two = |_: Phase, ticket: Ticket| ticket.0 < 2;
        assert_eq!(
            tickets(&queue.take_due(SHOP, Phase(2), ALL, first_two)),
            [0, 1]
        );
        // Ticket 3 would be allowed, but 2 is not: nothing overtakes it.
        let not_two = |_: Phase, ticket: Ticket| ticket.0 != 2;
        assert!(queue.take_due(SHOP, Phase(2), ALL, not_two).is_empty());
        assert_eq!(
            tickets(&queue.take_due(SHOP, Phase(2), ALL, any)),
            [2, 3, 4]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_limited_release_goes_on_in_order_where_it_stopped() {
        let mut queue = HeldQueue::default();
        for ticket in [5, 0, 3, 1, 4, 2] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        let mut batches = Vec::new();
        loop {
            let batch = queue.take_due(SHOP, Phase(2), 4, any);
            batches.push(tickets(&batch));
            if batch.len() < 4 {
                break;
            }
        }
        assert_eq!(batches, [vec![0, 1, 2, 3], vec![4, 5]]);
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn released_requests_keep_their_place_until_they_leave() {
        let mut queue = HeldQueue::default();
        for ticket in [10, 12, 14] {
            queue.hold(SHOP, Ticket(ticket), Phase(1), 1_000, "r");
        }
        assert_eq!(queue.lowest(SHOP), Some(Ticket(10)));
        for taken in queue.take_due(SHOP, Phase(2), 2, any) {
            queue.mark_waking(SHOP, taken.ticket);
        }
        assert_eq!((queue.len(), queue.waking()), (1, 2));
        assert_eq!(queue.held_of(SHOP), 1);
        assert_eq!(queue.lowest(SHOP), Some(Ticket(10)), "10 is still waking");
        // Run on: sending, no longer waking, still in its place.
        assert!(queue.mark_sending(SHOP, Ticket(10)));
        assert!(!queue.mark_sending(SHOP, Ticket(10)), "once");
        assert_eq!(queue.waking(), 1);
        assert_eq!(queue.lowest(SHOP), Some(Ticket(10)), "10 is still sending");
        assert_eq!(queue.lowest_on_its_way(SHOP), Some(Ticket(10)));
        assert!(queue.leave(SHOP, Ticket(10)));
        assert!(!queue.leave(SHOP, Ticket(10)), "once");
        assert_eq!(queue.lowest(SHOP), Some(Ticket(12)));
        assert_eq!(
            queue.lowest_on_its_way(SHOP),
            Some(Ticket(12)),
            "12 is waking"
        );
        // Freed before it was run on: leaves from waking.
        assert!(queue.leave(SHOP, Ticket(12)));
        assert_eq!(queue.lowest(SHOP), Some(Ticket(14)));
        assert_eq!(queue.lowest_on_its_way(SHOP), None, "14 is held");
        // The last held one leaves while it is still sending: the app stays
        // known until it left.
        let taken = queue.take_due(SHOP, Phase(2), ALL, any);
        queue.mark_waking(SHOP, taken[0].ticket);
        assert!(queue.mark_sending(SHOP, Ticket(14)));
        assert!(queue.is_empty());
        assert_eq!(queue.apps().collect::<Vec<_>>(), [SHOP]);
        assert_eq!(queue.lowest(SHOP), Some(Ticket(14)));
        assert!(queue.leave(SHOP, Ticket(14)));
        assert_eq!(queue.lowest(SHOP), None);
        assert_eq!(queue.apps().count(), 0);
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
        assert!(queue.take_due(SHOP, Phase(2), 0, any).is_empty());
    }
}
