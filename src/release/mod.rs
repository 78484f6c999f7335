//! The release engine of one worker process: the requests it holds, and
//! when each may go.
//!
//! Nothing here runs on a clock while requests wait. A worker looks at its
//! queue (a *pass*, `pass`) only when something happened that may let a
//! request go:
//! - another worker changed an app's state (resume, stop, a paced release,
//!   a deadline moved), or moved its place in an app's order, and woke this
//!   one through the wake-up channel (`wake_channel`, `peers`);
//! - this worker's own control call, or a request of its own that left;
//! - one of its real deadlines came: the earliest `$intermission_max_time`
//!   of what it holds, a pause's deadline, the next turn of a paced
//!   release, the moment a worker it waits for counts as stalled (one
//!   timer, set to the earliest: `arm_timer`);
//! - a request it released finished while it was short of connections.
//!
//! **One order across workers.** Tickets come from one counter per app, so
//! they are the arrival order across all workers. Each worker publishes in
//! its slot (`intermission_core::worker_slots`) the lowest ticket of each
//! app it still holds or has released and not yet sent; it releases ticket
//! `t` only when `t` is less than `ORDER_WINDOW` past the lowest ticket held
//! by another worker that runs, and past the lowest of its own still on
//! their way (`intermission_core::order::Window`). A released request keeps
//! its place until nginx has written it to its upstream (`retire_sent`): one
//! that needs a new upstream connection is written once the connection is
//! open, a turn or more after it woke, and one over a kept-alive connection
//! at once. So the upstream sees the requests of all workers within the
//! window of their arrival order. Tickets that leave otherwise (a client
//! that left, a request answered at its max time, a worker that died) simply
//! stop being the lowest anywhere. A worker that does not look at its
//! wake-ups for `STALL_BOUND_MS` (stopped, swapped out) loses its
//! precedence, and a request whose connection takes `SEND_BOUND_MS` to open
//! its place: order yields to availability.
//!
//! **Never stuck, never spinning.** Answers that need no upstream
//! connection (the 503s of a stop and of shutdown, the 503/504 at max time)
//! go at once. Requests that go upstream go as fast as the worker has
//! connections for (`intermission_core::budget`); when it has none, it goes
//! on as its released requests finish (the log phase wakes it). The timer
//! is never set for now or before (`intermission_core::next_look`).
//!
//! **Dead workers.** The worker the master starts in place of a killed one
//! reclaims its slot as it starts; a stalled worker, or one that a wake-up
//! could not reach, is looked at; a dead one's place and counts are dropped
//! and every worker is woken.

mod held;
mod pass;
mod peers;
mod shutdown;
mod wake_channel;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use nginx_sys::{ngx_event_t, ngx_log_t, ngx_shm_zone_t, NGX_LOG_ALERT};
use ngx::http::HttpModuleMainConf;
use ngx::log::DebugMask;
use ngx::{ngx_log_debug, ngx_log_error};

use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest, WatchedSocket, WorkerEvent};
use crate::worker_slot::{counting_slot, Membership};
use crate::{config, zone};
use crate::{module, IntermissionModule};
pub use held::{report_outcome, report_ticket, report_wait, HoldContext};
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::decision::after_release;
use intermission_core::ids::{AppId, Millis, Phase, Release, Ticket};
use intermission_core::in_flight::Counted;
use intermission_core::next_look::NextLook;
use intermission_core::outcome::Outcome;
use intermission_core::queue::{HeldQueue, Taken};
use intermission_core::settings::{AppLabel, OnTimeout, Seconds};
use intermission_core::worker_slots::SlotId;
use shutdown::{Exit, Shutdown};
use wake_channel::WakeChannel;

/// Without a wake-up channel (no socket could be opened), a worker that
/// holds requests looks at the zone this often instead.
const UNWAKEABLE_CHECK_MS: Millis = 50;

/// The worker released what it could and is short of connections: the end
/// of any of its requests should run a pass. Read on every request's log
/// phase, so a plain flag.
static STARVED: AtomicBool = AtomicBool::new(false);

struct Engine {
    header: &'static TableHeader,
    table: AppTable<'static>,
    membership: Membership,
    /// The configuration has `intermission_state_file`: during a binary
    /// upgrade the other binary carries the pause on.
    follows_state_file: bool,
    queue: HeldQueue<HttpRequest>,
    /// The lowest ticket of each app last published in the slot.
    published: BTreeMap<AppId, Ticket>,
    /// Apps whose published figures may be stale.
    dirty: BTreeSet<AppId>,
    /// Released requests that were run on and may not be at their upstream
    /// yet: they keep their place in the order until nginx has written them
    /// (`retire_sent`).
    sending: BTreeMap<(AppId, Ticket), Sending>,
    /// The next look by itself: the earliest real deadline (`arm_timer`).
    timer: WorkerEvent,
    /// When the last pass wants to look again for reasons only a pass sees
    /// (a paced turn, a stalled worker's bound, a shutdown's timeout).
    pass_wants: Option<Millis>,
    /// A pass later in this turn, or in the next.
    next_pass: WorkerEvent,
    channel: WakeChannel,
    /// Requests this worker released to the upstream that nginx has not
    /// freed yet: each will free connections as it ends.
    upstream_in_progress: usize,
    /// Requests let go whose write event has not run yet (for any reason).
    /// While there are some, the timer stays set: a worker that is shutting
    /// down exits once it has no timer left, and nginx before 1.23 checks
    /// that before it runs the events posted in the same turn.
    posted: usize,
    /// A wake-up could not be sent: its worker may be gone.
    suspect_dead: bool,
    last_reclaim_check: Option<Millis>,
    /// Workers seen stalled (and said so), until they look again.
    stalled_seen: BTreeSet<SlotId>,
    shutdown: Shutdown,
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

/// A released request that was run on, and when.
struct Sending {
    request: HttpRequest,
    woke_at: Millis,
}

/// A request taken out of the queue, to be let go.
struct Going {
    taken: Taken<HttpRequest>,
    why: Release,
    /// The in-flight counter that counts it (released by a resume).
    counted: Option<Counted>,
}

/// Starts the engine of a worker process, as it starts: claims its slot
/// (reclaiming those of dead workers), opens its wake-up channel and wakes
/// every other worker, whose order may have been waiting on a dead one.
pub fn start_worker(zone: &'static ngx_shm_zone_t, follows_state_file: bool) {
    let Some(header) = zone::header(zone) else {
        return;
    };
    let log = nginx::cycle_log();
    let table = zone::table(header);
    let membership = Membership::join(zone::worker_slots(header), table, log);
    let (channel, error) = WakeChannel::open(on_wake_up);
    if let Some(e) = error {
        ngx_log_error!(
            NGX_LOG_ALERT,
            log,
            "intermission: the wake-up channel of this worker is incomplete ({e}); while it holds \
             requests it looks for a resume every {UNWAKEABLE_CHECK_MS} ms instead"
        );
    }
    if membership.has_own_slot() {
        let slot = membership.slot();
        slot.set_wake_address(channel.address().unwrap_or(0));
        // Anything sent before the channel listened found no one: start clean.
        slot.take_wake();
    }
    let engine = Engine {
        header,
        table,
        membership,
        follows_state_file,
        queue: HeldQueue::default(),
        published: BTreeMap::new(),
        dirty: BTreeSet::new(),
        sending: BTreeMap::new(),
        timer: WorkerEvent::new(on_timer),
        pass_wants: None,
        next_pass: WorkerEvent::new(on_next_pass),
        channel,
        upstream_in_progress: 0,
        posted: 0,
        suspect_dead: false,
        last_reclaim_check: None,
        stalled_seen: BTreeSet::new(),
        shutdown: Shutdown::default(),
    };
    ENGINE.with_borrow_mut(|slot| *slot = Some(engine));
    with_engine(|engine| engine.wake_all(nginx::now_ms()));
}

/// The worker exits: its slot goes back and every other worker is woken
/// (one that is shutting down learns whether nginx is stopping for good).
pub fn stop_worker() {
    if let Some(mut engine) = ENGINE.with_borrow_mut(Option::take) {
        engine.membership.leave(engine.table);
        engine.wake_all(nginx::now_ms());
        engine.channel.close();
    }
}

/// Whether this worker can hold requests (its engine runs).
pub fn is_running() -> bool {
    ENGINE.with_borrow(Option::is_some)
}

/// Takes a parked request into the queue, to wait at most until `deadline`.
pub fn hold(r: HttpRequest, app: AppId, ticket: Ticket, held_in: Phase, deadline: Millis) {
    with_engine(|engine| {
        let now = nginx::now_ms();
        engine.queue.hold(app, ticket, held_in, deadline, r);
        engine.dirty.insert(app);
        // Others must see this worker's place before it could matter.
        engine.publish_dirty(now);
        engine.arm_timer(now);
    });
}

/// True once nginx is stopping for good (not a reload, nor a binary upgrade
/// whose other binary carries the pause on): new requests of paused apps
/// are answered 503.
pub fn shutting_down_for_good() -> bool {
    with_engine(|engine| {
        let held = engine.queue.len();
        engine.shutdown.plan(
            engine.header,
            engine.follows_state_file,
            held,
            nginx::now_ms(),
        ) == Exit::AnswerAll
    })
    .unwrap_or(false)
}

/// An app's state changed through this worker (a control call, a deadline):
/// every other worker is woken, and this one releases what is due.
pub fn state_changed() {
    with_engine(|engine| engine.wake_all(nginx::now_ms()));
    run_pass();
}

/// `end_expired_pause`, then, if it ended the pause, every worker is told
/// (`state_changed`) and releases. For callers outside the engine (requests,
/// control calls); the pass tells the workers itself.
pub fn end_expired_pause_and_tell_workers(
    log: *mut ngx_log_t,
    table: AppTable<'static>,
    app: AppId,
    now: Millis,
) -> bool {
    if !end_expired_pause(log, table, app, now) {
        return false;
    }
    state_changed();
    true
}

/// Ends `app`'s pause if it has reached its deadline (`intermission_max_pause`
/// or the `ttl` of the enable call), in one atomic step (exactly one caller
/// ends a given pause, and it takes no lock: any process may), and logs it.
/// True if this call ended it.
fn end_expired_pause(
    log: *mut ngx_log_t,
    table: AppTable<'static>,
    app: AppId,
    now: Millis,
) -> bool {
    if table.state(app).deadline().is_none_or(|d| d > now) {
        return false;
    }
    let Some(held) = table.end_if_expired(app, now) else {
        return false;
    };
    let lasted_ms = now.saturating_sub(table.state(app).paused_at());
    ngx_log_error!(
        config::audit_level(),
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
    with_engine(|engine| engine.reclaim_dead_if_due(now, peers::RECLAIM_CHECK_EVERY_MS));
}

/// A released request is done waking: `request` is about to be run on (it
/// keeps its place in the order until nginx has written it to its upstream:
/// `retire_sent`), or it was freed before it could be (`None`: it leaves).
pub fn done_waking(app: AppId, ticket: Ticket, request: Option<HttpRequest>) {
    with_engine(|engine| {
        let now = nginx::now_ms();
        engine.posted = engine.posted.saturating_sub(1);
        match request {
            Some(request) if engine.queue.mark_sending(app, ticket) => {
                let woke_at = now;
                engine
                    .sending
                    .insert((app, ticket), Sending { request, woke_at });
            }
            _ => {
                if engine.queue.leave(app, ticket) {
                    engine.dirty.insert(app);
                }
            }
        }
        // Looks at it once nginx ran it on (its connection may be open then).
        engine.next_pass.post_next_turn();
        engine.arm_timer(now);
    });
}

/// A released request that was run on was freed: it leaves the order (and
/// the engine forgets its pointer).
fn run_on_request_freed(app: AppId, ticket: Ticket) {
    with_engine(|engine| {
        if engine.sending.remove(&(app, ticket)).is_some() && engine.queue.leave(app, ticket) {
            engine.dirty.insert(app);
            engine.next_pass.post();
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
        engine.next_pass.post();
        engine.arm_timer(now);
    });
}

/// The log phase of any request of this worker: if the worker is short of
/// connections to release its held requests, one may just have come free.
#[inline]
pub fn request_finished() {
    if STARVED.load(Ordering::Relaxed) {
        with_engine(|engine| engine.next_pass.post());
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
    let Going {
        taken,
        why,
        counted,
    } = going;
    let r = taken.request;
    let Some(ctx) = r.context::<HoldContext>(module()) else {
        done_waking(taken.app, taken.ticket, None);
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
            nginx_sys::NGX_LOG_WARN,
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

/// Counts a request a resume releases in flight (a drain of the next pause
/// waits for it, as for one that passed), in this worker's counting slot.
fn count_in_flight(r: &HttpRequest) -> Option<Counted> {
    let ctx = r.context::<HoldContext>(module())?;
    let slot = counting_slot()?;
    Some(Counted::by(slot.enter(ctx.in_flight)))
}

/// Takes back a count of `count_in_flight`.
fn uncount_in_flight(counted: Option<Counted>) {
    if let (Some(counted), Some(slot)) = (counted, counting_slot()) {
        slot.leave(counted.counter, counted.upgraded);
    }
}

impl Engine {
    /// Sets the one timer for the next look this worker takes by itself:
    /// the earliest of its held requests' max times still to come, the
    /// deadlines of the pauses it holds requests of, what its last pass
    /// wants (`pass_wants`), and a look every `UNWAKEABLE_CHECK_MS` if it
    /// cannot be woken. Never for now or before (`NextLook`). With nothing
    /// held (and nothing let go still to run) it is not set, so a worker
    /// retired by a reload can exit.
    fn arm_timer(&mut self, now: Millis) {
        let mut next = NextLook::new(now);
        if !self.queue.is_empty() {
            next.at(self.pass_wants);
            next.at(self.queue.next_deadline_after(now));
            for app in self.queue.apps() {
                let state = self.table.state(app);
                if state.is_paused() {
                    next.at(state.deadline());
                }
            }
            if !self.channel.listens() {
                next.after(UNWAKEABLE_CHECK_MS);
            }
        }
        // Requests let go whose write event has not run, and requests
        // still sending over a connection being opened (nginx tells the
        // module neither: looked at every millisecond, for at most
        // `SEND_BOUND_MS`).
        if self.posted > 0 || !self.sending.is_empty() {
            next.after(1);
        }
        match next.time() {
            Some(at) => self.timer.arm_at(at),
            None => self.timer.disarm(),
        }
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
        let own = with_engine(|engine| {
            let own = engine.channel.drain();
            if shutting_down {
                engine.shutdown.begin(nginx::now_ms());
                engine.next_pass.post_next_turn();
            }
            own
        });
        // Datagrams from other users are read and dropped.
        if !shutting_down && own == Some(true) {
            run_pass();
        }
    })
}

unsafe extern "C" fn on_timer(_event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), run_pass)
}

unsafe extern "C" fn on_next_pass(_event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), run_pass)
}
