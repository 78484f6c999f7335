//! A full shared zone: enable answers 507, apps that fit keep working, apps
//! that did not fit fail open.

mod common;

use common::*;

/// Far more apps than a 32k zone can hold: only a bound.
const MAX_APPS: usize = 20_000;

#[test]
fn a_full_zone_answers_507_and_fails_open() {
    let upstream = Upstream::start();
    let server = app_per_query_server(&upstream);
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .http("intermission_zone 32k;")
            .server(&server),
    );
    let port = nginx.port();

    let mut fitted = 0;
    let full = loop {
        assert!(fitted < MAX_APPS, "{MAX_APPS} apps fit in a 32k zone");
        let response = control(port, &format!("enable?app=app{fitted}"));
        match response.status {
            200 => fitted += 1,
            507 => break response,
            _ => panic!("enable app{fitted}: {response:?}"),
        }
    };
    eprintln!("{fitted} apps fit in 32k");
    assert!(fitted > 0, "not even one app fits in the minimum zone");
    assert!(
        full.text().contains("intermission_zone"),
        "the 507 says to enlarge intermission_zone: {:?}",
        full.text()
    );

    let mut probes = vec![0, fitted - 1];
    probes.dedup();
    // The apps that fit stay paused and hold their requests.
    let held: Vec<Pending> = probes
        .iter()
        .map(|i| {
            assert_status(port, &format!("?app=app{i}"), PAUSED);
            Request::get(&format!("/?app=app{i}")).start(port)
        })
        .collect();
    wait_all_read(&held);
    // The app that did not fit, and any new app, fail open.
    assert_passes(
        port,
        Request::get(&format!("/?app=app{fitted}")),
        "the app that did not fit",
    );
    assert_passes(port, Request::get("/?app=brand-new"), "an app never seen");
    assert_still_held(&held);
    assert_eq!(upstream.count(), 2, "only the two that passed");

    assert!(nginx.is_running(), "nginx survives a full zone");
    for i in probes {
        resume(port, &format!("?app=app{i}"));
    }
    finish_all_from_upstream(held);
    nginx.stop();
}
