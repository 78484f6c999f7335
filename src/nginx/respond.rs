//! Answering a request: response headers, and complete responses sent in one
//! buffer (the module's own answers: `text/plain` and `application/json`).

use std::ptr;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_filter, ngx_http_send_header, ngx_int_t, ngx_str_t,
    ngx_uint_t,
};
use ngx::core::Status;

use super::bits::{intermission_request_header_only, intermission_request_set_header_only};
use super::request::HttpRequest;

impl HttpRequest {
    /// Adds a response header; false if out of memory. Both strings are
    /// static, as nginx's own fixed headers are.
    pub fn add_response_header(&self, key: &'static str, value: &'static str) -> bool {
        let as_ngx = |s: &'static str| ngx_str_t {
            len: s.len(),
            data: s.as_ptr().cast_mut(),
        };
        // SAFETY: pushing onto the live request's own header list, allocated
        // from its pool, through the request pointer (no reference into the
        // request is held meanwhile); nginx only reads `key` and `value` of
        // output headers (`hash` 1 means in use), and never writes through
        // them.
        unsafe {
            let headers = ptr::addr_of_mut!((*self.as_ptr()).headers_out.headers);
            let Some(header) = nginx_sys::ngx_list_push(headers)
                .cast::<nginx_sys::ngx_table_elt_t>()
                .as_mut()
            else {
                return false;
            };
            // All fields zero first: null `lowcase_key`, and null `next`
            // where the nginx version has one (1.23 and later).
            ptr::write_bytes(ptr::from_mut(header), 0, 1);
            header.hash = 1;
            header.key = as_ngx(key);
            header.value = as_ngx(value);
        }
        true
    }

    /// Sends a complete `text/plain` response; an empty body with a 304 sends
    /// the header alone. Returns what a content handler returns.
    pub fn send_text(&self, status: ngx_uint_t, body: &[u8]) -> ngx_int_t {
        self.send_body(status, ngx::ngx_string!("text/plain"), body)
    }

    /// Sends a complete `application/json` response.
    pub fn send_json(&self, status: ngx_uint_t, body: &[u8]) -> ngx_int_t {
        self.send_body(status, ngx::ngx_string!("application/json"), body)
    }

    /// Sends a complete response of the given type.
    pub fn send_body(&self, status: ngx_uint_t, content_type: ngx_str_t, body: &[u8]) -> ngx_int_t {
        self.set_response_header(status, content_type, body.len());
        // SAFETY: a live request whose response has not started; no Rust
        // reference into it is held across the call.
        let rc = unsafe { ngx_http_send_header(self.as_ptr()) };
        // SAFETY: a live request; the helper reads one flag.
        let header_only = unsafe { intermission_request_header_only(self.as_ptr()) } != 0;
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || header_only {
            return rc;
        }
        self.send_last_buffer(body)
    }

    /// The status and, for a body of `len` bytes, its type and length; with
    /// no body, a header alone (a 304 carries no body and describes none).
    fn set_response_header(&self, status: ngx_uint_t, content_type: ngx_str_t, len: usize) {
        let r = self.as_ptr();
        // SAFETY: a live request whose response has not started; its fields
        // are written through the request pointer, with no reference into
        // the request held meanwhile (single-threaded worker), and the C
        // helper writes one flag.
        unsafe {
            (*r).headers_out.status = status;
            if len == 0 {
                (*r).headers_out.content_length_n = -1;
                intermission_request_set_header_only(r);
            } else {
                (*r).headers_out.content_type = content_type;
                (*r).headers_out.content_type_len = content_type.len;
                (*r).headers_out.content_length_n = len as _;
            }
        }
    }

    /// Sends `body` (not empty) through the output filters in one buffer,
    /// the last of the response (`last_buf` only for a main request).
    fn send_last_buffer(&self, body: &[u8]) -> ngx_int_t {
        let pool = self.as_raw().pool;
        // SAFETY: the buffer is allocated from the request's pool and sized
        // for the body; the chain lives on the stack for the filter call,
        // which copies what it keeps.
        unsafe {
            let buf: *mut ngx_buf_t = nginx_sys::ngx_create_temp_buf(pool, body.len());
            let Some(buf) = buf.as_mut() else {
                return Status::NGX_ERROR.0;
            };
            ptr::copy_nonoverlapping(body.as_ptr(), buf.last, body.len());
            buf.last = buf.last.add(body.len());
            buf.set_last_buf(if self.is_main() { 1 } else { 0 });
            buf.set_last_in_chain(1);
            let mut chain = ngx_chain_t {
                buf,
                next: ptr::null_mut(),
            };
            ngx_http_output_filter(self.as_ptr(), &mut chain)
        }
    }
}
