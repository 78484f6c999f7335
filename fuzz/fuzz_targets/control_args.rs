//! Control query strings, and the JSON status that names the app.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], [u64; 7])| {
    let (bytes, figures) = input;
    invariants::control_args(bytes);
    invariants::status_json_of(bytes, figures);
});
