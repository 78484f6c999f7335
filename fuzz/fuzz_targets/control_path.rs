//! Request paths as the control endpoint reads them.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &[u8]| invariants::control_path(path));
