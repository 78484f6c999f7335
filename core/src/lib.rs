//! The logic of the intermission nginx module that does not need nginx: plain
//! safe Rust, driven by unit tests. The module crate places these types in
//! nginx's shared memory and worker processes.
//!
//! In the order a request meets them:
//! - `ids`: apps, tickets, phases, times and release reasons, used by all;
//! - `settings`: parsing what a request's variables say;
//! - `decision`: what to do with one request of a paused app;
//! - `pause`: one app's pause state machine (atomics, shared by all
//!   workers), with its paced release (`pace`) and its `counters`; and
//!   `app_table`, the table of apps in the shared zone;
//! - `queue`: the requests one worker holds, in release order;
//! - `order`: the window that keeps one arrival order across workers, and
//!   the bound after which a stalled worker loses its place in it;
//! - `budget` and `next_look`: how much one release pass lets go, and when
//!   the next one runs by itself;
//! - `worker_slots`: what each worker process publishes to the others (its
//!   place in each app's order, its counts), reclaimed when it dies;
//! - `in_flight`: the counts of requests let through, for drains, and which
//!   counter counts a request (`Counted`);
//! - `outcome`: what became of a request, for access logs;
//! - `zone_layout`: how the shared zone is divided;
//! - `control`: what the control endpoint understands and answers;
//! - `state_file`: the pause state saved for a restart, read back, and
//!   made the app table's again;
//! - `config_check`: the variable names the module knows, and what
//!   `nginx -t` warns about.

#![forbid(unsafe_code)]

pub mod app_table;
pub mod budget;
pub mod config_check;
pub mod control;
pub mod counters;
pub mod decision;
pub mod ids;
pub mod in_flight;
pub mod next_look;
pub mod order;
pub mod outcome;
mod pace;
pub mod pause;
pub mod queue;
pub mod settings;
pub mod state_file;
pub mod worker_slots;
pub mod zone_layout;
