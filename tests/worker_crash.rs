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
