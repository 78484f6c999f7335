//! `WorkerEvent`: an event of the worker's own in nginx's event loop,
//! posted to run soon or armed as a timer.

use std::mem::MaybeUninit;
use std::ptr;

use nginx_sys::ngx_event_t;

use super::process::{cycle_log, now_ms};

/// An event of the worker's own, owning its `ngx_event_t`: posted to run
/// later in this turn of the event loop or the next, or armed as a timer.
///
/// It has no `Drop`: the events live in the worker's state until the process
/// exits, and touching nginx's timer tree or posted queues during exit
/// (after a fast shutdown has freed other events) would be unsafe.
pub struct WorkerEvent {
    event: Box<ngx_event_t>,
}

impl WorkerEvent {
    /// An event that calls `handler`. As a timer it is not cancelable: a
    /// worker that shuts down gracefully (a reload) waits while it is
    /// armed, so the requests it holds are not dropped.
    pub fn new(handler: unsafe extern "C" fn(*mut ngx_event_t)) -> Self {
        // SAFETY: an all-zero `ngx_event_t` is nginx's own idle event state.
        let mut event: Box<ngx_event_t> = Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        event.handler = Some(handler);
        event.log = cycle_log();
        event.data = ptr::null_mut();
        event.set_cancelable(0);
        WorkerEvent { event }
    }

    /// Runs the handler later in this turn of the event loop, after the
    /// events already posted (requests woken just before run first).
    pub fn post(&mut self) {
        // SAFETY: the event is boxed and lives as long as the worker; posting
        // an event that is already posted does nothing.
        unsafe {
            nginx_sys::ngx_post_event(
                &mut *self.event,
                ptr::addr_of_mut!(nginx_sys::ngx_posted_events),
            )
        }
    }

    /// Runs the handler on the next turn of the event loop, after nginx has
    /// read the events that are waiting (a 0 ms timer would run again in
    /// this turn, since nginx's clock stands still within a turn).
    pub fn post_next_turn(&mut self) {
        // SAFETY: as in `post`.
        unsafe {
            nginx_sys::ngx_post_event(
                &mut *self.event,
                ptr::addr_of_mut!(nginx_sys::ngx_posted_next_events),
            )
        }
    }

    /// The time the timer is armed for, if it is.
    pub fn armed_at(&self) -> Option<u64> {
        (self.event.timer_set() != 0).then_some(self.event.timer.key as u64)
    }

    /// Arms the timer for `at` on nginx's clock, replacing an earlier
    /// setting exactly (nginx's own `ngx_add_timer` keeps an old setting
    /// less than 300 ms away). Never for now or before: nginx's clock
    /// stands still within a turn of its event loop, and a timer due now
    /// would run again in the same turn, forever.
    pub fn arm_at(&mut self, at: u64) {
        let at = at.max(now_ms() + 1);
        if self.armed_at() == Some(at) {
            return;
        }
        self.disarm();
        let after = at.saturating_sub(now_ms());
        // SAFETY: the event is boxed, so its address is stable for as long as
        // the worker lives; it is only touched from this worker's thread.
        unsafe { nginx_sys::ngx_add_timer(&mut *self.event, after as _) }
    }

    pub fn disarm(&mut self) {
        if self.event.timer_set() != 0 {
            // SAFETY: the event is in the timer tree (`timer_set`).
            unsafe { nginx_sys::ngx_del_timer(&mut *self.event) }
        }
    }
}
