//! The bitfields of nginx's structures that bindgen lays out wrongly, read
//! and written in C (src/nginx_bits.c, compiled by build.rs against the same
//! headers as the bindings).

use nginx_sys::{ngx_http_request_t, ngx_slab_pool_t, ngx_uint_t};

extern "C" {
    pub(super) fn intermission_request_header_only(r: *mut ngx_http_request_t) -> ngx_uint_t;
    pub(super) fn intermission_request_set_header_only(r: *mut ngx_http_request_t);
    pub(super) fn intermission_request_internal(r: *mut ngx_http_request_t) -> ngx_uint_t;
    pub(super) fn intermission_request_discard_body(r: *mut ngx_http_request_t) -> ngx_uint_t;
    pub(super) fn intermission_request_hold_main(r: *mut ngx_http_request_t);
    pub(super) fn intermission_request_connecting_upstream(
        r: *mut ngx_http_request_t,
    ) -> ngx_uint_t;
    fn intermission_slab_log_nomem(pool: *mut ngx_slab_pool_t, on: ngx_uint_t);
}

/// Turns the "no memory" alert of a slab pool's allocations on or off.
///
/// # Safety
/// `pool` must be a live slab pool.
pub unsafe fn set_slab_log_nomem(pool: *mut ngx_slab_pool_t, on: bool) {
    // SAFETY: the caller's contract; the function writes one flag.
    unsafe { intermission_slab_log_nomem(pool, ngx_uint_t::from(on)) }
}
