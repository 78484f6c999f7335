//! The status for machines: JSON on `Accept: application/json` as on
//! `?format=json`, with since, deadline, in flight and the longest wait;
//! `?all` lists every app.

mod common;

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Seconds since the epoch of an RFC 3339 UTC time such as
/// `2026-11-23T10:15:30.123Z` (days from civil, as a check independent of
/// the module's own formatting code).
fn unix_seconds(rfc3339: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 {
        rfc3339[range]
            .parse()
            .unwrap_or_else(|_| panic!("not RFC 3339: {rfc3339}"))
    };
    assert!(rfc3339.ends_with('Z') && rfc3339.len() == 24, "{rfc3339}");
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    days * 86_400 + field(11..13) * 3_600 + field(14..16) * 60 + field(17..19)
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn accept_asks_for_json_and_format_text_wins() {
    let (nginx, _upstream) = start_shop(1, "");
    let port = nginx.port();
    let json = |accept: &str, query: &str| {
        control_request("GET", &format!("status{query}"))
            .header("Accept", accept)
            .send(port)
    };
    let asked = json("text/html, application/json;q=0.9", "");
    assert_eq!(
        asked.header("content-type"),
        Some("application/json"),
        "{asked:?}"
    );
    let parsed: serde_json::Value = serde_json::from_slice(&asked.body).expect("JSON");
    assert_eq!(
        (parsed["app"].as_str(), parsed["state"].as_str()),
        (Some("shop"), Some("running")),
        "{asked:?}"
    );
    for refused in [
        "application/json;q=0",
        "text/plain, application/json; q=0.000",
    ] {
        assert_answer(
            &json(refused, ""),
            200,
            RESUMED,
            &format!("{refused}: a weight of 0 refuses JSON"),
        );
    }
    assert_answer(
        &json("application/json", "?format=text"),
        200,
        RESUMED,
        "format=text wins",
    );
    assert_answer(
        &json("*/*", ""),
        200,
        RESUMED,
        "*/* is not a request for JSON",
    );
    nginx.stop();
}

#[test]
fn json_status_shows_when_the_pause_began_and_ends_and_the_longest_wait() {
    let (nginx, _upstream) = start_shop(2, "");
    let port = nginx.port();
    let before = now_seconds();
    pause(port, "?ttl=10m");
    let held = start_held(port, seq_request("/item/", 0));
    wait_until(BOUND, "the request to be counted as held", || {
        counters(port, "").held_now == 1
    });
    thread::sleep(Duration::from_millis(300));
    let figures = counters(port, "");
    let after = now_seconds();
    assert_eq!(figures.state, "paused");
    let since = unix_seconds(&figures.since);
    assert!(since >= before - 1 && since <= after + 1, "{figures:?}");
    let deadline = unix_seconds(&figures.deadline);
    assert!((deadline - since - 600).abs() <= 1, "ttl 10m: {figures:?}");
    assert!(
        figures.longest_wait_ms >= 300,
        "held at least 300 ms: {figures:?}"
    );
    assert_eq!(figures.in_flight, 0);

    resume(port, "");
    assert_from_upstream(&held.finish(), "the held request");
    let figures = counters(port, "");
    assert_eq!(
        (figures.since.as_str(), figures.deadline.as_str()),
        ("null", "null")
    );
    assert!(
        figures.longest_wait_ms >= 300,
        "the last pause's: {figures:?}"
    );
    nginx.stop();
}

#[test]
fn all_lists_every_app_and_takes_no_value() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_per_query_server(&upstream)));
    let port = nginx.port();
    pause(port, "?app=shop");
    assert_answer(
        &control(port, "stop?app=blog"),
        200,
        "Stopped.\n",
        "stop the blog",
    );
    resume(port, "?app=shop");

    // In the zone's order, which is not the order of first pause.
    let text = control(port, "status?all").text();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["blog stopped", "shop running"], "{text:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&control(port, "status?all&format=json").body).expect("JSON");
    let mut apps: Vec<(&str, &str)> = json["apps"]
        .as_array()
        .unwrap_or_else(|| panic!("no apps in {json}"))
        .iter()
        .map(|app| (app["app"].as_str().unwrap(), app["state"].as_str().unwrap()))
        .collect();
    apps.sort_unstable();
    assert_eq!(apps, [("blog", "stopped"), ("shop", "running")], "{json}");

    for (query, expected) in [
        (
            "status?all=yes",
            "intermission: invalid \"all\" argument \"yes\", expected no value (\"?all\")\n",
        ),
        (
            "status?all&all",
            "intermission: the \"all\" argument is given more than once\n",
        ),
        (
            "enable?all",
            "intermission: the \"all\" argument does not apply to enable\n",
        ),
    ] {
        assert_answer(&control(port, query), 400, expected, query);
    }
    nginx.stop();
}

/// A UTF-8 app name is the same text in the JSON status (read by a JSON
/// parser), the text status and the metrics.
#[test]
fn utf8_app_names_are_text_in_every_answer() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().server(&app_server("\"café ☕\"", &upstream, "")));
    let port = nginx.port();
    pause(port, "");
    let figures = counters(port, "");
    assert_eq!(
        (figures.app.as_str(), figures.state.as_str()),
        ("café ☕", "paused")
    );
    let all: serde_json::Value =
        serde_json::from_slice(&control(port, "status?all&format=json").body).expect("JSON");
    assert_eq!(all["apps"][0]["app"], "café ☕", "{all}");
    assert_answer(
        &control(port, "status?all"),
        200,
        "café ☕ paused\n",
        "status?all as text",
    );
    let metrics = control(port, "metrics").text();
    assert!(
        metrics.contains("intermission_paused{app=\"café ☕\"} 1\n"),
        "{metrics}"
    );
    resume(port, "");
    nginx.stop();
}
