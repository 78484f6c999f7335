//! A regular expression compiled at request time with nginx's own PCRE (as
//! `map` and `if` use it), in a pool of its own, so that it can be dropped
//! whenever its user no longer needs it.

use std::ptr;

use nginx_sys::{
    ngx_create_pool, ngx_destroy_pool, ngx_log_t, ngx_pool_t, ngx_regex_compile,
    ngx_regex_compile_t, ngx_regex_exec, ngx_regex_t, ngx_str_t, NGX_DEFAULT_POOL_SIZE,
    NGX_MAX_CONF_ERRSTR, NGX_OK, NGX_REGEX_CASELESS,
};

/// A compiled expression; its memory is its pool's, freed on drop.
pub struct Regex {
    regex: *mut ngx_regex_t,
    pool: *mut ngx_pool_t,
}

impl Regex {
    /// Compiles `pattern`; `Err` with PCRE's message if it does not compile
    /// (or memory ran out).
    pub fn compile(pattern: &[u8], caseless: bool, log: *mut ngx_log_t) -> Result<Regex, String> {
        // SAFETY: a pool of our own, destroyed on every path that does not
        // hand it to the `Regex` (whose drop destroys it).
        let pool = unsafe { ngx_create_pool(NGX_DEFAULT_POOL_SIZE as usize, log) };
        if pool.is_null() {
            return Err("no memory".to_owned());
        }
        let mut owned = Regex {
            regex: ptr::null_mut(),
            pool,
        };
        // The old PCRE reads the pattern up to a NUL: the copy ends with one.
        // SAFETY: the pool is live; the copy is `len + 1` bytes long.
        let data = unsafe { nginx_sys::ngx_pnalloc(pool, pattern.len() + 1) }.cast::<u8>();
        if data.is_null() {
            return Err("no memory".to_owned());
        }
        // SAFETY: `data` has room for the pattern and its NUL.
        unsafe {
            ptr::copy_nonoverlapping(pattern.as_ptr(), data, pattern.len());
            *data.add(pattern.len()) = 0;
        }
        let mut error = [0u8; NGX_MAX_CONF_ERRSTR as usize];
        let mut compile = ngx_regex_compile_t {
            pattern: ngx_str_t {
                len: pattern.len(),
                data,
            },
            pool,
            options: if caseless {
                NGX_REGEX_CASELESS as usize
            } else {
                0
            },
            regex: ptr::null_mut(),
            captures: 0,
            named_captures: 0,
            name_size: 0,
            names: ptr::null_mut(),
            err: ngx_str_t {
                len: error.len(),
                data: error.as_mut_ptr(),
            },
        };
        // SAFETY: every field is set; nginx allocates the expression in
        // `pool` and writes a message of at most `err.len` bytes into `error`.
        if unsafe { ngx_regex_compile(&mut compile) } != NGX_OK as isize {
            let len = compile.err.len.min(error.len());
            return Err(String::from_utf8_lossy(&error[..len]).into_owned());
        }
        owned.regex = compile.regex;
        Ok(owned)
    }

    /// Whether the expression matches somewhere in `subject`.
    pub fn is_match(&self, subject: &[u8]) -> bool {
        let mut subject = ngx_str_t {
            len: subject.len(),
            data: subject.as_ptr().cast_mut(),
        };
        // SAFETY: the expression is live (its pool is ours); no captures are
        // asked for, and nginx only reads the subject.
        unsafe { ngx_regex_exec(self.regex, &mut subject, ptr::null_mut(), 0) >= 0 }
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: the pool is ours and nothing points into it any more.
        unsafe { ngx_destroy_pool(self.pool) };
    }
}
