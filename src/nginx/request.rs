//! `HttpRequest`, a live nginx request, and what the module reads of it:
//! method, path, arguments, headers, status, log; and ending it.

use std::ptr::{self, NonNull};

use super::bits::intermission_request_connecting_upstream;
use nginx_sys::{
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_request_t, ngx_int_t,
    ngx_log_t, ngx_uint_t,
};

/// A live nginx HTTP request.
///
/// Constructed only from a request pointer nginx hands to a handler; it must
/// not outlive that request. Copies are cheap and refer to the same request,
/// so no method hands out a `&mut` into it: the fields the module sets are
/// written through `as_ptr`, one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRequest(NonNull<ngx_http_request_t>);

impl HttpRequest {
    /// # Safety
    /// `r` must point to a live request, and the value must not be used after
    /// nginx frees that request.
    pub unsafe fn from_raw(r: *mut ngx_http_request_t) -> Option<Self> {
        NonNull::new(r).map(HttpRequest)
    }

    /// The request, for nginx's functions and for writing its fields.
    pub fn as_ptr(self) -> *mut ngx_http_request_t {
        self.0.as_ptr()
    }

    /// The request itself, for the `ngx` crate's typed accessors (such as
    /// `HttpModuleLocationConf::location_conf`).
    pub fn as_raw(&self) -> &ngx_http_request_t {
        // SAFETY: the constructor's contract keeps the request alive while
        // this wrapper is used.
        unsafe { self.0.as_ref() }
    }

    pub fn is_main(&self) -> bool {
        ptr::eq(self.as_raw().main, self.as_ptr())
    }

    pub fn log(&self) -> *mut ngx_log_t {
        // SAFETY: every request has a connection with a log.
        unsafe { (*self.as_raw().connection).log }
    }

    /// The status of the answer, once one is set.
    pub fn status(&self) -> ngx_uint_t {
        self.as_raw().headers_out.status
    }

    pub fn method(&self) -> ngx_uint_t {
        self.as_raw().method
    }

    /// The request method as the client sent it.
    pub fn method_name(&self) -> &[u8] {
        self.as_raw().method_name.as_bytes()
    }

    /// The decoded, normalized path, without arguments.
    pub fn uri(&self) -> &[u8] {
        self.as_raw().uri.as_bytes()
    }

    /// The query string, as the client sent it (still percent-encoded).
    pub fn args(&self) -> &[u8] {
        self.as_raw().args.as_bytes()
    }

    /// The value of the first request header named `name` (any case).
    pub fn header_in(&self, name: &[u8]) -> Option<&[u8]> {
        let mut part: *const nginx_sys::ngx_list_part_t = &self.as_raw().headers_in.headers.part;
        // SAFETY: nginx's header list: parts chained by `next`, each holding
        // `nelts` table entries, all in the request's pool.
        unsafe {
            while let Some(p) = part.as_ref() {
                let entries = std::slice::from_raw_parts(
                    p.elts.cast::<nginx_sys::ngx_table_elt_t>(),
                    p.nelts,
                );
                if let Some(found) = entries
                    .iter()
                    .find(|h| h.key.as_bytes().eq_ignore_ascii_case(name))
                {
                    return Some(found.value.as_bytes());
                }
                part = p.next;
            }
        }
        None
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        // SAFETY: a non-null header element is a valid table entry of this
        // request.
        unsafe { self.as_raw().headers_in.user_agent.as_ref() }
            .map(|header| header.value.as_bytes())
    }

    pub fn finalize(&self, rc: ngx_int_t) {
        // SAFETY: finalizing a live request is always allowed.
        unsafe { ngx_http_finalize_request(self.as_ptr(), rc) }
    }

    pub fn discard_body(&self) -> ngx_int_t {
        // SAFETY: a live main request.
        unsafe { ngx_http_discard_request_body(self.as_ptr()) }
    }

    /// nginx has opened the request's upstream connection and not yet
    /// written the request to it.
    pub fn connecting_upstream(&self) -> bool {
        // SAFETY: a live request; its upstream, if any, lives in its pool,
        // and a closed upstream connection is set to null.
        unsafe { intermission_request_connecting_upstream(self.as_ptr()) != 0 }
    }
}
