//! What must hold after every scenario, whatever was injected:
//! - every request is answered exactly once, by the upstream or with one of
//!   the documented answers (502 while the upstream failed; 503 for a stop,
//!   `intermission_max_held` or a max time with 503; 504 for a max time
//!   with 504), unless its client left or its worker was killed;
//! - nothing reaches the upstream of a paused app but by its max time
//!   (`pass`) or `$intermission_bypass` (a request with it is never held,
//!   and only such a request passes as bypassed), and nothing let through
//!   before a drain's answer arrives after it;
//! - no request waits longer than its bound (its max time or its app's
//!   release, and the time stopped workers and upgrades took) plus slack;
//! - no nginx process uses CPU while it only holds, and no release engine
//!   even looks at its queue then;
//! - the counts come back to zero; nothing is logged at alert, crit or
//!   emerg but what was injected; nginx answers, and exits on QUIT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::serious_lines;
use crate::run::Observed;
use crate::scenario::{ClientKind, Fault, OnTimeout, Release, Scenario, UpstreamMode};
use crate::traffic::End;

/// Slack on every wait's bound: a loaded 2-core machine, a debug build.
const SLACK: Duration = Duration::from_secs(5);

/// One app's pause, as the control calls made it.
struct Pause {
    /// The enable was sent, and answered.
    sent: Instant,
    answered: Instant,
    /// When the pause surely ended: the release sent, or the ttl passed.
    end: Option<Instant>,
    /// A drain answered 200 at this time.
    drained: Option<Instant>,
}

fn pauses(s: &Scenario, o: &Observed) -> Vec<Option<Pause>> {
    s.apps
        .iter()
        .enumerate()
        .map(|(index, app)| {
            let calls: Vec<_> = o.calls.iter().filter(|c| c.app == Some(index)).collect();
            let enable = calls.iter().find(|c| c.action.starts_with("enable"))?;
            let released = calls
                .iter()
                .find(|c| c.action.starts_with("disable"))
                .map(|c| c.sent);
            let ttl_end = app.ttl_s.map(|ttl| enable.sent + Duration::from_secs(ttl));
            let end = match (released, ttl_end) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Some(Pause {
                sent: enable.sent,
                answered: enable.answered,
                end,
                drained: (app.drain && enable.status == Some(200)).then_some(enable.answered),
            })
        })
        .collect()
}

/// The seq in an access log line's URI (`/?app=app0&seq=12`).
fn seq_of(uri: &str) -> Option<usize> {
    uri.split("seq=").nth(1)?.split('&').next()?.parse().ok()
}

pub fn check(s: &Scenario, o: &Observed) -> Vec<String> {
    let mut violations = Vec::new();
    let mut say = |text: String| {
        if violations.len() < 30 {
            violations.push(text);
        }
    };
    let pauses = pauses(s, o);
    let app_of: BTreeMap<usize, usize> = o.records.iter().map(|r| (r.seq, r.app)).collect();
    let sent_of: BTreeMap<usize, Instant> = o.records.iter().map(|r| (r.seq, r.sent)).collect();
    let outcomes: BTreeMap<usize, &str> = o
        .access
        .iter()
        .filter_map(|e| Some((seq_of(&e.uri)?, e.outcome())))
        .collect();
    let since = |at: Instant| at.saturating_duration_since(o.t0).as_millis();

    for (index, app) in s.apps.iter().enumerate() {
        if pauses[index].is_none() {
            say(format!("{}: no enable was made", app.name));
        }
    }

    // Exactly once, and nothing upstream while paused.
    let mut times: BTreeMap<usize, usize> = BTreeMap::new();
    for hit in &o.hits {
        *times.entry(hit.seq).or_default() += 1;
        let Some(&app_index) = app_of.get(&hit.seq) else {
            continue;
        };
        let app = &s.apps[app_index];
        let Some(pause) = &pauses[app_index] else {
            continue;
        };
        let before_end = pause.end.is_none_or(|end| hit.at < end);
        let sent = sent_of[&hit.seq];
        match hit.outcome.as_str() {
            "timed_out" if app.on_timeout != OnTimeout::Pass => say(format!(
                "request {} reached the upstream at its max time, which answers {:?}",
                hit.seq, app.on_timeout
            )),
            "timed_out" => {}
            "passed" if sent > pause.answered && before_end => say(format!(
                "request {} of {} was sent at {} ms, after the pause began, and reached the \
                 upstream at {} ms, before it ended, as passed",
                hit.seq,
                app.name,
                since(sent),
                since(hit.at)
            )),
            "passed"
                if pause
                    .drained
                    .is_some_and(|drained| hit.at > drained && before_end) =>
            {
                say(format!(
                    "request {} of {} reached the upstream at {} ms as passed, after the drain \
                     answered at {} ms",
                    hit.seq,
                    app.name,
                    since(hit.at),
                    since(pause.drained.unwrap())
                ))
            }
            "passed" => {}
            "held" if before_end => say(format!(
                "request {} of {} was released to the upstream at {} ms, before its pause ended",
                hit.seq,
                app.name,
                since(hit.at)
            )),
            "held" if s.bypasses(hit.seq) => say(format!(
                "request {} of {} carries $intermission_bypass and was held",
                hit.seq, app.name
            )),
            "held" => {}
            "bypassed" if !s.bypasses(hit.seq) => say(format!(
                "request {} of {} reached the upstream as bypassed without $intermission_bypass",
                hit.seq, app.name
            )),
            "bypassed" => {}
            other => say(format!(
                "request {} reached the upstream with the outcome {other:?}",
                hit.seq
            )),
        }
    }
    for (seq, n) in times {
        if n > 1 {
            say(format!("request {seq} reached the upstream {n} times"));
        }
    }

    // Every request answered once, as documented, within its bound.
    let killed_any = !o.killed.is_empty();
    let upstream_failed = |from: Instant, to: Instant| {
        o.faults.iter().any(|f| {
            matches!(
                f.fault,
                Fault::Upstream(UpstreamMode::Down | UpstreamMode::Resetting, _)
            ) && f.started <= to
                && f.ended + Duration::from_millis(200) >= from
        })
    };
    let stopped_ms: u64 = s
        .faults
        .iter()
        .map(|(_, f)| match f {
            Fault::Stop(_, ms) => *ms,
            Fault::Upgrade(_) => 5_000,
            Fault::Reload | Fault::Kill(_) => 1_000,
            Fault::Upstream(UpstreamMode::Slow(ms), _) => *ms,
            _ => 0,
        })
        .sum();
    let retired_during = |from: Instant, to: Instant| {
        o.faults.iter().any(|f| {
            matches!(f.fault, Fault::Reload | Fault::Upgrade(_))
                && f.started <= to
                && f.ended + Duration::from_secs(1) >= from
        })
    };
    let hit_seqs: std::collections::BTreeSet<usize> = o.hits.iter().map(|h| h.seq).collect();
    for record in &o.records {
        let app = &s.apps[record.app];
        let what = format!(
            "request {} of {} ({:?}, sent at {} ms)",
            record.seq,
            app.name,
            record.kind,
            since(record.sent)
        );
        let outcome = outcomes.get(&record.seq).copied();
        match &record.end {
            End::Left => continue,
            End::Unanswered => {
                say(format!("{what}: no answer within the clients' bound"));
                continue;
            }
            End::Closed(_) if killed_any => continue,
            // A worker retired by a reload or an upgrade finishes the request
            // in progress on a connection; nginx closes the connection after
            // it, unread pipelined requests with it, and refuses new HTTP/2
            // streams (GOAWAY): clients send those again, as HTTP says.
            End::Closed(_)
                if retired_during(record.sent, record.ended)
                    && (matches!(record.kind, ClientKind::H2c(_))
                        || (matches!(record.kind, ClientKind::Pipelined(_)) && !record.first)) =>
            {
                continue
            }
            End::Closed(why) => {
                say(format!(
                    "{what}: closed without an answer ({why}), and no worker was killed"
                ));
                continue;
            }
            End::Answer {
                status,
                from_upstream,
                retry_after,
            } => {
                let documented = match status {
                    200 => *from_upstream && hit_seqs.contains(&record.seq),
                    502 => upstream_failed(record.sent, record.ended),
                    503 => {
                        retry_after.is_some()
                            && match outcome {
                                Some("stopped") => app.release == Release::StopThenDisable,
                                Some("rejected") => s.max_held.is_some(),
                                Some("timed_out") => app.on_timeout == OnTimeout::Answer503,
                                _ => false,
                            }
                    }
                    504 => outcome == Some("timed_out") && app.on_timeout == OnTimeout::Answer504,
                    _ => false,
                };
                if !documented {
                    say(format!(
                        "{what}: answered {status} (from the upstream: {from_upstream}, \
                         Retry-After: {retry_after:?}, outcome {outcome:?})"
                    ));
                }
            }
        }
        // Its bound: held until its max time or its app's release, which
        // takes as long as its pace needs.
        let Some(pause) = &pauses[record.app] else {
            continue;
        };
        let max_time = Duration::from_secs(app.max_time_s);
        let held_until = if record.sent >= pause.sent && pause.end.is_none_or(|e| record.sent < e) {
            let until_max = record.sent + max_time;
            pause.end.map_or(until_max, |end| end.min(until_max))
        } else {
            record.sent
        };
        let of_app = o.records.iter().filter(|r| r.app == record.app).count() as u64;
        let release = match app.release {
            Release::Paced(rate) => Duration::from_millis(of_app * 1_000 / rate + 1_000),
            _ => Duration::from_secs(1),
        };
        let bound = held_until + release + SLACK + Duration::from_millis(stopped_ms);
        if record.ended > bound {
            say(format!(
                "{what}: answered at {} ms, past its bound of {} ms",
                since(record.ended),
                since(bound)
            ));
        }
    }

    // No CPU, no look while only holding.
    for &(pid, used) in &o.quiet_cpu {
        if used * 2 > o.quiet_ticks.max(4) {
            say(format!(
                "nginx process {pid} used {used} of {} clock ticks while it only held",
                o.quiet_ticks
            ));
        }
    }
    if let Some((before, after)) = o.quiet_passes {
        if after != before {
            say(format!(
                "the release engines looked at their queues {} times while only holding",
                after.saturating_sub(before)
            ));
        }
    }

    // Counts back to zero.
    for (app, counts) in s.apps.iter().zip(&o.final_counts) {
        if *counts != Some((0, 0)) {
            say(format!(
                "{}: (held_now, in_flight) is {counts:?} once everything ended",
                app.name
            ));
        }
    }

    // Only what was injected is serious.
    let state_dir_broken = s
        .faults
        .iter()
        .any(|(_, f)| matches!(f, Fault::StateDirBroken(_)));
    for line in serious_lines(&o.error_log) {
        let killed = o
            .killed
            .iter()
            .any(|pid| line.contains(&format!("worker process {pid} exited on signal 9")));
        let injected = killed || (state_dir_broken && line.contains("cannot write the state file"));
        if !injected {
            say(format!("logged: {line}"));
        }
    }
    if let Err(e) = &o.still_answering {
        say(format!("nginx no longer answers: {e}"));
    }
    if let Err(e) = &o.exited {
        say(e.clone());
    }
    violations
}
