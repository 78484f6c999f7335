//! The shared-memory zone: the table header, the worker slots and the app
//! table (`intermission_core::zone_layout`).
//!
//! nginx's master creates the zone before it forks the workers, so the table
//! sits at the same address in every worker. On `nginx -s reload` a zone of the
//! same name, size and module is handed to the new configuration with its
//! contents: the pause state, the tickets of requests held by the old workers
//! and their slots carry over.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_pool_t, ngx_str_t, NGX_LOG_EMERG,
    NGX_LOG_NOTICE,
};
use ngx::core::Status;

use intermission_core::app_table::{layout_stamp, AppSlot, AppTable, TableHeader};
use intermission_core::in_flight::NameKey;
use intermission_core::worker_slots::{WorkerSlot, WorkerSlots};
use intermission_core::zone_layout::ZoneLayout;

pub const ZONE_NAME: &str = "intermission";

/// The number of the configuration this process runs, as counted in its zone.
/// Set in the master as a configuration takes the zone over, and inherited by
/// the workers it forks; each process only ever reads its own copy.
static CONFIGURATION_OF_THIS_PROCESS: AtomicU64 = AtomicU64::new(0);

/// Set when this process created the zone (not when a reload took the old
/// one over): the configuration that starts next restores the state file
/// into it.
static ZONE_IS_NEW: AtomicBool = AtomicBool::new(false);

/// Whether the zone of the configuration that starts now was created for
/// it; asked once, by `init_module`, whether or not a state file is
/// configured (a flag left set would restore into a running zone later).
pub fn take_is_new() -> bool {
    ZONE_IS_NEW.swap(false, Ordering::Relaxed)
}

/// A configuration finished loading (in the master, just before it forks
/// `workers` workers): count it in the zone it uses.
pub fn begin_configuration(zone: &ngx_shm_zone_t, workers: usize) {
    if let Some(header) = header(zone) {
        let number = header.begin_configuration(workers);
        CONFIGURATION_OF_THIS_PROCESS.store(number, Ordering::Relaxed);
    }
}

/// This worker exits gracefully.
pub fn worker_exits(zone: &ngx_shm_zone_t, worker: usize) {
    if let Some(header) = header(zone) {
        header.worker_exited(
            CONFIGURATION_OF_THIS_PROCESS.load(Ordering::Relaxed),
            worker,
        );
    }
}

/// For a worker that is shutting down: true when a newer configuration (a
/// reload) runs on its zone and carries the pause on; false when nginx is
/// stopping, or the reload replaced the zone with a new one.
pub fn newer_configuration_runs(header: &TableHeader) -> bool {
    header.newer_configuration_runs(CONFIGURATION_OF_THIS_PROCESS.load(Ordering::Relaxed))
}

pub const DEFAULT_ZONE_SIZE: usize = 1024 * 1024;

/// Registers the zone with nginx; it is created (or reused) once the whole
/// configuration has been read.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn add(cf: *mut ngx_conf_t, size: usize) -> Option<*mut ngx_shm_zone_t> {
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr().cast_mut(),
    };
    // SAFETY: the tag is this module's static descriptor, the same object on
    // every reload, which is what lets nginx hand the zone over.
    let zone = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut name,
            size,
            ptr::addr_of_mut!(crate::ngx_http_intermission_module).cast(),
        )
        .as_mut()?
    };
    zone.init = Some(init_zone);
    Some(zone)
}

extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, previous: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls this with its zone, mapped and (for a new zone)
    // already set up as a slab pool; `previous` is the `data` this function
    // stored in the zone it replaces, which shares the same memory.
    let zone = unsafe { &mut *shm_zone };
    let log = zone.shm.log;
    if !previous.is_null() {
        // SAFETY: `previous` is a table header this module stored.
        if unsafe { (*previous.cast::<TableHeader>()).layout() } != layout_stamp() {
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "intermission: the shared zone \"{ZONE_NAME}\" was created by an incompatible build \
                 of the module; restart nginx instead of reloading it"
            );
            return Status::NGX_ERROR.0;
        }
        zone.data = previous;
        ZONE_IS_NEW.store(false, Ordering::Relaxed);
        return Status::NGX_OK.0;
    }

    let pool = zone.shm.addr.cast::<ngx_slab_pool_t>();
    // SAFETY: a new zone's memory starts with its slab pool.
    let pool = unsafe { &mut *pool };
    if zone.shm.exists != 0 {
        // Only on systems that map zones anew in each process.
        zone.data = pool.data;
        return Status::NGX_OK.0;
    }

    // SAFETY: the pool was just initialized by nginx, in the master, before
    // any worker exists.
    match unsafe { allocate_table(pool) } {
        Some(header) => {
            pool.data = header;
            zone.data = header;
            ZONE_IS_NEW.store(true, Ordering::Relaxed);
            // SAFETY: just written by `allocate_table`.
            let header = unsafe { &*header.cast::<TableHeader>() };
            ngx::ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "intermission: the shared zone \"{ZONE_NAME}\" ({} KB) has room for {} apps \
                 and {} worker processes",
                zone.shm.size / 1024,
                header.capacity(),
                header.worker_slots() - 1
            );
            Status::NGX_OK.0
        }
        None => {
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "intermission: the shared zone \"{ZONE_NAME}\" has no room for its app table"
            );
            Status::NGX_ERROR.0
        }
    }
}

/// Lays the zone out in its free pages: a header, the worker slots, then as
/// many app slots as fit.
///
/// # Safety
/// `pool` must be a freshly initialized slab pool no other process uses yet.
unsafe fn allocate_table(pool: &mut ngx_slab_pool_t) -> Option<*mut c_void> {
    let mut bytes = pool.pfree * page_size();
    // The free-page count is exact, but leave the slab its own bookkeeping if
    // the first try does not fit.
    // SAFETY: the pool is valid (see above).
    unsafe { crate::nginx::set_slab_log_nomem(pool, false) };
    while let Some(layout) = ZoneLayout::for_bytes(bytes) {
        // SAFETY: the pool is valid and unshared (see above).
        let memory = unsafe { nginx_sys::ngx_slab_calloc_locked(pool, layout.bytes()) };
        if !memory.is_null() {
            // SAFETY: as above.
            unsafe { crate::nginx::set_slab_log_nomem(pool, true) };
            // SAFETY: `memory` is zeroed, page-aligned and `layout.bytes()`
            // long; an all-zero slot (worker or app) is a free slot, and
            // the worker slots' tickets are set to "none" by `default`.
            unsafe {
                memory.cast::<TableHeader>().write(TableHeader::new(
                    layout.apps,
                    layout.worker_slots,
                    zone_id(),
                    name_key(),
                ));
                let slots = memory
                    .cast::<u8>()
                    .add(layout.worker_slots_offset())
                    .cast::<WorkerSlot>();
                for index in 0..layout.worker_slots {
                    slots.add(index).write(WorkerSlot::default());
                }
            }
            return Some(memory);
        }
        bytes = bytes * 15 / 16;
    }
    None
}

/// A random number for the zone's id (see `TableHeader::zone_id`): std's
/// hasher keys come from the system's entropy, and the pid and the time
/// differ between the nginx instances of a host all the same.
fn zone_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// The secret key of the hash of app names (see
/// `intermission_core::in_flight`): two draws of std's random hasher keys,
/// which come from the system's entropy.
fn name_key() -> NameKey {
    use std::hash::{BuildHasher, Hasher};
    let draw = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.finish()
    };
    NameKey([draw(1), draw(2)])
}

fn page_size() -> usize {
    // SAFETY: set once at startup, before any configuration is read.
    unsafe { nginx_sys::ngx_pagesize }
}

/// The smallest zone nginx's own zones accept: eight pages.
pub fn min_size() -> usize {
    8 * page_size()
}

/// The table header of an initialized zone: all a request reads while
/// nothing is paused.
pub fn header(zone: &ngx_shm_zone_t) -> Option<&'static TableHeader> {
    // SAFETY: once initialized, `data` points to a table header in shared
    // memory mapped for the life of the process; it is all atomics, safe to
    // share between processes.
    unsafe { zone.data.cast::<TableHeader>().as_ref() }
}

fn layout_of(header: &TableHeader) -> ZoneLayout {
    ZoneLayout {
        worker_slots: header.worker_slots(),
        apps: header.capacity(),
    }
}

/// The whole app table behind a header returned by `header`.
pub fn table(header: &'static TableHeader) -> AppTable<'static> {
    let layout = layout_of(header);
    // SAFETY: `allocate_table` placed `capacity` app slots at the layout's
    // offset from the header, in the same shared mapping; slots are atomics.
    let slots = unsafe {
        let first = ptr::from_ref(header)
            .cast::<u8>()
            .add(layout.apps_offset())
            .cast::<AppSlot>();
        std::slice::from_raw_parts(first, layout.apps)
    };
    AppTable::new(header, slots)
}

/// The worker slots behind a header returned by `header`.
pub fn worker_slots(header: &'static TableHeader) -> WorkerSlots<'static> {
    let layout = layout_of(header);
    // SAFETY: `allocate_table` placed the worker slots right after the
    // header, in the same shared mapping; they are atomics.
    let slots = unsafe {
        let first = ptr::from_ref(header)
            .cast::<u8>()
            .add(layout.worker_slots_offset())
            .cast::<WorkerSlot>();
        std::slice::from_raw_parts(first, layout.worker_slots)
    };
    WorkerSlots::new(slots)
}

/// The zone's slab mutex, held while an app is added to the table. nginx's
/// master releases it if the worker holding it dies.
pub struct ZoneLock {
    pool: *mut ngx_slab_pool_t,
}

impl ZoneLock {
    pub fn acquire(zone: &ngx_shm_zone_t) -> Self {
        let pool = zone.shm.addr.cast::<ngx_slab_pool_t>();
        // SAFETY: every initialized zone starts with its slab pool, whose
        // mutex is shared by all workers.
        unsafe { nginx_sys::ngx_shmtx_lock(&mut (*pool).mutex) };
        ZoneLock { pool }
    }
}

impl Drop for ZoneLock {
    fn drop(&mut self) {
        // SAFETY: locked in `acquire` by this process.
        unsafe { nginx_sys::ngx_shmtx_unlock(&mut (*self.pool).mutex) };
    }
}
