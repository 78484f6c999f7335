//! Untrusted bytes (app names, variable values) as log lines print them.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| invariants::log_safe(bytes));
