//! A scenario of the fault campaign, drawn from a seed: what nginx runs
//! with, the requests the clients send and when, how each app is paused
//! and released, and the faults injected at random moments. The same seed
//! always draws the same scenario (the timing of a real run varies).

use fastrand::Rng;

/// How a client talks to nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// HTTP/1.1, `Connection: close`.
    Close,
    /// HTTP/1.1 kept alive (the connection stays open after the answer).
    KeepAlive,
    /// HTTP/1.1, this many requests written at once on one connection.
    Pipelined(usize),
    /// HTTP/2 cleartext (prior knowledge): this many streams on one
    /// connection.
    H2c(usize),
}

/// What `$intermission_on_timeout` says of an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    Pass,
    Answer503,
    Answer504,
}

#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    /// `$intermission_max_time`, in seconds.
    pub max_time_s: u64,
    pub on_timeout: OnTimeout,
    /// `enable?ttl=`: the pause ends by itself after this many seconds.
    pub ttl_s: Option<u64>,
    /// `enable?drain=`: the enable waits until nothing is in flight.
    pub drain: bool,
    pub release: Release,
}

/// How an app's pause ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Disable,
    /// `disable?rate=N`.
    Paced(u64),
    /// `stop` (its held requests answered 503), then `disable`.
    StopThenDisable,
    /// Nothing: its ttl, or max time, ends it.
    Nothing,
}

/// One group of requests (one client connection).
#[derive(Clone, Debug)]
pub struct Send {
    /// When it is sent, from the start of the hold.
    pub at_ms: u64,
    pub app: usize,
    pub kind: ClientKind,
    /// The client gives up this long after sending, if still unanswered.
    pub leave_after_ms: Option<u64>,
}

/// How the upstream behaves for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamMode {
    Normal,
    /// Every answer this late.
    Slow(u64),
    /// Connections accepted and closed at once (nginx answers 502).
    Resetting,
    /// Nothing listens (nginx answers 502).
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// `USR2`, then `WINCH` (the old master stays).
    Winch,
    /// `USR2`, then `QUIT` to the old master (Debian's way).
    QuitOld,
    /// `USR2`, `WINCH`, `HUP` to the old master, `QUIT` to the new one.
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL to a worker (by its index among the current ones).
    Kill(usize),
    /// SIGSTOP to a worker, SIGCONT this long after.
    Stop(usize, u64),
    /// `nginx -s reload`.
    Reload,
    /// A binary upgrade (only with a state file, which carries the pause).
    Upgrade(Upgrade),
    /// The upstream behaves so for this long.
    Upstream(UpstreamMode, u64),
    /// This many callers at once ask for status, metrics and enable of
    /// every paused app, a few times each.
    ControlStorm(usize),
    /// The state file's directory cannot be written for this long.
    StateDirBroken(u64),
}

/// Nothing is sent nor injected this long before the release.
const QUIET_BEFORE_RELEASE_MS: u64 = 900;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub workers: usize,
    pub worker_connections: usize,
    pub state_file: bool,
    /// `intermission_max_held`.
    pub max_held: Option<u64>,
    pub apps: Vec<App>,
    pub sends: Vec<Send>,
    /// How long requests are sent and held before the releases.
    pub hold_ms: u64,
    pub faults: Vec<(u64, Fault)>,
    /// Every worker but the first waits this long as it starts (at the
    /// start, a reload, an upgrade, a respawn): a worker slow to start,
    /// while the others already serve.
    pub late_workers_ms: Option<u64>,
    /// Requests whose seq ends in this digit carry `$intermission_bypass`
    /// (through a `map` of `$arg_seq`): they pass a pause or stop at once.
    pub bypass_digit: Option<usize>,
}

impl Scenario {
    /// The scenario of `seed`.
    pub fn draw(seed: u64) -> Scenario {
        let mut rng = Rng::with_seed(seed);
        let workers = rng.usize(1..=4);
        let worker_connections = *pick(&mut rng, &[64, 128, 768, 1024, 4096]);
        let state_file = rng.bool();
        let max_held = (rng.u8(..) < 40).then(|| rng.u64(5..40));
        let apps: Vec<App> = (0..rng.usize(1..=3))
            .map(|index| draw_app(&mut rng, index))
            .collect();
        let hold_ms = rng.u64(2_500..4_000);
        // Held requests need a connection each, plus what the release
        // opens: keep well inside every worker's share.
        let room = (worker_connections * workers / 3).clamp(8, 150);
        let wanted = rng.usize(room / 4..=room);
        let mut sends = Vec::new();
        let mut requests = 0;
        while requests < wanted {
            let kind = match rng.u8(0..10) {
                0..=3 => ClientKind::Close,
                4..=6 => ClientKind::KeepAlive,
                7 => ClientKind::Pipelined(rng.usize(2..=3)),
                _ => ClientKind::H2c(rng.usize(1..=4)),
            };
            requests += match kind {
                ClientKind::Pipelined(n) | ClientKind::H2c(n) => n,
                _ => 1,
            };
            sends.push(Send {
                at_ms: rng.u64(0..hold_ms - QUIET_BEFORE_RELEASE_MS - 300),
                app: rng.usize(..apps.len()),
                kind,
                leave_after_ms: (rng.u8(..) < 25).then(|| rng.u64(50..2_000)),
            });
        }
        sends.sort_by_key(|send| send.at_ms);
        let span = hold_ms + 2_500;
        let mut faults = Vec::new();
        for _ in 0..rng.usize(0..=4) {
            let fault = match rng.u8(0..100) {
                0..=14 => Fault::Kill(rng.usize(..workers)),
                15..=34 => Fault::Stop(rng.usize(..workers), rng.u64(100..1_500)),
                35..=49 => Fault::Reload,
                50..=57 if state_file => Fault::Upgrade(*pick(
                    &mut rng,
                    &[Upgrade::Winch, Upgrade::QuitOld, Upgrade::Rollback],
                )),
                58..=79 => {
                    let slow = UpstreamMode::Slow(rng.u64(50..800));
                    let mode = *pick(
                        &mut rng,
                        &[slow, UpstreamMode::Resetting, UpstreamMode::Down],
                    );
                    Fault::Upstream(mode, rng.u64(200..2_000))
                }
                80..=91 => Fault::ControlStorm(rng.usize(2..=6)),
                92..=99 if state_file => Fault::StateDirBroken(rng.u64(200..2_000)),
                _ => continue,
            };
            // Faults keep out of the quiet window before the release.
            let mut at = rng.u64(0..span);
            if (hold_ms.saturating_sub(QUIET_BEFORE_RELEASE_MS + 1_500)..hold_ms).contains(&at) {
                at = hold_ms + rng.u64(0..2_500);
            }
            faults.push((at, fault));
        }
        // One binary upgrade at most, and the state file whole while it
        // runs (it carries the pause to the new binary).
        let mut upgraded = false;
        faults.retain(|(_, fault)| match fault {
            Fault::Upgrade(_) => !std::mem::replace(&mut upgraded, true),
            _ => true,
        });
        if upgraded {
            faults.retain(|(_, fault)| !matches!(fault, Fault::StateDirBroken(_)));
        }
        faults.sort_by_key(|(at, _)| *at);
        // Drawn last, so that the draws above stay what they were for a seed.
        let late_workers_ms = (workers > 1 && rng.u8(..) < 64).then(|| rng.u64(100..1_500));
        let bypass_digit = (rng.u8(..) < 128).then(|| rng.usize(0..10));
        Scenario {
            seed,
            workers,
            worker_connections,
            state_file,
            max_held,
            apps,
            sends,
            hold_ms,
            faults,
            late_workers_ms,
            bypass_digit,
        }
    }

    /// Whether request `seq` carries `$intermission_bypass`.
    pub fn bypasses(&self, seq: usize) -> bool {
        self.bypass_digit.is_some_and(|digit| seq % 10 == digit)
    }

    /// The window before the release in which nothing is sent and no fault
    /// is injected (from, to; ms from the start of the hold): nginx holds
    /// and must use no CPU.
    pub fn quiet_window(&self) -> (u64, u64) {
        (self.hold_ms - QUIET_BEFORE_RELEASE_MS, self.hold_ms - 150)
    }

    /// Whether nothing at all is due in the quiet window (no request's max
    /// time, no client leaving, no pause's ttl, no fault or its end): then
    /// no release engine may even look at its queue in it.
    pub fn quiet_window_is_clean(&self) -> bool {
        let (from, to) = self.quiet_window();
        let near = |at: u64| at + 400 >= from && at <= to + 50;
        let sends = self.sends.iter().any(|send| {
            let max_time = self.apps[send.app].max_time_s * 1_000;
            near(send.at_ms + max_time) || send.leave_after_ms.is_some_and(|l| near(send.at_ms + l))
        });
        let ttls = self
            .apps
            .iter()
            .any(|app| app.ttl_s.is_some_and(|ttl| near(ttl * 1_000)));
        let faults = self.faults.iter().any(|&(at, fault)| {
            let lasts = match fault {
                Fault::Stop(_, ms) | Fault::Upstream(_, ms) | Fault::StateDirBroken(ms) => ms,
                _ => 1_500,
            };
            at <= to + 50 && at + lasts + 400 >= from
        });
        !(sends || ttls || faults)
    }

    /// Requests in all.
    pub fn requests(&self) -> usize {
        self.sends
            .iter()
            .map(|send| match send.kind {
                ClientKind::Pipelined(n) | ClientKind::H2c(n) => n,
                _ => 1,
            })
            .sum()
    }
}

fn draw_app(rng: &mut Rng, index: usize) -> App {
    let max_time_s = *pick(rng, &[1, 2, 4, 300]);
    let mut app = App {
        name: format!("app{index}"),
        max_time_s,
        on_timeout: *pick(
            rng,
            &[OnTimeout::Pass, OnTimeout::Answer503, OnTimeout::Answer504],
        ),
        ttl_s: (rng.u8(..) < 50).then(|| rng.u64(1..=4)),
        drain: rng.u8(..) < 60,
        release: match rng.u8(0..10) {
            0..=4 => Release::Disable,
            5..=6 => Release::Paced(rng.u64(20..200)),
            7..=8 => Release::StopThenDisable,
            _ => Release::Nothing,
        },
    };
    if app.release == Release::Nothing && app.ttl_s.is_none() {
        app.release = Release::Disable;
    }
    app
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}
