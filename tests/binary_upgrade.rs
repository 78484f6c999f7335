//! A binary upgrade (`USR2`, then `QUIT` of the old master) with
//! `intermission_state_file`: the new binary starts paused, and until the old
//! master quits both binaries' workers hold requests, each with its own zone.
//! One `disable`, answered by either, releases them all: the other binary
//! follows the state file.

mod common;

use common::*;

fn start(file: &std::path::Path, upstream: &Upstream) -> Nginx {
    Nginx::start(
        Config::new()
            .daemon()
            .workers(2)
            .http(&format!("intermission_state_file {};", file.display()))
            .server(&app_server("shop", upstream, "")),
    )
}

/// Sends the old master USR2 and waits for the new binary's master and its
/// two workers; returns the new master's pid.
fn upgrade(nginx: &Nginx) -> i32 {
    let old = nginx.master_pid();
    unsafe { libc::kill(old, libc::SIGUSR2) };
    let mut new = 0;
    wait_until(BOUND, "the new binary's master and its 2 workers", || {
        new = nginx.prefix_file("nginx.pid").trim().parse().unwrap_or(0);
        new != 0 && new != old && children_of(new).len() == 2
    });
    nginx.wait_for_error_line("saying the new binary restored the pause", |l| {
        l.contains(&format!("{new}#")) && l.contains("paused again from the state file")
    });
    new
}

fn held_now(port: u16) -> u64 {
    counters(port, "").held_now
}

#[test]
fn one_disable_releases_what_both_binaries_hold_in_order_within_each() {
    let dir = StateDir::new("upgrade-both");
    let file = dir.file();
    let upstream = Upstream::start();
    let nginx = start(&file, &upstream);
    let port = nginx.port();
    pause(port, "");
    let old_workers = nginx.worker_pids();
    let mut pending = start_in_order(port, 10, |i| seq_request("/", i));
    wait_until(BOUND, "10 held by the old binary", || held_now(port) == 10);

    let new_master = upgrade(&nginx);
    let new_workers = children_of(new_master);
    // Both binaries accept now: send until the new one holds some, and the
    // old one some of these too (at most 300).
    let held_by = |p: &Pending, workers: &[i32]| workers.iter().any(|&w| p.is_held_by(w));
    while pending.len() < 310 {
        let seq = pending.len();
        pending.push(start_held(port, seq_request("/", seq)));
        let later = &pending[10..];
        if later.iter().filter(|p| held_by(p, &new_workers)).count() >= 3
            && later.iter().any(|p| held_by(p, &old_workers))
        {
            break;
        }
    }
    let n = pending.len();
    let in_new = pending.iter().filter(|p| held_by(p, &new_workers)).count();
    assert!(in_new >= 3, "the new binary holds {in_new} of {n}");
    eprintln!(
        "{n} held: {in_new} by the new binary, {} by the old",
        n - in_new
    );
    assert_eq!(
        upstream.count(),
        0,
        "nothing reached the upstream while paused"
    );

    // One disable: whichever binary answers it, the other follows the file.
    resume(port, "");
    finish_all_from_upstream(pending);
    let hits = upstream.hits();
    assert_each_seq_once(&hits, n);
    assert_ordered_per_worker(&hits);
    // Across a binary's two workers, one arrival order: each request
    // reaches the upstream within twice the order window (16) of its place.
    for (binary, workers) in [("old", &old_workers), ("new", &new_workers)] {
        let seqs: Vec<usize> = hits
            .iter()
            .filter(|hit| workers.iter().any(|w| hit.worker() == w.to_string()))
            .map(|hit| hit.seq())
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        let worst = seqs
            .iter()
            .enumerate()
            .map(|(at, seq)| at.abs_diff(sorted.binary_search(seq).unwrap()))
            .max()
            .unwrap_or(0);
        assert!(
            worst <= 32,
            "the {binary} binary's requests {worst} places out of order: {seqs:?}"
        );
    }
    nginx.wait_for_error_line("saying one binary followed the other", |l| {
        l.contains("resumed by another nginx binary (the state file")
    });

    // The old master quits; the new binary serves on, running.
    let old_master = nginx.master_pid();
    unsafe { libc::kill(old_master, libc::SIGQUIT) };
    wait_until(BOUND, "the old master to exit", || !is_alive(old_master));
    assert_passes(port, Request::get("/after"), "after the upgrade");
    assert!(is_alive(new_master));
    assert_no_serious_lines(&nginx);
}

#[test]
fn the_old_binary_answers_its_held_requests_when_it_quits_while_paused() {
    let dir = StateDir::new("upgrade-quit");
    let file = dir.file();
    let upstream = Upstream::start();
    let nginx = start(&file, &upstream);
    let port = nginx.port();
    pause(port, "");
    let old_held = start_in_order(port, 4, |i| seq_request("/", i));
    wait_until(BOUND, "4 held by the old binary", || held_now(port) == 4);
    let new_master = upgrade(&nginx);

    let old_master = nginx.master_pid();
    unsafe { libc::kill(old_master, libc::SIGQUIT) };
    for held in old_held {
        let answer = held.finish();
        assert_eq!(answer.status, 503, "answered as at a shutdown: {answer:?}");
        assert!(answer.header("retry-after").is_some(), "{answer:?}");
    }
    wait_until(BOUND, "the old master to exit", || !is_alive(old_master));

    // The new binary is still paused: it holds, and a disable releases.
    let held = start_held(port, seq_request("/", 4));
    wait_until(BOUND, "1 held by the new binary", || held_now(port) == 1);
    assert!(children_of(new_master).iter().any(|&w| held.is_held_by(w)));
    resume(port, "");
    assert_from_upstream(&held.finish(), "held by the new binary");
    assert_eq!(
        upstream.count(),
        1,
        "the old binary's requests never reached the upstream"
    );
}
