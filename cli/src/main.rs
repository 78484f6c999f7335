//! `intermission`: the ops command line of the intermission nginx module.
//! Pauses, resumes, stops or looks at one nginx or a whole fleet in one
//! command, and runs a maintenance step inside a pause that is always
//! resumed. README.md, "Ops command line", says how and why.
//!
//! - `args`: the command line; `target`: targets and their credentials;
//! - `call`: one call to one target; `fleet`: every target at once;
//! - `report`: lines or JSON; `say`: notes that no output error can stop;
//! - `run`: the maintenance command; `signals`: INT, TERM and HUP, noted
//!   and passed on.

mod args;
mod call;
mod fleet;
mod report;
mod run;
mod say;
mod signals;
mod target;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};

use args::{Cli, Command, Common, ExpectedState, PauseArgs, ResumeArgs, StatusArgs, Time};
use call::{Answer, Verb};
use fleet::{failed, Fleet, Interrupted};
use intermission_core::control::RunState;
use report::{Report, Row};
use say::say;
use target::{read_targets_file, readable_by_others, SharedCredentials, Target};

/// The exit status of a usage error, as clap's own.
const USAGE: u8 = 2;

/// The exit status of `status --expect` when a target is in another state.
const NOT_AS_EXPECTED: i32 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "intermission",
                &mut io::stdout(),
            );
            0
        }
        Command::Manpage { dir } => manpages(dir.as_deref()),
        command => match act(command) {
            Ok(status) => status,
            Err(usage) => {
                say(format_args!(
                    "intermission: {usage}\nTry 'intermission --help'."
                ));
                i32::from(USAGE)
            }
        },
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// The manual page on stdout, or every page (the subcommands' too) in `dir`.
fn manpages(dir: Option<&std::path::Path>) -> i32 {
    let written = match dir {
        None => clap_mangen::Man::new(Cli::command()).render(&mut io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir)),
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            say(format_args!("intermission: {e}"));
            1
        }
    }
}

/// Carries out a command that calls targets; `Err` is a usage error.
fn act(command: Command) -> Result<i32, String> {
    if let Err(e) = signals::install() {
        return Err(format!("cannot handle signals: {e}"));
    }
    raise_descriptor_limit();
    let mut stdout = io::stdout();
    Ok(match command {
        Command::Status { common, status } => status_of(&fleet(&common, 0)?, &status, &mut stdout),
        Command::Stop { common, ttl, retry } => {
            let query = query(&[("ttl", ttl.as_ref().map(|t| t.text.clone()))]);
            stop(&fleet(&common, retry.retries)?, &query, &mut stdout)
        }
        Command::Pause {
            common,
            pause: p,
            retry,
        } => pause(&fleet(&common, retry.retries)?, &p, &mut stdout),
        Command::Resume {
            common,
            resume: r,
            retry,
        } => resume(&fleet(&common, retry.retries)?, &r, &mut stdout),
        Command::Run {
            common,
            pause: p,
            resume: r,
            retry,
            wait_detached,
            command,
        } => run(
            &fleet(&common, retry.retries)?,
            &p,
            &r,
            Duration::from_secs(wait_detached),
            &command,
        ),
        Command::Completions { .. } | Command::Manpage { .. } => unreachable!("handled in main"),
    })
}

/// A fleet of hundreds of targets is called at once, a connection each:
/// raise the soft limit on open descriptors to the hard one, as nginx does.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The targets of the command line and of its `--targets` file, with their
/// credentials and certificate store.
fn fleet(common: &Common, retries: u32) -> Result<Fleet, String> {
    let mut shared = SharedCredentials::from_env();
    shared.app = common.app.clone();
    if let Some(file) = &common.credentials {
        shared.read_file(file)?;
        if readable_by_others(file) {
            say(format_args!(
                "intermission: warning: --credentials file \"{}\" can be read by other users; \
                 chmod 600 it",
                file.display()
            ));
        }
    }
    let mut targets = common
        .targets
        .iter()
        .map(|arg| Target::from_arg(arg, &shared))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(file) = &common.targets_file {
        targets.extend(read_targets_file(file, &shared)?);
    }
    if targets.is_empty() {
        return Err("no target given".into());
    }
    if common
        .targets
        .iter()
        .zip(&targets)
        .any(|(_, t)| t.password_in_url())
    {
        say(format_args!(
            "intermission: warning: a password given in a target URL on the command line can \
             be read by other users of this machine in the process list while this command \
             runs; use --credentials FILE or INTERMISSION_PASSWORD"
        ));
    }
    Ok(Fleet {
        targets: Arc::new(targets),
        agent: call::agent(common.cacert.as_deref())?,
        timeout: Duration::from_secs(common.timeout),
        retries,
        json: common.json,
    })
}

/// A query string of the arguments that are set: `?ttl=5m&drain=30`.
fn query(args: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = args
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", value.as_ref()?)))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

fn text(time: &Option<Time>) -> Option<String> {
    time.as_ref().map(|t| t.text.clone())
}

/// `status`: each target's (or with `--all`, each app's) figures; with
/// `--expect`, exit 3 unless every one is in that state.
fn status_of(fleet: &Fleet, args: &StatusArgs, out: &mut dyn Write) -> i32 {
    let all = fleet.all();
    let total = all.len();
    let answers = match fleet.status_round(args.all) {
        Ok(answers) => answers,
        Err(Interrupted {
            signal, answers, ..
        }) => {
            let summary = format!("status: interrupted by {}", signals::name(signal));
            fleet.print(&fleet.report("status", &answers, summary), out);
            return 128 + signal;
        }
    };
    let failed = failed(&answers, &all).len();
    let rows: Vec<Row> = fleet
        .targets
        .iter()
        .zip(&answers)
        .flat_map(|(target, answer)| {
            if args.all {
                Row::per_app(target, answer.as_ref())
            } else {
                vec![Row::new(target, answer.as_ref())]
            }
        })
        .collect();
    let expected = args.expect.map(|state| match state {
        ExpectedState::Running => RunState::Running,
        ExpectedState::Paused => RunState::Paused,
        ExpectedState::Stopped => RunState::Stopped,
    });
    let unexpected = expected.map_or(0, |state| rows.iter().filter(|r| !r.is(state)).count());
    let mut summary = format!("status: {} of {total} targets ok", total - failed);
    if let Some(state) = expected {
        summary.push_str(&match unexpected {
            0 => format!("; all {}", state.name()),
            n => format!("; {n} not {}", state.name()),
        });
    }
    let mut report = Report::new("status", rows, summary);
    report.per_app = args.all;
    fleet.print(&report, out);
    match (failed, unexpected) {
        (0, 0) => 0,
        (0, _) => NOT_AS_EXPECTED,
        _ => 1,
    }
}

/// `stop`: one call each. A stop cut short by a signal resumes what it
/// may have stopped.
fn stop(fleet: &Fleet, query: &str, out: &mut dyn Write) -> i32 {
    let all = fleet.all();
    let total = all.len();
    match fleet.round(Verb::Stop, query, &all, fleet.timeout, true) {
        Ok(answers) => {
            let failed = failed(&answers, &all).len();
            let summary = format!("stop: {} of {total} targets ok", total - failed);
            fleet.print(&fleet.report("stop", &answers, summary), out);
            i32::from(failed != 0)
        }
        Err(mut cut) => {
            let summary = format!("stop: interrupted by {}", signals::name(cut.signal));
            fleet.print(&fleet.report("stop", &cut.answers, summary), out);
            cut.finish(fleet.timeout);
            roll_back(fleet, &cut.answers, "stop");
            128 + cut.signal
        }
    }
}

/// `pause`: enable everywhere; if any fails, resume what this call may
/// have paused.
fn pause(fleet: &Fleet, args: &PauseArgs, out: &mut dyn Write) -> i32 {
    let query = query(&[("ttl", text(&args.ttl)), ("drain", text(&args.drain))]);
    let all = fleet.all();
    let total = all.len();
    let limit = fleet.enable_limit(args.drain.as_ref().map(|d| d.millis));
    let answers = match fleet.round(Verb::Enable, &query, &all, limit, true) {
        Ok(answers) => answers,
        Err(mut cut) => {
            let summary = format!(
                "pause: interrupted by {}{}",
                signals::name(cut.signal),
                if args.no_rollback {
                    "; the targets stay paused (--no-rollback)"
                } else {
                    "; resuming what this call may have paused"
                }
            );
            fleet.print(&fleet.report("pause", &cut.answers, summary), out);
            if !args.no_rollback {
                // The pause calls still under way end first (each has its
                // limit): a resume must not arrive before its pause.
                cut.finish(limit);
                roll_back(fleet, &cut.answers, "pause");
            }
            return 128 + cut.signal;
        }
    };
    let failed = failed(&answers, &all).len();
    if failed == 0 {
        let report = fleet.report(
            "pause",
            &answers,
            format!("pause: {total} of {total} targets paused"),
        );
        fleet.print(&report, out);
        return 0;
    }
    if args.no_rollback {
        let summary = format!(
            "pause: {failed} of {total} targets failed; the others stay paused (--no-rollback)"
        );
        fleet.print(&fleet.report("pause", &answers, summary), out);
    } else {
        let summary = format!("pause: {failed} of {total} targets failed; resuming the others");
        fleet.print(&fleet.report("pause", &answers, summary), out);
        roll_back(fleet, &answers, "pause");
    }
    1
}

/// Resumes every target a pause (or stop) of this call may have paused
/// (`Answer::may_have_paused`; a target with no answer at all, its call
/// still under way, too), and names those whose state is unknown after.
/// Those that answered 304 were paused before and stay so.
fn roll_back(fleet: &Fleet, answers: &[Option<Answer>], action: &str) {
    let paused: Vec<usize> = fleet
        .all()
        .into_iter()
        .filter(|&i| answers[i].as_ref().is_none_or(Answer::may_have_paused))
        .collect();
    if paused.is_empty() {
        return;
    }
    let resumed = fleet.resume_with_retries("", &paused);
    let unknown: Vec<String> = failed(&resumed, &paused)
        .into_iter()
        .map(|i| fleet.targets[i].shown())
        .collect();
    let summary = if unknown.is_empty() {
        format!(
            "{action}: rolled back: resumed the {} target(s) this call may have paused",
            paused.len()
        )
    } else {
        format!(
            "{action}: rolled back, but the state of {} of the {} target(s) this call may have \
             paused is unknown (they may still be paused): {}",
            unknown.len(),
            paused.len(),
            unknown.join(" ")
        )
    };
    let report = fleet.report_of("resume", &resumed, &paused, summary);
    fleet.print(&report, &mut io::stderr());
}

/// `resume`: disable everywhere, retrying failed targets; names those that
/// may still be paused.
fn resume(fleet: &Fleet, args: &ResumeArgs, out: &mut dyn Write) -> i32 {
    let query = query(&[("rate", args.rate.map(|r| r.to_string()))]);
    let all = fleet.all();
    let total = all.len();
    let answers = fleet.resume_with_retries(&query, &all);
    let failed = failed(&answers, &all);
    if failed.is_empty() {
        let report = fleet.report(
            "resume",
            &answers,
            format!("resume: {total} of {total} targets running"),
        );
        fleet.print(&report, out);
        if args.rate.is_some() {
            watch_backlog(fleet);
        }
        return 0;
    }
    let names: Vec<String> = failed.iter().map(|&i| fleet.targets[i].shown()).collect();
    let summary = format!(
        "resume: {} of {total} targets may still be paused after {} tries: {}",
        failed.len(),
        fleet.retries + 1,
        names.join(" ")
    );
    fleet.print(&fleet.report("resume", &answers, summary), out);
    1
}

/// On a terminal, after `resume --rate`: a live line of the requests still
/// held across the fleet until the paced backlog is out (Ctrl-C stops
/// watching; the release goes on). Nothing when stderr is not a terminal.
fn watch_backlog(fleet: &Fleet) {
    if !io::stderr().is_terminal() {
        return;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let all = fleet.all();
    while let Ok(answers) = fleet.round(Verb::Status, "", &all, fleet.timeout, true) {
        let held: u64 = answers
            .iter()
            .flatten()
            .filter_map(|a| a.status.as_ref().map(|s| s.held_now))
            .sum();
        if held == 0 {
            break;
        }
        bar.set_message(format!(
            "releasing at the paced rate: {held} requests still held on {} targets ({:.0?})",
            all.len(),
            started.elapsed()
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
}

/// Resumes the fleet when dropped, unless `done`: after a `run`'s pause,
/// whatever ends the run (its command, a signal, a panic) ends with the
/// resume.
struct ResumeOnDrop<'a> {
    fleet: &'a Fleet,
    args: &'a ResumeArgs,
    /// The resume's exit status, once it has run.
    status: Option<i32>,
}

impl ResumeOnDrop<'_> {
    fn resume(&mut self) -> i32 {
        *self
            .status
            .get_or_insert_with(|| resume(self.fleet, self.args, &mut io::stderr()))
    }
}

impl Drop for ResumeOnDrop<'_> {
    fn drop(&mut self) {
        self.resume();
    }
}

/// `run`: pause, run the command, resume whatever happened.
fn run(
    fleet: &Fleet,
    pause_args: &PauseArgs,
    resume_args: &ResumeArgs,
    wait_detached: Duration,
    command: &[std::ffi::OsString],
) -> i32 {
    let shown: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let paused = pause(fleet, pause_args, &mut io::stderr());
    if paused > 128 {
        say(format_args!(
            "intermission: interrupted during the pause; not running: {}",
            shown.join(" ")
        ));
        return paused;
    }
    if paused != 0 {
        say(format_args!(
            "intermission: the pause failed; not running: {}",
            shown.join(" ")
        ));
        return 1;
    }
    // From here on, nothing may keep the fleet paused: the resume runs when
    // this guard goes, on any return and on a panic.
    let mut resume_guard = ResumeOnDrop {
        fleet,
        args: resume_args,
        status: None,
    };
    let mut status;
    if let Some(signal) = signals::received() {
        say(format_args!(
            "intermission: {} during the pause; not running the command; resuming",
            signals::name(signal)
        ));
        status = 128 + signal;
    } else {
        let (ended, why) = run::run(command, wait_detached);
        if let Some(why) = why {
            say(format_args!("intermission: {why}"));
        }
        status = ended.status();
        say(format_args!(
            "intermission: the command exited with status {status}{}; resuming",
            signals::received()
                .map(|s| format!(" after {}", signals::name(s)))
                .unwrap_or_default()
        ));
    }
    if resume_guard.resume() != 0 {
        say(format_args!(
            "intermission: some targets may still be paused (see above)"
        ));
        if status == 0 {
            status = 1;
        }
    }
    status
}
