//! nginx variables: reading a request's variables, giving them values for
//! the rest of the request, and `VariableValue`, what a variable's get
//! handler fills in.

use std::ptr;

use nginx_sys::{ngx_http_get_indexed_variable, ngx_http_variable_value_t, ngx_uint_t};

use super::request::HttpRequest;

impl HttpRequest {
    /// The value of an indexed variable, or `None` when it is not set.
    pub fn variable(&self, index: ngx_uint_t) -> Option<&[u8]> {
        // SAFETY: as in `variable_if_set`.
        let cached = unsafe { &*self.as_raw().variables.add(index) };
        // nginx's `ngx_http_get_indexed_variable` returns a value that is
        // valid or not found as it is, and evaluates any other: the first
        // half, without the call (a `set $app_name` has given the value by
        // now, in the rewrite phases).
        let value = if cached.valid() != 0 || cached.not_found() != 0 {
            cached
        } else {
            // SAFETY: `index` came from `ngx_http_get_variable_index` at
            // configuration time; the value lives in the request's pool.
            unsafe { ngx_http_get_indexed_variable(self.as_ptr(), index).as_ref()? }
        };
        found_text(value)
    }

    /// The value a variable already has in this request (set by `set`,
    /// `set_variable` or an earlier evaluation), without evaluating it.
    pub fn variable_if_set(&self, index: ngx_uint_t) -> Option<&[u8]> {
        // SAFETY: `index` came from `ngx_http_get_variable_index` at
        // configuration time, so it is within the request's variable array
        // (shared with its subrequests, allocated with the main request).
        found_text(unsafe { &*self.as_raw().variables.add(index) })
    }

    /// Gives a variable its value for the rest of the request, as `set`
    /// does. The value survives internal redirects, which clear module
    /// contexts but not variables. `text` is not copied: it is static.
    pub fn set_variable(&self, index: ngx_uint_t, text: &'static [u8]) {
        // SAFETY: as in `variable_if_set`; the value is a plain struct and
        // the text outlives the request.
        VariableValue(unsafe { &mut *self.as_raw().variables.add(index) }).set(text);
    }

    /// As `set_variable`, with a copy of `text` in the request's pool; false
    /// (and the variable unchanged) if the pool is out of memory.
    pub fn set_variable_copy(&self, index: ngx_uint_t, text: &[u8]) -> bool {
        let Some(copy) = self.pool_copy(text) else {
            return false;
        };
        self.set_variable(index, copy);
        true
    }

    /// A copy of `text` in the request's pool. The `'static` is a white lie
    /// the callers keep: the copy lives exactly as long as the request.
    fn pool_copy(&self, text: &[u8]) -> Option<&'static [u8]> {
        // SAFETY: the pool is the live request's; the copy is written before
        // it is read, and it is freed only with the request.
        unsafe {
            let data = nginx_sys::ngx_pnalloc(self.as_raw().pool, text.len().max(1))
                .cast::<u8>()
                .as_mut()?;
            ptr::copy_nonoverlapping(text.as_ptr(), data, text.len());
            Some(std::slice::from_raw_parts(data, text.len()))
        }
    }
}

/// The value a variable's get handler fills in.
pub struct VariableValue<'v>(&'v mut ngx_http_variable_value_t);

impl<'v> VariableValue<'v> {
    /// # Safety
    /// `v` must be the value nginx passes to a variable's get handler.
    pub unsafe fn from_raw(v: *mut ngx_http_variable_value_t) -> Option<Self> {
        // SAFETY: forwarded from the caller.
        unsafe { v.as_mut().map(VariableValue) }
    }

    pub fn set_not_found(self) {
        self.0.set_not_found(1);
    }

    /// `text` must live as long as the request: static, or from its pool
    /// (`set_copy` or `HttpRequest::set_variable_copy`, a pool copy).
    pub fn set(self, text: &'static [u8]) {
        set_found(self.0, text.len());
        self.0.data = text.as_ptr().cast_mut();
        debug_assert!(
            self.0.len() as usize == text.len() & 0x0fff_ffff
                && self.0.valid() == 1
                && self.0.no_cacheable() == 0
                && self.0.not_found() == 0
                && self.0.escape() == 0,
            "the flags of a variable value are laid out as nginx's ngx_variable_value_t"
        );
    }

    /// A copy of `text` in `r`'s pool; not found if the pool is out of memory.
    pub fn set_copy(self, r: &HttpRequest, text: &[u8]) {
        match r.pool_copy(text) {
            Some(copy) => self.set(copy),
            None => self.set_not_found(),
        }
    }
}

/// The bytes of a variable value that is valid and found, read with its
/// flags in one word (see `set_found`).
fn found_text(value: &ngx_http_variable_value_t) -> Option<&[u8]> {
    const LEN: u32 = 0x0fff_ffff;
    const VALID: u32 = 1 << 28;
    const NOT_FOUND: u32 = 1 << 30;
    let word = flags_and_len(value);
    if word & (VALID | NOT_FOUND) != VALID || value.data.is_null() {
        return None;
    }
    // SAFETY: a valid variable value points to `len` bytes.
    Some(unsafe { std::slice::from_raw_parts(value.data, (word & LEN) as usize) })
}

/// nginx's word of `len` and flags of a variable value, as `set_found`
/// writes it: bindgen's getters read it a bit at a time, which made reading
/// `$app_name` and the module's own variable a tenth of the module's cost
/// on the path of a request that is not held (`scripts/idle-cost`).
#[cfg(target_endian = "little")]
fn flags_and_len(value: &ngx_http_variable_value_t) -> u32 {
    // SAFETY: the bitfield unit is the four bytes of that word, at the
    // start of the value (bindgen's layout of `ngx_variable_value_t`, which
    // `VariableValue::set` checks in debug builds).
    let bytes = unsafe { ptr::addr_of!(value._bitfield_1).cast::<[u8; 4]>().read() };
    let word = u32::from_le_bytes(bytes);
    debug_assert!(
        (word & 0x0fff_ffff) == value.len()
            && (word >> 28 & 1) == value.valid()
            && (word >> 30 & 1) == value.not_found(),
        "the flags of a variable value are laid out as nginx's ngx_variable_value_t"
    );
    word
}

#[cfg(not(target_endian = "little"))]
fn flags_and_len(value: &ngx_http_variable_value_t) -> u32 {
    value.len()
        | value.valid() << 28
        | value.no_cacheable() << 29
        | value.not_found() << 30
        | value.escape() << 31
}

/// Marks a variable value valid and found with `len` bytes, as `set` does.
/// nginx packs `len` (28 bits), `valid`, `no_cacheable`, `not_found` and
/// `escape` into one 32-bit word; bindgen's setters write it a bit at a
/// time, which made this most of the module's cost on the path of a request
/// that is not held (perf, serving a static file flat out). Written whole
/// here; `set` checks the layout in debug builds, which the tests run.
#[cfg(target_endian = "little")]
fn set_found(value: &mut ngx_http_variable_value_t, len: usize) {
    const VALID: u32 = 1 << 28;
    let word = (len as u32 & 0x0fff_ffff) | VALID;
    value._bitfield_1 = nginx_sys::__BindgenBitfieldUnit::new(word.to_le_bytes());
}

#[cfg(not(target_endian = "little"))]
fn set_found(value: &mut ngx_http_variable_value_t, len: usize) {
    value.set_len(len as u32);
    value.set_valid(1);
    value.set_no_cacheable(0);
    value.set_not_found(0);
    value.set_escape(0);
}
