//! Order yields to availability: a worker that stops running (SIGSTOP here;
//! in production a blocking disk write, swap, a throttled container) loses
//! its place in the order once it has left a wake-up unlooked-at for the
//! stall bound (`intermission_core::order::STALL_BOUND_MS`), and the other
//! workers release everything they hold; its own requests go when it runs
//! again. Without it, the running worker once let go 9 of its ~100 in 8 s.

mod common;

use std::time::Instant;

use common::*;

fn signal(pid: i32, signal: i32) {
    // SAFETY: signalling a worker of the test's own nginx.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn a_stopped_worker_holds_no_other_workers_release_hostage() {
    const HELD: usize = 200;
    let upstream = Upstream::start();
    let nginx = Nginx::start(
        Config::new()
            .workers(2)
            .reuseport()
            .server(&app_server("shop", &upstream, "")),
    );
    let port = nginx.port();
    pause(port, "");
    let held = hold_in_order(port, HELD, |i| seq_request("/item/", i));
    // The control calls go over a connection of the worker that keeps
    // running (a stopped one answers nothing, not even the control calls).
    let (mut ops, _running, stopped) = control_connection(&nginx);
    let (mut mine, mut theirs): (Vec<Pending>, Vec<Pending>) = (Vec::new(), Vec::new());
    for p in held {
        if p.is_held_by(stopped) {
            theirs.push(p);
        } else {
            mine.push(p);
        }
    }
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "both workers hold some: {} and {}",
        mine.len(),
        theirs.len()
    );
    signal(stopped, libc::SIGSTOP);

    // Everything the running worker holds is released.
    let resumed = Instant::now();
    assert_answer(&ops.control("disable"), 200, RESUMED, "disable");
    let count = mine.len();
    finish_all_from_upstream(mine);
    eprintln!(
        "the running worker released its {count} in {:?} while the other was stopped",
        resumed.elapsed()
    );
    assert_still_held(&theirs);
    nginx.wait_for_error_line("saying the stopped worker lost its place", |line| {
        line.contains(&format!(
            "worker process {stopped} has not looked at its wake-up"
        ))
    });

    // It runs again: its own go too.
    signal(stopped, libc::SIGCONT);
    finish_all_from_upstream(theirs);
    assert_each_seq_once(&upstream.wait_for(HELD), HELD);
    drop(ops);
    wait_until(BOUND, "nothing held", || counters(port, "").held_now == 0);
    assert_no_serious_lines(&nginx);
    nginx.stop();
}

/// A request let go for a 503 (its max time with `$intermission_on_timeout
/// 503`, or a stop) whose worker runs its phases again only after every
/// pause has ended still gets its 503, never the upstream. Found by the
/// fault campaign (seed 129: a worker stopped across the moment): the
/// phase handler's path for "nothing is paused" let it through. Here the
/// test probe holds the worker in the request's wake-up while the other
/// worker resumes the app.
#[test]
fn a_503_due_before_every_pause_ended_is_answered_after() {
    let upstream = Upstream::start();
    let nginx = Nginx::start(Config::new().workers(2).reuseport().server(&format!(
        "{} {}",
        app_per_query_server(&upstream),
        "set $intermission_max_time 1; set $intermission_on_timeout 503;"
    )));
    let port = nginx.port();
    let (mut ops, _b, a) = control_connection(&nginx);
    let call = |ops: &mut KeepAliveConnection, action: &str| ops.control(action).status;
    // A request of `app`, held by worker A, whose wake-up stops A for 1.5 s.
    let held_by_a = |app: &str| loop {
        let p = start_held(
            port,
            Request::get(&format!("/?app={app}"))
                .header("X-Seq", "1")
                .header("X-Intermission-Test-Delay", "wake=1500"),
        );
        if p.is_held_by(a) {
            break p;
        }
        p.close();
    };

    // Its max time passes while paused; in its wake-up, the app resumes.
    assert_eq!(call(&mut ops, "enable?app=timed"), 200);
    let timed = held_by_a("timed");
    std::thread::sleep(std::time::Duration::from_millis(1_300));
    assert_eq!(call(&mut ops, "disable?app=timed"), 200);
    let response = timed.finish();
    assert_eq!(response.status, 503, "at its max time: {response:?}");

    // Its app is stopped; in its wake-up, the app resumes.
    assert_eq!(call(&mut ops, "enable?app=stopped"), 200);
    let stopped = held_by_a("stopped");
    assert_eq!(call(&mut ops, "stop?app=stopped"), 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(call(&mut ops, "disable?app=stopped"), 200);
    let response = stopped.finish();
    assert_eq!(response.status, 503, "stopped: {response:?}");

    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    drop(ops);
    nginx.stop();
}
