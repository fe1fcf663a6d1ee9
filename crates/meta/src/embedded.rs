//! A single-node metadata store: one JSON document, replaced atomically on each change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::offsets_log::OffsetsLog;
use crate::{MetaError, MetaStore, OffsetEntry, PartitionIndex, Result, SegmentEntry, TopicMeta};

const FILE: &str = "metadata.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    /// Format version of this document.
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet handed out.
    #[serde(default)]
    next_producer_id: i64,
    /// Segment index, keyed by `<topic id>/<partition>`.
    #[serde(default)]
    segments: BTreeMap<String, StoredIndex>,
}

/// A partition's index plus the newest leader epoch that committed to it (kept even when
/// retention has removed that epoch's segments, so fencing still holds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredIndex {
    #[serde(flatten)]
    index: PartitionIndex,
    #[serde(default)]
    newest_epoch: i32,
}

fn segment_key(topic_id: Uuid, partition: i32) -> String {
    format!("{topic_id}/{partition}")
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMetaStore {
    dir: PathBuf,
    // A std Mutex: it is only taken inside blocking closures, never across an await.
    state: Arc<Mutex<State>>,
    offsets: Arc<Mutex<OffsetsLog>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(format!("{what}: {e}"))
}

impl EmbeddedMetaStore {
    /// Opens the store in `dir`, creating it (with a new cluster id) if absent.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| unavailable("creating metadata dir", e))?;
        let path = dir.join(FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).map_err(|e| {
                MetaError::Invalid(format!("{} is not valid metadata: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = State {
                    version: 1,
                    cluster_id: Uuid::new_v4().simple().to_string(),
                    topics: BTreeMap::new(),
                    next_producer_id: 0,
                    segments: BTreeMap::new(),
                };
                persist(&dir, &s)?;
                s
            }
            Err(e) => return Err(unavailable("reading metadata", e)),
        };
        let offsets = OffsetsLog::open(&dir)?;
        Ok(Self {
            dir,
            state: Arc::new(Mutex::new(state)),
            offsets: Arc::new(Mutex::new(offsets)),
        })
    }

    /// Applies `change` to a copy of the state, persists it, and only then makes it visible.
    async fn update<T, F>(&self, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T> + Send + 'static,
    {
        let dir = self.dir.clone();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = state
                .lock()
                .map_err(|_| unavailable("metadata", "lock poisoned"))?;
            let mut next = guard.clone();
            let out = change(&mut next)?;
            persist(&dir, &next)?;
            *guard = next;
            Ok(out)
        })
        .await
        .map_err(|e| unavailable("metadata task", e))?
    }

    /// Runs `f` on the offsets log on a blocking thread (it may fsync).
    async fn with_offsets<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut OffsetsLog) -> Result<T> + Send + 'static,
    {
        let offsets = self.offsets.clone();
        tokio::task::spawn_blocking(move || {
            let mut log = offsets
                .lock()
                .map_err(|_| unavailable("offsets", "lock poisoned"))?;
            f(&mut log)
        })
        .await
        .map_err(|e| unavailable("offsets task", e))?
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        let guard = self
            .state
            .lock()
            .map_err(|_| unavailable("metadata", "lock poisoned"))?;
        Ok(f(&guard))
    }
}

fn persist(dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| unavailable("encoding", e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| unavailable("writing metadata", e))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| unavailable("writing metadata", e))?;
    std::fs::rename(&tmp, dir.join(FILE)).map_err(|e| unavailable("renaming metadata", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| unavailable("syncing metadata dir", e))
}

#[async_trait]
impl MetaStore for EmbeddedMetaStore {
    async fn commit_offsets(&self, group: &str, offsets: Vec<OffsetEntry>) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log| log.commit(&group, offsets))
            .await
    }

    async fn committed_offsets(&self, group: &str) -> Result<Vec<OffsetEntry>> {
        let log = self
            .offsets
            .lock()
            .map_err(|_| unavailable("offsets", "lock poisoned"))?;
        Ok(log
            .groups
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((topic, partition), committed)| OffsetEntry {
                        topic: topic.clone(),
                        partition: *partition,
                        committed: committed.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log| log.delete(&group, partitions))
            .await
    }

    async fn delete_group_offsets(&self, group: &str) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log| log.delete_group(&group)).await
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        let log = self
            .offsets
            .lock()
            .map_err(|_| unavailable("offsets", "lock poisoned"))?;
        Ok(log.groups.keys().cloned().collect())
    }

    async fn add_segment(&self, topic_id: Uuid, partition: i32, entry: SegmentEntry) -> Result<()> {
        if entry.end_offset <= entry.base_offset {
            return Err(MetaError::Invalid(format!(
                "segment {}..{} holds no offsets",
                entry.base_offset, entry.end_offset
            )));
        }
        self.update(move |s| {
            let index = s
                .segments
                .entry(segment_key(topic_id, partition))
                .or_default();
            if entry.leader_epoch < index.newest_epoch {
                return Err(MetaError::Fenced(format!(
                    "leader epoch {} is older than {}",
                    entry.leader_epoch, index.newest_epoch
                )));
            }
            if entry.base_offset != index.index.end_offset {
                return Err(MetaError::Invalid(format!(
                    "segment starts at {} but the index ends at {}",
                    entry.base_offset, index.index.end_offset
                )));
            }
            index.newest_epoch = entry.leader_epoch;
            index.index.end_offset = entry.end_offset;
            if entry.end_offset > index.index.log_start_offset {
                index.index.segments.push(entry);
            }
            Ok(())
        })
        .await
    }

    async fn partition_index(&self, topic_id: Uuid, partition: i32) -> Result<PartitionIndex> {
        self.read(|s| {
            s.segments
                .get(&segment_key(topic_id, partition))
                .map(|i| i.index.clone())
                .unwrap_or_default()
        })
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<SegmentEntry>> {
        self.update(move |s| {
            let index = s
                .segments
                .entry(segment_key(topic_id, partition))
                .or_default();
            let i = &mut index.index;
            i.log_start_offset = i.log_start_offset.max(offset);
            let keep = i.segments.split_off(
                i.segments
                    .partition_point(|e| e.end_offset <= i.log_start_offset),
            );
            Ok(std::mem::replace(&mut i.segments, keep))
        })
        .await
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        let name = name.to_string();
        self.update(move |s| {
            let t = s
                .topics
                .get_mut(&name)
                .ok_or_else(|| MetaError::NotFound(format!("topic {name}")))?;
            t.configs = configs;
            Ok(t.clone())
        })
        .await
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        if count < 1 {
            return Err(MetaError::Invalid(format!(
                "cannot allocate {count} producer ids"
            )));
        }
        self.update(move |s| {
            let first = s.next_producer_id;
            s.next_producer_id = first
                .checked_add(count)
                .ok_or_else(|| MetaError::Invalid("producer ids exhausted".into()))?;
            Ok(first)
        })
        .await
    }

    async fn cluster_id(&self) -> Result<String> {
        self.read(|s| s.cluster_id.clone())
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        if partitions < 1 {
            return Err(MetaError::Invalid(format!("{partitions} partitions")));
        }
        let name = name.to_string();
        self.update(move |s| {
            if s.topics.contains_key(&name) {
                return Err(MetaError::AlreadyExists(name));
            }
            let t = TopicMeta {
                name: name.clone(),
                id: Uuid::new_v4(),
                partitions,
                configs,
            };
            s.topics.insert(name, t.clone());
            Ok(t)
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let name = name.to_string();
        self.update(move |s| {
            let t = s.topics.remove(&name).ok_or(MetaError::NotFound(name))?;
            let prefix = format!("{}/", t.id);
            s.segments.retain(|k, _| !k.starts_with(&prefix));
            Ok(t)
        })
        .await
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.read(|s| s.topics.get(name).cloned())
    }

    async fn topics(&self) -> Result<Vec<TopicMeta>> {
        self.read(|s| s.topics.values().cloned().collect())
    }

    async fn add_partitions(&self, name: &str, total: i32) -> Result<TopicMeta> {
        let name = name.to_string();
        self.update(move |s| {
            let t = s
                .topics
                .get_mut(&name)
                .ok_or_else(|| MetaError::NotFound(name.clone()))?;
            if total <= t.partitions {
                return Err(MetaError::Invalid(format!(
                    "topic {name} has {} partitions; the new count {total} must be larger",
                    t.partitions
                )));
            }
            t.partitions = total;
            Ok(t.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offsets_survive_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let entry = |p: i32, o: i64| OffsetEntry {
            topic: "t".into(),
            partition: p,
            committed: crate::CommittedOffset {
                offset: o,
                leader_epoch: 0,
                metadata: Some("m".into()),
                commit_timestamp_ms: 1,
            },
        };
        store
            .commit_offsets("g", vec![entry(0, 5), entry(1, 7)])
            .await
            .unwrap();
        store.commit_offsets("g", vec![entry(0, 9)]).await.unwrap();
        drop(store);
        // A crash in the middle of appending leaves half a line.
        let log = dir.path().join("offsets.log");
        let mut data = std::fs::read(&log).unwrap();
        data.extend_from_slice(b"{\"op\":\"commit\",\"gro");
        std::fs::write(&log, data).unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(
            store.committed_offsets("g").await.unwrap(),
            vec![entry(0, 9), entry(1, 7)]
        );
        store.commit_offsets("g", vec![entry(2, 1)]).await.unwrap();
        drop(store);
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(store.committed_offsets("g").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn passes_conformance_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        crate::conformance::run(&store).await;
        let id = store.cluster_id().await.unwrap();
        let before = store.topics().await.unwrap();
        drop(store);
        let again = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(again.cluster_id().await.unwrap(), id);
        assert_eq!(again.topics().await.unwrap(), before);
        assert!(!before.is_empty());
    }

    #[tokio::test]
    async fn the_offsets_log_is_compacted_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        for round in 0..150i64 {
            let batch = (0..1000)
                .map(|p| OffsetEntry {
                    topic: "t".into(),
                    partition: p,
                    committed: crate::CommittedOffset {
                        offset: round,
                        leader_epoch: -1,
                        metadata: None,
                        commit_timestamp_ms: 0,
                    },
                })
                .collect();
            store.commit_offsets("g", batch).await.unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("offsets.log"))
            .unwrap()
            .lines()
            .count();
        assert!(
            lines < 102_000,
            "150,000 commits of 1,000 live offsets left {lines} lines"
        );
        let got = store.committed_offsets("g").await.unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|e| e.committed.offset == 149));
        drop(store);
        let again = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(again.committed_offsets("g").await.unwrap(), got);
    }

    #[tokio::test]
    async fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(matches!(
            EmbeddedMetaStore::open(dir.path()),
            Err(MetaError::Invalid(_))
        ));
    }
}
