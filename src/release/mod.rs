//! The release engine of one worker process: the requests it holds, and
//! when each may go.
//!
//! Nothing here runs on a clock while requests wait. A worker looks at its
//! queue (a *pass*) only when something happened that may let a request
//! go:
//! - another worker changed an app's state (resume, stop, a paced release,
//!   a deadline moved), or moved its place in an app's order, and woke this
//!   one through the wake-up channel (`wake_channel`);
//! - this worker's own control call, or a request of its own that left;
//! - one of its real deadlines came: the earliest `$intermission_max_time`
//!   of what it holds, a pause's deadline, the next turn of a paced
//!   release (one timer, set to the earliest);
//! - a request it released finished while it was short of connections.
//!
//! **One order across workers.** Tickets come from one counter per app, so
//! they are the arrival order across all workers. Each worker publishes in
//! its slot (`intermission_core::worker_slots`) the lowest ticket of each
//! app it still holds or is still waking; it releases ticket `t` only when
//! `t` is less than `ORDER_WINDOW` (`intermission_core::order`) past the lowest ticket held anywhere else.
//! A ticket counts as released once its request has been run on (its
//! upstream connection is being opened), so the upstream sees the requests
//! of all workers within the window of their arrival order. Tickets that
//! leave otherwise (a client that left, a request answered at its max time,
//! a worker that died) simply stop being the lowest anywhere.
//!
//! **Never stuck.** Answers that need no upstream connection (the 503s of a
//! stop and of shutdown, the 503/504 at max time) go at once. Requests that
//! go upstream go as fast as the worker has connections for, counting the
//! idle keep-alive connections nginx reclaims; when it has none, it goes on
//! as its released requests finish (the log phase wakes it), and with none
//! of its own in progress it lets one go regardless.
//!
//! **Dead workers.** A worker blocked by another's place in the order for a
//! while checks whether that worker is still alive; the worker the master
//! starts in place of a killed one reclaims its slot as it starts. Either
//! way the dead worker's place and counts are dropped and every worker is
//! woken.

mod held;
mod wake_channel;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use nginx_sys::{
    ngx_event_t, ngx_log_t, ngx_shm_zone_t, NGX_LOG_ALERT, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::HttpModuleMainConf;
use ngx::log::DebugMask;
use ngx::{ngx_log_debug, ngx_log_error};

use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest, WatchedSocket, WorkerEvent};
use crate::worker_slot::{counting_slot, Membership};
use crate::zone::{self, ZoneLock};
use crate::{module, IntermissionModule};
pub use held::{report_outcome, report_ticket, report_wait, HoldContext};
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::decision::after_release;
use intermission_core::ids::{AppId, Millis, Phase, Release, Ticket};
use intermission_core::order::within_window;
use intermission_core::outcome::{Counted, Outcome};
use intermission_core::queue::{HeldQueue, Taken};
use intermission_core::settings::{AppLabel, OnTimeout, Seconds};
use intermission_core::worker_slots::SlotId;
use wake_channel::{Sent, WakeChannel};

/// The most requests released in one pass (one turn of the event loop).
/// Measured with 10,000 held (`intermission-bench one`, two runs each):
/// batches of 16 answered the first request 2-10 ms after the resume and
/// the last as soon as batches of 64 did (1.2-1.4 s on one worker against
/// 1.6 s; 0.6-0.7 s on 2 and 4 workers with upstream keep-alive), and kept
/// the order at the upstream tighter with keep-alive: a released request
/// that reuses an idle upstream connection overtakes one that must open a
/// new one, by up to a batch (19-36 places against 46-74 with 64).
const RELEASE_BATCH: usize = 16;

/// A worker blocked this long by another worker's place in the order checks
/// whether that worker is alive (a killed worker that the master does not
/// replace, such as an old one after a reload, wakes no one).
const BLOCKED_CHECK_MS: Millis = 500;

/// The least time between two looks for dead workers made for status,
/// metrics and drains.
const RECLAIM_CHECK_EVERY_MS: Millis = 200;

/// Without a wake-up channel (no free slot, or no socket), a worker that
/// holds requests looks at the zone this often instead.
const UNWAKEABLE_CHECK_MS: Millis = 50;

/// The worker released what it could and is short of connections: the end
/// of any of its requests should run a pass. Read on every request's log
/// phase, so a plain flag.
static STARVED: AtomicBool = AtomicBool::new(false);

struct Engine {
    zone: &'static ngx_shm_zone_t,
    header: &'static TableHeader,
    table: AppTable<'static>,
    membership: Membership,
    queue: HeldQueue<HttpRequest>,
    /// The lowest ticket of each app last published in the slot.
    published: BTreeMap<AppId, Ticket>,
    /// Apps whose published figures may be stale.
    dirty: BTreeSet<AppId>,
    /// The earliest real deadline.
    timer: WorkerEvent,
    /// A pass later in this turn, or in the next.
    later: WorkerEvent,
    channel: Option<WakeChannel>,
    /// The last pass stopped at another worker's place in an app's order.
    blocked_since: Option<Millis>,
    /// Requests this worker released to the upstream that nginx has not
    /// freed yet: each will free connections as it ends.
    upstream_in_progress: usize,
    /// Requests let go whose write event has not run yet (for any reason).
    /// While there are some, the timer stays set: a worker that is shutting
    /// down exits once it has no timer left, and nginx before 1.23 checks
    /// that before it runs the events posted in the same turn.
    posted: usize,
    /// A wake-up found no one listening: its owner may be gone.
    suspect_dead: bool,
    last_reclaim_check: Option<Millis>,
    shutdown_noted: bool,
}

thread_local! {
    /// nginx workers are single-threaded: this is the worker's own engine.
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Runs `f` on the engine. Nothing called inside may call back into the
/// engine: it only reads and writes the zone, posts events and arms timers.
fn with_engine<T>(f: impl FnOnce(&mut Engine) -> T) -> Option<T> {
    ENGINE.with_borrow_mut(|engine| engine.as_mut().map(f))
}

/// A request taken out of the queue, to be let go.
struct Going {
    taken: Taken<HttpRequest>,
    why: Release,
}

/// Starts the engine of a worker process, as it starts: claims its slot
/// (reclaiming those of dead workers), opens its wake-up channel and wakes
/// every other worker, whose order may have been waiting on a dead one.
pub fn start_worker(zone: &'static ngx_shm_zone_t) {
    let Some(header) = zone::header(zone) else {
        return;
    };
    let log = nginx::cycle_log();
    let table = zone::table(header);
    let membership = Membership::join(zone::worker_slots(header), table, log);
    let listen_as = membership.has_own_slot().then_some(membership.me);
    let channel = match WakeChannel::open(header.zone_id(), listen_as, on_wake_up) {
        Ok(channel) => Some(channel),
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "intermission: no wake-up channel for this worker ({e}); while it holds \
                 requests it looks for a resume every {UNWAKEABLE_CHECK_MS} ms instead"
            );
            None
        }
    };
    // Anything sent before the channel listened found no one: start clean.
    membership.slot().take_wake();
    let engine = Engine {
        zone,
        header,
        table,
        membership,
        queue: HeldQueue::default(),
        published: BTreeMap::new(),
        dirty: BTreeSet::new(),
        timer: WorkerEvent::new(on_timer),
        later: WorkerEvent::new(on_later),
        channel,
        blocked_since: None,
        upstream_in_progress: 0,
        posted: 0,
        suspect_dead: false,
        last_reclaim_check: None,
        shutdown_noted: false,
    };
    ENGINE.with_borrow_mut(|slot| *slot = Some(engine));
    with_engine(Engine::wake_all);
}

/// The worker exits: its slot goes back and every other worker is woken
/// (one that is shutting down learns whether nginx is stopping for good).
pub fn stop_worker() {
    with_engine(|engine| {
        engine.membership.leave(engine.table);
        engine.wake_all();
        if let Some(channel) = engine.channel.take() {
            channel.close();
        }
    });
}

/// Whether this worker can hold requests (its engine runs).
pub fn is_running() -> bool {
    ENGINE.with_borrow(Option::is_some)
}

/// Takes a parked request into the queue, to wait at most until `deadline`.
pub fn hold(r: HttpRequest, app: AppId, ticket: Ticket, held_in: Phase, deadline: Millis) {
    with_engine(|engine| {
        engine.queue.hold(app, ticket, held_in, deadline, r);
        engine.dirty.insert(app);
        // Others must see this worker's place before it could matter.
        engine.publish_dirty();
        engine.schedule(nginx::now_ms(), None);
    });
}

/// True once nginx is stopping for good (not a reload); logs it the first
/// time.
pub fn shutting_down_for_good() -> bool {
    with_engine(Engine::shutting_down_for_good).unwrap_or(false)
}

/// An app's state changed through this worker (a control call, a deadline):
/// every other worker is woken, and this one releases what is due.
pub fn state_changed() {
    with_engine(Engine::wake_all);
    run_pass();
}

/// Ends `app`'s pause if it has reached its deadline (`intermission_max_pause`
/// or the `ttl` of the enable call), with a log line, and lets every worker
/// release; true if this call ended it.
pub fn end_pause_at_deadline(
    log: *mut ngx_log_t,
    zone: &ngx_shm_zone_t,
    table: AppTable<'static>,
    app: AppId,
    now: Millis,
) -> bool {
    if !end_at_deadline(log, zone, table, app, now) {
        return false;
    }
    state_changed();
    true
}

/// Ends the pause if its deadline has passed, under the zone's lock, as any
/// control call; logs it. True if this call ended it.
fn end_at_deadline(
    log: *mut ngx_log_t,
    zone: &ngx_shm_zone_t,
    table: AppTable<'static>,
    app: AppId,
    now: Millis,
) -> bool {
    if table.state(app).deadline().is_none_or(|d| d > now) {
        return false;
    }
    let held = {
        let _lock = ZoneLock::acquire(zone);
        table.end_if_expired(app, now)
    };
    let Some(held) = held else {
        return false;
    };
    let lasted_ms = now.saturating_sub(table.state(app).paused_at());
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "intermission: {} reached the deadline of its pause after {}: resumed, \
         the pause held {held} request{}",
        AppLabel(&table.name(app)),
        Seconds(lasted_ms),
        if held == 1 { "" } else { "s" }
    );
    true
}

/// Looks for dead workers, at most every `RECLAIM_CHECK_EVERY_MS`: before
/// status, metrics and drains read the counts.
pub fn reclaim_dead_workers(now: Millis) {
    with_engine(|engine| engine.reclaim_dead_if_due(now, RECLAIM_CHECK_EVERY_MS));
}

/// A released request has been run on (or was freed before it could be).
pub fn woke(app: AppId, ticket: Ticket) {
    with_engine(|engine| {
        engine.posted = engine.posted.saturating_sub(1);
        if engine.posted == 0 {
            engine.schedule(nginx::now_ms(), None);
        }
        if engine.queue.woke(app, ticket) {
            engine.dirty.insert(app);
            // Publish after this turn's wake-ups have all run.
            engine.later.post_next_turn();
        }
    });
}

/// A request released to the upstream was freed.
fn upstream_request_ended() {
    with_engine(|engine| {
        engine.upstream_in_progress = engine.upstream_in_progress.saturating_sub(1);
    });
}

/// A held request's client went away.
fn client_gone(ctx: &HoldContext) {
    with_engine(|engine| {
        if engine.queue.forget(ctx.app, ctx.ticket).is_none() {
            return;
        }
        let now = nginx::now_ms();
        let state = engine.table.state(ctx.app);
        state.record_wait(now.saturating_sub(ctx.held_since));
        state.record_left_paced(ctx.held_in, ctx.ticket, now);
        state.record_client_gone();
        engine.dirty.insert(ctx.app);
        // Its place in the order, and its paced turn, may let others go.
        engine.later.post();
        engine.schedule(now, None);
    });
}

/// The log phase of any request of this worker: if the worker is short of
/// connections to release its held requests, one may just have come free.
#[inline]
pub fn request_finished() {
    if STARVED.load(Ordering::Relaxed) {
        with_engine(|engine| engine.later.post());
    }
}

/// Releases what is due now.
pub fn run_pass() {
    let now = nginx::now_ms();
    let Some((going, table)) = with_engine(|engine| (engine.pass(now), engine.table)) else {
        return;
    };
    for request in going {
        let_go(request, table, now);
    }
}

/// Marks a request taken out of the queue as let go, counts it, and posts
/// its write event: its phases run again from the phase handler, which
/// passes it on or answers it (`decision::after_release`).
fn let_go(going: Going, table: AppTable<'static>, now: Millis) {
    let Going { taken, why } = going;
    let r = taken.request;
    let Some(ctx) = r.context::<HoldContext>(module()) else {
        woke(taken.app, taken.ticket);
        return;
    };
    ngx_log_debug!(
        mask: DebugMask::Http,
        r.log(),
        "intermission: releasing ticket {} of {} ({why:?})",
        taken.ticket.0,
        AppLabel(&table.name(taken.app))
    );
    ctx.released.set(Some(why));
    ctx.upstream
        .set(after_release(why, ctx.on_timeout).goes_upstream());
    let state = table.state(taken.app);
    let waited = now.saturating_sub(ctx.held_since);
    state.record_wait(waited);
    state.record_release(why);
    if let Some(main) = IntermissionModule::main_conf(r.as_raw()) {
        // A request a resume lets through is in flight like one that
        // passed, for the next pause's drain.
        let counted = (why == Release::Resumed)
            .then(counting_slot)
            .flatten()
            .map(|slot| Counted::by(slot.enter(ctx.in_flight)));
        main.variables
            .record_outcome(&r, Outcome::of_release(why), counted);
        main.variables.record_wait(&r, waited);
    }
    if why == Release::TimedOut {
        // Out of a paced backlog at its max_time: the next may go.
        state.record_left_paced(ctx.held_in, ctx.ticket, now);
        let outcome = match ctx.on_timeout {
            OnTimeout::Pass => "passes".to_owned(),
            OnTimeout::Answer(status) => format!("is answered {status}"),
        };
        ngx_log_error!(
            NGX_LOG_WARN,
            r.log(),
            "intermission: request held for {waited} ms, its $intermission_max_time, {outcome} \
             while {} {}",
            AppLabel(&table.name(taken.app)),
            if state.is_paused() {
                "is still paused"
            } else {
                "releases its requests at a paced rate"
            }
        );
    }
    r.post_wake();
}

impl Engine {
    /// Looks at the queue and takes out what may go now; arranges for the
    /// next look.
    fn pass(&mut self, now: Millis) -> Vec<Going> {
        let blocked_long = self
            .blocked_since
            .is_some_and(|since| now >= since + BLOCKED_CHECK_MS);
        if blocked_long || self.suspect_dead {
            self.suspect_dead = false;
            self.reclaim_dead_if_due(now, 0);
            if blocked_long {
                // Checked: the next check, if still blocked, is a while off.
                self.blocked_since = Some(now);
            }
        }
        self.publish_dirty();
        let mut going = Vec::new();
        if self.shutting_down_for_good() {
            for taken in self.queue.take_all(usize::MAX) {
                self.dirty.insert(taken.app);
                going.push(Going {
                    taken,
                    why: Release::ShuttingDown,
                });
            }
            self.publish_dirty();
            self.posted += going.len();
            self.schedule(now, None);
            return going;
        }

        let mut budget = self.connection_budget();
        let mut batch = RELEASE_BATCH;
        let mut next_look: Option<Millis> = None;
        let mut blocked = false;
        let mut starved = false;
        let mut more = false;
        let apps: Vec<AppId> = self.queue.apps().collect();
        for app in apps {
            if end_at_deadline(nginx::cycle_log(), self.zone, self.table, app, now) {
                self.wake_all();
            }
            let state = self.table.state(app);
            let phase = state.phase();
            // Answered 503 at once, whatever the order or the connections.
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
                });
            }
            let window_start = self
                .membership
                .slots
                .lowest_elsewhere(app, self.membership.me);
            let room = budget.min(batch);
            let mut refused = None;
            let resumed = self.queue.take_due(app, phase, room, |held_in, ticket| {
                if state.due(held_in, ticket, phase) != Some(Release::Resumed) {
                    // Paused again: held by the new pause.
                    false
                } else if !within_window(ticket, window_start) {
                    refused = Some(Refusal::Order);
                    false
                } else if !state.may_release(held_in, ticket, now) {
                    refused = Some(Refusal::Pace(held_in, ticket));
                    false
                } else {
                    true
                }
            });
            budget -= resumed.len();
            batch -= resumed.len();
            for taken in resumed {
                self.queue.mark_waking(app, taken.ticket);
                self.upstream_in_progress += 1;
                self.dirty.insert(app);
                going.push(Going {
                    taken,
                    why: Release::Resumed,
                });
            }
            match refused {
                Some(Refusal::Order) => blocked = true,
                Some(Refusal::Pace(held_in, ticket)) => {
                    next_look = earliest(next_look, state.next_turn_at(held_in, ticket, now));
                }
                None => {
                    let still_due = self.queue.first(app).is_some_and(|(ticket, held_in)| {
                        state.due(held_in, ticket, phase).is_some()
                    });
                    if still_due {
                        more |= batch == 0;
                        starved |= budget == 0;
                    }
                }
            }
        }

        // Requests held for their whole max time, earliest first: answers
        // go at once, requests that pass on take a connection like others.
        while let Some((app, ticket, &r)) = self.queue.next_expired(now) {
            let goes_upstream = r
                .context::<HoldContext>(module())
                .is_none_or(|ctx| after_release(Release::TimedOut, ctx.on_timeout).goes_upstream());
            if goes_upstream && (budget == 0 || batch == 0) {
                more |= batch == 0;
                starved |= budget == 0;
                break;
            }
            let Some(taken) = self.queue.take(app, ticket) else {
                break;
            };
            if goes_upstream {
                budget -= 1;
                batch -= 1;
                self.queue.mark_waking(app, ticket);
                self.upstream_in_progress += 1;
            }
            self.dirty.insert(app);
            going.push(Going {
                taken,
                why: Release::TimedOut,
            });
        }

        // Once this pass's requests have woken, publish where this worker
        // stands (waking the workers that wait for it), and go on.
        if more || self.queue.waking() > 0 {
            self.later.post_next_turn();
        } else if !self.dirty.is_empty() {
            self.later.post();
        }
        STARVED.store(starved, Ordering::Relaxed);
        self.blocked_since = match (blocked, self.blocked_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
        };
        let watchdog = self
            .blocked_since
            .map(|since| (since + BLOCKED_CHECK_MS).max(now + 1));
        self.schedule(now, earliest(next_look, watchdog));
        going
    }

    /// Connections the worker can give released requests: those it can open
    /// now, less those already promised to requests still waking. With
    /// none and no request of its own in progress (whose end would free
    /// one), one request goes anyway: nginx then reuses what it can, and the
    /// worker never waits for connections that nothing of its own will free.
    fn connection_budget(&self) -> usize {
        let waking = self.queue.waking();
        match nginx::available_connections().saturating_sub(waking) {
            0 if self.upstream_in_progress == 0 => 1,
            budget => budget,
        }
    }

    /// Publishes the figures of the apps that changed, and wakes the workers
    /// waiting behind this one's place in an app's order when it moved on.
    fn publish_dirty(&mut self) {
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
                    self.wake(slot);
                }
            }
        }
    }

    /// Wakes every other worker that has a slot.
    fn wake_all(&mut self) {
        let me = self.membership.me;
        let others: Vec<SlotId> = self
            .membership
            .slots
            .owners()
            .map(|(slot, _)| slot)
            .filter(|&slot| slot != me)
            .collect();
        for slot in others {
            self.wake(slot);
        }
    }

    fn wake(&mut self, slot: SlotId) {
        if !self.membership.slots.get(slot).mark_wake_pending() {
            return;
        }
        let sent = self.channel.as_ref().map(|channel| channel.send(slot));
        if sent == Some(Sent::NoListener) {
            self.suspect_dead = true;
            self.later.post();
        }
    }

    /// Reclaims the slots of dead workers if the last look is at least
    /// `every` old; wakes everyone if it did.
    fn reclaim_dead_if_due(&mut self, now: Millis, every: Millis) {
        if self
            .last_reclaim_check
            .is_some_and(|last| now < last + every.max(1))
        {
            return;
        }
        self.last_reclaim_check = Some(now);
        if self.membership.reclaim_dead(self.table, nginx::cycle_log()) > 0 {
            self.wake_all();
            self.later.post();
        }
    }

    /// Sets the timer for the earliest real deadline: of a held request,
    /// of a held app's pause, or `also` (a paced turn, a liveness check).
    /// With nothing held (and nothing let go still to run) it is not set,
    /// so a worker retired by a reload can exit.
    fn schedule(&mut self, now: Millis, also: Option<Millis>) {
        if self.queue.is_empty() {
            if self.posted == 0 {
                self.timer.disarm();
            } else if self.timer.armed_at().is_none() {
                self.timer.arm_at(now + 1);
            }
            return;
        }
        let mut at = earliest(self.queue.next_deadline(), also);
        for app in self.queue.apps() {
            at = earliest(at, self.table.state(app).deadline());
        }
        if !self.channel.as_ref().is_some_and(WakeChannel::listens) {
            at = earliest(at, Some(now + UNWAKEABLE_CHECK_MS));
        }
        match at {
            Some(at) => self.timer.arm_at(at),
            None => self.timer.disarm(),
        }
    }

    /// True once nginx is stopping for good (see `hold` in the phase
    /// handler); logs it the first time.
    fn shutting_down_for_good(&mut self) -> bool {
        let stopping = nginx::is_exiting() && !zone::newer_configuration_runs(self.header);
        if stopping && !self.shutdown_noted {
            self.shutdown_noted = true;
            ngx_log_error!(
                NGX_LOG_NOTICE,
                nginx::cycle_log(),
                "intermission: nginx is shutting down: answering the {} request{} this worker holds, \
                 and new requests of paused apps, 503",
                self.queue.len(),
                if self.queue.len() == 1 { "" } else { "s" }
            );
        }
        stopping
    }
}

enum Refusal {
    /// Another worker still holds a ticket more than the window before.
    Order,
    /// Its paced turn has not come.
    Pace(Phase, Ticket),
}

fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The wake-up channel is readable, or nginx is shutting the worker down.
unsafe extern "C" fn on_wake_up(event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), || {
        // A graceful shutdown asks the channel to close: it stays open (a
        // reload keeps the worker holding), and a pass decides. nginx calls
        // this then from outside its event loop, where what is posted now
        // would wait for the next event (before 1.23): the pass runs on the
        // loop's next turn instead, which does not wait.
        let shutting_down = WatchedSocket::take_close_request(event);
        with_engine(|engine| {
            if let Some(channel) = &engine.channel {
                channel.drain();
            }
            engine.membership.slot().take_wake();
            if shutting_down {
                engine.later.post_next_turn();
            }
        });
        if !shutting_down {
            run_pass();
        }
    })
}

unsafe extern "C" fn on_timer(_event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), run_pass)
}

unsafe extern "C" fn on_later(_event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), run_pass)
}
