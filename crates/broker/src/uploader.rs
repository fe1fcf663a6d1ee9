//! Archiving: durable WAL-resident batches of each partition become Parquet segments in the
//! object store, committed to the segment index.
//!
//! One background task per broker. Each tick it looks at every partition; when the durable
//! batches not yet archived reach `segment_bytes`, or the oldest of them has waited
//! `segment_interval` (both overridable per topic with `segment.bytes` / `segment.ms`), it
//! reads them from the WAL, writes a segment (archive format v1, `sediment_storage::segment`),
//! PUTs it, and only then commits the index entry. A failed step is an [`UploadError`]:
//! retriable ones back off and retry (the object store client retries each request too);
//! permanent ones mark the partition stuck (see [`crate::health`]).
//! After uploads, WAL segment files whose batches are all archived are deleted (after a
//! snapshot of idempotent producer state); reads below the WAL then go to the archive.

use std::sync::Arc;
use std::time::Duration;

use sediment_meta::SegmentEntry;
use sediment_storage::segment::{self, ObjectWrite, SegmentEncoder, SegmentMeta, WriteOptions};
use tracing::{debug, error, info, warn};

use crate::log::{Partition, Role, Topic};
use crate::{wait_stopped, Broker};

/// Threads that encode segments at a low CPU priority (nice 10): archiving is background
/// work, and on a small machine it must not delay WAL writes, syncs and request handling.
pub struct EncoderPool {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    pub threads: usize,
}

impl EncoderPool {
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sediment-encode-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a segment encoder thread");
            }
        }
        Self {
            tx: std::sync::Mutex::new(tx),
            threads,
        }
    }

    /// Runs `job` on an encoder thread and returns its result. A job that panics is caught
    /// (the thread lives on for the next job) and reported as [`UploadError::Permanent`]: it is
    /// a bug, to be seen, not retried quietly.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UploadError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let boxed: Box<dyn FnOnce() + Send> = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = done.send(outcome.map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into())
            }));
        });
        self.tx
            .lock()
            .map_err(|_| UploadError::Permanent("encoder pool poisoned".into()))?
            .send(boxed)
            .map_err(|_| UploadError::Permanent("encoder pool stopped".into()))?;
        match result.await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(panic)) => Err(UploadError::Permanent(format!(
                "the segment encoder panicked: {panic}"
            ))),
            Err(_) => Err(UploadError::Permanent(
                "a segment encoder thread is gone".into(),
            )),
        }
    }
}

/// Lowers the calling thread's CPU priority to nice 10 (Linux threads have their own nice
/// value). Best effort: where it fails the thread runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; they only read and set this thread's
    // scheduling priority.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0 {
            tracing::debug!("could not lower the encoder thread's priority");
        }
    }
}

/// Why an upload did not complete. What the uploader does next depends on which.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    /// The object store or the metadata store failed in a way that may pass (unreachable,
    /// throttled, out of space): retried with backoff, the WAL keeps the data meanwhile.
    #[error("{0}")]
    Retriable(String),
    /// The partition's data cannot be archived as it is (a stored batch that does not decode,
    /// WAL data that cannot be read back): retrying will not help, so the partition is marked
    /// stuck (error log, `sediment_partition_upload_stuck`, `/ready` degraded) and retried
    /// only at the longest backoff, in case an operator fixed the cause.
    #[error("{0}")]
    Permanent(String),
}

impl UploadError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, UploadError::Permanent(_))
    }
}

fn from_segment(e: &segment::SegmentError) -> UploadError {
    use segment::SegmentError as S;
    match e {
        // The writer's errors include the object store's, surfacing through Parquet's writer
        // as it flushes row groups: an outage, not bad data.
        S::Store(_) | S::Parquet(_) | S::Arrow(_) => UploadError::Retriable(e.to_string()),
        // A stored batch that does not decode is bad data: retrying cannot help.
        S::Batch(_) | S::Empty | S::Format(_) => UploadError::Permanent(e.to_string()),
    }
}

fn from_meta(e: &sediment_meta::MetaError) -> UploadError {
    match e {
        sediment_meta::MetaError::Unavailable(_) => {
            UploadError::Retriable(format!("committing the index entry: {e}"))
        }
        _ => UploadError::Permanent(format!("committing the index entry: {e}")),
    }
}

/// Failure of one step of the encoder job (run on an encoder thread).
enum JobError {
    Wal(String),
    Segment(segment::SegmentError),
    /// Writing the object out (network or local disk): retriable.
    Io(std::io::Error),
}

/// Wait before the next upload attempt of a partition after `failures` failures in a row:
/// 250 ms doubling up to 30 s (the object store client has retried each request already).
fn retry_delay(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_millis(ms).min(MAX_RETRY_DELAY)
}

/// The longest wait between attempts (and the wait after a permanent failure).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How often a cluster replica reads how far its leaders archived (one etcd read per
/// followed partition).
const FOLLOW_ARCHIVE_EVERY: Duration = Duration::from_secs(5);

/// Largest segment built in one go, as a multiple of `segment_bytes`.
const MAX_SEGMENT_FACTOR: u64 = 2;

impl Broker {
    /// Loads every partition's archive state from the segment index (at start-up, before the
    /// WAL is replayed on top of it): committed segments, log start, and the archive's end,
    /// where the partition's offsets continue.
    pub(crate) async fn load_archive_state(
        meta: &dyn sediment_meta::MetaStore,
        registry: &crate::log::Registry,
    ) -> Result<(), sediment_meta::MetaError> {
        for t in registry.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let index = meta.partition_index(t.meta.id, i as i32).await?;
                if let Ok(mut st) = p.state.lock() {
                    st.uploaded_end = index.end_offset;
                    st.next_offset = index.end_offset;
                    st.durable_end = index.end_offset;
                    st.high_watermark = index.end_offset;
                    st.log_start_offset = index.log_start_offset;
                    st.archive = Arc::new(index.segments);
                }
            }
        }
        Ok(())
    }

    /// Catches a partition's archive state up with the segment index (cluster mode: the
    /// leader commits segments, every replica reads where the index ends). Returns whether
    /// it moved.
    pub(crate) async fn refresh_archive(
        &self,
        topic: &Topic,
        index: i32,
        p: &Partition,
    ) -> Result<bool, sediment_meta::MetaError> {
        let at = self.meta.partition_index(topic.meta.id, index).await?;
        let Ok(mut st) = p.state.lock() else {
            return Ok(false);
        };
        if at.end_offset <= st.uploaded_end {
            return Ok(false);
        }
        st.uploaded_end = at.end_offset;
        st.log_start_offset = st.log_start_offset.max(at.log_start_offset);
        st.archive = Arc::new(at.segments);
        if st.next_offset < at.end_offset {
            // A replica that missed archived data (its disk was wiped) continues at the end.
            st.next_offset = at.end_offset;
            st.durable_end = st.durable_end.max(at.end_offset);
            st.high_watermark = st.high_watermark.max(at.end_offset);
        }
        Ok(true)
    }

    /// Cluster mode: every replica that does not lead a partition learns how far the leader
    /// archived it, so its own WAL copy can be released.
    async fn follow_archive(&self) {
        let mut moved = false;
        for t in self.registry.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let follower = p
                    .state
                    .lock()
                    .is_ok_and(|st| !matches!(st.role, Role::Single | Role::Leader { .. }));
                if follower {
                    match self.refresh_archive(&t, i as i32, p).await {
                        Ok(m) => moved |= m,
                        Err(e) => {
                            warn!(error = %e, "reading the segment index failed; will retry");
                            return;
                        }
                    }
                }
            }
        }
        if moved {
            if let Err(e) = self.release_wal().await {
                warn!(error = %e, "releasing wal space failed; will retry");
            }
        }
    }

    /// Runs the uploader until shutdown, checking every `tick`, and at once again after a
    /// pass that uploaded something: while producers outrun it, it never idles.
    pub async fn run_uploader(self: Arc<Self>, tick: Duration) {
        self.remove_staging_leftovers().await;
        let mut stop = self.shutdown_signal();
        let mut busy = false;
        let mut followed_at = std::time::Instant::now();
        loop {
            if !busy {
                tokio::select! {
                    _ = wait_stopped(&mut stop) => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            } else if *stop.borrow() {
                return;
            }
            busy = self.upload_due(false).await > 0;
            if self.cluster().is_some() && followed_at.elapsed() >= FOLLOW_ARCHIVE_EVERY {
                followed_at = std::time::Instant::now();
                self.follow_archive().await;
            }
        }
    }

    /// Removes the staging files of local segment writes that a crash cut short (before the
    /// first upload, so none is being written).
    async fn remove_staging_leftovers(&self) {
        let Some(local) = &self.object_store.local else {
            return;
        };
        let root = local.root.clone();
        let removed = tokio::task::spawn_blocking(move || {
            sediment_storage::local::remove_staging_leftovers(&root)
        })
        .await;
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(files = n, "removed unfinished local segment files"),
            Ok(Err(e)) => warn!(error = %e, "looking for unfinished local segment files failed"),
            Err(e) => warn!(error = %e, "looking for unfinished local segment files failed"),
        }
    }

    /// Uploads every partition that is due (or, with `force`, that has anything to archive),
    /// then releases the WAL segments whose batches are all archived. Returns the number of
    /// segments committed.
    pub async fn upload_due(&self, force: bool) -> usize {
        use futures::StreamExt;
        let mut due = Vec::new();
        for topic in self.registry.topics() {
            for (i, partition) in topic.partitions.iter().enumerate() {
                if self.pending(&topic, partition, force).1 {
                    due.push((topic.clone(), i as i32, partition.clone()));
                }
            }
        }
        // Partitions are encoded and uploaded concurrently: encoding is CPU-bound (one blocking
        // thread each) and uploads wait on the network. At most four at once: each holds up
        // to a part (`--multipart-part-bytes`) in memory.
        let concurrency = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 4);
        let done = futures::stream::iter(due)
            .map(|(topic, i, partition)| async move {
                let result = self.upload_partition(&topic, i, &partition).await;
                let failures = match partition.state.lock() {
                    Ok(mut st) => {
                        if let Err(e) = &result {
                            st.upload_failures = st.upload_failures.saturating_add(1);
                            let delay = if e.is_permanent() {
                                MAX_RETRY_DELAY
                            } else {
                                retry_delay(st.upload_failures)
                            };
                            st.upload_retry_at = Some(self.config.clock.monotonic() + delay);
                        } else {
                            st.upload_failures = 0;
                            st.upload_retry_at = None;
                        }
                        st.upload_failures
                    }
                    Err(_) => 0,
                };
                let label = crate::metrics::PartitionLabel {
                    topic: topic.meta.name.clone(),
                    partition: i,
                };
                if !matches!(result, Err(UploadError::Permanent(_)))
                    && self.health.clear_stuck(&topic.meta.name, i)
                {
                    self.metrics.upload_stuck.remove(&label);
                    info!(topic = %topic.meta.name, partition = i, "partition uploads work again");
                }
                match result {
                    Ok(Some(_)) => 1,
                    Ok(None) => 0,
                    Err(UploadError::Retriable(e)) => {
                        self.metrics.upload_errors.inc();
                        warn!(
                            topic = %topic.meta.name, partition = i, error = %e, failures,
                            retry_in_ms = retry_delay(failures).as_millis() as u64,
                            "segment upload failed; will retry"
                        );
                        0
                    }
                    Err(UploadError::Permanent(e)) => {
                        self.metrics.upload_errors.inc();
                        self.metrics.upload_stuck.get_or_create(&label).set(1);
                        // Loudly, but once per state change, not once per retry.
                        if self.health.set_stuck(&topic.meta.name, i, &e) {
                            error!(
                                topic = %topic.meta.name, partition = i, error = %e,
                                "partition cannot be archived: its WAL data stays pinned until \
                                 this is fixed; retrying every {} s",
                                MAX_RETRY_DELAY.as_secs()
                            );
                        }
                        0
                    }
                }
            })
            .buffer_unordered(concurrency)
            .fold(0usize, |a, n| async move { a + n })
            .await;
        if done > 0 {
            if let Err(e) = self.release_wal().await {
                warn!(error = %e, "releasing wal space failed; will retry");
            }
        }
        self.metrics
            .upload_lag_bytes
            .set(self.upload_lag_bytes() as i64);
        self.metrics
            .wal_disk_bytes
            .set(self.segments.disk_bytes() as i64);
        done
    }

    /// Deletes the WAL segments holding only archived batches. Every partition's idempotent
    /// producer state is snapshotted first, since a restart can no longer learn it from them.
    pub async fn release_wal(&self) -> Result<u64, String> {
        // Read before looking at the indexes: anything not yet indexed is in this segment or a
        // later one (see `Segments::active_segment`).
        let mut bound = self.segments.active_segment();
        for t in self.registry.topics() {
            for p in &t.partitions {
                let Ok(st) = p.state.lock() else { continue };
                if let Some(e) = st.index.iter().find(|e| e.end_offset > st.uploaded_end) {
                    bound = bound.min(e.pos.segment);
                }
            }
        }
        // Archived segments stay while the WAL is within `wal_retain_bytes` (consumers near the
        // tail read them from the page cache); beyond it the oldest go until half of it is
        // left, so releases (each with a producer snapshot) come in batches.
        // Retaining more than half the budget would leave producers refused while archived
        // data sits in the WAL.
        let retain = self.config.wal_retain_bytes.min(self.wal_budget / 2);
        let sizes = self.segments.sizes();
        let mut left: u64 = sizes.iter().map(|s| s.1).sum();
        if left <= retain {
            return Ok(0);
        }
        let mut release_to = 0;
        for (id, len) in sizes {
            if id >= bound || left <= retain / 2 {
                break;
            }
            left -= len;
            release_to = id + 1;
        }
        let bound = release_to;
        if self.segments.oldest_segment().is_none_or(|o| o >= bound) {
            return Ok(0);
        }
        let (registry, segments, dir) = (
            self.registry.clone(),
            self.segments.clone(),
            self.config.data_dir.clone(),
        );
        let freed = tokio::task::spawn_blocking(move || {
            registry
                .producer_snapshot()
                .save(&dir)
                .map_err(|e| e.to_string())?;
            let (files, freed) = segments.release_below(bound).map_err(|e| e.to_string())?;
            for t in registry.topics() {
                for p in &t.partitions {
                    if let Ok(mut st) = p.state.lock() {
                        let keep = st.index.partition_point(|e| e.pos.segment < bound);
                        st.index.drain(..keep);
                    }
                }
            }
            debug!(files, freed, bound, "wal segments released");
            Ok::<u64, String>(freed)
        })
        .await
        .map_err(|e| e.to_string())??;
        self.metrics.wal_released_bytes.inc_by(freed);
        Ok(freed)
    }

    /// Durable bytes of every partition not yet archived.
    /// Also sets each partition's `partition_upload_lag_bytes`.
    pub fn upload_lag_bytes(&self) -> u64 {
        let mut lag = 0;
        for t in self.registry.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let one = self.pending(&t, p, false).0;
                lag += one;
                let label = crate::metrics::PartitionLabel {
                    topic: t.meta.name.clone(),
                    partition: i as i32,
                };
                self.metrics
                    .partition_upload_lag_bytes
                    .get_or_create(&label)
                    .set(one as i64);
            }
        }
        lag
    }

    /// Sets `group_lag_offsets` for every group with committed offsets that this broker
    /// coordinates: each partition's high watermark (as this broker knows it) minus the
    /// committed offset. One MetaStore read per group, at each scrape.
    pub async fn refresh_group_lag(&self) {
        let Ok(groups) = self.meta.offset_groups().await else {
            return;
        };
        let me = self.config.broker_id;
        let mut lags = Vec::new();
        for g in groups {
            if let Some(c) = self.cluster() {
                if c.coordinator_for(&g).map(|r| r.broker_id) != Some(me) {
                    continue;
                }
            }
            let Ok(offsets) = self.meta.committed_offsets(&g).await else {
                continue;
            };
            for o in offsets {
                let Some(p) = self
                    .registry
                    .topic(&o.topic)
                    .and_then(|t| t.partition(o.partition).cloned())
                else {
                    continue;
                };
                let Ok(hw) = p.state.lock().map(|st| st.high_watermark) else {
                    continue;
                };
                let label = crate::metrics::GroupPartitionLabel {
                    group: g.clone(),
                    topic: o.topic,
                    partition: o.partition,
                };
                lags.push((label, (hw - o.committed.offset).max(0)));
            }
        }
        // Replaced whole, so deleted groups and moved coordinators leave no stale series.
        self.metrics.group_lag_offsets.clear();
        for (label, lag) in lags {
            self.metrics
                .group_lag_offsets
                .get_or_create(&label)
                .set(lag);
        }
    }

    /// Durable bytes not yet archived, and whether an upload is due.
    fn pending(&self, topic: &Topic, p: &Partition, force: bool) -> (u64, bool) {
        let segment_interval = topic
            .segment_interval
            .unwrap_or(self.config.segment_interval);
        let segment_bytes = topic.segment_bytes.unwrap_or(self.config.segment_bytes);
        let Ok(mut st) = p.state.lock() else {
            return (0, false);
        };
        // In a cluster only the leader archives (and commits, fenced by its epoch).
        if !matches!(st.role, Role::Single | Role::Leader { .. }) {
            return (0, false);
        }
        let now = self.config.clock.monotonic();
        // Committed data with no segment.ms clock (e.g. a broker that just became leader of
        // data it copied as a follower): the clock starts now.
        if st.pending_since.is_none() && st.high_watermark > st.uploaded_end {
            st.pending_since = Some(now);
        }

        let from = st.find(st.uploaded_end);
        let bytes: u64 = st.index[from..]
            .iter()
            .take_while(|e| e.end_offset <= st.high_watermark)
            .map(|e| u64::from(e.pos.len))
            .sum();
        let aged = st
            .pending_since
            .is_some_and(|t| now.saturating_sub(t) >= segment_interval);
        let backing_off = st.upload_retry_at.is_some_and(|t| now < t);
        (
            bytes,
            bytes > 0 && (force || (!backing_off && (aged || bytes >= segment_bytes))),
        )
    }

    async fn upload_partition(
        &self,
        topic: &Arc<Topic>,
        index: i32,
        p: &Partition,
    ) -> Result<Option<u64>, UploadError> {
        let started = self.config.clock.monotonic();
        if self.cluster().is_some() {
            // A leader continues from the index's end, wherever the previous leader left it.
            self.refresh_archive(topic, index, p)
                .await
                .map_err(|e| from_meta(&e))?;
        }
        let limit = topic
            .segment_bytes
            .unwrap_or(self.config.segment_bytes)
            .saturating_mul(MAX_SEGMENT_FACTOR)
            .max(1);
        let (entries, epoch) = {
            let st = p
                .state
                .lock()
                .map_err(|_| UploadError::Permanent("partition state poisoned".into()))?;
            let from = st.find(st.uploaded_end);
            let mut taken = 0u64;
            let entries: Vec<_> = st.index[from..]
                .iter()
                .take_while(|e| e.end_offset <= st.high_watermark)
                .take_while(|e| {
                    let go = taken < limit;
                    taken += u64::from(e.pos.len);
                    go
                })
                .copied()
                .collect();
            (entries, st.leader_epoch)
        };
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let path = segment::object_path(
            &self.object_store.prefix,
            &topic.meta.name,
            index,
            first.base_offset,
            epoch,
        );
        let meta = SegmentMeta {
            topic: topic.meta.name.clone(),
            topic_id: topic.meta.id,
            partition: index,
            leader_epoch: epoch,
        };
        let (segments, store, handle, part_bytes, target, local) = (
            self.segments.clone(),
            self.object_store.store.clone(),
            tokio::runtime::Handle::current(),
            self.config.multipart_part_bytes,
            path.clone(),
            self.object_store.local.clone(),
        );
        // Encoded a row group at a time and streamed out (multipart above `part_bytes`): only
        // one row group of the segment is in memory at once. Encoding runs on the low-priority
        // encoder threads, so it never takes the CPU from produce and fetch.
        let info = self
            .encoders
            .run(move || {
                // Local files are written by this thread itself, at its low priority.
                let out = match &local {
                    Some(l) => ObjectWrite::local(&l.fs, &target).map_err(JobError::Io)?,
                    None => ObjectWrite::new(handle, store, target, part_bytes),
                };
                // A failure from here on drops the encoder and its ObjectWrite, which aborts
                // the multipart upload (or removes the staged file): nothing is left behind.
                let mut enc = SegmentEncoder::new(out, &meta, &WriteOptions::default())
                    .map_err(JobError::Segment)?;
                for e in &entries {
                    let batch = segments
                        .read(&e.pos)
                        .map_err(|e| JobError::Wal(e.to_string()))?;
                    enc.push(&batch).map_err(JobError::Segment)?;
                }
                let (out, info) = enc.finish().map_err(JobError::Segment)?;
                out.finish().map_err(JobError::Io)?;
                Ok::<_, JobError>(info)
            })
            .await?
            .map_err(|e| match e {
                JobError::Wal(m) => {
                    UploadError::Permanent(format!("reading WAL data for {path}: {m}"))
                }
                JobError::Segment(e) => match from_segment(&e) {
                    UploadError::Retriable(m) => {
                        UploadError::Retriable(format!("writing {path}: {m}"))
                    }
                    UploadError::Permanent(m) => {
                        UploadError::Permanent(format!("writing {path}: {m}"))
                    }
                },
                JobError::Io(e) => UploadError::Retriable(format!("writing {path}: {e}")),
            })?;
        let entry = SegmentEntry {
            base_offset: info.base_offset,
            end_offset: info.end_offset,
            min_timestamp: info.min_timestamp,
            max_timestamp: info.max_timestamp,
            size_bytes: info.size_bytes,
            leader_epoch: epoch,
            path: path.as_ref().to_string(),
        };
        self.meta
            .add_segment(topic.meta.id, index, entry.clone())
            .await
            .map_err(|e| from_meta(&e))?;
        let mut below_log_start = false;
        if let Ok(mut st) = p.state.lock() {
            below_log_start = entry.end_offset <= st.log_start_offset;
            st.uploaded_end = info.end_offset;
            // What arrived meanwhile has waited since this upload began, at most.
            st.pending_since = (st.high_watermark > st.uploaded_end).then_some(started);
            if entry.end_offset > st.log_start_offset {
                let mut archive = (*st.archive).clone();
                archive.push(entry.clone());
                st.archive = Arc::new(archive);
            }
        }
        if below_log_start {
            // DeleteRecords moved the log start past this data while it was being archived:
            // the index did not keep the segment, so its object goes at once.
            self.delete_objects(std::slice::from_ref(&entry)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_encoder_job_is_reported_and_the_pool_keeps_working() {
        let pool = EncoderPool::new(1);
        let e = pool
            .run(|| -> u32 { panic!("boom") })
            .await
            .expect_err("the panic is an error");
        assert!(e.is_permanent() && e.to_string().contains("boom"), "{e}");
        // The single thread survived and takes the next job.
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
