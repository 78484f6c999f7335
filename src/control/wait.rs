//! Control answers that wait: for the state file's write that the call
//! asked for (at most `WRITE_WAIT_MS`), then, for `enable?drain=...`, for
//! the app to drain.
//!
//! The control request waits without blocking its worker: its content
//! handler returns NGX_DONE with the request kept open. The writer thread
//! tells the event loop when it has written (`on_state_written`), and a
//! timer of the request's own bounds the wait; a drain looks at the
//! in-flight counts every few milliseconds. That is one timer per waiting
//! control request, never one per held request. A client that gives up
//! ends the request, and the timer goes with it.

use nginx_sys::{
    ngx_event_t, ngx_int_t, ngx_uint_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ALERT,
    NGX_LOG_WARN,
};
use ngx::ngx_log_error;

use super::drain::Drain;
use crate::module;
use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest, RequestContext, RequestTimer};
use crate::state_file::{self, Ask, WriteOutcome};
use intermission_core::ids::Millis;
use intermission_core::settings::Seconds;

/// How often a drain looks at the in-flight counts: an answer comes within
/// this of the last request finishing.
const DRAIN_CHECK_EVERY_MS: u64 = 10;

/// The longest a control answer waits for the state file's write. The
/// change is in effect in the zone from the start: past this the answer
/// goes, and the write goes on (a slow or hung disk).
const WRITE_WAIT_MS: Millis = 5_000;

/// What the answer is once the write is done.
pub enum Then {
    /// A fixed answer.
    Answer {
        status: ngx_uint_t,
        body: &'static [u8],
    },
    /// The answer of a drain, once it is over.
    Drain(Drain),
}

/// Attached to a control request while it waits.
struct Waiting {
    request: HttpRequest,
    /// The write it waits for, and until when.
    write: std::cell::Cell<Option<(Ask, Millis)>>,
    then: Then,
    timer: RequestTimer,
}

impl RequestContext for Waiting {
    fn on_request_freed(&self) {
        WAITING.with_borrow_mut(|waiting| waiting.retain(|&r| r != self.request));
    }
}

thread_local! {
    /// This worker's control requests waiting for a write of the state file.
    static WAITING: std::cell::RefCell<Vec<HttpRequest>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The writer thread has written the state file: the requests waiting for
/// it look again.
pub fn on_state_written() {
    let waiting = WAITING.with_borrow(Vec::clone);
    for r in waiting {
        look(r);
    }
}

/// Answers `r` with `then`, after the write `write` (if any): now if
/// nothing is left to wait for, else later (NGX_DONE).
pub fn answer_after(r: &HttpRequest, write: Option<Ask>, then: Then, now: Millis) -> ngx_int_t {
    if let (None, Then::Answer { status, body }) = (write, &then) {
        return r.send_text(*status, body);
    }
    let waiting = Waiting {
        request: *r,
        write: std::cell::Cell::new(write.map(|ask| (ask, now.saturating_add(WRITE_WAIT_MS)))),
        then,
        timer: RequestTimer::new(*r, on_check),
    };
    let Some(waiting) = r.attach_context(module(), waiting) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    if let Some(answer) = waiting.answer(r, now) {
        return answer;
    }
    if waiting.write.get().is_some() {
        WAITING.with_borrow_mut(|waiting| waiting.push(*r));
    }
    waiting.arm_timer(now);
    r.wait_after_content_phase();
    NGX_DONE as ngx_int_t
}

impl Waiting {
    /// The answer, if the wait is over at `now`.
    fn answer(&self, r: &HttpRequest, now: Millis) -> Option<ngx_int_t> {
        if let Some((ask, until)) = self.write.get() {
            match state_file::write_outcome(ask) {
                WriteOutcome::Pending if now < until => return None,
                WriteOutcome::Pending => {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        r.log(),
                        "intermission: the state file is still being written after {} (a slow \
                         disk?); the change is in effect, and a restart before the write ends \
                         would not restore it",
                        Seconds(WRITE_WAIT_MS)
                    );
                }
                WriteOutcome::Written => {}
                WriteOutcome::Failed(ref e) => {
                    ngx_log_error!(
                        NGX_LOG_ALERT,
                        r.log(),
                        "intermission: cannot write the state file: {e}; a restart would not \
                         restore this change"
                    );
                }
            }
        }
        if self.write.take().is_some() {
            WAITING.with_borrow_mut(|waiting| waiting.retain(|&w| w != *r));
        }
        match &self.then {
            Then::Answer { status, body } => Some(r.send_text(*status, body)),
            Then::Drain(drain) => drain.answer(r, now),
        }
    }

    /// Sets the timer: the bound of a write (the writer thread tells when
    /// it is done), or a drain's next look.
    fn arm_timer(&self, now: Millis) {
        match self.write.get() {
            Some((_, until)) => self.timer.arm(until.saturating_sub(now).max(1)),
            None => self.timer.arm(DRAIN_CHECK_EVERY_MS),
        }
    }
}

/// Looks whether `r`'s wait is over, and answers it if it is.
fn look(r: HttpRequest) {
    let answered = guard_ffi(
        r.log(),
        Some(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t),
        || {
            let waiting = r.context::<Waiting>(module())?;
            let now = nginx::now_ms();
            let answer = waiting.answer(&r, now);
            if answer.is_none() {
                waiting.arm_timer(now);
            }
            answer
        },
    );
    // Finalizing may free the request, its context and its timer: nothing
    // of them is touched after it.
    if let Some(rc) = answered {
        r.finalize(rc);
    }
}

unsafe extern "C" fn on_check(event: *mut ngx_event_t) {
    // SAFETY: the event is a `Waiting`'s timer, which is dropped (and taken
    // out of the timer tree) with its request: the request is live.
    if let Some(r) = unsafe { RequestTimer::request_of(event) } {
        look(r);
    }
}
