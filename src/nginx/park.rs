//! Keeping a request waiting and letting it go on: parking it in a phase
//! handler or after its content phase, waking it through its connection's
//! write event, and running its phases again. The request's event handlers
//! are written here.

use std::ptr;

use nginx_sys::{
    ngx_http_block_reading, ngx_http_core_run_phases, ngx_http_request_t, ngx_http_test_reading,
    ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR,
};
use ngx::core::Status;

use super::bits::{intermission_request_discard_body, intermission_request_hold_main};
use super::request::HttpRequest;

impl HttpRequest {
    /// Keeps the request open after its content handler returns NGX_DONE,
    /// for an answer sent later (by `finalize` after a `send_*`). A client
    /// that closes meanwhile ends the request, and with it what is attached.
    pub fn wait_after_content_phase(&self) {
        let r = self.as_ptr();
        // SAFETY: a live request, whose main request is live; the C helpers
        // touch only its flags and the main request's count. The handlers
        // are written through the request pointer, with no reference into
        // the request held meanwhile (single-threaded worker).
        unsafe {
            intermission_request_hold_main(r);
            if intermission_request_discard_body(r) == 0 {
                (*r).read_event_handler = Some(ngx_http_test_reading);
            }
            (*r).write_event_handler = Some(nginx_sys::ngx_http_request_empty_handler);
        }
    }

    /// Parks the request inside a phase handler that is about to return
    /// NGX_AGAIN, as `limit_req` does for a delay: a client that closes is
    /// noticed at once (and finalized with 499 by nginx), and the next write
    /// event of the connection goes to `on_wake`.
    pub fn park(&self, on_wake: unsafe extern "C" fn(*mut ngx_http_request_t)) {
        let r = self.as_ptr();
        // SAFETY: a live request; its handlers are written through the
        // request pointer, with no reference into the request held meanwhile.
        unsafe {
            (*r).read_event_handler = Some(ngx_http_test_reading);
            (*r).write_event_handler = Some(on_wake);
        }
    }

    /// Schedules the parked request's write event to run later in this
    /// event-loop turn. Requests posted in order run in that order.
    pub fn post_wake(&self) {
        // SAFETY: the request's connection and its write event are live while
        // the request is; `ngx_posted_events` is the worker's posted queue.
        unsafe {
            let write = (*self.as_raw().connection).write;
            nginx_sys::ngx_post_event(write, ptr::addr_of_mut!(nginx_sys::ngx_posted_events));
        }
    }

    /// For a write event that arrives while the request is still parked: keep
    /// waiting (re-arming the event where the event method needs it).
    pub fn keep_parked(&self) {
        // SAFETY: the connection's write event is live with the request.
        let failed = unsafe {
            nginx_sys::ngx_handle_write_event((*self.as_raw().connection).write, 0)
                != Status::NGX_OK.0
        };
        if failed {
            self.finalize(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        }
    }

    /// Leaves the parked state and runs the request's phases again from the
    /// handler that parked it.
    pub fn resume_phases(&self) {
        let r = self.as_ptr();
        // SAFETY: the connection's read event is live with the request; the
        // handlers are nginx's own, as `limit_req` installs them on resume,
        // written through the request pointer with no reference into the
        // request held meanwhile.
        unsafe {
            if nginx_sys::ngx_handle_read_event((*(*r).connection).read, 0) != Status::NGX_OK.0 {
                self.finalize(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
                return;
            }
            (*r).read_event_handler = Some(ngx_http_block_reading);
            (*r).write_event_handler = Some(ngx_http_core_run_phases);
            ngx_http_core_run_phases(r);
        }
    }
}
