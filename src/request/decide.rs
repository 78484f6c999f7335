//! The precontent phase handler: where every request of a location with
//! `intermission` meets the module.
//!
//! While nothing is paused it is counted in flight and goes on. A request of
//! a paused app is looked at (`intermission_core::decision`) and passes,
//! is answered at once, or is parked (`park`) for the release engine. A
//! parked request comes back here when it is let go, and passes on or gets
//! the answer its release calls for.

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, NGX_AGAIN, NGX_DECLINED, NGX_LOG_ERR, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::log::DebugMask;
use ngx::{ngx_log_debug, ngx_log_error};

use super::{agent_regex, park};
use crate::config::{LocConf, MainConf};
use crate::in_flight::{let_through, let_through_if};
use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest};
use crate::release::{self, HoldContext};
use crate::test_probe::{self, Point};
use crate::variables::RequestVariables;
use crate::{module, zone, IntermissionModule};
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::decision::{
    after_release, decide, AfterRelease, Answer, Decision, PausedRequest, Verdict,
};
use intermission_core::ids::{AppId, Millis, Phase};
use intermission_core::outcome::Outcome;
use intermission_core::pause::AppState;
use intermission_core::settings::{
    check_app_name, AgentRegex, AppLabel, AppNameTooLong, ExemptionCheck, LogSafe, OnTimeout,
    DEFAULT_MAX_TIME_MS,
};

const PASS: ngx_int_t = NGX_DECLINED as ngx_int_t;
const PARK: ngx_int_t = NGX_AGAIN as ngx_int_t;

/// The precontent phase handler of every location.
pub extern "C" fn hold_phase_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return PASS;
    };
    // A panic must not unwind into nginx; it is logged and counted, and the
    // request gets what the module's policy says for it (`after_panic`).
    guard_ffi(r.log(), None, || Some(handle(r))).unwrap_or_else(|| after_panic(&r))
}

/// The answer of a request whose phase handler panicked: while any app is
/// paused, 503 with `Retry-After` (it may be a paused app's, and a paused
/// app's upstream is under maintenance); else it passes, as if the module
/// were not there.
#[cold]
#[inline(never)]
fn after_panic(r: &HttpRequest) -> ngx_int_t {
    let paused = IntermissionModule::main_conf(r.as_raw())
        .and_then(MainConf::zone)
        .and_then(zone::header)
        .is_some_and(|header| header.any_paused());
    if !paused {
        return PASS;
    }
    answer_now(r, Answer::UNHELD)
}

/// The phase handler's steps: a request outside a location with
/// `intermission` passes; while nothing is paused it is counted and goes
/// on; one held before goes as its release says; else its app's state
/// decides, and it passes, is answered, or is held.
fn handle(r: HttpRequest) -> ngx_int_t {
    test_probe::panic_if_asked(&r, Point::Hold);
    let Some((location, main, header)) = holding_location(&r) else {
        return PASS;
    };
    // While nothing is paused, a request the module has not met yet: one
    // load, and it is counted in flight. One it has met (held and let go,
    // or back after an internal redirect) goes the whole way: a request
    // answered 503 at its max time, or by a stop, gets that answer even if
    // every pause has ended since.
    if !header.any_paused() && !main.variables.outcome_recorded(&r) {
        if let Some(rc) = let_through_if(&r, main, header, || !header.any_paused_now()) {
            return rc;
        }
        // A pause began as it was counted: it is decided as paused.
    }
    met_or_paused(r, location, main, header)
}

/// The rest of the phase handler's steps, for a request held before or of
/// a paused app; out of line, so that the path of every request while
/// nothing is paused stays short.
#[inline(never)]
fn met_or_paused(
    r: HttpRequest,
    location: &'static LocConf,
    main: &'static MainConf,
    header: &'static TableHeader,
) -> ngx_int_t {
    if let Some(ctx) = r.context::<HoldContext>(module()) {
        return back_after_hold(&r, ctx);
    }
    // Let through, rejected or answered once already: an internal redirect
    // brought it back, and what was decided stands.
    if main.variables.outcome_recorded(&r) {
        return PASS;
    }
    let table = zone::table(header);
    let vars = main.variables.read(&r);
    let name = match check_app_name(vars.app_name) {
        Ok(name) => name,
        Err(too_long) => return name_too_long(&r, main, header, too_long),
    };
    let (app, phase) = match paused_app(&r, main, header, table, name) {
        Ok(paused) => paused,
        Err(rc) => return rc,
    };
    let state = table.state(app);
    let now = nginx::now_ms();
    if release::end_expired_pause_and_tell_workers(r.log(), table, app, now) {
        if let Some(rc) = let_through_if(&r, main, header, app_runs(table, name)) {
            return rc;
        }
    }
    let decision = decision_for(&r, state, &vars);
    warn_invalid_variables(&r, &decision, &vars);
    let paused = Paused {
        r: &r,
        main,
        header,
        app,
        phase,
        state,
        name,
    };
    match decision.verdict {
        Verdict::Bypass(why) => {
            ngx_log_debug!(mask: DebugMask::Http, r.log(), "intermission: {why:?}: passes while paused");
            bypass(&r, main, state)
        }
        Verdict::Answer(answer) => paused.answer(answer),
        Verdict::Hold {
            max_time,
            on_timeout,
        } => paused.hold(location.max_held(), now, max_time, on_timeout),
    }
}

/// The configuration and zone of a main request in a location with
/// `intermission`: `None` for any other request, which passes.
fn holding_location(
    r: &HttpRequest,
) -> Option<(&'static LocConf, &'static MainConf, &'static TableHeader)> {
    let location = IntermissionModule::location_conf(r.as_raw()).filter(|l| l.holds())?;
    let main = IntermissionModule::main_conf(r.as_raw())?;
    let header = zone::header(main.zone()?)?;
    r.is_main().then_some((location, main, header))
}

/// A request held once already, back in the phase handler: while held, it
/// stays parked; once let go, it goes on or gets the answer its release
/// calls for, once: the answer's error page (an internal redirect, perhaps
/// to a location with `intermission`) brings it back here, and then it
/// passes.
fn back_after_hold(r: &HttpRequest, ctx: &HoldContext) -> ngx_int_t {
    match ctx.released() {
        None => PARK,
        Some(why) => match after_release(why, ctx.on_timeout()) {
            AfterRelease::Answer(answer) if ctx.take_answer() => answer_now(r, answer),
            _ => PASS,
        },
    }
}

/// A request whose `$app_name` is too long: no app by that name can be
/// paused (the control endpoint refuses it too), so it is let through,
/// uncounted.
fn name_too_long(
    r: &HttpRequest,
    main: &MainConf,
    header: &TableHeader,
    too_long: AppNameTooLong,
) -> ngx_int_t {
    header.record_app_name_too_long();
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "intermission: {too_long}, the request is not held"
    );
    let_through(r, main, header)
}

/// Whether the app named `name` runs (is not paused) right now.
fn app_runs<'a>(table: AppTable<'a>, name: &'a [u8]) -> impl Fn() -> bool + 'a {
    move || {
        table
            .find(name)
            .is_none_or(|app| !table.state(app).phase_now().is_paused())
    }
}

/// The app of the request and its phase, if it is paused; `Err` with the
/// phase handler's answer if it runs and the request was let through.
///
/// The phase is read once: a resume after this point releases the request
/// at the next pass, because its phase will no longer match. A request of a
/// running app is counted in flight, then the phase read again: a pause
/// that began meanwhile decides it (a few tries at most; past them it goes,
/// counted, as if it had come a moment earlier).
fn paused_app(
    r: &HttpRequest,
    main: &MainConf,
    header: &TableHeader,
    table: AppTable,
    name: &[u8],
) -> Result<(AppId, Phase), ngx_int_t> {
    let mut tries = 0;
    loop {
        let found = table.find(name).map(|app| (app, table.state(app).phase()));
        if let Some((app, phase)) = found.filter(|(_, phase)| phase.is_paused()) {
            return Ok((app, phase));
        }
        tries += 1;
        if tries > 4 {
            return Err(let_through(r, main, header));
        }
        if let Some(rc) = let_through_if(r, main, header, app_runs(table, name)) {
            return Err(rc);
        }
    }
}

/// What becomes of a request of a paused app: it passes (an exemption, or
/// no max time), is answered at once, or is held.
fn decision_for(r: &HttpRequest, state: &AppState, vars: &RequestVariables) -> Decision {
    let log = r.log();
    let regex_matches =
        |expression: AgentRegex<'_>, agent: &[u8]| agent_regex::matches(expression, agent, log);
    decide(&PausedRequest {
        stopped: state.is_stopped(),
        exemption: ExemptionCheck {
            uri: r.uri(),
            user_agent: r.user_agent(),
            health_check_path: vars.health_check_path,
            bypass: vars.bypass,
            privileged_user_agent: vars.privileged_user_agent,
            regex_matches: &regex_matches,
        },
        max_time: vars.max_time,
        on_timeout: vars.on_timeout,
        shutting_down: release::shutting_down_for_good(),
    })
}

/// Logs the values of `$intermission_max_time` and `$intermission_on_timeout`
/// that the decision could not use, and what it used instead.
fn warn_invalid_variables(r: &HttpRequest, decision: &Decision, vars: &RequestVariables) {
    if let Some(invalid) = decision.invalid_max_time {
        ngx_log_error!(
            NGX_LOG_WARN,
            r.log(),
            "intermission: invalid $intermission_max_time \"{}\" ({invalid}), using the default of {} s",
            LogSafe(vars.max_time.unwrap_or_default()),
            DEFAULT_MAX_TIME_MS / 1000
        );
    }
    if decision.invalid_on_timeout {
        ngx_log_error!(
            NGX_LOG_WARN,
            r.log(),
            "intermission: invalid $intermission_on_timeout \"{}\" (not \"pass\", \"503\" or \"504\"), using \"pass\"",
            LogSafe(vars.on_timeout.unwrap_or_default())
        );
    }
}

/// A request of a paused app, once decided to be answered or held.
struct Paused<'r> {
    r: &'r HttpRequest,
    main: &'static MainConf,
    header: &'static TableHeader,
    app: AppId,
    /// The app's phase when the request was looked at.
    phase: Phase,
    state: &'r AppState,
    name: &'r [u8],
}

impl Paused<'_> {
    /// Answers the request at once (a stop's or a shutdown's 503), and
    /// counts it.
    fn answer(&self, answer: Answer) -> ngx_int_t {
        let Paused { r, main, state, .. } = *self;
        if answer == Answer::STOPPED {
            state.record_refused_while_stopped();
        } else if answer == Answer::SHUTDOWN {
            state.record_refused_at_shutdown();
        }
        main.variables.record_outcome(r, answer.outcome, None);
        answer_now(r, answer)
    }

    /// Holds the request for at most `max_time` from `now`, unless its app
    /// holds `max_held` already or the request cannot be held (503).
    fn hold(
        &self,
        max_held: Option<u64>,
        now: Millis,
        max_time: Millis,
        on_timeout: OnTimeout,
    ) -> ngx_int_t {
        let Paused {
            r,
            main,
            header,
            app,
            phase,
            state,
            name,
        } = *self;
        if !release::is_running() {
            // A worker whose engine did not start can hold nothing, and
            // the app is paused: never the upstream under maintenance.
            return self.unheld("this worker's release engine did not start");
        }
        if !state.try_record_held(max_held) {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "intermission: {} already holds its intermission_max_held of {} requests, answering 503",
                AppLabel(name),
                max_held.unwrap_or_default()
            );
            main.variables.record_outcome(r, Outcome::Rejected, None);
            return answer_now(r, Answer::REJECTED);
        }
        let ticket = state.take_ticket();
        let held = park::park(
            r,
            HoldContext::new(
                app,
                ticket,
                phase,
                now,
                on_timeout,
                header.name_key().app_key(name),
            ),
            now + max_time,
        );
        if !held {
            state.count_out_unheld();
            return self.unheld("out of memory");
        }
        state.record_hold_time(now);
        main.variables.record_outcome(r, Outcome::Held, None);
        ngx_log_debug!(
            mask: DebugMask::Http,
            r.log(),
            "intermission: holding request, ticket {} of {}, for at most {max_time} ms",
            ticket.0,
            AppLabel(name)
        );
        PARK
    }

    /// A request the module cannot hold: answered 503, as when the app
    /// holds its `intermission_max_held`, and counted.
    fn unheld(&self, why: &str) -> ngx_int_t {
        let Paused {
            r,
            main,
            state,
            name,
            ..
        } = *self;
        state.record_unheld();
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: {why}: a request of {} is answered 503 instead of held",
            AppLabel(name)
        );
        main.variables.record_outcome(r, Outcome::Unheld, None);
        answer_now(r, Answer::UNHELD)
    }
}

/// Lets a request of a paused app through without holding it, and counts
/// it (`bypassed`): one atomic add, on the paused path only.
fn bypass(r: &HttpRequest, main: &MainConf, state: &AppState) -> ngx_int_t {
    state.record_bypassed();
    main.variables.record_outcome(r, Outcome::Bypassed, None);
    PASS
}

/// An answer of the module's own, through nginx's error handling (so
/// `error_page` applies): what the phase handler returns.
fn answer_now(r: &HttpRequest, answer: Answer) -> ngx_int_t {
    if let Some(retry_after) = answer.retry_after {
        // Without the header (out of memory) the answer is still given.
        r.add_response_header("Retry-After", retry_after);
    }
    answer.status as ngx_int_t
}
