//! Counting requests in flight: let through to the upstream while their app
//! was running, until nginx has finished with them. A drain waits for an
//! app's count to reach zero (`control::drain`).
//!
//! A request is counted as the phase handler lets it through, in this
//! worker's own slot (`worker_slot`), and counted out by a log-phase
//! handler, which nginx runs once for every main request as it frees it,
//! however it ended (a client that left, an upstream error, an internal
//! redirect on the way). The counter that counted it is kept in the
//! request's variables beside its outcome (see `variables.rs`), so nothing
//! is allocated.
//!
//! A request whose upstream switches protocols (101: a WebSocket) may stay
//! open for hours: a header filter moves it from the count drains wait for
//! to the app's `upgraded` count as its 101 goes out.

use std::cell::UnsafeCell;

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_DECLINED, NGX_HTTP_SWITCHING_PROTOCOLS, NGX_OK,
};
use ngx::http::HttpModuleMainConf;

use crate::config::MainConf;
use crate::nginx::HttpRequest;
use crate::nginx::{self, guard_ffi};
use crate::test_probe::{self, Point};
use crate::worker_slot::counting_slot;
use crate::{release, IntermissionModule};
use intermission_core::app_table::TableHeader;
use intermission_core::in_flight::{Counted, NameMemos};
use intermission_core::outcome::Outcome;
use intermission_core::settings::check_app_name;

/// This worker's memos of the app names it counted (`NameMemos`): with a
/// constant `$app_name`, every request after the first skips the keyed
/// hash and the probe for its entry.
struct WorkerMemos(UnsafeCell<NameMemos>);

// SAFETY: nginx runs a worker's HTTP handlers, and so `let_through_if`, the
// only user of `MEMOS`, on the worker's one event-loop thread (thread pools
// only read and write files); a process-local memo of that thread's own
// work, with no lock and nothing in shared memory.
unsafe impl Sync for WorkerMemos {}

static MEMOS: WorkerMemos = WorkerMemos(UnsafeCell::new(NameMemos::new()));

/// Lets a request through, counting it in flight. A request the module has
/// decided about already (it came back after an internal redirect, or was
/// released) goes on as it is. The path of every request while nothing is
/// paused: a variable lookup, the name compared with one counted before
/// (`NameMemos`; hashed only if it is new), one atomic add on the worker's
/// own slot and two static values written into the request.
pub fn let_through(r: &HttpRequest, main: &MainConf, header: &TableHeader) -> ngx_int_t {
    let_through_if(r, main, header, || true).unwrap_or(NGX_DECLINED as ngx_int_t)
}

/// As `let_through`, if `still_runs` (asked once the request is counted)
/// says that its app has not been paused meanwhile; else the count is
/// taken back and `None` returned, for the request to be decided as one of
/// a paused app. Counting first and looking after, while a pause flips
/// first and reads the counts after, a drain never misses a request that
/// goes upstream (`AppState::phase_now`).
pub fn let_through_if(
    r: &HttpRequest,
    main: &MainConf,
    header: &TableHeader,
    still_runs: impl FnOnce() -> bool,
) -> Option<ngx_int_t> {
    if main.variables.outcome_recorded(r) {
        return Some(NGX_DECLINED as ngx_int_t);
    }
    // A name too long to be an app is let through uncounted: it can be
    // neither paused nor drained (the paused path logs it).
    let counted = check_app_name(main.variables.app_name(r))
        .ok()
        .zip(counting_slot())
        .map(|(name, slot)| {
            // SAFETY: see `WorkerMemos`: only this thread reaches `MEMOS`,
            // and the reference ends with this call, which calls back
            // nothing that could reach `MEMOS` again.
            let memos = unsafe { &mut *MEMOS.0.get() };
            (slot, slot.enter_named(memos, header.name_key(), name))
        });
    test_probe::delay_if_asked(r, Point::Counted);
    if !still_runs() {
        if let Some((slot, counter)) = counted {
            slot.leave(counter, false);
        }
        return None;
    }
    let counted = counted.map(|(_, counter)| Counted::by(counter));
    main.variables.record_outcome(r, Outcome::Passed, counted);
    Some(NGX_DECLINED as ngx_int_t)
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
        if let Some(counted) = main.variables.counted_in_flight(&r) {
            if let Some(slot) = counting_slot() {
                slot.leave(counted.counter, counted.upgraded);
            }
        }
        NGX_OK as ngx_int_t
    })
}

const SWITCHING_PROTOCOLS: ngx_uint_t = NGX_HTTP_SWITCHING_PROTOCOLS as ngx_uint_t;

/// The module's header filter: sees every answer's status as it goes out.
/// Every answer but a 101 goes on at once: a load, a comparison and a jump
/// to the next filter.
pub unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    if let Some(request) = unsafe { HttpRequest::from_raw(r) } {
        if request.status() == SWITCHING_PROTOCOLS {
            switching_protocols(request);
        }
    }
    // SAFETY: as nginx called this filter.
    unsafe { nginx::next_header_filter(r) }
}

/// The header filter's part for a 101, out of the way of every other
/// answer's.
#[cold]
#[inline(never)]
fn switching_protocols(request: HttpRequest) {
    guard_ffi(request.log(), (), || {
        if let Some(main) = IntermissionModule::main_conf(request.as_raw()) {
            answer_going_out(&request, main);
        }
    });
}

/// The header filter's part: a main request counted in flight whose answer
/// switches protocols (101) leaves the count drains wait for and is
/// counted as upgraded until it ends. Every other answer: one comparison.
#[inline]
pub fn answer_going_out(r: &HttpRequest, main: &MainConf) {
    if r.status() != SWITCHING_PROTOCOLS || !r.is_main() {
        return;
    }
    let Some(counted) = main.variables.counted_in_flight(r) else {
        return;
    };
    if counted.upgraded {
        return;
    }
    if let Some(slot) = counting_slot() {
        slot.upgrade(counted.counter);
        main.variables.record_counted(
            r,
            Counted {
                upgraded: true,
                ..counted
            },
        );
    }
}
