//! The control endpoint's side that needs no nginx: what a control request
//! asks (`args`), and what it answers: the status of the apps, as one schema
//! written as JSON or text (`status`, escaped by `json`), and the same
//! figures for Prometheus (`metrics`), with times as RFC 3339 (`time`).

mod args;
mod json;
mod metrics;
mod status;
mod time;

pub use args::{
    accepts_json, action_of, Action, BadArgument, ControlArgs, Format, MAX_RELEASE_RATE,
};
pub use metrics::metrics_text;
pub use status::{
    app_name_text, status_all_json, status_all_text, AllAnswer, AppAnswer, AppReport, AppStatus,
    CommonReports, ModuleReport, RunState, StateFileReport,
};
pub use time::{parse_rfc3339, rfc3339};
