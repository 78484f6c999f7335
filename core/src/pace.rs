//! The paced release of one app (`disable?rate=N`): a token bucket, shared
//! by the workers, that grants the requests of a pause their turns to go.
//!
//! The backlog is the pause's tickets `first_ticket..end_ticket`, held in
//! the phases `phase..=last_phase`. From `started_at` they go oldest first,
//! at most `rate` per second: the first at once, then one turn per
//! `1000 / rate` ms. Turns not taken for a while (the workers were busy) are
//! not all granted at once afterwards, at most a burst of them, so that no
//! second sees much more than `rate`. A request of the backlog that leaves
//! otherwise (client gone, max time) after its turn came gives its turn to
//! the next (`left_early`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{Millis, Phase, Ticket};

/// The pace of one app, inside its `AppState`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Pace {
    /// 0: no paced release.
    rate: AtomicU64,
    /// The pauses whose requests are paced: `phase..=last_phase` (a paced
    /// release that begins before the last one's backlog is out extends it).
    phase: AtomicU64,
    last_phase: AtomicU64,
    first_ticket: AtomicU64,
    end_ticket: AtomicU64,
    started_at: AtomicU64,
    left_early: AtomicU64,
    /// Turns granted so far (high 32 bits), and turns dropped because the
    /// workers fell behind by more than a burst (low 32).
    grant: AtomicU64,
}

/// The requests a paced release lets go: those held in `phases`, with
/// tickets in `tickets`.
pub(crate) struct Backlog {
    pub phases: (u64, u64),
    pub tickets: (u64, u64),
}

/// Turns a paced release may grant at once after the workers fell behind:
/// 50 ms worth, at least one.
fn burst(rate: u64) -> u64 {
    (rate / 20).max(1)
}

const LOW_HALF: u64 = u32::MAX as u64;

impl Pace {
    pub(crate) const fn new() -> Self {
        Pace {
            rate: AtomicU64::new(0),
            phase: AtomicU64::new(0),
            last_phase: AtomicU64::new(0),
            first_ticket: AtomicU64::new(0),
            end_ticket: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            left_early: AtomicU64::new(0),
            grant: AtomicU64::new(0),
        }
    }

    /// Paces `backlog` at `rate` from `now`. The rate is stored last, with
    /// Release: a worker that sees it sees the rest.
    pub(crate) fn start(&self, backlog: Backlog, now: Millis, rate: u64) {
        self.phase.store(backlog.phases.0, Ordering::Relaxed);
        self.first_ticket
            .store(backlog.tickets.0, Ordering::Relaxed);
        self.left_early.store(0, Ordering::Relaxed);
        self.last_phase.store(backlog.phases.1, Ordering::Relaxed);
        self.end_ticket.store(backlog.tickets.1, Ordering::Relaxed);
        self.started_at.store(now, Ordering::Relaxed);
        self.grant.store(0, Ordering::Relaxed);
        self.rate.store(rate.max(1), Ordering::Release);
    }

    /// Ends the pacing, if any: what is left of the backlog goes at once.
    pub(crate) fn stop(&self) {
        self.rate.store(0, Ordering::Release);
    }

    /// A paced release has been set (and not stopped).
    pub(crate) fn is_set(&self) -> bool {
        self.rate.load(Ordering::Acquire) != 0
    }

    /// For a pause that begins at `now` while this release still paces:
    /// the first ticket of the backlog whose turn has not come (the pause
    /// holds those again), and the backlog's first phase. `None` if nothing
    /// of the backlog is still waiting.
    pub(crate) fn unreleased(&self, now: Millis) -> Option<(u64, u64)> {
        self.rate_while_pacing(now)?;
        let first_waiting = self
            .first_ticket
            .load(Ordering::Relaxed)
            .saturating_add(self.allowance(now, true));
        Some((first_waiting, self.phase.load(Ordering::Relaxed)))
    }

    /// Whether a request held in `held_in` is in the paced backlog.
    fn covers(&self, held_in: Phase) -> bool {
        self.rate.load(Ordering::Acquire) != 0
            && (self.phase.load(Ordering::Relaxed)..=self.last_phase.load(Ordering::Relaxed))
                .contains(&held_in.0)
    }

    /// A paced request's place in its backlog.
    fn position(&self, ticket: Ticket) -> u64 {
        ticket
            .0
            .saturating_sub(self.first_ticket.load(Ordering::Relaxed))
    }

    /// How many of the backlog may have gone by `now`: the first at once,
    /// the turns granted since, and those left early. `commit`: grant the
    /// turns earned by now (else only look).
    fn allowance(&self, now: Millis, commit: bool) -> u64 {
        let rate = self.rate.load(Ordering::Acquire);
        let since_start = now.saturating_sub(self.started_at.load(Ordering::Relaxed));
        let left_early = self.left_early.load(Ordering::Relaxed);
        // Every turn earned since the start, at exactly the rate.
        let earned = rate.saturating_mul(since_start) / 1000;
        let mut packed = self.grant.load(Ordering::Acquire);
        loop {
            let (granted, dropped) = (packed >> 32, packed & LOW_HALF);
            let available = earned.saturating_sub(dropped);
            if available <= granted {
                return 1u64.saturating_add(granted).saturating_add(left_early);
            }
            // Turns the workers were too busy to take are dropped past one
            // burst, rather than granted all at once.
            let turns = available.min(granted + burst(rate));
            if !commit {
                return 1u64.saturating_add(turns).saturating_add(left_early);
            }
            let dropped = dropped + (available - turns);
            let next = (turns.min(LOW_HALF) << 32) | dropped.min(LOW_HALF);
            match self.grant.compare_exchange_weak(
                packed,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return 1u64.saturating_add(turns).saturating_add(left_early),
                Err(seen) => packed = seen,
            }
        }
    }

    /// Whether a request held in `held_in` with `ticket` may go at `now`:
    /// always, unless it is in the backlog and its turn has not come.
    pub(crate) fn may_release(&self, held_in: Phase, ticket: Ticket, now: Millis) -> bool {
        !self.covers(held_in) || self.position(ticket) < self.allowance(now, true)
    }

    /// When a request of the backlog refused at `now` gets its turn, if no
    /// request before it leaves early; `None` if it is not in the backlog.
    pub(crate) fn next_turn_at(
        &self,
        held_in: Phase,
        ticket: Ticket,
        now: Millis,
    ) -> Option<Millis> {
        if !self.covers(held_in) {
            return None;
        }
        let rate = self.rate.load(Ordering::Acquire).max(1);
        let dropped = self.grant.load(Ordering::Acquire) & LOW_HALF;
        let left_early = self.left_early.load(Ordering::Relaxed);
        // Its turn comes once the turns earned since the start, less those
        // dropped, reach its place in the backlog less those that left.
        let turns_needed = (self.position(ticket) + dropped).saturating_sub(left_early);
        let since_start = (turns_needed.saturating_mul(1000)).div_ceil(rate);
        let at = self
            .started_at
            .load(Ordering::Relaxed)
            .saturating_add(since_start);
        Some(at.max(now + 1))
    }

    /// The rate, while some of the backlog may still wait for its turn at
    /// `now`.
    pub(crate) fn rate_while_pacing(&self, now: Millis) -> Option<u64> {
        let rate = self.rate.load(Ordering::Acquire);
        let backlog = self
            .end_ticket
            .load(Ordering::Relaxed)
            .saturating_sub(self.first_ticket.load(Ordering::Relaxed));
        (rate != 0 && self.allowance(now, false) < backlog).then_some(rate)
    }

    /// A request of the backlog left at `now` without being released. If
    /// its turn had come, the next one may go in its place. If not, nothing
    /// goes early: its turn passes unused when it comes, which slows the
    /// release a little but never lets more than the rate through.
    pub(crate) fn record_left(&self, held_in: Phase, ticket: Ticket, now: Millis) {
        if self.covers(held_in) && self.position(ticket) < self.allowance(now, false) {
            self.left_early.fetch_add(1, Ordering::Relaxed);
        }
    }
}
