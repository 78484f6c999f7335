//! Bytes read as a state file (`intermission_state_file`), as nginx reads it
//! at start: never a panic, and what reads is in its one written form.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    invariants::state_file(bytes);
});
