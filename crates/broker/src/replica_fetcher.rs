//! The follower side of replication (ADR 0023): one task per leader this broker follows
//! partitions of. It long-polls the leader with Fetch requests carrying this broker's id as
//! `replica_id`; the leader answers with its batches byte for byte as stored (up to its own
//! durable end, not only its high watermark). Each batch is appended to this broker's WAL at
//! the leader's offsets and synced; only then does the next fetch go out, and its fetch
//! offsets are the leader's confirmation that everything below is durable here.
//!
//! Before fetching a partition at a new leader epoch, the follower asks the leader where its
//! own last epoch ends there (OffsetForLeaderEpoch) and truncates what lies beyond: a record
//! an old leader appended but never replicated goes, and the replicas end identical.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sediment_protocol::batch;
use sediment_protocol::client::Client;
use sediment_wal::{Append, Durability, EntryMeta, Position, WalError};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::log::{Partition, Role, Topic};
use crate::Broker;

/// The Fetch version followers send (names topics, carries `replica_id` and
/// `current_leader_epoch`).
const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 3;
/// How long the leader may hold a follower's fetch when it has nothing new.
const MAX_WAIT_MS: i32 = 500;
/// Most bytes of one fetch response, and of one partition in it: bounds the memory a
/// follower's catch-up takes, and keeps one partition from starving the others.
const FETCH_MAX_BYTES: i32 = 16 << 20;
const PARTITION_MAX_BYTES: i32 = 4 << 20;

type Followed = Vec<(Arc<Topic>, i32, Arc<Partition>)>;

/// Runs until no partition follows `leader` any more, or the broker stops.
pub async fn run(broker: Arc<Broker>, leader: i32) {
    let mut stop = broker.shutdown_signal();
    let mut conn: Option<(String, Client)> = None;
    info!(leader, "replica fetcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let parts = broker.followed(leader);
        if parts.is_empty() {
            if broker.fetcher_done(leader) {
                info!(
                    leader,
                    "replica fetcher stopped: nothing follows this leader"
                );
                return;
            }
            continue;
        }
        let addr = broker
            .cluster()
            .and_then(|c| c.broker(leader))
            .map(|r| format!("{}:{}", r.host, r.port));
        let Some(addr) = addr else {
            // The leader is not registered (down): the watch will elect another.
            pause(&mut stop, Duration::from_millis(100)).await;
            continue;
        };
        if conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            match tokio::time::timeout(Duration::from_secs(2), Client::connect(&addr)).await {
                Ok(Ok(c)) => conn = Some((addr, c)),
                Ok(Err(e)) => {
                    debug!(leader, %addr, error = %e, "cannot reach the leader");
                    pause(&mut stop, Duration::from_millis(200)).await;
                    continue;
                }
                Err(_) => {
                    pause(&mut stop, Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let Some((_, client)) = &conn else { continue };
        let round = async {
            check_divergence(&broker, client, leader, &parts).await?;
            fetch_once(&broker, client, leader, &parts).await
        };
        let outcome = tokio::select! {
            r = round => r,
            _ = crate::wait_stopped(&mut stop) => return,
        };
        if let Err(e) = outcome {
            debug!(leader, error = %e, "replica fetch failed; reconnecting");
            conn = None;
            pause(&mut stop, Duration::from_millis(100)).await;
        }
    }
}

async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = crate::wait_stopped(stop) => {}
    }
}

/// A partition's follower state, if it still follows `leader`: (epoch, next offset, last
/// epoch of its log, checked).
fn following(p: &Partition, leader: i32) -> Option<(i32, i64, i32, bool)> {
    let st = p.state.lock().ok()?;
    match st.role {
        Role::Follower {
            leader: l, checked, ..
        } if l == leader => Some((
            st.leader_epoch,
            st.next_offset,
            st.epochs.last().map_or(-1, |(e, _)| *e),
            checked,
        )),
        _ => None,
    }
}

fn mark_checked(p: &Partition, leader: i32, epoch: i32) {
    if let Ok(mut st) = p.state.lock() {
        let at_epoch = st.leader_epoch == epoch;
        if let Role::Follower {
            leader: l, checked, ..
        } = &mut st.role
        {
            if *l == leader && at_epoch {
                *checked = true;
            }
        }
    }
}

/// The request's entry for topic `topic`, added (by `new`) if it has none yet.
fn topic_entry<'a, T>(
    list: &'a mut Vec<T>,
    topic: &str,
    name_of: impl Fn(&T) -> &str,
    new: impl FnOnce() -> T,
) -> &'a mut T {
    let at = match list.iter().position(|x| name_of(x) == topic) {
        Some(at) => at,
        None => {
            list.push(new());
            list.len() - 1
        }
    };
    &mut list[at]
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Compares the log of every partition not yet checked at its epoch with the leader's, and
/// truncates where it diverges.
async fn check_divergence(
    broker: &Arc<Broker>,
    client: &Client,
    leader: i32,
    parts: &Followed,
) -> Result<(), String> {
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(broker.config.broker_id);
    let mut asked = Vec::new();
    for (t, i, p) in parts {
        let Some((epoch, _, last_epoch, checked)) = following(p, leader) else {
            continue;
        };
        if checked {
            continue;
        }
        if last_epoch < 0 {
            // Nothing in the WAL to diverge (empty, or all archived).
            mark_checked(p, leader, epoch);
            continue;
        }
        let mut part = OffsetForLeaderPartition::default();
        part.partition = *i;
        part.current_leader_epoch = epoch;
        part.leader_epoch = last_epoch;
        topic_entry(
            &mut req.topics,
            &t.meta.name,
            |x| x.topic.as_str(),
            || {
                let mut topic = OffsetForLeaderTopic::default();
                topic.topic = name(&t.meta.name);
                topic
            },
        )
        .partitions
        .push(part);
        asked.push((t.clone(), *i, p.clone(), epoch));
    }
    if asked.is_empty() {
        return Ok(());
    }
    let resp = tokio::time::timeout(Duration::from_secs(5), client.send(EPOCH_VERSION, &req))
        .await
        .map_err(|_| "OffsetForLeaderEpoch timed out".to_string())?
        .map_err(|e| e.to_string())?;
    for tr in resp.topics {
        for pr in tr.partitions {
            let Some((t, i, p, epoch)) = asked
                .iter()
                .find(|(t, i, ..)| t.meta.name == tr.topic.as_str() && *i == pr.partition)
            else {
                continue;
            };
            if pr.error_code != 0 {
                debug!(topic = %t.meta.name, partition = i, code = pr.error_code, "epoch check refused");
                continue;
            }
            if pr.end_offset >= 0 {
                truncate(broker, t, *i, p, pr.end_offset, *epoch).await?;
            }
            mark_checked(p, leader, *epoch);
        }
    }
    Ok(())
}

/// Cuts a follower's log at `offset` (if it reaches further), and records the cut in the WAL
/// so a restart replays the same log.
async fn truncate(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    p: &Partition,
    offset: i64,
    epoch: i32,
) -> Result<(), String> {
    let rx = {
        let Ok(mut st) = p.state.lock() else {
            return Err("partition state poisoned".into());
        };
        if offset >= st.next_offset {
            return Ok(());
        }
        let from = st.next_offset;
        let end = st.truncate_to(offset);
        warn!(
            topic = %topic.meta.name, partition, from, to = end, epoch,
            "log diverged from the leader's; truncated"
        );
        queue_marker(broker, topic, partition, end, epoch)?
    };
    wait_appended(rx).await
}

/// Starts a follower's log over at its leader's log start, recording it in the WAL (a
/// truncation record past the log's end) so a restart replays the same.
async fn restart_at(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    p: &Partition,
    offset: i64,
    epoch: i32,
) -> Result<(), String> {
    let rx = {
        let Ok(mut st) = p.state.lock() else {
            return Err("partition state poisoned".into());
        };
        if offset <= st.next_offset {
            return Ok(());
        }
        warn!(
            topic = %topic.meta.name, partition, from = st.next_offset, to = offset,
            "behind the leader's log start; starting over there"
        );
        st.reset_to(offset);
        queue_marker(broker, topic, partition, offset, epoch)?
    };
    wait_appended(rx).await
}

/// Queues a truncation record (a zero-record WAL entry) saying the partition's log ends, or
/// starts over, at `offset`; recovery replays it in order with the batches around it.
fn queue_marker(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    offset: i64,
    epoch: i32,
) -> Result<oneshot::Receiver<Result<Position, WalError>>, String> {
    let (tx, rx) = oneshot::channel();
    let marker = Append {
        meta: EntryMeta {
            topic_id: topic.meta.id,
            partition,
            leader_epoch: epoch,
            base_offset: offset,
            record_count: 0,
            max_timestamp: -1,
        },
        data: Vec::new(),
        durability: Durability::Synced,
        done: Some(tx),
        guard: None,
    };
    broker.submit(marker).map_err(|e| e.to_string())?;
    Ok(rx)
}

async fn wait_appended(rx: oneshot::Receiver<Result<Position, WalError>>) -> Result<(), String> {
    match rx.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("wal append failed: {e}")),
        Err(_) => Err("wal closed".into()),
    }
}

/// One fetch from the leader: every checked partition from its log end; what comes back is
/// appended and synced before this returns.
async fn fetch_once(
    broker: &Arc<Broker>,
    client: &Client,
    leader: i32,
    parts: &Followed,
) -> Result<(), String> {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(broker.config.broker_id);
    req.max_wait_ms = MAX_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = FETCH_MAX_BYTES;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    let mut asked = Vec::new();
    for (t, i, p) in parts {
        let Some((epoch, next, _, true)) = following(p, leader) else {
            continue;
        };
        let mut fp = FetchPartition::default();
        fp.partition = *i;
        fp.current_leader_epoch = epoch;
        fp.fetch_offset = next;
        fp.log_start_offset = -1;
        fp.last_fetched_epoch = -1;
        fp.partition_max_bytes = PARTITION_MAX_BYTES;
        topic_entry(
            &mut req.topics,
            &t.meta.name,
            |x| x.topic.as_str(),
            || {
                let mut ft = FetchTopic::default();
                ft.topic = name(&t.meta.name);
                ft
            },
        )
        .partitions
        .push(fp);
        asked.push((t.clone(), *i, p.clone(), epoch, next));
    }
    if asked.is_empty() {
        // Every partition waits for its epoch check: do not spin.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    let resp = tokio::time::timeout(
        Duration::from_millis(MAX_WAIT_MS as u64) + Duration::from_secs(5),
        client.send(FETCH_VERSION, &req),
    )
    .await
    .map_err(|_| "fetch from the leader timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let mut waits = Vec::new();
    let mut hws = Vec::new();
    for tr in resp.responses {
        for pd in tr.partitions {
            let Some((t, i, p, epoch, next)) = asked
                .iter()
                .find(|(t, i, ..)| t.meta.name == tr.topic.as_str() && *i == pd.partition_index)
            else {
                continue;
            };
            use kafka_protocol::ResponseError as E;
            match pd.error_code {
                0 => {}
                c if c == E::OffsetOutOfRange.code() && pd.log_start_offset > *next => {
                    // Behind the leader's log start (retention or DeleteRecords passed it
                    // while this replica was away): start over there.
                    restart_at(broker, t, *i, p, pd.log_start_offset, *epoch).await?;
                    continue;
                }
                c if c == E::OffsetOutOfRange.code() => {
                    // Ahead of the leader: its log diverged; compare epochs again.
                    warn!(topic = %t.meta.name, partition = i, offset = next, "fetch offset out of range at the leader");
                    if let Ok(mut st) = p.state.lock() {
                        if let Role::Follower { checked, .. } = &mut st.role {
                            *checked = false;
                        }
                    }
                    continue;
                }
                c => {
                    debug!(topic = %t.meta.name, partition = i, code = c, "leader refused a partition fetch");
                    continue;
                }
            }
            let records = pd.records.clone().unwrap_or_default();
            if !records.is_empty() {
                append_batches(broker, t, *i, p, leader, *epoch, &records, &mut waits)?;
            }
            hws.push((p.clone(), pd.high_watermark, leader, *epoch));
        }
    }
    for rx in waits {
        wait_appended(rx).await?;
    }
    for (p, hw, leader, epoch) in hws {
        let moved = p.state.lock().is_ok_and(|mut st| {
            let at_epoch = st.leader_epoch == epoch;
            match &mut st.role {
                Role::Follower {
                    leader: l,
                    leader_hw,
                    ..
                } if *l == leader && at_epoch => {
                    *leader_hw = (*leader_hw).max(hw);
                    st.advance_high_watermark()
                }
                _ => false,
            }
        });
        if moved {
            p.changed.notify_waiters();
        }
    }
    Ok(())
}

/// Queues the leader's batches on this broker's WAL at the leader's offsets.
#[allow(clippy::too_many_arguments)]
fn append_batches(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    p: &Partition,
    leader: i32,
    epoch: i32,
    records: &Bytes,
    waits: &mut Vec<oneshot::Receiver<Result<Position, WalError>>>,
) -> Result<(), String> {
    let infos = batch::validate(records, usize::MAX).map_err(|e| {
        format!(
            "leader {leader} sent a batch of {}-{partition} that does not validate: {e}",
            topic.meta.name
        )
    })?;
    let Ok(mut st) = p.state.lock() else {
        return Err("partition state poisoned".into());
    };
    let still = st.leader_epoch == epoch
        && matches!(st.role, Role::Follower { leader: l, .. } if l == leader);
    if !still {
        return Ok(()); // the role changed while the fetch was out
    }
    for info in infos {
        let head = &records[info.start..info.start + batch::HEADER_LEN.min(info.len)];
        if head.len() < 16 {
            break;
        }
        let base_offset = i64::from_be_bytes(head[0..8].try_into().unwrap_or([0xff; 8]));
        let batch_epoch = i32::from_be_bytes(head[12..16].try_into().unwrap_or([0; 4]));
        let end = base_offset + i64::from(info.record_count);
        if end <= st.next_offset {
            continue; // already here
        }
        // After starting over at the leader's log start, the first batch may begin below it
        // (the start fell inside a batch): it is taken whole, as the leader holds it.
        let straddles = st.index.is_empty() && base_offset < st.next_offset;
        if base_offset != st.next_offset && !straddles {
            warn!(
                topic = %topic.meta.name, partition, expected = st.next_offset, got = base_offset,
                "leader's batch does not continue this replica's log; fetching again"
            );
            break;
        }
        let (tx, rx) = oneshot::channel();
        let append = Append {
            meta: EntryMeta {
                topic_id: topic.meta.id,
                partition,
                leader_epoch: batch_epoch,
                base_offset,
                record_count: info.record_count,
                max_timestamp: info.max_timestamp,
            },
            data: vec![records.slice(info.start..info.start + info.len)],
            durability: Durability::Synced,
            done: Some(tx),
            guard: None,
        };
        broker.submit(append).map_err(|e| e.to_string())?;
        if info.producer_id >= 0 {
            // Followers keep producer state too, so an idempotent producer's dedupe survives
            // a failover.
            st.record_sequence(
                info.producer_id,
                info.producer_epoch,
                info.base_sequence,
                info.record_count,
                base_offset,
            );
        }
        st.next_offset = end;
        waits.push(rx);
    }
    Ok(())
}
