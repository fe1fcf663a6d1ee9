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
//!
//! The loop knows nothing of the broker's partition object: it sees the partitions it follows
//! through [`ReplicaLog`] and the broker through [`ReplicaHost`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sediment_protocol::batch;
use sediment_protocol::client::Client;
use sediment_wal::{Position, WalError};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// The Fetch version followers send (names topics, carries `replica_id` and
/// `current_leader_epoch`).
const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 3;
/// How long the leader may hold a follower's fetch when it has nothing new.
const MAX_WAIT_MS: i32 = 500;
/// Most bytes of one fetch response, and of one partition in it: bounds the memory a
/// follower's catch-up takes, and keeps one partition from starving the others.
pub const FETCH_MAX_BYTES: i32 = 16 << 20;
pub const PARTITION_MAX_BYTES: i32 = 4 << 20;

/// A WAL append on its way: resolves once it is durable (or failed).
pub type Pending = oneshot::Receiver<Result<Position, WalError>>;

/// Where a followed partition's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowPosition {
    /// The leader epoch this replica follows at.
    pub epoch: i32,
    /// Its log end: the next offset it needs.
    pub next_offset: i64,
    /// The epoch of its last batch (-1 if its WAL holds none).
    pub last_epoch: i32,
    /// Whether its log was compared with the leader's at `epoch`.
    pub checked: bool,
}

/// One batch as the leader sent it, with what its header says.
#[derive(Debug, Clone)]
pub struct LeaderBatch {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub record_count: i32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The batch, byte for byte.
    pub bytes: Bytes,
}

impl LeaderBatch {
    /// The offset after its last record.
    pub fn end_offset(&self) -> i64 {
        self.base_offset + i64::from(self.record_count)
    }
}

/// Where a leader's batch goes in a follower's log that ends at `next_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The log has it already.
    Have,
    /// It continues the log.
    Append,
    /// It leaves a gap or overlaps: fetch again from the log end.
    Gap,
}

/// Decides where `b` fits. After starting over at the leader's log start (`empty`), the first
/// batch may begin below it (the start fell inside a batch): it is taken whole, as the leader
/// holds it.
pub fn fit(b: &LeaderBatch, next_offset: i64, empty: bool) -> Fit {
    if b.end_offset() <= next_offset {
        Fit::Have
    } else if b.base_offset == next_offset || (empty && b.base_offset < next_offset) {
        Fit::Append
    } else {
        Fit::Gap
    }
}

/// Splits a leader's record set into its batches, checking each (CRC, framing).
pub fn parse_batches(records: &Bytes) -> Result<Vec<LeaderBatch>, String> {
    let infos = batch::validate(records, usize::MAX).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(infos.len());
    for info in infos {
        let head = &records[info.start..info.start + batch::HEADER_LEN.min(info.len)];
        if head.len() < 16 {
            return Err("batch shorter than its header".into());
        }
        let mut base = [0u8; 8];
        base.copy_from_slice(&head[0..8]);
        let mut epoch = [0u8; 4];
        epoch.copy_from_slice(&head[12..16]);
        out.push(LeaderBatch {
            base_offset: i64::from_be_bytes(base),
            leader_epoch: i32::from_be_bytes(epoch),
            record_count: info.record_count,
            max_timestamp: info.max_timestamp,
            producer_id: info.producer_id,
            producer_epoch: info.producer_epoch,
            base_sequence: info.base_sequence,
            bytes: records.slice(info.start..info.start + info.len),
        });
    }
    Ok(out)
}

/// A partition this broker follows, as the fetcher needs it. Every method takes the
/// partition's own lock and checks the role is still "follower of `leader` at `epoch`" where
/// it changes anything: the role can change while a fetch is out.
pub trait ReplicaLog: Send + Sync {
    /// Where the log stands, if it still follows `leader`.
    fn following(&self, leader: i32) -> Option<FollowPosition>;
    /// Marks the log compared with the leader's at `epoch`.
    fn mark_checked(&self, leader: i32, epoch: i32);
    /// Asks for another comparison before the next fetch (the leader refused the fetch offset).
    fn recheck(&self);
    /// Cuts the log at `offset` if it reaches further, recording the cut in the WAL so that a
    /// restart replays the same log. `None` if there was nothing to cut.
    fn truncate(&self, offset: i64, epoch: i32) -> Result<Option<Pending>, String>;
    /// Starts the log over at `offset` (the leader's log start, above this log's end),
    /// recorded in the WAL likewise. `None` if the log already reaches it.
    fn restart_at(&self, offset: i64, epoch: i32) -> Result<Option<Pending>, String>;
    /// Appends the leader's batches that continue the log (see [`fit`]) to the WAL at the
    /// leader's offsets, keeping idempotent producers' state; stops at a gap. Nothing if the
    /// log no longer follows `leader` at `epoch`.
    fn append(
        &self,
        leader: i32,
        epoch: i32,
        batches: &[LeaderBatch],
    ) -> Result<Vec<Pending>, String>;
    /// Takes the leader's high watermark (and wakes what waits on this partition if its own
    /// moved).
    fn leader_high_watermark(&self, leader: i32, epoch: i32, hw: i64);
}

/// One followed partition.
pub struct Followed<L> {
    pub topic: String,
    pub partition: i32,
    pub log: L,
}

/// The broker, as the fetcher needs it.
pub trait ReplicaHost: Send + Sync + 'static {
    type Log: ReplicaLog;
    /// This broker's id (sent as `replica_id`).
    fn broker_id(&self) -> i32;
    /// Every partition this broker follows `leader` for.
    fn followed(&self, leader: i32) -> Vec<Followed<Self::Log>>;
    /// The leader's Kafka address, if it is registered.
    fn leader_addr(&self, leader: i32) -> Option<String>;
    /// How connections to leaders are carried (TLS when the inter-broker listener has it).
    fn transport(&self) -> sediment_protocol::client::Transport {
        sediment_protocol::client::Transport::Plain
    }
    /// Called when nothing follows `leader` any more: `true` ends the task (the host forgets
    /// it atomically with that answer, so a new follow starts a new task).
    fn fetcher_done(&self, leader: i32) -> bool;
    /// Becomes `true` when the broker stops.
    fn stopping(&self) -> watch::Receiver<bool>;
}

/// Runs until no partition follows `leader` any more, or the broker stops.
pub async fn run<H: ReplicaHost>(host: Arc<H>, leader: i32) {
    let mut stop = host.stopping();
    let mut conn: Option<(String, Client)> = None;
    info!(leader, "replica fetcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let parts = host.followed(leader);
        if parts.is_empty() {
            if host.fetcher_done(leader) {
                info!(
                    leader,
                    "replica fetcher stopped: nothing follows this leader"
                );
                return;
            }
            continue;
        }
        let Some(addr) = host.leader_addr(leader) else {
            // The leader is not registered (down): the watch will elect another.
            pause(&mut stop, Duration::from_millis(100)).await;
            continue;
        };
        if conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            let transport = host.transport();
            let connecting = Client::connect_via(&addr, &transport);
            match tokio::time::timeout(Duration::from_secs(2), connecting).await {
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
        let me = host.broker_id();
        let round = async {
            check_divergence(me, client, leader, &parts).await?;
            fetch_once(me, client, leader, &parts).await
        };
        let outcome = tokio::select! {
            r = round => r,
            _ = stopped(&mut stop) => return,
        };
        if let Err(e) = outcome {
            debug!(leader, error = %e, "replica fetch failed; reconnecting");
            conn = None;
            pause(&mut stop, Duration::from_millis(100)).await;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stopped(stop) => {}
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

async fn wait_appended(rx: Pending) -> Result<(), String> {
    match rx.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("wal append failed: {e}")),
        Err(_) => Err("wal closed".into()),
    }
}

/// Compares the log of every partition not yet checked at its epoch with the leader's, and
/// truncates where it diverges.
async fn check_divergence<L: ReplicaLog>(
    me: i32,
    client: &Client,
    leader: i32,
    parts: &[Followed<L>],
) -> Result<(), String> {
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(me);
    let mut asked = Vec::new();
    for f in parts {
        let Some(pos) = f.log.following(leader) else {
            continue;
        };
        if pos.checked {
            continue;
        }
        if pos.last_epoch < 0 {
            // Nothing in the WAL to diverge (empty, or all archived).
            f.log.mark_checked(leader, pos.epoch);
            continue;
        }
        let mut part = OffsetForLeaderPartition::default();
        part.partition = f.partition;
        part.current_leader_epoch = pos.epoch;
        part.leader_epoch = pos.last_epoch;
        topic_entry(
            &mut req.topics,
            &f.topic,
            |x| x.topic.as_str(),
            || {
                let mut topic = OffsetForLeaderTopic::default();
                topic.topic = name(&f.topic);
                topic
            },
        )
        .partitions
        .push(part);
        asked.push((f, pos.epoch));
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
            let Some((f, epoch)) = asked
                .iter()
                .find(|(f, _)| f.topic == tr.topic.as_str() && f.partition == pr.partition)
            else {
                continue;
            };
            if pr.error_code != 0 {
                debug!(topic = %f.topic, partition = f.partition, code = pr.error_code, "epoch check refused");
                continue;
            }
            if pr.end_offset >= 0 {
                if let Some(rx) = f.log.truncate(pr.end_offset, *epoch)? {
                    warn!(
                        topic = %f.topic, partition = f.partition, to = pr.end_offset, epoch,
                        "log diverged from the leader's; truncated"
                    );
                    wait_appended(rx).await?;
                }
            }
            f.log.mark_checked(leader, *epoch);
        }
    }
    Ok(())
}

/// One fetch from the leader: every checked partition from its log end; what comes back is
/// appended and synced before this returns.
async fn fetch_once<L: ReplicaLog>(
    me: i32,
    client: &Client,
    leader: i32,
    parts: &[Followed<L>],
) -> Result<(), String> {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(me);
    req.max_wait_ms = MAX_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = FETCH_MAX_BYTES;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    let mut asked = Vec::new();
    for f in parts {
        let Some(pos) = f.log.following(leader).filter(|p| p.checked) else {
            continue;
        };
        let mut fp = FetchPartition::default();
        fp.partition = f.partition;
        fp.current_leader_epoch = pos.epoch;
        fp.fetch_offset = pos.next_offset;
        fp.log_start_offset = -1;
        fp.last_fetched_epoch = -1;
        fp.partition_max_bytes = PARTITION_MAX_BYTES;
        topic_entry(
            &mut req.topics,
            &f.topic,
            |x| x.topic.as_str(),
            || {
                let mut ft = FetchTopic::default();
                ft.topic = name(&f.topic);
                ft
            },
        )
        .partitions
        .push(fp);
        asked.push((f, pos.epoch, pos.next_offset));
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
            let Some((f, epoch, next)) = asked
                .iter()
                .find(|(f, ..)| f.topic == tr.topic.as_str() && f.partition == pd.partition_index)
            else {
                continue;
            };
            match pd.error_code {
                0 => {}
                c if c == ResponseError::OffsetOutOfRange.code() && pd.log_start_offset > *next => {
                    // Behind the leader's log start (retention or DeleteRecords passed it
                    // while this replica was away): start over there.
                    if let Some(rx) = f.log.restart_at(pd.log_start_offset, *epoch)? {
                        warn!(
                            topic = %f.topic, partition = f.partition, from = next,
                            to = pd.log_start_offset,
                            "behind the leader's log start; starting over there"
                        );
                        wait_appended(rx).await?;
                    }
                    continue;
                }
                c if c == ResponseError::OffsetOutOfRange.code() => {
                    // Ahead of the leader: its log diverged; compare epochs again.
                    warn!(topic = %f.topic, partition = f.partition, offset = next, "fetch offset out of range at the leader");
                    f.log.recheck();
                    continue;
                }
                c => {
                    debug!(topic = %f.topic, partition = f.partition, code = c, "leader refused a partition fetch");
                    continue;
                }
            }
            let records = pd.records.clone().unwrap_or_default();
            if !records.is_empty() {
                let batches = parse_batches(&records).map_err(|e| {
                    format!(
                        "leader {leader} sent a batch of {}-{} that does not validate: {e}",
                        f.topic, f.partition
                    )
                })?;
                waits.extend(f.log.append(leader, *epoch, &batches)?);
            }
            hws.push((f, pd.high_watermark, *epoch));
        }
    }
    for rx in waits {
        wait_appended(rx).await?;
    }
    for (f, hw, epoch) in hws {
        f.log.leader_high_watermark(leader, epoch, hw);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(base: i64, count: i32) -> LeaderBatch {
        LeaderBatch {
            base_offset: base,
            leader_epoch: 0,
            record_count: count,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            bytes: Bytes::new(),
        }
    }

    #[test]
    fn a_batch_fits_where_the_log_ends() {
        assert_eq!(fit(&lb(0, 5), 5, false), Fit::Have);
        assert_eq!(fit(&lb(5, 5), 5, false), Fit::Append);
        assert_eq!(fit(&lb(7, 5), 5, false), Fit::Gap);
        assert_eq!(
            fit(&lb(3, 5), 5, false),
            Fit::Gap,
            "overlaps what the log has"
        );
        assert_eq!(
            fit(&lb(3, 5), 5, true),
            Fit::Append,
            "started over inside this batch: taken whole"
        );
    }
}
