//! `$app_name` values (query arguments, in the configs that copy one into it)
//! as the app table takes them: checked, added, looked up, paused, resumed,
//! in a table of 1 to 32 slots.
#![no_main]

use intermission_fuzz::invariants::{self, AppTableRun};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|run: AppTableRun| invariants::app_table(&run));
