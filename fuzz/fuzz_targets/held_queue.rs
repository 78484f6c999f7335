//! Sequences of pauses, resumes, holds, forgotten requests, releases and
//! expiries on one worker's queue of held requests.
#![no_main]

use intermission_fuzz::invariants::{self, QueueOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<QueueOp>| invariants::held_queue(&ops));
