//! The request path and user agent against the health-check path and the
//! privileged user agent.
#![no_main]

use arbitrary::Arbitrary;
use intermission_fuzz::invariants::{self, ExemptionInput};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request {
    request: ExemptionInput,
    /// Where to put the privileged string into the user agent, if anywhere:
    /// a random user agent almost never contains it.
    privileged_agent_at: Option<u16>,
}

fuzz_target!(|input: Request| {
    let request = match input.privileged_agent_at {
        Some(at) => input.request.quoting_privileged_agent(at.into()),
        None => input.request,
    };
    invariants::exemption(&request);
});
