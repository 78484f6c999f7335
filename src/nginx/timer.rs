//! `RequestTimer`: a timer of nginx's event loop whose handler gets a
//! request, for a request that waits with no event of its own.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use nginx_sys::ngx_event_t;

use super::request::HttpRequest;

/// A timer whose handler gets a request: for a request that waits with no
/// event of its own (a control request waiting for a drain). Keep it in the
/// request's attached context: dropping it removes it from the timer tree.
pub struct RequestTimer {
    event: NonNull<ngx_event_t>,
}

impl RequestTimer {
    pub fn new(r: HttpRequest, handler: unsafe extern "C" fn(*mut ngx_event_t)) -> Self {
        // SAFETY: an all-zero `ngx_event_t` is nginx's own idle event state.
        let mut event: Box<ngx_event_t> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        event.handler = Some(handler);
        event.log = r.log();
        event.data = r.as_ptr().cast();
        // Not cancelable: a worker retired by a reload finishes the wait
        // (bounded by its time) instead of cutting the request off.
        event.set_cancelable(0);
        RequestTimer {
            event: NonNull::from(Box::leak(event)),
        }
    }

    pub fn arm(&self, after_ms: u64) {
        // SAFETY: the event is owned by this timer and lives until its drop;
        // only this worker's thread touches it.
        unsafe { nginx_sys::ngx_add_timer(self.event.as_ptr(), after_ms as _) }
    }

    /// The request of a `RequestTimer`'s event, in its handler.
    ///
    /// # Safety
    /// `event` must be the event of a `RequestTimer` that is still attached
    /// to its request (so the request is live).
    pub unsafe fn request_of(event: *mut ngx_event_t) -> Option<HttpRequest> {
        // SAFETY: forwarded from the caller.
        unsafe { HttpRequest::from_raw((*event).data.cast()) }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // SAFETY: the event came from `Box::leak` in `new` and is freed only
        // here; if it is in the timer tree it is taken out first. Its handler
        // may be running (a handler that finalizes its request frees it), but
        // nginx does not touch an expired event after calling the handler.
        unsafe {
            let event = self.event.as_ptr();
            if (*event).timer_set() != 0 {
                nginx_sys::ngx_del_timer(event);
            }
            drop(Box::from_raw(event));
        }
    }
}
