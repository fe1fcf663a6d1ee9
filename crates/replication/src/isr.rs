//! Who may read and write a partition, what counts as committed, and who is in sync
//! (ADR 0023). Everything here is a decision over values: the broker's partition object holds
//! the state, calls these under its lock, and carries out what they decide.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// This broker's part in a partition.
#[derive(Debug, Default, Clone)]
pub enum Role {
    /// One broker, no replication: committed means durable here.
    #[default]
    Single,
    /// Cluster mode, the leader: `isr` are the other in-sync replicas (etcd's ISR without this
    /// broker), `followers` what each replica last confirmed.
    Leader {
        isr: Vec<i32>,
        followers: HashMap<i32, Progress>,
        /// When this broker began leading at this epoch (broker clock, monotonic).
        since: Duration,
    },
    /// Cluster mode, a follower of `leader`, which last reported `leader_hw`; `checked` once
    /// its log was compared with the leader's at this epoch (and truncated where it diverged).
    Follower {
        leader: i32,
        leader_hw: i64,
        checked: bool,
    },
    /// Cluster mode, this broker is no replica of the partition, or it has no leader.
    Absent,
}

impl Role {
    /// Whether this broker takes produce and consumer fetches for the partition.
    pub fn serves_clients(&self) -> bool {
        matches!(self, Role::Single | Role::Leader { .. })
    }
}

/// What a follower last confirmed to its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its log end: every offset below is durable on it.
    pub end: i64,
    /// When it last asked for more (broker clock, monotonic).
    pub fetched_at: Duration,
    /// When its end last reached what the leader had (Kafka's lastCaughtUpTime).
    pub caught_up_at: Duration,
    /// The leader's durable end when it last answered this follower.
    pub sent_end: i64,
    /// The incarnation of the follower that confirmed it (KIP-903: a restarted broker starts over).
    pub incarnation: Uuid,
}

/// KIP-320's fencing of a request that names the leader epoch it believes current:
/// an older one is FENCED_LEADER_EPOCH, a newer one (this broker has not heard of it yet)
/// UNKNOWN_LEADER_EPOCH; -1 means "not said" and passes.
pub fn check_epoch(named: i32, current: i32) -> Result<(), i16> {
    if named >= 0 && named < current {
        return Err(ResponseError::FencedLeaderEpoch.code());
    }
    if named > current {
        return Err(ResponseError::UnknownLeaderEpoch.code());
    }
    Ok(())
}

/// Whether a client request may be served here: this broker leads (or is the single node) at
/// the epoch the request names. `Err` carries the Kafka error code.
pub fn check_leader(role: &Role, leader_epoch: i32, named_epoch: i32) -> Result<(), i16> {
    if !role.serves_clients() {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    check_epoch(named_epoch, leader_epoch)
}

/// The high watermark the role allows, never below `current`: the durable end on a single
/// node; on a leader the lowest confirmed end among itself and its in-sync followers (a member
/// that has confirmed nothing yet holds it where it is); on a follower what its leader
/// reported, as far as this replica has it.
pub fn high_watermark(role: &Role, durable_end: i64, current: i64) -> i64 {
    let target = match role {
        Role::Single | Role::Absent => durable_end,
        Role::Leader { isr, followers, .. } => isr.iter().fold(durable_end, |low, b| {
            low.min(followers.get(b).map_or(current, |p| p.end))
        }),
        Role::Follower { leader_hw, .. } => durable_end.min(*leader_hw),
    };
    target.max(current)
}

/// A follower's fetch, as its leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    pub replica: i32,
    /// Where it fetches from: everything below is durable on it.
    pub fetch_offset: i64,
    /// The leader epoch it names.
    pub leader_epoch: i32,
    /// The incarnation of the broker registered under `replica` (nil if none is).
    pub incarnation: Uuid,
}

/// Records a follower's confirmation on the leader: fences its epoch, refuses a fetch beyond
/// the leader's durable end (its log diverged: OFFSET_OUT_OF_RANGE makes it compare epochs
/// again), starts its progress over when it is a new incarnation, and marks it caught up when
/// it has everything the leader had when it last answered it, or all of the log.
pub fn note_fetch(
    role: &mut Role,
    leader_epoch: i32,
    durable_end: i64,
    fetch: FollowerFetch,
    now: Duration,
) -> Result<(), i16> {
    check_epoch(fetch.leader_epoch, leader_epoch)?;
    let Role::Leader { followers, .. } = role else {
        return Err(ResponseError::NotLeaderOrFollower.code());
    };
    if fetch.fetch_offset > durable_end {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    let fresh = Progress {
        end: fetch.fetch_offset,
        fetched_at: now,
        caught_up_at: Duration::ZERO,
        sent_end: i64::MAX,
        incarnation: fetch.incarnation,
    };
    let progress = followers.entry(fetch.replica).or_insert(fresh);
    if progress.incarnation != fetch.incarnation {
        *progress = fresh;
    }
    progress.end = fetch.fetch_offset;
    progress.fetched_at = now;
    if fetch.fetch_offset >= progress.sent_end.min(durable_end) {
        progress.caught_up_at = now;
    }
    progress.sent_end = durable_end;
    Ok(())
}

/// What the ISR rules look at for one partition this broker leads.
pub struct IsrView<'a> {
    pub me: i32,
    pub replicas: &'a [i32],
    /// The other in-sync replicas (without `me`).
    pub isr: &'a [i32],
    pub followers: &'a HashMap<i32, Progress>,
    /// When this broker began leading at this epoch.
    pub since: Duration,
    pub now: Duration,
    pub lag_max: Duration,
    pub high_watermark: i64,
    pub durable_end: i64,
    /// Where the current epoch's first batch starts (the log end if it wrote none yet).
    pub epoch_start: i64,
}

/// The ISR the rules want, if it differs from the current one (sorted, the leader in it):
/// - a member stays while its broker is live and it caught up within `lag_max` (a member that
///   has not fetched since this broker began leading counts from then), confirmed by the
///   incarnation registered now; a restarted broker's confirmations count for nothing;
/// - a replica joins once its current incarnation has everything committed and everything of
///   earlier epochs (so a new leader's first batch is not needed to admit it), and fetched
///   within `lag_max`.
pub fn next_isr(
    view: &IsrView<'_>,
    is_live: impl Fn(i32) -> bool,
    incarnation_of: impl Fn(i32) -> Option<Uuid>,
) -> Option<Vec<i32>> {
    let current = |b: i32, p: &Progress| incarnation_of(b) == Some(p.incarnation);
    let keep: Vec<i32> = view
        .isr
        .iter()
        .copied()
        .filter(|b| {
            let last = view
                .followers
                .get(b)
                .filter(|p| current(*b, p))
                .map_or(view.since, |p| p.caught_up_at.max(view.since));
            is_live(*b) && view.now.saturating_sub(last) <= view.lag_max
        })
        .collect();
    let join: Vec<i32> = view
        .replicas
        .iter()
        .copied()
        .filter(|b| *b != view.me && !view.isr.contains(b))
        .filter(|b| {
            view.followers.get(b).is_some_and(|p| {
                current(*b, p)
                    && p.end >= view.high_watermark
                    && p.end >= view.epoch_start.min(view.durable_end)
                    && view.now.saturating_sub(p.fetched_at) <= view.lag_max
            })
        })
        .collect();
    if keep.len() == view.isr.len() && join.is_empty() {
        return None;
    }
    let mut next: Vec<i32> = std::iter::once(view.me).chain(keep).chain(join).collect();
    next.sort_unstable();
    Some(next)
}

/// Kafka's auto leader rebalance: whether leadership should go back to `preferred` (the first
/// replica): it is another broker, live, in the ISR, has everything committed, and this broker
/// has led for at least `after` (so a broker that just returned is not handed load while it
/// catches up, and leadership does not flap).
#[allow(clippy::too_many_arguments)]
pub fn hand_back_to_preferred(
    me: i32,
    preferred: i32,
    isr: &[i32],
    preferred_live: bool,
    followers: &HashMap<i32, Progress>,
    high_watermark: i64,
    led_for: Duration,
    after: Duration,
) -> bool {
    preferred != me
        && isr.contains(&preferred)
        && preferred_live
        && led_for >= after
        && followers
            .get(&preferred)
            .is_some_and(|f| f.end >= high_watermark)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn leader(isr: &[i32]) -> Role {
        Role::Leader {
            isr: isr.to_vec(),
            followers: HashMap::new(),
            since: Duration::ZERO,
        }
    }

    fn fetch(replica: i32, offset: i64, inc: u128) -> FollowerFetch {
        FollowerFetch {
            replica,
            fetch_offset: offset,
            leader_epoch: 3,
            incarnation: Uuid::from_u128(inc),
        }
    }

    #[test]
    fn epochs_are_fenced_both_ways() {
        assert_eq!(check_epoch(-1, 4), Ok(()));
        assert_eq!(check_epoch(4, 4), Ok(()));
        assert_eq!(
            check_epoch(3, 4),
            Err(ResponseError::FencedLeaderEpoch.code())
        );
        assert_eq!(
            check_epoch(5, 4),
            Err(ResponseError::UnknownLeaderEpoch.code())
        );
        let follower = Role::Follower {
            leader: 2,
            leader_hw: 0,
            checked: true,
        };
        assert_eq!(
            check_leader(&follower, 4, 4),
            Err(ResponseError::NotLeaderOrFollower.code())
        );
        assert!(check_leader(&Role::Absent, 4, -1).is_err());
        assert_eq!(check_leader(&leader(&[2]), 4, 4), Ok(()));
    }

    #[test]
    fn the_leaders_high_watermark_is_the_lowest_confirmed_end_of_the_isr() {
        let mut role = leader(&[2, 3]);
        // Nobody confirmed anything: the high watermark stays.
        assert_eq!(high_watermark(&role, 10, 4), 4);
        note_fetch(&mut role, 3, 10, fetch(2, 8, 2), S).unwrap();
        assert_eq!(high_watermark(&role, 10, 4), 4, "3 has not confirmed");
        note_fetch(&mut role, 3, 10, fetch(3, 6, 3), S).unwrap();
        assert_eq!(high_watermark(&role, 10, 4), 6);
        // The leader's own durable end bounds it.
        note_fetch(&mut role, 3, 10, fetch(3, 10, 3), S).unwrap();
        assert_eq!(high_watermark(&role, 7, 6), 7);
        // Never backwards.
        assert_eq!(high_watermark(&role, 5, 6), 6);
        // Single node and follower.
        assert_eq!(high_watermark(&Role::Single, 9, 2), 9);
        let f = Role::Follower {
            leader: 1,
            leader_hw: 5,
            checked: true,
        };
        assert_eq!(high_watermark(&f, 9, 2), 5);
        assert_eq!(high_watermark(&f, 3, 2), 3);
    }

    #[test]
    fn a_fetch_beyond_the_leaders_log_or_at_a_wrong_epoch_is_refused() {
        let mut role = leader(&[2]);
        assert_eq!(
            note_fetch(&mut role, 3, 10, fetch(2, 11, 2), S),
            Err(ResponseError::OffsetOutOfRange.code())
        );
        let mut stale = fetch(2, 5, 2);
        stale.leader_epoch = 2;
        assert_eq!(
            note_fetch(&mut role, 3, 10, stale, S),
            Err(ResponseError::FencedLeaderEpoch.code())
        );
        let mut f = Role::Follower {
            leader: 2,
            leader_hw: 0,
            checked: true,
        };
        assert_eq!(
            note_fetch(&mut f, 3, 10, fetch(2, 5, 2), S),
            Err(ResponseError::NotLeaderOrFollower.code())
        );
    }

    #[test]
    fn a_new_incarnation_starts_its_progress_over() {
        let mut role = leader(&[2]);
        note_fetch(&mut role, 3, 10, fetch(2, 10, 7), S).unwrap();
        note_fetch(&mut role, 3, 10, fetch(2, 10, 7), 2 * S).unwrap();
        let Role::Leader { followers, .. } = &role else {
            unreachable!()
        };
        assert_eq!(followers[&2].caught_up_at, 2 * S);
        // Same id, new process (its disk wiped): fetching from 0, never caught up yet.
        note_fetch(&mut role, 3, 10, fetch(2, 0, 8), 3 * S).unwrap();
        let Role::Leader { followers, .. } = &role else {
            unreachable!()
        };
        assert_eq!(followers[&2].end, 0);
        assert_eq!(followers[&2].caught_up_at, Duration::ZERO);
        assert_eq!(followers[&2].incarnation, Uuid::from_u128(8));
    }

    fn view<'a>(
        isr: &'a [i32],
        followers: &'a HashMap<i32, Progress>,
        now: Duration,
    ) -> IsrView<'a> {
        IsrView {
            me: 1,
            replicas: &[1, 2, 3],
            isr,
            followers,
            since: Duration::ZERO,
            now,
            lag_max: 10 * S,
            high_watermark: 50,
            durable_end: 60,
            epoch_start: 40,
        }
    }

    fn progress(end: i64, fetched: u64, caught: u64, inc: u128) -> Progress {
        Progress {
            end,
            fetched_at: Duration::from_secs(fetched),
            caught_up_at: Duration::from_secs(caught),
            sent_end: end,
            incarnation: Uuid::from_u128(inc),
        }
    }

    #[test]
    fn a_member_that_stops_catching_up_leaves_and_returns_once_caught_up() {
        let inc = |b: i32| Some(Uuid::from_u128(b as u128));
        let live = |_| true;
        let mut followers = HashMap::new();
        followers.insert(2, progress(60, 20, 20, 2));
        followers.insert(3, progress(45, 20, 5, 3));
        // 3 last caught up 15 s ago with a 10 s limit: out.
        let next = next_isr(&view(&[2, 3], &followers, 20 * S), live, inc);
        assert_eq!(next, Some(vec![1, 2]));
        // Still behind the high watermark: it does not join.
        assert_eq!(next_isr(&view(&[2], &followers, 20 * S), live, inc), None);
        // It catches up: it joins.
        followers.insert(3, progress(55, 21, 21, 3));
        assert_eq!(
            next_isr(&view(&[2], &followers, 21 * S), live, inc),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_dead_broker_or_a_restarted_one_is_not_in_sync() {
        let mut followers = HashMap::new();
        followers.insert(2, progress(60, 20, 20, 2));
        followers.insert(3, progress(60, 20, 20, 3));
        let inc = |b: i32| Some(Uuid::from_u128(b as u128));
        // 3's lease expired.
        let next = next_isr(&view(&[2, 3], &followers, 20 * S), |b| b != 3, inc);
        assert_eq!(next, Some(vec![1, 2]));
        // 3 came back as a new process: its old confirmations do not keep it in, nor let it join.
        let new3 = |b: i32| Some(Uuid::from_u128(if b == 3 { 99 } else { b as u128 }));
        assert_eq!(
            next_isr(&view(&[2, 3], &followers, 20 * S), |_| true, new3),
            Some(vec![1, 2])
        );
        assert_eq!(
            next_isr(&view(&[2], &followers, 20 * S), |_| true, new3),
            None
        );
    }

    #[test]
    fn a_member_that_never_fetched_counts_from_when_this_leader_began() {
        let followers = HashMap::new();
        let inc = |b: i32| Some(Uuid::from_u128(b as u128));
        assert_eq!(
            next_isr(&view(&[2, 3], &followers, 5 * S), |_| true, inc),
            None
        );
        assert_eq!(
            next_isr(&view(&[2, 3], &followers, 11 * S), |_| true, inc),
            Some(vec![1])
        );
    }

    #[test]
    fn leadership_goes_back_to_the_preferred_replica_only_when_it_is_ready() {
        let mut followers = HashMap::new();
        followers.insert(1, progress(50, 0, 0, 1));
        let after = 5 * S;
        assert!(hand_back_to_preferred(
            2,
            1,
            &[1, 2],
            true,
            &followers,
            50,
            6 * S,
            after
        ));
        assert!(!hand_back_to_preferred(
            2,
            1,
            &[1, 2],
            true,
            &followers,
            50,
            4 * S,
            after
        ));
        assert!(!hand_back_to_preferred(
            2,
            1,
            &[2],
            true,
            &followers,
            50,
            6 * S,
            after
        ));
        assert!(!hand_back_to_preferred(
            2,
            1,
            &[1, 2],
            false,
            &followers,
            50,
            6 * S,
            after
        ));
        assert!(!hand_back_to_preferred(
            2,
            1,
            &[1, 2],
            true,
            &followers,
            51,
            6 * S,
            after
        ));
        assert!(!hand_back_to_preferred(
            1,
            1,
            &[1, 2],
            true,
            &followers,
            50,
            6 * S,
            after
        ));
    }
}
