//! Cluster metadata: topics, their ids, partition counts and configs.
//!
//! [`MetaStore`] is the seam between the broker and wherever metadata lives. It is deliberately
//! small: each call is one atomic change or one consistent read, which is what an etcd
//! transaction can give, so an etcd implementation (for cluster mode) fits behind the same trait.
//! [`embedded::EmbeddedMetaStore`] keeps a snapshot document and append-only logs of changes
//! (one checksummed line and one fsync per change) in the data directory.
//! [`etcd::EtcdMetaStore`] keeps it in etcd, shared by the brokers of a cluster (ADR 0019).
//! Every implementation must pass [`conformance`].

pub mod cluster;
pub mod conformance;
pub mod embedded;
pub mod etcd;
mod etcd_cluster;
mod lines;
mod meta_log;
mod offsets_log;
pub mod placement;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A topic as the metadata store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka's topic id. A deleted and re-created topic gets a new one.
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level config overrides (`retention.ms`, `max.message.bytes`, ...).
    pub configs: BTreeMap<String, String>,
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// Leader epoch the consumer saw with the record at `offset - 1` (-1 if unknown).
    pub leader_epoch: i32,
    /// The client's metadata string, kept verbatim.
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// One partition's committed offset, as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    pub topic: String,
    pub partition: i32,
    pub committed: CommittedOffset,
}

/// One uploaded segment of a partition, as the segment index records it. A segment exists
/// for readers only once its entry is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub base_offset: i64,
    /// Offset after the segment's last record.
    pub end_offset: i64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
    /// Epoch of the leader that uploaded it.
    pub leader_epoch: i32,
    /// Object key, relative to the store's prefix.
    pub path: String,
}

/// A partition's log as the metadata store records it: where it starts, how far the archive
/// reaches, and the committed segments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionIndex {
    /// Offsets below this are deleted (retention, DeleteRecords); never moves back.
    pub log_start_offset: i64,
    /// Offset after the newest committed segment: the next segment must start here. Kept when
    /// retention removes every segment, so the partition's offsets never restart.
    pub end_offset: i64,
    /// Committed segments in offset order, each ending after `log_start_offset`.
    pub segments: Vec<SegmentEntry>,
}

/// Failures of the metadata store, in the kinds callers act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A write from a leader whose epoch is older than one already seen.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A stored file is damaged somewhere other than a torn tail: the store refuses to open
    /// rather than drop what follows, and leaves the file as it is.
    #[error("metadata file {} is corrupt at line {line} (not its torn tail): {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// The rule every store applies to [`MetaStore::add_segment`], given the partition's newest
/// committed leader epoch and its index's end: the segment holds offsets, its epoch is not
/// older (`Fenced`: a deposed leader cannot commit), and it starts where the index ends.
pub fn check_new_segment(entry: &SegmentEntry, newest_epoch: i32, end_offset: i64) -> Result<()> {
    if entry.end_offset <= entry.base_offset {
        return Err(MetaError::Invalid(format!(
            "segment {}..{} holds no offsets",
            entry.base_offset, entry.end_offset
        )));
    }
    if entry.leader_epoch < newest_epoch {
        return Err(MetaError::Fenced(format!(
            "leader epoch {} is older than {newest_epoch}",
            entry.leader_epoch
        )));
    }
    if entry.base_offset != end_offset {
        return Err(MetaError::Invalid(format!(
            "segment starts at {} but the index ends at {end_offset}",
            entry.base_offset
        )));
    }
    Ok(())
}

/// The metadata operations the broker needs.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// The cluster's id, fixed when the store is first created.
    async fn cluster_id(&self) -> Result<String>;
    /// Creates a topic with a fresh id. `AlreadyExists` if the name is taken.
    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta>;
    /// Deletes a topic, returning what it was. `NotFound` if absent.
    async fn delete_topic(&self, name: &str) -> Result<TopicMeta>;
    /// One topic by name.
    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>>;
    /// Every topic, sorted by name.
    async fn topics(&self) -> Result<Vec<TopicMeta>>;
    /// Raises a topic's partition count to `total`. `Invalid` if `total` is not larger.
    async fn add_partitions(&self, name: &str, total: i32) -> Result<TopicMeta>;

    /// Stores committed offsets for a group, all or nothing, durably.
    async fn commit_offsets(&self, group: &str, offsets: Vec<OffsetEntry>) -> Result<()>;
    /// Every committed offset of a group, sorted by topic and partition.
    async fn committed_offsets(&self, group: &str) -> Result<Vec<OffsetEntry>>;
    /// Forgets the committed offsets of some partitions of a group.
    async fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> Result<()>;
    /// Forgets every committed offset of a group.
    async fn delete_group_offsets(&self, group: &str) -> Result<()>;
    /// Groups that have committed offsets, sorted.
    async fn offset_groups(&self) -> Result<Vec<String>>;
    /// Reserves `count` producer ids and returns the first; ids are never handed out twice.
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64>;

    /// Commits an uploaded segment to a partition's index. The entry must start where the
    /// index ends (`Invalid` otherwise) and its leader epoch must not be older than any already
    /// committed for the partition (`Fenced` otherwise): a deposed leader cannot commit.
    async fn add_segment(&self, topic_id: Uuid, partition: i32, entry: SegmentEntry) -> Result<()>;
    /// A partition's log start, archive end and committed segments.
    async fn partition_index(&self, topic_id: Uuid, partition: i32) -> Result<PartitionIndex>;
    /// Raises the partition's log start offset to `offset` (retention, DeleteRecords; a lower
    /// value changes nothing) and removes the segments that end at or before it, returning
    /// them so their objects can be deleted.
    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<SegmentEntry>>;
    /// Replaces a topic's config overrides. `NotFound` if absent.
    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta>;

    /// Dynamic broker configs of a scope: `""` for the cluster-wide default, or a broker id.
    /// Empty if none were set.
    async fn broker_configs(&self, scope: &str) -> Result<BTreeMap<String, String>>;
    /// Replaces the dynamic broker configs of a scope (an empty map removes them).
    async fn set_broker_configs(
        &self,
        scope: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()>;

    /// Every stored SASL/SCRAM credential, ordered by user then mechanism.
    async fn user_credentials(&self) -> Result<Vec<UserCredential>>;
    /// The credential of `user` for `mechanism` (e.g. `SCRAM-SHA-256`), if one is stored.
    async fn user_credential(&self, user: &str, mechanism: &str) -> Result<Option<String>>;
    /// Stores (replacing) the credential of `user` for `mechanism`.
    async fn put_user_credential(
        &self,
        user: &str,
        mechanism: &str,
        credential: String,
    ) -> Result<()>;
    /// Removes the credential of `user` for `mechanism`; `false` if there was none.
    async fn delete_user_credential(&self, user: &str, mechanism: &str) -> Result<bool>;

    /// Every stored ACL, in the authorizer's text form, sorted.
    async fn acls(&self) -> Result<Vec<String>>;
    /// Stores ACLs (one already stored stays, once).
    async fn add_acls(&self, acls: Vec<String>) -> Result<()>;
    /// Removes ACLs; those that were not stored are ignored.
    async fn remove_acls(&self, acls: Vec<String>) -> Result<()>;
}

/// One user's credential for one SASL mechanism. The credential is opaque here: the broker
/// keeps Kafka's text form (`salt=…,stored_key=…,server_key=…,iterations=…`), never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCredential {
    pub user: String,
    pub mechanism: String,
    pub credential: String,
}
