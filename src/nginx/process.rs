//! Facts about the running nginx process: its cycle and the core module's
//! configuration, the clocks, which kind of process it is, and whether it is
//! shutting down.

use std::ptr;

use nginx_sys::{ngx_core_conf_t, ngx_cycle_t, ngx_log_t, ngx_uint_t};

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
fn core_conf(cycle: &ngx_cycle_t) -> Option<&ngx_core_conf_t> {
    // SAFETY: every cycle has the core module's configuration, an
    // `ngx_core_conf_t`, at the core module's index, for as long as the
    // cycle lives.
    unsafe {
        let index = (*ptr::addr_of!(nginx_sys::ngx_core_module)).index;
        (*cycle.conf_ctx.add(index))
            .cast::<ngx_core_conf_t>()
            .as_ref()
    }
}

/// The cycle this process runs.
fn current_cycle() -> &'static ngx_cycle_t {
    // SAFETY: `ngx_cycle` is valid in every process once configuration ran,
    // and a worker's cycle lives as long as the worker.
    unsafe { &*nginx_sys::ngx_cycle }
}

/// `worker_processes` of a configuration.
pub fn worker_processes(cycle: &ngx_cycle_t) -> usize {
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

/// Connections this worker can open now: those free, and the idle
/// keep-alive connections nginx closes to reuse them when it runs short
/// (`ngx_drain_connections`).
pub fn available_connections() -> usize {
    // Only this worker's own thread changes the counts.
    let cycle = current_cycle();
    cycle.free_connection_n + cycle.reusable_connections_n
}
