//! A binary upgrade with `intermission_state_file`, in the sequences
//! nginx.org and Debian document: the new binary starts paused, both
//! binaries' workers hold requests (each with its own zone), and one
//! `disable`, answered by either, releases them all: the other binary
//! follows the state file. Old workers that shut down gracefully (`WINCH`,
//! or `QUIT` of the old master) keep holding while the other binary runs,
//! as they do across a reload; so do the new binary's in a rollback.

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

/// nginx with a state file (in `dir`), app `shop` paused, and `n` requests
/// held by the first binary's workers.
fn paused_holding(dir: &StateDir, upstream: &Upstream, n: usize) -> (Nginx, Vec<Pending>) {
    let nginx = start(&dir.file(), upstream);
    let port = nginx.port();
    pause(port, "");
    let held = start_in_order(port, n, |i| seq_request("/", i));
    wait_until(BOUND, &format!("{n} held by the old binary"), || {
        held_now(port) == n as u64
    });
    (nginx, held)
}

/// Waits for the line of a worker that keeps holding as it shuts down.
fn wait_keeps_holding(nginx: &Nginx) {
    nginx.wait_for_error_line("saying the exiting workers keep holding", |l| {
        l.contains("another nginx binary runs and follows the state file: it keeps holding")
    });
}

#[test]
fn one_disable_releases_what_both_binaries_hold_in_order_within_each() {
    let (dir, upstream) = (StateDir::new("upgrade-both"), Upstream::start());
    let (nginx, mut pending) = paused_holding(&dir, &upstream, 10);
    let port = nginx.port();
    let old_workers = nginx.worker_pids();

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

/// Debian's sequence (`USR2`, then `QUIT` of the old master) while paused:
/// the old workers keep what they hold until a `disable` through the new
/// binary releases it; then they exit, and so does the old master.
#[test]
fn after_usr2_and_quit_of_the_old_master_its_workers_keep_holding() {
    let (dir, upstream) = (StateDir::new("upgrade-quit"), Upstream::start());
    let (nginx, old_held) = paused_holding(&dir, &upstream, 4);
    let port = nginx.port();
    let new_master = upgrade(&nginx);

    let old_master = nginx.master_pid();
    unsafe { libc::kill(old_master, libc::SIGQUIT) };
    wait_keeps_holding(&nginx);
    assert_still_held(&old_held);
    assert!(is_alive(old_master), "the old master waits for its workers");

    // The new binary holds too; one disable, through it, releases both.
    let held = start_held(port, seq_request("/", 4));
    wait_until(BOUND, "1 held by the new binary", || held_now(port) == 1);
    assert!(children_of(new_master).iter().any(|&w| held.is_held_by(w)));
    assert_eq!(
        upstream.count(),
        0,
        "nothing reached the upstream while paused"
    );
    resume(port, "");
    let mut pending = old_held;
    pending.push(held);
    finish_all_from_upstream(pending);
    assert_each_seq_once(&upstream.hits(), 5);
    wait_until(BOUND, "the old master to exit", || !is_alive(old_master));
    assert!(is_alive(new_master));
    assert_no_serious_lines(&nginx);
}

/// nginx.org's sequence: `USR2`, then `WINCH` (the old workers shut down
/// gracefully, the old master stays for a rollback): the old workers keep
/// holding, and the new binary's `disable` releases them.
#[test]
fn after_usr2_and_winch_the_old_workers_keep_holding_until_a_disable() {
    let (dir, upstream) = (StateDir::new("upgrade-winch"), Upstream::start());
    let (nginx, mut pending) = paused_holding(&dir, &upstream, 10);
    let port = nginx.port();
    let old_workers = nginx.worker_pids();
    let new_master = upgrade(&nginx);
    let old_master = nginx.master_pid();
    unsafe { libc::kill(old_master, libc::SIGWINCH) };
    wait_until(BOUND, "the old workers to stop listening", || {
        let inode = listening_inode(port).expect("nginx listens");
        old_workers
            .iter()
            .all(|&w| !is_alive(w) || !holds_socket(w, inode))
    });
    assert!(
        pending
            .iter()
            .all(|p| old_workers.iter().any(|&w| is_alive(w) && p.is_held_by(w))),
        "the old workers still hold their requests"
    );
    assert_still_held(&pending);
    // Only the new binary accepts now.
    pending.extend((10..13).map(|i| start_held(port, seq_request("/", i))));
    wait_until(BOUND, "3 held by the new binary", || held_now(port) == 3);
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    finish_all_from_upstream(pending);
    assert_each_seq_once(&upstream.hits(), 13);
    wait_until(BOUND, "the old workers to exit", || {
        old_workers.iter().all(|&w| !is_alive(w))
    });
    assert!(is_alive(old_master), "kept for a rollback");
    assert!(is_alive(new_master));
    assert_no_serious_lines(&nginx);
}

/// A rollback: `USR2`, `WINCH`, then `HUP` to the old master (it starts
/// workers again) and `QUIT` to the new one: the new binary's workers keep
/// what they hold, and the old binary's `disable` releases it.
#[test]
fn in_a_rollback_the_new_binarys_workers_keep_holding() {
    let (dir, upstream) = (StateDir::new("upgrade-rollback"), Upstream::start());
    let (nginx, _) = paused_holding(&dir, &upstream, 0);
    let port = nginx.port();
    let new_master = upgrade(&nginx);
    let old_master = nginx.master_pid();
    // The new binary's master is a child of the old one too.
    let old_workers = || -> Vec<i32> {
        children_of(old_master)
            .into_iter()
            .filter(|&pid| pid != new_master)
            .collect()
    };
    unsafe { libc::kill(old_master, libc::SIGWINCH) };
    wait_until(BOUND, "the old workers to exit", || {
        old_workers().is_empty()
    });
    let new_workers = children_of(new_master);
    let held = start_in_order(port, 4, |i| seq_request("/", i));
    wait_until(BOUND, "4 held by the new binary", || held_now(port) == 4);
    assert!(held
        .iter()
        .all(|p| new_workers.iter().any(|&w| p.is_held_by(w))));

    unsafe { libc::kill(old_master, libc::SIGHUP) };
    wait_until(BOUND, "the old master's workers again", || {
        old_workers().len() == 2
    });
    unsafe { libc::kill(new_master, libc::SIGQUIT) };
    wait_keeps_holding(&nginx);
    assert_still_held(&held);
    assert!(new_workers.iter().all(|&w| is_alive(w)));

    // The old binary answers the disable; the new one follows the file.
    resume(port, "");
    finish_all_from_upstream(held);
    assert_each_seq_once(&upstream.hits(), 4);
    wait_until(BOUND, "the new master to exit", || !is_alive(new_master));
    assert!(is_alive(old_master));
    assert_passes(port, Request::get("/after"), "after the rollback");
    assert_no_serious_lines(&nginx);
}
