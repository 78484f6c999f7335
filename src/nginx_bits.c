/*
 * The bitfields of nginx's structures that the module reads and writes,
 * compiled by the C compiler against the same headers as nginx itself.
 *
 * Why not bindgen's accessors: nginx-sys 0.5 generates its bindings with
 * bindgen 0.72, which lays out a run of bitfields that begins in the middle
 * of a storage unit wrongly (rust-bindgen issue 3384, fixed in 0.73). Two
 * such runs matter here: the flags of ngx_http_request_t from nginx 1.29 on,
 * which follow the new `in_port_t port` (the accessors are off by two bits:
 * on 1.30 and 1.31 `header_only` read another flag), and `log_nomem` of
 * ngx_slab_pool_t, which follows `u_char zero`. Runs that begin on a unit's
 * boundary (ngx_event_t, ngx_connection_t, ngx_buf_t, variable values) are
 * laid out right, and stay in Rust.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_uint_t
intermission_request_header_only(ngx_http_request_t *r)
{
    return r->header_only;
}


void
intermission_request_set_header_only(ngx_http_request_t *r)
{
    r->header_only = 1;
}


ngx_uint_t
intermission_request_internal(ngx_http_request_t *r)
{
    return r->internal;
}


ngx_uint_t
intermission_request_discard_body(ngx_http_request_t *r)
{
    return r->discard_body;
}


void
intermission_request_hold_main(ngx_http_request_t *r)
{
    r->main->count++;
}


/*
 * nginx has opened the request's upstream connection and not yet written the
 * request to it (request_sent is a bitfield of ngx_http_upstream_t).
 */
ngx_uint_t
intermission_request_connecting_upstream(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u = r->upstream;

    return u != NULL && u->peer.connection != NULL && !u->request_sent;
}


void
intermission_slab_log_nomem(ngx_slab_pool_t *pool, ngx_uint_t on)
{
    pool->log_nomem = on ? 1 : 0;
}
