//! The module's place in nginx's chain of header filters: put first at
//! configuration, passing each response header on to the filter that was
//! first before it.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use nginx_sys::{ngx_http_request_t, ngx_int_t};

/// A header filter, as nginx chains them.
pub type HeaderFilter = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// The header filter that was first in nginx's chain before this module's.
static NEXT_HEADER_FILTER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Puts `filter` first in nginx's chain of header filters; it must end by
/// calling `next_header_filter`.
///
/// # Safety
/// Only in postconfiguration, where nginx's own modules chain theirs.
pub unsafe fn push_header_filter(filter: HeaderFilter) {
    // SAFETY: nginx reads and writes the chain's head only while it reads
    // the configuration, in one thread (the caller's contract).
    unsafe {
        let next = nginx_sys::ngx_http_top_header_filter;
        NEXT_HEADER_FILTER.store(
            next.map_or(ptr::null_mut(), |f| f as *mut c_void),
            Ordering::Relaxed,
        );
        nginx_sys::ngx_http_top_header_filter = Some(filter);
    }
}

/// Passes the response header on to the next filter in nginx's chain.
///
/// # Safety
/// `r` as nginx passed it to the calling header filter.
pub unsafe fn next_header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    let next = NEXT_HEADER_FILTER.load(Ordering::Relaxed);
    if next.is_null() {
        return nginx_sys::NGX_OK as ngx_int_t;
    }
    // SAFETY: stored by `push_header_filter` from nginx's own chain: a
    // header filter function.
    unsafe {
        let next: HeaderFilter = std::mem::transmute::<*mut c_void, HeaderFilter>(next);
        next(r)
    }
}
