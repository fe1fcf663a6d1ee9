//! Topics, configs, the producer-id counter and the segment index of the embedded store: a
//! snapshot document plus an append-only log of the changes made since.
//!
//! `metadata.json` is the snapshot: the whole state as one JSON document, with the generation
//! of the log that follows it. `metadata.log` holds one checksummed line per change (framing
//! and torn-tail rule in [`crate::lines`]), its first line naming its generation. A change
//! costs one appended line and one `fdatasync`, however much the store holds. When the log has
//! grown as large as the snapshot, a new snapshot (generation + 1) replaces the old one and
//! then an empty log of the new generation replaces the old log; a crash between the two
//! leaves a log older than the snapshot, which open discards (the snapshot already holds it).
//!
//! Documents written before the log existed (format version 1) have no generation and no log
//! and open as generation 0.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lines::{self, unavailable, Bad, Framing};
use crate::{MetaError, PartitionIndex, Result, SegmentEntry, TopicMeta};

pub(crate) const SNAPSHOT: &str = "metadata.json";
pub(crate) const LOG: &str = "metadata.log";
/// Format version of the snapshot this build writes; it reads this one and 1.
const VERSION: u32 = 2;
/// The log is folded into a new snapshot once it is at least this large and at least as large
/// as the snapshot, so a snapshot's cost is spread over as many bytes of changes.
const COMPACT_MIN_BYTES: u64 = 8 << 20;

/// The store's state in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) cluster_id: String,
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet handed out.
    pub(crate) next_producer_id: i64,
    /// Segment index, keyed by `<topic id>/<partition>`.
    pub(crate) segments: BTreeMap<String, StoredIndex>,
    /// Dynamic broker configs by scope (`""` cluster default, or a broker id).
    pub(crate) broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SASL credentials: user, then mechanism, to the stored credential.
    pub(crate) users: BTreeMap<String, BTreeMap<String, String>>,
    /// ACLs in the authorizer's text form.
    pub(crate) acls: std::collections::BTreeSet<String>,
}

/// A partition's index plus the newest leader epoch that committed to it (kept even when
/// retention has removed that epoch's segments, so fencing still holds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredIndex {
    #[serde(flatten)]
    pub(crate) index: PartitionIndex,
    #[serde(default)]
    pub(crate) newest_epoch: i32,
}

pub(crate) fn segment_key(topic_id: Uuid, partition: i32) -> String {
    format!("{topic_id}/{partition}")
}

/// `metadata.json` as read.
#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    segments: BTreeMap<String, StoredIndex>,
    #[serde(default)]
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    users: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    acls: std::collections::BTreeSet<String>,
    /// Generation of the log that follows this snapshot (absent before version 2).
    #[serde(default)]
    log_generation: u64,
}

/// `metadata.json` as written, borrowing the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    cluster_id: &'a str,
    log_generation: u64,
    topics: &'a BTreeMap<String, TopicMeta>,
    next_producer_id: i64,
    segments: &'a BTreeMap<String, StoredIndex>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    broker_configs: &'a BTreeMap<String, BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    users: &'a BTreeMap<String, BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    acls: &'a std::collections::BTreeSet<String>,
}

fn encode_snapshot(state: &State, generation: u64) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(&SnapshotRef {
        version: VERSION,
        cluster_id: &state.cluster_id,
        log_generation: generation,
        topics: &state.topics,
        next_producer_id: state.next_producer_id,
        segments: &state.segments,
        broker_configs: &state.broker_configs,
        users: &state.users,
        acls: &state.acls,
    })
    .map_err(|e| unavailable("encoding", e))
}

/// One line of `metadata.log`. Each records a change already checked against the state, so
/// applying it cannot fail and replay reproduces the state exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Change {
    /// The first line of every log: the snapshot generation it follows.
    Start {
        generation: u64,
    },
    CreateTopic {
        topic: TopicMeta,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    SetPartitions {
        name: String,
        partitions: i32,
    },
    SetConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// The producer-id counter's new value.
    ProducerIds {
        next: i64,
    },
    AddSegment {
        topic_id: Uuid,
        partition: i32,
        entry: SegmentEntry,
    },
    AdvanceLogStart {
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    },
    SetBrokerConfigs {
        scope: String,
        configs: BTreeMap<String, String>,
    },
    /// ACLs added.
    AddAcls {
        acls: Vec<String>,
    },
    /// ACLs removed.
    RemoveAcls {
        acls: Vec<String>,
    },
    /// A user's credential for a mechanism stored (`Some`) or removed (`None`).
    SetUserCredential {
        user: String,
        mechanism: String,
        credential: Option<String>,
    },
}

pub(crate) fn apply(state: &mut State, change: Change) {
    match change {
        Change::Start { .. } => {}
        Change::CreateTopic { topic } => {
            state.topics.insert(topic.name.clone(), topic);
        }
        Change::DeleteTopic { name, id } => {
            if state.topics.get(&name).is_some_and(|t| t.id == id) {
                state.topics.remove(&name);
            }
            let prefix = format!("{id}/");
            state.segments.retain(|k, _| !k.starts_with(&prefix));
        }
        Change::SetPartitions { name, partitions } => {
            if let Some(t) = state.topics.get_mut(&name) {
                t.partitions = partitions;
            }
        }
        Change::SetConfigs { name, configs } => {
            if let Some(t) = state.topics.get_mut(&name) {
                t.configs = configs;
            }
        }
        Change::ProducerIds { next } => state.next_producer_id = next,
        Change::SetBrokerConfigs { scope, configs } => {
            if configs.is_empty() {
                state.broker_configs.remove(&scope);
            } else {
                state.broker_configs.insert(scope, configs);
            }
        }
        Change::AddAcls { acls } => state.acls.extend(acls),
        Change::RemoveAcls { acls } => {
            for a in acls {
                state.acls.remove(&a);
            }
        }
        Change::SetUserCredential {
            user,
            mechanism,
            credential,
        } => match credential {
            Some(c) => {
                state.users.entry(user).or_default().insert(mechanism, c);
            }
            None => {
                if let Some(m) = state.users.get_mut(&user) {
                    m.remove(&mechanism);
                    if m.is_empty() {
                        state.users.remove(&user);
                    }
                }
            }
        },
        Change::AddSegment {
            topic_id,
            partition,
            entry,
        } => {
            let index = state
                .segments
                .entry(segment_key(topic_id, partition))
                .or_default();
            index.newest_epoch = entry.leader_epoch;
            index.index.end_offset = entry.end_offset;
            if entry.end_offset > index.index.log_start_offset {
                index.index.segments.push(entry);
            }
        }
        Change::AdvanceLogStart {
            topic_id,
            partition,
            offset,
        } => {
            let index = state
                .segments
                .entry(segment_key(topic_id, partition))
                .or_default();
            let i = &mut index.index;
            i.log_start_offset = i.log_start_offset.max(offset);
            let gone = i
                .segments
                .partition_point(|e| e.end_offset <= i.log_start_offset);
            i.segments.drain(..gone);
        }
    }
}

/// The writers' side of the metadata files. Lives behind the writers' lock, which is held
/// across file I/O; it touches the in-memory [`State`] only under that state's own lock, and
/// only briefly.
pub(crate) struct MetaLog {
    dir: PathBuf,
    file: File,
    /// Generation of the current snapshot and log.
    generation: u64,
    /// Bytes of whole lines in the log.
    len: u64,
    snapshot_len: u64,
    /// Smallest log that is folded into a snapshot (tests lower it).
    pub(crate) compact_min_bytes: u64,
    /// After a failed compaction, do not try again before the log is this large.
    retry_at: u64,
    /// Set when the files' state is unknown (a failed fsync, a compaction half installed): no
    /// more writes until the store is reopened.
    failed: Option<String>,
}

fn log_line(change: &Change) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    lines::encode(change, &mut buf)?;
    Ok(buf)
}

/// Replaces the log with an empty one of `generation` and opens it for appending.
fn fresh_log(path: &Path, generation: u64) -> Result<(File, u64)> {
    let header = log_line(&Change::Start { generation })?;
    lines::replace(path, &header)?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| unavailable("opening metadata log", e))?;
    Ok((file, header.len() as u64))
}

impl MetaLog {
    /// Opens the snapshot and replays the log onto it, creating both (with a new cluster id)
    /// if the directory holds neither. A torn last log line is cut; any other bad line refuses
    /// to open and leaves the files as they are.
    pub(crate) fn open(dir: &Path) -> Result<(Self, State)> {
        let snapshot_path = dir.join(SNAPSHOT);
        let log_path = dir.join(LOG);
        let data = match std::fs::read(&log_path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(unavailable("reading metadata log", e)),
        };
        let (mut state, generation, snapshot_len) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let s = serde_json::from_slice::<Snapshot>(&bytes).map_err(|e| {
                    MetaError::Invalid(format!(
                        "{} is not valid metadata: {e}",
                        snapshot_path.display()
                    ))
                })?;
                if s.version > VERSION {
                    return Err(MetaError::Invalid(format!(
                        "{} has format version {}; this build reads up to {VERSION}",
                        snapshot_path.display(),
                        s.version
                    )));
                }
                let state = State {
                    cluster_id: s.cluster_id,
                    topics: s.topics,
                    next_producer_id: s.next_producer_id,
                    segments: s.segments,
                    broker_configs: s.broker_configs,
                    users: s.users,
                    acls: s.acls,
                };
                (state, s.log_generation, bytes.len() as u64)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !data.is_empty() {
                    return Err(MetaError::Invalid(format!(
                        "{} exists but {} does not",
                        log_path.display(),
                        snapshot_path.display()
                    )));
                }
                let state = State {
                    cluster_id: Uuid::new_v4().simple().to_string(),
                    ..State::default()
                };
                let bytes = encode_snapshot(&state, 0)?;
                lines::replace(&snapshot_path, &bytes)?;
                (state, 0, bytes.len() as u64)
            }
            Err(e) => return Err(unavailable("reading metadata", e)),
        };

        let replayed = lines::replay(&log_path, &data, |framing, json| match framing {
            Framing::Legacy => Err(Bad::Torn("no checksum".into())),
            Framing::Checksummed => lines::parse_json::<Change>(framing, json),
        })?;
        let mut items = replayed.items.into_iter();
        let current = match items.next() {
            // No log, an empty one, or one whose only line was torn.
            None => false,
            Some((_, Change::Start { generation: g })) if g == generation => true,
            Some((_, Change::Start { generation: g })) if g < generation => {
                tracing::warn!(
                    path = %log_path.display(),
                    log = g,
                    snapshot = generation,
                    "discarding the log of an interrupted compaction (the snapshot holds it)"
                );
                false
            }
            Some((n, Change::Start { generation: g })) => {
                return Err(lines::corrupt(
                    &log_path,
                    n,
                    format!("log generation {g} is newer than the snapshot's {generation}"),
                ));
            }
            Some((n, _)) => {
                return Err(lines::corrupt(
                    &log_path,
                    n,
                    "the log does not start with its generation",
                ));
            }
        };
        let (file, len) = if current {
            for (n, change) in items {
                if matches!(change, Change::Start { .. }) {
                    return Err(lines::corrupt(&log_path, n, "a second generation line"));
                }
                apply(&mut state, change);
            }
            if replayed.good_len < data.len() as u64 {
                // Cut before anything is appended: a new line after a torn one would be
                // corruption.
                lines::truncate(&log_path, replayed.good_len)?;
            }
            let file = OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(|e| unavailable("opening metadata log", e))?;
            (file, replayed.good_len)
        } else {
            fresh_log(&log_path, generation)?
        };
        let log = Self {
            dir: dir.to_path_buf(),
            file,
            generation,
            len,
            snapshot_len,
            compact_min_bytes: COMPACT_MIN_BYTES,
            retry_at: 0,
            failed: None,
        };
        Ok((log, state))
    }

    /// Makes `change` durable: one line, one `fdatasync`.
    pub(crate) fn append(&mut self, change: &Change) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(MetaError::Unavailable(format!(
                "metadata log is failed after an earlier error ({why}); reopen the store"
            )));
        }
        let line = log_line(change)?;
        if let Err(e) = self.file.write_all(&line) {
            // Nothing of it was synced: cut what reached the file so the log ends on a whole
            // line again. If even that fails the file's end is unknown.
            if let Err(cut) = self.file.set_len(self.len) {
                self.failed = Some(format!(
                    "write failed ({e}) and could not be undone ({cut})"
                ));
            }
            return Err(unavailable("writing metadata log", e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the line may or may not be on disk.
            self.failed = Some(format!("fsync failed: {e}"));
            return Err(unavailable("syncing metadata log", e));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Folds the log into a new snapshot if it has grown large enough. The change that grew it
    /// is durable already, so a failure here is logged, not returned.
    pub(crate) fn compact_if_due(&mut self, state: &RwLock<State>) {
        let due = self
            .compact_min_bytes
            .max(self.snapshot_len)
            .max(self.retry_at);
        if self.len < due || self.failed.is_some() {
            return;
        }
        if let Err(e) = self.compact(state) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "metadata compaction failed");
            self.retry_at = self.len + self.compact_min_bytes;
        }
    }

    /// Writes the state as snapshot generation + 1, then starts an empty log of that
    /// generation.
    pub(crate) fn compact(&mut self, state: &RwLock<State>) -> Result<()> {
        let next = self.generation + 1;
        let bytes = {
            let state = state
                .read()
                .map_err(|_| unavailable("metadata", "lock poisoned"))?;
            encode_snapshot(&state, next)?
        };
        let snapshot_path = self.dir.join(SNAPSHOT);
        let tmp = lines::write_tmp(&snapshot_path, &bytes)?;
        if let Err((renamed, e)) = lines::install(&tmp, &snapshot_path) {
            if renamed {
                self.failed = Some(format!("installing a snapshot: {e}"));
            }
            return Err(e);
        }
        // The snapshot on disk may now be the new generation, and open would discard the old
        // log: appending to it any more could lose changes, so a failure from here on stops
        // writes.
        match fresh_log(&self.dir.join(LOG), next) {
            Ok((file, len)) => {
                self.file = file;
                self.len = len;
            }
            Err(e) => {
                self.failed = Some(format!("starting a new log: {e}"));
                return Err(e);
            }
        }
        self.generation = next;
        self.snapshot_len = bytes.len() as u64;
        self.retry_at = 0;
        Ok(())
    }
}
