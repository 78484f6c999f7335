//! Apps are independent, whatever their names.

mod common;

use common::*;

#[test]
fn apps_of_separate_servers_are_independent() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_server("shop", &upstream, ""))
            .server(&app_server("blog", &upstream, "")),
    );
    let (shop, blog) = (nginx.server_port(0), nginx.server_port(1));

    pause(shop, "");
    assert_status(blog, "", RESUMED);
    assert_passes(blog, Request::get("/post"), "blog while shop is paused");
    let shop_request = start_held(shop, Request::get("/cart"));

    pause(blog, "");
    let blog_request = start_held(blog, Request::get("/post"));
    assert_still_held([&shop_request]);

    resume(blog, "");
    assert_from_upstream(&blog_request.finish(), "blog released");
    assert_still_held([&shop_request]);
    assert_status(shop, "", PAUSED);

    resume(shop, "");
    assert_from_upstream(&shop_request.finish(), "shop released");
    assert_eq!(upstream.wait_for(3).len(), 3);
    nginx.stop();
}

#[test]
fn apps_named_by_a_variable_are_independent() {
    let upstream = Upstream::start();
    let server = app_per_query_server(&upstream);
    let nginx = Nginx::start(Config::new().server(&server));
    let port = nginx.port();

    pause(port, "?app=a");
    assert_passes(port, Request::get("/?app=b"), "app b while a is paused");
    assert_passes(port, Request::get("/"), "the default app while a is paused");
    let a = start_held(port, Request::get("/?app=a"));

    let not_paused = control(port, "disable?app=b");
    assert_eq!(
        not_paused.status, 304,
        "disabling b, which is not paused: {not_paused:?}"
    );
    pause(port, "?app=b");
    resume(port, "?app=b");
    assert_still_held([&a]);

    resume(port, "?app=a");
    assert_from_upstream(&a.finish(), "a released");
    nginx.stop();
}

/// A server whose app is named by the `X-App` header, so names can hold any byte.
fn start_header_named_apps() -> (Nginx, Upstream) {
    let upstream = Upstream::start();
    let server = format!(
        "{} {} {}",
        set_app_name("$http_x_app"),
        held_location("/", &upstream, ""),
        control_location()
    );
    (Nginx::start(Config::new().server(&server)), upstream)
}

fn app_control(port: u16, app: &str, action: &str) -> Response {
    control_request("GET", action)
        .header("X-App", app)
        .send(port)
}

#[test]
fn odd_app_names_work() {
    let (nginx, upstream) = start_header_named_apps();
    let port = nginx.port();
    let longest = "n".repeat(128);
    let names = [
        "my shop",
        "caf\u{e9} \u{2615} \u{fc}n\u{ef}c\u{f8}d\u{e9}",
        "quote\"s 'and' \\backslash",
        longest.as_str(),
    ];

    let mut held = Vec::new();
    for name in names {
        assert_answer(
            &app_control(port, name, "enable"),
            200,
            PAUSED,
            &format!("enable {name:?}"),
        );
        assert_answer(
            &app_control(port, name, "status"),
            200,
            PAUSED,
            &format!("status {name:?}"),
        );
        held.push(start_held(port, Request::get("/").header("X-App", name)));
    }
    // Names that differ from the paused ones pass.
    for other in ["my shop2", "my", "caf\u{e9}", &"n".repeat(127)] {
        assert_passes(
            port,
            Request::get("/").header("X-App", other),
            &format!("app {other:?}"),
        );
    }
    assert_still_held(&held);

    // Each disable releases exactly its own app.
    for (i, name) in names.iter().enumerate() {
        assert_answer(
            &app_control(port, name, "disable"),
            200,
            RESUMED,
            &format!("disable {name:?}"),
        );
        let request = held.remove(0);
        assert_from_upstream(&request.finish(), &format!("released {name:?}"));
        assert_still_held(&held);
        assert_eq!(upstream.count(), 4 + i + 1);
    }
    nginx.stop();
}

#[test]
fn app_names_over_128_bytes_are_refused_and_pass() {
    let (nginx, upstream) = start_header_named_apps();
    let port = nginx.port();
    let longest = "x".repeat(128);
    let too_long = "x".repeat(129);

    for action in ["enable", "status", "disable"] {
        let response = app_control(port, &too_long, action);
        assert_eq!(
            response.status, 400,
            "{action} for a 129-byte app name: {response:?}"
        );
    }
    nginx.wait_for_error_line("about the too long $app_name", |line| {
        line.contains("app_name")
            && (line.contains("128") || line.contains("129") || line.contains("long"))
    });

    // Pause the 128-byte app: a 129-byte name sharing its first 128 bytes is
    // another app (never truncated into it) and passes at once.
    assert_answer(
        &app_control(port, &longest, "enable"),
        200,
        PAUSED,
        "enable the 128-byte app",
    );
    let held = start_held(port, Request::get("/").header("X-App", &longest));
    assert_passes(
        port,
        Request::get("/").header("X-App", &too_long),
        "a request of a 129-byte app",
    );
    assert_still_held([&held]);
    assert_eq!(upstream.count(), 1);

    assert_answer(
        &app_control(port, &longest, "disable"),
        200,
        RESUMED,
        "disable the 128-byte app",
    );
    assert_from_upstream(&held.finish(), "released");
    assert!(nginx.is_running());
    nginx.stop();
}
