//! How far the order the upstream saw is from the order requests were sent in.

use std::collections::BTreeMap;

use crate::upstream::Arrival;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OrderStats {
    /// Requests the upstream saw.
    pub seen: usize,
    /// The largest set of requests the upstream saw in their send order
    /// (longest increasing subsequence), as a share of `seen`: 1.0 is perfect
    /// order; one request overtaking all others still leaves it near 1.0.
    pub in_order_share: f64,
    /// The farthest any request landed from its send position.
    pub max_displacement: usize,
    /// The farthest any request landed from its place in the order nginx
    /// received them (its ticket), when every request carried one.
    pub max_displacement_from_arrival: Option<usize>,
    /// `in_order_share` counted within each nginx worker separately.
    pub in_order_share_per_worker: f64,
    /// As `max_displacement_from_arrival`, for the requests a proxy sent on
    /// an upstream connection it had used before; `None` with every
    /// request on a connection of its own.
    pub max_displacement_from_arrival_reused: Option<usize>,
}

/// Order statistics for arrivals in the order the upstream saw them.
pub fn order_stats(arrivals: &[Arrival]) -> OrderStats {
    if arrivals.is_empty() {
        return OrderStats::default();
    }
    let seqs: Vec<u64> = arrivals.iter().map(|a| a.seq).collect();
    let mut by_worker: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for a in arrivals {
        by_worker.entry(a.worker).or_default().push(a.seq);
    }
    let per_worker: usize = by_worker.values().map(|s| longest_increasing(s)).sum();
    let tickets: Option<Vec<u64>> = arrivals.iter().map(|a| a.ticket).collect();
    OrderStats {
        seen: seqs.len(),
        in_order_share: longest_increasing(&seqs) as f64 / seqs.len() as f64,
        max_displacement: max_displacement(&seqs),
        max_displacement_from_arrival: tickets.as_deref().map(max_displacement),
        in_order_share_per_worker: per_worker as f64 / seqs.len() as f64,
        max_displacement_from_arrival_reused: tickets.as_deref().and_then(|tickets| {
            displacements(tickets)
                .zip(arrivals)
                .filter(|(_, a)| !a.new_connection)
                .map(|(d, _)| d)
                .max()
        }),
    }
}

/// Length of the longest strictly increasing subsequence (patience sorting).
pub fn longest_increasing(seqs: &[u64]) -> usize {
    let mut tails: Vec<u64> = Vec::new();
    for &s in seqs {
        let at = tails.partition_point(|&t| t < s);
        if at == tails.len() {
            tails.push(s);
        } else {
            tails[at] = s;
        }
    }
    tails.len()
}

/// The largest |seen position - send rank| (send rank among the seqs seen, so
/// that a lost request does not shift every later one).
pub fn max_displacement(seqs: &[u64]) -> usize {
    displacements(seqs).max().unwrap_or(0)
}

/// Each entry's |seen position - send rank|, in seen order.
fn displacements(seqs: &[u64]) -> impl Iterator<Item = usize> + '_ {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    seqs.iter()
        .enumerate()
        .map(move |(position, s)| position.abs_diff(sorted.partition_point(|x| x < s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(seqs: &[u64], workers: &[u64]) -> Vec<Arrival> {
        seqs.iter()
            .zip(workers)
            .enumerate()
            .map(|(i, (&seq, &worker))| Arrival {
                accepted: i as u64,
                seq,
                worker,
                arrived: i as u64,
                ticket: None,
                new_connection: true,
            })
            .collect()
    }

    #[test]
    fn perfect_order() {
        let stats = order_stats(&arrivals(&[0, 1, 2, 3], &[1, 1, 1, 1]));
        assert_eq!(stats.in_order_share, 1.0);
        assert_eq!(stats.max_displacement, 0);
    }

    #[test]
    fn one_late_request() {
        // 0 arrives last: 4 of 5 in order, and 0 is 4 places late.
        let stats = order_stats(&arrivals(&[1, 2, 3, 4, 0], &[1; 5]));
        assert_eq!(stats.in_order_share, 0.8);
        assert_eq!(stats.max_displacement, 4);
    }

    #[test]
    fn interleaved_workers_are_in_order_each() {
        let stats = order_stats(&arrivals(&[1, 3, 0, 2], &[7, 8, 7, 8]));
        assert_eq!(stats.in_order_share, 0.5);
        assert_eq!(stats.in_order_share_per_worker, 0.5);
        let stats = order_stats(&arrivals(&[0, 2, 1, 3], &[7, 8, 7, 8]));
        assert_eq!(stats.in_order_share_per_worker, 1.0);
        assert_eq!(stats.max_displacement, 1);
    }

    #[test]
    fn displacement_from_arrival_uses_the_tickets_when_all_have_one() {
        let mut seen = arrivals(&[1, 0, 2], &[7, 7, 7]);
        assert_eq!(order_stats(&seen).max_displacement_from_arrival, None);
        for (a, ticket) in seen.iter_mut().zip([0, 1, 2]) {
            a.ticket = Some(ticket);
        }
        let stats = order_stats(&seen);
        assert_eq!(
            (stats.max_displacement, stats.max_displacement_from_arrival),
            (1, Some(0))
        );
    }

    #[test]
    fn displacement_on_reused_connections_leaves_new_ones_out() {
        let mut seen = arrivals(&[0, 1, 2, 3], &[1, 1, 2, 2]);
        for (a, ticket) in seen.iter_mut().zip([1, 2, 3, 0]) {
            a.ticket = Some(ticket);
            a.new_connection = false;
        }
        // Ticket 0 came last, on a connection opened for it.
        seen[3].new_connection = true;
        let stats = order_stats(&seen);
        assert_eq!(stats.max_displacement_from_arrival, Some(3));
        assert_eq!(stats.max_displacement_from_arrival_reused, Some(1));
    }

    #[test]
    fn lost_requests_do_not_count_as_displaced() {
        assert_eq!(max_displacement(&[0, 1, 5, 9]), 0);
        assert_eq!(longest_increasing(&[3, 1, 2, 0, 4]), 3);
        assert_eq!(order_stats(&[]).seen, 0);
    }
}
