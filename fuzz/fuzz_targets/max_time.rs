//! Values of `$intermission_max_time`.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| invariants::max_time(value));
