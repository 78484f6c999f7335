//! Values of `$intermission_max_time` and `$intermission_on_timeout`.
#![no_main]

use intermission_fuzz::invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    invariants::max_time(value);
    invariants::on_timeout(value);
});
