//! A worker that dies while holding requests does not stall the others: its
//! own clients lose their connections (nothing can save those), every other
//! worker's requests are released, and the pause state in the zone is intact.

mod common;

use common::*;

#[test]
fn a_killed_worker_does_not_stall_the_other_workers_queues() {
    const HELD: usize = 40;
    /// New requests sent after the crash, until the respawned worker has
    /// accepted one of them: at most this many.
    const MAX_LATE: usize = 500;
    let (nginx, upstream) = start_shop(2, "");
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    assert_still_held(&held);

    let before = nginx.worker_pids();
    let victim = before[0];
    // SAFETY: sending a signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    wait_until(BOUND, "the killed worker to be gone and replaced", || {
        let workers = nginx.worker_pids();
        !is_alive(victim) && workers.len() == 2 && !workers.contains(&victim)
    });
    let respawned = *nginx
        .worker_pids()
        .iter()
        .find(|pid| !before.contains(pid))
        .expect("a new worker");

    // The victim's clients see their connections closed; the rest wait on.
    let (lost, survivors): (Vec<Pending>, Vec<Pending>) =
        held.into_iter().partition(Pending::is_answered);
    assert!(
        !lost.is_empty() && !survivors.is_empty(),
        "both workers should have held requests ({} lost, {} still held)",
        lost.len(),
        survivors.len()
    );
    assert_eq!(upstream.count(), 0, "nothing may pass while paused");
    assert_status(port, "", PAUSED);
    assert_eq!(counters(port, "").state, "paused");

    // The surviving and the respawned worker keep holding new requests.
    let mut waiting = survivors;
    let first_late = waiting.len();
    // Which worker accepts a connection is up to the kernel: send until the
    // respawned one has one (and some more for the other).
    let mut to_respawned = 0;
    while to_respawned < 3 && waiting.len() - first_late < MAX_LATE {
        let late = start_held(
            port,
            seq_request("/item/", HELD + waiting.len() - first_late),
        );
        if late.is_held_by(respawned) {
            to_respawned += 1;
        }
        waiting.push(late);
    }
    assert_eq!(
        to_respawned, 3,
        "requests the respawned worker accepted, of {MAX_LATE}"
    );
    assert_still_held(&waiting[first_late..]);

    resume(port, "");
    let expected = waiting.len();
    finish_all_from_upstream(waiting);
    let hits = upstream.wait_for(expected);
    settle();
    assert_eq!(
        upstream.count(),
        expected,
        "a request reached the upstream twice"
    );
    assert_ordered_per_worker(&hits);
    assert!(
        hits.iter().any(|hit| hit.worker() == respawned.to_string()),
        "the respawned worker {respawned} held and released requests too"
    );
    assert_status(port, "", RESUMED);
    nginx.stop();
}

/// What a killed worker counted does not outlive it: its requests in flight
/// and those it held stop counting (so a drain answers as soon as the other
/// workers' requests are done), and its tickets leave the order, so the
/// survivors' held requests are released in order.
#[test]
fn a_killed_workers_counts_and_place_in_the_order_are_taken_back() {
    const WORKING: usize = 12;
    const HELD: usize = 40;
    let gated = GatedUpstream::start();
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().workers(2).reuseport().server(&format!(
        "{} location /work/ {{ intermission; proxy_pass http://127.0.0.1:{}; }} {} {}",
        set_app_name("shop"),
        gated.port(),
        held_location("/", &upstream, ""),
        control_location()
    )));
    let port = nginx.port();
    let working: Vec<Pending> = (0..WORKING)
        .map(|i| Request::get(&format!("/work/{i}")).start(port))
        .collect();
    gated.wait_for(WORKING);
    pause(port, "");
    let held = start_in_order(port, HELD, |i| seq_request("/item/", i));
    // With two workers, that nginx has read a request does not mean its
    // worker has taken its ticket yet (see `hold_in_order`).
    wait_until(BOUND, "every request to be counted as held", || {
        counters(port, "").held_now == HELD as u64
    });
    assert_eq!(counters(port, "").in_flight, WORKING as u64);

    // The victim: a worker with requests both in flight and held.
    let share = |pid: i32| {
        (
            working.iter().filter(|p| p.is_held_by(pid)).count(),
            held.iter().filter(|p| p.is_held_by(pid)).count(),
        )
    };
    let workers = nginx.worker_pids();
    let victim = *workers
        .iter()
        .find(|&&pid| share(pid).0 > 0 && share(pid).1 > 0)
        .unwrap_or(&workers[0]);
    let (victim_working, victim_held) = share(victim);
    assert!(
        victim_working > 0 && victim_held > 0 && victim_held < HELD,
        "the victim should have requests in flight and held, and not all of them \
         ({victim_working} in flight, {victim_held} held)"
    );
    // SAFETY: sending a signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    wait_until(BOUND, "the killed worker to be replaced", || {
        let now = nginx.worker_pids();
        !is_alive(victim) && now.len() == 2 && !now.contains(&victim)
    });

    // The counts return to what the survivor has.
    let survivors_working = (WORKING - victim_working) as u64;
    let survivors_held = (HELD - victim_held) as u64;
    let mut figures = counters(port, "");
    wait_until(BOUND, "the dead worker's counts to be taken back", || {
        figures = counters(port, "");
        figures.in_flight == survivors_working && figures.held_now == survivors_held
    });
    nginx.wait_for_error_line("about the reclaimed slot", |line| {
        line.contains(&format!(
            "worker process {victim} is gone; its slot is reclaimed"
        ))
    });

    // A drain waits for the survivor's requests only.
    let drain = control_request("POST", "enable?drain=30s").start(port);
    settle();
    assert!(
        !drain.is_answered(),
        "the drain answered with requests in flight"
    );
    gated.open();
    assert_answer(
        &drain.finish(),
        200,
        PAUSED,
        "the drain once the survivor's finished",
    );

    // The survivor's held requests go in order: the dead worker's tickets
    // hold nothing up.
    let (lost, survivors): (Vec<Pending>, Vec<Pending>) =
        held.into_iter().partition(Pending::is_answered);
    assert_eq!(
        lost.len(),
        victim_held,
        "the victim's clients lost their connections"
    );
    resume(port, "");
    let expected = survivors.len();
    finish_all_from_upstream(survivors);
    let hits = upstream.wait_for(expected);
    assert_eq!(hits.len(), expected);
    assert_ordered_per_worker(&hits);
    let seqs = seqs(&hits);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "one worker, in arrival order: {seqs:?}"
    );
    assert_eq!(counters(port, "").held_now, 0);
    drop(working);
    nginx.stop();
}

/// An old worker killed while it holds requests after a reload is not
/// replaced, so nothing reclaims its slot as a new worker starts: the
/// workers its place in the order holds up find it gone themselves.
#[test]
fn an_old_worker_killed_after_a_reload_does_not_hold_the_order_up() {
    const BEFORE: usize = 60;
    const AFTER: usize = 60;
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .reuseport()
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    let before = start_in_order(port, BEFORE, |i| seq_request("/item/", i));
    let old = nginx.reload();
    let victim = *old
        .iter()
        .find(|&&pid| before.iter().any(|p| p.is_held_by(pid)))
        .expect("an old worker holds requests");
    let after = start_in_order(port, AFTER, |i| seq_request("/item/", BEFORE + i));
    let (lost, survivors): (Vec<Pending>, Vec<Pending>) = before
        .into_iter()
        .chain(after)
        .partition(|p| p.is_held_by(victim));
    // SAFETY: sending a signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    wait_until(BOUND, "the killed worker to be gone", || !is_alive(victim));

    resume(port, "");
    let expected = survivors.len();
    finish_all_from_upstream(survivors);
    let hits = upstream.wait_for(expected);
    assert_eq!(hits.len(), expected);
    assert_ordered_per_worker(&hits);
    nginx.wait_for_error_line("about the reclaimed slot", |line| {
        line.contains(&format!(
            "worker process {victim} is gone; its slot is reclaimed"
        ))
    });
    drop(lost);
    nginx.stop();
}

/// Only "no such process" means a worker is dead. A worker out of
/// descriptors (a long pause pushes workers toward their limit) cannot read
/// /proc; it once took that for death and reclaimed a live worker's slot
/// (its held requests uncounted, its in-flight ones forgotten by drains).
#[test]
fn a_worker_out_of_descriptors_declares_no_live_worker_dead() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .reuseport()
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    // The status calls go over a connection of worker A, the one that will
    // run out of descriptors (it needs none to answer them).
    let (mut ops, a, b) = control_connection(&nginx);
    // B holds requests.
    let mut held = Vec::new();
    while !held.iter().any(|p: &Pending| p.is_held_by(b)) {
        assert!(held.len() < 200, "no request reached worker {b}");
        held.push(start_held(port, seq_request("/item/", held.len())));
    }
    let n = held.len() as u64;
    wait_until(BOUND, "all held", || counters(port, "").held_now == n);

    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and lowering the limit of a child process of the test.
    unsafe {
        assert_eq!(
            libc::prlimit(a, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit),
            0
        );
        let none = libc::rlimit {
            rlim_cur: 3,
            rlim_max: limit.rlim_max,
        };
        assert_eq!(
            libc::prlimit(a, libc::RLIMIT_NOFILE, &none, std::ptr::null_mut()),
            0
        );
    }
    // A looks for dead workers before each status (at most every 200 ms).
    for _ in 0..4 {
        let answer = ops.control("status?format=json");
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(json["held_now"], n, "B's held requests still count: {json}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // SAFETY: as above, back to what it was.
    unsafe {
        assert_eq!(
            libc::prlimit(a, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()),
            0
        );
    }
    assert!(
        !nginx
            .error_log()
            .contains(&format!("worker process {b} is gone")),
        "a live worker was taken for dead:\n{}",
        nginx.error_log()
    );
    resume(port, "");
    drop(ops);
    finish_all_from_upstream(held);
    nginx.stop();
}
