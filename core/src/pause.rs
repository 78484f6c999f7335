//! One app's pause state: the state machine of pause, stop, resume and
//! deadline, over atomics in the shared zone, so that every worker sees the
//! same state without a lock. The paced release's token bucket is in `pace`,
//! the counts of what became of held requests in `counters`; `AppState`
//! holds both and is the one door to them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::counters::SharedCounters;
use crate::ids::{Millis, Phase, Release, Ticket};
use crate::pace::{Backlog, Pace};

use crate::counters::AppCounters;

#[derive(Debug, PartialEq, Eq)]
pub enum PauseOutcome {
    Paused,
    AlreadyPaused,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The app was running: it is stopped (and paused) now.
    StoppedRunning,
    /// The app was paused: it is stopped now, and the requests it holds are
    /// due, to be answered 503.
    StoppedPaused,
    AlreadyStopped,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The pause ended; `held` requests took a ticket while it lasted.
    Resumed {
        held: u64,
    },
    NotPaused,
}

/// The shared pause state of one app. It lives in the shared zone: its
/// fields, in this order, are part of the zone's layout (`layout_stamp`).
#[repr(C)]
#[derive(Debug)]
pub struct AppState {
    phase: AtomicU64,
    next_ticket: AtomicU64,
    /// `next_ticket` when the current (or last) pause began: the number of
    /// requests a pause held is the distance from here to `next_ticket`.
    /// A pause that interrupts a paced release starts at the first ticket
    /// of the backlog that had not had its turn: it holds those again.
    first_ticket_of_pause: AtomicU64,
    /// The phase of the earliest pause whose requests the current (or last)
    /// pause holds: its own, or that of the backlog it interrupted.
    backlog_phase: AtomicU64,
    /// When the current (or last) pause began, on nginx's monotonic clock.
    paused_at: AtomicU64,
    /// When a pause restored from the state file had begun, on the wall
    /// clock (ms since the Unix epoch), since that may be before the
    /// monotonic clock's start (a reboot); 0 for a pause begun here.
    since_wall: AtomicU64,
    /// When the current pause ends by itself: `NO_DEADLINE`, a time, or
    /// `ENDING` once a worker has claimed the ending (so that a deadline
    /// moved at that moment is not lost silently).
    deadline: AtomicU64,
    counters: SharedCounters,
    /// 1 while the current pause is a stop: requests are answered 503
    /// instead of held. Only meaningful while paused.
    stopped: AtomicU64,
    /// When the first request of the current (or last) pause was held, or
    /// `NOT_HELD`; with `longest_wait_done`, the status's longest wait.
    first_held_at: AtomicU64,
    /// The longest wait of the requests of the current (or last) pause that
    /// are no longer held.
    longest_wait_done: AtomicU64,
    /// `next_ticket` at the last stop: requests with an earlier ticket that
    /// were held when it came are answered by it.
    stop_ticket: AtomicU64,
    pace: Pace,
}

const NOT_HELD: u64 = u64::MAX;

const NO_DEADLINE: u64 = 0;
const ENDING: u64 = u64::MAX;

impl Default for AppState {
    fn default() -> Self {
        AppState::new()
    }
}

impl AppState {
    pub const fn new() -> Self {
        AppState {
            phase: AtomicU64::new(0),
            next_ticket: AtomicU64::new(0),
            first_ticket_of_pause: AtomicU64::new(0),
            backlog_phase: AtomicU64::new(1),
            paused_at: AtomicU64::new(0),
            since_wall: AtomicU64::new(0),
            deadline: AtomicU64::new(NO_DEADLINE),
            counters: SharedCounters::new(),
            stopped: AtomicU64::new(0),
            first_held_at: AtomicU64::new(NOT_HELD),
            longest_wait_done: AtomicU64::new(0),
            stop_ticket: AtomicU64::new(0),
            pace: Pace::new(),
        }
    }

    /// The current phase. Acquire pairs with the Release of `pause`/`resume`,
    /// so whatever those wrote before flipping the phase is visible after it.
    pub fn phase(&self) -> Phase {
        Phase(self.phase.load(Ordering::Acquire))
    }

    pub fn is_paused(&self) -> bool {
        self.phase().is_paused()
    }

    /// The current phase, read in the single total order of the pause's and
    /// resume's own steps and of the in-flight counts: a worker that counts
    /// a request in flight and then reads the phase, and a pause that flips
    /// the phase and then reads the counts, cannot both miss the other's
    /// step (so a drain never answers while a request slips through).
    pub fn phase_now(&self) -> Phase {
        Phase(self.phase.load(Ordering::SeqCst))
    }

    /// Pauses with no deadline.
    pub fn pause(&self) -> PauseOutcome {
        self.pause_until(0, None)
    }

    /// Pauses at `now`, to end by itself at `deadline` (see
    /// `end_if_expired`). An app already paused keeps its deadline; a
    /// stopped one becomes a plain pause (it holds new requests again).
    pub fn pause_until(&self, now: Millis, deadline: Option<Millis>) -> PauseOutcome {
        self.stopped.store(0, Ordering::Release);
        self.begin(now, deadline)
    }

    /// Stops the app at `now` (see `StopOutcome`), to end by itself at
    /// `deadline` if it was running; a paused app keeps its deadline.
    pub fn stop_until(&self, now: Millis, deadline: Option<Millis>) -> StopOutcome {
        let began = self.begin(now, deadline) == PauseOutcome::Paused;
        if self.stopped.swap(1, Ordering::AcqRel) == 1 && !began {
            return StopOutcome::AlreadyStopped;
        }
        // Move the phase on within the pause (odd to odd): every request
        // held in it so far (before the stop, or in the moment between the
        // pause and the mark) is due, and the workers answer it 503.
        let moved = self
            .phase
            .fetch_update(Ordering::SeqCst, Ordering::Acquire, |phase| {
                Phase(phase).is_paused().then_some(phase + 2)
            });
        match moved {
            Ok(_) => self
                .stop_ticket
                .store(self.next_ticket.load(Ordering::Acquire), Ordering::Release),
            // Resumed meanwhile: a running app is not stopped.
            Err(_) => self.stopped.store(0, Ordering::Release),
        }
        if began {
            StopOutcome::StoppedRunning
        } else {
            StopOutcome::StoppedPaused
        }
    }

    /// Why a held request whose phase has moved on is let go: its app was
    /// stopped (now, or after it was held: its ticket is older than the last
    /// stop, even if an enable has turned the stop into a pause since), or
    /// resumed.
    pub fn release_reason(&self, ticket: Ticket) -> Release {
        if self.is_stopped() || ticket.0 < self.stop_ticket.load(Ordering::Acquire) {
            Release::Stopped
        } else {
            Release::Resumed
        }
    }

    /// What a request held in `held_in` with `ticket` is due for, now that
    /// its app is in `phase`: `None` while it stays held. Answered 503 if
    /// the app was stopped since it was held. Else it goes to the upstream
    /// only while the app runs: a pause lets nothing through, so a request
    /// that a resume released but that had not gone yet when a new pause
    /// (or an enable turning a stop into a pause) began is held again by
    /// it, and goes when that one ends.
    pub fn due(&self, held_in: Phase, ticket: Ticket, phase: Phase) -> Option<Release> {
        if !held_in.is_due_at(phase) {
            return None;
        }
        match self.release_reason(ticket) {
            Release::Stopped => Some(Release::Stopped),
            _ if phase.is_paused() => None,
            why => Some(why),
        }
    }

    /// True while the app is stopped.
    pub fn is_stopped(&self) -> bool {
        self.is_paused() && self.stopped.load(Ordering::Acquire) == 1
    }

    /// Pauses a running app; a paused one is left as it is.
    fn begin(&self, now: Millis, deadline: Option<Millis>) -> PauseOutcome {
        let mut current = self.phase.load(Ordering::Acquire);
        loop {
            if Phase(current).is_paused() {
                return PauseOutcome::AlreadyPaused;
            }
            // Written before the phase flips: no request takes a ticket while
            // the app runs, so this is exactly where this pause's tickets
            // start, unless it interrupts a paced release: the part of its
            // backlog whose turn has not come is held again, and counts as
            // this pause's (a later paced release takes it first).
            let (first_ticket, backlog_phase) = match self.pace.unreleased(now) {
                Some((first_waiting, phase)) => (
                    first_waiting.min(self.next_ticket.load(Ordering::Acquire)),
                    phase,
                ),
                None => (self.next_ticket.load(Ordering::Acquire), current + 1),
            };
            // Whatever was left of it is this pause's now.
            self.pace.stop();
            self.first_ticket_of_pause
                .store(first_ticket, Ordering::Release);
            self.backlog_phase.store(backlog_phase, Ordering::Release);
            self.first_held_at.store(NOT_HELD, Ordering::Relaxed);
            self.longest_wait_done.store(0, Ordering::Relaxed);
            self.paused_at.store(now, Ordering::Release);
            self.since_wall.store(0, Ordering::Release);
            self.deadline.store(
                deadline.map_or(NO_DEADLINE, |d| d.clamp(1, ENDING - 1)),
                Ordering::Release,
            );
            match self.phase.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return PauseOutcome::Paused,
                Err(seen) => current = seen,
            }
        }
    }

    pub fn resume(&self) -> ResumeOutcome {
        self.end_pause(None)
    }

    /// Ends the pause; with `pace` (now, rate), as a paced release.
    fn end_pause(&self, pace: Option<(Millis, u64)>) -> ResumeOutcome {
        let mut current = self.phase.load(Ordering::Acquire);
        loop {
            if !Phase(current).is_paused() {
                return ResumeOutcome::NotPaused;
            }
            if let Some((now, rate)) = pace {
                // Written before the phase flips, so that no worker sees the
                // resume without its pace.
                self.set_pace(current, now, rate);
            }
            match self.phase.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.stopped.store(0, Ordering::Release);
                    let held = self
                        .next_ticket
                        .load(Ordering::Acquire)
                        .saturating_sub(self.first_ticket_of_pause.load(Ordering::Acquire));
                    return ResumeOutcome::Resumed { held };
                }
                Err(seen) => {
                    if pace.is_some() {
                        self.pace.stop();
                    }
                    current = seen;
                }
            }
        }
    }

    /// Moves the deadline of the current pause (`None`: no deadline).
    /// Returns false if the app is not paused, or its pause is ending.
    pub fn move_deadline(&self, deadline: Option<Millis>) -> bool {
        let new = deadline.map_or(NO_DEADLINE, |d| d.clamp(1, ENDING - 1));
        let mut seen = self.deadline.load(Ordering::Acquire);
        loop {
            if seen == ENDING || !self.is_paused() {
                return false;
            }
            match self.deadline.compare_exchange_weak(
                seen,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // The phase may have moved since the check: only a new pause
                // writes the deadline, and it writes it before pausing, so
                // that pause's own value was replaced; it is re-read here.
                Ok(_) => return self.is_paused(),
                Err(now_seen) => seen = now_seen,
            }
        }
    }

    /// The current pause's deadline, if it has one.
    pub fn deadline(&self) -> Option<Millis> {
        match self.deadline.load(Ordering::Acquire) {
            NO_DEADLINE | ENDING => None,
            deadline => Some(deadline),
        }
    }

    /// When the current (or last) pause began.
    pub fn paused_at(&self) -> Millis {
        self.paused_at.load(Ordering::Acquire)
    }

    /// When a pause restored from the state file began, on the wall clock;
    /// `None` for a pause begun here (see `paused_at`).
    pub fn restored_since(&self) -> Option<Millis> {
        Some(self.since_wall.load(Ordering::Acquire)).filter(|&ms| ms != 0)
    }

    /// Marks the current pause as restored from the state file, begun at
    /// `since` on the wall clock.
    pub fn set_restored_since(&self, since: Millis) {
        self.since_wall.store(since.max(1), Ordering::Release);
    }

    /// Ends the pause if its deadline has passed at `now`. Any worker may
    /// call it at any time; exactly one call ends a given pause, and a
    /// deadline moved before the ending was claimed is respected.
    pub fn end_if_expired(&self, now: Millis) -> Option<ResumeOutcome> {
        if !self.is_paused() {
            return None;
        }
        let deadline = self.deadline.load(Ordering::Acquire);
        if deadline == NO_DEADLINE || deadline == ENDING || now < deadline {
            return None;
        }
        self.deadline
            .compare_exchange(deadline, ENDING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        match self.resume() {
            ResumeOutcome::NotPaused => None,
            resumed => Some(resumed),
        }
    }

    /// Hands out the next ticket of this app: one atomic add, shared by every
    /// worker, so ticket order is arrival order across the whole nginx.
    pub fn take_ticket(&self) -> Ticket {
        Ticket(self.next_ticket.fetch_add(1, Ordering::AcqRel))
    }

    /// Requests held during the current pause so far (or the last one, when
    /// running).
    pub fn held_in_pause(&self) -> u64 {
        self.next_ticket
            .load(Ordering::Acquire)
            .saturating_sub(self.first_ticket_of_pause.load(Ordering::Acquire))
    }
}

/// Paced release (the token bucket is `pace`'s).
impl AppState {
    /// Resumes at `now`, releasing the requests the pause held at most
    /// `rate` per second, oldest first (`may_release`).
    pub fn resume_paced(&self, now: Millis, rate: u64) -> ResumeOutcome {
        self.end_pause(Some((now, rate)))
    }

    /// Paces the release of the pause in `phase`, from `now`. The backlog is
    /// everything the pause holds: its own requests and, if it interrupted
    /// a paced release, the part of that backlog whose turn had not come
    /// (`begin`), which goes first.
    fn set_pace(&self, phase: u64, now: Millis, rate: u64) {
        let backlog = Backlog {
            phases: (self.backlog_phase.load(Ordering::Acquire).min(phase), phase),
            tickets: (
                self.first_ticket_of_pause.load(Ordering::Acquire),
                self.next_ticket.load(Ordering::Acquire),
            ),
        };
        self.pace.start(backlog, now, rate);
    }

    /// Whether a request held in `held_in` with `ticket`, due for release,
    /// may go at `now`: always, unless it is in a paced backlog and its
    /// turn has not come.
    pub fn may_release(&self, held_in: Phase, ticket: Ticket, now: Millis) -> bool {
        self.pace.may_release(held_in, ticket, now)
    }

    /// When a request held in `held_in` with `ticket`, which `may_release`
    /// has just refused at `now`, gets its turn if no request before it
    /// leaves early: the time its worker sets a timer for. `None` if it is
    /// not in a paced backlog.
    pub fn next_turn_at(&self, held_in: Phase, ticket: Ticket, now: Millis) -> Option<Millis> {
        self.pace.next_turn_at(held_in, ticket, now)
    }

    /// A paced release has been set (and not ended): workers holding its
    /// backlog look at it at every check, as time lets more go.
    pub fn has_pace(&self) -> bool {
        self.pace.is_set()
    }

    /// The paced release's rate while some of its backlog may still be
    /// waiting for its turn at `now`.
    pub fn pacing(&self, now: Millis) -> Option<u64> {
        self.pace.rate_while_pacing(now)
    }

    /// A request of the paced backlog (held in `held_in`, with `ticket`)
    /// left at `now` without being released (see `Pace::record_left`).
    pub fn record_left_paced(&self, held_in: Phase, ticket: Ticket, now: Millis) {
        self.pace.record_left(held_in, ticket, now);
    }

    /// Ends a paced release: the rest of its backlog goes at once. True if
    /// one was running at `now`.
    pub fn end_pacing(&self, now: Millis) -> bool {
        let pacing = self.pacing(now).is_some();
        self.pace.stop();
        pacing
    }
}

/// Counting held requests in and out (the counters are `counters`'), and
/// the longest wait.
impl AppState {
    /// Counts a request in as held, unless the app already holds `limit`:
    /// then it counts it as rejected and returns false, atomically.
    pub fn try_record_held(&self, limit: Option<u64>) -> bool {
        self.counters.try_record_held(limit)
    }

    pub fn record_release(&self, why: Release) {
        self.counters.record_release(why);
    }

    pub fn record_client_gone(&self) {
        self.counters.record_client_gone();
    }

    /// A request refused at shutdown without having been held.
    pub fn record_refused_at_shutdown(&self) {
        self.counters.record_refused_at_shutdown();
    }

    /// A request answered 503 because the app is stopped, without having
    /// been held.
    pub fn record_refused_while_stopped(&self) {
        self.counters.record_refused_while_stopped();
    }

    /// A request counted in by `try_record_held` that could not be held after
    /// all (out of memory): it no longer counts (see `record_unheld`).
    pub fn count_out_unheld(&self) {
        self.counters.count_out();
    }

    /// A request of the paused app could not be held, and was answered 503.
    pub fn record_unheld(&self) {
        self.counters.record_unheld();
    }

    /// A request of the paused or stopped app was let through at once,
    /// unheld (an exemption, or no max time).
    pub fn record_bypassed(&self) {
        self.counters.record_bypassed();
    }

    /// Requests counted in by a worker that died without counting them out:
    /// its slot is reclaimed (see `worker_slots`), and they no longer count.
    pub fn forget_held(&self, requests: u64) {
        self.counters.forget_held(requests);
    }

    pub fn counters(&self) -> AppCounters {
        self.counters.read()
    }

    /// A request of the current pause is held at `now`.
    pub fn record_hold_time(&self, now: Millis) {
        let _ = self.first_held_at.compare_exchange(
            NOT_HELD,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A request of the current pause that waited `waited` is no longer held.
    pub fn record_wait(&self, waited: Millis) {
        self.longest_wait_done.fetch_max(waited, Ordering::Relaxed);
    }

    /// The longest wait of the current (or last) pause at `now`: of the
    /// requests no longer held, and, while some are held, of the first one
    /// held (the one that has waited longest, unless it has left: then this
    /// says a little more than the truth, never less).
    pub fn longest_wait(&self, now: Millis) -> Millis {
        let done = self.longest_wait_done.load(Ordering::Relaxed);
        let first = self.first_held_at.load(Ordering::Relaxed);
        if first == NOT_HELD || self.counters.held_now() == 0 {
            return done;
        }
        done.max(now.saturating_sub(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_running() {
        let app = AppState::new();
        assert!(!app.is_paused());
        assert_eq!(app.resume(), ResumeOutcome::NotPaused);
    }

    #[test]
    fn pause_then_resume_counts_the_held_requests() {
        let app = AppState::new();
        assert_eq!(app.pause(), PauseOutcome::Paused);
        assert!(app.is_paused());
        assert_eq!(app.pause(), PauseOutcome::AlreadyPaused);
        for expected in 0..3 {
            assert_eq!(app.take_ticket(), Ticket(expected));
        }
        assert_eq!(app.held_in_pause(), 3);
        assert_eq!(app.resume(), ResumeOutcome::Resumed { held: 3 });
        assert!(!app.is_paused());
        assert_eq!(app.resume(), ResumeOutcome::NotPaused);
    }

    #[test]
    fn tickets_keep_rising_across_pauses_and_counts_restart() {
        let app = AppState::new();
        app.pause();
        app.take_ticket();
        app.take_ticket();
        app.resume();
        app.pause();
        assert_eq!(app.take_ticket(), Ticket(2));
        assert_eq!(app.resume(), ResumeOutcome::Resumed { held: 1 });
    }

    #[test]
    fn a_pause_ends_by_itself_once_at_its_deadline() {
        let app = AppState::new();
        assert_eq!(app.pause_until(1_000, Some(5_000)), PauseOutcome::Paused);
        assert_eq!((app.paused_at(), app.deadline()), (1_000, Some(5_000)));
        assert_eq!(app.end_if_expired(4_999), None);
        app.take_ticket();
        assert_eq!(
            app.end_if_expired(5_000),
            Some(ResumeOutcome::Resumed { held: 1 })
        );
        assert!(!app.is_paused());
        assert_eq!(app.end_if_expired(9_000), None, "only once");
        assert!(
            !app.move_deadline(Some(20_000)),
            "nothing to move once ended"
        );
    }

    #[test]
    fn a_moved_deadline_is_kept_and_none_means_never() {
        let app = AppState::new();
        app.pause_until(0, Some(100));
        assert!(app.move_deadline(Some(500)));
        assert_eq!(app.end_if_expired(200), None);
        assert!(app.move_deadline(None));
        assert_eq!(app.end_if_expired(u64::MAX - 1), None);
        assert_eq!(app.deadline(), None);
        // Pausing again replaces the old deadline; an already paused app
        // keeps its own.
        app.resume();
        app.pause_until(1_000, Some(1_100));
        assert_eq!(
            app.pause_until(1_050, Some(9_999)),
            PauseOutcome::AlreadyPaused
        );
        assert_eq!(app.deadline(), Some(1_100));
        assert!(app.end_if_expired(1_100).is_some());
    }

    #[test]
    fn racing_workers_end_a_pause_exactly_once() {
        let app = std::sync::Arc::new(AppState::new());
        for round in 0..200u64 {
            app.pause_until(round, Some(round + 1));
            let ended: usize = (0..4)
                .map(|_| {
                    let app = app.clone();
                    std::thread::spawn(move || app.end_if_expired(round + 1).is_some())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| usize::from(t.join().unwrap()))
                .sum();
            assert_eq!(ended, 1, "round {round}");
        }
    }

    #[test]
    fn held_now_is_kept_across_pauses_and_a_dead_workers_share_is_taken_back() {
        let app = AppState::new();
        app.pause();
        assert!(app.try_record_held(None));
        assert!(app.try_record_held(None));
        assert!(app.try_record_held(None));
        // Resumed with a paced release: a new pause begins while the backlog
        // is still held; it is not forgotten.
        app.resume();
        app.pause();
        assert_eq!(app.counters().held_now, 3);
        // A worker that held two of them was killed: its slot is reclaimed.
        app.forget_held(2);
        assert_eq!(app.counters().held_now, 1);
        assert!(app.try_record_held(Some(2)), "room for one more");
        assert!(!app.try_record_held(Some(2)));
        app.forget_held(10);
        assert_eq!(app.counters().held_now, 0, "never below zero");
    }

    #[test]
    fn a_stop_answers_what_is_held_and_disable_or_enable_ends_it() {
        let app = AppState::new();
        // Stopping a running app pauses it.
        assert_eq!(app.stop_until(10, Some(100)), StopOutcome::StoppedRunning);
        assert!(app.is_paused() && app.is_stopped());
        assert_eq!(app.deadline(), Some(100));
        assert_eq!(app.stop_until(20, None), StopOutcome::AlreadyStopped);
        // Enable turns it into a plain pause, keeping the deadline.
        assert_eq!(app.pause_until(30, None), PauseOutcome::AlreadyPaused);
        assert!(app.is_paused() && !app.is_stopped());
        assert_eq!(app.deadline(), Some(100));
        // Stopping a paused app makes what it holds due, still paused, and
        // answered by the stop even once an enable has made it a pause.
        let held_in = app.phase();
        let ticket = app.take_ticket();
        assert_eq!(app.release_reason(ticket), Release::Resumed);
        assert_eq!(app.stop_until(40, None), StopOutcome::StoppedPaused);
        assert!(held_in.is_due_at(app.phase()));
        assert!(app.is_paused() && app.is_stopped());
        assert_eq!(app.release_reason(ticket), Release::Stopped);
        app.pause();
        assert_eq!(app.release_reason(ticket), Release::Stopped);
        assert_eq!(app.release_reason(app.take_ticket()), Release::Resumed);
        app.stop_until(45, None);
        // Disable ends it; the next pause is a plain one.
        assert!(matches!(app.resume(), ResumeOutcome::Resumed { .. }));
        assert!(!app.is_stopped());
        app.pause();
        assert!(!app.is_stopped());
        app.resume();
        // A deadline ends a stop too.
        app.stop_until(0, Some(50));
        assert!(app.end_if_expired(50).is_some());
        assert!(!app.is_paused() && !app.is_stopped());
    }

    #[test]
    fn racing_stops_and_resumes_leave_no_running_app_stopped() {
        let app = std::sync::Arc::new(AppState::new());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let app = app.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        match i % 3 {
                            0 => drop(app.stop_until(0, None)),
                            1 => drop(app.pause()),
                            _ => drop(app.resume()),
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        app.resume();
        assert!(!app.is_stopped());
        assert_eq!(app.phase().0 % 2, 0);
    }

    #[test]
    fn the_longest_wait_counts_the_first_held_while_held() {
        let app = AppState::new();
        app.pause_until(1_000, None);
        assert_eq!(app.longest_wait(5_000), 0, "nothing held yet");
        assert!(app.try_record_held(None));
        app.record_hold_time(1_100);
        assert!(app.try_record_held(None));
        app.record_hold_time(1_200);
        assert_eq!(app.longest_wait(1_600), 500);
        app.record_wait(700);
        app.record_release(Release::Resumed);
        app.record_release(Release::Resumed);
        assert_eq!(
            app.longest_wait(9_000),
            700,
            "nothing held: the longest done"
        );
        app.resume();
        app.pause_until(10_000, None);
        assert_eq!(app.longest_wait(11_000), 0, "a new pause starts again");
    }

    #[test]
    fn a_paced_release_lets_rate_per_second_go_oldest_first() {
        let app = AppState::new();
        app.pause_until(0, None);
        let held_in = app.phase();
        let tickets: Vec<Ticket> = (0..10).map(|_| app.take_ticket()).collect();
        assert_eq!(
            app.resume_paced(1_000, 4),
            ResumeOutcome::Resumed { held: 10 }
        );
        assert!(!app.is_paused());
        // Workers look every few milliseconds: so does this test.
        let checked_to = std::cell::Cell::new(1_000);
        let going = |now: Millis| {
            while checked_to.get() < now {
                checked_to.set((checked_to.get() + 10).min(now));
                for &ticket in &tickets {
                    app.may_release(held_in, ticket, checked_to.get());
                }
            }
            tickets
                .iter()
                .filter(|&&t| app.may_release(held_in, t, now))
                .count()
        };
        assert_eq!(going(1_000), 1, "the first at once");
        assert_eq!(going(1_499), 2);
        assert_eq!(going(2_000), 5, "1 + 4 per second");
        assert_eq!(app.pacing(2_000), Some(4));
        // Two whose turn had come leave: two more may go in their place.
        app.record_left_paced(held_in, tickets[0], 2_000);
        app.record_left_paced(held_in, tickets[1], 2_000);
        assert_eq!(going(2_000), 7);
        // One whose turn has not come leaves: nothing goes early.
        app.record_left_paced(held_in, tickets[9], 2_000);
        assert_eq!(going(2_000), 7);
        assert_eq!(going(3_000), 10);
        assert_eq!(app.pacing(3_000), None, "all of the backlog may go");
        // Requests of another pause are not paced.
        app.pause_until(3_000, None);
        let later = app.take_ticket();
        assert!(app.may_release(app.phase(), later, 3_000));
        // A plain disable ends the pacing.
        app.resume();
        let app = AppState::new();
        app.pause();
        let held_in = app.phase();
        let tickets: Vec<Ticket> = (0..3).map(|_| app.take_ticket()).collect();
        app.resume_paced(0, 1);
        assert!(!app.may_release(held_in, tickets[2], 0));
        // Workers that fell behind get at most a burst of turns at once.
        assert!(app.may_release(held_in, tickets[1], 60_000));
        assert!(!app.may_release(held_in, tickets[2], 60_000));
        assert!(app.end_pacing(0));
        assert!(app.may_release(held_in, tickets[2], 0));
        assert!(!app.end_pacing(0));
    }

    #[test]
    fn the_next_turn_of_a_paced_request_is_when_the_rate_reaches_it() {
        let app = AppState::new();
        app.pause_until(0, None);
        let held_in = app.phase();
        let tickets: Vec<Ticket> = (0..5).map(|_| app.take_ticket()).collect();
        app.resume_paced(1_000, 4);
        assert!(app.may_release(held_in, tickets[0], 1_000));
        assert!(!app.may_release(held_in, tickets[1], 1_000));
        // One every 250 ms: the second at 1,250, the fifth at 2,000.
        assert_eq!(app.next_turn_at(held_in, tickets[1], 1_000), Some(1_250));
        assert_eq!(app.next_turn_at(held_in, tickets[4], 1_000), Some(2_000));
        assert!(!app.may_release(held_in, tickets[1], 1_249));
        assert!(app.may_release(held_in, tickets[1], 1_250));
        // One that left early moves the turns of those behind it forward.
        app.record_left_paced(held_in, tickets[1], 1_250);
        assert_eq!(app.next_turn_at(held_in, tickets[4], 1_250), Some(1_750));
        // Never in the past, and none for a request that is not paced.
        assert_eq!(app.next_turn_at(held_in, tickets[2], 9_000), Some(9_001));
        app.pause_until(2_000, None);
        assert_eq!(
            app.next_turn_at(app.phase(), app.take_ticket(), 2_000),
            None
        );
    }

    #[test]
    fn a_pause_during_a_paced_release_holds_its_backlog_and_paces_it_first() {
        let app = AppState::new();
        let may = |pause, tickets: &[Ticket], now| {
            tickets
                .iter()
                .filter(|&&t| app.may_release(pause, t, now))
                .count()
        };
        app.pause_until(0, None);
        let first_pause = app.phase();
        let first: Vec<Ticket> = (0..100).map(|_| app.take_ticket()).collect();
        app.resume_paced(0, 1);
        assert_eq!(may(first_pause, &first, 1_000), 2);
        app.pause_until(1_000, None);
        let second_pause = app.phase();
        let second: Vec<Ticket> = (0..3).map(|_| app.take_ticket()).collect();
        assert!(
            first
                .iter()
                .all(|&t| app.due(first_pause, t, app.phase()).is_none()),
            "the new pause holds the rest of the backlog again"
        );
        assert_eq!(app.held_in_pause(), 98 + 3, "and counts it");
        app.resume_paced(2_000, 1);
        assert_eq!(
            may(first_pause, &first, 2_000),
            3,
            "the first backlog keeps its pace"
        );
        assert_eq!(may(second_pause, &second, 2_000), 0, "behind it");
        assert_eq!(may(first_pause, &first, 3_000), 4);
        assert_eq!(app.pacing(3_000), Some(1));
    }

    #[test]
    fn nothing_goes_upstream_while_paused_and_a_stop_answers_at_once() {
        let app = AppState::new();
        app.pause();
        let held_in = app.phase();
        let ticket = app.take_ticket();
        assert_eq!(app.due(held_in, ticket, app.phase()), None, "held");
        app.resume();
        assert_eq!(
            app.due(held_in, ticket, app.phase()),
            Some(Release::Resumed)
        );
        // Paused again before it went: held again, until the next resume.
        app.pause();
        assert_eq!(app.due(held_in, ticket, app.phase()), None);
        app.stop_until(0, None);
        assert_eq!(
            app.due(held_in, ticket, app.phase()),
            Some(Release::Stopped),
            "a stop answers what is held, old or new"
        );
    }

    #[test]
    fn a_request_held_as_its_app_was_being_stopped_never_slips_through() {
        let app = AppState::new();
        // A request reads the phase just as a stop of the running app has
        // paused it, but before it is marked stopped: it decides to hold,
        // and takes its ticket after the stop is complete.
        let seen_by_request = Phase(app.phase().0 + 1);
        app.stop_until(0, None);
        let ticket = app.take_ticket();
        assert_eq!(
            app.due(seen_by_request, ticket, app.phase()),
            Some(Release::Stopped)
        );
        // An enable turns the stop into a pause before its worker looked:
        // the request is held by that pause, not let through as resumed.
        app.pause();
        assert!(app.is_paused() && !app.is_stopped());
        assert_eq!(app.due(seen_by_request, ticket, app.phase()), None);
        app.resume();
        assert_eq!(
            app.due(seen_by_request, ticket, app.phase()),
            Some(Release::Resumed)
        );
    }

    #[test]
    fn a_plain_resume_after_an_interrupted_paced_release_releases_all_at_once() {
        let app = AppState::new();
        app.pause_until(0, None);
        let first_pause = app.phase();
        let first: Vec<Ticket> = (0..30).map(|_| app.take_ticket()).collect();
        app.resume_paced(0, 5);
        app.pause_until(1_000, None);
        assert_eq!(app.pacing(1_000), None, "the pace ended with the pause");
        app.resume();
        assert!(first.iter().all(|&t| {
            app.due(first_pause, t, app.phase()) == Some(Release::Resumed)
                && app.may_release(first_pause, t, 1_000)
        }));
    }

    #[test]
    fn a_request_is_due_once_the_phase_moves_even_if_paused_again() {
        let app = AppState::new();
        app.pause();
        let held_in = app.phase();
        assert!(!held_in.is_due_at(app.phase()));
        app.resume();
        assert!(held_in.is_due_at(app.phase()));
        app.pause();
        assert!(app.is_paused());
        assert!(held_in.is_due_at(app.phase()));
    }

    #[test]
    fn concurrent_pause_and_resume_keep_the_phase_consistent() {
        let app = std::sync::Arc::new(AppState::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let app = app.clone();
                std::thread::spawn(move || {
                    let (mut paused, mut resumed) = (0u64, 0u64);
                    for _ in 0..10_000 {
                        if app.pause() == PauseOutcome::Paused {
                            paused += 1;
                        }
                        if let ResumeOutcome::Resumed { .. } = app.resume() {
                            resumed += 1;
                        }
                    }
                    (paused, resumed)
                })
            })
            .collect();
        let (paused, resumed) = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        // Each successful transition moves the phase by exactly one.
        assert_eq!(app.phase().0, paused + resumed);
        assert_eq!(paused, resumed + app.phase().0 % 2);
    }
}
