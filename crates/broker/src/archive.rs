//! Reading the archive: fetches below the WAL tail served from Parquet segments.
//!
//! The unit of reading and caching is a *chunk*: the record batches that start in one row group
//! of a segment, rebuilt from its rows (original producer id/epoch, sequences, attributes and
//! compression codec) and kept as concatenated Kafka batches. A chunk is fetched with ranged
//! GETs of just that row group's column chunks (the footer, cached separately, says where they
//! are), decoded on a blocking thread, and kept in a foyer hybrid cache (memory, then local
//! disk). A consumer reading from offset 0 holds at most the cache's memory plus the chunks of
//! its read-ahead: never the topic. Each archive read also starts loading the next
//! `readahead_chunks` chunks in parallel, so a sequential catch-up keeps several GETs in flight.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Cache, CacheBuilder, DeviceBuilder, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder,
};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::ParquetMetaData;
use sediment_meta::SegmentEntry;
use sediment_storage::segment;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::BrokerConfig;

/// Largest value the disk cache's blocks can hold.
const BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// The archive reader and its caches.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    chunks: HybridCache<String, Bytes>,
    footers: Cache<String, Arc<ParquetMetaData>>,
    metrics: Arc<Metrics>,
    readahead: usize,
    /// Chunks a read-ahead is fetching.
    scheduled: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Largest GET of a read-ahead run.
const RUN_BYTES: u64 = 16 * 1024 * 1024;

/// Consecutive row groups of one segment fetched with one GET.
struct Run {
    segment: usize,
    seg: SegmentEntry,
    meta: Arc<ParquetMetaData>,
    span: std::ops::Range<u64>,
    chunks: Vec<(usize, String, Vec<std::ops::Range<u64>>)>,
    /// Still accepting the next row group.
    open: bool,
}

fn span_of(ranges: &[std::ops::Range<u64>]) -> std::ops::Range<u64> {
    let start = ranges.iter().map(|r| r.start).min().unwrap_or(0);
    let end = ranges.iter().map(|r| r.end).max().unwrap_or(start);
    start..end
}

fn chunk_key(topic_id: Uuid, seg: &SegmentEntry, rg: usize) -> String {
    format!("{topic_id}:{}:{}:{rg}", seg.path, seg.size_bytes)
}

/// Where a read stopped, to read ahead from.
#[derive(Clone, Copy)]
struct Cursor {
    segment: usize,
    row_group: usize,
}

impl Archive {
    /// The chunk cache: memory, plus `disk_bytes` of foyer's block engine under `dir`
    /// (memory only below four blocks).
    async fn build_cache(
        config: &BrokerConfig,
        dir: &std::path::Path,
        disk_bytes: usize,
    ) -> Result<HybridCache<String, Bytes>, String> {
        let builder = HybridCacheBuilder::new()
            .with_name("sediment-archive")
            .memory(config.cache_memory_bytes.max(1024 * 1024))
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
            .storage();
        let builder = if disk_bytes >= 4 * BLOCK_BYTES {
            // Direct I/O: cache blocks go to the disk without a copy into the page cache (half
            // the broker's CPU during a cold catch-up went to that copy). Filesystems without
            // O_DIRECT (tmpfs) get buffered I/O.
            let device = match FsDeviceBuilder::new(dir)
                .with_capacity(disk_bytes)
                .with_direct(true)
                .build()
            {
                Ok(device) => device,
                Err(e) => {
                    tracing::info!(dir = %dir.display(), error = %e, "disk cache without direct I/O");
                    FsDeviceBuilder::new(dir)
                        .with_capacity(disk_bytes)
                        .build()
                        .map_err(|e| format!("opening the disk cache in {}: {e}", dir.display()))?
                }
            };
            builder.with_engine_config(BlockEngineConfig::new(device).with_block_size(BLOCK_BYTES))
        } else {
            builder
        };
        builder
            .build()
            .await
            .map_err(|e| format!("building the archive cache: {e}"))
    }

    pub async fn open(
        config: &BrokerConfig,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let dir: PathBuf = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("cache"));
        // The disk part never takes more than a quarter of its filesystem (a small data volume
        // must keep room for the WAL), and a disk part that cannot be made (a full disk at
        // start-up) leaves the cache in memory rather than the broker down.
        let mut disk_bytes = config.cache_disk_bytes;
        if disk_bytes >= 4 * BLOCK_BYTES {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "no disk cache: its directory cannot be made");
                disk_bytes = 0;
            } else if let Ok(fs) = crate::disk::space(&dir) {
                let fitting = crate::disk::fitting_cache_bytes(disk_bytes, fs.total);
                if fitting < disk_bytes {
                    tracing::info!(
                        asked = disk_bytes,
                        fitting,
                        filesystem = fs.total,
                        "disk cache shrunk to a quarter of its filesystem"
                    );
                    disk_bytes = fitting;
                }
            }
        }
        let chunks = match Self::build_cache(config, &dir, disk_bytes).await {
            Ok(c) => c,
            Err(e) if disk_bytes >= 4 * BLOCK_BYTES => {
                tracing::warn!(error = %e, "disk cache unavailable; caching in memory only");
                disk_bytes = 0;
                Self::build_cache(config, &dir, 0).await?
            }
            Err(e) => return Err(e),
        };
        tracing::info!(
            memory_bytes = config.cache_memory_bytes,
            disk_bytes,
            "archive read cache"
        );
        let footers = CacheBuilder::new(64 * 1024 * 1024)
            .with_weighter(|k: &String, v: &Arc<ParquetMetaData>| k.len() + v.memory_size())
            .build();
        Ok(Self {
            store,
            chunks,
            footers,
            metrics,
            readahead: config.readahead_chunks,
            scheduled: Default::default(),
        })
    }

    /// A segment's footer, from the cache or one or two ranged GETs.
    async fn footer(
        &self,
        topic_id: Uuid,
        seg: &SegmentEntry,
    ) -> Result<Arc<ParquetMetaData>, ArchiveError> {
        let key = format!("{topic_id}:{}:{}", seg.path, seg.size_bytes);
        if let Some(e) = self.footers.get(&key) {
            return Ok(e.value().clone());
        }
        let path = ObjectPath::from(seg.path.as_str());
        let meta = segment::read_metadata(self.store.as_ref(), &path, seg.size_bytes)
            .await
            .map_err(|e| {
                ArchiveError::of_segment(&e, format!("reading the footer of {}", seg.path))
            })?;
        let meta = Arc::new(meta);
        self.footers.insert(key, meta.clone());
        Ok(meta)
    }

    /// The batches that start in row group `rg` of a segment, concatenated.
    async fn chunk(
        &self,
        topic_id: Uuid,
        seg: &SegmentEntry,
        meta: &Arc<ParquetMetaData>,
        rg: usize,
    ) -> Result<Bytes, ArchiveError> {
        let key = chunk_key(topic_id, seg, rg);
        let (store, meta, metrics) = (self.store.clone(), meta.clone(), self.metrics.clone());
        let path = ObjectPath::from(seg.path.as_str());
        self.metrics.archive_cache_lookups.inc();
        let entry = self
            .chunks
            .get_or_fetch(&key, move || async move {
                metrics.archive_cache_misses.inc();
                metrics.archive_gets.inc();
                let ranges = segment::row_group_ranges(&meta, rg)
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                // The column chunks of a row group are contiguous: one GET.
                let parts = store
                    .get_ranges(&path, &ranges)
                    .await
                    .map_err(|e| ArchiveError::of_store(&e))?;
                let batches = tokio::task::spawn_blocking(move || {
                    segment::decode_row_group(meta, rg, &ranges, parts)
                })
                .await
                .map_err(|e| ArchiveError::Unavailable(e.to_string()))?
                .map_err(|e| ArchiveError::of_segment(&e, "decoding".into()))?;
                Ok::<Bytes, anyhow::Error>(batches)
            })
            .await
            .map_err(|e| {
                let what = format!("reading {} row group {rg}", seg.path);
                match e.downcast_ref::<ArchiveError>() {
                    Some(a) => a.context(&what),
                    None => ArchiveError::Unavailable(format!("{what}: {e}")),
                }
            })?;
        Ok(entry.value().clone())
    }

    /// Record batches from the one holding `offset`, through `segments` (a partition's committed
    /// segments in offset order), up to `max_bytes` (the first batch always), as slices of the
    /// cached chunks, each holding whole batches back to back. Starts reading ahead of where it
    /// stopped.
    pub async fn read(
        self: &Arc<Self>,
        topic_id: Uuid,
        segments: Arc<Vec<SegmentEntry>>,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, ArchiveError> {
        let mut out: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut next = offset;
        let mut cursor: Option<Cursor> = None;
        let mut i = segments.partition_point(|s| s.end_offset <= offset);
        'segments: while let Some(seg) = segments.get(i) {
            let meta = self.footer(topic_id, seg).await?;
            let mut rg = match segment::row_group_for(&meta, next)
                .map_err(|e| ArchiveError::Corrupt(e.to_string()))?
            {
                Some(rg) => rg,
                None => {
                    i += 1;
                    continue;
                }
            };
            while rg < meta.num_row_groups() {
                let data = self.chunk(topic_id, seg, &meta, rg).await?;
                cursor = Some(Cursor {
                    segment: i,
                    row_group: rg,
                });
                // Batches served from one chunk are contiguous in it: hand out one slice of the
                // cached buffer, not a copy per batch.
                let mut from: Option<usize> = None;
                let mut to = 0usize;
                let mut full = false;
                for b in sediment_protocol::batch::spans(&data) {
                    if b.end_offset <= next {
                        continue;
                    }
                    if (!out.is_empty() || from.is_some()) && total + b.len > max_bytes {
                        full = true;
                        break;
                    }
                    from.get_or_insert(b.start);
                    to = b.start + b.len;
                    total += b.len;
                    next = b.end_offset;
                }
                if let Some(from) = from {
                    out.push(data.slice(from..to));
                }
                if full {
                    break 'segments;
                }
                if total >= max_bytes {
                    break 'segments;
                }
                rg += 1;
            }
            i += 1;
        }
        self.metrics.archive_read_bytes.inc_by(total as u64);
        if let Some(c) = cursor {
            if self.readahead > 0 {
                let me = self.clone();
                tokio::spawn(async move { me.read_ahead(topic_id, segments, c).await });
            }
        }
        Ok(out)
    }

    /// Loads the `readahead` chunks after `from` into the cache. Chunks missing from the cache
    /// are fetched in runs: consecutive row groups of one segment, up to [`RUN_BYTES`], with one
    /// ranged GET each (a run may reach past the window, so that as the window slides the next
    /// chunks are already on their way and later GETs stay large).
    async fn read_ahead(&self, topic_id: Uuid, segments: Arc<Vec<SegmentEntry>>, from: Cursor) {
        let mut runs: Vec<Run> = Vec::new();
        let mut promote: Vec<String> = Vec::new();
        let (mut i, mut rg) = (from.segment, from.row_group + 1);
        let mut seen = 0usize;
        // Chunks looked at: the window, plus what the last run may take beyond it.
        while seen < self.readahead || runs.last().is_some_and(|r| r.open) {
            let Some(seg) = segments.get(i) else { break };
            let Ok(meta) = self.footer(topic_id, seg).await else {
                break;
            };
            if rg >= meta.num_row_groups() {
                if let Some(r) = runs.last_mut() {
                    r.open = false;
                }
                i += 1;
                rg = 0;
                continue;
            }
            let in_window = seen < self.readahead;
            seen += 1;
            let key = chunk_key(topic_id, seg, rg);
            let Ok(ranges) = segment::row_group_ranges(&meta, rg) else {
                break;
            };
            let cached = self.chunks.contains(&key);
            if in_window && cached && !self.chunks.memory().contains(&key) && self.schedule(&key) {
                // On the disk tier: loaded into memory ahead of the reader, in parallel.
                promote.push(key.clone());
            }
            let missing = !cached && self.schedule(&key);
            let span = span_of(&ranges);
            let extends = runs.last().is_some_and(|r| {
                r.open && r.segment == i && span.end.saturating_sub(r.span.start) <= RUN_BYTES
            });
            match (missing, extends) {
                (true, true) => {
                    if let Some(r) = runs.last_mut() {
                        r.span.end = r.span.end.max(span.end);
                        r.chunks.push((rg, key, ranges));
                    }
                }
                (true, false) if in_window => {
                    if let Some(r) = runs.last_mut() {
                        r.open = false;
                    }
                    runs.push(Run {
                        segment: i,
                        seg: seg.clone(),
                        meta: meta.clone(),
                        span,
                        chunks: vec![(rg, key, ranges)],
                        open: true,
                    });
                }
                (true, false) => {
                    // Past the window and not joining a run: leave it to a later read-ahead.
                    self.unschedule(std::slice::from_ref(&key));
                    if let Some(r) = runs.last_mut() {
                        r.open = false;
                    }
                }
                (false, _) => {
                    if let Some(r) = runs.last_mut() {
                        r.open = false;
                    }
                }
            }
            rg += 1;
        }
        let loads = runs.into_iter().map(|r| self.load_run(r));
        let promotes = promote.iter().map(|k| self.chunks.get(k));
        let (_, promoted) = futures::future::join(
            futures::future::join_all(loads),
            futures::future::join_all(promotes),
        )
        .await;
        for r in promoted {
            if let Err(e) = r {
                tracing::debug!(error = %e, "loading a chunk from the disk cache failed");
            }
        }
        self.unschedule(&promote);
    }

    /// Marks a chunk as being fetched by a read-ahead; false if one already is.
    fn schedule(&self, key: &str) -> bool {
        self.scheduled
            .lock()
            .map(|mut s| s.insert(key.to_string()))
            .unwrap_or(false)
    }

    fn unschedule(&self, keys: &[String]) {
        if let Ok(mut s) = self.scheduled.lock() {
            for k in keys {
                s.remove(k);
            }
        }
    }

    /// Fetches a run's bytes with one GET and caches each of its chunks. A reader asking for one
    /// of them meanwhile waits for this fetch (the cache merges requests for a key).
    async fn load_run(&self, run: Run) {
        use futures::FutureExt;
        let path = ObjectPath::from(run.seg.path.as_str());
        let span = run.span.clone();
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let bytes = async move {
            metrics.archive_gets.inc();
            store
                .get_range(&path, span)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
        .shared();
        let keys: Vec<String> = run.chunks.iter().map(|(_, k, _)| k.clone()).collect();
        let loads = run.chunks.into_iter().map(|(rg, key, ranges)| {
            let (bytes, meta, metrics, start) = (
                bytes.clone(),
                run.meta.clone(),
                self.metrics.clone(),
                run.span.start,
            );
            metrics.archive_cache_lookups.inc();
            self.chunks.get_or_fetch(&key, move || async move {
                metrics.archive_cache_misses.inc();
                let all = bytes.await.map_err(anyhow::Error::msg)?;
                let parts = ranges
                    .iter()
                    .map(|r| {
                        let (from, to) = ((r.start - start) as usize, (r.end - start) as usize);
                        all.get(from..to).map(|_| all.slice(from..to))
                    })
                    .collect::<Option<Vec<Bytes>>>()
                    .ok_or_else(|| anyhow::anyhow!("short read of a row group"))?;
                let batches = tokio::task::spawn_blocking(move || {
                    segment::decode_row_group(meta, rg, &ranges, parts)
                })
                .await??;
                Ok::<Bytes, anyhow::Error>(batches)
            })
        });
        for r in futures::future::join_all(loads).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, path = %run.seg.path, "read-ahead failed");
            }
        }
        self.unschedule(&keys);
    }

    /// The offset of the first record at or after `offset` whose timestamp is at least
    /// `timestamp`, with that record's timestamp, searching `segments`; `None` if no archived
    /// record qualifies.
    pub async fn offset_for_time(
        &self,
        topic_id: Uuid,
        segments: &[SegmentEntry],
        offset: i64,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ArchiveError> {
        for seg in segments {
            if seg.end_offset <= offset || seg.max_timestamp < timestamp {
                continue;
            }
            let meta = self.footer(topic_id, seg).await?;
            for rg in 0..meta.num_row_groups() {
                let (_, last) = segment::row_group_offsets(&meta, rg)
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                if last < offset
                    || segment::row_group_max_timestamp(&meta, rg).is_some_and(|t| t < timestamp)
                {
                    continue;
                }
                let data = self.chunk(topic_id, seg, &meta, rg).await?;
                for b in sediment_protocol::batch::spans(&data) {
                    if b.end_offset <= offset {
                        continue;
                    }
                    let batch = data.slice(b.start..b.start + b.len);
                    let found = tokio::task::spawn_blocking(move || {
                        crate::handlers::list_offsets::first_at_or_after(&batch, timestamp)
                    })
                    .await
                    .map_err(|e| ArchiveError::Unavailable(e.to_string()))?;
                    if let Some((o, t)) = found.filter(|(o, _)| *o >= offset) {
                        return Ok(Some((o, t)));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Why an archive read failed: the object store could not serve it (retry), or the segment
/// does not decode (a damaged or foreign object: retrying will not help; logged as an error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Corrupt(String),
}

impl ArchiveError {
    fn of_store(e: &object_store::Error) -> Self {
        match e {
            // The index names the object: its absence is damage, not an outage.
            object_store::Error::NotFound { .. } => ArchiveError::Corrupt(e.to_string()),
            _ => ArchiveError::Unavailable(e.to_string()),
        }
    }

    fn of_segment(e: &segment::SegmentError, what: String) -> Self {
        match e {
            segment::SegmentError::Store(s) => Self::of_store(s).context(&what),
            _ => ArchiveError::Corrupt(format!("{what}: {e}")),
        }
    }

    fn context(&self, what: &str) -> Self {
        match self {
            ArchiveError::Unavailable(m) => ArchiveError::Unavailable(format!("{what}: {m}")),
            ArchiveError::Corrupt(m) => ArchiveError::Corrupt(format!("{what}: {m}")),
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, ArchiveError::Corrupt(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use sediment_protocol::batch::{encode, stamp, NewRecord, Producer};
    use sediment_storage::segment::{encode_segment, SegmentMeta, WriteOptions};

    /// Batch `i`: 4 records of 4 KiB values, offsets 4i..4i+4.
    fn batch(i: i64) -> Bytes {
        let records: Vec<NewRecord> = (0..4)
            .map(|n| NewRecord {
                key: Some(Bytes::from(format!("k{i}-{n}"))),
                value: Some(Bytes::from(vec![(i % 251) as u8; 4096])),
                timestamp: i * 10 + n,
                headers: vec![],
            })
            .collect();
        let producer = Producer {
            id: -1,
            epoch: -1,
            first_sequence: -1,
        };
        let b = encode(
            &records,
            producer,
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
        stamp(&b, 4 * i, 0)
    }

    const TOPIC: Uuid = Uuid::from_u128(9);

    /// A segment of 400 batches (offsets 0..1600) in row groups of ~64 KiB (100 of them) in an
    /// in-memory store.
    async fn stored_segment() -> (Arc<dyn ObjectStore>, SegmentEntry, Vec<Bytes>) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let batches: Vec<Bytes> = (0..400).map(batch).collect();
        let meta = SegmentMeta {
            topic: "t".into(),
            topic_id: TOPIC,
            partition: 0,
            leader_epoch: 0,
        };
        let opts = WriteOptions {
            row_group_bytes: 64 * 1024,
            ..WriteOptions::default()
        };
        let (data, info) = encode_segment(&batches, &meta, &opts).unwrap();
        let path = "topics/t/p0/seg.parquet";
        store
            .put(&ObjectPath::from(path), PutPayload::from(data))
            .await
            .unwrap();
        let seg = SegmentEntry {
            base_offset: info.base_offset,
            end_offset: info.end_offset,
            min_timestamp: info.min_timestamp,
            max_timestamp: info.max_timestamp,
            size_bytes: info.size_bytes,
            leader_epoch: 0,
            path: path.into(),
        };
        (store, seg, batches)
    }

    #[tokio::test]
    async fn a_damaged_or_missing_segment_is_a_permanent_error_not_an_outage() {
        let (store, seg, _) = stored_segment().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.cache_disk_bytes = 0;
        config.readahead_chunks = 0;
        let archive = Arc::new(
            Archive::open(&config, store.clone(), Arc::new(Metrics::default()))
                .await
                .unwrap(),
        );
        // Garbage where the index says a segment is.
        let garbage = SegmentEntry {
            path: "topics/t/p0/garbage.parquet".into(),
            size_bytes: 4096,
            ..seg.clone()
        };
        store
            .put(
                &ObjectPath::from(garbage.path.as_str()),
                PutPayload::from(vec![0x5au8; 4096]),
            )
            .await
            .unwrap();
        let e = archive
            .read(TOPIC, Arc::new(vec![garbage]), 0, 1 << 20)
            .await
            .unwrap_err();
        assert!(e.is_permanent(), "{e}");
        // A segment the index names but the store does not have.
        let missing = SegmentEntry {
            path: "topics/t/p0/missing.parquet".into(),
            ..seg.clone()
        };
        let e = archive
            .read(TOPIC, Arc::new(vec![missing]), 0, 1 << 20)
            .await
            .unwrap_err();
        assert!(e.is_permanent(), "{e}");
        // The real one still reads.
        assert!(!archive
            .read(TOPIC, Arc::new(vec![seg]), 0, 1 << 20)
            .await
            .unwrap()
            .is_empty());
    }

    /// Every batch of `seg` read from offset 0, about one row group per read, as a consumer
    /// with a small fetch size.
    async fn read_through(archive: &Arc<Archive>, seg: &SegmentEntry) -> Vec<Bytes> {
        let segments = Arc::new(vec![seg.clone()]);
        let mut got: Vec<Bytes> = Vec::new();
        let mut next = 0i64;
        while next < seg.end_offset {
            let parts = archive
                .read(TOPIC, segments.clone(), next, 60 * 1024)
                .await
                .unwrap();
            assert!(!parts.is_empty(), "a read at {next} returned nothing");
            for p in parts {
                for s in sediment_protocol::batch::spans(&p) {
                    got.push(p.slice(s.start..s.start + s.len));
                    next = s.end_offset;
                }
            }
            // A consumer's next fetch comes a network round trip later.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sequential_read_gets_every_batch_with_few_large_gets() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg, batches) = stored_segment().await;
        let mut config = BrokerConfig::new(dir.path());
        config.cache_disk_bytes = 0;
        config.readahead_chunks = 8;
        let metrics = Arc::new(Metrics::default());
        let archive = Arc::new(
            Archive::open(&config, store, metrics.clone())
                .await
                .unwrap(),
        );
        let row_groups = archive.footer(TOPIC, &seg).await.unwrap().num_row_groups();
        assert!(row_groups >= 90, "{row_groups} row groups");
        assert_eq!(
            read_through(&archive, &seg).await,
            batches,
            "every batch, in order, as produced"
        );
        let gets = metrics.archive_gets.get() as usize;
        assert!(
            gets * 10 <= row_groups,
            "{gets} GETs for {row_groups} row groups: read-ahead should fetch them in runs"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_read_larger_than_the_memory_tier_comes_from_the_disk_tier() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg, batches) = stored_segment().await;
        let mut config = BrokerConfig::new(dir.path());
        // 1 MiB of memory for a 6.5 MB segment: most chunks must come back from disk.
        config.cache_memory_bytes = 1024 * 1024;
        config.cache_disk_bytes = 64 * 1024 * 1024;
        let metrics = Arc::new(Metrics::default());
        let archive = Arc::new(
            Archive::open(&config, store, metrics.clone())
                .await
                .unwrap(),
        );
        assert_eq!(read_through(&archive, &seg).await, batches);
        let (gets, misses) = (
            metrics.archive_gets.get(),
            metrics.archive_cache_misses.get(),
        );
        assert!(gets > 0 && misses > 0);
        // Evicted chunks reach the disk tier in the background.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert_eq!(read_through(&archive, &seg).await, batches);
        assert_eq!(
            (
                metrics.archive_gets.get(),
                metrics.archive_cache_misses.get()
            ),
            (gets, misses),
            "the second read went to the object store again"
        );
    }
}
