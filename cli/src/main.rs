//! `intermission`: the ops command line of the intermission nginx module.
//! Pauses, resumes, stops or looks at one nginx or a whole fleet in one
//! command, and runs a maintenance step inside a pause that is always
//! resumed. README.md, "Ops command line", says how and why.
//!
//! - `args`: the command line; `target`: targets and their credentials;
//! - `call`: one call to one target; `fleet`: every target at once;
//! - `report`: lines or JSON; `run`: the maintenance command;
//! - `signals`: INT, TERM and HUP, noted and passed on.

mod args;
mod call;
mod fleet;
mod report;
mod run;
mod signals;
mod target;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};

use args::{Cli, Command, Common, PauseArgs, ResumeArgs, Time};
use call::{Answer, Verb};
use fleet::{failed, Fleet, Interrupted};
use target::{read_targets_file, SharedCredentials, Target};

/// The exit status of a usage error, as clap's own.
const USAGE: u8 = 2;

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
        Command::Manpage => match clap_mangen::Man::new(Cli::command()).render(&mut io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("intermission: {e}");
                1
            }
        },
        command => match act(command) {
            Ok(status) => status,
            Err(usage) => {
                eprintln!("intermission: {usage}\nTry 'intermission --help'.");
                i32::from(USAGE)
            }
        },
    };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// Carries out a command that calls targets; `Err` is a usage error.
fn act(command: Command) -> Result<i32, String> {
    if let Err(e) = signals::install() {
        return Err(format!("cannot handle signals: {e}"));
    }
    raise_descriptor_limit();
    let mut stdout = io::stdout();
    Ok(match command {
        Command::Status(common) => simple(&fleet(&common)?, Verb::Status, "", &mut stdout),
        Command::Stop { common, ttl } => {
            let query = query(&[("ttl", ttl.as_ref().map(|t| t.text.clone()))]);
            simple(&fleet(&common)?, Verb::Stop, &query, &mut stdout)
        }
        Command::Pause { common, pause: p } => pause(&fleet(&common)?, &p, &mut stdout),
        Command::Resume { common, resume: r } => resume(&fleet(&common)?, &r, &mut stdout),
        Command::Run {
            common,
            pause: p,
            resume: r,
            command,
        } => run(&fleet(&common)?, &p, &r, &command),
        Command::Completions { .. } | Command::Manpage => unreachable!("handled in main"),
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

/// The targets of the command line and of its `--targets` file.
fn fleet(common: &Common) -> Result<Fleet, String> {
    let shared = SharedCredentials::from_env();
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
    Ok(Fleet {
        targets: Arc::new(targets),
        timeout: Duration::from_secs(common.timeout),
        retries: common.retries,
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

/// `status` or `stop`: one call each. A stop cut short by a signal resumes
/// what it stopped.
fn simple(fleet: &Fleet, verb: Verb, query: &str, out: &mut dyn Write) -> i32 {
    let action = verb_action(verb);
    let all = fleet.all();
    let total = all.len();
    match fleet.round(verb, query, &all, fleet.timeout, true) {
        Ok(answers) => {
            let failed = failed(&answers, &all).len();
            let report = fleet.report(
                action,
                &answers,
                format!("{action}: {} of {total} targets ok", total - failed),
            );
            fleet.print(&report, out);
            i32::from(failed != 0)
        }
        Err(Interrupted { signal, answers }) => {
            let summary = format!("{action}: interrupted by {}", signals::name(signal));
            fleet.print(&fleet.report(action, &answers, summary), out);
            if verb == Verb::Stop {
                roll_back(fleet, &answers, "stop");
            }
            128 + signal
        }
    }
}

fn verb_action(verb: Verb) -> &'static str {
    match verb {
        Verb::Status => "status",
        Verb::Enable => "pause",
        Verb::Disable => "resume",
        Verb::Stop => "stop",
    }
}

/// `pause`: enable everywhere; if any fails, resume what this call paused.
fn pause(fleet: &Fleet, args: &PauseArgs, out: &mut dyn Write) -> i32 {
    let query = query(&[("ttl", text(&args.ttl)), ("drain", text(&args.drain))]);
    let all = fleet.all();
    let total = all.len();
    let limit = fleet.enable_limit(args.drain.as_ref().map(|d| d.millis));
    let answers = match fleet.round(Verb::Enable, &query, &all, limit, true) {
        Ok(answers) => answers,
        Err(Interrupted { signal, answers }) => {
            let summary = format!(
                "pause: interrupted by {}{}",
                signals::name(signal),
                if args.no_rollback {
                    "; the targets stay paused (--no-rollback)"
                } else {
                    "; resuming what this call paused"
                }
            );
            fleet.print(&fleet.report("pause", &answers, summary), out);
            if !args.no_rollback {
                roll_back(fleet, &answers, "pause");
            }
            return 128 + signal;
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

/// Resumes the targets a pause (or stop) of this call paused: those that
/// answered 200 (or 504: a drain that ran out of time leaves the target
/// paused), and those whose answer had not come when a signal cut the wait
/// short (their pause had begun). Those that answered 304 were paused
/// before and stay so. Says so on stderr.
fn roll_back(fleet: &Fleet, answers: &[Option<Answer>], action: &str) {
    let paused: Vec<usize> = fleet
        .all()
        .into_iter()
        .filter(|&i| {
            answers[i]
                .as_ref()
                .is_none_or(|a| matches!(a.http, 200 | 504))
        })
        .collect();
    if paused.is_empty() {
        return;
    }
    let resumed = fleet.resume_with_retries("", &paused);
    let still = failed(&resumed, &paused).len();
    let summary = if still == 0 {
        format!(
            "{action}: rolled back: resumed the {} target(s) this call had paused",
            paused.len()
        )
    } else {
        format!(
            "{action}: rolled back, but {still} of the {} target(s) this call had paused may still be paused",
            paused.len()
        )
    };
    let report = fleet.report("resume", &resumed, summary);
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
        let held: u64 = answers.iter().flatten().filter_map(|a| a.held).sum();
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

/// `run`: pause, run the command, resume whatever happened.
fn run(
    fleet: &Fleet,
    pause_args: &PauseArgs,
    resume_args: &ResumeArgs,
    command: &[std::ffi::OsString],
) -> i32 {
    let shown: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let paused = pause(fleet, pause_args, &mut io::stderr());
    if paused > 128 {
        eprintln!(
            "intermission: interrupted during the pause; not running: {}",
            shown.join(" ")
        );
        return paused;
    }
    if paused != 0 {
        eprintln!(
            "intermission: the pause failed; not running: {}",
            shown.join(" ")
        );
        return 1;
    }
    let mut status;
    if let Some(signal) = signals::received() {
        eprintln!(
            "intermission: {} during the pause; not running the command; resuming",
            signals::name(signal)
        );
        status = 128 + signal;
    } else {
        let (ended, why) = run::run(command);
        if let Some(why) = why {
            eprintln!("intermission: {why}");
        }
        status = ended.status();
        eprintln!(
            "intermission: the command exited with status {status}{}; resuming",
            signals::received()
                .map(|s| format!(" after {}", signals::name(s)))
                .unwrap_or_default()
        );
    }
    if resume(fleet, resume_args, &mut io::stderr()) != 0 {
        eprintln!("intermission: some targets may still be paused (see above)");
        if status == 0 {
            status = 1;
        }
    }
    status
}
