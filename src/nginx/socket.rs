//! `WatchedSocket`: a socket of the worker's own (not a client's), watched
//! by nginx's event loop through one of the worker's connections.

use std::ptr::{self, NonNull};

use nginx_sys::ngx_event_t;
use ngx::core::Status;

use super::process::cycle_log;

/// A socket of the worker's own, watched by nginx's event loop like a
/// connection: its handler runs when the socket is readable, and also when
/// nginx shuts the worker down gracefully (the connection is marked idle,
/// so `ngx_close_idle_connections` calls the handler with `close` set; the
/// socket is not closed unless the handler closes it).
pub struct WatchedSocket {
    connection: NonNull<nginx_sys::ngx_connection_t>,
}

impl WatchedSocket {
    /// Watches `fd` (non-blocking), which it owns from now on; `None` (and
    /// the descriptor closed) if nginx has no connection left for it.
    pub fn watch(fd: i32, handler: unsafe extern "C" fn(*mut ngx_event_t)) -> Option<Self> {
        let log = cycle_log();
        // SAFETY: `fd` is an open socket this process owns; nginx takes it
        // into one of the worker's connections, whose events are set up by
        // `ngx_get_connection`.
        unsafe {
            let Some(c) = nginx_sys::ngx_get_connection(fd, log).as_mut() else {
                libc_close(fd);
                return None;
            };
            c.log = log;
            c.data = ptr::null_mut();
            c.set_idle(1);
            let read = &mut *c.read;
            read.log = log;
            read.handler = Some(handler);
            (*c.write).log = log;
            let socket = WatchedSocket {
                connection: NonNull::from(c),
            };
            if nginx_sys::ngx_handle_read_event(read, 0) != Status::NGX_OK.0 {
                socket.close();
                return None;
            }
            Some(socket)
        }
    }

    pub fn fd(&self) -> i32 {
        // SAFETY: the connection is live until `close`.
        unsafe { self.connection.as_ref().fd }
    }

    /// The descriptor of the socket whose read event `event` is, in its
    /// handler.
    ///
    /// # Safety
    /// `event` must be the read event of a connection `watch` set up.
    pub unsafe fn fd_of(event: *mut ngx_event_t) -> i32 {
        // SAFETY: the caller's contract: `data` is that connection.
        unsafe { (*(*event).data.cast::<nginx_sys::ngx_connection_t>()).fd }
    }

    /// In the handler: true if nginx is shutting the worker down and asked
    /// the connection to close; the request is taken (the socket stays).
    pub fn take_close_request(event: *mut ngx_event_t) -> bool {
        // SAFETY: the handler's event is the read event of the connection
        // `watch` set up, whose `data` is that connection.
        unsafe {
            let Some(c) = (*event).data.cast::<nginx_sys::ngx_connection_t>().as_mut() else {
                return false;
            };
            let asked = c.close() != 0;
            c.set_close(0);
            asked
        }
    }

    /// Stops watching and closes the socket.
    pub fn close(self) {
        // SAFETY: the connection was taken by `watch` and is released once.
        unsafe { nginx_sys::ngx_close_connection(self.connection.as_ptr()) }
    }
}

fn libc_close(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(fd) };
}
