//! ngx_http_intermission_module: pauses an application's traffic during
//! maintenance and releases the held requests in arrival order.
//!
//! Where things live:
//! - `config`: directives and merging; `variables`: the `$intermission_*`
//!   variables the module reads;
//! - `zone`: the shared-memory zone, holding the app table;
//! - `hold`: parking and releasing requests;
//! - `in_flight`: counting requests let through, until they finish;
//! - `control`: the `/_intermission/...` endpoint; `drain`: an enable that
//!   answers once the app has no request in flight;
//! - `nginx`: the thin layer over raw nginx request and event structures.
//!
//! The logic that needs no nginx (the pause state machine, the app table, the
//! hold queue, the parsers) is the `intermission-core` crate in `core/`.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use nginx_sys::{
    ngx_array_push, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t, ngx_int_t,
    ngx_log_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE, NGX_LOG_ALERT,
};
use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

mod config;
mod control;
mod drain;
mod hold;
mod in_flight;
mod nginx;
mod panic_probe;
mod variables;
mod zone;

use config::{LocConf, MainConf};

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
            match variables::declare(cf) {
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
            let handler = ngx_array_push(
                &mut core.phases[nginx_sys::ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as usize]
                    .handlers,
            )
            .cast::<ngx_http_handler_pt>();
            if handler.is_null() {
                return Status::NGX_ERROR.0;
            }
            *handler = Some(hold::hold_phase_handler);
            // Count requests out of flight as nginx finishes with them.
            let handler = ngx_array_push(
                &mut core.phases[nginx_sys::ngx_http_phases_NGX_HTTP_LOG_PHASE as usize].handlers,
            )
            .cast::<ngx_http_handler_pt>();
            if handler.is_null() {
                return Status::NGX_ERROR.0;
            }
            *handler = Some(in_flight::request_finished);
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

// SAFETY: the configuration types match what the module context creates.
unsafe impl HttpModuleMainConf for IntermissionModule {
    type MainConf = MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for IntermissionModule {
    type LocationConf = LocConf;
}

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
    commands: unsafe { ptr::addr_of_mut!(config::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_module: Some(init_module),
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
    if let Some(zone) = IntermissionModule::main_conf(cycle).and_then(MainConf::zone) {
        zone::begin_configuration(zone, nginx::worker_processes(cycle));
    }
    Status::NGX_OK.0
}

/// Runs in a worker that exits gracefully (not in one that is killed).
unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the worker's cycle.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return;
    };
    if !nginx::is_worker_process() {
        return;
    }
    if let Some(zone) = IntermissionModule::main_conf(cycle).and_then(MainConf::zone) {
        zone::worker_exits(zone, nginx::worker_number());
    }
}

fn module() -> &'static ngx_module_t {
    // SAFETY: nginx writes the module's indexes while loading configuration,
    // before any request; afterwards the descriptor is only read.
    unsafe { &*ptr::addr_of!(ngx_http_intermission_module) }
}

/// Runs `f` at an FFI boundary: a panic must never unwind into nginx. It is
/// logged and `fallback` returned instead.
fn guard_ffi<T>(log: *mut ngx_log_t, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown panic");
            ngx::ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "intermission: internal error: {message}"
            );
            fallback
        }
    }
}
