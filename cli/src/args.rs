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
http://10.0.0.5/_intermission (not a site URL: that one's requests are held).
Append #HOST to send \"Host: HOST\" (the virtual host, so the app, it
controls): http://10.0.0.5/_intermission#shop.example.com. A query string
(?app=shop, for configurations that name the app with $arg_app) is kept after
the action; --app NAME adds app=NAME to every target.

Credentials for auth_basic: --credentials FILE (USER:PASSWORD on its first
line), else INTERMISSION_USER and INTERMISSION_PASSWORD, for every target
without its own in the URL (http://ops:secret@10.0.0.5/_intermission: other
users of the machine see that one in the process list; a '#' in it must be
written %23). Passwords are never printed. HTTPS targets are checked against the system's certificate store, or
--cacert FILE. Every target is called in parallel.

Exit status: 0 when every target succeeded, 1 when any failed, 2 for a usage
error, 3 for status --expect when a target is in another state; run: the
command's status (1 if the pause failed and it did not run, 128+N if signal N
ended it).";

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
    /// Each target's state, deadline, held and in-flight requests.
    Status {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        status: StatusArgs,
    },
    /// Pause every target. If any fails, resume those this call paused and
    /// exit 1 (all or nothing), unless --no-rollback.
    Pause {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pause: PauseArgs,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// Resume every target, retrying failed ones; name those that may still
    /// be paused.
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        resume: ResumeArgs,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// Stop every target: every request answered 503 until resume.
    Stop {
        #[command(flatten)]
        common: Common,
        /// The stop ends by itself after TIME (seconds, or 90s, 5m, 1h)
        #[arg(long, value_name = "TIME", value_parser = ttl)]
        ttl: Option<Time>,
        #[command(flatten)]
        retry: RetryArgs,
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
        #[command(flatten)]
        retry: RetryArgs,
        /// Processes COMMAND leaves running outside its process group (setsid,
        /// a daemon it starts) are waited for at most SECONDS after the
        /// group has exited; then the resume goes on and names them
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        wait_detached: u64,
        /// The maintenance command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff); with --dir, write every page, the
    /// subcommands' too, into DIR.
    Manpage {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    /// Add app=NAME to every target's query string (for configurations that
    /// name the app with `set $app_name $arg_app;`)
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Read USER:PASSWORD for auth_basic from the first line of FILE (keep it
    /// readable by you alone); it wins over INTERMISSION_USER and
    /// INTERMISSION_PASSWORD
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Trust the certificate authorities in FILE (PEM) for https:// targets,
    /// instead of the system's store
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Print the result as one JSON document instead of lines
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Calls to a target that failed a resume (or a rollback), after the
    /// first (one second apart)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Every app of each target, not only the target's own
    #[arg(long)]
    pub all: bool,
    /// Exit 0 if every target (every app, with --all) is in STATE, else 3:
    /// for scripts that ask "is it paused?"
    #[arg(long, value_name = "STATE", value_enum)]
    pub expect: Option<ExpectedState>,
}

/// A state `status --expect` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectedState {
    Running,
    Paused,
    Stopped,
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
            command: Command::Pause { common, pause, .. },
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
        assert!(
            parse(&["status", "--retries", "2", "http://a"]).is_err(),
            "no retries on status"
        );
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
