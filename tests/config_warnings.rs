//! Configurations nginx accepts but that cannot do what their author meant:
//! `nginx -t` succeeds and warns, naming what is wrong; a correct
//! configuration gets no warning from the module.

mod common;

use common::*;

/// A server using the module, with its control location, to which a test
/// adds `extra`.
fn server(extra: &str) -> String {
    format!(
        "set $app_name shop; location / {{ intermission; return 204; }} {} {extra}",
        control_location()
    )
}

/// `nginx -t` on `config`: it must pass; its output.
fn accepted(config: Config) -> String {
    let (accepted, output) = Nginx::test_config(&config);
    assert!(accepted, "nginx -t refused the configuration:\n{output}");
    assert!(
        !output.contains("unknown directive") && !output.contains("dlopen"),
        "the module did not load, so this proves nothing:\n{output}"
    );
    output
}

/// The module's warnings as `nginx -t` prints them (the error log, also
/// in `output`, repeats them).
fn warnings(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| line.starts_with("nginx: [warn] intermission: "))
        .collect()
}

#[test]
fn a_correct_configuration_gets_no_warning() {
    for config in [
        Config::new().server(&server(
            "set $intermission_max_time 30; set $intermission_on_timeout 503; \
             set $intermission_health_check_path /up/db; \
             set $intermission_privileged_user_agent Pingdom; set $intermission_interval 1;",
        )),
        Config::new()
            .http("map $request_method $intermission_bypass { GET 1; default 0; }")
            .http("intermission_max_pause 15m;")
            .server(&server("")),
        // Set around the control location, and in it.
        Config::new().server(&format!("intermission_max_pause 2m; {}", server(""))),
        Config::new().server(&format!(
            "set $app_name shop; location / {{ intermission; return 204; }} \
             location {CONTROL} {{ intermission_max_pause 1m; intermission_control; }}"
        )),
    ] {
        let output = accepted(config);
        assert_eq!(warnings(&output), Vec::<&str>::new(), "{output}");
    }
}

#[test]
fn a_misspelt_variable_is_named_with_the_known_ones() {
    let output = accepted(Config::new().server(&server(
        "location /t { set $intermission_max_tme 30; intermission; return 204; }",
    )));
    let warnings = warnings(&output);
    assert_eq!(warnings.len(), 1, "{output}");
    assert!(
        warnings[0].contains(
            "intermission: unknown variable \"$intermission_max_tme\" (did you mean \
             \"$intermission_max_time\"?): intermission reads $intermission_max_time, "
        ),
        "{output}"
    );
    for known in [
        "$intermission_on_timeout",
        "$intermission_health_check_path",
        "$intermission_privileged_user_agent",
        "$intermission_bypass",
    ] {
        assert!(warnings[0].contains(known), "{known} in {output}");
    }
}

#[test]
fn a_variable_a_map_defines_under_the_prefix_is_named_too() {
    let output = accepted(
        Config::new()
            .http("map $request_method $intermission_bypas { GET 1; default 0; }")
            .server(&server("")),
    );
    assert!(
        warnings(&output).iter().any(|line| line.contains(
            "unknown variable \"$intermission_bypas\" (did you mean \"$intermission_bypass\"?)"
        )),
        "{output}"
    );
}

#[test]
fn a_max_pause_no_control_location_gets_is_named_with_its_place() {
    // In a location that is not the control location, and (an `off`) in a
    // server that has none.
    let output = accepted(
        Config::new()
            .server(&server(
                "location /x {\nintermission_max_pause 5m; return 204; }",
            ))
            .server("intermission_max_pause off; location / { return 204; }"),
    );
    let warnings = warnings(&output);
    assert_eq!(warnings.len(), 2, "{output}");
    for line in &warnings {
        assert!(
            line.contains("\"intermission_max_pause\" in ")
                && line.contains("/nginx.conf:")
                && line.contains(
                    "has no effect: no location with \"intermission_control\" is in its scope"
                ),
            "{output}"
        );
    }
    // Each names its own line.
    assert_ne!(
        warnings[0].split("nginx.conf:").nth(1),
        warnings[1].split("nginx.conf:").nth(1),
        "{output}"
    );
}
