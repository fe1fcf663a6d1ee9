//! A single-node metadata store: a snapshot document plus append-only logs of changes.
//!
//! Files in the store's directory:
//! - `metadata.json` + `metadata.log`: topics, configs, the producer-id counter and the
//!   segment index (`meta_log.rs`);
//! - `offsets.log`: committed offsets (`offsets_log.rs`).
//!
//! Every change is one appended, checksummed line and one `fdatasync`, so its cost does not
//! grow with what the store holds; logs are folded into compact files when they grow.
//!
//! Locking: each of the two halves has a writers' lock (a std `Mutex` around the files), held
//! across the write and fsync on a blocking thread, and a readers' lock (a std `RwLock` around
//! the in-memory state). A writer checks its change against the state under a brief read lock,
//! makes it durable under the writers' lock only, and then applies it under a brief write
//! lock, so a change is visible only once durable and readers never wait for a disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use uuid::Uuid;

use crate::lines::unavailable;
use crate::meta_log::{self, segment_key, Change, MetaLog, State};
use crate::offsets_log::{Groups, OffsetsLog};
use crate::{
    MetaError, MetaStore, OffsetEntry, PartitionIndex, Result, SegmentEntry, TopicMeta,
    UserCredential,
};

struct Inner {
    /// Writers' lock of the metadata files.
    log: Mutex<MetaLog>,
    /// What readers see; changed only after the change is durable.
    state: RwLock<State>,
    /// Writers' lock of the offsets log.
    offsets_log: Mutex<OffsetsLog>,
    /// What readers see of the committed offsets.
    groups: RwLock<Groups>,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMetaStore {
    // Std locks: taken inside blocking closures or for in-memory work only, never across an
    // await.
    inner: Arc<Inner>,
}

fn poisoned(what: &str) -> MetaError {
    unavailable(what, "lock poisoned")
}

impl EmbeddedMetaStore {
    /// Opens the store in `dir`, creating it (with a new cluster id) if absent. This reads
    /// and replays the files: call it before serving, or from a blocking thread.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| unavailable("creating metadata dir", e))?;
        let (log, state) = MetaLog::open(dir)?;
        let (offsets_log, groups) = OffsetsLog::open(dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                log: Mutex::new(log),
                state: RwLock::new(state),
                offsets_log: Mutex::new(offsets_log),
                groups: RwLock::new(groups),
            }),
        })
    }

    /// Runs `plan` on the state; if it returns a change, makes the change durable and only
    /// then visible. All on a blocking thread: the writers' lock is held across an fsync.
    async fn update<T, F>(&self, plan: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> Result<(T, Option<Change>)> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut log = inner.log.lock().map_err(|_| poisoned("metadata log"))?;
            // Only holders of `log` change the state, so the plan stays valid until applied.
            let (out, change) = plan(&*inner.state.read().map_err(|_| poisoned("metadata"))?)?;
            if let Some(change) = change {
                log.append(&change)?;
                meta_log::apply(
                    &mut *inner.state.write().map_err(|_| poisoned("metadata"))?,
                    change,
                );
                log.compact_if_due(&inner.state);
            }
            Ok(out)
        })
        .await
        .map_err(|e| unavailable("metadata task", e))?
    }

    /// Runs `f` on the offsets log on a blocking thread (it fsyncs).
    async fn with_offsets<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut OffsetsLog, &RwLock<Groups>) -> Result<()> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut log = inner
                .offsets_log
                .lock()
                .map_err(|_| poisoned("offsets log"))?;
            f(&mut log, &inner.groups)
        })
        .await
        .map_err(|e| unavailable("offsets task", e))?
    }

    /// Reads the state: in memory, under the readers' lock only.
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        let state = self.inner.state.read().map_err(|_| poisoned("metadata"))?;
        Ok(f(&state))
    }

    fn read_offsets<T>(&self, f: impl FnOnce(&Groups) -> T) -> Result<T> {
        let groups = self.inner.groups.read().map_err(|_| poisoned("offsets"))?;
        Ok(f(&groups))
    }
}

#[async_trait]
impl MetaStore for EmbeddedMetaStore {
    async fn commit_offsets(&self, group: &str, offsets: Vec<OffsetEntry>) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log, groups| log.commit(groups, &group, offsets))
            .await
    }

    async fn committed_offsets(&self, group: &str) -> Result<Vec<OffsetEntry>> {
        self.read_offsets(|groups| {
            groups
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
                .unwrap_or_default()
        })
    }

    async fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log, groups| log.delete(groups, &group, partitions))
            .await
    }

    async fn delete_group_offsets(&self, group: &str) -> Result<()> {
        let group = group.to_string();
        self.with_offsets(move |log, groups| log.delete_group(groups, &group))
            .await
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        self.read_offsets(|groups| groups.keys().cloned().collect())
    }

    async fn add_segment(&self, topic_id: Uuid, partition: i32, entry: SegmentEntry) -> Result<()> {
        self.update(move |s| {
            let (newest_epoch, end_offset) = s
                .segments
                .get(&segment_key(topic_id, partition))
                .map(|i| (i.newest_epoch, i.index.end_offset))
                .unwrap_or_default();
            crate::check_new_segment(&entry, newest_epoch, end_offset)?;
            Ok((
                (),
                Some(Change::AddSegment {
                    topic_id,
                    partition,
                    entry,
                }),
            ))
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
            let index = s.segments.get(&segment_key(topic_id, partition));
            let start = index.map_or(0, |i| i.index.log_start_offset);
            if offset <= start {
                // The log start never moves back: nothing to record.
                return Ok((Vec::new(), None));
            }
            let removed = index
                .map(|i| {
                    i.index
                        .segments
                        .iter()
                        .take_while(|e| e.end_offset <= offset)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            Ok((
                removed,
                Some(Change::AdvanceLogStart {
                    topic_id,
                    partition,
                    offset,
                }),
            ))
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
            let mut t = s
                .topics
                .get(&name)
                .cloned()
                .ok_or_else(|| MetaError::NotFound(format!("topic {name}")))?;
            t.configs = configs.clone();
            Ok((t, Some(Change::SetConfigs { name, configs })))
        })
        .await
    }

    async fn broker_configs(&self, scope: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .read(|s| s.broker_configs.get(scope).cloned())?
            .unwrap_or_default())
    }

    async fn set_broker_configs(
        &self,
        scope: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let scope = scope.to_string();
        self.update(move |_| Ok(((), Some(Change::SetBrokerConfigs { scope, configs }))))
            .await
    }

    async fn user_credentials(&self) -> Result<Vec<UserCredential>> {
        self.read(|s| {
            s.users
                .iter()
                .flat_map(|(user, creds)| {
                    creds
                        .iter()
                        .map(move |(mechanism, credential)| UserCredential {
                            user: user.clone(),
                            mechanism: mechanism.clone(),
                            credential: credential.clone(),
                        })
                })
                .collect()
        })
    }

    async fn user_credential(&self, user: &str, mechanism: &str) -> Result<Option<String>> {
        self.read(|s| s.users.get(user).and_then(|m| m.get(mechanism)).cloned())
    }

    async fn put_user_credential(
        &self,
        user: &str,
        mechanism: &str,
        credential: String,
    ) -> Result<()> {
        let change = Change::SetUserCredential {
            user: user.to_string(),
            mechanism: mechanism.to_string(),
            credential: Some(credential),
        };
        self.update(move |_| Ok(((), Some(change)))).await
    }

    async fn delete_user_credential(&self, user: &str, mechanism: &str) -> Result<bool> {
        let (user, mechanism) = (user.to_string(), mechanism.to_string());
        self.update(move |s| {
            if s.users
                .get(&user)
                .is_none_or(|m| !m.contains_key(&mechanism))
            {
                return Ok((false, None));
            }
            let change = Change::SetUserCredential {
                user,
                mechanism,
                credential: None,
            };
            Ok((true, Some(change)))
        })
        .await
    }

    async fn acls(&self) -> Result<Vec<String>> {
        self.read(|s| s.acls.iter().cloned().collect())
    }

    async fn add_acls(&self, acls: Vec<String>) -> Result<()> {
        self.update(move |s| {
            let new: Vec<String> = acls.into_iter().filter(|a| !s.acls.contains(a)).collect();
            Ok((
                (),
                (!new.is_empty()).then_some(Change::AddAcls { acls: new }),
            ))
        })
        .await
    }

    async fn remove_acls(&self, acls: Vec<String>) -> Result<()> {
        self.update(move |s| {
            let gone: Vec<String> = acls.into_iter().filter(|a| s.acls.contains(a)).collect();
            Ok((
                (),
                (!gone.is_empty()).then_some(Change::RemoveAcls { acls: gone }),
            ))
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
            let next = first
                .checked_add(count)
                .ok_or_else(|| MetaError::Invalid("producer ids exhausted".into()))?;
            Ok((first, Some(Change::ProducerIds { next })))
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
            let topic = TopicMeta {
                name,
                id: Uuid::new_v4(),
                partitions,
                configs,
            };
            Ok((topic.clone(), Some(Change::CreateTopic { topic })))
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let name = name.to_string();
        self.update(move |s| {
            let t = s
                .topics
                .get(&name)
                .cloned()
                .ok_or(MetaError::NotFound(name))?;
            let change = Change::DeleteTopic {
                name: t.name.clone(),
                id: t.id,
            };
            Ok((t, Some(change)))
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
            let mut t = s
                .topics
                .get(&name)
                .cloned()
                .ok_or_else(|| MetaError::NotFound(name.clone()))?;
            if total <= t.partitions {
                return Err(MetaError::Invalid(format!(
                    "topic {name} has {} partitions; the new count {total} must be larger",
                    t.partitions
                )));
            }
            t.partitions = total;
            Ok((
                t,
                Some(Change::SetPartitions {
                    name,
                    partitions: total,
                }),
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommittedOffset;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    fn entry(p: i32, o: i64) -> OffsetEntry {
        OffsetEntry {
            topic: "t".into(),
            partition: p,
            committed: CommittedOffset {
                offset: o,
                leader_epoch: 0,
                metadata: Some("m".into()),
                commit_timestamp_ms: 1,
            },
        }
    }

    fn seg(partition: i32, base: i64, end: i64, epoch: i32) -> SegmentEntry {
        SegmentEntry {
            base_offset: base,
            end_offset: end,
            min_timestamp: base,
            max_timestamp: end,
            size_bytes: 1000,
            leader_epoch: epoch,
            path: format!("topics/t/partition={partition}/{base:020}-{epoch}.parquet"),
        }
    }

    /// Replaces the first occurrence of `from` in `line` (1-based) of `path`.
    fn edit_line(path: &Path, line: usize, from: &str, to: &str) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        assert!(
            lines[line - 1].contains(from),
            "{from} not in {}",
            lines[line - 1]
        );
        lines[line - 1] = lines[line - 1].replacen(from, to, 1);
        std::fs::write(path, lines.concat()).unwrap();
    }

    fn line_starts(path: &Path) -> Vec<u64> {
        let data = std::fs::read(path).unwrap();
        let mut starts = vec![0];
        starts.extend(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as u64 + 1),
        );
        starts
    }

    fn expect_corrupt(dir: &Path, file: &str, line: usize) {
        let path = dir.join(file);
        let before = std::fs::read(&path).unwrap();
        match EmbeddedMetaStore::open(dir) {
            Err(e @ MetaError::Corrupt { .. }) => {
                let MetaError::Corrupt {
                    path: p, line: l, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((p, *l), (&path, line), "{e}");
                let message = e.to_string();
                assert!(
                    message.contains(&path.display().to_string())
                        && message.contains(&format!("line {line}")),
                    "{message}"
                );
            }
            Err(e) => panic!("expected corruption of {file} line {line}, got {e}"),
            Ok(_) => panic!("opened a store whose {file} is corrupt at line {line}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "{file} was changed");
    }

    #[tokio::test]
    async fn offsets_survive_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
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
    async fn a_torn_last_offsets_line_is_cut_and_everything_before_kept() {
        for damage in ["cut short", "checksum"] {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedMetaStore::open(dir.path()).unwrap();
            store.commit_offsets("g", vec![entry(0, 5)]).await.unwrap();
            store.commit_offsets("g", vec![entry(1, 7)]).await.unwrap();
            store
                .commit_offsets("g", vec![entry(0, 333), entry(2, 333)])
                .await
                .unwrap();
            drop(store);
            let log = dir.path().join("offsets.log");
            let starts = line_starts(&log);
            match damage {
                "cut short" => {
                    let data = std::fs::read(&log).unwrap();
                    std::fs::write(&log, &data[..data.len() - 10]).unwrap();
                }
                _ => edit_line(&log, 3, "333", "334"),
            }
            let store = EmbeddedMetaStore::open(dir.path()).unwrap();
            // The torn commit is gone whole; the ones before it are all there.
            assert_eq!(
                store.committed_offsets("g").await.unwrap(),
                vec![entry(0, 5), entry(1, 7)],
                "{damage}"
            );
            assert_eq!(
                std::fs::metadata(&log).unwrap().len(),
                starts[2],
                "{damage}"
            );
            // The cut happened before the next append, so what follows is readable.
            store.commit_offsets("g", vec![entry(3, 1)]).await.unwrap();
            drop(store);
            let store = EmbeddedMetaStore::open(dir.path()).unwrap();
            assert_eq!(
                store.committed_offsets("g").await.unwrap(),
                vec![entry(0, 5), entry(1, 7), entry(3, 1)],
                "{damage}"
            );
        }
    }

    #[tokio::test]
    async fn a_corrupt_offsets_line_before_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        store.commit_offsets("g", vec![entry(0, 5)]).await.unwrap();
        store
            .commit_offsets("g", vec![entry(1, 777)])
            .await
            .unwrap();
        store.commit_offsets("g", vec![entry(2, 9)]).await.unwrap();
        drop(store);
        // Still valid JSON, so only the checksum can tell.
        edit_line(&dir.path().join("offsets.log"), 2, "777", "778");
        expect_corrupt(dir.path(), "offsets.log", 2);
    }

    /// `offsets.log` as written before checksums: one bare JSON object per partition.
    const LEGACY_OFFSETS: &str = concat!(
        r#"{"op":"commit","group":"g","topic":"t","partition":0,"offset":5,"leader_epoch":0,"metadata":"m","commit_timestamp_ms":1}"#,
        "\n",
        r#"{"op":"commit","group":"g","topic":"t","partition":1,"offset":7,"leader_epoch":0,"metadata":"m","commit_timestamp_ms":1}"#,
        "\n",
        r#"{"op":"commit","group":"h","topic":"t","partition":0,"offset":1,"leader_epoch":0,"metadata":"m","commit_timestamp_ms":1}"#,
        "\n",
        r#"{"op":"delete","group":"g","topic":"t","partition":1}"#,
        "\n",
        r#"{"op":"commit","group":"g","topic":"t","partition":2,"offset":3,"leader_epoch":0,"metadata":"m","commit_timestamp_ms":1}"#,
        "\n",
        r#"{"op":"delete_group","group":"h"}"#,
        "\n",
    );

    #[tokio::test]
    async fn offsets_logs_without_checksums_still_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("offsets.log"), LEGACY_OFFSETS).unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let want = vec![entry(0, 5), entry(2, 3)];
        assert_eq!(store.committed_offsets("g").await.unwrap(), want);
        assert_eq!(store.offset_groups().await.unwrap(), vec!["g".to_string()]);
        // New lines follow the old ones in the new form; both read back.
        store.commit_offsets("g", vec![entry(1, 8)]).await.unwrap();
        drop(store);
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(
            store.committed_offsets("g").await.unwrap(),
            vec![entry(0, 5), entry(1, 8), entry(2, 3)]
        );
    }

    #[tokio::test]
    async fn a_bad_line_in_the_middle_of_an_old_offsets_log_refuses_to_open() {
        // Before, replay stopped here and the next rewrite dropped every later commit.
        let dir = tempfile::tempdir().unwrap();
        let damaged = LEGACY_OFFSETS.replacen(r#""partition":1,"#, r#""partition":1"#, 1);
        std::fs::write(dir.path().join("offsets.log"), damaged).unwrap();
        expect_corrupt(dir.path(), "offsets.log", 2);
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
    async fn passes_conformance_while_compacting_often() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        store.inner.log.lock().unwrap().compact_min_bytes = 0;
        crate::conformance::run(&store).await;
        let topics = store.topics().await.unwrap();
        let groups = store.offset_groups().await.unwrap();
        drop(store);
        let generation = snapshot_generation(dir.path());
        assert!(generation >= 3, "compacted {generation} times");
        let again = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(again.topics().await.unwrap(), topics);
        assert_eq!(again.offset_groups().await.unwrap(), groups);
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
        let records = store.inner.offsets_log.lock().unwrap().records;
        assert!(
            records < 102_000,
            "150,000 commits of 1,000 live offsets left {records} records"
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
        std::fs::write(dir.path().join(meta_log::SNAPSHOT), b"{not json").unwrap();
        assert!(matches!(
            EmbeddedMetaStore::open(dir.path()),
            Err(MetaError::Invalid(_))
        ));
    }

    /// Each file's inode and length.
    fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                (e.path(), (m.ino(), m.len()))
            })
            .collect()
    }

    /// Bytes written between two listings: a new or replaced file (new inode) counts whole,
    /// an appended one by its growth.
    fn written(
        before: &BTreeMap<PathBuf, (u64, u64)>,
        after: &BTreeMap<PathBuf, (u64, u64)>,
    ) -> u64 {
        after
            .iter()
            .map(|(path, &(ino, len))| match before.get(path) {
                Some(&(old_ino, old_len)) if old_ino == ino && len >= old_len => len - old_len,
                _ => len,
            })
            .sum()
    }

    /// Bytes written to commit one segment when `existing` segments are already indexed.
    async fn bytes_per_segment_commit(existing: i64) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let topic = Uuid::new_v4();
        store.create_topic("t", 2, BTreeMap::new()).await.unwrap();
        for i in 0..existing {
            store
                .add_segment(topic, 1, seg(1, i * 100, i * 100 + 100, 1))
                .await
                .unwrap();
        }
        let before = files(dir.path());
        store
            .add_segment(topic, 0, seg(0, 0, 100, 1))
            .await
            .unwrap();
        let after = files(dir.path());
        assert_eq!(
            store
                .partition_index(topic, 1)
                .await
                .unwrap()
                .segments
                .len() as i64,
            existing
        );
        written(&before, &after)
    }

    #[tokio::test]
    async fn a_segment_commit_writes_the_same_bytes_however_many_segments_exist() {
        let one = bytes_per_segment_commit(1).await;
        let thousand = bytes_per_segment_commit(1000).await;
        assert_eq!(
            one, thousand,
            "committing a segment wrote {one} bytes beside 1 segment, {thousand} beside 1000"
        );
        assert!(one < 512, "one segment commit wrote {one} bytes");
    }

    #[tokio::test]
    async fn every_change_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let snapshot = std::fs::read(dir.path().join(meta_log::SNAPSHOT)).unwrap();
        let kept = store
            .create_topic("kept", 1, BTreeMap::new())
            .await
            .unwrap();
        let gone = store
            .create_topic("gone", 1, BTreeMap::new())
            .await
            .unwrap();
        store.add_partitions("kept", 3).await.unwrap();
        let configs = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        store.set_topic_configs("kept", configs).await.unwrap();
        let dynamic = BTreeMap::from([("log.retention.ms".to_string(), "9".to_string())]);
        store.set_broker_configs("", dynamic.clone()).await.unwrap();
        store
            .set_broker_configs("3", dynamic.clone())
            .await
            .unwrap();
        store
            .set_broker_configs("3", BTreeMap::new())
            .await
            .unwrap();
        let first = store.allocate_producer_ids(1000).await.unwrap();
        for p in 0..2 {
            store
                .add_segment(kept.id, p, seg(p, 0, 10, 1))
                .await
                .unwrap();
            store
                .add_segment(kept.id, p, seg(p, 10, 20, 2))
                .await
                .unwrap();
            store
                .add_segment(gone.id, p, seg(p, 0, 10, 1))
                .await
                .unwrap();
        }
        store
            .add_segment(kept.id, 0, seg(0, 20, 30, 4))
            .await
            .unwrap();
        let removed = store.advance_log_start(kept.id, 0, 15).await.unwrap();
        assert_eq!(removed, vec![seg(0, 0, 10, 1)]);
        store.advance_log_start(kept.id, 1, 20).await.unwrap();
        store.delete_topic("gone").await.unwrap();
        let topics = store.topics().await.unwrap();
        let indexes = [
            store.partition_index(kept.id, 0).await.unwrap(),
            store.partition_index(kept.id, 1).await.unwrap(),
        ];
        assert_eq!(indexes[1].segments, vec![]);
        assert_eq!(indexes[1].end_offset, 20);
        // None of it rewrote the snapshot.
        assert_eq!(
            std::fs::read(dir.path().join(meta_log::SNAPSHOT)).unwrap(),
            snapshot
        );
        drop(store);

        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(store.topics().await.unwrap(), topics);
        assert_eq!(store.partition_index(kept.id, 0).await.unwrap(), indexes[0]);
        assert_eq!(store.partition_index(kept.id, 1).await.unwrap(), indexes[1]);
        assert_eq!(
            store.partition_index(gone.id, 0).await.unwrap(),
            PartitionIndex::default()
        );
        assert!(store.allocate_producer_ids(1).await.unwrap() >= first + 1000);
        assert_eq!(store.broker_configs("").await.unwrap(), dynamic);
        assert!(store.broker_configs("3").await.unwrap().is_empty());
        // Fencing survives too: epoch 4 committed to partition 0.
        assert!(matches!(
            store.add_segment(kept.id, 0, seg(0, 30, 40, 3)).await,
            Err(MetaError::Fenced(_))
        ));
    }

    #[tokio::test]
    async fn a_torn_last_metadata_line_is_cut_and_everything_before_kept() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Uuid::new_v4();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        for i in 0..3 {
            store
                .add_segment(topic, 0, seg(0, i * 10, i * 10 + 10, 1))
                .await
                .unwrap();
        }
        drop(store);
        let log = dir.path().join(meta_log::LOG);
        let data = std::fs::read(&log).unwrap();
        std::fs::write(&log, &data[..data.len() - 20]).unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let index = store.partition_index(topic, 0).await.unwrap();
        assert_eq!(index.segments, vec![seg(0, 0, 10, 1), seg(0, 10, 20, 1)]);
        assert_eq!(index.end_offset, 20);
        store
            .add_segment(topic, 0, seg(0, 20, 25, 1))
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(
            store.partition_index(topic, 0).await.unwrap().end_offset,
            25
        );
    }

    #[tokio::test]
    async fn a_corrupt_metadata_line_before_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Uuid::new_v4();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        store.add_segment(topic, 0, seg(0, 0, 10, 1)).await.unwrap();
        store
            .add_segment(topic, 0, seg(0, 10, 20, 1))
            .await
            .unwrap();
        store
            .add_segment(topic, 0, seg(0, 20, 30, 1))
            .await
            .unwrap();
        drop(store);
        let snapshot = std::fs::read(dir.path().join(meta_log::SNAPSHOT)).unwrap();
        // Line 1 names the generation; line 3 is the second segment.
        edit_line(
            &dir.path().join(meta_log::LOG),
            3,
            r#""size_bytes":1000"#,
            r#""size_bytes":1001"#,
        );
        expect_corrupt(dir.path(), meta_log::LOG, 3);
        assert_eq!(
            std::fs::read(dir.path().join(meta_log::SNAPSHOT)).unwrap(),
            snapshot
        );
    }

    /// `metadata.json` as written before the metadata log: format version 1, everything in it.
    fn legacy_document(topic: Uuid) -> String {
        format!(
            r#"{{
  "version": 1,
  "cluster_id": "0123456789abcdef0123456789abcdef",
  "topics": {{
    "t": {{
      "name": "t",
      "id": "{topic}",
      "partitions": 2,
      "configs": {{
        "retention.ms": "1000"
      }}
    }}
  }},
  "next_producer_id": 2000,
  "segments": {{
    "{topic}/0": {{
      "log_start_offset": 5,
      "end_offset": 20,
      "segments": [
        {{
          "base_offset": 0,
          "end_offset": 10,
          "min_timestamp": 0,
          "max_timestamp": 10,
          "size_bytes": 1000,
          "leader_epoch": 1,
          "path": "topics/t/partition=0/00000000000000000000-1.parquet"
        }},
        {{
          "base_offset": 10,
          "end_offset": 20,
          "min_timestamp": 10,
          "max_timestamp": 20,
          "size_bytes": 1000,
          "leader_epoch": 2,
          "path": "topics/t/partition=0/00000000000000000010-2.parquet"
        }}
      ],
      "newest_epoch": 3
    }}
  }}
}}"#
        )
    }

    #[tokio::test]
    async fn data_directories_written_before_the_logs_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Uuid::new_v4();
        std::fs::write(dir.path().join(meta_log::SNAPSHOT), legacy_document(topic)).unwrap();
        std::fs::write(dir.path().join("offsets.log"), LEGACY_OFFSETS).unwrap();
        let check = |store: EmbeddedMetaStore, extra: bool| async move {
            assert_eq!(
                store.cluster_id().await.unwrap(),
                "0123456789abcdef0123456789abcdef"
            );
            let t = store.topic("t").await.unwrap().unwrap();
            assert_eq!((t.id, t.partitions), (topic, 2));
            assert_eq!(t.configs["retention.ms"], "1000");
            let index = store.partition_index(topic, 0).await.unwrap();
            let end = if extra { 30 } else { 20 };
            assert_eq!((index.log_start_offset, index.end_offset), (5, end));
            let mut segments = vec![seg(0, 0, 10, 1), seg(0, 10, 20, 2)];
            if extra {
                segments.push(seg(0, 20, 30, 3));
            }
            assert_eq!(index.segments, segments);
            assert_eq!(
                store.committed_offsets("g").await.unwrap(),
                vec![entry(0, 5), entry(2, 3)]
            );
            store
        };
        let store = check(EmbeddedMetaStore::open(dir.path()).unwrap(), false).await;
        assert!(store.allocate_producer_ids(10).await.unwrap() >= 2000);
        assert!(matches!(
            store.add_segment(topic, 0, seg(0, 20, 30, 2)).await,
            Err(MetaError::Fenced(_))
        ));
        store
            .add_segment(topic, 0, seg(0, 20, 30, 3))
            .await
            .unwrap();
        drop(store);
        let store = check(EmbeddedMetaStore::open(dir.path()).unwrap(), true).await;
        assert!(store.allocate_producer_ids(10).await.unwrap() >= 2010);
        // And once folded into a new snapshot.
        store
            .inner
            .log
            .lock()
            .unwrap()
            .compact(&store.inner.state)
            .unwrap();
        drop(store);
        check(EmbeddedMetaStore::open(dir.path()).unwrap(), true).await;
    }

    fn snapshot_generation(dir: &Path) -> u64 {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(meta_log::SNAPSHOT)).unwrap()).unwrap();
        doc["log_generation"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn the_metadata_log_is_folded_into_the_snapshot_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        store.inner.log.lock().unwrap().compact_min_bytes = 8192;
        let topic = Uuid::new_v4();
        for i in 0..300 {
            store
                .add_segment(topic, 0, seg(0, i * 10, i * 10 + 10, 1))
                .await
                .unwrap();
        }
        store.advance_log_start(topic, 0, 1000).await.unwrap();
        let index = store.partition_index(topic, 0).await.unwrap();
        assert_eq!(index.segments.len(), 200);
        let log_len = std::fs::metadata(dir.path().join(meta_log::LOG))
            .unwrap()
            .len();
        let snapshot_len = std::fs::metadata(dir.path().join(meta_log::SNAPSHOT))
            .unwrap()
            .len();
        assert!(snapshot_generation(dir.path()) > 1);
        assert!(
            log_len < snapshot_len.max(8192) + 512,
            "a {log_len}-byte log beside a {snapshot_len}-byte snapshot"
        );
        drop(store);
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(store.partition_index(topic, 0).await.unwrap(), index);
    }

    #[tokio::test]
    async fn a_log_left_by_an_interrupted_compaction_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let topic = Uuid::new_v4();
        for i in 0..3 {
            store
                .add_segment(topic, 0, seg(0, i * 10, i * 10 + 10, 1))
                .await
                .unwrap();
        }
        let index = store.partition_index(topic, 0).await.unwrap();
        let log = dir.path().join(meta_log::LOG);
        let old_log = std::fs::read(&log).unwrap();
        let old_snapshot = std::fs::read(dir.path().join(meta_log::SNAPSHOT)).unwrap();
        store
            .inner
            .log
            .lock()
            .unwrap()
            .compact(&store.inner.state)
            .unwrap();
        drop(store);
        assert_eq!(snapshot_generation(dir.path()), 1);

        // A crash after the new snapshot was installed but before the log was replaced: the
        // snapshot holds those changes already, and they must not be applied twice.
        std::fs::write(&log, &old_log).unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(store.partition_index(topic, 0).await.unwrap(), index);
        store
            .add_segment(topic, 0, seg(0, 30, 40, 1))
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .partition_index(topic, 0)
                .await
                .unwrap()
                .segments
                .len(),
            4
        );
        drop(store);

        // The other way round (a log newer than its snapshot) cannot come from a crash.
        std::fs::write(dir.path().join(meta_log::SNAPSHOT), old_snapshot).unwrap();
        expect_corrupt(dir.path(), meta_log::LOG, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_do_not_wait_for_a_writer_holding_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetaStore::open(dir.path()).unwrap();
        let topic = store.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        store
            .add_segment(topic.id, 0, seg(0, 0, 10, 1))
            .await
            .unwrap();
        store.commit_offsets("g", vec![entry(0, 5)]).await.unwrap();

        // A thread holding both writers' locks, as a writer does through its fsync.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let store = store.clone();
            std::thread::spawn(move || {
                let _log = store.inner.log.lock().unwrap();
                let _offsets = store.inner.offsets_log.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        };
        held_rx.recv().unwrap();
        // Writers queue behind it...
        let commit = tokio::spawn({
            let store = store.clone();
            async move { store.commit_offsets("g", vec![entry(0, 6)]).await }
        });
        let segment = tokio::spawn({
            let store = store.clone();
            async move { store.add_segment(topic.id, 0, seg(0, 10, 20, 1)).await }
        });
        // ...readers do not, and see the last durable state. They run on a thread of their
        // own so that one blocked on a lock fails the test instead of hanging it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let reader = {
            let store = store.clone();
            let topic = topic.clone();
            let runtime = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                runtime.block_on(async {
                    assert_eq!(
                        store.committed_offsets("g").await.unwrap(),
                        vec![entry(0, 5)]
                    );
                    assert_eq!(store.offset_groups().await.unwrap(), vec!["g".to_string()]);
                    assert_eq!(
                        store.partition_index(topic.id, 0).await.unwrap().end_offset,
                        10
                    );
                    assert_eq!(store.topics().await.unwrap(), vec![topic.clone()]);
                    assert!(store.topic("t").await.unwrap().is_some());
                    store.cluster_id().await.unwrap();
                });
                let _ = done_tx.send(());
            })
        };
        match done_rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("a reader waited for the writers' lock")
            }
            _ => reader.join().unwrap(),
        }
        assert!(!commit.is_finished() && !segment.is_finished());
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        commit.await.unwrap().unwrap();
        segment.await.unwrap().unwrap();
        assert_eq!(
            store.committed_offsets("g").await.unwrap(),
            vec![entry(0, 6)]
        );
        assert_eq!(
            store.partition_index(topic.id, 0).await.unwrap().end_offset,
            20
        );
    }
}
