//! A single-node metadata store: one JSON document, replaced atomically on each change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{MetaError, MetaStore, Result, TopicMeta};

const FILE: &str = "metadata.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    /// Format version of this document.
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMetaStore {
    dir: PathBuf,
    // A std Mutex: it is only taken inside blocking closures, never across an await.
    state: Arc<Mutex<State>>,
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
                };
                persist(&dir, &s)?;
                s
            }
            Err(e) => return Err(unavailable("reading metadata", e)),
        };
        Ok(Self {
            dir,
            state: Arc::new(Mutex::new(state)),
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
        self.update(move |s| s.topics.remove(&name).ok_or(MetaError::NotFound(name)))
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
    async fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(matches!(
            EmbeddedMetaStore::open(dir.path()),
            Err(MetaError::Invalid(_))
        ));
    }
}
