//! The status's figures in Prometheus' text exposition format (version
//! 0.0.4): a series per app and figure, labelled `app`, then the module's and
//! the state file's own.

use std::fmt::Write;

use super::status::{AppReport, AppStatus, ModuleReport, RunState, StateFileReport};

/// One figure of an app's status.
type Figure = fn(&AppStatus) -> u64;

/// Each app's series: name, type, help, and the figure.
const APP_SERIES: [(&str, &str, &str, Figure); 14] = [
    (
        "intermission_paused",
        "gauge",
        "Whether the app is paused or stopped (1) or running (0).",
        |a| u64::from(a.state != RunState::Running),
    ),
    (
        "intermission_stopped",
        "gauge",
        "Whether the app is stopped (1): its requests are answered 503.",
        |a| u64::from(a.state == RunState::Stopped),
    ),
    (
        "intermission_in_flight",
        "gauge",
        "Requests let through while the app was running and not finished yet \
         (what a drain waits for).",
        |a| a.in_flight,
    ),
    (
        "intermission_upgraded",
        "gauge",
        "Requests that switched protocols (WebSocket) and are still open.",
        |a| a.upgraded,
    ),
    (
        "intermission_held",
        "gauge",
        "Requests held right now, by all workers.",
        |a| a.held_now,
    ),
    (
        "intermission_held_in_pause",
        "gauge",
        "Requests held during the current pause, or the last one.",
        |a| a.held_in_pause,
    ),
    (
        "intermission_released_total",
        "counter",
        "Held requests released by a resume.",
        |a| a.released,
    ),
    (
        "intermission_timed_out_total",
        "counter",
        "Held requests whose $intermission_max_time passed while paused.",
        |a| a.timed_out,
    ),
    (
        "intermission_clients_gone_total",
        "counter",
        "Held requests whose client closed the connection.",
        |a| a.clients_gone,
    ),
    (
        "intermission_rejected_total",
        "counter",
        "Requests answered 503 past intermission_max_held.",
        |a| a.rejected,
    ),
    (
        "intermission_stopped_total",
        "counter",
        "Requests answered 503 because the app was stopped.",
        |a| a.stopped,
    ),
    (
        "intermission_refused_at_shutdown_total",
        "counter",
        "Requests answered 503 because nginx was stopping.",
        |a| a.refused_at_shutdown,
    ),
    (
        "intermission_unheld_total",
        "counter",
        "Requests of the paused app that could not be held (no memory, no release \
         engine) and were answered 503.",
        |a| a.unheld,
    ),
    (
        "intermission_bypassed_total",
        "counter",
        "Requests of the paused or stopped app let through at once, unheld (health check \
         path, privileged user agent, $intermission_bypass, $intermission_max_time 0).",
        |a| a.bypassed,
    ),
];

/// Every app's figures: one series per app and figure, labelled `app`.
pub fn metrics_text(apps: &[AppReport]) -> String {
    let statuses: Vec<AppStatus> = apps.iter().map(AppReport::status).collect();
    let mut text = String::new();
    for (name, kind, help, figure) in APP_SERIES {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for app in &statuses {
            text.push_str(name);
            text.push_str("{app=\"");
            push_label_value(&mut text, &app.app);
            let _ = writeln!(text, "\"}} {}", figure(app));
        }
    }
    text
}

impl ModuleReport {
    /// The module's figures for Prometheus.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        for (name, help, value) in [
            (
                "intermission_internal_errors_total",
                "Panics the module caught; each is logged at alert.",
                self.internal_errors,
            ),
            (
                "intermission_app_names_too_long_total",
                "Requests whose $app_name was too long to name an app (let through).",
                self.app_names_too_long,
            ),
            (
                "intermission_release_passes_total",
                "Looks the release engines took at their held requests.",
                self.release_passes,
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        text
    }
}

impl StateFileReport {
    /// The state file's figures for Prometheus.
    pub fn metrics(&self) -> String {
        let seconds = |ms: Option<u64>| {
            ms.map_or("0".to_owned(), |ms| {
                format!("{}.{:03}", ms / 1000, ms % 1000)
            })
        };
        format!(
            "# HELP intermission_state_restored_timestamp_seconds When the pause state was restored \
             from intermission_state_file (0: it was not).\n\
             # TYPE intermission_state_restored_timestamp_seconds gauge\n\
             intermission_state_restored_timestamp_seconds {}\n\
             # HELP intermission_state_restored_apps Apps paused or stopped again from the state file.\n\
             # TYPE intermission_state_restored_apps gauge\n\
             intermission_state_restored_apps {}\n\
             # HELP intermission_state_restore_failed Whether the state file could not be read at start (1): nothing was restored.\n\
             # TYPE intermission_state_restore_failed gauge\n\
             intermission_state_restore_failed {}\n\
             # HELP intermission_state_save_errors_total Writes of the state file that failed.\n\
             # TYPE intermission_state_save_errors_total counter\n\
             intermission_state_save_errors_total {}\n",
            seconds(self.restored_at),
            self.restored_apps,
            u64::from(self.restore_error.is_some()),
            self.save_errors
        )
    }
}

/// Appends an app name as a Prometheus label value: its text (label values
/// are UTF-8), with `\\`, `\"` and `\n` escaped as the format requires.
fn push_label_value(text: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::status::tests::{report, restored};
    use crate::counters::AppCounters;

    #[test]
    fn metrics_have_one_series_per_app_and_figure() {
        let shop = AppReport {
            held_in_pause: 7,
            counters: AppCounters {
                held_now: 2,
                released: 5,
                bypassed: 4,
                ..AppCounters::default()
            },
            ..report(b"shop", RunState::Stopped)
        };
        let odd = report(b"a\"b\\c\nd\xff", RunState::Running);
        let cafe = report("café ☕".as_bytes(), RunState::Paused);
        let text = metrics_text(&[shop, odd, cafe]);
        for line in [
            "# TYPE intermission_paused gauge\n",
            "\nintermission_paused{app=\"shop\"} 1\n",
            "\nintermission_held{app=\"shop\"} 2\n",
            "\nintermission_released_total{app=\"shop\"} 5\n",
            "\nintermission_bypassed_total{app=\"shop\"} 4\n",
            "\nintermission_bypassed_total{app=\"café ☕\"} 0\n",
            "\nintermission_paused{app=\"a\\\"b\\\\c\\nd\u{fffd}\"} 0\n",
            "\nintermission_stopped{app=\"shop\"} 1\n",
            "\nintermission_paused{app=\"café ☕\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 42);
        assert!(metrics_text(&[]).lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn the_module_and_the_state_file_have_their_figures() {
        let module = ModuleReport {
            internal_errors: 1,
            app_names_too_long: 2,
            release_passes: 3,
        }
        .metrics();
        assert!(
            module.ends_with(
                "# HELP intermission_release_passes_total Looks the release engines took at \
                 their held requests.\n# TYPE intermission_release_passes_total counter\n\
                 intermission_release_passes_total 3\n"
            ),
            "{module}"
        );
        let restored = restored();
        let metrics = restored.metrics();
        for line in [
            "\nintermission_state_restored_timestamp_seconds 1796040000.123\n",
            "\nintermission_state_restored_apps 2\n",
            "\nintermission_state_restore_failed 0\n",
            "\nintermission_state_save_errors_total 1\n",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
        let failed = StateFileReport {
            restore_error: Some("line 3: \"since\" is not a time".into()),
            ..StateFileReport::default()
        }
        .metrics();
        assert!(failed.contains("\nintermission_state_restore_failed 1\n"));
        assert!(failed.contains("\nintermission_state_restored_timestamp_seconds 0\n"));
    }
}
