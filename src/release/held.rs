//! What the module keeps with a request it holds, for the life of the
//! request: which app and ticket, when and in which pause it was held, and
//! once it is let go, why.

use std::cell::Cell;

use nginx_sys::{ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t};

use crate::module;
use crate::nginx::{self, HttpRequest, RequestContext};
use crate::variables::fill_reported;
use intermission_core::ids::{AppId, Millis, Phase, Release, Ticket};
use intermission_core::in_flight::AppKey;
use intermission_core::outcome::Outcome;
use intermission_core::settings::OnTimeout;

/// Attached to every request this module held.
pub struct HoldContext {
    /// `None` while held; then why it was let go.
    pub(super) released: Cell<Option<Release>>,
    /// Released, and done waking: its write event has run (it went on with
    /// its phases).
    pub(super) done_waking: Cell<bool>,
    /// The module gave it its own answer (503/504) already: an error page
    /// that brings it back through a location with `intermission` passes.
    answered: Cell<bool>,
    /// Released to the upstream: counted in the engine's requests in
    /// progress until it is freed.
    pub(super) upstream: Cell<bool>,
    pub(super) app: AppId,
    pub(super) ticket: Ticket,
    /// The app's phase when it was held: which pause (and paced release).
    pub(super) held_in: Phase,
    pub(super) held_since: Millis,
    /// What it gets if its `$intermission_max_time` passes while still paused.
    pub(super) on_timeout: OnTimeout,
    /// Its app, as in-flight counting knows it: counted in flight once a
    /// resume lets it through.
    pub(super) in_flight: AppKey,
}

impl HoldContext {
    pub fn new(
        app: AppId,
        ticket: Ticket,
        held_in: Phase,
        held_since: Millis,
        on_timeout: OnTimeout,
        in_flight: AppKey,
    ) -> Self {
        HoldContext {
            released: Cell::new(None),
            done_waking: Cell::new(false),
            answered: Cell::new(false),
            upstream: Cell::new(false),
            app,
            ticket,
            held_in,
            held_since,
            on_timeout,
            in_flight,
        }
    }

    /// `None` while the request is held; then why it was let go.
    pub fn released(&self) -> Option<Release> {
        self.released.get()
    }

    pub fn on_timeout(&self) -> OnTimeout {
        self.on_timeout
    }

    /// The request's write event ran after its release: marks it done
    /// waking, and returns true the first time only (the engine counts it
    /// out of its requests waking once).
    pub fn finish_waking(&self) -> bool {
        self.released.get().is_some() && !self.done_waking.replace(true)
    }

    /// The module is about to give the request its own answer: returns true
    /// the first time only (the answer goes through nginx's `error_page`
    /// handling, whose redirect may run this module's phase handler again).
    pub fn take_answer(&self) -> bool {
        !self.answered.replace(true)
    }

    pub fn app(&self) -> AppId {
        self.app
    }

    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    pub fn held_in(&self) -> Phase {
        self.held_in
    }
}

impl RequestContext for HoldContext {
    fn on_request_freed(&self) {
        if self.upstream.get() {
            super::upstream_request_ended();
        }
        match self.released.get() {
            // Its client went away (nginx finalized it with 499) or its
            // connection was closed: it leaves the queue without delaying
            // the requests behind it.
            None => super::client_gone(self),
            // Released, but freed before its wake-up ran: it opens no
            // upstream connection.
            Some(_) if !self.done_waking.get() => super::done_waking(self.app, self.ticket, None),
            // Run on: it leaves the order now if it had not yet.
            Some(_) => super::run_on_request_freed(self.app, self.ticket),
        }
    }
}

/// The request this module holds, if it is held right now, and how long it
/// has waited.
pub fn held_for(r: &HttpRequest) -> Option<Millis> {
    let ctx = r.context::<HoldContext>(module())?;
    ctx.released
        .get()
        .is_none()
        .then(|| nginx::now_ms().saturating_sub(ctx.held_since))
}

/// `$intermission_outcome` of a request the module has written none for: a
/// request held right now ("held", as when its client leaves while held:
/// the access log runs before the request's context is dropped), or one the
/// module never saw (not found: "-" in the access log).
pub unsafe extern "C" fn report_outcome(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and its value.
    unsafe {
        fill_reported(r, v, |r, value| match held_for(r) {
            Some(_) => value.set(Outcome::Held.text()),
            None => value.set_not_found(),
        })
    }
}

/// `$intermission_wait` the module has written none for: how long a request
/// still held has waited, else empty (the request was not held).
pub unsafe extern "C" fn report_wait(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and its value.
    unsafe {
        fill_reported(r, v, |r, value| match held_for(r) {
            Some(ms) => value.set_copy(r, ms.to_string().as_bytes()),
            None => value.set(b""),
        })
    }
}

/// `$intermission_ticket`: the place of a request the module held in its
/// app's arrival order (a number from the app's ticket counter, shared by
/// all workers), so that logs and upstreams can check the order; not found
/// for a request that was not held.
pub unsafe extern "C" fn report_ticket(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls get handlers with a live request and its value.
    unsafe {
        fill_reported(r, v, |r, value| match r.context::<HoldContext>(module()) {
            Some(ctx) => value.set_copy(r, ctx.ticket.0.to_string().as_bytes()),
            None => value.set_not_found(),
        })
    }
}
