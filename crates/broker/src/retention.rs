//! Retention: whole archive segments are deleted once they are older than the topic's
//! `retention.ms` or the partition's archive exceeds `retention.bytes`, and DeleteRecords moves
//! a partition's log start offset by hand.
//!
//! Either way the log start offset is raised in the segment index first (so no reader is sent to
//! a deleted object), then the in-memory state follows, then the objects are deleted. A failed
//! delete leaves an orphan object that nothing references, logged for the operator; it never
//! leaves an index entry pointing at a missing object.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use sediment_meta::{MetaError, SegmentEntry};
use tracing::{info, warn};

use crate::log::{Partition, Topic};
use crate::{wait_stopped, Broker};

/// Topic configs this module reads.
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";

/// A retention setting: a number, -1 for unlimited.
pub fn parse_limit(value: &str) -> Option<i64> {
    value.trim().parse::<i64>().ok().filter(|v| *v >= -1)
}

impl Broker {
    /// `retention.ms` and `retention.bytes` of a topic (its own, else the dynamic broker
    /// defaults, else the static ones).
    pub fn retention_of(&self, topic: &Topic) -> (i64, i64) {
        let get =
            |key: &str, default: i64| topic.setting(key).and_then(parse_limit).unwrap_or(default);
        (
            get(RETENTION_MS, self.config.retention_ms),
            get(RETENTION_BYTES, self.config.retention_bytes),
        )
    }

    /// Runs retention until shutdown, every `retention_check_interval`.
    pub async fn run_retention(self: Arc<Self>) {
        let mut stop = self.shutdown_signal();
        let tick = self
            .config
            .retention_check_interval
            .max(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = wait_stopped(&mut stop) => return,
                _ = tokio::time::sleep(tick) => {}
            }
            self.apply_retention(self.config.clock.wall_ms()).await;
        }
    }

    /// Deletes the segments every partition's retention no longer keeps. Returns how many.
    pub async fn apply_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for topic in self.registry.topics() {
            let (ms, bytes) = self.retention_of(&topic);
            if ms < 0 && bytes < 0 {
                continue;
            }
            for (i, p) in topic.partitions.iter().enumerate() {
                let Some(new_start) = expired_end(p, ms, bytes, now_ms) else {
                    continue;
                };
                match self.advance_log_start(&topic, i as i32, new_start).await {
                    Ok(n) => deleted += n,
                    Err(e) => {
                        warn!(topic = %topic.meta.name, partition = i, error = %e, "retention failed; will retry")
                    }
                }
            }
        }
        deleted
    }

    /// Raises a partition's log start offset to `offset` (clamped to what exists), deleting the
    /// archive segments wholly below it. Returns how many segments were deleted.
    pub async fn advance_log_start(
        &self,
        topic: &Topic,
        partition: i32,
        offset: i64,
    ) -> Result<usize, MetaError> {
        let removed = self
            .meta
            .advance_log_start(topic.meta.id, partition, offset)
            .await?;
        if let Some(p) = topic.partition(partition) {
            if let Ok(mut st) = p.state.lock() {
                if offset > st.log_start_offset {
                    st.log_start_offset = offset;
                }
                let start = st.log_start_offset;
                if st.archive.first().is_some_and(|s| s.end_offset <= start) {
                    let keep: Vec<SegmentEntry> = st
                        .archive
                        .iter()
                        .filter(|s| s.end_offset > start)
                        .cloned()
                        .collect();
                    st.archive = Arc::new(keep);
                }
            }
        }
        let n = removed.len();
        self.delete_objects(&removed).await;
        if n > 0 {
            info!(topic = %topic.meta.name, partition, log_start = offset, segments = n, "segments deleted");
        }
        Ok(n)
    }

    /// Deletes segment objects (best effort: a failure leaves an unreferenced object).
    pub async fn delete_objects(&self, segments: &[SegmentEntry]) {
        for s in segments {
            let path = ObjectPath::from(s.path.as_str());
            let deleted = match &self.object_store.local {
                // A local segment shares the WAL's disk: removed in steps, as released WAL is.
                Some(local) => match local.fs.path_to_filesystem(&path) {
                    Ok(file) => tokio::task::spawn_blocking(move || {
                        match sediment_wal::remove_in_steps(&file) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                Err(e.to_string())
                            }
                            _ => Ok(()),
                        }
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r),
                    Err(e) => Err(e.to_string()),
                },
                None => match self.object_store.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
            };
            match deleted {
                Ok(()) => {
                    self.metrics.segments_deleted.inc();
                }
                Err(e) => {
                    warn!(path = %s.path, error = %e, "deleting a segment object failed; it is no longer referenced")
                }
            }
        }
    }
}

/// The end of the last segment retention drops from a partition, if any.
fn expired_end(p: &Partition, retention_ms: i64, retention_bytes: i64, now_ms: i64) -> Option<i64> {
    let st = p.state.lock().ok()?;
    // In a cluster the leader applies retention (the index is shared); the others follow it.
    if !matches!(
        st.role,
        crate::log::Role::Single | crate::log::Role::Leader { .. }
    ) {
        return None;
    }
    let segments = &st.archive;
    let mut total: i64 = segments.iter().map(|s| s.size_bytes as i64).sum();
    let mut end = None;
    for s in segments.iter() {
        let too_old = retention_ms >= 0 && s.max_timestamp < now_ms.saturating_sub(retention_ms);
        // As Kafka: a segment goes only if what remains still holds `retention.bytes`.
        let too_big = retention_bytes >= 0 && total - s.size_bytes as i64 >= retention_bytes;
        if !(too_old || too_big) {
            break;
        }
        total -= s.size_bytes as i64;
        end = Some(s.end_offset);
    }
    end
}
