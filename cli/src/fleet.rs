//! Every target at once: a thread per target for each round of calls, and
//! the all-or-nothing rules of pause, resume, stop and status.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::call::{call, Answer, Verb};
use crate::report::{Report, Row};
use crate::signals;
use crate::target::Target;

/// How often a wait for answers looks for a signal.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// A progress line appears once a round of calls takes this long.
const PROGRESS_AFTER: Duration = Duration::from_millis(300);

pub struct Fleet {
    pub targets: Arc<Vec<Target>>,
    /// The HTTP client every call shares (its certificate store).
    pub agent: ureq::Agent,
    /// Time allowed for each call.
    pub timeout: Duration,
    pub retries: u32,
    pub json: bool,
}

/// A round of calls that a signal cut short: the answers that came, and
/// the calls still under way.
pub struct Interrupted {
    pub signal: i32,
    pub answers: Vec<Option<Answer>>,
    rest: mpsc::Receiver<(usize, Answer)>,
}

impl Interrupted {
    /// Waits for the calls still under way, at most `bound` (each call has
    /// its own limit, so they end), and adds their answers: a rollback must
    /// not race a pause still on its way.
    pub fn finish(&mut self, bound: Duration) {
        let until = Instant::now() + bound;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.rest.recv_timeout(left) {
                Ok((index, answer)) => self.answers[index] = Some(answer),
                Err(_) => break,
            }
        }
    }
}

impl Fleet {
    pub fn all(&self) -> Vec<usize> {
        (0..self.targets.len()).collect()
    }

    /// Calls `verb` on the targets numbered in `only`, all at once, each
    /// allowed `limit`, and waits for every answer: `None` for targets not
    /// called. With `interruptible`, a signal ends the wait, and the answers
    /// that came are returned as `Err`, with the calls still under way.
    pub fn round(
        &self,
        verb: Verb,
        query: &str,
        only: &[usize],
        limit: Duration,
        interruptible: bool,
    ) -> Result<Vec<Option<Answer>>, Interrupted> {
        self.round_of(verb, query, only, limit, interruptible, false)
    }

    /// `status`, with `all`: every app of each target.
    pub fn status_round(&self, all: bool) -> Result<Vec<Option<Answer>>, Interrupted> {
        self.round_of(Verb::Status, "", &self.all(), self.timeout, true, all)
    }

    fn round_of(
        &self,
        verb: Verb,
        query: &str,
        only: &[usize],
        limit: Duration,
        interruptible: bool,
        all: bool,
    ) -> Result<Vec<Option<Answer>>, Interrupted> {
        let (sender, receiver) = mpsc::channel();
        for &index in only {
            let (target, sender, query) = (
                self.targets[index].clone(),
                sender.clone(),
                query.to_owned(),
            );
            let agent = self.agent.clone();
            thread::spawn(move || {
                let answer = call(&agent, &target, verb, &query, limit, all);
                let _ = sender.send((index, answer));
            });
        }
        drop(sender);
        let mut answers: Vec<Option<Answer>> = vec![None; self.targets.len()];
        let started = Instant::now();
        let mut progress = Progress::new(verb, only.len());
        let mut received = 0;
        while received < only.len() {
            if interruptible {
                if let Some(signal) = signals::received() {
                    progress.finish();
                    return Err(Interrupted {
                        signal,
                        answers,
                        rest: receiver,
                    });
                }
            }
            match receiver.recv_timeout(SIGNAL_CHECK) {
                Ok((index, answer)) => {
                    answers[index] = Some(answer);
                    received += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if started.elapsed() >= PROGRESS_AFTER {
                progress.show(received);
            }
        }
        progress.finish();
        Ok(answers)
    }

    /// The time an `enable` with a drain of `drain_ms` may take.
    pub fn enable_limit(&self, drain_ms: Option<u64>) -> Duration {
        self.timeout + Duration::from_millis(drain_ms.unwrap_or(0))
    }

    pub fn report(
        &self,
        action: &'static str,
        answers: &[Option<Answer>],
        summary: String,
    ) -> Report {
        self.report_of(action, answers, &self.all(), summary)
    }

    /// A report of the targets numbered in `only` (a rollback calls only
    /// those that may have paused).
    pub fn report_of(
        &self,
        action: &'static str,
        answers: &[Option<Answer>],
        only: &[usize],
        summary: String,
    ) -> Report {
        let rows = only
            .iter()
            .map(|&i| Row::new(&self.targets[i], answers[i].as_ref()))
            .collect();
        Report::new(action, rows, summary)
    }

    pub fn print(&self, report: &Report, out: &mut dyn Write) {
        report.print(self.json, out);
    }

    /// `disable` on the targets numbered in `only`, then again, a second
    /// apart, on those that failed, up to `retries` more times. Signals do
    /// not cut it short: a host left paused is a slice of users waiting.
    /// The last answer of each target.
    pub fn resume_with_retries(&self, query: &str, only: &[usize]) -> Vec<Option<Answer>> {
        let mut answers = self
            .round(Verb::Disable, query, only, self.timeout, false)
            .unwrap_or_else(|cut| cut.answers);
        for _ in 0..self.retries {
            let failed: Vec<usize> = only
                .iter()
                .copied()
                .filter(|&i| !answers[i].as_ref().is_some_and(|a| a.ok))
                .collect();
            if failed.is_empty() {
                break;
            }
            thread::sleep(Duration::from_secs(1));
            let again = self
                .round(Verb::Disable, query, &failed, self.timeout, false)
                .unwrap_or_else(|cut| cut.answers);
            for i in failed {
                answers[i] = again[i].clone();
            }
        }
        answers
    }
}

/// The numbers of the targets whose answer is (not) ok.
pub fn failed(answers: &[Option<Answer>], only: &[usize]) -> Vec<usize> {
    only.iter()
        .copied()
        .filter(|&i| !answers[i].as_ref().is_some_and(|a| a.ok))
        .collect()
}

/// A live line on a terminal while a round of calls is slow (a drain, many
/// hosts): how many targets answered. Nothing when stderr is not a
/// terminal.
struct Progress {
    bar: Option<ProgressBar>,
    verb: Verb,
    total: usize,
}

impl Progress {
    fn new(verb: Verb, total: usize) -> Progress {
        Progress {
            bar: None,
            verb,
            total,
        }
    }

    fn show(&mut self, answered: usize) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(self.total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg}: {pos} of {len} targets answered ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(self.verb.path());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_position(answered as u64);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
