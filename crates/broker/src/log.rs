//! Partition state and the index of WAL-resident batches.
//!
//! A partition's offsets are assigned under its own (std) mutex, in the same critical section
//! that queues the batch on the WAL, so the WAL holds each partition's batches in offset order.
//! The WAL's writer thread then calls [`Registry`] (its [`Sink`]) in log order: `written` adds
//! the batch's file position to the partition index, `synced` advances the high watermark.
//! Consumers read only below the high watermark, so they never see a batch that a crash could
//! take back. No lock here is ever held across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use sediment_meta::{SegmentEntry, TopicMeta};
use sediment_wal::{EntryMeta, Position, Sink};
use serde::{Deserialize, Serialize};
use tracing::warn;
use uuid::Uuid;

use crate::metrics::Metrics;

/// One WAL-resident batch of a partition.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    pub base_offset: i64,
    /// Offset after the batch's last record.
    pub end_offset: i64,
    pub max_timestamp: i64,
    pub pos: Position,
}

/// Mutable state of one partition.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Next offset to assign (log end offset, counting batches still on their way to the WAL).
    pub next_offset: i64,
    /// Offsets below this are committed and visible to consumers: durable here and, in a
    /// cluster, on every in-sync replica (see [`PartitionState::advance_high_watermark`]).
    pub high_watermark: i64,
    /// Offsets below this are durable in this broker's WAL (covered by its fdatasync).
    pub durable_end: i64,
    /// What this broker is for the partition (single node, leader, follower).
    pub role: Role,
    /// Leader epochs of this replica's log: each epoch and the offset its first batch has, in
    /// order (the epoch history OffsetForLeaderEpoch answers from).
    pub epochs: EpochHistory,
    pub log_start_offset: i64,
    pub leader_epoch: i32,
    /// Batches in offset order.
    pub index: Vec<IndexEntry>,
    /// Idempotent producers writing to this partition.
    pub producers: HashMap<i64, ProducerEntry>,
    /// Offsets below this are in committed archive segments.
    pub uploaded_end: i64,
    /// Since when durable batches have been waiting to be archived (`None`: nothing waits).
    /// `segment_ms` counts from here, as Kafka's segment.ms counts from a segment's first
    /// record, so an idle partition's first new batch is not uploaded alone.
    /// Monotonic time of the broker's [`crate::clock::Clock`].
    pub pending_since: Option<std::time::Duration>,
    /// Failed upload attempts in a row, and when the next may start (exponential backoff).
    pub upload_failures: u32,
    pub upload_retry_at: Option<std::time::Duration>,
    /// Times this partition's unwritten offsets were taken back after a failed WAL write.
    pub rollbacks: u64,
    /// Committed archive segments ending after the log start, in offset order (replaced, not
    /// mutated, so readers can take it out of the lock cheaply).
    pub archive: Arc<Vec<SegmentEntry>>,
}

pub use sediment_replication::{EpochHistory, Progress, Role};

/// How many of a producer's latest batches are remembered for deduplication (Kafka: 5, the
/// most a producer may have in flight with idempotence).
pub const PRODUCER_BATCHES: usize = 5;

/// One idempotent producer's state in a partition.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Its latest batches, oldest first.
    pub batches: VecDeque<SeqBatch>,
}

/// Sequence range and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub end_offset: i64,
}

/// Verdict on an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next batch in sequence: append it.
    Fresh,
    /// Already appended: answer with its original offsets.
    Duplicate { base_offset: i64, end_offset: i64 },
    /// Refuse with this error code.
    Error(i16),
}

/// Last sequence of a batch of `count` records starting at `first` (sequences wrap at i32::MAX).
pub fn last_sequence(first: i32, count: i32) -> i32 {
    ((i64::from(first) + i64::from(count) - 1) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl PartitionState {
    /// Checks an idempotent batch against the producer's state (Kafka's rules: stale epochs
    /// are fenced, a new epoch starts at sequence 0, duplicates of the last five batches are
    /// recognised, anything else out of order is refused).
    pub fn check_sequence(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
    ) -> SeqCheck {
        use kafka_protocol::ResponseError;
        let last_seq = last_sequence(first_seq, count);
        match self.producers.get(&producer_id) {
            None if first_seq == 0 => SeqCheck::Fresh,
            None => SeqCheck::Error(ResponseError::OutOfOrderSequenceNumber.code()),
            Some(p) if epoch < p.epoch => {
                SeqCheck::Error(ResponseError::InvalidProducerEpoch.code())
            }
            Some(p) if epoch > p.epoch => {
                if first_seq == 0 {
                    SeqCheck::Fresh
                } else {
                    SeqCheck::Error(ResponseError::OutOfOrderSequenceNumber.code())
                }
            }
            Some(p) => {
                if let Some(b) = p
                    .batches
                    .iter()
                    .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
                {
                    return SeqCheck::Duplicate {
                        base_offset: b.base_offset,
                        end_offset: b.end_offset,
                    };
                }
                match p.batches.back() {
                    Some(b) if next_sequence(b.last_seq) == first_seq => SeqCheck::Fresh,
                    None if first_seq == 0 => SeqCheck::Fresh,
                    _ => SeqCheck::Error(ResponseError::OutOfOrderSequenceNumber.code()),
                }
            }
        }
    }

    /// Remembers an appended idempotent batch.
    pub fn record_sequence(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
        base_offset: i64,
    ) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(SeqBatch {
            first_seq,
            last_seq: last_sequence(first_seq, count),
            base_offset,
            end_offset: base_offset + i64::from(count),
        });
        while entry.batches.len() > PRODUCER_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Moves the high watermark as far as the role allows: to the durable end on a single node;
    /// on a leader to the lowest end among itself and the in-sync followers; on a follower
    /// to what its leader reported, if it has that much. Never backwards. Returns whether it moved.
    pub fn advance_high_watermark(&mut self) -> bool {
        let target = sediment_replication::isr::high_watermark(
            &self.role,
            self.durable_end,
            self.high_watermark,
        );
        let moved = target > self.high_watermark;
        self.high_watermark = target;
        moved
    }

    /// [`Self::advance_high_watermark`], and when committed data now waits to be archived,
    /// starts its `segment.ms` clock at `now` (wherever the high watermark moves: a sync on a
    /// single node, a follower's confirmation on a leader).
    pub fn advance_high_watermark_at(&mut self, now: std::time::Duration) -> bool {
        let moved = self.advance_high_watermark();
        if moved && self.pending_since.is_none() && self.high_watermark > self.uploaded_end {
            self.pending_since = Some(now);
        }
        moved
    }

    /// Notes a batch of `epoch` starting at `base_offset` in the epoch history.
    pub fn note_epoch(&mut self, epoch: i32, base_offset: i64) {
        self.epochs.note(epoch, base_offset);
    }

    /// The epoch history's answer to "where does `epoch` end" (OffsetForLeaderEpoch): see
    /// [`EpochHistory::end_of`].
    pub fn epoch_end(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs
            .end_of(epoch, self.leader_epoch, self.next_offset)
    }

    /// Drops every batch at or after `offset` (a follower whose log diverged from its leader's),
    /// keeping whole batches: the log then ends at the last batch boundary not above `offset`.
    /// Returns the new end. Archived offsets are never truncated.
    pub fn truncate_to(&mut self, offset: i64) -> i64 {
        let offset = offset.max(self.uploaded_end);
        self.index.retain(|e| e.end_offset <= offset);
        let end = self
            .index
            .last()
            .map_or(self.uploaded_end.max(offset.min(self.next_offset)), |e| {
                e.end_offset
            });
        let end = end.min(self.next_offset);
        self.next_offset = end;
        self.durable_end = self.durable_end.min(end);
        self.high_watermark = self.high_watermark.min(end);
        self.epochs.cut_at(end);
        for p in self.producers.values_mut() {
            p.batches.retain(|b| b.end_offset <= end);
        }
        self.producers.retain(|_, p| !p.batches.is_empty());
        end
    }

    /// Starts the log over at `offset`, above everything it holds (a follower that fell behind
    /// its leader's log start): nothing below is kept.
    pub fn reset_to(&mut self, offset: i64) {
        self.index.clear();
        self.epochs.clear();
        self.producers.clear();
        self.next_offset = offset;
        self.durable_end = offset;
        self.high_watermark = self.high_watermark.max(offset);
        self.log_start_offset = self.log_start_offset.max(offset);
        self.uploaded_end = self.uploaded_end.max(offset);
    }

    /// Index of the batch holding `offset`, or of the first batch after it.
    pub fn find(&self, offset: i64) -> usize {
        self.index.partition_point(|e| e.end_offset <= offset)
    }
}

/// One partition.
#[derive(Debug, Default)]
pub struct Partition {
    pub state: Mutex<PartitionState>,
    /// Woken (`notify_waiters`) when the high watermark moves or the partition goes away;
    /// long-polling fetches and produce waits take a `notified()` before they look.
    pub changed: tokio::sync::Notify,
}

impl Topic {
    /// Wakes everything waiting on this topic's partitions.
    pub fn wake_all(&self) {
        for p in &self.partitions {
            p.changed.notify_waiters();
        }
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    pub meta: TopicMeta,
    pub partitions: Vec<Arc<Partition>>,
    /// `max.message.bytes` for this topic, if overridden.
    pub max_message_bytes: Option<usize>,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps each batch with its clock.
    pub log_append_time: bool,
    /// `segment.bytes` and `segment.ms`, if overridden: when this topic's data is archived.
    pub segment_bytes: Option<u64>,
    pub segment_interval: Option<std::time::Duration>,
    /// `min.insync.replicas` (1 unless set): acks=all needs this many in-sync replicas.
    pub min_insync_replicas: i32,
    /// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms`: how far a
    /// CreateTime record's timestamp may be behind or ahead of the broker's clock.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// `flush.messages=1` or `flush.ms=0`: acks=1 waits for the WAL sync too.
    pub flush_on_append: bool,
    /// The dynamic broker-level defaults (by topic-config name) in force when this topic was
    /// resolved; a topic's own configs win over them.
    pub defaults: Arc<BTreeMap<String, String>>,
    /// Bytes and records in and out, counted under this topic's name.
    pub io: crate::metrics::TopicCounters,
}

impl Topic {
    /// A topic config's value: the topic's own, else a dynamic broker default; `None` when the
    /// static broker setting or Kafka's default applies.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.meta
            .configs
            .get(key)
            .or_else(|| self.defaults.get(key))
            .map(String::as_str)
    }

    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Every topic this broker serves, by name and by id.
pub struct Registry {
    by_name: RwLock<HashMap<String, Arc<Topic>>>,
    by_id: RwLock<HashMap<Uuid, Arc<Topic>>>,
    metrics: Arc<Metrics>,
    clock: crate::clock::SharedClock,
    /// Dynamic broker-level topic defaults, by topic-config name.
    defaults: RwLock<Arc<BTreeMap<String, String>>>,
    /// Cluster mode: a new partition has no role until its state says which.
    clustered: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>, clock: crate::clock::SharedClock) -> Self {
        Self {
            by_name: RwLock::default(),
            by_id: RwLock::default(),
            metrics,
            clock,
            defaults: RwLock::default(),
            clustered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Cluster mode: every partition, existing and new, starts without a role (serving
    /// nothing) until the cluster's state gives it one.
    pub fn set_clustered(&self) {
        self.clustered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.topics() {
            for p in &t.partitions {
                if let Ok(mut st) = p.state.lock() {
                    st.role = Role::Absent;
                    // What the WAL holds beyond the archive is committed only once the ISR
                    // confirms it again (as leader) or the leader says so (as follower).
                    st.high_watermark = st
                        .high_watermark
                        .min(st.uploaded_end.max(st.log_start_offset));
                }
            }
        }
    }

    /// Replaces the dynamic broker-level topic defaults and re-resolves every topic with them.
    pub fn set_defaults(&self, defaults: BTreeMap<String, String>) {
        if let Ok(mut d) = self.defaults.write() {
            *d = Arc::new(defaults);
        }
        for t in self.topics() {
            self.upsert_topic(t.meta.clone());
        }
    }

    /// Adds a topic, or replaces its metadata keeping the existing partitions' state (used when
    /// partitions are added).
    pub fn upsert_topic(&self, meta: TopicMeta) -> Arc<Topic> {
        let (Ok(mut by_name), Ok(mut by_id)) = (self.by_name.write(), self.by_id.write()) else {
            // Poisoned only if a thread panicked while holding it; keep serving what we have.
            return Arc::new(Topic {
                meta,
                partitions: Vec::new(),
                max_message_bytes: None,
                log_append_time: false,
                segment_bytes: None,
                segment_interval: None,
                min_insync_replicas: 1,
                timestamp_before_max_ms: i64::MAX,
                timestamp_after_max_ms: i64::MAX,
                flush_on_append: false,
                defaults: Arc::default(),
                io: Default::default(),
            });
        };
        let mut partitions = by_name
            .get(&meta.name)
            .filter(|t| t.meta.id == meta.id)
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        let clustered = self.clustered.load(std::sync::atomic::Ordering::Relaxed);
        while partitions.len() < meta.partitions as usize {
            let p = Partition::default();
            if clustered {
                if let Ok(mut st) = p.state.lock() {
                    st.role = Role::Absent;
                }
            }
            partitions.push(Arc::new(p));
        }
        let defaults = self.defaults.read().map(|d| d.clone()).unwrap_or_default();
        let get = |k: &str| meta.configs.get(k).or_else(|| defaults.get(k));
        let max_message_bytes = get("max.message.bytes").and_then(|v| v.parse().ok());
        let log_append_time = get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime");
        let segment_bytes = get("segment.bytes").and_then(|v| v.parse().ok());
        let segment_interval = get("segment.ms")
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        let min_insync_replicas = get("min.insync.replicas")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        // Unset: the default of the config table (one source for them, `crate::topics`).
        let bound = |k: &str| {
            get(k)
                .map(String::as_str)
                .or_else(|| crate::topics::config_def(k).map(|d| d.default))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(i64::MAX)
        };
        let timestamp_before_max_ms = bound("message.timestamp.before.max.ms");
        let timestamp_after_max_ms = bound("message.timestamp.after.max.ms");
        let flush_on_append = get("flush.messages").is_some_and(|v| v.trim() == "1")
            || get("flush.ms").is_some_and(|v| v.trim() == "0");
        let io = self.metrics.topic_counters(&meta.name);
        let topic = Arc::new(Topic {
            meta,
            partitions,
            max_message_bytes,
            log_append_time,
            segment_bytes,
            segment_interval,
            min_insync_replicas,
            timestamp_before_max_ms,
            timestamp_after_max_ms,
            flush_on_append,
            defaults,
            io,
        });
        if let Some(old) = by_name.insert(topic.meta.name.clone(), topic.clone()) {
            by_id.remove(&old.meta.id);
            old.wake_all();
        }
        by_id.insert(topic.meta.id, topic.clone());
        topic
    }

    pub fn remove_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let removed = self.by_name.write().ok()?.remove(name)?;
        if let Ok(mut by_id) = self.by_id.write() {
            by_id.remove(&removed.meta.id);
        }
        // Wake long polls so they notice the topic is gone.
        removed.wake_all();
        Some(removed)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.by_name.read().ok()?.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.by_id.read().ok()?.get(id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self
            .by_name
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    pub fn topic_count(&self) -> usize {
        self.by_name.read().map(|m| m.len()).unwrap_or(0)
    }

    fn partition_of(&self, meta: &EntryMeta) -> Option<Arc<Partition>> {
        self.by_id
            .read()
            .ok()?
            .get(&meta.topic_id)?
            .partition(meta.partition)
            .cloned()
    }

    /// Rebuilds partition state from recovered WAL entries (all durable), on top of what the
    /// archive already holds (`next_offset` set to the archive's end) and the producer snapshot
    /// taken when WAL space was last released. Each idempotent producer's latest sequences come
    /// from the snapshot, then from the stored batch headers of entries it does not cover.
    pub fn recover(
        &self,
        entries: &[(EntryMeta, Position)],
        segments: &sediment_wal::Segments,
        snapshot: &ProducerSnapshot,
    ) {
        for t in self.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(snap) = snapshot.partitions.get(&partition_key(t.meta.id, i as i32))
                else {
                    continue;
                };
                if let Ok(mut st) = p.state.lock() {
                    st.producers = snap.producers.clone();
                }
            }
        }
        for (meta, pos) in entries {
            let Some(p) = self.partition_of(meta) else {
                continue; // a deleted topic's batch
            };
            let covered = snapshot
                .partitions
                .get(&partition_key(meta.topic_id, meta.partition))
                .map_or(i64::MIN, |s| s.end);
            let Ok(mut st) = p.state.lock() else { continue };
            if meta.record_count == 0 {
                // A truncation record: the follower cut its log here (or, past its end,
                // started it over there) before this point.
                if meta.base_offset > st.next_offset {
                    st.reset_to(meta.base_offset);
                } else {
                    st.truncate_to(meta.base_offset);
                }
                continue;
            }
            let end = meta.base_offset + i64::from(meta.record_count);
            if end <= st.next_offset {
                // Archived already (its WAL segment was not released yet): only its producer
                // state matters.
                if meta.base_offset >= covered {
                    recover_sequence(&mut st, meta, pos, segments);
                }
                continue;
            }
            // A follower that started over at its leader's log start took the batch holding
            // that offset whole, from below it.
            let straddles = st.index.is_empty() && meta.base_offset < st.next_offset;
            if meta.base_offset != st.next_offset && !straddles {
                warn!(
                    topic_id = %meta.topic_id,
                    partition = meta.partition,
                    expected = st.next_offset,
                    found = meta.base_offset,
                    "wal entry does not continue the partition; skipped"
                );
                continue;
            }
            st.index.push(IndexEntry {
                base_offset: meta.base_offset,
                end_offset: end,
                max_timestamp: meta.max_timestamp,
                pos: *pos,
            });
            st.next_offset = end;
            st.durable_end = end;
            st.high_watermark = end;
            st.leader_epoch = meta.leader_epoch;
            st.note_epoch(meta.leader_epoch, meta.base_offset);
            if meta.base_offset >= covered {
                recover_sequence(&mut st, meta, pos, segments);
            }
            if st.pending_since.is_none() {
                st.pending_since = Some(self.clock.monotonic());
            }
        }
    }

    /// Every partition's idempotent producers as of its high watermark: what a restart needs
    /// once the WAL no longer holds the batches they were learnt from.
    pub fn producer_snapshot(&self) -> ProducerSnapshot {
        let mut out = ProducerSnapshot::default();
        for t in self.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Ok(st) = p.state.lock() else { continue };
                let hw = st.high_watermark;
                let producers: HashMap<i64, ProducerEntry> = st
                    .producers
                    .iter()
                    .map(|(id, e)| {
                        let mut e = e.clone();
                        // Batches above the high watermark are not durable yet; they are in
                        // the WAL after `end` if they survive a crash.
                        e.batches.retain(|b| b.end_offset <= hw);
                        (*id, e)
                    })
                    .filter(|(_, e)| !e.batches.is_empty())
                    .collect();
                out.partitions.insert(
                    partition_key(t.meta.id, i as i32),
                    PartitionProducers { end: hw, producers },
                );
            }
        }
        out
    }
}

/// Learns a producer's sequence from a recovered batch's header.
fn recover_sequence(
    st: &mut PartitionState,
    meta: &EntryMeta,
    pos: &Position,
    segments: &sediment_wal::Segments,
) {
    let Ok(h) = segments.read_prefix(pos, sediment_protocol::batch::HEADER_LEN) else {
        return;
    };
    if h.len() != sediment_protocol::batch::HEADER_LEN {
        return;
    }
    let producer_id = i64::from_be_bytes(h[43..51].try_into().unwrap_or([0xff; 8]));
    let epoch = i16::from_be_bytes([h[51], h[52]]);
    let first_seq = i32::from_be_bytes([h[53], h[54], h[55], h[56]]);
    if producer_id >= 0 {
        st.record_sequence(
            producer_id,
            epoch,
            first_seq,
            meta.record_count,
            meta.base_offset,
        );
    }
}

/// `<topic id>/<partition>`.
pub fn partition_key(topic_id: Uuid, partition: i32) -> String {
    format!("{topic_id}/{partition}")
}

/// Idempotent producer state of every partition, saved before WAL segments are deleted.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub partitions: HashMap<String, PartitionProducers>,
}

/// One partition's producers, learnt from every batch below `end`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PartitionProducers {
    pub end: i64,
    pub producers: HashMap<i64, ProducerEntry>,
}

const SNAPSHOT_FILE: &str = "producers.json";

/// Why the producer snapshot could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read or written (a full disk, an I/O error): saving is retried
    /// before the next WAL release; nothing is released without it.
    #[error("{0}")]
    Io(String),
    /// The file is there but is not a snapshot: starting would lose idempotent producer state,
    /// so the broker refuses to start and says which file.
    #[error("{0}")]
    Corrupt(String),
}

impl ProducerSnapshot {
    /// Reads `<dir>/producers.json` (an empty snapshot if there is none).
    pub fn load(dir: &std::path::Path) -> Result<Self, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                SnapshotError::Corrupt(format!(
                    "{} is not a producer snapshot: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(SnapshotError::Io(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
    }

    /// Replaces `<dir>/producers.json` atomically and durably.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), SnapshotError> {
        use std::io::Write;
        let path = dir.join(SNAPSHOT_FILE);
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let body = serde_json::to_vec(self).map_err(|e| SnapshotError::Io(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| SnapshotError::Io(format!("writing {}: {e}", path.display())))
    }
}

impl Sink for Registry {
    fn written(&self, entries: &[(EntryMeta, Position)]) {
        let mut bytes = 0u64;
        for (meta, pos) in entries {
            bytes += u64::from(pos.len);
            let Some(p) = self.partition_of(meta) else {
                continue;
            };
            if meta.record_count == 0 {
                continue; // a truncation record: the index was cut when it was queued
            }
            let Ok(mut st) = p.state.lock() else { continue };
            st.note_epoch(meta.leader_epoch, meta.base_offset);
            st.index.push(IndexEntry {
                base_offset: meta.base_offset,
                end_offset: meta.base_offset + i64::from(meta.record_count),
                max_timestamp: meta.max_timestamp,
                pos: *pos,
            });
        }
        self.metrics.wal_written_bytes.inc_by(bytes);
    }

    fn sync_took(&self, took: std::time::Duration, entries: usize) {
        self.metrics.wal_sync_seconds.observe(took.as_secs_f64());
        self.metrics
            .wal_group_commit_entries
            .observe(entries as f64);
    }

    fn synced(&self, entries: &[(EntryMeta, Position)]) {
        // Each partition whose high watermark moved is woken once, after its lock is released.
        let mut moved: Vec<Arc<Partition>> = Vec::new();
        // One clock read per sync (a group commit), not per batch in it.
        let now = self.clock.monotonic();
        for (meta, _) in entries {
            let Some(p) = self.partition_of(meta) else {
                continue;
            };
            let Ok(mut st) = p.state.lock() else { continue };
            let end = meta.base_offset + i64::from(meta.record_count);
            if meta.record_count == 0 || end <= st.durable_end {
                continue;
            }
            st.durable_end = end;
            st.advance_high_watermark_at(now);
            drop(st);
            // Woken even when only the durable end moved: a leader's followers long-poll for it.
            moved.push(p);
        }
        self.metrics.wal_syncs.inc();
        // A group holds many batches of one partition: wake each once.
        moved.sort_unstable_by_key(Arc::as_ptr);
        moved.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for p in moved {
            p.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn topic(registry: &Registry, name: &str, id: u128) -> Arc<Topic> {
        registry.upsert_topic(TopicMeta {
            name: name.into(),
            id: Uuid::from_u128(id),
            partitions: 2,
            configs: Default::default(),
        })
    }

    #[test]
    fn a_sync_wakes_only_the_partitions_whose_high_watermark_moved() {
        let registry = Registry::new(
            Arc::new(Metrics::default()),
            Arc::new(crate::clock::SystemClock::default()),
        );
        let a = topic(&registry, "a", 1);
        let b = topic(&registry, "b", 2);
        let mut a0 = Box::pin(a.partitions[0].changed.notified());
        let mut a1 = Box::pin(a.partitions[1].changed.notified());
        let mut b0 = Box::pin(b.partitions[0].changed.notified());
        let entry = EntryMeta {
            topic_id: a.meta.id,
            partition: 0,
            leader_epoch: 0,
            base_offset: 0,
            record_count: 3,
            max_timestamp: 0,
        };
        let pos = Position {
            segment: 0,
            offset: 0,
            len: 10,
        };
        registry.synced(&[(entry, pos), (entry, pos)]);
        assert!(a0.as_mut().now_or_never().is_some(), "a-0 moved: woken");
        assert!(a1.as_mut().now_or_never().is_none(), "a-1 did not move");
        assert!(b0.as_mut().now_or_never().is_none(), "b-0 did not move");
        assert_eq!(
            a.partitions[0].state.lock().unwrap().high_watermark,
            3,
            "high watermark advanced"
        );

        // The same sync again moves nothing and wakes nobody.
        let mut again = Box::pin(a.partitions[0].changed.notified());
        registry.synced(&[(entry, pos)]);
        assert!(again.as_mut().now_or_never().is_none());

        // Deleting a topic wakes its waiters, so long polls notice it is gone.
        registry.remove_topic("b");
        assert!(b0.as_mut().now_or_never().is_some());
        assert!(a1.as_mut().now_or_never().is_none());
    }

    fn entry(base: i64, count: i32) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            end_offset: base + i64::from(count),
            max_timestamp: 0,
            pos: Position {
                segment: 0,
                offset: base as u64,
                len: 1,
            },
        }
    }

    #[test]
    fn a_leaders_high_watermark_is_the_lowest_end_of_the_in_sync_replicas() {
        let now = std::time::Duration::ZERO;
        let progress = |end| Progress {
            end,
            fetched_at: now,
            caught_up_at: now,
            sent_end: end,
            incarnation: Uuid::nil(),
        };
        let mut st = PartitionState {
            durable_end: 10,
            ..Default::default()
        };
        assert!(st.advance_high_watermark(), "single node: the durable end");
        assert_eq!(st.high_watermark, 10);
        st.durable_end = 20;
        st.role = Role::Leader {
            isr: vec![2, 3],
            followers: HashMap::from([(2, progress(15))]),
            since: now,
        };
        // Broker 3 has not confirmed anything to this leader: nothing moves on its behalf.
        assert!(!st.advance_high_watermark());
        assert_eq!(st.high_watermark, 10);
        if let Role::Leader { followers, .. } = &mut st.role {
            followers.insert(3, progress(18));
        }
        assert!(st.advance_high_watermark());
        assert_eq!(
            st.high_watermark, 15,
            "the slowest in-sync follower bounds it"
        );
        // An ISR shrink (3 and 2 out) leaves the leader's own end.
        if let Role::Leader { isr, .. } = &mut st.role {
            isr.clear();
        }
        assert!(st.advance_high_watermark());
        assert_eq!(st.high_watermark, 20);
        // It never moves back, whatever the role says.
        st.role = Role::Follower {
            leader: 2,
            leader_hw: 5,
            checked: true,
        };
        assert!(!st.advance_high_watermark());
        assert_eq!(st.high_watermark, 20);
    }

    #[test]
    fn the_epoch_history_says_where_each_epoch_ends() {
        let mut st = PartitionState::default();
        st.note_epoch(0, 0);
        st.note_epoch(0, 5); // same epoch: no new entry
        st.note_epoch(2, 7);
        st.next_offset = 12;
        st.leader_epoch = 3;
        assert_eq!(st.epochs.entries(), &[(0, 0), (2, 7)]);
        assert_eq!(st.epoch_end(0), Some((0, 7)));
        assert_eq!(
            st.epoch_end(1),
            Some((0, 7)),
            "epoch 1 wrote nothing here: 0's end"
        );
        assert_eq!(st.epoch_end(2), Some((2, 12)));
        assert_eq!(
            st.epoch_end(3),
            Some((2, 12)),
            "the current epoch ends at the log end"
        );
        let older = PartitionState {
            epochs: EpochHistory::from_entries([(4, 100)]),
            leader_epoch: 4,
            next_offset: 120,
            ..Default::default()
        };
        assert_eq!(older.epoch_end(2), None, "older than anything this log has");
    }

    #[test]
    fn truncation_keeps_whole_batches_and_forgets_what_went() {
        let mut st = PartitionState {
            index: vec![entry(0, 3), entry(3, 3), entry(6, 3)],
            next_offset: 9,
            durable_end: 9,
            high_watermark: 6,
            epochs: EpochHistory::from_entries([(0, 0), (1, 6)]),
            ..Default::default()
        };
        st.record_sequence(7, 0, 0, 3, 3);
        st.record_sequence(7, 0, 3, 3, 6);
        assert_eq!(st.truncate_to(7), 6, "cut at the batch boundary below");
        assert_eq!(st.index.len(), 2);
        assert_eq!(
            (st.next_offset, st.durable_end, st.high_watermark),
            (6, 6, 6)
        );
        assert_eq!(st.epochs.entries(), &[(0, 0)]);
        let batches = &st.producers[&7].batches;
        assert_eq!(
            batches.len(),
            1,
            "the truncated batch's sequence is forgotten"
        );
        assert_eq!(st.truncate_to(100), 6, "never extends the log");
        st.uploaded_end = 3;
        assert_eq!(st.truncate_to(0), 3, "never below what is archived");
    }

    #[test]
    fn recovery_replays_a_truncation_record() {
        let registry = Registry::new(
            Arc::new(Metrics::default()),
            Arc::new(crate::clock::SystemClock::default()),
        );
        let t = topic(&registry, "a", 1);
        let meta = |base, count, epoch| EntryMeta {
            topic_id: t.meta.id,
            partition: 0,
            leader_epoch: epoch,
            base_offset: base,
            record_count: count,
            max_timestamp: 0,
        };
        let pos = Position {
            segment: 0,
            offset: 0,
            len: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = sediment_wal::Wal::open(
            sediment_wal::WalConfig::new(dir.path().join("wal")),
            Arc::new(Registry::new(
                Arc::new(Metrics::default()),
                Arc::new(crate::clock::SystemClock::default()),
            )),
        )
        .unwrap();
        // 0..3 and 3..5 under epoch 0, a cut back to 3, then 3..6 under epoch 1.
        let entries = vec![
            (meta(0, 3, 0), pos),
            (meta(3, 2, 0), pos),
            (meta(3, 0, 1), pos),
            (meta(3, 3, 1), pos),
        ];
        registry.recover(&entries, &wal.segments(), &ProducerSnapshot::default());
        let st = t.partitions[0].state.lock().unwrap();
        assert_eq!(st.next_offset, 6);
        let ends: Vec<_> = st
            .index
            .iter()
            .map(|e| (e.base_offset, e.end_offset))
            .collect();
        assert_eq!(ends, vec![(0, 3), (3, 6)]);
        assert_eq!(st.epochs.entries(), &[(0, 0), (1, 3)]);
    }
}
