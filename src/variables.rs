//! The variables the module reads per request.
//!
//! The module declares them itself, as changeable variables that are unset
//! by default: a configuration that never mentions one is valid, and `set`
//! (or `map`) overrides it, as with the old Lua script.

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_get_variable_index, ngx_http_request_t,
    ngx_http_variable_value_t, ngx_int_t, ngx_str_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_VAR_CHANGEABLE,
};
use ngx::core::Status;

use crate::nginx::HttpRequest;

/// Indexes of the module's variables, resolved at configuration time.
#[derive(Debug, Default, Clone, Copy)]
pub struct VariableIndexes {
    app_name: ngx_uint_t,
    max_time: ngx_uint_t,
    on_timeout: ngx_uint_t,
    health_check_path: ngx_uint_t,
    privileged_user_agent: ngx_uint_t,
}

/// `$intermission_interval` is declared only so that configurations written
/// for the old script stay valid: nothing polls per request here.
const IGNORED: &str = "intermission_interval";

/// Declares the variables and returns their indexes.
///
/// # Safety
/// `cf` must be the configuration being parsed, in preconfiguration.
pub unsafe fn declare(cf: *mut ngx_conf_t) -> Option<VariableIndexes> {
    // SAFETY: forwarded from the caller.
    let index = |name: &str| unsafe { declare_one(cf, name) };
    let indexes = VariableIndexes {
        app_name: index("app_name")?,
        max_time: index("intermission_max_time")?,
        on_timeout: index("intermission_on_timeout")?,
        health_check_path: index("intermission_health_check_path")?,
        privileged_user_agent: index("intermission_privileged_user_agent")?,
    };
    index(IGNORED)?;
    Some(indexes)
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
            privileged_user_agent: r.variable(self.privileged_user_agent),
        }
    }
}
