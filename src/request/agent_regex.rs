//! `$intermission_privileged_user_agent` as a regular expression (`~EXPR`,
//! `~*EXPR`): compiled once per distinct value in each worker, never per
//! request. The value comes from a variable, known only at request time, so
//! the worker keeps the last few it compiled; one that does not compile is
//! logged once (while it stays among them) and privileges nobody. An nginx
//! built without PCRE has no expressions: there a `~` value privileges nobody,
//! logged once by each worker.

#[cfg(not(nginx_pcre))]
use std::cell::Cell;
#[cfg(nginx_pcre)]
use std::cell::RefCell;

use nginx_sys::{ngx_log_t, NGX_LOG_WARN};
use ngx::ngx_log_error;

#[cfg(nginx_pcre)]
use crate::nginx::Regex;
use intermission_core::settings::{AgentRegex, LogSafe};

#[cfg(nginx_pcre)]
/// How many expressions a worker keeps: a configuration has a handful of
/// privileged agents at most, and this bounds what a value taken from the
/// request itself could make the worker keep.
const KEPT: usize = 4;

#[cfg(nginx_pcre)]
struct Compiled {
    pattern: Vec<u8>,
    caseless: bool,
    /// `None` if it did not compile.
    regex: Option<Regex>,
}

#[cfg(nginx_pcre)]
thread_local! {
    /// This worker's expressions, the most recently used first. Only the
    /// worker's one thread runs request handlers.
    static KEPT_REGEXES: RefCell<Vec<Compiled>> = const { RefCell::new(Vec::new()) };
}

#[cfg(nginx_pcre)]
/// Whether `agent` matches `expression`; it is compiled the first time
/// this worker meets it.
pub fn matches(expression: AgentRegex<'_>, agent: &[u8], log: *mut ngx_log_t) -> bool {
    KEPT_REGEXES.with_borrow_mut(|kept| {
        let found = kept
            .iter()
            .position(|c| c.caseless == expression.caseless && c.pattern == expression.pattern);
        let at = match found {
            Some(at) => at,
            None => {
                let regex = Regex::compile(expression.pattern, expression.caseless, log)
                    .map_err(|error| {
                        ngx_log_error!(
                            NGX_LOG_WARN,
                            log,
                            "intermission: $intermission_privileged_user_agent \"~{}{}\" is not \
                             a valid regular expression ({}), so no user agent is privileged",
                            if expression.caseless { "*" } else { "" },
                            LogSafe(expression.pattern),
                            error
                        );
                    })
                    .ok();
                kept.truncate(KEPT - 1);
                kept.push(Compiled {
                    pattern: expression.pattern.to_vec(),
                    caseless: expression.caseless,
                    regex,
                });
                kept.len() - 1
            }
        };
        // The most recently used first: the last one is dropped next.
        kept[..=at].rotate_right(1);
        kept[0]
            .regex
            .as_ref()
            .is_some_and(|regex| regex.is_match(agent))
    })
}

/// Without PCRE: no user agent matches an expression.
#[cfg(not(nginx_pcre))]
pub fn matches(expression: AgentRegex<'_>, _agent: &[u8], log: *mut ngx_log_t) -> bool {
    thread_local! {
        static WARNED: Cell<bool> = const { Cell::new(false) };
    }
    if !WARNED.replace(true) {
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "intermission: $intermission_privileged_user_agent \"~{}{}\" is a regular expression, \
             but this nginx was built without PCRE, so no user agent is privileged",
            if expression.caseless { "*" } else { "" },
            LogSafe(expression.pattern)
        );
    }
    false
}
