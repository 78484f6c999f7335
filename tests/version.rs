//! The module says which version it is, as nginx says its own: one
//! `intermission/VERSION` notice each time a configuration is loaded.

mod common;

use common::*;

fn version_lines(nginx: &Nginx) -> usize {
    let line = format!("intermission/{}", env!("CARGO_PKG_VERSION"));
    nginx
        .error_log()
        .lines()
        .filter(|l| l.contains("[notice]") && l.ends_with(&line))
        .count()
}

#[test]
fn the_module_logs_its_version_at_start_and_at_each_reload() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .server(&app_per_query_server(&upstream)),
    );
    assert_eq!(version_lines(&nginx), 1, "{}", nginx.error_log());
    nginx.reload();
    assert_eq!(version_lines(&nginx), 2, "{}", nginx.error_log());
    assert_no_serious_lines(&nginx);
}
