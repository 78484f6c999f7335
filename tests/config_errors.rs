//! Config mistakes fail `nginx -t` with a message naming the directive.

mod common;

use common::*;

/// Whether `text` names `directive` as a whole word (so "intermission" is not
/// found inside "intermission_zone" or "ngx_http_intermission_module").
fn names_directive(text: &str, directive: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(directive).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + directive.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// A server using the module everywhere, to which a test adds a mistake.
fn server(extra: &str) -> String {
    format!(
        "set $app_name shop; location / {{ intermission; return 204; }} {} {extra}",
        control_location()
    )
}

fn assert_rejected(config: Config, directive: &str) {
    let (accepted, output) = Nginx::test_config(&config);
    assert!(
        !accepted,
        "nginx -t accepted a config with a bad {directive:?}:\n{output}"
    );
    assert!(
        !output.contains("unknown directive") && !output.contains("dlopen"),
        "the module did not load, so this proves nothing:\n{output}"
    );
    assert!(
        names_directive(&output, directive),
        "the error should name {directive:?}:\n{output}"
    );
}

#[test]
fn valid_configs_pass() {
    for config in [
        Config::new().server(&server("")),
        Config::new()
            .http("intermission_zone 32k;")
            .server(&server("")),
        Config::new()
            .http("intermission_zone 1m;")
            .http("intermission off;")
            .server(&server("intermission on;")),
        Config::new().server(&server("location /x { intermission off; return 204; }")),
        Config::new()
            .http("intermission_max_pause 15m;")
            .server(&server(
                "location /z { intermission_max_pause off; return 204; }",
            )),
        Config::new()
            .http("intermission_max_held 1000;")
            .server(&server(
                "location /y { intermission_max_held 0; intermission; return 204; }",
            )),
    ] {
        let (accepted, output) = Nginx::test_config(&config);
        assert!(accepted, "nginx -t rejected a valid config:\n{output}");
    }
}

#[test]
fn zone_size_not_a_size() {
    assert_rejected(
        Config::new()
            .http("intermission_zone abc;")
            .server(&server("")),
        "intermission_zone",
    );
}

#[test]
fn zone_size_too_small() {
    assert_rejected(
        Config::new()
            .http("intermission_zone 1k;")
            .server(&server("")),
        "intermission_zone",
    );
}

#[test]
fn zone_inside_server() {
    assert_rejected(
        Config::new().server(&server("intermission_zone 1m;")),
        "intermission_zone",
    );
}

#[test]
fn zone_declared_twice() {
    assert_rejected(
        Config::new()
            .http("intermission_zone 1m;")
            .http("intermission_zone 2m;")
            .server(&server("")),
        "intermission_zone",
    );
}

#[test]
fn intermission_with_a_bad_flag() {
    assert_rejected(
        Config::new().server(&server("location /y { intermission maybe; return 204; }")),
        "intermission",
    );
}

#[test]
fn control_with_an_argument() {
    assert_rejected(
        Config::new().server(&server("location /z { intermission_control extra; }")),
        "intermission_control",
    );
}

#[test]
fn names_directive_matches_whole_words_only() {
    assert!(names_directive(
        "invalid value \"maybe\" in \"intermission\" directive",
        "intermission"
    ));
    assert!(!names_directive(
        "\"intermission_zone\" directive is duplicate",
        "intermission"
    ));
    assert!(!names_directive(
        "dlopen() \"/x/ngx_http_intermission_module.so\" failed",
        "intermission"
    ));
}

#[test]
fn max_held_not_a_number() {
    for value in ["many", "-1", "1.5", "10k", "99999999999999999999"] {
        assert_rejected(
            Config::new().server(&server(&format!("intermission_max_held {value};"))),
            "intermission_max_held",
        );
    }
}

#[test]
fn max_held_twice() {
    assert_rejected(
        Config::new().server(&server("intermission_max_held 5; intermission_max_held 6;")),
        "intermission_max_held",
    );
}

#[test]
fn max_pause_not_a_time() {
    for value in ["soon", "-5m", "0", "10 minutes"] {
        assert_rejected(
            Config::new().server(&server(&format!("intermission_max_pause \"{value}\";"))),
            "intermission_max_pause",
        );
    }
}
