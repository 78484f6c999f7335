//! The command line: commands, options, help, and the checks clap cannot
//! make. Times (`--ttl`, `--drain`) are checked by the same parser the
//! module uses for the control call's arguments, so what the command line
//! accepts the module accepts.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use intermission_core::control::{Action, ControlArgs};

const AFTER_HELP: &str = "\
A TARGET is the URL of an intermission_control location, such as
http://10.0.0.5/_intermission. Append #HOST to send \"Host: HOST\" (the virtual
host, so the app, it controls): http://10.0.0.5/_intermission#shop.example.com.
Credentials for auth_basic go in the URL (http://ops:secret@10.0.0.5/_intermission)
or, for targets without them, in INTERMISSION_USER and INTERMISSION_PASSWORD;
passwords are never printed. Every target is called in parallel.

Exit status: 0 when every target succeeded, 1 when any failed, 2 for a usage
error; run: the command's status (1 if the pause failed and it did not run,
128+N if signal N ended it).";

/// Pause, resume, stop or look at the intermission nginx module on one nginx
/// or a whole fleet at once, and run a maintenance command inside a pause
/// that is always resumed.
#[derive(Debug, Parser)]
#[command(name = "intermission", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Each target's state and held requests.
    Status(Common),
    /// Pause every target. If any fails, resume those this call paused and
    /// exit 1 (all or nothing), unless --no-rollback.
    Pause {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pause: PauseArgs,
    },
    /// Resume every target, retrying failed ones; name those that may still
    /// be paused.
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        resume: ResumeArgs,
    },
    /// Stop every target: every request answered 503 until resume.
    Stop {
        #[command(flatten)]
        common: Common,
        /// The stop ends by itself after TIME (seconds, or 90s, 5m, 1h)
        #[arg(long, value_name = "TIME", value_parser = ttl)]
        ttl: Option<Time>,
    },
    /// Pause, run COMMAND, then resume whatever happens: success, failure,
    /// Ctrl-C or SIGTERM. COMMAND runs in its own process group; signals
    /// reach all of it, and the resume waits until all of it has exited.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pause: PauseArgs,
        #[command(flatten)]
        resume: ResumeArgs,
        /// The maintenance command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Manpage,
}

/// What every command that calls targets takes.
#[derive(Debug, Args)]
pub struct Common {
    /// URL of an intermission_control location; URL#HOST sends Host: HOST
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Read targets from FILE, one per line: URL [HOST]; blank lines and
    /// lines starting with # are skipped
    #[arg(long = "targets", value_name = "FILE")]
    pub targets_file: Option<PathBuf>,
    /// Seconds allowed for each call to a target (a drain adds its own time)
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Calls to a target that failed a resume, after the first (one second
    /// apart)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// Print the result as one JSON document instead of lines
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The pause ends by itself after TIME (seconds, or 90s, 5m, 1h), even
    /// if nobody resumes it
    #[arg(long, value_name = "TIME", value_parser = ttl)]
    pub ttl: Option<Time>,
    /// Wait until the requests each target let through before the pause
    /// have finished (at most TIME); a target still busy then counts as
    /// failed
    #[arg(long, value_name = "TIME", value_parser = drain)]
    pub drain: Option<Time>,
    /// Leave the targets that did pause paused when others failed
    #[arg(long)]
    pub no_rollback: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Release the held requests at most N per second on each target,
    /// oldest first
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: Option<u64>,
}

/// A time as given, and what the module makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time {
    pub text: String,
    pub millis: u64,
}

fn ttl(value: &str) -> Result<Time, String> {
    time("ttl", Action::Enable, value)
}

fn drain(value: &str) -> Result<Time, String> {
    time("drain", Action::Enable, value)
}

/// Checks a time with the module's own parser of the control call's
/// arguments.
fn time(name: &str, action: Action, value: &str) -> Result<Time, String> {
    let query = format!("{name}={value}");
    let args = ControlArgs::parse(query.as_bytes())
        .and_then(|args| args.check_for(action).map(|()| args))
        .map_err(|bad| bad.to_string())?;
    let millis = match name {
        "ttl" => args.ttl,
        _ => args.drain,
    }
    .ok_or_else(|| format!("no {name} in \"{value}\""))?;
    Ok(Time {
        text: value.to_owned(),
        millis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("intermission").chain(args.iter().copied()))
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_are_checked_as_the_module_checks_them() {
        assert_eq!(
            ttl("90s"),
            Ok(Time {
                text: "90s".into(),
                millis: 90_000
            })
        );
        assert_eq!(drain("2.5").unwrap().millis, 2_500);
        assert!(ttl("0").is_err(), "more than 0");
        assert!(ttl("2d").is_err());
        assert!(drain("soon").unwrap_err().contains("drain"));
    }

    #[test]
    fn commands_take_their_own_options_only() {
        let Cli {
            command: Command::Pause { common, pause },
        } = parse(&[
            "pause",
            "--ttl",
            "5m",
            "--drain",
            "30",
            "http://a/_i",
            "--json",
        ])
        .unwrap()
        else {
            panic!("a pause");
        };
        assert_eq!(common.targets, ["http://a/_i"]);
        assert!(common.json);
        assert_eq!(common.timeout, 5);
        assert_eq!(pause.ttl.unwrap().millis, 300_000);
        assert_eq!(pause.drain.unwrap().millis, 30_000);
        for wrong in [
            &["pause", "--rate", "5", "http://a"][..],
            &["status", "--ttl", "5m", "http://a"],
            &["stop", "--drain", "5", "http://a"],
            &["resume", "--timeout", "0", "http://a"],
            &["resume", "--rate", "0", "http://a"],
        ] {
            let error = parse(wrong).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{wrong:?}");
        }
    }

    #[test]
    fn run_takes_its_command_after_two_dashes() {
        let Cli {
            command:
                Command::Run {
                    common,
                    resume,
                    command,
                    ..
                },
        } = parse(&[
            "run", "--rate", "50", "http://a", "http://b", "--", "sh", "-c", "exit 3",
        ])
        .unwrap()
        else {
            panic!("a run");
        };
        assert_eq!(common.targets, ["http://a", "http://b"]);
        assert_eq!(resume.rate, Some(50));
        assert_eq!(command, ["sh", "-c", "exit 3"]);
        assert_eq!(parse(&["run", "http://a"]).unwrap_err().exit_code(), 2);
    }
}
