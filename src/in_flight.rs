//! Counting requests in flight: let through to the upstream while their app
//! was running, until nginx has finished with them. A drain waits for an
//! app's count to reach zero (`control::drain`).
//!
//! A request is counted as the phase handler lets it through, in this
//! worker's own slot (`worker_slot`), and counted out by a log-phase
//! handler, which nginx runs once for every main request as it frees it,
//! however it ended (a client that left, an upstream error, an internal
//! redirect on the way). The counter that counted it is remembered in its
//! `$intermission_outcome` (see `variables.rs`), so nothing is allocated.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_DECLINED, NGX_OK};
use ngx::http::HttpModuleMainConf;

use crate::config::MainConf;
use crate::nginx::guard_ffi;
use crate::nginx::HttpRequest;
use crate::worker_slot::counting_slot;
use crate::{release, IntermissionModule};
use intermission_core::in_flight::InFlightCounter;
use intermission_core::outcome::Outcome;
use intermission_core::settings::check_app_name;

/// Lets a request through, counting it in flight. A request the module has
/// decided about already (it came back after an internal redirect, or was
/// released) goes on as it is. The path of every request while nothing is
/// paused: a variable lookup, a hash of the app name, one atomic add on the
/// worker's own slot and a pointer written into the request.
pub fn let_through(r: &HttpRequest, main: &MainConf) -> ngx_int_t {
    if !main.variables.outcome_recorded(r) {
        // A name too long to be an app is let through uncounted: it can be
        // neither paused nor drained (the paused path logs it).
        let counted = check_app_name(main.variables.app_name(r))
            .ok()
            .zip(counting_slot())
            .map(|(name, slot)| {
                let counter = InFlightCounter::of(name);
                slot.enter(counter);
                counter
            });
        main.variables.record_outcome(r, Outcome::Passed, counted);
    }
    NGX_DECLINED as ngx_int_t
}

/// The log-phase handler: counts a finished request out, and tells the
/// release engine a connection may have come free.
pub extern "C" fn request_finished(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls log-phase handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return NGX_OK as ngx_int_t;
    };
    guard_ffi(r.log(), NGX_OK as ngx_int_t, || {
        release::request_finished();
        // Subrequests share their main request's variables, and are logged
        // on their own only with `log_subrequest on`.
        if !r.is_main() {
            return NGX_OK as ngx_int_t;
        }
        let Some(main) = IntermissionModule::main_conf(r.as_raw()) else {
            return NGX_OK as ngx_int_t;
        };
        if let Some(counter) = main.variables.counted_in_flight(&r) {
            if let Some(slot) = counting_slot() {
                slot.leave(counter);
            }
        }
        NGX_OK as ngx_int_t
    })
}
