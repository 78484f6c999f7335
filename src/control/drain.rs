//! Draining: `.../enable?drain=TIME` pauses, then answers once no request of
//! the app that was let through before the pause is still in flight (200),
//! or when the time is up (504 with the number still in flight). The pause
//! stays on either way.
//!
//! The control request waits without blocking its worker: its content
//! handler returns NGX_DONE with the request kept open, and a timer of its
//! own looks at the app's in-flight counter every few milliseconds until it
//! answers. That is one timer per waiting control request, never one per
//! held request. A client that gives up ends the request, and the timer
//! goes with it.

use nginx_sys::{
    ngx_event_t, ngx_int_t, ngx_shm_zone_t, ngx_uint_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::ngx_log_error;

use super::ENABLED;
use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest, RequestContext, RequestTimer};
use crate::{module, release, zone};
use intermission_core::app_table::AppTable;
use intermission_core::ids::{AppId, Millis};
use intermission_core::in_flight::AppKey;
use intermission_core::settings::{AppLabel, Seconds};
use intermission_core::worker_slots::WorkerSlots;

/// How often a waiting drain looks at the in-flight count: an answer comes
/// within this of the last request finishing.
const DRAIN_CHECK_INTERVAL_MS: u64 = 10;

const HTTP_OK: ngx_uint_t = 200;
const HTTP_CONFLICT: ngx_uint_t = 409;
const HTTP_GATEWAY_TIMEOUT: ngx_uint_t = 504;

/// Attached to a control request while it waits for its app to drain.
struct DrainWait {
    zone: &'static ngx_shm_zone_t,
    table: AppTable<'static>,
    slots: WorkerSlots<'static>,
    app: AppId,
    counter: AppKey,
    started: Millis,
    until: Millis,
    timer: RequestTimer,
}

impl RequestContext for DrainWait {
    fn on_request_freed(&self) {}
}

/// Answers an enable with `drain` once `app` (just paused, or paused
/// already) has drained: now if it has, else later (NGX_DONE).
pub fn answer_when_drained(
    r: &HttpRequest,
    zone: &'static ngx_shm_zone_t,
    table: AppTable<'static>,
    app: AppId,
    name: &[u8],
    drain_ms: Millis,
    now: Millis,
) -> ngx_int_t {
    let wait = DrainWait {
        zone,
        table,
        slots: zone::worker_slots(table.header()),
        app,
        counter: table.header().name_key().app_key(name),
        started: now,
        until: now.saturating_add(drain_ms),
        timer: RequestTimer::new(*r, on_drain_check),
    };
    if let Some(answer) = wait.answer(r, now) {
        return answer;
    }
    let Some(wait) = r.attach_context(module(), wait) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    wait.timer.arm(DRAIN_CHECK_INTERVAL_MS);
    r.wait_after_content_phase();
    NGX_DONE as ngx_int_t
}

impl DrainWait {
    /// The answer if the wait is over at `now`: drained, timed out, or the
    /// pause ended meanwhile (a disable, or its deadline).
    fn answer(&self, r: &HttpRequest, now: Millis) -> Option<ngx_int_t> {
        release::end_pause_at_deadline(r.log(), self.zone, self.table, self.app, now);
        // A worker that died with requests in flight no longer counts.
        release::reclaim_dead_workers(now);
        let in_flight = self.slots.in_flight(self.counter).requests;
        let paused = self.table.state(self.app).is_paused();
        if paused && in_flight != 0 && now < self.until {
            return None;
        }
        // Over: the name is read (and allocated) only for the answer's log line.
        let name = self.table.name(self.app);
        let waited = Seconds(now.saturating_sub(self.started));
        let requests = if in_flight == 1 {
            "request"
        } else {
            "requests"
        };
        if !paused {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "intermission: the pause of {} ended while it drained, after {waited}, \
                 with {in_flight} {requests} in flight",
                AppLabel(&name)
            );
            let body =
                format!("Pause ended before the app drained: {in_flight} {requests} in flight.\n");
            return Some(r.send_text(HTTP_CONFLICT, body.as_bytes()));
        }
        if in_flight == 0 {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                r.log(),
                "intermission: {} drained after {waited}: no request in flight",
                AppLabel(&name)
            );
            return Some(r.send_text(HTTP_OK, ENABLED));
        }
        ngx_log_error!(
            NGX_LOG_WARN,
            r.log(),
            "intermission: {} did not drain in {waited}: {in_flight} {requests} still in flight; \
             it stays paused",
            AppLabel(&name)
        );
        let body = format!("Pause enabled, but {in_flight} {requests} still in flight.\n");
        Some(r.send_text(HTTP_GATEWAY_TIMEOUT, body.as_bytes()))
    }
}

unsafe extern "C" fn on_drain_check(event: *mut ngx_event_t) {
    // SAFETY: the event is a `DrainWait`'s timer, which is dropped (and taken
    // out of the timer tree) with its request: the request is live.
    let Some(r) = (unsafe { RequestTimer::request_of(event) }) else {
        return;
    };
    let answered = guard_ffi(
        r.log(),
        Some(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t),
        || {
            let wait = r.context::<DrainWait>(module())?;
            let answer = wait.answer(&r, nginx::now_ms());
            if answer.is_none() {
                wait.timer.arm(DRAIN_CHECK_INTERVAL_MS);
            }
            answer
        },
    );
    // Finalizing may free the request, its context and this timer: nothing
    // of them is touched after it.
    if let Some(rc) = answered {
        r.finalize(rc);
    }
}
