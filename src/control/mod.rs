//! The control endpoint's entry: `intermission_control;` in a location
//! answers `.../status`, `.../enable`, `.../disable`, `.../stop` and
//! `.../metrics` for the app of the control request itself (its own
//! `$app_name`), so each virtual host's endpoint controls its own app. This
//! file checks and parses a call and hands it to its action: `status`
//! (status and metrics) reads, `change` (enable, disable, stop) changes an
//! app's state, and `wait` holds the answer back for the state file's write
//! or a drain (`drain`).

mod change;
mod drain;
mod status;
mod wait;

use std::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_core_loc_conf_t, ngx_http_request_t, ngx_int_t,
    ngx_shm_zone_t, ngx_uint_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_HTTP_NOT_FOUND, NGX_HTTP_POST, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::NgxHttpCoreModule;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::config::{LocConf, MainConf};
use crate::nginx::guard_ffi;
use crate::nginx::{self, HttpRequest};
use crate::test_probe::{self, Point};
use crate::{release, zone, IntermissionModule};
use intermission_core::app_table::{AppTable, TableHeader};
use intermission_core::control::{action_of, Action, ControlArgs};
use intermission_core::ids::Millis;
use intermission_core::settings::{check_app_name, LogSafe};

const HTTP_OK: ngx_uint_t = 200;
const HTTP_NOT_MODIFIED: ngx_uint_t = 304;
const HTTP_BAD_REQUEST: ngx_uint_t = 400;

/// The header on every answer of the control endpoint, with the module's
/// version: the ops command line checks for it.
const MARKER: &str = "X-Intermission-Version";

pub const ENABLED: &[u8] = b"Pause enabled.\n";
const DISABLED: &[u8] = b"Pause disabled.\n";
/// Old scripts know only the two answers above; a stop is new, so it says so.
const STOPPED: &[u8] = b"Stopped.\n";

/// `intermission_control;`: this location answers the control endpoint.
pub extern "C" fn set_intermission_control(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's location configuration.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    // SAFETY: called in a location block, where the core module's location
    // configuration exists.
    let Some(core) = (unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) }) else {
        return NGX_CONF_ERROR;
    };
    let core: &mut ngx_http_core_loc_conf_t = core;
    if core.handler.is_some() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"intermission_control\" directive: this location already has a content handler"
        );
        return NGX_CONF_ERROR;
    }
    core.handler = Some(handle_control_request);
    conf.control = true;
    NGX_CONF_OK
}

/// The content handler of `intermission_control` locations.
pub extern "C" fn handle_control_request(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let Some(r) = (unsafe { HttpRequest::from_raw(r) }) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    guard_ffi(r.log(), NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        test_probe::panic_if_asked(&r, Point::Control);
        control(r)
    })
}

/// A control call that passed every check: what each action works on.
struct Call<'r> {
    r: &'r HttpRequest,
    args: ControlArgs,
    main: &'static MainConf,
    location: &'static LocConf,
    zone: &'static ngx_shm_zone_t,
    header: &'static TableHeader,
    table: AppTable<'static>,
    /// The call's own app, by `$app_name`.
    name: &'r [u8],
    /// nginx's monotonic clock as the call is answered.
    now: Millis,
}

fn control(r: HttpRequest) -> ngx_int_t {
    // Every answer of the endpoint says it is the module's (error pages
    // included: nginx keeps the header): a client told a site's URL, or a
    // proxy's own error, can tell it is not talking to the endpoint.
    r.add_response_header(MARKER, crate::VERSION);
    let (action, call) = match parse(&r) {
        Ok(parsed) => parsed,
        Err(rc) => return rc,
    };
    // A pause past its deadline ends before anything else is answered.
    if let Some(app) = call.table.find(call.name) {
        release::end_expired_pause_and_tell_workers(r.log(), call.table, app, call.now);
    }
    match action {
        Action::Status => status::status(&call),
        Action::Metrics => status::metrics(&call),
        Action::Enable => change::enable(&call),
        Action::Disable => change::disable(&call),
        Action::Stop => change::stop(&call),
    }
}

/// Checks the call (its method, action, arguments and app name) and reads
/// the configuration and zone it works on; `Err` is the answer to a call
/// that cannot go on.
fn parse(r: &HttpRequest) -> Result<(Action, Call<'_>), ngx_int_t> {
    // Existing ops scripts use GET; POST is what a careful client sends.
    if r.method() & (NGX_HTTP_GET | NGX_HTTP_HEAD | NGX_HTTP_POST) as ngx_uint_t == 0 {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: control requests take GET, HEAD or POST, not {}",
            LogSafe(r.method_name())
        );
        return Err(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
    }
    let rc = r.discard_body();
    if rc != NGX_OK as ngx_int_t {
        return Err(rc);
    }
    let Some(action) = action_of(r.uri()) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "intermission: unknown control action in \"{}\", expected \".../status\", \".../enable\", \".../disable\", \".../stop\" or \".../metrics\"",
            LogSafe(r.uri())
        );
        return Err(NGX_HTTP_NOT_FOUND as ngx_int_t);
    };
    let args = ControlArgs::parse(r.args()).map_err(|bad| refuse(r, bad))?;
    args.check_for(action).map_err(|bad| refuse(r, bad))?;
    let internal_error = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    let (Some(main), Some(location)) = (
        IntermissionModule::main_conf(r.as_raw()),
        IntermissionModule::location_conf(r.as_raw()),
    ) else {
        return Err(internal_error);
    };
    let (zone, header) = main
        .zone()
        .and_then(|zone| Some((zone, zone::header(zone)?)))
        .ok_or(internal_error)?;
    let name =
        check_app_name(main.variables.app_name(r)).map_err(|too_long| refuse(r, too_long))?;
    let call = Call {
        r,
        args,
        main,
        location,
        zone,
        header,
        table: zone::table(header),
        name,
        now: nginx::now_ms(),
    };
    Ok((action, call))
}

/// A control request that cannot be obeyed as asked: 400, saying why, in the
/// answer and in the error log.
fn refuse(r: &HttpRequest, why: impl std::fmt::Display) -> ngx_int_t {
    ngx_log_error!(
        NGX_LOG_ERR,
        r.log(),
        "intermission: {why}, control request refused"
    );
    r.send_text(
        HTTP_BAD_REQUEST,
        format!("intermission: {why}\n").as_bytes(),
    )
}
