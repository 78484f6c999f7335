//! Running the maintenance command: in a process group of its own, so that
//! INT, TERM and HUP reach all of it (a shell and the jobs it started), and
//! waited for until every process of the group has exited, so that the fleet
//! is resumed only once nothing of the maintenance still runs.
//!
//! The command line becomes a *subreaper* (Linux): processes of the command
//! whose parent exits are reparented to it rather than to init, and it reaps
//! them, so a group whose leader has exited is seen to be empty once its
//! last process ends. On a terminal, the command's group is made the
//! terminal's foreground group while it runs, as a shell does, so that it
//! can read from the terminal and Ctrl-C reaches it.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::signals;

/// How often the wait looks at the command's process group.
const GROUP_CHECK: Duration = Duration::from_millis(20);

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
/// exited.
pub fn run(command: &[OsString]) -> (Ended, Option<String>) {
    let Some((program, args)) = command.split_first() else {
        return (Ended::NotStarted, Some("no command".into()));
    };
    become_subreaper();
    let child = match Command::new(program).args(args).process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                Ended::NotStarted,
                Some(format!("cannot run {}: {e}", program.to_string_lossy())),
            )
        }
    };
    let group = child.id() as i32;
    let terminal = Terminal::give_to(group);
    signals::pass_on_to(group);
    let ended = wait_for_group(group);
    signals::pass_on_to(0);
    drop(terminal);
    (ended, None)
}

/// Reaps every child that ends until the leader has and nothing of its group
/// is left; the leader's end is the command's.
fn wait_for_group(group: i32) -> Ended {
    let mut leader = None;
    loop {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with WNOHANG writes the status of a child that
            // ended, if any, into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
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
            // SAFETY: signal 0 to a process group only asks whether it has
            // a process left.
            let left = unsafe { libc::kill(-group, 0) } == 0;
            if !left {
                return ended;
            }
        }
        thread::sleep(GROUP_CHECK);
    }
}

fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// The terminal's foreground process group, given to the command while it
/// runs and taken back after.
struct Terminal {
    ours: Option<libc::pid_t>,
}

impl Terminal {
    fn give_to(group: i32) -> Terminal {
        if !std::io::stdin().is_terminal() {
            return Terminal { ours: None };
        }
        // SAFETY: tcgetpgrp and getpgrp only read process state.
        let (foreground, ours) = unsafe { (libc::tcgetpgrp(0), libc::getpgrp()) };
        if foreground != ours {
            // Not in the foreground ourselves (run in the background): the
            // command is not either.
            return Terminal { ours: None };
        }
        set_foreground(group);
        Terminal { ours: Some(ours) }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(ours) = self.ours {
            set_foreground(ours);
        }
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
        run(&["sh".into(), "-c".into(), script.into()]).0
    }

    /// One test: the wait reaps any child of the process, so two running
    /// at once in the test harness's threads would take each other's.
    #[test]
    fn the_wait_passes_the_status_on_and_lasts_until_the_whole_group_exited() {
        assert_eq!(run_sh("exit 3").status(), 3);
        assert_eq!(run_sh("kill -TERM $$").status(), 143);
        let (ended, why) = run(&["/nonexistent/command".into()]);
        assert_eq!(ended.status(), 127);
        assert!(why.unwrap().contains("/nonexistent/command"));

        let marker = std::env::temp_dir().join(format!("intermission-run-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // The shell exits at once; the job it left behind writes the marker
        // a moment later, and the wait must not end before.
        let script = format!("(sleep 0.3; touch '{}') & exit 0", marker.display());
        assert_eq!(run_sh(&script), Ended::Exited(0));
        assert!(
            marker.exists(),
            "the background job finished before the wait ended"
        );
        let _ = std::fs::remove_file(&marker);
    }
}
