//! Directives, their configuration structures and merging.
//!
//! | directive                   | context                  |
//! |-----------------------------|--------------------------|
//! | `intermission [on\|off];`   | http, server, location   |
//! | `intermission_control;`     | location                 |
//! | `intermission_zone SIZE;`   | http                     |
//! | `intermission_max_held N;`  | http, server, location   |
//! | `intermission_max_pause T;` | http, server, location   |
//! | `intermission_state_file P;`| http                     |
//! | `intermission_log_level L;` | http                     |

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_flag_t, ngx_int_t, ngx_shm_zone_t, ngx_str_t, ngx_uint_t,
    NGX_CONF_UNSET, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleMainConf, Merge, MergeConfigError};
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::variables::VariableIndexes;
use crate::{zone, IntermissionModule};
use intermission_core::config_check::{Site, UnusedMaxPause};

/// http-level configuration.
#[derive(Debug)]
pub struct MainConf {
    /// The zone; set by `intermission_zone` or, without it, to the default
    /// size once the http block has been read.
    pub zone: *mut ngx_shm_zone_t,
    pub variables: VariableIndexes,
    /// `intermission_state_file`: its full path (from the configuration's
    /// pool), empty for `off`; `None` until the directive is seen.
    pub state_file: Option<ngx_str_t>,
    /// Every `intermission_max_pause` of the configuration being read, last
    /// first (a list in the configuration's pool), for `nginx -t` to warn
    /// about those no control location gets.
    max_pause_sites: *const MaxPauseSite,
    /// `intermission_log_level`; `None` until the directive is seen.
    pub log_level: Option<ngx_uint_t>,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            zone: ptr::null_mut(),
            variables: VariableIndexes::default(),
            state_file: None,
            max_pause_sites: ptr::null(),
            log_level: None,
        }
    }
}

/// The level of the audit lines (an app paused, resumed, stopped, drained,
/// at its deadline) without `intermission_log_level`: `error`, so that the
/// default `error_log` (at `error`, as Debian's) keeps the audit trail, as
/// the old Lua script's lines at `error` were kept.
const DEFAULT_LOG_LEVEL: ngx_uint_t = NGX_LOG_ERR as ngx_uint_t;

/// The running configuration's audit level, for lines logged where no
/// configuration is at hand (timers). Set in the master as a configuration
/// is taken for good, before it forks that configuration's workers: each
/// worker keeps the level of the configuration it was started with.
static AUDIT_LEVEL: AtomicUsize = AtomicUsize::new(DEFAULT_LOG_LEVEL);

/// The level to log the audit lines at.
pub fn audit_level() -> ngx_uint_t {
    AUDIT_LEVEL.load(Ordering::Relaxed)
}

impl MainConf {
    /// Makes this configuration's `intermission_log_level` the audit level.
    pub fn adopt_audit_level(&self) {
        let level = self.log_level.unwrap_or(DEFAULT_LOG_LEVEL);
        AUDIT_LEVEL.store(level, Ordering::Relaxed);
    }
}

/// `intermission_log_level info | notice | warn | error;`
pub extern "C" fn set_intermission_log_level(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's main configuration.
    let conf = unsafe { &mut *conf.cast::<MainConf>() };
    if conf.log_level.is_some() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: called by nginx for this directive, which takes one argument.
    let value = unsafe { arguments(cf) }[0];
    let level = match value.as_bytes() {
        b"info" => NGX_LOG_INFO,
        b"notice" => NGX_LOG_NOTICE,
        b"warn" => NGX_LOG_WARN,
        b"error" => NGX_LOG_ERR,
        _ => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid value \"{value}\" in \"intermission_log_level\" directive, \
                 it must be \"info\", \"notice\", \"warn\" or \"error\""
            );
            return NGX_CONF_ERROR;
        }
    };
    conf.log_level = Some(level as ngx_uint_t);
    NGX_CONF_OK
}

/// Where an `intermission_max_pause` was written, and whether a location
/// with `intermission_control` gets its value.
#[derive(Debug)]
struct MaxPauseSite {
    /// The configuration file's name, from the cycle's pool.
    file: ngx_str_t,
    line: usize,
    used: Cell<bool>,
    next: *const MaxPauseSite,
}

impl MainConf {
    pub fn zone(&self) -> Option<&ngx_shm_zone_t> {
        // SAFETY: set at configuration time to a zone of this cycle, which
        // lives as long as the configuration that points to it.
        unsafe { self.zone.as_ref() }
    }

    /// The state file's path, if one is configured.
    pub fn state_file(&self) -> Option<&[u8]> {
        self.state_file
            .as_ref()
            .map(|path| path.as_bytes())
            .filter(|path| !path.is_empty())
    }

    /// The zone's size, for messages that tell the operator what to enlarge.
    pub fn zone_size(&self) -> usize {
        self.zone().map_or(0, |zone| zone.shm.size)
    }
}

/// Location-level configuration.
#[derive(Debug)]
pub struct LocConf {
    /// `intermission`: hold this location's requests while its app is paused.
    pub hold: ngx_flag_t,
    /// `intermission_control` is set here. Never inherited: it marks the
    /// endpoint itself, which must answer while its app is paused even when
    /// `intermission` is inherited from the server or http level.
    pub control: bool,
    /// `intermission_max_held`: the most requests its app holds at once;
    /// `NGX_CONF_UNSET` for none. Set by nginx's own `ngx_conf_set_num_slot`.
    pub max_held: ngx_int_t,
    /// `intermission_max_pause`, in milliseconds; 0 for `off`.
    pub max_pause_ms: i64,
    /// Where that value was written (here or in a block around), if it was.
    max_pause_site: *const MaxPauseSite,
}

/// `intermission_max_pause` when not set: ten minutes. Long enough for the
/// maintenance a pause is for (seconds to a few minutes), short enough that
/// an ops script that died mid-way leaves the site held for minutes, not
/// until someone notices.
pub const DEFAULT_MAX_PAUSE_MS: i64 = 600_000;

const UNSET_TIME: i64 = -1;

const UNSET: ngx_flag_t = -1;

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            hold: UNSET,
            control: false,
            max_held: NGX_CONF_UNSET as ngx_int_t,
            max_pause_ms: UNSET_TIME,
            max_pause_site: ptr::null(),
        }
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), MergeConfigError> {
        if self.hold == UNSET {
            self.hold = if prev.hold == UNSET { 0 } else { prev.hold };
        }
        if self.max_held == NGX_CONF_UNSET as ngx_int_t {
            self.max_held = prev.max_held;
        }
        if self.max_pause_ms == UNSET_TIME {
            self.max_pause_ms = if prev.max_pause_ms == UNSET_TIME {
                DEFAULT_MAX_PAUSE_MS
            } else {
                prev.max_pause_ms
            };
            self.max_pause_site = prev.max_pause_site;
        }
        // SAFETY: a site is allocated in the configuration's pool as its
        // directive is read, and the blocks are merged before that pool
        // goes (in the same configuration's reading).
        if let (true, Some(site)) = (self.control, unsafe { self.max_pause_site.as_ref() }) {
            site.used.set(true);
        }
        Ok(())
    }
}

impl LocConf {
    pub fn holds(&self) -> bool {
        self.hold == 1 && !self.control
    }

    /// How long a pause enabled here lasts when the call names no `ttl`.
    pub fn max_pause(&self) -> Option<u64> {
        u64::try_from(self.max_pause_ms).ok().filter(|&ms| ms > 0)
    }

    /// The most requests of this location's app held at once, if limited.
    pub fn max_held(&self) -> Option<u64> {
        u64::try_from(self.max_held).ok()
    }
}

/// The directive's arguments after its name.
///
/// # Safety
/// `cf` must be the configuration being parsed, inside a directive handler.
pub unsafe fn arguments<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: nginx fills `args` with the directive name and its arguments.
    unsafe { &(*(*cf).args).as_slice::<ngx_str_t>()[1..] }
}

/// `intermission;`, `intermission on;` or `intermission off;`
pub extern "C" fn set_intermission(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's location configuration.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if conf.hold != UNSET {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: called by nginx for this directive.
    conf.hold = match unsafe { arguments(cf) } {
        [] => 1,
        [value] if value.as_bytes().eq_ignore_ascii_case(b"on") => 1,
        [value] if value.as_bytes().eq_ignore_ascii_case(b"off") => 0,
        [value] => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid value \"{value}\" in \"intermission\" directive, it must be \"on\" or \"off\""
            );
            return NGX_CONF_ERROR;
        }
        _ => unreachable!("nginx checks the argument count"),
    };
    NGX_CONF_OK
}

/// `intermission_max_pause TIME;` or `intermission_max_pause off;`
pub extern "C" fn set_intermission_max_pause(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's location configuration.
    let conf = unsafe { &mut *conf.cast::<LocConf>() };
    if conf.max_pause_ms != UNSET_TIME {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: called by nginx for this directive, which takes one argument.
    let mut value = unsafe { arguments(cf) }[0];
    conf.max_pause_ms = if value.as_bytes().eq_ignore_ascii_case(b"off") {
        0
    } else {
        // SAFETY: nginx's own time syntax ("90s", "10m", "1h30m"), in
        // milliseconds.
        let ms = unsafe { nginx_sys::ngx_parse_time(&mut value, 0) };
        if ms <= 0 {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid value \"{value}\" in \"intermission_max_pause\" directive, \
                 it must be a time such as \"10m\", or \"off\""
            );
            return NGX_CONF_ERROR;
        }
        ms as i64
    };
    // An `off` is recorded too: one that no control location gets has no
    // more effect than a time there (`warn_unused_max_pause`).
    // SAFETY: as above.
    match unsafe { record_max_pause_site(cf) } {
        Some(site) => {
            conf.max_pause_site = site;
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// Notes where the `intermission_max_pause` being read is written, in the
/// main configuration's list; `None` if out of memory.
///
/// # Safety
/// `cf` must be the configuration being parsed, inside the directive.
unsafe fn record_max_pause_site(cf: *mut ngx_conf_t) -> Option<*const MaxPauseSite> {
    // SAFETY: forwarded from the caller: in an http block, whose main
    // configuration exists; `conf_file` is the file being read.
    unsafe {
        let main = IntermissionModule::main_conf_mut(&*cf)?;
        let conf_file = (*cf).conf_file.as_ref()?;
        let site = nginx_sys::ngx_palloc((*cf).pool, std::mem::size_of::<MaxPauseSite>())
            .cast::<MaxPauseSite>();
        if site.is_null() {
            return None;
        }
        site.write(MaxPauseSite {
            file: conf_file.file.name,
            line: conf_file.line,
            used: Cell::new(false),
            next: main.max_pause_sites,
        });
        main.max_pause_sites = site;
        Some(site)
    }
}

/// Warns, at the end of the http block, about each `intermission_max_pause`
/// that no location with `intermission_control` gets: it limits nothing.
///
/// # Safety
/// `cf` must be the http block's configuration, after its blocks are merged.
pub unsafe fn warn_unused_max_pause(cf: *mut ngx_conf_t, main: &MainConf) {
    let mut next = main.max_pause_sites;
    // SAFETY: the list's sites are in the configuration's pool (above).
    while let Some(site) = unsafe { next.as_ref() } {
        if !site.used.get() {
            let site_of = Site {
                file: site.file.as_bytes(),
                line: site.line,
            };
            // SAFETY: forwarded from the caller.
            let log = unsafe { (*cf).log };
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "intermission: {}",
                UnusedMaxPause(site_of)
            );
        }
        next = site.next;
    }
}

/// `intermission_zone SIZE;`
pub extern "C" fn set_intermission_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's main configuration.
    let conf = unsafe { &mut *conf.cast::<MainConf>() };
    if !conf.zone.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: called by nginx for this directive, which takes one argument.
    let mut value = unsafe { arguments(cf) }[0];
    // SAFETY: parses the argument in place, as nginx's own directives do.
    let size = unsafe { nginx_sys::ngx_parse_size(&mut value) };
    if size < 0 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "invalid size \"{value}\" in \"intermission_zone\" directive"
        );
        return NGX_CONF_ERROR;
    }
    if (size as usize) < zone::min_size() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "size \"{value}\" in \"intermission_zone\" directive is too small, it must be at least {}k",
            zone::min_size() / 1024
        );
        return NGX_CONF_ERROR;
    }
    // SAFETY: `cf` is the configuration being parsed.
    match unsafe { zone::add(cf, size as usize) } {
        Some(zone) => {
            conf.zone = zone;
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// `intermission_state_file PATH;` or `intermission_state_file off;`
pub extern "C" fn set_intermission_state_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's main configuration.
    let conf = unsafe { &mut *conf.cast::<MainConf>() };
    if conf.state_file.is_some() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: called by nginx for this directive, which takes one argument.
    let mut path = unsafe { arguments(cf) }[0];
    if path.as_bytes() == b"off" {
        conf.state_file = Some(ngx_str_t::default());
        return NGX_CONF_OK;
    }
    if path.is_empty() || path.as_bytes().ends_with(b"/") || path.as_bytes().contains(&0) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "invalid path \"{path}\" in \"intermission_state_file\" directive, \
             it must name a file, such as \"/var/lib/nginx/intermission/state\", or be \"off\""
        );
        return NGX_CONF_ERROR;
    }
    // A relative path is relative to nginx's prefix, as for nginx's own
    // files; the full name is allocated in the configuration's pool.
    // SAFETY: `cf` is the configuration being parsed; its cycle is live.
    if unsafe { nginx_sys::ngx_conf_full_name((*cf).cycle, &mut path, 0) } != 0 {
        return NGX_CONF_ERROR;
    }
    conf.state_file = Some(path);
    NGX_CONF_OK
}

/// Without `intermission_zone`, the default zone.
///
/// # Safety
/// `cf` must be the configuration being parsed, at the end of the http block.
pub unsafe fn ensure_zone(cf: *mut ngx_conf_t, conf: &mut MainConf) -> bool {
    if conf.zone.is_null() {
        // SAFETY: forwarded from the caller.
        match unsafe { zone::add(cf, zone::DEFAULT_ZONE_SIZE) } {
            Some(zone) => conf.zone = zone,
            None => return false,
        }
    }
    true
}
