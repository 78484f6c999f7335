//! The variables the module reads per request, and the two it reports.
//!
//! The module declares the ones it reads itself, as changeable variables that
//! are unset by default: a configuration that never mentions one is valid,
//! and `set` (or `map`) overrides it, as with the old Lua script.
//!
//! `$intermission_outcome` and `$intermission_wait` report, for access logs,
//! what the module did with a request. The module writes their values into
//! the request as it decides (as `set` would), so they survive internal
//! redirects and cost no allocation on the path of a request that passes:
//! the outcome is a static string. Beside it, in a variable no configuration
//! can name, the module keeps which in-flight counter counted the request
//! (`Counted`, as static text), for its end to count it out (`in_flight.rs`).

use nginx_sys::{
    ngx_conf_t, ngx_hash_key_t, ngx_http_add_variable, ngx_http_get_variable_index,
    ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t, ngx_str_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_VAR_CHANGEABLE, NGX_HTTP_VAR_NOCACHEABLE, NGX_LOG_WARN,
};
use ngx::core::Status;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

use crate::nginx::{HttpRequest, VariableValue};
use intermission_core::config_check::{self as names, unknown_variable};
use intermission_core::ids::Millis;
use intermission_core::in_flight::Counted;
use intermission_core::outcome::Outcome;

/// Indexes of the module's variables, resolved at configuration time.
#[derive(Debug, Default, Clone, Copy)]
pub struct VariableIndexes {
    app_name: ngx_uint_t,
    max_time: ngx_uint_t,
    on_timeout: ngx_uint_t,
    health_check_path: ngx_uint_t,
    bypass: ngx_uint_t,
    privileged_user_agent: ngx_uint_t,
    outcome: ngx_uint_t,
    wait: ngx_uint_t,
    counted: ngx_uint_t,
}

/// A variable's get handler.
pub type GetHandler = unsafe extern "C" fn(
    *mut ngx_http_request_t,
    *mut ngx_http_variable_value_t,
    usize,
) -> ngx_int_t;

/// The get handlers of the reported variables, for a request the module has
/// written no value for (one held right now: the release engine knows).
pub struct Reporters {
    pub outcome: GetHandler,
    pub wait: GetHandler,
    pub ticket: GetHandler,
}

/// `$intermission_interval` is declared only so that configurations written
/// for the old script stay valid: nothing polls per request here.
const IGNORED: &str = names::INTERVAL;

/// The variable that keeps how a request is counted in flight. The space
/// makes it one no configuration can name: it is only the request's storage.
const COUNTED: &str = "intermission counted in flight";

/// Declares the variables and returns their indexes.
///
/// # Safety
/// `cf` must be the configuration being parsed, in preconfiguration.
pub unsafe fn declare(cf: *mut ngx_conf_t, reporters: Reporters) -> Option<VariableIndexes> {
    // SAFETY: forwarded from the caller.
    let index = |name: &str| unsafe { declare_one(cf, name) };
    let indexes = VariableIndexes {
        app_name: index("app_name")?,
        max_time: index(names::MAX_TIME)?,
        on_timeout: index(names::ON_TIMEOUT)?,
        health_check_path: index(names::HEALTH_CHECK_PATH)?,
        bypass: index(names::BYPASS)?,
        privileged_user_agent: index(names::PRIVILEGED_USER_AGENT)?,
        // SAFETY: forwarded from the caller.
        outcome: unsafe { declare_reported(cf, names::OUTCOME, reporters.outcome)? },
        // SAFETY: forwarded from the caller.
        wait: unsafe { declare_reported(cf, names::WAIT, reporters.wait)? },
        // SAFETY: forwarded from the caller.
        counted: unsafe { declare_reported(cf, COUNTED, unset_variable)? },
    };
    // SAFETY: nginx copies the name; `cf` is valid per the caller. Its value
    // changes once the request is held, so nginx must not cache it earlier.
    unsafe {
        let mut name = ngx_str_t {
            len: names::TICKET.len(),
            data: names::TICKET.as_ptr().cast_mut(),
        };
        let variable = ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t)
            .as_mut()?;
        variable.get_handler = Some(reporters.ticket);
    }
    index(IGNORED)?;
    Some(indexes)
}

/// Warns about every variable the configuration defines (with `set`, `map`,
/// `geo`...) under the module's prefix that the module does not know: a typo
/// would otherwise be silently ignored.
///
/// # Safety
/// `cf` must be the http block's configuration, in postconfiguration (the
/// variables' names are still in `variables_keys` until nginx indexes them).
pub unsafe fn warn_unknown(cf: *mut ngx_conf_t) {
    // SAFETY: forwarded from the caller.
    let Some(core) = (unsafe { NgxHttpCoreModule::main_conf(&*cf) }) else {
        return;
    };
    // SAFETY: the keys' array lives until nginx indexes the variables, after
    // every module's postconfiguration; each key's name is its variable's.
    unsafe {
        let Some(keys) = core.variables_keys.as_ref() else {
            return;
        };
        for key in keys.keys.as_slice::<ngx_hash_key_t>() {
            if let Some(unknown) = unknown_variable(key.key.as_bytes()) {
                ngx_log_error!(NGX_LOG_WARN, (*cf).log, "intermission: {unknown}");
            }
        }
    }
}

unsafe fn declare_one(cf: *mut ngx_conf_t, name: &str) -> Option<ngx_uint_t> {
    let mut name = ngx_str_t {
        len: name.len(),
        data: name.as_ptr().cast_mut(),
    };
    // SAFETY: nginx copies the name; `cf` is valid per the caller.
    unsafe {
        let variable =
            ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t).as_mut()?;
        // Another module (a `map`, say) may already provide a value.
        if variable.get_handler.is_none() {
            variable.get_handler = Some(unset_variable);
        }
        match ngx_http_get_variable_index(cf, &mut name) {
            index if index == NGX_ERROR as ngx_int_t => None,
            index => Some(index as ngx_uint_t),
        }
    }
}

/// Declares a variable the module reports (not changeable by `set`).
/// `report` gives its value when the module has not written one.
unsafe fn declare_reported(
    cf: *mut ngx_conf_t,
    name: &str,
    report: GetHandler,
) -> Option<ngx_uint_t> {
    let mut name = ngx_str_t {
        len: name.len(),
        data: name.as_ptr().cast_mut(),
    };
    // SAFETY: nginx copies the name; `cf` is valid per the caller.
    unsafe {
        let variable = ngx_http_add_variable(cf, &mut name, 0).as_mut()?;
        variable.get_handler = Some(report);
        match ngx_http_get_variable_index(cf, &mut name) {
            index if index == NGX_ERROR as ngx_int_t => None,
            index => Some(index as ngx_uint_t),
        }
    }
}

/// The body of a reported variable's get handler: `fill` gives the value of
/// `v` for the request `r`.
///
/// # Safety
/// As for a get handler: `r` a live request, `v` the value to fill in.
pub unsafe fn fill_reported(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    fill: impl FnOnce(&HttpRequest, VariableValue),
) -> ngx_int_t {
    // SAFETY: forwarded from the caller.
    let (Some(r), Some(value)) = (unsafe { HttpRequest::from_raw(r) }, unsafe {
        VariableValue::from_raw(v)
    }) else {
        return NGX_ERROR as ngx_int_t;
    };
    fill(&r, value);
    Status::NGX_OK.0
}

/// The value of a variable nobody has set: not found, so the default applies.
unsafe extern "C" fn unset_variable(
    _r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes the value to fill in.
    unsafe { (*v).set_not_found(1) };
    Status::NGX_OK.0
}

/// The raw values of one request's variables; `None` where unset.
pub struct RequestVariables<'r> {
    pub app_name: &'r [u8],
    pub max_time: Option<&'r [u8]>,
    pub on_timeout: Option<&'r [u8]>,
    pub health_check_path: Option<&'r [u8]>,
    pub bypass: Option<&'r [u8]>,
    pub privileged_user_agent: Option<&'r [u8]>,
}

impl VariableIndexes {
    /// The app a request belongs to; unset means the default app (empty name).
    pub fn app_name<'r>(&self, r: &'r HttpRequest) -> &'r [u8] {
        r.variable(self.app_name).unwrap_or_default()
    }

    pub fn read<'r>(&self, r: &'r HttpRequest) -> RequestVariables<'r> {
        RequestVariables {
            app_name: self.app_name(r),
            max_time: r.variable(self.max_time),
            on_timeout: r.variable(self.on_timeout),
            health_check_path: r.variable(self.health_check_path),
            bypass: r.variable(self.bypass),
            privileged_user_agent: r.variable(self.privileged_user_agent),
        }
    }
}

/// What the module did with a request, written as it decides.
impl VariableIndexes {
    /// Records `outcome`; `counted` is how the request is counted in
    /// flight, if it is, for its end to count it out.
    pub fn record_outcome(&self, r: &HttpRequest, outcome: Outcome, counted: Option<Counted>) {
        r.set_variable(self.outcome, outcome.text());
        if let Some(counted) = counted {
            self.record_counted(r, counted);
        }
    }

    /// Records how the request is counted in flight (again, once upgraded).
    pub fn record_counted(&self, r: &HttpRequest, counted: Counted) {
        r.set_variable(self.counted, counted.text());
    }

    /// The module has decided about this request already (before an
    /// internal redirect that brought it back).
    pub fn outcome_recorded(&self, r: &HttpRequest) -> bool {
        r.variable_if_set(self.outcome).is_some()
    }

    /// How this request is counted in flight, if it is.
    pub fn counted_in_flight(&self, r: &HttpRequest) -> Option<Counted> {
        Counted::of_text(r.variable_if_set(self.counted)?)
    }

    /// Records how long a held request waited, in milliseconds.
    pub fn record_wait(&self, r: &HttpRequest, waited: Millis) {
        // Out of memory: the variable reports the wait so far instead.
        let _ = r.set_variable_copy(self.wait, waited.to_string().as_bytes());
    }
}
