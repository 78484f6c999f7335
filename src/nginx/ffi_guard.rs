//! `guard_ffi`: no panic unwinds into nginx. A panic at an FFI boundary is
//! caught, logged and counted (in the zone, for status and metrics).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use nginx_sys::ngx_log_t;

/// Where `guard_ffi` counts the panics it catches (the zone's counter, for
/// status and metrics); set once as the worker starts.
static PANIC_COUNTER: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());

/// Counts the panics `guard_ffi` catches in `counter` from now on.
pub fn count_panics_in(counter: &'static AtomicU64) {
    PANIC_COUNTER.store(ptr::from_ref(counter).cast_mut(), Ordering::Relaxed);
}

/// Runs `f` at an FFI boundary: a panic must never unwind into nginx. It is
/// logged, counted, and `fallback` returned instead.
#[inline(always)]
pub fn guard_ffi<T>(log: *mut ngx_log_t, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            report_panic(log, panic);
            fallback
        }
    }
}

/// Counts and logs a panic `guard_ffi` caught. Out of line: the handlers
/// every request runs through keep no room for its formatting.
#[cold]
#[inline(never)]
fn report_panic(log: *mut ngx_log_t, panic: Box<dyn Any + Send>) {
    // SAFETY: set by `count_panics_in` to a counter in the zone, which
    // stays mapped for the life of the process.
    if let Some(counter) = unsafe { PANIC_COUNTER.load(Ordering::Relaxed).as_ref() } {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic");
    ngx::ngx_log_error!(
        nginx_sys::NGX_LOG_ALERT,
        log,
        "intermission: internal error: {message}"
    );
}
