//! The thin layer between the module and nginx's raw request and event
//! structures. Everything that dereferences an `ngx_http_request_t` or an
//! `ngx_event_t` lives here, behind small safe methods whose contracts are
//! written next to the `unsafe` blocks; the logic above it is safe Rust.

use std::any::TypeId;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_event_t, ngx_http_block_reading, ngx_http_core_run_phases,
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_get_indexed_variable,
    ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_http_test_reading,
    ngx_int_t, ngx_log_t, ngx_module_t, ngx_pool_cleanup_add, ngx_pool_cleanup_t, ngx_uint_t,
    NGX_HTTP_INTERNAL_SERVER_ERROR,
};
use ngx::core::Status;

// The bitfields of nginx's structures that bindgen lays out wrongly, read and
// written in C (src/nginx_bits.c, compiled by build.rs against the same
// headers as the bindings).
extern "C" {
    fn intermission_request_header_only(r: *mut ngx_http_request_t) -> ngx_uint_t;
    fn intermission_request_set_header_only(r: *mut ngx_http_request_t);
    fn intermission_request_internal(r: *mut ngx_http_request_t) -> ngx_uint_t;
    fn intermission_request_discard_body(r: *mut ngx_http_request_t) -> ngx_uint_t;
    fn intermission_request_hold_main(r: *mut ngx_http_request_t);
    fn intermission_slab_log_nomem(pool: *mut nginx_sys::ngx_slab_pool_t, on: ngx_uint_t);
}

/// Turns the "no memory" alert of a slab pool's allocations on or off.
///
/// # Safety
/// `pool` must be a live slab pool.
pub unsafe fn set_slab_log_nomem(pool: *mut nginx_sys::ngx_slab_pool_t, on: bool) {
    // SAFETY: the caller's contract; the function writes one flag.
    unsafe { intermission_slab_log_nomem(pool, ngx_uint_t::from(on)) }
}

/// A header filter, as nginx chains them.
pub type HeaderFilter = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// The header filter that was first in nginx's chain before this module's.
static NEXT_HEADER_FILTER: std::sync::atomic::AtomicPtr<c_void> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Puts `filter` first in nginx's chain of header filters; it must end by
/// calling `next_header_filter`.
///
/// # Safety
/// Only in postconfiguration, where nginx's own modules chain theirs.
pub unsafe fn push_header_filter(filter: HeaderFilter) {
    // SAFETY: nginx reads and writes the chain's head only while it reads
    // the configuration, in one thread (the caller's contract).
    unsafe {
        let next = nginx_sys::ngx_http_top_header_filter;
        NEXT_HEADER_FILTER.store(
            next.map_or(ptr::null_mut(), |f| f as *mut c_void),
            std::sync::atomic::Ordering::Relaxed,
        );
        nginx_sys::ngx_http_top_header_filter = Some(filter);
    }
}

/// Passes the response header on to the next filter in nginx's chain.
///
/// # Safety
/// `r` as nginx passed it to the calling header filter.
pub unsafe fn next_header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    let next = NEXT_HEADER_FILTER.load(std::sync::atomic::Ordering::Relaxed);
    if next.is_null() {
        return nginx_sys::NGX_OK as ngx_int_t;
    }
    // SAFETY: stored by `push_header_filter` from nginx's own chain: a
    // header filter function.
    unsafe {
        let next: HeaderFilter = std::mem::transmute::<*mut c_void, HeaderFilter>(next);
        next(r)
    }
}

/// nginx's monotonic millisecond clock, as of the current event-loop turn.
pub fn now_ms() -> u64 {
    // SAFETY: a plain integer nginx updates between event-loop turns, in this
    // single-threaded worker.
    unsafe { nginx_sys::ngx_current_msec as u64 }
}

/// The wall clock in Unix milliseconds, as of the current event-loop turn
/// (nginx's cached time), for answers that show a time of day.
pub fn wall_clock_ms() -> u64 {
    // SAFETY: nginx points `ngx_cached_time` at a valid slot of its time
    // cache before any request, and updates it only between event-loop
    // turns of this single-threaded worker.
    unsafe {
        let time = &*ptr::read_volatile(ptr::addr_of!(nginx_sys::ngx_cached_time));
        u64::try_from(time.sec).unwrap_or(0) * 1000 + time.msec as u64
    }
}

/// The worker was asked to shut down gracefully (`nginx -s quit`, or a
/// reload, which retires the old workers the same way).
pub fn is_exiting() -> bool {
    // SAFETY: a plain integer nginx sets in this single-threaded worker.
    unsafe { nginx_sys::ngx_exiting != 0 }
}

/// The core module's configuration of a cycle (`worker_processes`,
/// `worker_shutdown_timeout`, `pid`).
fn core_conf(cycle: &nginx_sys::ngx_cycle_t) -> Option<&nginx_sys::ngx_core_conf_t> {
    // SAFETY: every cycle has the core module's configuration, an
    // `ngx_core_conf_t`, at the core module's index, for as long as the
    // cycle lives.
    unsafe {
        let index = (*ptr::addr_of!(nginx_sys::ngx_core_module)).index;
        (*cycle.conf_ctx.add(index))
            .cast::<nginx_sys::ngx_core_conf_t>()
            .as_ref()
    }
}

/// The cycle this process runs.
fn current_cycle() -> &'static nginx_sys::ngx_cycle_t {
    // SAFETY: `ngx_cycle` is valid in every process once configuration ran,
    // and a worker's cycle lives as long as the worker.
    unsafe { &*nginx_sys::ngx_cycle }
}

/// `worker_processes` of a configuration.
pub fn worker_processes(cycle: &nginx_sys::ngx_cycle_t) -> usize {
    core_conf(cycle).map_or(1, |core| {
        usize::try_from(core.worker_processes).unwrap_or(1)
    })
}

/// `worker_shutdown_timeout` of the running configuration, if set: once a
/// graceful shutdown has lasted this long, nginx closes every connection.
pub fn worker_shutdown_timeout() -> Option<u64> {
    core_conf(current_cycle())
        .map(|core| core.shutdown_timeout as u64)
        .filter(|&ms| ms != 0)
}

/// The paths of the running configuration's pid file and of the name nginx
/// renames it to during a binary upgrade (`.oldbin`).
pub fn pid_files() -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Some(core) = core_conf(current_cycle()) else {
        return Vec::new();
    };
    [&core.pid, &core.oldpid]
        .into_iter()
        // nginx counts the terminating NUL in `oldpid`'s length.
        .map(|path| {
            path.as_bytes()
                .split(|&b| b == 0)
                .next()
                .unwrap_or_default()
        })
        .filter(|path| !path.is_empty())
        .map(|path| std::ffi::OsStr::from_bytes(path).into())
        .collect()
}

/// This process is a worker (not the master, a cache helper or nginx in
/// single-process mode).
pub fn is_worker_process() -> bool {
    // SAFETY: a plain integer nginx sets once as the process starts.
    unsafe { nginx_sys::ngx_process == nginx_sys::NGX_PROCESS_WORKER as ngx_uint_t }
}

/// nginx runs as one process (`master_process off`).
pub fn is_single_process() -> bool {
    // SAFETY: a plain integer nginx sets once as the process starts.
    unsafe { nginx_sys::ngx_process == nginx_sys::NGX_PROCESS_SINGLE as ngx_uint_t }
}

/// This worker's number, from 0 to `worker_processes` - 1; a worker the
/// master starts in place of a dead one gets the dead one's number.
pub fn worker_number() -> usize {
    // SAFETY: a plain integer nginx sets once as the worker starts.
    unsafe { nginx_sys::ngx_worker }
}

/// True in `nginx -t` (and `-T`): the configuration is only checked.
pub fn is_testing_config() -> bool {
    // SAFETY: a plain integer nginx sets from its command line at start.
    unsafe { nginx_sys::ngx_test_config != 0 }
}

/// The cycle's log, for lines not tied to a request.
pub fn cycle_log() -> *mut ngx_log_t {
    current_cycle().log
}

/// Per-request state a module attaches to a request; dropped with the
/// request's pool, whichever way the request ends.
pub trait RequestContext: Sized + 'static {
    /// Called when nginx frees the request, before the value is dropped.
    fn on_request_freed(&self);
}

/// A live nginx HTTP request.
///
/// Constructed only from a request pointer nginx hands to a handler; it must
/// not outlive that request. Copies are cheap and refer to the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRequest(NonNull<ngx_http_request_t>);

impl HttpRequest {
    /// # Safety
    /// `r` must point to a live request, and the value must not be used after
    /// nginx frees that request.
    pub unsafe fn from_raw(r: *mut ngx_http_request_t) -> Option<Self> {
        NonNull::new(r).map(HttpRequest)
    }

    pub fn as_ptr(self) -> *mut ngx_http_request_t {
        self.0.as_ptr()
    }

    /// The request itself, for the `ngx` crate's typed accessors (such as
    /// `HttpModuleLocationConf::location_conf`).
    pub fn as_raw(&self) -> &ngx_http_request_t {
        // SAFETY: the constructor's contract keeps the request alive while
        // this wrapper is used.
        unsafe { self.0.as_ref() }
    }

    #[allow(clippy::mut_from_ref)]
    fn raw_mut(&self) -> &mut ngx_http_request_t {
        // SAFETY: as in `raw`; the worker is single-threaded and no other
        // reference to the request is held across calls into this module.
        unsafe { &mut *self.0.as_ptr() }
    }

    pub fn is_main(&self) -> bool {
        ptr::eq(self.as_raw().main, self.as_ptr())
    }

    pub fn log(&self) -> *mut ngx_log_t {
        // SAFETY: every request has a connection with a log.
        unsafe { (*self.as_raw().connection).log }
    }

    /// The status of the answer, once one is set.
    pub fn status(&self) -> ngx_uint_t {
        self.as_raw().headers_out.status
    }

    pub fn method(&self) -> ngx_uint_t {
        self.as_raw().method
    }

    /// The decoded, normalized path, without arguments.
    pub fn uri(&self) -> &[u8] {
        self.as_raw().uri.as_bytes()
    }

    /// The query string, as the client sent it (still percent-encoded).
    pub fn args(&self) -> &[u8] {
        self.as_raw().args.as_bytes()
    }

    /// The value of the first request header named `name` (any case).
    pub fn header_in(&self, name: &[u8]) -> Option<&[u8]> {
        let mut part: *const nginx_sys::ngx_list_part_t = &self.as_raw().headers_in.headers.part;
        // SAFETY: nginx's header list: parts chained by `next`, each holding
        // `nelts` table entries, all in the request's pool.
        unsafe {
            while let Some(p) = part.as_ref() {
                let entries = std::slice::from_raw_parts(
                    p.elts.cast::<nginx_sys::ngx_table_elt_t>(),
                    p.nelts,
                );
                if let Some(found) = entries
                    .iter()
                    .find(|h| h.key.as_bytes().eq_ignore_ascii_case(name))
                {
                    return Some(found.value.as_bytes());
                }
                part = p.next;
            }
        }
        None
    }

    /// Adds a response header; false if out of memory. Both strings are
    /// static, as nginx's own fixed headers are.
    pub fn add_response_header(&self, key: &'static str, value: &'static str) -> bool {
        let as_ngx = |s: &'static str| nginx_sys::ngx_str_t {
            len: s.len(),
            data: s.as_ptr().cast_mut(),
        };
        // SAFETY: pushing onto the request's own header list, allocated from
        // its pool; nginx only reads `key` and `value` of output headers
        // (`hash` 1 means in use), and never writes through them.
        unsafe {
            let Some(header) = nginx_sys::ngx_list_push(&mut self.raw_mut().headers_out.headers)
                .cast::<nginx_sys::ngx_table_elt_t>()
                .as_mut()
            else {
                return false;
            };
            // All fields zero first: null `lowcase_key`, and null `next`
            // where the nginx version has one (1.23 and later).
            ptr::write_bytes(ptr::from_mut(header), 0, 1);
            header.hash = 1;
            header.key = as_ngx(key);
            header.value = as_ngx(value);
        }
        true
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        // SAFETY: a non-null header element is a valid table entry of this
        // request.
        unsafe { self.as_raw().headers_in.user_agent.as_ref() }
            .map(|header| header.value.as_bytes())
    }

    /// The value of an indexed variable, or `None` when it is not set.
    pub fn variable(&self, index: ngx_uint_t) -> Option<&[u8]> {
        // SAFETY: `index` came from `ngx_http_get_variable_index` at
        // configuration time; the value lives in the request's pool.
        let value = unsafe { ngx_http_get_indexed_variable(self.as_ptr(), index).as_ref()? };
        if value.not_found() != 0 || value.valid() == 0 || value.data.is_null() {
            return None;
        }
        // SAFETY: a valid variable value points to `len` bytes.
        Some(unsafe { std::slice::from_raw_parts(value.data, value.len() as usize) })
    }

    /// The value a variable already has in this request (set by `set`,
    /// `set_variable` or an earlier evaluation), without evaluating it.
    pub fn variable_if_set(&self, index: ngx_uint_t) -> Option<&[u8]> {
        // SAFETY: `index` came from `ngx_http_get_variable_index` at
        // configuration time, so it is within the request's variable array
        // (shared with its subrequests, allocated with the main request).
        let value = unsafe { &*self.as_raw().variables.add(index) };
        if value.valid() == 0 || value.not_found() != 0 || value.data.is_null() {
            return None;
        }
        // SAFETY: a valid variable value points to `len` bytes.
        Some(unsafe { std::slice::from_raw_parts(value.data, value.len() as usize) })
    }

    /// Gives a variable its value for the rest of the request, as `set`
    /// does. The value survives internal redirects, which clear module
    /// contexts but not variables. `text` is not copied: it is static.
    pub fn set_variable(&self, index: ngx_uint_t, text: &'static [u8]) {
        // SAFETY: as in `variable_if_set`; the value is a plain struct and
        // the text outlives the request.
        VariableValue(unsafe { &mut *self.as_raw().variables.add(index) }).set(text);
    }

    /// As `set_variable`, with a copy of `text` in the request's pool; false
    /// (and the variable unchanged) if the pool is out of memory.
    pub fn set_variable_copy(&self, index: ngx_uint_t, text: &[u8]) -> bool {
        let Some(copy) = self.pool_copy(text) else {
            return false;
        };
        self.set_variable(index, copy);
        true
    }

    /// A copy of `text` in the request's pool. The `'static` is a white lie
    /// the callers keep: the copy lives exactly as long as the request.
    fn pool_copy(&self, text: &[u8]) -> Option<&'static [u8]> {
        // SAFETY: the pool is the live request's; the copy is written before
        // it is read, and it is freed only with the request.
        unsafe {
            let data = nginx_sys::ngx_pnalloc(self.as_raw().pool, text.len().max(1))
                .cast::<u8>()
                .as_mut()?;
            ptr::copy_nonoverlapping(text.as_ptr(), data, text.len());
            Some(std::slice::from_raw_parts(data, text.len()))
        }
    }

    /// Keeps the request open after its content handler returns NGX_DONE,
    /// for an answer sent later (by `finalize` after a `send_*`). A client
    /// that closes meanwhile ends the request, and with it what is attached.
    pub fn wait_after_content_phase(&self) {
        // SAFETY: a live request, whose main request is live; the C helpers
        // touch only its flags and the main request's count.
        let discarding = unsafe {
            intermission_request_hold_main(self.as_ptr());
            intermission_request_discard_body(self.as_ptr()) != 0
        };
        let r = self.raw_mut();
        if !discarding {
            r.read_event_handler = Some(ngx_http_test_reading);
        }
        r.write_event_handler = Some(nginx_sys::ngx_http_request_empty_handler);
    }

    /// Attaches `value` to the request, for `context` to find again. It is
    /// dropped (after `on_request_freed`) when nginx frees the request.
    pub fn attach_context<T: RequestContext>(&self, module: &ngx_module_t, value: T) -> Option<&T> {
        let attached = Attached {
            ctx_index: module.ctx_index,
            type_id: TypeId::of::<T>(),
            drop: drop_attached::<T>,
            value,
        };
        // SAFETY: the pool belongs to this request; the cleanup allocation is
        // sized and (pool-)aligned for `Attached<T>`, written before any read.
        unsafe {
            let size = std::mem::size_of::<Attached<T>>();
            let cleanup = ngx_pool_cleanup_add(self.as_raw().pool, size).as_mut()?;
            let slot = cleanup.data.cast::<Attached<T>>();
            slot.write(attached);
            cleanup.handler = Some(run_request_cleanup);
            *self.as_raw().ctx.add(module.ctx_index) = slot.cast();
            Some(&(*slot).value)
        }
    }

    /// The value of type `T` attached by `attach_context`, if any. An
    /// internal redirect clears the request's module contexts, so those
    /// requests are looked up in the pool's cleanups instead, as nginx's
    /// realip module does.
    pub fn context<T: RequestContext>(&self, module: &ngx_module_t) -> Option<&T> {
        let raw = self.as_raw();
        // SAFETY: the context slot is ours and holds null or an `Attached<_>`
        // written by `attach_context`; a cleanup entry with our handler holds
        // an `Attached` whose `ctx_index` names the module that wrote it. The
        // leading fields have one layout for every type, and `type_id` says
        // which type follows them.
        unsafe {
            let slot = raw.ctx.add(module.ctx_index);
            if let Some(attached) = (*slot).cast::<Attached<()>>().as_ref() {
                if attached.type_id != TypeId::of::<T>() {
                    return None;
                }
                return Some(&(*(*slot).cast::<Attached<T>>()).value);
            }
            if intermission_request_internal(self.as_ptr()) == 0 {
                return None;
            }
            let mut cleanup: *mut ngx_pool_cleanup_t = (*raw.pool).cleanup;
            while let Some(entry) = cleanup.as_ref() {
                if is_attached_cleanup(entry) {
                    let attached = entry.data.cast::<Attached<()>>();
                    if (*attached).ctx_index == module.ctx_index
                        && (*attached).type_id == TypeId::of::<T>()
                    {
                        *slot = attached.cast();
                        return Some(&(*entry.data.cast::<Attached<T>>()).value);
                    }
                }
                cleanup = entry.next;
            }
            None
        }
    }

    /// Parks the request inside a phase handler that is about to return
    /// NGX_AGAIN, as `limit_req` does for a delay: a client that closes is
    /// noticed at once (and finalized with 499 by nginx), and the next write
    /// event of the connection goes to `on_wake`.
    pub fn park(&self, on_wake: unsafe extern "C" fn(*mut ngx_http_request_t)) {
        let r = self.raw_mut();
        r.read_event_handler = Some(ngx_http_test_reading);
        r.write_event_handler = Some(on_wake);
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
        // SAFETY: the connection's read event is live with the request; the
        // handlers are nginx's own, as `limit_req` installs them on resume.
        unsafe {
            if nginx_sys::ngx_handle_read_event((*self.as_raw().connection).read, 0)
                != Status::NGX_OK.0
            {
                self.finalize(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
                return;
            }
            let r = self.raw_mut();
            r.read_event_handler = Some(ngx_http_block_reading);
            r.write_event_handler = Some(ngx_http_core_run_phases);
            ngx_http_core_run_phases(self.as_ptr());
        }
    }

    pub fn finalize(&self, rc: ngx_int_t) {
        // SAFETY: finalizing a live request is always allowed.
        unsafe { ngx_http_finalize_request(self.as_ptr(), rc) }
    }

    pub fn discard_body(&self) -> ngx_int_t {
        // SAFETY: a live main request.
        unsafe { ngx_http_discard_request_body(self.as_ptr()) }
    }

    /// The request method as the client sent it.
    pub fn method_name(&self) -> &[u8] {
        self.as_raw().method_name.as_bytes()
    }

    /// Sends a complete `text/plain` response; an empty body with a 304 sends
    /// the header alone. Returns what a content handler returns.
    pub fn send_text(&self, status: ngx_uint_t, body: &[u8]) -> ngx_int_t {
        self.send_body(status, ngx::ngx_string!("text/plain"), body)
    }

    /// Sends a complete `application/json` response.
    pub fn send_json(&self, status: ngx_uint_t, body: &[u8]) -> ngx_int_t {
        self.send_body(status, ngx::ngx_string!("application/json"), body)
    }

    /// Sends a complete response of the given type.
    pub fn send_body(
        &self,
        status: ngx_uint_t,
        content_type: nginx_sys::ngx_str_t,
        body: &[u8],
    ) -> ngx_int_t {
        {
            let headers = &mut self.raw_mut().headers_out;
            headers.status = status;
            if body.is_empty() {
                // A 304 carries no body and describes none.
                headers.content_length_n = -1;
            } else {
                headers.content_type = content_type;
                headers.content_type_len = headers.content_type.len;
                headers.content_length_n = body.len() as _;
            }
        }
        if body.is_empty() {
            // SAFETY: a live request; the helper writes one flag.
            unsafe { intermission_request_set_header_only(self.as_ptr()) };
        }
        // SAFETY: a live request whose response has not started; no Rust
        // reference into it is held across the call.
        let rc = unsafe { ngx_http_send_header(self.as_ptr()) };
        // SAFETY: a live request; the helper reads one flag.
        let header_only = unsafe { intermission_request_header_only(self.as_ptr()) } != 0;
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || header_only {
            return rc;
        }
        let pool = self.as_raw().pool;
        // SAFETY: the buffer is allocated from the request's pool and sized
        // for the body; the chain lives on the stack for the filter call,
        // which copies what it keeps.
        unsafe {
            let buf: *mut ngx_buf_t = nginx_sys::ngx_create_temp_buf(pool, body.len());
            let Some(buf) = buf.as_mut() else {
                return Status::NGX_ERROR.0;
            };
            ptr::copy_nonoverlapping(body.as_ptr(), buf.last, body.len());
            buf.last = buf.last.add(body.len());
            buf.set_last_buf(if self.is_main() { 1 } else { 0 });
            buf.set_last_in_chain(1);
            let mut chain = ngx_chain_t {
                buf,
                next: ptr::null_mut(),
            };
            ngx_http_output_filter(self.as_ptr(), &mut chain)
        }
    }
}

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

/// The value a variable's get handler fills in.
pub struct VariableValue<'v>(&'v mut nginx_sys::ngx_http_variable_value_t);

impl<'v> VariableValue<'v> {
    /// # Safety
    /// `v` must be the value nginx passes to a variable's get handler.
    pub unsafe fn from_raw(v: *mut nginx_sys::ngx_http_variable_value_t) -> Option<Self> {
        // SAFETY: forwarded from the caller.
        unsafe { v.as_mut().map(VariableValue) }
    }

    pub fn set_not_found(self) {
        self.0.set_not_found(1);
    }

    /// `text` must live as long as the request: static, or from its pool
    /// (`HttpRequest::set_variable_copy`'s pool copy).
    pub fn set(self, text: &'static [u8]) {
        set_found(self.0, text.len());
        self.0.data = text.as_ptr().cast_mut();
        debug_assert!(
            self.0.len() as usize == text.len() & 0x0fff_ffff
                && self.0.valid() == 1
                && self.0.no_cacheable() == 0
                && self.0.not_found() == 0
                && self.0.escape() == 0,
            "the flags of a variable value are laid out as nginx's ngx_variable_value_t"
        );
    }

    /// A copy of `text` in `r`'s pool; not found if the pool is out of memory.
    pub fn set_copy(self, r: &HttpRequest, text: &[u8]) {
        match r.pool_copy(text) {
            Some(copy) => self.set(copy),
            None => self.set_not_found(),
        }
    }
}

/// Marks a variable value valid and found with `len` bytes, as `set` does.
/// nginx packs `len` (28 bits), `valid`, `no_cacheable`, `not_found` and
/// `escape` into one 32-bit word; bindgen's setters write it a bit at a
/// time, which made this most of the module's cost on the path of a request
/// that is not held (perf, serving a static file flat out). Written whole
/// here; `set` checks the layout in debug builds, which the tests run.
#[cfg(target_endian = "little")]
fn set_found(value: &mut nginx_sys::ngx_http_variable_value_t, len: usize) {
    const VALID: u32 = 1 << 28;
    let word = (len as u32 & 0x0fff_ffff) | VALID;
    value._bitfield_1 = nginx_sys::__BindgenBitfieldUnit::new(word.to_le_bytes());
}

#[cfg(not(target_endian = "little"))]
fn set_found(value: &mut nginx_sys::ngx_http_variable_value_t, len: usize) {
    value.set_len(len as u32);
    value.set_valid(1);
    value.set_no_cacheable(0);
    value.set_not_found(0);
    value.set_escape(0);
}

/// A value attached to a request, with what its cleanup needs to know.
#[repr(C)]
struct Attached<T> {
    ctx_index: ngx_uint_t,
    type_id: TypeId,
    drop: unsafe fn(*mut c_void),
    value: T,
}

unsafe fn drop_attached<T: RequestContext>(data: *mut c_void) {
    let attached = data.cast::<Attached<T>>();
    // SAFETY: called once, from `run_request_cleanup`, on an `Attached<T>`.
    unsafe {
        // nginx frees requests in many places; a panic here must not unwind
        // into it either (the value is still dropped).
        guard_ffi(cycle_log(), (), || (*attached).value.on_request_freed());
        ptr::drop_in_place(attached);
    }
}

/// The one pool-cleanup handler of attached values. It is not generic, so it
/// has a single address in this library, which is how `context` recognizes
/// its entries.
unsafe extern "C" fn run_request_cleanup(data: *mut c_void) {
    // SAFETY: only `attach_context` installs this handler, over an
    // `Attached<_>` whose leading fields have the same layout for every type;
    // nginx runs each cleanup once, as the pool is destroyed.
    unsafe {
        let drop = (*data.cast::<Attached<()>>()).drop;
        drop(data)
    }
}

#[allow(unpredictable_function_pointer_comparisons)]
fn is_attached_cleanup(entry: &ngx_pool_cleanup_t) -> bool {
    let ours: unsafe extern "C" fn(*mut c_void) = run_request_cleanup;
    entry.handler == Some(ours)
}

/// Connections this worker can open now: those free, and the idle
/// keep-alive connections nginx closes to reuse them when it runs short
/// (`ngx_drain_connections`).
pub fn available_connections() -> usize {
    // SAFETY: `ngx_cycle` is valid in every worker; the counts are only
    // changed by this worker's own thread.
    unsafe {
        let cycle = &*nginx_sys::ngx_cycle;
        cycle.free_connection_n + cycle.reusable_connections_n
    }
}

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

/// A socket of the worker's own, watched by nginx's event loop like a
/// connection: its handler runs when the socket is readable, and also when
/// nginx shuts the worker down gracefully (the connection is marked idle,
/// so `ngx_close_idle_connections` calls the handler with `close` set; the
/// socket is not closed unless the handler closes it).
pub struct WatchedSocket {
    connection: NonNull<nginx_sys::ngx_connection_t>,
}

impl WatchedSocket {
    /// Watches `fd` (non-blocking), which it owns from now on; `None` (and
    /// the descriptor closed) if nginx has no connection left for it.
    pub fn watch(fd: i32, handler: unsafe extern "C" fn(*mut ngx_event_t)) -> Option<Self> {
        let log = cycle_log();
        // SAFETY: `fd` is an open socket this process owns; nginx takes it
        // into one of the worker's connections, whose events are set up by
        // `ngx_get_connection`.
        unsafe {
            let Some(c) = nginx_sys::ngx_get_connection(fd, log).as_mut() else {
                libc_close(fd);
                return None;
            };
            c.log = log;
            c.data = ptr::null_mut();
            c.set_idle(1);
            let read = &mut *c.read;
            read.log = log;
            read.handler = Some(handler);
            (*c.write).log = log;
            let socket = WatchedSocket {
                connection: NonNull::from(c),
            };
            if nginx_sys::ngx_handle_read_event(read, 0) != Status::NGX_OK.0 {
                socket.close();
                return None;
            }
            Some(socket)
        }
    }

    pub fn fd(&self) -> i32 {
        // SAFETY: the connection is live until `close`.
        unsafe { self.connection.as_ref().fd }
    }

    /// The descriptor of the socket whose read event `event` is, in its
    /// handler.
    ///
    /// # Safety
    /// `event` must be the read event of a connection `watch` set up.
    pub unsafe fn fd_of(event: *mut ngx_event_t) -> i32 {
        // SAFETY: the caller's contract: `data` is that connection.
        unsafe { (*(*event).data.cast::<nginx_sys::ngx_connection_t>()).fd }
    }

    /// In the handler: true if nginx is shutting the worker down and asked
    /// the connection to close; the request is taken (the socket stays).
    pub fn take_close_request(event: *mut ngx_event_t) -> bool {
        // SAFETY: the handler's event is the read event of the connection
        // `watch` set up, whose `data` is that connection.
        unsafe {
            let Some(c) = (*event).data.cast::<nginx_sys::ngx_connection_t>().as_mut() else {
                return false;
            };
            let asked = c.close() != 0;
            c.set_close(0);
            asked
        }
    }

    /// Stops watching and closes the socket.
    pub fn close(self) {
        // SAFETY: the connection was taken by `watch` and is released once.
        unsafe { nginx_sys::ngx_close_connection(self.connection.as_ptr()) }
    }
}

fn libc_close(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(fd) };
}

/// Where `guard_ffi` counts the panics it catches (the zone's counter, for
/// status and metrics); set once as the worker starts.
static PANIC_COUNTER: std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicU64> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Counts the panics `guard_ffi` catches in `counter` from now on.
pub fn count_panics_in(counter: &'static std::sync::atomic::AtomicU64) {
    PANIC_COUNTER.store(
        ptr::from_ref(counter).cast_mut(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Runs `f` at an FFI boundary: a panic must never unwind into nginx. It is
/// logged, counted, and `fallback` returned instead.
pub fn guard_ffi<T>(log: *mut ngx_log_t, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            // SAFETY: set by `count_panics_in` to a counter in the zone,
            // which stays mapped for the life of the process.
            if let Some(counter) = unsafe {
                PANIC_COUNTER
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .as_ref()
            } {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            fallback
        }
    }
}
