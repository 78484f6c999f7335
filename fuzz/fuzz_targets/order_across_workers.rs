//! Three workers holding requests of one app, releasing through the order
//! window while clients leave and workers die.
#![no_main]

use intermission_fuzz::invariants::{self, OrderOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<OrderOp>| invariants::order_across_workers(&ops));
