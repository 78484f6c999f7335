//! The engine and the other workers: what this one publishes of its place in
//! each app's order, waking the others when something they must act on
//! changes, and noticing those that stall or die.

use nginx_sys::NGX_LOG_NOTICE;
use ngx::ngx_log_error;

use super::wake_channel::Sent;
use super::Engine;
use crate::nginx;
use intermission_core::ids::{AppId, Millis};
use intermission_core::order::STALL_BOUND_MS;
use intermission_core::settings::AppLabel;
use intermission_core::worker_slots::SlotId;

/// The least time between two looks for dead workers made for status,
/// metrics and drains.
pub(super) const RECLAIM_CHECK_EVERY_MS: Millis = 200;

impl Engine {
    /// Publishes the figures of the apps that changed, and wakes the workers
    /// waiting behind this one's place in an app's order when it moved on.
    pub(super) fn publish_dirty(&mut self, now: Millis) {
        let me = self.membership.me;
        for app in std::mem::take(&mut self.dirty) {
            let lowest = self.queue.lowest(app);
            let held = self.queue.held_of(app) as u64;
            if self.membership.has_own_slot() {
                // With no entry left the app goes unpublished (see
                // `worker_slots`): the worker still releases it.
                let _ = self.membership.slot().publish(app, held, lowest);
            }
            let before = match lowest {
                Some(lowest) => self.published.insert(app, lowest),
                None => self.published.remove(&app),
            };
            let moved_on = match (before, lowest) {
                (Some(before), Some(now)) => now > before,
                (Some(_), None) => true,
                _ => false,
            };
            if moved_on {
                let holders: Vec<SlotId> = self.membership.slots.holders_of(app, me).collect();
                for slot in holders {
                    self.wake(slot, now);
                }
            }
        }
    }

    /// Wakes every other worker that has a slot.
    pub(super) fn wake_all(&mut self, now: Millis) {
        let me = self.membership.me;
        let others: Vec<SlotId> = self
            .membership
            .slots
            .owners()
            .map(|(slot, _)| slot)
            .filter(|&slot| slot != me)
            .collect();
        for slot in others {
            self.wake(slot, now);
        }
    }

    /// Wakes the worker of `slot`, unless a wake-up it has not looked at is
    /// pending. The mark stays until it looks (a worker that cannot be
    /// woken looks on a timer), so a worker that does not look is seen
    /// stalled; a wake-up that could not be sent takes its mark back, so
    /// that the next sender tries again, and suggests its owner is gone.
    pub(super) fn wake(&mut self, slot: SlotId, now: Millis) {
        let target = self.membership.slots.get(slot);
        if !self.channel.sends() || !target.mark_woken(now) {
            return;
        }
        let Some(address) = target.wake_address() else {
            return;
        };
        if self.channel.send(address) == Sent::Failed {
            target.unmark_woken(now);
            self.suspect_dead = true;
            self.next_pass.post();
        }
    }

    /// This worker's pass stopped at `slot`'s place in `app`'s order: that
    /// worker is asked to look (a worker that runs does so at once), and
    /// the time it counts as stalled if it does not is returned (when this
    /// one looks again).
    pub(super) fn wait_for(&mut self, slot: SlotId, now: Millis) -> Option<Millis> {
        self.wake(slot, now);
        self.membership.slots.get(slot).stalls_at()
    }

    /// Says, once per stall, which workers holding requests of `app` have
    /// stopped looking: the others now release past their place. One that
    /// is dead is reclaimed.
    pub(super) fn note_stalled(&mut self, app: AppId, now: Millis) {
        let me = self.membership.me;
        let slots = self.membership.slots;
        let stalled: Vec<SlotId> = slots
            .stalled(me, now)
            .filter(|&slot| slots.holds(slot, app))
            .collect();
        let mut new = false;
        for slot in stalled {
            if !self.stalled_seen.insert(slot) {
                continue;
            }
            new = true;
            if let Some(owner) = slots.owner_of(slot) {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    nginx::cycle_log(),
                    "intermission: worker process {} has not looked at its wake-up for {} ms: \
                     releasing {} past its place in the order; its own requests go when it runs \
                     again",
                    owner.pid,
                    STALL_BOUND_MS,
                    AppLabel(&self.table.name(app))
                );
            }
        }
        if new {
            self.reclaim_dead_if_due(now, RECLAIM_CHECK_EVERY_MS);
        }
    }

    /// Forgets the stalls of workers that look again.
    pub(super) fn forget_recovered(&mut self, now: Millis) {
        let slots = self.membership.slots;
        self.stalled_seen
            .retain(|&slot| slots.get(slot).is_stalled(now));
    }

    /// Reclaims the slots of dead workers if the last look is at least
    /// `every` old; wakes everyone if it did.
    pub(super) fn reclaim_dead_if_due(&mut self, now: Millis, every: Millis) {
        if self
            .last_reclaim_check
            .is_some_and(|last| now < last + every.max(1))
        {
            return;
        }
        self.last_reclaim_check = Some(now);
        if self.membership.reclaim_dead(self.table, nginx::cycle_log()) > 0 {
            self.wake_all(now);
            self.next_pass.post();
        }
    }
}
