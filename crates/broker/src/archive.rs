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
use object_store::ObjectStore;
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
}

/// Where a read stopped, to read ahead from.
#[derive(Clone, Copy)]
struct Cursor {
    segment: usize,
    row_group: usize,
}

impl Archive {
    pub async fn open(
        config: &BrokerConfig,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let builder = HybridCacheBuilder::new()
            .with_name("sediment-archive")
            .memory(config.cache_memory_bytes.max(1024 * 1024))
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
            .storage();
        let builder = if config.cache_disk_bytes >= 4 * BLOCK_BYTES {
            let dir: PathBuf = config
                .cache_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("cache"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating cache dir {}: {e}", dir.display()))?;
            let device = FsDeviceBuilder::new(&dir)
                .with_capacity(config.cache_disk_bytes)
                .build()
                .map_err(|e| format!("opening the disk cache in {}: {e}", dir.display()))?;
            builder.with_engine_config(BlockEngineConfig::new(device).with_block_size(BLOCK_BYTES))
        } else {
            builder
        };
        let chunks = builder
            .build()
            .await
            .map_err(|e| format!("building the archive cache: {e}"))?;
        let footers = CacheBuilder::new(64 * 1024 * 1024)
            .with_weighter(|k: &String, v: &Arc<ParquetMetaData>| k.len() + v.memory_size())
            .build();
        Ok(Self {
            store,
            chunks,
            footers,
            metrics,
            readahead: config.readahead_chunks,
        })
    }

    /// A segment's footer, from the cache or one or two ranged GETs.
    async fn footer(
        &self,
        topic_id: Uuid,
        seg: &SegmentEntry,
    ) -> Result<Arc<ParquetMetaData>, String> {
        let key = format!("{topic_id}:{}:{}", seg.path, seg.size_bytes);
        if let Some(e) = self.footers.get(&key) {
            return Ok(e.value().clone());
        }
        let path = ObjectPath::from(seg.path.as_str());
        let meta = segment::read_metadata(self.store.as_ref(), &path, seg.size_bytes)
            .await
            .map_err(|e| format!("reading the footer of {}: {e}", seg.path))?;
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
    ) -> Result<Bytes, String> {
        let key = format!("{topic_id}:{}:{}:{rg}", seg.path, seg.size_bytes);
        let (store, meta, metrics) = (self.store.clone(), meta.clone(), self.metrics.clone());
        let path = ObjectPath::from(seg.path.as_str());
        let entry = self
            .chunks
            .get_or_fetch(&key, move || async move {
                metrics.archive_cache_misses.inc();
                let ranges = segment::row_group_ranges(&meta, rg)?;
                let parts = store.get_ranges(&path, &ranges).await?;
                let batches = tokio::task::spawn_blocking(move || {
                    segment::decode_row_group(meta, rg, &ranges, parts)
                })
                .await??;
                Ok::<Bytes, anyhow::Error>(batches)
            })
            .await
            .map_err(|e| format!("reading {} row group {rg}: {e}", seg.path))?;
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
    ) -> Result<Vec<Bytes>, String> {
        let mut out: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut next = offset;
        let mut cursor: Option<Cursor> = None;
        let mut i = segments.partition_point(|s| s.end_offset <= offset);
        'segments: while let Some(seg) = segments.get(i) {
            let meta = self.footer(topic_id, seg).await?;
            let mut rg = match segment::row_group_for(&meta, next).map_err(|e| e.to_string())? {
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

    /// Loads the `readahead` chunks after `from` into the cache, concurrently.
    async fn read_ahead(&self, topic_id: Uuid, segments: Arc<Vec<SegmentEntry>>, from: Cursor) {
        let mut wanted = Vec::new();
        let (mut i, mut rg) = (from.segment, from.row_group + 1);
        while wanted.len() < self.readahead {
            let Some(seg) = segments.get(i) else { break };
            let Ok(meta) = self.footer(topic_id, seg).await else {
                break;
            };
            if rg >= meta.num_row_groups() {
                i += 1;
                rg = 0;
                continue;
            }
            wanted.push((seg.clone(), meta, rg));
            rg += 1;
        }
        let loads = wanted
            .iter()
            .map(|(seg, meta, rg)| self.chunk(topic_id, seg, meta, *rg));
        for r in futures::future::join_all(loads).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "read-ahead failed");
            }
        }
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
    ) -> Result<Option<(i64, i64)>, String> {
        for seg in segments {
            if seg.end_offset <= offset || seg.max_timestamp < timestamp {
                continue;
            }
            let meta = self.footer(topic_id, seg).await?;
            for rg in 0..meta.num_row_groups() {
                let (_, last) = segment::row_group_offsets(&meta, rg).map_err(|e| e.to_string())?;
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
                    .map_err(|e| e.to_string())?;
                    if let Some((o, t)) = found.filter(|(o, _)| *o >= offset) {
                        return Ok(Some((o, t)));
                    }
                }
            }
        }
        Ok(None)
    }
}
