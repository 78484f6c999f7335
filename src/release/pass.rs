//! One pass of the release engine: a look at the worker's queue that lets go
//! what may go now, in steps.
//!
//! 1. shutdown: an exiting worker that nothing carries on answers all;
//! 2. per app, in turn: a pause past its deadline ends; a stop's requests
//!    are answered; a resume's go upstream, in ticket order, as far as the
//!    order across workers, a paced release and the connections allow;
//! 3. requests past their max time, earliest first;
//! 4. the next look: this turn or the next, the end of a request, or the
//!    timer (`arm_timer`).

use std::sync::atomic::Ordering;

use super::shutdown::Exit;
use super::{count_in_flight, end_expired_pause, uncount_in_flight, Engine, Going, STARVED};
use crate::module;
use crate::nginx::{self, HttpRequest};
use crate::release::HoldContext;
use crate::test_probe::{self, Point};
use intermission_core::budget::{Budget, Spent};
use intermission_core::decision::after_release;
use intermission_core::ids::{AppId, Millis, Phase, Release, Ticket};
use intermission_core::next_look::NextLook;
use intermission_core::order::{keeps_place_while_sending, Window};
use intermission_core::queue::Taken;

/// The most requests released in one pass (one turn of the event loop).
/// Small: the first answer comes earlier than with larger batches, at the
/// same total time, and the order at the upstream stays tighter with
/// keep-alive (a request that reuses an idle upstream connection overtakes
/// one that opens a new one by up to a batch). Measured with the benchmark
/// (bench/results/results.md).
const RELEASE_BATCH: usize = 16;

/// Why a resumed app's next request did not go.
enum Refusal {
    /// Another worker, which runs, holds a ticket more than the window
    /// before it.
    Order(intermission_core::worker_slots::SlotId),
    /// Its paced turn has not come.
    Pace(Phase, Ticket),
}

impl Engine {
    /// Looks at the queue and takes out what may go now; arranges for the
    /// next look.
    pub(super) fn pass(&mut self, now: Millis) -> Vec<Going> {
        if self.membership.has_own_slot() {
            self.membership.slot().take_wake();
        }
        if std::mem::take(&mut self.suspect_dead) {
            self.reclaim_dead_if_due(now, 0);
        }
        self.forget_recovered(now);
        self.publish_dirty(now);
        let mut going = Vec::new();
        let mut next = NextLook::new(now);

        match self.shutdown_step(now, &mut going) {
            Exit::AnswerAll => {
                self.finish_pass(now, going.len(), next, Spent::default());
                return going;
            }
            Exit::CarriedOn { look_again } => next.at(look_again),
            Exit::Running => {}
        }

        let mut budget = Budget::new(
            nginx::available_connections(),
            self.queue.waking(),
            self.upstream_in_progress,
            RELEASE_BATCH,
        );
        let mut spent = Spent::default();
        let apps: Vec<AppId> = self.queue.apps().collect();
        for app in apps {
            if end_expired_pause(nginx::cycle_log(), self.table, app, now) {
                self.wake_all(now);
            }
            self.stopped_step(app, &mut going);
            self.resumed_step(app, now, &mut budget, &mut spent, &mut next, &mut going);
        }
        self.expired_step(now, &mut budget, &mut spent, &mut going);
        self.finish_pass(now, going.len(), next, spent);
        going
    }

    /// A worker shutting down with nothing to carry the pause on answers
    /// everything it holds (503, `Retry-After`).
    fn shutdown_step(&mut self, now: Millis, going: &mut Vec<Going>) -> Exit {
        let exit = self
            .shutdown
            .plan(self.header, self.follows_state_file, self.queue.len(), now);
        if exit == Exit::AnswerAll {
            for taken in self.queue.take_all(usize::MAX) {
                self.dirty.insert(taken.app);
                going.push(Going {
                    taken,
                    why: Release::ShuttingDown,
                    counted: None,
                });
            }
        }
        exit
    }

    /// A stopped app's requests are answered 503 at once, whatever the
    /// order or the connections.
    fn stopped_step(&mut self, app: AppId, going: &mut Vec<Going>) {
        let state = self.table.state(app);
        let phase = state.phase();
        let stopped = self
            .queue
            .take_due(app, phase, usize::MAX, |held_in, ticket| {
                state.due(held_in, ticket, phase) == Some(Release::Stopped)
            });
        for taken in stopped {
            self.dirty.insert(app);
            going.push(Going {
                taken,
                why: Release::Stopped,
                counted: None,
            });
        }
    }

    /// A resumed app's requests go upstream, oldest first, as far as the
    /// order across workers, its paced release and the budget allow.
    fn resumed_step(
        &mut self,
        app: AppId,
        now: Millis,
        budget: &mut Budget,
        spent: &mut Spent,
        next: &mut NextLook,
        going: &mut Vec<Going>,
    ) {
        let state = self.table.state(app);
        let phase = state.phase();
        let (taken, refused) = self.take_resumed(app, phase, now, budget.room());
        // Counted in flight first, then the phase read again: a pause that
        // began meanwhile either counts them (its drain waits for them) or
        // is seen here, and holds them again.
        let counted: Vec<_> = taken
            .iter()
            .map(|t| {
                let counted = count_in_flight(&t.request);
                test_probe::delay_if_asked(&t.request, Point::Counted);
                counted
            })
            .collect();
        if !taken.is_empty() && state.phase_now() != phase {
            for (t, counted) in taken.into_iter().zip(counted) {
                uncount_in_flight(counted);
                self.queue
                    .hold(app, t.ticket, t.held_in, t.deadline, t.request);
            }
            self.next_pass.post();
            return;
        }
        budget.spend(taken.len());
        for (taken, counted) in taken.into_iter().zip(counted) {
            self.queue.mark_waking(app, taken.ticket);
            self.upstream_in_progress += 1;
            self.dirty.insert(app);
            going.push(Going {
                taken,
                why: Release::Resumed,
                counted,
            });
        }
        match refused {
            Some(Refusal::Order(slot)) => {
                // Asked to look; if it does not, it loses its place.
                next.at(self.wait_for(slot, now));
            }
            Some(Refusal::Pace(held_in, ticket)) => {
                next.at(state.next_turn_at(held_in, ticket, now));
            }
            None => {
                let still_due = self
                    .queue
                    .first(app)
                    .is_some_and(|(ticket, held_in)| state.due(held_in, ticket, phase).is_some());
                if still_due {
                    spent.merge(budget.spent());
                }
            }
        }
        // Waiting for a stalled worker, or releasing past one: say so.
        self.note_stalled(app, now);
    }

    /// Takes out, oldest first and at most `room`, the requests of `app`
    /// (resumed in `phase`) that the order across workers and its paced
    /// release let go now; and why the next one did not go, if one was
    /// refused.
    fn take_resumed(
        &mut self,
        app: AppId,
        phase: Phase,
        now: Millis,
        room: usize,
    ) -> (Vec<Taken<HttpRequest>>, Option<Refusal>) {
        let state = self.table.state(app);
        let me = self.membership.me;
        let elsewhere = self.membership.slots.order_elsewhere(app, me, now);
        let own = self.queue.lowest_on_its_way(app);
        let mut window = Window::new(elsewhere.map(|(ticket, _)| ticket), own);
        let mut refused = None;
        let taken = self.queue.take_due(app, phase, room, |held_in, ticket| {
            if state.due(held_in, ticket, phase) != Some(Release::Resumed) {
                // Paused again: held by the new pause.
                false
            } else if !window.admits(ticket) {
                // Waiting for another worker asks it to look; for this
                // worker's own requests on their way, the next turn or the
                // timer looks again.
                refused = elsewhere
                    .filter(|&(lowest, _)| Some(lowest) == window.start())
                    .map(|(_, slot)| Refusal::Order(slot));
                false
            } else if !state.may_release(held_in, ticket, now) {
                refused = Some(Refusal::Pace(held_in, ticket));
                false
            } else {
                window.take(ticket);
                true
            }
        });
        (taken, refused)
    }

    /// Requests held for their whole max time, earliest first: answers go
    /// at once, requests that pass on take a connection like others (and
    /// wait for one with the rest of the release).
    fn expired_step(
        &mut self,
        now: Millis,
        budget: &mut Budget,
        spent: &mut Spent,
        going: &mut Vec<Going>,
    ) {
        let expired: Vec<(AppId, Ticket, bool)> = self
            .queue
            .expired(now)
            .map(|(app, ticket, r)| {
                let upstream = r.context::<HoldContext>(module()).is_none_or(|ctx| {
                    after_release(Release::TimedOut, ctx.on_timeout).goes_upstream()
                });
                (app, ticket, upstream)
            })
            .collect();
        for (app, ticket, upstream) in expired {
            if upstream && budget.room() == 0 {
                spent.merge(budget.spent());
                continue;
            }
            let Some(taken) = self.queue.take(app, ticket) else {
                continue;
            };
            if upstream {
                budget.spend(1);
                self.queue.mark_waking(app, ticket);
                self.upstream_in_progress += 1;
            }
            self.dirty.insert(app);
            going.push(Going {
                taken,
                why: Release::TimedOut,
                counted: None,
            });
        }
    }

    /// Released requests that were run on leave the order once nginx has
    /// written them to their upstream, or opened no upstream connection for
    /// them (answered here, proxied through a connection it had, still
    /// reading the client's body), or after `SEND_BOUND_MS`: a request that
    /// needs a new upstream connection is written once the connection is
    /// open, a turn later or more, and had it left as it woke, other workers
    /// could send later tickets meanwhile. Returns whether any left.
    fn retire_sent(&mut self, now: Millis) -> bool {
        let (queue, dirty) = (&mut self.queue, &mut self.dirty);
        let before = self.sending.len();
        self.sending.retain(|&(app, ticket), sending| {
            let connecting = sending.request.connecting_upstream();
            if keeps_place_while_sending(connecting, sending.woke_at, now) {
                return true;
            }
            if queue.leave(app, ticket) {
                dirty.insert(app);
            }
            false
        });
        self.sending.len() != before
    }

    /// Once this pass's requests were taken, lets go of the places of those
    /// sent (the next pass publishes where this worker stands, waking the
    /// workers that wait for it), and arranges the next look: in the next
    /// turn (a full batch, requests waking, places let go), on the end of a
    /// request (no connection left), or by the timer (also every millisecond
    /// while requests are still sending).
    fn finish_pass(&mut self, now: Millis, going: usize, next: NextLook, spent: Spent) {
        self.posted += going;
        // Requests that left the order move this worker's window too: the
        // next turn releases what they held back.
        let retired = self.retire_sent(now);
        if spent.batch || self.queue.waking() > 0 || retired {
            self.next_pass.post_next_turn();
        } else if !self.dirty.is_empty() {
            self.next_pass.post();
        }
        STARVED.store(spent.connections, Ordering::Relaxed);
        self.pass_wants = next.time();
        self.arm_timer(now);
    }
}
