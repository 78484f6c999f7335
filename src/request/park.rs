//! Parking a request the way `limit_req` parks a delayed one: the phase
//! handler returns NGX_AGAIN with the read handler set to nginx's
//! `ngx_http_test_reading` (a client that closes is noticed at once and
//! finalized with 499) and the write handler set to `wake_held_request`.
//! Nothing runs for the request while it waits; the release engine posts
//! its write event when it lets it go.

use nginx_sys::{ngx_http_request_t, ngx_int_t};

use crate::module;
use crate::nginx::guard_ffi;
use crate::nginx::HttpRequest;
use crate::release::{self, HoldContext};
use crate::test_probe::{self, Point};
use intermission_core::decision::Answer;
use intermission_core::ids::Millis;

/// Parks `r` with `ctx` attached, for the engine to release by `deadline`
/// at the latest. False (and nothing done) if the request's pool is out of
/// memory.
pub fn park(r: &HttpRequest, ctx: HoldContext, deadline: Millis) -> bool {
    let (app, ticket, held_in) = (ctx.app(), ctx.ticket(), ctx.held_in());
    if r.attach_context(module(), ctx).is_none() {
        return false;
    }
    r.park(wake_held_request);
    release::hold(*r, app, ticket, held_in, deadline);
    true
}

/// The write-event handler of a parked request.
unsafe extern "C" fn wake_held_request(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls request event handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return;
    };
    let handled = guard_ffi(r.log(), false, || {
        test_probe::panic_if_asked(&r, Point::Wake);
        test_probe::delay_if_asked(&r, Point::Wake);
        let Some(ctx) = r.context::<HoldContext>(module()) else {
            r.resume_phases();
            return true;
        };
        if ctx.released().is_none() {
            // A write event that is not ours (the socket became writable).
            r.keep_parked();
            return true;
        }
        if ctx.finish_waking() {
            release::done_waking(ctx.app(), ctx.ticket(), Some(r));
        }
        // Runs the phase handler again, which passes the request on or
        // answers it; the request may be freed by the time this returns.
        r.resume_phases();
        true
    });
    if !handled {
        // The panic was logged and counted; the request must still get an
        // answer, and its upstream may be under maintenance: 503, as for a
        // request that could not be held.
        let answer = Answer::UNHELD;
        if let Some(retry_after) = answer.retry_after {
            r.add_response_header("Retry-After", retry_after);
        }
        r.finalize(answer.status as ngx_int_t);
    }
}
