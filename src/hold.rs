//! Holding requests while their app is paused, and releasing them.
//!
//! A request of a paused app takes a ticket from its app's shared counter and
//! is parked in the precontent phase, after access checks have run, the way
//! `limit_req` parks a delayed request: the phase handler returns NGX_AGAIN
//! and nothing runs for the request until it is woken. A held request costs
//! no CPU while it waits.
//!
//! Each worker keeps the requests it holds in a queue ordered by ticket. While
//! it holds any, one timer per worker looks at the shared zone every few
//! milliseconds (one load when nothing changed); when the app has been
//! resumed, the worker posts its requests' write events in ticket order, and
//! nginx runs them in that order within one pass of its event loop. The
//! worker that receives the resume call releases its own requests at once.
//!
//! A worker that shuts down gracefully keeps holding when a reload retires it
//! (the new configuration carries the pause on, and the resume still reaches
//! the old worker through the zone). When nginx is stopping for good, it
//! answers what it holds, and any new request of a paused app, 503 with
//! `Retry-After` at once: the upstream is still under maintenance, so passing
//! the requests on would defeat the pause, and holding them would only delay
//! the stop until the connections are cut without an answer.

use std::cell::{Cell, RefCell};

use nginx_sys::{
    ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_log_t, NGX_AGAIN, NGX_DECLINED,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SERVICE_UNAVAILABLE, NGX_LOG_ERR, NGX_LOG_NOTICE,
    NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::log::DebugMask;
use ngx::{ngx_log_debug, ngx_log_error};

use crate::in_flight::let_through;
use crate::nginx::{self, HttpRequest, RequestContext, Timer};
use crate::panic_probe::{self, Point};
use crate::{guard_ffi, module, zone, IntermissionModule};
use intermission_core::app_table::{AppId, AppTable};
use intermission_core::in_flight::InFlightCounter;
use intermission_core::outcome::Outcome;
use intermission_core::pause::{Phase, Ticket};
use intermission_core::queue::{HeldQueue, Millis, Release};
use intermission_core::settings::{
    check_app_name, parse_max_time, parse_on_timeout, AppLabel, ExemptionCheck, LogSafe, OnTimeout,
    Seconds, DEFAULT_MAX_TIME_MS,
};

/// How often a worker that holds requests looks for a resume made by another
/// worker, and for requests that reached their maximum time. Keeps every
/// worker's release within a few milliseconds of the resume call.
const RELEASE_CHECK_INTERVAL_MS: u64 = 5;

/// The most requests released in one turn of the event loop. Measured with
/// 10,000 held on one worker (scripts/bench): batches of 1,024 put the first
/// answer 225 ms after the resume, 256 about 35 ms, 64 about 5-15 ms, with
/// the last answer unchanged within the noise (0.8-1 s, nginx's own proxying).
const RELEASE_BATCH: usize = 64;

/// Connections a release leaves free for new clients and for what else the
/// worker does.
const CONNECTION_RESERVE: usize = 32;

/// `Retry-After` of the 503 answered at shutdown: a restarted nginx is back
/// within about a second, and the request never reached the upstream, so it
/// is safe to send again.
const RETRY_AFTER_SHUTDOWN: &str = "1";

/// `Retry-After` of the 503 past `intermission_max_held`, and of a 503 at
/// `$intermission_max_time`: a pause lasts seconds, so a client that comes
/// back after a few finds it over, or room.
const RETRY_AFTER_HOLD_LIMIT: &str = "5";

/// `Retry-After` of the 503 of a stopped app: a stop is for maintenance
/// longer than a pause (minutes rather than seconds), so clients that honour
/// it should not come back every few seconds.
const RETRY_AFTER_STOP: &str = "30";

/// Attached to every request this module held, for the life of the request.
pub struct HoldContext {
    /// `None` while held; then why it was let go.
    released: Cell<Option<Release>>,
    /// Released and its write event has run (it went on with its phases).
    woken: Cell<bool>,
    app: AppId,
    ticket: Ticket,
    /// The app's phase when it was held: which pause (and paced release).
    held_in: Phase,
    held_since: Millis,
    /// What it gets if its `$intermission_max_time` passes while still paused.
    on_timeout: OnTimeout,
    /// Counts it in flight once a resume lets it through.
    in_flight: InFlightCounter,
}

impl RequestContext for HoldContext {
    fn on_request_freed(&self) {
        if self.released.get().is_none() {
            // Its client went away (nginx finalized it with 499) or its
            // connection was closed: it leaves the queue without delaying the
            // requests behind it.
            with_worker(|worker| {
                if worker.queue.forget(self.app, self.ticket).is_some() {
                    let state = worker.table.state(self.app);
                    let now = nginx::now_ms();
                    state.record_wait(now.saturating_sub(self.held_since));
                    state.record_left_paced(self.held_in, self.ticket, now);
                    state.record_client_gone();
                }
            });
        } else if !self.woken.get() {
            // Released, but freed before its wake-up ran: it opens no upstream connection.
            with_worker(Worker::one_woken);
        }
    }
}

/// What one worker holds.
struct Worker {
    table: AppTable<'static>,
    queue: HeldQueue<HttpRequest>,
    /// The zone's resume count when this worker last compared its queue with
    /// the apps' phases.
    resumes_seen: u64,
    /// A release (or expiry) stopped at its batch limit: more may be due.
    more_due: bool,
    /// Requests released whose wake-up has not run yet. They are about to
    /// open upstream connections that `free_connections()` does not show, so
    /// a release check that runs before them (the timer and the next batch
    /// can run in the same turn of the event loop) must count them.
    waking: usize,
    /// Shutting down for good has been logged.
    shutdown_noted: bool,
    release_check: Timer,
}

thread_local! {
    /// nginx workers are single-threaded: this is the worker's own state.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

fn with_worker<T>(f: impl FnOnce(&mut Worker) -> T) -> Option<T> {
    WORKER.with_borrow_mut(|worker| worker.as_mut().map(f))
}

impl Worker {
    fn new(table: AppTable<'static>) -> Self {
        Worker {
            table,
            queue: HeldQueue::default(),
            resumes_seen: table.resumes(),
            // The first held request read its app's phase before this state
            // existed: a resume in between is already in `resumes_seen`, so
            // the first check must compare phases whatever the count says.
            more_due: true,
            waking: 0,
            shutdown_noted: false,
            release_check: Timer::new(on_release_check),
        }
    }

    fn hold(
        &mut self,
        app: AppId,
        ticket: Ticket,
        held_in: Phase,
        deadline: Millis,
        r: HttpRequest,
    ) {
        self.queue.hold(app, ticket, held_in, deadline, r);
        self.keep_checking();
    }

    /// True once nginx is stopping for good (see the module comment); logs it
    /// the first time.
    fn shutting_down_for_good(&mut self) -> bool {
        let stopping = nginx::is_exiting() && !zone::newer_configuration_runs(self.table.header());
        if stopping && !std::mem::replace(&mut self.shutdown_noted, true) {
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

    /// A released request's wake-up ran, or will never run (it was freed).
    fn one_woken(&mut self) {
        self.waking = self.waking.saturating_sub(1);
    }

    fn keep_checking(&mut self) {
        if !self.queue.is_empty() && !self.release_check.is_armed() {
            self.release_check.arm(RELEASE_CHECK_INTERVAL_MS);
        }
    }

    /// Takes out at most `limit` of the requests due now: those of resumed
    /// apps in ticket order, then those that reached their maximum time; or,
    /// when nginx is stopping, any.
    fn take_due(&mut self, now: Millis, limit: usize) -> Vec<(AppId, HttpRequest, Release)> {
        // A pause that reached its deadline ends here if no one else ended
        // it first; the resume count below then shows it.
        for app in self.queue.apps() {
            end_pause_at_deadline(nginx::cycle_log(), self.table, app, now);
        }
        let resumes = self.table.resumes();
        if resumes != self.resumes_seen {
            self.resumes_seen = resumes;
            self.more_due = true;
        }
        // A paced release lets more go as time passes: look at every check
        // (the timer's interval, not every turn) until its backlog may go.
        let table = self.table;
        let pacing = self.queue.apps().any(|app| table.state(app).has_pace());
        let mut due = Vec::new();
        if self.shutting_down_for_good() {
            due.extend(
                self.queue
                    .take_all(limit)
                    .into_iter()
                    .map(|(app, _, r)| (app, r, Release::ShuttingDown)),
            );
        } else if self.more_due || pacing {
            // Due because the phase moved: resumed (oldest first, at the
            // pace of a paced release), or stopped (then the requests are
            // answered 503).
            due.extend(
                self.queue
                    .release_in_order_paced(
                        |app| table.state(app).phase(),
                        |app, held_in, ticket| table.state(app).may_release(held_in, ticket, now),
                        limit,
                    )
                    .into_iter()
                    .map(|(app, ticket, r)| (app, r, table.state(app).release_reason(ticket))),
            );
        }
        let resumed_all = due.len() < limit;
        if resumed_all
            && self
                .queue
                .next_deadline()
                .is_some_and(|deadline| deadline <= now)
        {
            due.extend(
                self.queue
                    .take_expired(now, limit - due.len())
                    .into_iter()
                    .map(|(app, _, r)| (app, r, Release::TimedOut)),
            );
        }
        self.more_due = !resumed_all || due.len() == limit;
        if self.more_due && limit > 0 {
            self.release_check.run_next_turn();
        } else {
            // Out of connections (limit 0): try again after the interval,
            // once some have closed, rather than spin.
            self.keep_checking();
        }
        due
    }
}

/// The precontent phase handler of every location.
pub extern "C" fn hold_phase_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // A panic must not unwind into nginx: the request is answered 500 rather
    // than let through to an upstream that may be under maintenance.
    guard_ffi(r.log(), NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        decide(r)
    })
}

fn decide(r: HttpRequest) -> ngx_int_t {
    const PASS: ngx_int_t = NGX_DECLINED as ngx_int_t;
    const PARK: ngx_int_t = NGX_AGAIN as ngx_int_t;

    panic_probe::panic_if_asked(&r, Point::Hold);
    let Some(location) = IntermissionModule::location_conf(r.as_raw()).filter(|l| l.holds()) else {
        return PASS;
    };
    let Some(main) = IntermissionModule::main_conf(r.as_raw()) else {
        return PASS;
    };
    let Some(header) = main.zone().and_then(zone::header) else {
        return PASS;
    };
    if !r.is_main() {
        return PASS;
    }
    // While nothing is paused: one load, and the request is counted in flight.
    if !header.any_paused() {
        return let_through(&r, main, header);
    }
    if let Some(ctx) = r.context::<HoldContext>(module()) {
        // Held once already: while held, it stays parked; after its release
        // (or an internal redirect that followed it) it goes on.
        return match ctx.released.get() {
            None => PARK,
            Some(Release::ShuttingDown) => service_unavailable(&r, RETRY_AFTER_SHUTDOWN),
            Some(Release::TimedOut) => match ctx.on_timeout {
                OnTimeout::Pass => PASS,
                OnTimeout::Answer(503) => service_unavailable(&r, RETRY_AFTER_HOLD_LIMIT),
                OnTimeout::Answer(status) => status as ngx_int_t,
            },
            Some(Release::Stopped) => service_unavailable(&r, RETRY_AFTER_STOP),
            Some(Release::Resumed) => PASS,
        };
    }
    // Let through, rejected or answered once already: an internal redirect
    // brought it back, and what was decided stands.
    if main.variables.outcome_recorded(&r) {
        return PASS;
    }
    let table = zone::table(header);
    let bypass = |r: &HttpRequest| {
        main.variables.record_outcome(r, Outcome::Bypassed, None);
        PASS
    };

    let vars = main.variables.read(&r);
    let name = match check_app_name(vars.app_name) {
        Ok(name) => name,
        Err(too_long) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "intermission: {too_long}, the request is not held"
            );
            return let_through(&r, main, header);
        }
    };
    let Some(app) = table.find(name) else {
        return let_through(&r, main, header);
    };
    // Read once: a resume after this point releases the request at the next
    // check, because its phase will no longer match.
    let phase = table.state(app).phase();
    if !phase.is_paused() {
        return let_through(&r, main, header);
    }
    let now = nginx::now_ms();
    if end_pause_at_deadline(r.log(), table, app, now) {
        release_due_requests();
        return let_through(&r, main, header);
    }
    let exempt = ExemptionCheck {
        uri: r.uri(),
        user_agent: r.user_agent(),
        health_check_path: vars.health_check_path,
        privileged_user_agent: vars.privileged_user_agent,
    };
    if let Some(exemption) = exempt.exemption() {
        ngx_log_debug!(mask: DebugMask::Http, r.log(), "intermission: {exemption:?} passes while paused");
        return bypass(&r);
    }
    if table.state(app).is_stopped() {
        table.state(app).record_refused_while_stopped();
        main.variables.record_outcome(&r, Outcome::Stopped, None);
        return service_unavailable(&r, RETRY_AFTER_STOP);
    }
    let max_time = match vars.max_time.map(parse_max_time) {
        None => DEFAULT_MAX_TIME_MS,
        Some(Ok(max_time)) => max_time,
        Some(Err(invalid)) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "intermission: invalid $intermission_max_time \"{}\" ({invalid}), using the default of {} s",
                intermission_core::settings::LogSafe(vars.max_time.unwrap_or_default()),
                DEFAULT_MAX_TIME_MS / 1000
            );
            DEFAULT_MAX_TIME_MS
        }
    };
    if max_time == 0 {
        return bypass(&r);
    }
    let on_timeout = match vars.on_timeout.map(parse_on_timeout) {
        None => OnTimeout::Pass,
        Some(Ok(on_timeout)) => on_timeout,
        Some(Err(invalid)) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "intermission: invalid $intermission_on_timeout \"{}\" ({invalid}), using \"pass\"",
                LogSafe(vars.on_timeout.unwrap_or_default())
            );
            OnTimeout::Pass
        }
    };
    let stopping = WORKER.with_borrow_mut(|worker| {
        worker
            .get_or_insert_with(|| Worker::new(table))
            .shutting_down_for_good()
    });
    if stopping {
        table.state(app).record_refused_at_shutdown();
        main.variables.record_outcome(&r, Outcome::Shutdown, None);
        return service_unavailable(&r, RETRY_AFTER_SHUTDOWN);
    }
    if !table.state(app).try_record_held(location.max_held()) {
        ngx_log_error!(
            NGX_LOG_WARN,
            r.log(),
            "intermission: {} already holds its intermission_max_held of {} requests, answering 503",
            AppLabel(name),
            location.max_held().unwrap_or_default()
        );
        main.variables.record_outcome(&r, Outcome::Rejected, None);
        return service_unavailable(&r, RETRY_AFTER_HOLD_LIMIT);
    }

    let ticket = table.state(app).take_ticket();
    let context = HoldContext {
        released: Cell::new(None),
        woken: Cell::new(false),
        app,
        ticket,
        held_in: phase,
        held_since: now,
        on_timeout,
        in_flight: InFlightCounter::of(name),
    };
    if r.attach_context(module(), context).is_none() {
        table.state(app).count_out_unheld();
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: out of memory, the request is not held"
        );
        return bypass(&r);
    }
    table.state(app).record_hold_time(now);
    main.variables.record_outcome(&r, Outcome::Held, None);
    r.park(wake_held_request);
    ngx_log_debug!(
        mask: DebugMask::Http,
        r.log(),
        "intermission: holding request, ticket {} of {}, for at most {max_time} ms",
        ticket.0,
        AppLabel(name)
    );
    WORKER.with_borrow_mut(|worker| {
        worker
            .get_or_insert_with(|| Worker::new(table))
            .hold(app, ticket, phase, now + max_time, r)
    });
    PARK
}

/// How long `r` has been held, if it is held right now.
pub fn held_for(r: &HttpRequest) -> Option<Millis> {
    let ctx = r.context::<HoldContext>(module())?;
    ctx.released
        .get()
        .is_none()
        .then(|| nginx::now_ms().saturating_sub(ctx.held_since))
}

/// Ends `app`'s pause if it has reached its deadline (`intermission_max_pause`
/// or the `ttl` of the enable call), with a log line; true if this call
/// ended it. The caller releases what the worker holds.
pub fn end_pause_at_deadline(
    log: *mut ngx_log_t,
    table: AppTable<'static>,
    app: AppId,
    now: Millis,
) -> bool {
    let Some(held) = table.end_if_expired(app, now) else {
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

/// A 503 with `Retry-After`, through nginx's error handling (so
/// `error_page 503` applies): what the phase handler returns.
fn service_unavailable(r: &HttpRequest, retry_after: &'static str) -> ngx_int_t {
    // Without the header (out of memory) the answer is still a 503.
    r.add_response_header("Retry-After", retry_after);
    NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t
}

/// The write-event handler of a parked request.
unsafe extern "C" fn wake_held_request(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls request event handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return;
    };
    let woke = guard_ffi(r.log(), false, || {
        panic_probe::panic_if_asked(&r, Point::Wake);
        let Some(ctx) = r.context::<HoldContext>(module()) else {
            r.resume_phases();
            return true;
        };
        if ctx.released.get().is_some() && !ctx.woken.replace(true) {
            with_worker(Worker::one_woken);
        }
        if ctx.released.get().is_none() {
            // A write event that is not ours (the socket became writable).
            r.keep_parked();
        } else {
            r.resume_phases();
        }
        true
    });
    if !woke {
        // The panic was logged; the request must still get an answer.
        r.finalize(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
    }
}

unsafe extern "C" fn on_release_check(_event: *mut ngx_event_t) {
    guard_ffi(nginx::cycle_log(), (), release_due_requests)
}

/// Wakes this worker's requests that are due, in order. Called by the timer
/// and, right after a resume, by the control endpoint.
pub fn release_due_requests() {
    let now = nginx::now_ms();
    let Some((due, table)) = with_worker(|worker| {
        let free = nginx::free_connections().saturating_sub(CONNECTION_RESERVE + worker.waking);
        let due = worker.take_due(now, RELEASE_BATCH.min(free));
        worker.waking += due.len();
        (due, worker.table)
    }) else {
        return;
    };
    // The queue is no longer borrowed here: waking posts events, and nothing
    // in nginx calls back into the queue before they run.
    for (app, r, reason) in due {
        let Some(ctx) = r.context::<HoldContext>(module()) else {
            with_worker(Worker::one_woken);
            continue;
        };
        ngx_log_debug!(
            mask: DebugMask::Http,
            r.log(),
            "intermission: releasing ticket {} of {} ({reason:?})",
            ctx.ticket.0,
            AppLabel(&table.name(app))
        );
        ctx.released.set(Some(reason));
        table
            .state(app)
            .record_wait(now.saturating_sub(ctx.held_since));
        table.state(app).record_release(reason);
        if let Some(main) = IntermissionModule::main_conf(r.as_raw()) {
            // A request a resume lets through is in flight like one that
            // passed, for the next pause's drain.
            let counted = (reason == Release::Resumed).then(|| {
                table.header().in_flight().enter(ctx.in_flight);
                ctx.in_flight
            });
            main.variables
                .record_outcome(&r, Outcome::of_release(reason), counted);
            main.variables
                .record_wait(&r, now.saturating_sub(ctx.held_since));
        }
        if reason == Release::TimedOut {
            // Out of a paced backlog at its max_time: the next may go.
            table
                .state(app)
                .record_left_paced(ctx.held_in, ctx.ticket, now);
            let outcome = match ctx.on_timeout {
                OnTimeout::Pass => "passes".to_owned(),
                OnTimeout::Answer(status) => format!("is answered {status}"),
            };
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "intermission: request held for {} ms, its $intermission_max_time, {outcome} while {} {}",
                now.saturating_sub(ctx.held_since),
                AppLabel(&table.name(app)),
                if table.state(app).is_paused() {
                    "is still paused"
                } else {
                    "releases its requests at a paced rate"
                }
            );
        }
        r.post_wake();
    }
}
