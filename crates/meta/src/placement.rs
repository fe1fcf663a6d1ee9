//! Where a topic's replicas go (cluster mode): every partition gets `replication_factor`
//! distinct brokers, spread across racks when there are several, with the first replica (the
//! preferred leader) rotating so leaders are spread evenly across brokers.
//!
//! The brokers are first ordered so that consecutive ones sit on different racks as long as
//! racks remain (rack A's first broker, rack B's first, rack C's first, rack A's second, ...).
//! Partition `p`'s preferred leader is the broker at `start + p` in that order; its followers
//! are taken going on from there, first from racks the partition does not use yet, then from
//! any rack, with a shift that grows with each full round so the follower sets of different
//! partitions differ too.

use std::collections::BTreeMap;

/// A live broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub broker_id: i32,
    pub rack: Option<String>,
}

/// Why replicas could not be placed (Kafka: INVALID_REPLICATION_FACTOR, INVALID_PARTITIONS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {wanted} is larger than the {live} available broker(s)")]
    NotEnoughBrokers { wanted: usize, live: usize },
    #[error("replication factor must be at least 1, not {0}")]
    BadReplicationFactor(i64),
    #[error("{0} partitions: a topic has at least one")]
    BadPartitions(i64),
}

/// The brokers in rack-alternating order, each rack's brokers by id.
fn rack_alternating(brokers: &[Candidate]) -> Vec<&Candidate> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<&Candidate>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b);
    }
    for list in by_rack.values_mut() {
        list.sort_by_key(|b| b.broker_id);
        list.dedup_by_key(|b| b.broker_id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for list in by_rack.values() {
            if let Some(b) = list.get(i) {
                out.push(*b);
            }
        }
    }
    out
}

/// Replica lists for partitions `first .. first + count` of a topic, preferred leader first.
/// `start` rotates where the first partition's leader falls (pass a value derived from the
/// topic, so topics do not all lead on the same broker).
pub fn place(
    brokers: &[Candidate],
    first: i32,
    count: i32,
    replication_factor: i64,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor < 1 {
        return Err(PlacementError::BadReplicationFactor(replication_factor));
    }
    if count < 1 {
        return Err(PlacementError::BadPartitions(count.into()));
    }
    let order = rack_alternating(brokers);
    let n = order.len();
    let rf = usize::try_from(replication_factor).unwrap_or(usize::MAX);
    if rf > n {
        return Err(PlacementError::NotEnoughBrokers {
            wanted: rf,
            live: n,
        });
    }
    let racks = order
        .iter()
        .map(|b| b.rack.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut out = Vec::with_capacity(count as usize);
    for p in first..first + count {
        let p = p.max(0) as usize;
        let lead = (start + p) % n;
        // After each full round of leaders, followers start one further along.
        let shift = 1 + (p / n) % n.saturating_sub(1).max(1);
        let mut chosen: Vec<&Candidate> = vec![order[lead]];
        let mut k = 0;
        while chosen.len() < rf {
            let b = order[(lead + shift + k) % n];
            k += 1;
            if chosen.iter().any(|c| c.broker_id == b.broker_id) {
                continue;
            }
            // Prefer a rack this partition does not use yet, while one exists.
            let used: std::collections::BTreeSet<_> =
                chosen.iter().map(|c| c.rack.as_deref()).collect();
            let new_rack_left = used.len() < racks;
            if new_rack_left && used.contains(&b.rack.as_deref()) && k <= 2 * n {
                continue;
            }
            chosen.push(b);
        }
        out.push(chosen.iter().map(|c| c.broker_id).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn brokers(racks: &[&str]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                broker_id: i as i32 + 1,
                rack: (!r.is_empty()).then(|| r.to_string()),
            })
            .collect()
    }

    fn check(bs: &[Candidate], partitions: i32, rf: i64) -> Vec<Vec<i32>> {
        let placed = place(bs, 0, partitions, rf, 0).unwrap();
        assert_eq!(placed.len(), partitions as usize);
        let rack_of: HashMap<i32, Option<&str>> = bs
            .iter()
            .map(|b| (b.broker_id, b.rack.as_deref()))
            .collect();
        let racks = rack_of.values().collect::<BTreeSet<_>>().len();
        let mut leaders: HashMap<i32, usize> = HashMap::new();
        for replicas in &placed {
            assert_eq!(replicas.len(), rf as usize);
            assert_eq!(
                replicas.iter().collect::<BTreeSet<_>>().len(),
                rf as usize,
                "{replicas:?}"
            );
            let used = replicas.iter().map(|b| rack_of[b]).collect::<BTreeSet<_>>();
            assert_eq!(used.len(), racks.min(rf as usize), "racks of {replicas:?}");
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        let (lo, hi) = (
            leaders.values().min().copied().unwrap_or(0),
            leaders.values().max().copied().unwrap_or(0),
        );
        assert!(hi - lo <= 1, "leaders spread evenly: {leaders:?}");
        placed
    }

    #[test]
    fn replicas_are_distinct_spread_over_racks_and_leaders_balanced() {
        check(&brokers(&["", "", ""]), 12, 3);
        check(&brokers(&["a", "a", "b", "b", "c", "c"]), 30, 3);
        check(&brokers(&["a", "a", "a", "b"]), 8, 2);
        check(&brokers(&["a", "b", "c", "a", "b", "c"]), 7, 1);
        check(&brokers(&["a", "a", "b"]), 9, 3);
    }

    #[test]
    fn followers_differ_between_partitions() {
        let placed = check(&brokers(&["", "", "", "", ""]), 20, 2);
        let pairs = placed.iter().collect::<BTreeSet<_>>().len();
        assert!(pairs > 5, "only {pairs} distinct replica lists");
    }

    #[test]
    fn too_many_replicas_or_bad_counts_are_refused() {
        let bs = brokers(&["a", "b"]);
        assert_eq!(
            place(&bs, 0, 3, 3, 0),
            Err(PlacementError::NotEnoughBrokers { wanted: 3, live: 2 })
        );
        assert!(place(&bs, 0, 3, 0, 0).is_err());
        assert!(place(&bs, 0, 0, 1, 0).is_err());
        assert!(place(&[], 0, 1, 1, 0).is_err());
    }

    #[test]
    fn added_partitions_continue_the_rotation() {
        let bs = brokers(&["", "", ""]);
        let all = place(&bs, 0, 6, 2, 1).unwrap();
        let added = place(&bs, 4, 2, 2, 1).unwrap();
        assert_eq!(&all[4..], &added[..]);
    }
}
