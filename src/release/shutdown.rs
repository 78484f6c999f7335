//! What a worker that shuts down gracefully does with the requests it holds.
//!
//! nginx retires workers gracefully in three situations, which differ:
//! - a reload: a newer configuration runs on the same zone and carries the
//!   pause on (`zone::newer_configuration_runs`): the old worker keeps
//!   holding, and releases as the pause ends, as any worker;
//! - a binary upgrade (`USR2`, then `WINCH` or `QUIT` to the old master, or
//!   the rollback's `QUIT` to the new one): another nginx binary runs beside
//!   this one, with a zone of its own, and with `intermission_state_file`
//!   both follow the same file (`state_file::watch`): the worker keeps
//!   holding, and a `disable` made through either binary releases it;
//! - a stop or a restart: nothing carries on, and the requests would be
//!   closed with the worker: it answers them 503 with `Retry-After`.
//!
//! Graceful shutdown waits for requests in progress, and a held request is
//! one. With `worker_shutdown_timeout`, nginx closes every connection once
//! the shutdown has lasted that long: a worker that still holds answers a
//! little before.

use std::path::Path;

use nginx_sys::{NGX_LOG_NOTICE, NGX_LOG_WARN};
use ngx::ngx_log_error;

use crate::nginx;
use crate::zone;
use intermission_core::app_table::TableHeader;
use intermission_core::ids::Millis;
use intermission_core::settings::Seconds;

/// While another binary carries the pause on, an exiting worker looks this
/// often whether it still runs (nothing in this worker's zone changes when
/// the other nginx stops).
const ANOTHER_BINARY_CHECK_MS: Millis = 1_000;

/// What an exiting worker does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The worker is not shutting down.
    Running,
    /// A newer configuration or another binary carries the pause on: keep
    /// holding, and look again by `look_again` at the latest.
    CarriedOn { look_again: Option<Millis> },
    /// Answer everything held, and new requests of paused apps, 503.
    AnswerAll,
}

/// The shutdown of this worker, once it has begun.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// When the worker learned it shuts down (when nginx closed its idle
    /// connections, and set its own `worker_shutdown_timeout` timer).
    since: Option<Millis>,
    /// What was last said in the error log.
    said: Option<Exit>,
    /// Whether another binary ran, and when that was last looked at (the
    /// phase handler asks for every request of a paused app).
    another_binary: Option<(Millis, bool)>,
}

impl Shutdown {
    /// nginx asks the worker to shut down, at `now`.
    pub fn begin(&mut self, now: Millis) {
        self.since.get_or_insert(now);
    }

    /// What the worker does at `now` with the `held` requests it holds;
    /// `follows_state_file`: its configuration has `intermission_state_file`.
    pub fn plan(
        &mut self,
        header: &TableHeader,
        follows_state_file: bool,
        held: usize,
        now: Millis,
    ) -> Exit {
        if !nginx::is_exiting() {
            return Exit::Running;
        }
        let since = *self.since.get_or_insert(now);
        let reloaded = zone::newer_configuration_runs(header);
        let upgraded = !reloaded && follows_state_file && self.another_binary_runs(now);
        let answer_at = nginx::worker_shutdown_timeout()
            .map(|timeout| since.saturating_add(timeout.saturating_sub(margin(timeout))));
        let exit = match answer_at {
            _ if !(reloaded || upgraded) => Exit::AnswerAll,
            Some(at) if now >= at => Exit::AnswerAll,
            _ => Exit::CarriedOn {
                look_again: match (answer_at, upgraded) {
                    (Some(at), true) => Some(at.min(now + ANOTHER_BINARY_CHECK_MS)),
                    (Some(at), false) => Some(at),
                    (None, true) => Some(now + ANOTHER_BINARY_CHECK_MS),
                    (None, false) => None,
                },
            },
        };
        self.say(exit, upgraded, answer_at.is_some_and(|at| now >= at), held);
        exit
    }

    /// `another_binary_runs`, looked at once every `ANOTHER_BINARY_CHECK_MS`.
    fn another_binary_runs(&mut self, now: Millis) -> bool {
        match self.another_binary {
            Some((at, runs)) if now < at + ANOTHER_BINARY_CHECK_MS => runs,
            _ => {
                let runs = another_binary_runs();
                self.another_binary = Some((now, runs));
                runs
            }
        }
    }

    /// Logs what the worker does, once for each change.
    fn say(&mut self, exit: Exit, upgraded: bool, timed_out: bool, held: usize) {
        let kind = match exit {
            Exit::CarriedOn { .. } => Exit::CarriedOn { look_again: None },
            other => other,
        };
        if self.said == Some(kind) {
            return;
        }
        self.said = Some(kind);
        let requests = if held == 1 { "request" } else { "requests" };
        let log = nginx::cycle_log();
        match exit {
            Exit::Running => {}
            Exit::AnswerAll if timed_out => {
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "intermission: worker_shutdown_timeout ({}) is near: answering the {held} {requests} \
                     this worker holds, and new requests of paused apps, 503",
                    Seconds(nginx::worker_shutdown_timeout().unwrap_or(0))
                );
            }
            Exit::AnswerAll => {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "intermission: nginx is shutting down: answering the {held} {requests} this worker \
                     holds, and new requests of paused apps, 503"
                );
            }
            Exit::CarriedOn { .. } if upgraded => {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "intermission: this worker shuts down while another nginx binary runs and follows \
                     the state file: it keeps holding its {held} {requests} until they are released"
                );
            }
            Exit::CarriedOn { .. } => {}
        }
    }
}

/// How long before `worker_shutdown_timeout` a worker answers what it
/// holds: half of it, at most half a second (one turn of the event loop is
/// enough; the rest is room for a loaded machine).
fn margin(timeout: Millis) -> Millis {
    (timeout / 2).min(500)
}

/// Whether another nginx master runs beside this worker's: the pid file or
/// its `.oldbin` (which nginx renames it to at `USR2`, and back at a
/// rollback) names a live process other than this worker's master.
fn another_binary_runs() -> bool {
    // SAFETY: neither call can fail.
    let (master, me) = unsafe { (libc::getppid(), libc::getpid()) };

    nginx::pid_files().iter().any(|path| {
        read_pid(path).is_some_and(|pid| pid != master && pid != me && process_exists(pid))
    })
}

fn read_pid(path: &Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 0)
}

/// Whether a process with this pid exists (a master runs as root, so the
/// worker may not signal it: EPERM still means it exists).
fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
