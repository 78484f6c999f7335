//! `$intermission_privileged_user_agent` as a regular expression: `~EXPR`
//! (case-sensitive) and `~*EXPR` (ignoring case), matched with nginx's PCRE
//! while the app is paused; any other value is a substring, as before. An
//! expression that does not compile is logged once and privileges nobody.

mod common;

use common::*;

/// The shop, its privileged agent taken from each request's `X-Privileged`
/// header, so that one nginx tries many values.
fn start() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&format!(
        "set $intermission_privileged_user_agent $http_x_privileged; {}",
        app_server("shop", &upstream, "")
    )));
    (nginx, upstream)
}

fn with_agent(privileged: &str, agent: &str) -> Request {
    Request::get("/")
        .header("X-Privileged", privileged)
        .header("User-Agent", agent)
}

const BOT: &str = "Pingdom.com_bot_version_1.4";

#[test]
fn a_regex_privileges_the_agents_it_matches_and_holds_the_others() {
    let (nginx, upstream) = start();
    let port = nginx.port();
    pause(port, "");
    for (privileged, agent) in [
        ("~^Pingdom", BOT),
        ("~*^pingdom", BOT),
        ("~*^PINGDOM", "pingdom/2"),
        ("~bot_version_\\d+\\.\\d+$", BOT),
        // A substring, as before: anywhere in the agent.
        ("Pingdom", "NotPingdom"),
    ] {
        assert_passes(
            port,
            with_agent(privileged, agent),
            &format!("{agent:?} with {privileged:?}"),
        );
    }
    let held: Vec<Pending> = [
        ("~^Pingdom", "NotPingdom"),
        ("~^pingdom", BOT),
        ("~*^pingdom", "NotPingdom"),
        // `~` or `~*` alone is no expression: nobody is privileged.
        ("~", BOT),
        ("~*", BOT),
    ]
    .into_iter()
    .map(|(privileged, agent)| start_held(port, with_agent(privileged, agent)))
    .collect();
    assert_still_held(&held);
    assert_eq!(upstream.count(), 5);
    resume(port, "");
    finish_all_from_upstream(held);
    nginx.stop();
}

#[test]
fn each_value_keeps_its_meaning_when_more_values_than_a_worker_keeps_are_used() {
    let (nginx, upstream) = start();
    let port = nginx.port();
    pause(port, "");
    // Eight expressions, twice over: more than a worker keeps compiled, so
    // some are compiled again; every answer is still the right one.
    for round in 0..2 {
        for n in 0..8 {
            let privileged = format!("~^agent-{n}/");
            assert_passes(
                port,
                with_agent(&privileged, &format!("agent-{n}/1.0")),
                &format!("round {round}, {privileged}"),
            );
        }
    }
    let held = start_held(port, with_agent("~^agent-3/", "agent-4/1.0"));
    assert_still_held([&held]);
    assert_eq!(upstream.count(), 16);
    resume(port, "");
    assert_from_upstream(&held.finish(), "agent-4 under agent-3's expression");
    nginx.stop();
}

#[test]
fn an_invalid_regex_is_logged_once_and_privileges_nobody() {
    let (nginx, upstream) = start();
    let port = nginx.port();
    pause(port, "");
    let held: Vec<Pending> = (0..3)
        .map(|_| start_held(port, with_agent("~(Pingdom", BOT)))
        .collect();
    assert_still_held(&held);
    assert_eq!(upstream.count(), 0);
    let log = nginx.error_log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("[warn]")
                && line.contains(
                    "intermission: $intermission_privileged_user_agent \"~(Pingdom\" is not a \
                     valid regular expression (",
                )
                && line.contains("), so no user agent is privileged")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    resume(port, "");
    finish_all_from_upstream(held);
    nginx.stop();
}
