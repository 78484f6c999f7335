//! The logic of the intermission nginx module that does not need nginx: plain
//! safe Rust, driven by unit tests. The module crate places these types in
//! nginx's shared memory and worker processes.
//!
//! - `pause`: one app's pause state machine (atomics, shared by all workers);
//! - `app_table`: the table of apps kept in the shared zone;
//! - `in_flight`: requests let through and not finished, for drains;
//! - `outcome`: what became of a request, for access logs;
//! - `queue`: the requests one worker holds, in release order;
//! - `settings`: parsing what variables say;
//! - `control`: what the control endpoint understands of a path.

#![forbid(unsafe_code)]

pub mod app_table;
pub mod control;
pub mod in_flight;
pub mod outcome;
pub mod pause;
pub mod queue;
pub mod settings;
