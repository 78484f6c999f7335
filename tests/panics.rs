//! A panic in the module never unwinds into nginx: it is caught at the FFI
//! edge, logged at `alert`, and the request is answered 500; the worker lives
//! on. Debug builds panic on request through a test header (src/panic_probe.rs).

mod common;

use common::*;

const PANIC_HEADER: &str = "X-Intermission-Test-Panic";

fn assert_panic_logged(nginx: &Nginx, at: &str) {
    let needle =
        format!("intermission: internal error: panic asked for by the test header at \"{at}\"");
    nginx.wait_for_error_line(&format!("containing {needle:?}"), |line| {
        line.contains("[alert]") && line.contains(&needle)
    });
}

#[test]
fn panics_are_answered_500_and_logged_and_the_workers_live_on() {
    let (nginx, upstream) = start_shop(1, "");
    let port = nginx.port();
    let workers = nginx.worker_pids();

    // In the control endpoint.
    let response = control_request("GET", "enable")
        .header(PANIC_HEADER, "control")
        .send(port);
    assert_eq!(response.status, 500, "{response:?}");
    assert_panic_logged(&nginx, "control");
    assert_status(port, "", RESUMED);

    // In the phase handler that decides whether to hold.
    pause(port, "");
    let response = Request::get("/hold")
        .header(PANIC_HEADER, "hold")
        .send(port);
    assert_eq!(response.status, 500, "{response:?}");
    assert_panic_logged(&nginx, "hold");

    // In the wake-up of a released request: it gets its 500, and the
    // requests around it are released as usual.
    let held = vec![
        start_held(port, seq_request("/item/", 0)),
        start_held(port, seq_request("/item/", 1).header(PANIC_HEADER, "wake")),
        start_held(port, seq_request("/item/", 2)),
    ];
    assert_still_held(&held);
    resume(port, "");
    let answers: Vec<u16> = held.into_iter().map(|p| p.finish().status).collect();
    assert_eq!(answers, [200, 500, 200]);
    assert_panic_logged(&nginx, "wake");
    assert_eq!(seqs(&upstream.wait_for(2)), [0, 2]);

    assert_eq!(nginx.worker_pids(), workers, "no worker died");
    assert_passes(port, Request::get("/after"), "a request after the panics");
    nginx.stop();
}
