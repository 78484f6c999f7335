//! Running the maintenance command, as a shell runs a foreground job: in a
//! process group of its own, so that INT, TERM and HUP reach all of it (a
//! shell and the jobs it started); the terminal handed to that group before
//! the command starts, so that it can read from it at once (a sudo password
//! prompt) and Ctrl-C reaches it; and waited for until every process of the
//! group has exited, so that the fleet is resumed only once nothing of the
//! maintenance still runs.
//!
//! The command line becomes a *subreaper* (Linux): processes of the command
//! whose parent exits are reparented to it rather than to init. So it also
//! sees the processes that leave the group (`setsid`, a daemon the command
//! starts, `sudo` with `use_pty`): once the group has exited, it waits for
//! those for a bound (`--wait-detached`), then resumes and names them. A
//! stopped process of the command (Ctrl-Z) is continued: a run cannot be
//! suspended with the fleet paused.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::say::say;
use crate::signals;

/// How often the wait looks at the command's processes.
const CHECK: Duration = Duration::from_millis(20);

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
    /// It could not be started.
    NotStarted,
}

impl Ended {
    /// The exit status the command line passes on: the command's, 128 + N
    /// for signal N, 127 when it could not start (as shells do).
    pub fn status(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(signal) => 128 + signal,
            Ended::NotStarted => 127,
        }
    }
}

/// Runs `command` and waits until it and every process of its group have
/// exited, and the processes it left outside its group for at most
/// `wait_detached`.
pub fn run(command: &[OsString], wait_detached: Duration) -> (Ended, Option<String>) {
    let Some((program, args)) = command.split_first() else {
        return (Ended::NotStarted, Some("no command".into()));
    };
    become_subreaper();
    let terminal = Terminal::ours();
    let give_terminal = terminal.is_some();
    let mut spawning = Command::new(program);
    spawning.args(args).process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, and
    // calls only async-signal-safe functions (signal, getpgrp, tcsetpgrp).
    unsafe {
        spawning.pre_exec(move || {
            // Rust ignores SIGPIPE; the command gets the default, as from
            // a shell (a pipeline of its own must end as usual).
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if give_terminal {
                // Its group is not the terminal's yet: taking it would
                // stop the child with SIGTTOU, which is ignored meanwhile.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpgrp());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let child = match spawning.spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                Ended::NotStarted,
                Some(format!("cannot run {}: {e}", program.to_string_lossy())),
            )
        }
    };
    let group = child.id() as i32;
    // The parent hands it over too, as shells do: whichever runs first.
    if let Some(terminal) = &terminal {
        terminal.give_to(group);
    }
    signals::pass_on_to(group);
    let ended = wait(group, terminal.as_ref(), wait_detached);
    signals::pass_on_to(0);
    if let Some(terminal) = &terminal {
        terminal.take_back();
    }
    (ended, None)
}

/// Reaps every child that ends (the command's leader, and the processes
/// reparented to this one), continues any that stops, until the leader has
/// ended and nothing of its group is left; then waits for the processes it
/// left outside its group, at most `wait_detached` (a signal ends that
/// wait). The leader's end is the command's.
fn wait(group: i32, terminal: Option<&Terminal>, wait_detached: Duration) -> Ended {
    let mut leader = None;
    // When only processes outside the group were left, and how many signals
    // had come by then.
    let mut detached_since: Option<(Instant, u64)> = None;
    let mut stopped_said = false;
    loop {
        let mut children_left = true;
        loop {
            let mut status = 0;
            // SAFETY: waitpid with WNOHANG writes the status of a child that
            // changed, if any, into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
            if pid < 0 {
                // ECHILD: no child at all is left.
                children_left = false;
                break;
            }
            if pid == 0 {
                break;
            }
            if libc::WIFSTOPPED(status) {
                if !stopped_said {
                    stopped_said = true;
                    say(format_args!(
                        "intermission: the command was stopped ({}); it is continued: a run \
                         cannot be suspended while the fleet is paused",
                        signal_name(libc::WSTOPSIG(status))
                    ));
                }
                if let Some(terminal) = terminal {
                    terminal.give_to(group);
                }
                // SAFETY: signalling the command's own process group.
                unsafe { libc::kill(-group, libc::SIGCONT) };
                continue;
            }
            if pid == group {
                let status = std::process::ExitStatus::from_raw(status);
                leader = Some(match (status.code(), status.signal()) {
                    (Some(code), _) => Ended::Exited(code),
                    (None, Some(signal)) => Ended::Killed(signal),
                    (None, None) => Ended::Exited(1),
                });
            }
        }
        if let Some(ended) = leader {
            if !group_is_alive(group) {
                if !children_left {
                    return ended;
                }
                // Only processes that left the command's group are left.
                let (since, signals_then) = *detached_since.get_or_insert_with(|| {
                    say(format_args!(
                        "intermission: waiting for what the command left running outside its \
                         process group ({}), at most {} s (--wait-detached); Ctrl-C resumes at \
                         once",
                        describe(&detached_children(group)),
                        wait_detached.as_secs()
                    ));
                    (Instant::now(), signals::count())
                });
                let signalled = signals::count() > signals_then;
                if since.elapsed() >= wait_detached || signalled {
                    say(format_args!(
                        "intermission: resuming while these still run: {}",
                        describe(&detached_children(group))
                    ));
                    return ended;
                }
            }
        }
        thread::sleep(CHECK);
    }
}

/// Whether a process of `group` is left. `kill` refused for lack of rights
/// (EPERM: a member that is another user's, such as a root-owned `sudo`)
/// means one is.
fn group_is_alive(group: i32) -> bool {
    // SAFETY: signal 0 to a process group only asks whether it has a
    // process left.
    let found = unsafe { libc::kill(-group, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The children of this process outside `group`, with their names: what
/// the command left running, reparented here.
fn detached_children(group: i32) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let name = stat[open + 1..close].to_owned();
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next()?;
            let parent: i32 = fields.next()?.parse().ok()?;
            let pgid: i32 = fields.next()?.parse().ok()?;
            (parent == me && pgid != group && state != "Z").then_some((pid, name))
        })
        .collect()
}

fn describe(processes: &[(i32, String)]) -> String {
    if processes.is_empty() {
        return "processes that have just exited".into();
    }
    processes
        .iter()
        .map(|(pid, name)| format!("{pid} ({name})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGSTOP => "SIGSTOP",
        _ => "a signal",
    }
}

fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// The terminal, when this process has it in the foreground: handed to the
/// command's group while it runs, and taken back after.
struct Terminal {
    ours: libc::pid_t,
}

impl Terminal {
    /// `Some` if stdin is a terminal whose foreground group is ours (not
    /// when run in the background: then the command is not either).
    fn ours() -> Option<Terminal> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        // SAFETY: tcgetpgrp and getpgrp only read process state.
        let (foreground, ours) = unsafe { (libc::tcgetpgrp(0), libc::getpgrp()) };
        (foreground == ours).then_some(Terminal { ours })
    }

    fn give_to(&self, group: libc::pid_t) {
        set_foreground(group);
    }

    fn take_back(&self) {
        set_foreground(self.ours);
    }
}

fn set_foreground(group: libc::pid_t) {
    // SAFETY: a background process that changes the terminal's foreground
    // group gets SIGTTOU; it is ignored around the call, and restored.
    unsafe {
        let previous = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(0, group);
        libc::signal(libc::SIGTTOU, previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> Ended {
        run(
            &["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(30),
        )
        .0
    }

    /// One test: the wait reaps any child of the process, so two running
    /// at once in the test harness's threads would take each other's.
    #[test]
    fn the_wait_passes_the_status_on_and_lasts_until_everything_exited() {
        assert_eq!(run_sh("exit 3").status(), 3);
        assert_eq!(run_sh("kill -TERM $$").status(), 143);
        let (ended, why) = run(&["/nonexistent/command".into()], Duration::ZERO);
        assert_eq!(ended.status(), 127);
        assert!(why.unwrap().contains("/nonexistent/command"));

        let marker = std::env::temp_dir().join(format!("intermission-run-{}", std::process::id()));
        for script in [
            // The shell exits at once; the job it left behind writes the
            // marker a moment later, and the wait must not end before.
            "(sleep 0.3; touch '{}') & exit 0",
            // The job leaves the group (a new session) first.
            "setsid sh -c 'sleep 0.3; touch {}' & exit 0",
        ] {
            let _ = std::fs::remove_file(&marker);
            let script = script.replace("{}", &marker.display().to_string());
            assert_eq!(run_sh(&script), Ended::Exited(0), "{script}");
            assert!(marker.exists(), "the wait ended before: {script}");
        }
        let _ = std::fs::remove_file(&marker);
        // A pipeline of its own ends as from a shell (SIGPIPE).
        assert_eq!(run_sh("yes | head -c 1 >/dev/null; exit 5").status(), 5);
    }
}
