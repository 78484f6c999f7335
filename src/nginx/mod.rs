//! The thin layer between the module and nginx's raw request and event
//! structures. Everything that dereferences an `ngx_http_request_t` or an
//! `ngx_event_t` lives under this folder, behind small safe methods whose
//! contracts are written next to the `unsafe` blocks; the logic above it is
//! safe Rust. One concern a file; callers use the names re-exported here.

mod bits;
mod context;
mod event;
mod ffi_guard;
mod filter;
mod park;
mod process;
#[cfg(nginx_pcre)]
mod regex;
mod request;
mod respond;
mod socket;
mod timer;
mod variable;

pub use bits::set_slab_log_nomem;
pub use context::RequestContext;
pub use event::WorkerEvent;
pub use ffi_guard::{count_panics_in, guard_ffi};
pub use filter::{next_header_filter, push_header_filter};
pub use process::{
    available_connections, cycle_log, is_exiting, is_single_process, is_testing_config,
    is_worker_process, now_ms, pid_files, wall_clock_ms, worker_number, worker_processes,
    worker_shutdown_timeout,
};
#[cfg(nginx_pcre)]
pub use regex::Regex;
pub use request::HttpRequest;
pub use socket::WatchedSocket;
pub use timer::RequestTimer;
pub use variable::VariableValue;
