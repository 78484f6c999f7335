//! ngx_http_intermission_module: pauses an application's traffic during
//! maintenance and releases the held requests in arrival order.
//!
//! Its modules, each using only those listed after it (no two use each
//! other):
//! - `control`: the `/_intermission/...` endpoint: status and metrics,
//!   enable, disable and stop, and drains;
//! - `request`: the precontent phase handler decides about a request
//!   (`decide`) and parks it (`park`) when its app is paused;
//! - `in_flight`: requests let through are counted until nginx has finished
//!   with them (the log phase), for drains;
//! - `state_file`: the pause state on disk, restored as nginx starts and
//!   followed during a binary upgrade;
//! - `release`: the worker's release engine, which lets held requests go in
//!   one arrival order across workers, woken by events (`wake_channel`);
//! - `config` (directives and merging) and `variables` (the
//!   `$intermission_*` variables);
//! - `worker_slot`: what this process publishes in the zone, reclaimed by
//!   the others if it dies;
//! - `zone`: the shared-memory zone; `nginx`: the thin layer over nginx's
//!   raw structures, where the `unsafe` code lives (and `test_probe`, the
//!   faults the integration tests ask for).
//!
//! The logic that needs no nginx (the decision, the pause state machine,
//! the queue, the order window, the slots, the parsers) is the
//! `intermission-core` crate in `core/`.

use std::ffi::{c_char, c_void};
use std::ptr;

use nginx_sys::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_core_main_conf_t,
    ngx_http_handler_pt, ngx_http_module_t, ngx_http_phases, ngx_int_t, ngx_module_t, ngx_uint_t,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE, NGX_HTTP_SRV_CONF,
    NGX_LOG_NOTICE,
};
use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

mod config;
mod control;
mod in_flight;
mod nginx;
mod release;
mod request;
mod state_file;
mod test_probe;
mod variables;
mod worker_slot;
mod zone;

use config::{LocConf, MainConf};
use nginx::guard_ffi;

/// The version of CHANGELOG.md's top entry (scripts/check-version).
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

struct IntermissionModule;

impl HttpModule for IntermissionModule {
    fn module() -> &'static ngx_module_t {
        module()
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx calls this with the http block's configuration, whose
        // main configuration for this module was just created.
        unsafe {
            let Some(main) = IntermissionModule::main_conf_mut(&*cf) else {
                return Status::NGX_ERROR.0;
            };
            let reporters = variables::Reporters {
                outcome: release::report_outcome,
                wait: release::report_wait,
                ticket: release::report_ticket,
            };
            match variables::declare(cf, reporters) {
                Some(indexes) => main.variables = indexes,
                None => return Status::NGX_ERROR.0,
            }
        }
        Status::NGX_OK.0
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // Hold in the precontent phase: after every access check has decided,
        // so the module never changes who gets in (`satisfy any` included),
        // and before the content handler talks to the upstream.
        // SAFETY: the core module's main configuration exists in an http
        // block; its phase arrays are open for handlers until this returns.
        unsafe {
            let Some(core) = NgxHttpCoreModule::main_conf_mut(&*cf) else {
                return Status::NGX_ERROR.0;
            };
            if !add_phase_handler(
                core,
                nginx_sys::ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
                Some(request::decide::hold_phase_handler),
            ) {
                return Status::NGX_ERROR.0;
            }
            // Count requests out of flight as nginx finishes with them.
            if !add_phase_handler(
                core,
                nginx_sys::ngx_http_phases_NGX_HTTP_LOG_PHASE,
                Some(in_flight::request_finished),
            ) {
                return Status::NGX_ERROR.0;
            }
            // Requests that switch protocols leave the drains' count.
            nginx::push_header_filter(in_flight::header_filter);
            // What `nginx -t` warns about (the configuration is valid).
            variables::warn_unknown(cf);
            if let Some(main) = IntermissionModule::main_conf(&*cf) {
                config::warn_unused_max_pause(cf, main);
            }
        }
        Status::NGX_OK.0
    }

    unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        // SAFETY: nginx passes this module's main configuration.
        let main = unsafe { &mut *conf.cast::<MainConf>() };
        // SAFETY: called at the end of the http block being parsed.
        if unsafe { config::ensure_zone(cf, main) } {
            NGX_CONF_OK
        } else {
            NGX_CONF_ERROR
        }
    }
}

/// Adds `handler` to the handlers of `phase`; false if out of memory.
///
/// # Safety
/// `core` must be the core module's main configuration, in postconfiguration
/// (while the phase arrays are open for handlers).
unsafe fn add_phase_handler(
    core: &mut ngx_http_core_main_conf_t,
    phase: ngx_http_phases,
    handler: ngx_http_handler_pt,
) -> bool {
    // SAFETY: forwarded from the caller; the array holds handler pointers.
    unsafe {
        let slot =
            ngx_array_push(&mut core.phases[phase as usize].handlers).cast::<ngx_http_handler_pt>();
        if slot.is_null() {
            return false;
        }
        *slot = handler;
    }
    true
}

// SAFETY: the configuration types match what the module context creates.
unsafe impl HttpModuleMainConf for IntermissionModule {
    type MainConf = MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for IntermissionModule {
    type LocationConf = LocConf;
}

/// The module's directives; each is handled where its concern lives.
static mut COMMANDS: [ngx_command_t; 8] = [
    ngx_command_t {
        name: ngx_string!("intermission"),
        type_: (NGX_HTTP_MAIN_CONF
            | NGX_HTTP_SRV_CONF
            | NGX_HTTP_LOC_CONF
            | NGX_CONF_NOARGS
            | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(config::set_intermission),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_control"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(control::set_intermission_control),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(config::set_intermission_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_max_held"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(nginx_sys::ngx_conf_set_num_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: std::mem::offset_of!(LocConf, max_held),
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_max_pause"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(config::set_intermission_max_pause),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_state_file"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(config::set_intermission_state_file),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("intermission_log_level"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(config::set_intermission_log_level),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(IntermissionModule::preconfiguration),
    postconfiguration: Some(IntermissionModule::postconfiguration),
    create_main_conf: Some(IntermissionModule::create_main_conf),
    init_main_conf: Some(IntermissionModule::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(IntermissionModule::create_loc_conf),
    merge_loc_conf: Some(IntermissionModule::merge_loc_conf),
};

// The `ngx_modules` table a dynamic module exports for `load_module`.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_intermission_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_intermission_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX).cast_mut().cast(),
    // SAFETY: nginx reads the command table; nothing else touches it.
    commands: unsafe { ptr::addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_module: Some(init_module),
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// Runs in the master once a configuration has loaded for good (nothing can
/// fail after it), before that configuration's workers are forked.
unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the new cycle, whose configuration is complete.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return Status::NGX_OK.0;
    };
    // Without an http block the module has nothing to do.
    let zone_is_new = zone::take_is_new();
    let main = IntermissionModule::main_conf(cycle);
    if let Some((main, zone)) = main.and_then(|main| Some((main, main.zone()?))) {
        // Like nginx's own "nginx/1.x.y" line: which build is running, in the
        // log of every start and reload.
        ngx::ngx_log_error!(NGX_LOG_NOTICE, cycle.log, "intermission/{VERSION}");
        main.adopt_audit_level();
        zone::begin_configuration(zone, nginx::worker_processes(cycle));
        // `nginx -t` creates the zone too, but starts nothing.
        let testing = nginx::is_testing_config();
        if let (Some(path), Some(header), true, false) =
            (main.state_file(), zone::header(zone), zone_is_new, testing)
        {
            state_file::restore(path, zone::table(header), cycle.log);
        }
    }
    Status::NGX_OK.0
}

/// Runs in each worker process as it starts: its release engine starts.
unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the worker's cycle.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return Status::NGX_OK.0;
    };
    if !nginx::is_worker_process() && !nginx::is_single_process() {
        return Status::NGX_OK.0;
    }
    let main = IntermissionModule::main_conf(cycle);
    if let Some((main, zone)) = main.and_then(|main| Some((main, main.zone()?))) {
        if let Some(header) = zone::header(zone) {
            nginx::count_panics_in(header.internal_errors_counter());
        }
        let late = test_probe::start_late_if_asked(nginx::worker_number());
        let follows_state_file = main.state_file().is_some();
        if !test_probe::engine_disabled() {
            guard_ffi(cycle.log, (), || {
                release::start_worker(zone, follows_state_file)
            });
        }
        if let Some(path) = main.state_file() {
            guard_ffi(cycle.log, (), || state_file::start_watching(path, zone));
        }
        if late {
            ngx::ngx_log_error!(
                NGX_LOG_NOTICE,
                cycle.log,
                "intermission: test probe: a late worker has started"
            );
        }
    }
    Status::NGX_OK.0
}

/// Runs in a worker that exits (gracefully, or on a fast shutdown; not in
/// one that is killed).
unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the worker's cycle.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return;
    };
    if !nginx::is_worker_process() && !nginx::is_single_process() {
        return;
    }
    if let Some(zone) = IntermissionModule::main_conf(cycle).and_then(MainConf::zone) {
        if nginx::is_worker_process() {
            zone::worker_exits(zone, nginx::worker_number());
        }
        guard_ffi(cycle.log, (), release::stop_worker);
        guard_ffi(cycle.log, (), state_file::stop_watching);
        // What a control call changed last reaches the file (a hung disk
        // delays the exit by this much at most).
        guard_ffi(cycle.log, (), || {
            state_file::finish_writes(std::time::Duration::from_secs(2))
        });
    }
}

fn module() -> &'static ngx_module_t {
    // SAFETY: nginx writes the module's indexes while loading configuration,
    // before any request; afterwards the descriptor is only read.
    unsafe { &*ptr::addr_of!(ngx_http_intermission_module) }
}
