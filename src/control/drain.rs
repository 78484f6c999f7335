//! Draining: `.../enable?drain=TIME` pauses, then answers once no request of
//! the app that was let through before the pause is still in flight (200),
//! or when the time is up (504 with the number still in flight). The pause
//! stays on either way. The control request waits as `wait` says.

use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_LOG_WARN};
use ngx::ngx_log_error;

use super::ENABLED;
use crate::nginx::HttpRequest;
use crate::{config, release, zone};
use intermission_core::app_table::AppTable;
use intermission_core::ids::{AppId, Millis};
use intermission_core::in_flight::AppKey;
use intermission_core::settings::{AppLabel, Seconds};
use intermission_core::worker_slots::WorkerSlots;

const HTTP_OK: ngx_uint_t = 200;
const HTTP_CONFLICT: ngx_uint_t = 409;
const HTTP_GATEWAY_TIMEOUT: ngx_uint_t = 504;

/// A drain of one app, from the pause on.
pub struct Drain {
    table: AppTable<'static>,
    slots: WorkerSlots<'static>,
    app: AppId,
    counter: AppKey,
    started: Millis,
    until: Millis,
}

impl Drain {
    /// A drain of `app` (named `name`), begun at `now`, for at most `drain_ms`.
    pub fn new(
        table: AppTable<'static>,
        app: AppId,
        name: &[u8],
        drain_ms: Millis,
        now: Millis,
    ) -> Self {
        Drain {
            table,
            slots: zone::worker_slots(table.header()),
            app,
            counter: table.header().name_key().app_key(name),
            started: now,
            until: now.saturating_add(drain_ms),
        }
    }

    /// The answer if the drain is over at `now`: drained, timed out, or the
    /// pause ended meanwhile (a disable, or its deadline).
    pub fn answer(&self, r: &HttpRequest, now: Millis) -> Option<ngx_int_t> {
        release::end_expired_pause_and_tell_workers(r.log(), self.table, self.app, now);
        // A worker that died with requests in flight no longer counts.
        release::reclaim_dead_workers(now);
        // Read after the pause (SeqCst): see `AppState::phase_now`.
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
                config::audit_level(),
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
