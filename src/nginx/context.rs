//! Per-request state of the module's own: attached to a request through a
//! cleanup of its pool, found again through the module's context slot (or,
//! after an internal redirect cleared the slot, through the pool's
//! cleanups), and dropped when nginx frees the request.

use std::any::TypeId;
use std::ffi::c_void;
use std::ptr;

use nginx_sys::{ngx_module_t, ngx_pool_cleanup_add, ngx_pool_cleanup_t, ngx_uint_t};

use super::bits::intermission_request_internal;
use super::ffi_guard::guard_ffi;
use super::process::cycle_log;
use super::request::HttpRequest;

/// Per-request state a module attaches to a request; dropped with the
/// request's pool, whichever way the request ends.
pub trait RequestContext: Sized + 'static {
    /// Called when nginx frees the request, before the value is dropped.
    fn on_request_freed(&self);
}

/// A value attached to a request, with what its cleanup needs to know.
#[repr(C)]
struct Attached<T> {
    ctx_index: ngx_uint_t,
    type_id: TypeId,
    drop: unsafe fn(*mut c_void),
    value: T,
}

impl HttpRequest {
    /// Attaches `value` to the request, for `context` to find again. It is
    /// dropped (after `on_request_freed`) when nginx frees the request.
    pub fn attach_context<T: RequestContext>(&self, module: &ngx_module_t, value: T) -> Option<&T> {
        let attached = Attached {
            ctx_index: module.ctx_index,
            type_id: TypeId::of::<T>(),
            drop: drop_attached::<T>,
            value,
        };
        // SAFETY: the pool belongs to this request; the cleanup allocation is
        // sized and (pool-)aligned for `Attached<T>`, written before any read.
        unsafe {
            let size = std::mem::size_of::<Attached<T>>();
            let cleanup = ngx_pool_cleanup_add(self.as_raw().pool, size).as_mut()?;
            let slot = cleanup.data.cast::<Attached<T>>();
            slot.write(attached);
            cleanup.handler = Some(run_request_cleanup);
            *self.as_raw().ctx.add(module.ctx_index) = slot.cast();
            Some(&(*slot).value)
        }
    }

    /// The value of type `T` attached by `attach_context`, if any. An
    /// internal redirect clears the request's module contexts, so those
    /// requests are looked up in the pool's cleanups instead, as nginx's
    /// realip module does.
    pub fn context<T: RequestContext>(&self, module: &ngx_module_t) -> Option<&T> {
        let raw = self.as_raw();
        // SAFETY: the context slot is ours and holds null or an `Attached<_>`
        // written by `attach_context`; a cleanup entry with our handler holds
        // an `Attached` whose `ctx_index` names the module that wrote it. The
        // leading fields have one layout for every type, and `type_id` says
        // which type follows them.
        unsafe {
            let slot = raw.ctx.add(module.ctx_index);
            if let Some(attached) = (*slot).cast::<Attached<()>>().as_ref() {
                if attached.type_id != TypeId::of::<T>() {
                    return None;
                }
                return Some(&(*(*slot).cast::<Attached<T>>()).value);
            }
            if intermission_request_internal(self.as_ptr()) == 0 {
                return None;
            }
            let mut cleanup: *mut ngx_pool_cleanup_t = (*raw.pool).cleanup;
            while let Some(entry) = cleanup.as_ref() {
                if is_attached_cleanup(entry) {
                    let attached = entry.data.cast::<Attached<()>>();
                    if (*attached).ctx_index == module.ctx_index
                        && (*attached).type_id == TypeId::of::<T>()
                    {
                        *slot = attached.cast();
                        return Some(&(*entry.data.cast::<Attached<T>>()).value);
                    }
                }
                cleanup = entry.next;
            }
            None
        }
    }
}

unsafe fn drop_attached<T: RequestContext>(data: *mut c_void) {
    let attached = data.cast::<Attached<T>>();
    // SAFETY: called once, from `run_request_cleanup`, on an `Attached<T>`.
    unsafe {
        // nginx frees requests in many places; a panic here must not unwind
        // into it either (the value is still dropped).
        guard_ffi(cycle_log(), (), || (*attached).value.on_request_freed());
        ptr::drop_in_place(attached);
    }
}

/// The one pool-cleanup handler of attached values. It is not generic, so it
/// has a single address in this library, which is how `context` recognizes
/// its entries.
unsafe extern "C" fn run_request_cleanup(data: *mut c_void) {
    // SAFETY: only `attach_context` installs this handler, over an
    // `Attached<_>` whose leading fields have the same layout for every type;
    // nginx runs each cleanup once, as the pool is destroyed.
    unsafe {
        let drop = (*data.cast::<Attached<()>>()).drop;
        drop(data)
    }
}

#[allow(unpredictable_function_pointer_comparisons)]
fn is_attached_cleanup(entry: &ngx_pool_cleanup_t) -> bool {
    let ours: unsafe extern "C" fn(*mut c_void) = run_request_cleanup;
    entry.handler == Some(ours)
}
