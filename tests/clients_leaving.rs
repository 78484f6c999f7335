//! Clients that give up while held: half of 2,000 held requests are closed
//! at random places in the queue. The others are released in order, the
//! counters account for every one, and nothing is left held.

mod common;

use std::collections::BTreeSet;

use common::*;

const HELD: usize = 2_000;
const LEAVING: usize = 1_000;

/// `count` distinct indexes below `n`, the same on every run (xorshift).
fn scattered_indexes(n: usize, count: usize) -> BTreeSet<usize> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chosen = BTreeSet::new();
    while chosen.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chosen.insert((state % n as u64) as usize);
    }
    chosen
}

#[test]
fn half_of_two_thousand_clients_leave_and_the_rest_are_released_in_order() {
    let upstream = Upstream::start();
    let nginx = start_shop_for_thousands(&upstream);
    let port = nginx.port();
    pause(port, "");
    let leaving = scattered_indexes(HELD, LEAVING);
    assert!(
        leaving.range(..HELD / 10).next().is_some()
            && leaving.range(HELD * 9 / 10..).next().is_some(),
        "clients leave near the head of the queue and near its tail"
    );
    let mut staying = Vec::new();
    for (i, pending) in start_in_order(port, HELD, |i| seq_request("/item/", i))
        .into_iter()
        .enumerate()
    {
        if leaving.contains(&i) {
            pending.close();
        } else {
            staying.push((i, pending));
        }
    }

    // nginx notices each close at once and finalizes the request with 499.
    wait_until(BOUND, "every leaving client to be counted", || {
        counters(port, "").clients_gone == LEAVING as u64
    });
    let gone = nginx
        .access_log()
        .iter()
        .filter(|e| e.status == 499)
        .count();
    assert_eq!(gone, LEAVING, "one 499 per client that left");
    let held = counters(port, "");
    assert_eq!(
        (held.held_now, held.held_in_pause),
        ((HELD - LEAVING) as u64, HELD as u64),
        "{held:?}"
    );
    assert_eq!(upstream.count(), 0);

    resume(port, "");
    let expected: Vec<usize> = staying.iter().map(|(i, _)| *i).collect();
    finish_all_from_upstream(staying.into_iter().map(|(_, p)| p).collect());
    let hits = upstream.wait_for(expected.len());
    settle();
    assert_eq!(
        upstream.count(),
        expected.len(),
        "only those that stayed, once each"
    );
    let mut seen = seqs(&hits);
    seen.sort_unstable();
    assert_eq!(seen, expected, "exactly the requests whose clients stayed");
    assert_ordered_per_worker(&hits);

    let after = counters(port, "");
    assert_eq!(
        after,
        Counters {
            state: "running".into(),
            held_now: 0,
            held_in_pause: HELD as u64,
            released: (HELD - LEAVING) as u64,
            timed_out: 0,
            clients_gone: LEAVING as u64,
            refused_at_shutdown: 0,
            rejected: 0,
            stopped: 0,
            in_flight: 0,
            since: "null".into(),
            deadline: "null".into(),
            ..after.clone()
        },
        "every held request counted out once"
    );
    assert!(after.longest_wait_ms > 0, "{after:?}");
    nginx.stop();
}
