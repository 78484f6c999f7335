//! Per-worker-process slots in the shared zone.
//!
//! Everything a worker counts that other processes read (the requests it
//! has in flight, the requests it holds of each app and the lowest ticket it
//! still holds or wakes of each) lives in a slot of its own, never in a
//! counter shared by all workers. A worker that is killed (SIGKILL, the OOM
//! killer, a crash) cannot count anything out; its slot keeps its figures
//! until a live process finds the owner gone and *reclaims* the slot: its
//! held requests are taken off their apps' counts, and its in-flight
//! requests and its place in every app's order simply stop being read.
//!
//! Slot 0 is shared by the workers that found no free slot (more live
//! worker processes than the zone has slots): they count in flight there,
//! with atomic adds, and what a dead one counted there is never reclaimed.
//! They do not publish their place in the order (the slot is not theirs
//! alone), so their requests go in their own order only.
//!
//! **Wake-ups.** A worker that changes what another must act on wakes it
//! (`mark_woken`, then a datagram to the address the owner publishes in its
//! slot). The mark says when the first wake-up it has not looked at yet was
//! sent; the owner clears it at the start of every look at its queue
//! (`take_wake`), so a mark never outlives a look, whatever became of the
//! datagram. A mark older than `order::STALL_BOUND_MS` means the owner does
//! not run (stopped, swapped out, throttled, dead): the others stop waiting
//! for its place in the order (`order_elsewhere`).
//!
//! Safe Rust over atomics. Which processes are alive is the module's
//! question (`is_alive`); the layout in shared memory is `zone_layout`'s.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{AppId, Millis, Ticket};
use crate::in_flight::{AppKey, InFlight, InFlightCounter, InFlightTable, NameKey, NameMemos};
use crate::order::STALL_BOUND_MS;

/// The apps one worker can hold requests of at once with its order and its
/// counts published. The requests of a 33rd app are held all the same, but
/// they take no part in the order across workers, and what they count is
/// not taken back if their worker dies.
pub const HELD_APPS_PER_WORKER: usize = 32;

const FREE: u64 = 0;
/// Being reclaimed by another process, or claimed: not read.
const BUSY: u64 = u64::MAX;
/// Slot 0: shared by workers without a slot of their own.
const SHARED: u64 = u64::MAX - 1;

const NO_TICKET: u64 = u64::MAX;

/// A slot's number in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub u32);

/// The shared slot, for workers that found none of their own.
pub const SHARED_SLOT: SlotId = SlotId(0);

/// One app a worker holds requests of.
#[repr(C)]
#[derive(Debug)]
struct HeldEntry {
    /// `AppId` + 1; 0 while the entry is free.
    app: AtomicU64,
    /// The lowest ticket of the app the worker holds or is still waking:
    /// the other workers release nothing more than the order window past it.
    lowest: AtomicU64,
    /// Requests of the app the worker holds (counted in the app's
    /// `held_now`).
    held: AtomicU64,
}

impl Default for HeldEntry {
    fn default() -> Self {
        HeldEntry {
            app: AtomicU64::new(0),
            lowest: AtomicU64::new(NO_TICKET),
            held: AtomicU64::new(0),
        }
    }
}

/// One worker process's slot.
#[repr(C)]
#[derive(Debug)]
pub struct WorkerSlot {
    /// The owner's pid; `FREE`, `BUSY` or `SHARED`.
    owner: AtomicU64,
    /// What the owner's start time was, to tell it from a later process
    /// that got the same pid (0: unknown).
    started: AtomicU64,
    /// When the first wake-up the owner has not looked at yet was sent
    /// (nginx's monotonic clock, at least 1); 0 when there is none. Further
    /// senders need not send another.
    woken_at: AtomicU64,
    /// Where the owner listens for wake-ups (`wake_channel` in the module:
    /// the abstract name the kernel gave its socket, packed); 0 when it
    /// cannot be woken.
    wake_address: AtomicU64,
    /// How many times the owner has looked at its queue: flat while it only
    /// holds (nothing runs on a clock), for the tests and the metrics.
    passes: AtomicU64,
    held: [HeldEntry; HELD_APPS_PER_WORKER],
    /// Requests in flight, per app (see `in_flight`).
    in_flight: InFlightTable,
}

impl Default for WorkerSlot {
    fn default() -> Self {
        WorkerSlot {
            owner: AtomicU64::new(FREE),
            started: AtomicU64::new(0),
            woken_at: AtomicU64::new(0),
            wake_address: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            held: std::array::from_fn(|_| HeldEntry::default()),
            in_flight: InFlightTable::default(),
        }
    }
}

/// The owner of a claimed slot, as liveness checks need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u64,
    /// 0 when not known.
    pub started: u64,
}

/// What a worker writes in its own slot (or, without one, the shared slot).
impl WorkerSlot {
    /// A request of `app` is let through: counted in flight. Returns the
    /// counter that counts it, for `leave`.
    #[inline]
    pub fn enter(&self, app: AppKey) -> InFlightCounter {
        let own = self.owner.load(Ordering::Relaxed) != SHARED;
        self.in_flight.enter(app, own)
    }

    /// As `enter` for the app named `name` (`secret.app_key(name)`), with
    /// the worker's memos of the names it counted (`NameMemos`).
    #[inline(always)]
    pub fn enter_named(
        &self,
        memos: &mut NameMemos,
        secret: NameKey,
        name: &[u8],
    ) -> InFlightCounter {
        let own = self.owner.load(Ordering::Relaxed) != SHARED;
        self.in_flight.enter_named(memos, secret, name, own)
    }

    /// A request counted by `enter` switched protocols (101): no longer
    /// waited for by drains, counted as upgraded until it ends.
    pub fn upgrade(&self, counter: InFlightCounter) {
        self.in_flight.upgrade(counter);
    }

    /// A request counted by `enter` is finished. Never below zero.
    #[inline]
    pub fn leave(&self, counter: InFlightCounter, upgraded: bool) {
        self.in_flight.leave(counter, upgraded);
    }

    /// Publishes what the worker holds of `app`: how many requests, and the
    /// lowest ticket it holds or wakes (`None`: nothing). False if the slot
    /// has no entry left for another app (the worker then goes on without
    /// publishing it). Only the owner writes its slot.
    pub fn publish(&self, app: AppId, held: u64, lowest: Option<Ticket>) -> bool {
        let key = u64::from(app.0) + 1;
        let entry = self
            .held
            .iter()
            .find(|entry| entry.app.load(Ordering::Relaxed) == key);
        let Some(entry) = entry else {
            if held == 0 && lowest.is_none() {
                return true;
            }
            let Some(free) = self
                .held
                .iter()
                .find(|entry| entry.app.load(Ordering::Relaxed) == 0)
            else {
                return false;
            };
            free.held.store(held, Ordering::Release);
            free.lowest
                .store(lowest.map_or(NO_TICKET, |t| t.0), Ordering::Release);
            free.app.store(key, Ordering::Release);
            return true;
        };
        entry.held.store(held, Ordering::Release);
        entry
            .lowest
            .store(lowest.map_or(NO_TICKET, |t| t.0), Ordering::SeqCst);
        if held == 0 && lowest.is_none() {
            entry.app.store(0, Ordering::Release);
        }
        true
    }

    fn lowest_of(&self, app: AppId) -> Option<Ticket> {
        let key = u64::from(app.0) + 1;
        self.held.iter().find_map(|entry| {
            if entry.app.load(Ordering::Acquire) != key {
                return None;
            }
            let lowest = entry.lowest.load(Ordering::SeqCst);
            // The owner may have given the entry to another app meanwhile.
            (entry.app.load(Ordering::Acquire) == key && lowest != NO_TICKET)
                .then_some(Ticket(lowest))
        })
    }

    fn holds(&self, app: AppId) -> bool {
        let key = u64::from(app.0) + 1;
        self.held
            .iter()
            .any(|entry| entry.app.load(Ordering::Acquire) == key)
    }

    /// Requests in flight in this slot, of every app.
    pub fn in_flight_total(&self) -> InFlight {
        self.in_flight.total()
    }

    /// Marks a wake-up as sent at `now`; true if the owner had none pending,
    /// so the sender must actually send one.
    pub fn mark_woken(&self, now: Millis) -> bool {
        self.woken_at
            .compare_exchange(0, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The wake-up marked at `now` by `mark_woken` could not be sent: the
    /// mark goes, so that the next sender tries again (unless the owner has
    /// looked meanwhile, or another mark replaced it).
    pub fn unmark_woken(&self, now: Millis) {
        let _ = self
            .woken_at
            .compare_exchange(now.max(1), 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The owner looks at its queue: it takes its pending wake-up first, so
    /// whatever changes after this sends a new one. Counts the look.
    pub fn take_wake(&self) {
        self.woken_at.store(0, Ordering::SeqCst);
        self.passes.fetch_add(1, Ordering::Relaxed);
    }

    /// When the owner counts as stalled if it does not look before: the
    /// bound after the first wake-up it has not looked at; `None` with no
    /// wake-up pending.
    pub fn stalls_at(&self) -> Option<Millis> {
        match self.woken_at.load(Ordering::SeqCst) {
            0 => None,
            at => Some(at.saturating_add(STALL_BOUND_MS)),
        }
    }

    /// The owner has not looked at a wake-up for `STALL_BOUND_MS` by `now`.
    pub fn is_stalled(&self, now: Millis) -> bool {
        self.stalls_at().is_some_and(|at| now >= at)
    }

    /// Publishes where the owner listens for wake-ups (0: nowhere).
    pub fn set_wake_address(&self, address: u64) {
        self.wake_address.store(address, Ordering::Release);
    }

    /// Where the owner listens for wake-ups, if anywhere.
    pub fn wake_address(&self) -> Option<u64> {
        Some(self.wake_address.load(Ordering::Acquire)).filter(|&a| a != 0)
    }

    /// How many times the owner has looked at its queue.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    fn owner(&self) -> Option<Owner> {
        match self.owner.load(Ordering::Acquire) {
            FREE | BUSY | SHARED => None,
            pid => Some(Owner {
                pid,
                started: self.started.load(Ordering::Acquire),
            }),
        }
    }

    fn is_read(&self) -> bool {
        !matches!(self.owner.load(Ordering::Acquire), FREE | BUSY)
    }
}

/// The slot table, wherever it lives.
#[derive(Clone, Copy)]
pub struct WorkerSlots<'a> {
    slots: &'a [WorkerSlot],
}

impl<'a> WorkerSlots<'a> {
    /// `slots[0]` becomes the shared slot.
    pub fn new(slots: &'a [WorkerSlot]) -> Self {
        assert!(!slots.is_empty(), "at least the shared slot");
        let _ = slots[0]
            .owner
            .compare_exchange(FREE, SHARED, Ordering::AcqRel, Ordering::Acquire);
        WorkerSlots { slots }
    }

    pub fn get(&self, id: SlotId) -> &'a WorkerSlot {
        &self.slots[id.0 as usize]
    }

    /// Slots a worker can have to itself.
    pub fn capacity(&self) -> usize {
        self.slots.len() - 1
    }

    /// Claims a free slot for the process `owner`; `None` if every slot is
    /// taken (the worker then counts in the shared slot).
    pub fn claim(&self, owner: Owner) -> Option<SlotId> {
        (1..self.slots.len()).find_map(|index| {
            let slot = &self.slots[index];
            slot.owner
                .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .ok()?;
            slot.started.store(owner.started, Ordering::Release);
            slot.woken_at.store(0, Ordering::Release);
            slot.wake_address.store(0, Ordering::Release);
            slot.owner.store(owner.pid, Ordering::Release);
            Some(SlotId(index as u32))
        })
    }

    /// The owners of the claimed slots (not the shared one), for liveness
    /// checks and for waking every worker.
    pub fn owners(&self) -> impl Iterator<Item = (SlotId, Owner)> + 'a {
        let slots = self.slots;
        (1..slots.len())
            .filter_map(move |index| Some((SlotId(index as u32), slots[index].owner()?)))
    }

    /// Gives a slot back: what its owner held is taken off its apps' counts
    /// (`forget_held(app, requests)`), its in-flight counts and its place in
    /// every order are dropped, and the slot is free again. `owner` must be
    /// the slot's owner: a worker leaving, or one found dead by another
    /// process. Exactly one caller reclaims a given owner's slot; false for
    /// the others.
    pub fn reclaim(
        &self,
        id: SlotId,
        owner: Owner,
        mut forget_held: impl FnMut(AppId, u64),
    ) -> bool {
        let Some(slot) = self.slots.get(id.0 as usize).filter(|_| id != SHARED_SLOT) else {
            return false;
        };
        if slot
            .owner
            .compare_exchange(owner.pid, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        for entry in &slot.held {
            let key = entry.app.swap(0, Ordering::AcqRel);
            let held = entry.held.swap(0, Ordering::AcqRel);
            entry.lowest.store(NO_TICKET, Ordering::Release);
            if key != 0 && held != 0 {
                forget_held(AppId((key - 1) as u32), held);
            }
        }
        slot.in_flight.clear();
        slot.started.store(0, Ordering::Relaxed);
        slot.woken_at.store(0, Ordering::Relaxed);
        slot.wake_address.store(0, Ordering::Relaxed);
        slot.owner.store(FREE, Ordering::Release);
        true
    }

    /// `app`'s requests in flight, in every slot still read (a dead
    /// worker's count until its slot is reclaimed).
    pub fn in_flight(&self, app: AppKey) -> InFlight {
        let mut total = InFlight::default();
        for slot in self.slots.iter().filter(|slot| slot.is_read()) {
            total += slot.in_flight.count(app);
        }
        total
    }

    /// The lowest ticket of `app` that a worker other than `me` still holds
    /// or wakes, and that worker's slot: the order window starts there.
    /// Workers stalled at `now` (see `is_stalled`) have lost their
    /// precedence and are not counted; their requests go when they run
    /// again.
    pub fn order_elsewhere(&self, app: AppId, me: SlotId, now: Millis) -> Option<(Ticket, SlotId)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(index, slot)| {
                index != me.0 as usize && slot.owner().is_some() && !slot.is_stalled(now)
            })
            .filter_map(|(index, slot)| Some((slot.lowest_of(app)?, SlotId(index as u32))))
            .min()
    }

    /// `order_elsewhere`'s ticket alone.
    pub fn lowest_elsewhere(&self, app: AppId, me: SlotId, now: Millis) -> Option<Ticket> {
        self.order_elsewhere(app, me, now).map(|(ticket, _)| ticket)
    }

    /// Release passes of every worker with a slot, the shared slot's
    /// workers' included.
    pub fn passes(&self) -> u64 {
        self.slots.iter().map(WorkerSlot::passes).sum()
    }

    /// The slots other than `me` whose owner holds (or wakes) requests of
    /// `app`: the workers to wake when this one's place in the order moves.
    pub fn holders_of(&self, app: AppId, me: SlotId) -> impl Iterator<Item = SlotId> + 'a {
        let slots = self.slots;
        (1..slots.len())
            .filter(move |&index| index != me.0 as usize)
            .filter(move |&index| slots[index].owner().is_some() && slots[index].holds(app))
            .map(|index| SlotId(index as u32))
    }

    /// The slots other than `me` whose owner has stalled by `now` (see
    /// `WorkerSlot::is_stalled`).
    pub fn stalled(&self, me: SlotId, now: Millis) -> impl Iterator<Item = SlotId> + 'a {
        let slots = self.slots;
        self.owners()
            .map(|(slot, _)| slot)
            .filter(move |&slot| slot != me && slots[slot.0 as usize].is_stalled(now))
    }

    /// Whether the owner of `slot` holds (or wakes) requests of `app`.
    pub fn holds(&self, slot: SlotId, app: AppId) -> bool {
        self.slots
            .get(slot.0 as usize)
            .is_some_and(|s| s.holds(app))
    }

    /// The owner of `id`, if it is claimed.
    pub fn owner_of(&self, id: SlotId) -> Option<Owner> {
        self.slots.get(id.0 as usize)?.owner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_flight::NameKey;

    fn slots(n: usize) -> Vec<WorkerSlot> {
        (0..n).map(|_| WorkerSlot::default()).collect()
    }

    const A: Owner = Owner {
        pid: 100,
        started: 7,
    };
    const B: Owner = Owner {
        pid: 200,
        started: 8,
    };
    const SHOP: AppId = AppId(5);
    const BLOG: AppId = AppId(6);

    #[test]
    fn workers_claim_their_own_slots_until_there_are_none() {
        let memory = slots(3);
        let table = WorkerSlots::new(&memory);
        assert_eq!(table.capacity(), 2);
        let a = table.claim(A).unwrap();
        let b = table.claim(B).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, SHARED_SLOT);
        assert_eq!(
            table.claim(Owner {
                pid: 300,
                started: 0
            }),
            None
        );
        let mut owners: Vec<_> = table.owners().collect();
        owners.sort_by_key(|(id, _)| *id);
        assert_eq!(owners, [(a, A), (b, B)]);
        assert_eq!(table.owner_of(SHARED_SLOT), None);
    }

    #[test]
    fn in_flight_is_the_sum_of_every_slot_and_a_reclaimed_slot_drops_out() {
        let memory = slots(4);
        let table = WorkerSlots::new(&memory);
        let a = table.claim(A).unwrap();
        let b = table.claim(B).unwrap();
        let shop = NameKey([7, 9]).app_key(b"shop");
        table.get(a).enter(shop);
        table.get(a).enter(shop);
        let counted_by_b = table.get(b).enter(shop);
        table.get(SHARED_SLOT).enter(shop);
        assert_eq!(table.in_flight(shop).requests, 4);
        table.get(b).leave(counted_by_b, false);
        table.get(b).leave(counted_by_b, false);
        assert_eq!(table.in_flight(shop).requests, 3, "never below zero");
        // A dies with two in flight: they count until its slot is reclaimed.
        assert!(table.reclaim(a, A, |_, _| panic!("held nothing")));
        assert!(!table.reclaim(a, A, |_, _| ()), "only once");
        assert_eq!(table.in_flight(shop).requests, 1);
        // The slot is free, and starts from zero for its next owner.
        let c = table
            .claim(Owner {
                pid: 300,
                started: 1,
            })
            .unwrap();
        assert_eq!(c, a);
        assert_eq!(table.in_flight(shop).requests, 1);
    }

    #[test]
    fn a_reclaimed_slot_gives_back_what_its_owner_held() {
        let memory = slots(3);
        let table = WorkerSlots::new(&memory);
        let a = table.claim(A).unwrap();
        assert!(table.get(a).publish(SHOP, 3, Some(Ticket(10))));
        assert!(table.get(a).publish(BLOG, 1, Some(Ticket(2))));
        assert!(table.get(a).publish(BLOG, 0, None), "blog left");
        let mut forgotten = Vec::new();
        assert!(
            !table.reclaim(a, B, |app, n| forgotten.push((app, n))),
            "not B's"
        );
        assert!(table.reclaim(a, A, |app, n| forgotten.push((app, n))));
        assert_eq!(forgotten, [(SHOP, 3)]);
        assert_eq!(table.lowest_elsewhere(SHOP, SHARED_SLOT, 0), None);
    }

    #[test]
    fn the_order_starts_at_the_lowest_ticket_held_elsewhere() {
        let memory = slots(4);
        let table = WorkerSlots::new(&memory);
        let a = table.claim(A).unwrap();
        let b = table.claim(B).unwrap();
        let c = table
            .claim(Owner {
                pid: 300,
                started: 0,
            })
            .unwrap();
        table.get(a).publish(SHOP, 2, Some(Ticket(4)));
        table.get(b).publish(SHOP, 5, Some(Ticket(9)));
        table.get(b).publish(BLOG, 1, Some(Ticket(1)));
        assert_eq!(table.lowest_elsewhere(SHOP, a, 0), Some(Ticket(9)));
        assert_eq!(table.lowest_elsewhere(SHOP, b, 0), Some(Ticket(4)));
        assert_eq!(table.lowest_elsewhere(SHOP, c, 0), Some(Ticket(4)));
        assert_eq!(table.lowest_elsewhere(BLOG, b, 0), None);
        let holders: Vec<_> = table.holders_of(SHOP, c).collect();
        assert_eq!(holders, [a, b]);
        // A moves on; then it holds nothing more of the shop.
        table.get(a).publish(SHOP, 0, Some(Ticket(6)));
        assert_eq!(table.lowest_elsewhere(SHOP, b, 0), Some(Ticket(6)));
        table.get(a).publish(SHOP, 0, None);
        assert_eq!(table.lowest_elsewhere(SHOP, b, 0), None);
        assert_eq!(table.holders_of(SHOP, c).collect::<Vec<_>>(), [b]);
    }

    #[test]
    fn a_worker_with_more_apps_than_entries_goes_on_unpublished() {
        let memory = slots(2);
        let table = WorkerSlots::new(&memory);
        let a = table.claim(A).unwrap();
        for app in 0..HELD_APPS_PER_WORKER as u32 {
            assert!(table.get(a).publish(AppId(app), 1, Some(Ticket(0))));
        }
        assert!(!table.get(a).publish(AppId(999), 1, Some(Ticket(0))));
        // One app leaves: room again.
        table.get(a).publish(AppId(0), 0, None);
        assert!(table.get(a).publish(AppId(999), 1, Some(Ticket(0))));
    }

    #[test]
    fn a_wake_up_is_sent_once_until_the_owner_takes_it() {
        let memory = slots(2);
        let table = WorkerSlots::new(&memory);
        let a = table.get(table.claim(A).unwrap());
        assert!(a.mark_woken(10));
        assert!(!a.mark_woken(11), "one is on its way");
        a.take_wake();
        assert!(a.mark_woken(12));
        // A send that failed takes its mark back; a later one's stays.
        a.unmark_woken(12);
        assert!(a.mark_woken(13));
        a.unmark_woken(12);
        assert_eq!(a.stalls_at(), Some(13 + STALL_BOUND_MS));
        assert_eq!(a.passes(), 1);
    }

    #[test]
    fn a_worker_that_does_not_look_loses_its_place_in_the_order() {
        let memory = slots(3);
        let table = WorkerSlots::new(&memory);
        let a = table.claim(A).unwrap();
        let b = table.claim(B).unwrap();
        table.get(a).publish(SHOP, 3, Some(Ticket(2)));
        table.get(b).publish(SHOP, 3, Some(Ticket(5)));
        assert_eq!(table.order_elsewhere(SHOP, b, 100), Some((Ticket(2), a)));
        // A is woken at 100 and does not look.
        assert!(table.get(a).mark_woken(100));
        let bound = 100 + STALL_BOUND_MS;
        assert_eq!(
            table.order_elsewhere(SHOP, b, bound - 1),
            Some((Ticket(2), a))
        );
        assert!(table.get(a).is_stalled(bound));
        assert_eq!(
            table.order_elsewhere(SHOP, b, bound),
            None,
            "b goes on alone"
        );
        // A looks again: its place counts again.
        table.get(a).take_wake();
        assert_eq!(
            table.order_elsewhere(SHOP, b, bound + 5),
            Some((Ticket(2), a))
        );
    }

    #[test]
    fn racing_reclaimers_reclaim_once_and_counts_stay_exact() {
        let memory: std::sync::Arc<Vec<WorkerSlot>> = std::sync::Arc::new(slots(3));
        for round in 0..200 {
            let table = WorkerSlots::new(&memory);
            let owner = Owner {
                pid: 1_000 + round,
                started: 1,
            };
            let id = table.claim(owner).unwrap();
            table.get(id).publish(SHOP, 4, Some(Ticket(round)));
            let forgotten = std::sync::Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let memory = memory.clone();
                    let forgotten = forgotten.clone();
                    std::thread::spawn(move || {
                        WorkerSlots::new(&memory).reclaim(id, owner, |_, n| {
                            forgotten.fetch_add(n, Ordering::Relaxed);
                        })
                    })
                })
                .collect();
            let reclaimed = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&done| done)
                .count();
            assert_eq!(reclaimed, 1, "round {round}");
            assert_eq!(forgotten.load(Ordering::Relaxed), 4);
        }
    }
}
