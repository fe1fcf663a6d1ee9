//! Archiving: durable WAL-resident batches of each partition become Parquet segments in the
//! object store, committed to the segment index.
//!
//! One background task per broker. Each tick it looks at every partition; when the durable
//! batches not yet archived reach `segment_bytes`, or `segment_interval` has passed since the
//! partition's last upload, it reads them from the WAL, writes a segment (archive format v1,
//! `sediment_storage::segment`), PUTs it, and only then commits the index entry; a failed step
//! is logged and retried on the next tick (the object store client retries with backoff too).
//! WAL space is not released yet, so reads are still served from the WAL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use sediment_meta::SegmentEntry;
use sediment_storage::segment::{self, SegmentMeta, WriteOptions};
use tracing::{debug, info, warn};

use crate::log::{Partition, Topic};
use crate::{wait_stopped, Broker};

/// Largest segment built in one go, as a multiple of `segment_bytes`.
const MAX_SEGMENT_FACTOR: u64 = 2;

impl Broker {
    /// Sets every partition's archived end from the segment index (at start-up).
    pub async fn load_upload_state(&self) -> Result<(), sediment_meta::MetaError> {
        for t in self.registry.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let segments = self.meta.segments(t.meta.id, i as i32).await?;
                if let Ok(mut st) = p.state.lock() {
                    st.uploaded_end = segments.last().map_or(0, |s| s.end_offset);
                    st.last_upload = Some(Instant::now());
                }
            }
        }
        Ok(())
    }

    /// Runs the uploader until shutdown, checking every `tick`.
    pub async fn run_uploader(self: Arc<Self>, tick: Duration) {
        let mut stop = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = wait_stopped(&mut stop) => return,
                _ = tokio::time::sleep(tick) => {}
            }
            self.upload_due(false).await;
        }
    }

    /// Uploads every partition that is due (or, with `force`, that has anything to archive).
    /// Returns the number of segments committed.
    pub async fn upload_due(&self, force: bool) -> usize {
        let mut lag = 0u64;
        let mut done = 0;
        for topic in self.registry.topics() {
            for (i, partition) in topic.partitions.iter().enumerate() {
                let (pending, due) = self.pending(partition, force);
                lag += pending;
                if !due {
                    continue;
                }
                match self.upload_partition(&topic, i as i32, partition).await {
                    Ok(Some(bytes)) => {
                        done += 1;
                        lag = lag.saturating_sub(bytes);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.metrics.upload_errors.inc();
                        warn!(topic = %topic.meta.name, partition = i, error = %e, "segment upload failed; will retry");
                    }
                }
            }
        }
        self.metrics.upload_lag_bytes.set(lag as i64);
        done
    }

    /// Durable bytes not yet archived, and whether an upload is due.
    fn pending(&self, p: &Partition, force: bool) -> (u64, bool) {
        let Ok(st) = p.state.lock() else {
            return (0, false);
        };
        let from = st.find(st.uploaded_end);
        let bytes: u64 = st.index[from..]
            .iter()
            .take_while(|e| e.end_offset <= st.high_watermark)
            .map(|e| u64::from(e.pos.len))
            .sum();
        let aged = st
            .last_upload
            .is_none_or(|t| t.elapsed() >= self.config.segment_interval);
        (
            bytes,
            bytes > 0 && (force || aged || bytes >= self.config.segment_bytes),
        )
    }

    async fn upload_partition(
        &self,
        topic: &Arc<Topic>,
        index: i32,
        p: &Partition,
    ) -> Result<Option<u64>, String> {
        let limit = self
            .config
            .segment_bytes
            .saturating_mul(MAX_SEGMENT_FACTOR)
            .max(1);
        let (positions, epoch) = {
            let st = p
                .state
                .lock()
                .map_err(|_| "partition state poisoned".to_string())?;
            let from = st.find(st.uploaded_end);
            let mut taken = 0u64;
            let positions: Vec<_> = st.index[from..]
                .iter()
                .take_while(|e| e.end_offset <= st.high_watermark)
                .take_while(|e| {
                    let go = taken < limit;
                    taken += u64::from(e.pos.len);
                    go
                })
                .map(|e| e.pos)
                .collect();
            (positions, st.leader_epoch)
        };
        if positions.is_empty() {
            return Ok(None);
        }
        let segments = self.segments.clone();
        let meta = SegmentMeta {
            topic: topic.meta.name.clone(),
            topic_id: topic.meta.id,
            partition: index,
            leader_epoch: epoch,
        };
        let encoded = tokio::task::spawn_blocking(move || {
            let batches = positions
                .iter()
                .map(|pos| segments.read(pos))
                .collect::<Result<Vec<Bytes>, _>>()
                .map_err(|e| e.to_string())?;
            segment::encode_segment(&batches, &meta, &WriteOptions::default())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let (data, info) = encoded;
        let path = segment::object_path(
            &self.object_store.prefix,
            &topic.meta.name,
            index,
            info.base_offset,
            epoch,
        );
        self.object_store
            .store
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map_err(|e| format!("put {path}: {e}"))?;
        let relative = path.as_ref().to_string();
        self.meta
            .add_segment(
                topic.meta.id,
                index,
                SegmentEntry {
                    base_offset: info.base_offset,
                    end_offset: info.end_offset,
                    min_timestamp: info.min_timestamp,
                    max_timestamp: info.max_timestamp,
                    size_bytes: info.size_bytes,
                    leader_epoch: epoch,
                    path: relative,
                },
            )
            .await
            .map_err(|e| format!("committing the index entry: {e}"))?;
        if let Ok(mut st) = p.state.lock() {
            st.uploaded_end = info.end_offset;
            st.last_upload = Some(Instant::now());
        }
        self.metrics.segments_uploaded.inc();
        self.metrics.segment_bytes_uploaded.inc_by(info.size_bytes);
        info!(
            topic = %topic.meta.name, partition = index, base = info.base_offset,
            end = info.end_offset, bytes = info.size_bytes, "segment uploaded"
        );
        debug!(path = %path, "segment path");
        Ok(Some(info.size_bytes))
    }
}
