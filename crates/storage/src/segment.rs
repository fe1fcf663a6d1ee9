//! The archive format: one Parquet file per uploaded segment of a partition (format version 1).
//!
//! A segment is a run of a partition's record batches, stored one row per record so that
//! DuckDB and Spark read topic archives directly, with the batch-level fields kept alongside so
//! that the broker can rebuild record batches that carry what the producer sent (compression
//! codec, timestamp type, producer id/epoch, sequences, leader epoch). docs/archive-format.md
//! documents the layout for outside tools; [`schema`] is its definition.
//!
//! Path: `<prefix>/topics/<topic>/partition=<n>/<base offset, 20 digits>-<leader epoch>.parquet`
//! (Hive style, so `read_parquet(..., hive_partitioning = true)` adds a `partition` column).
//! Statistics on `offset` and `timestamp` let readers skip row groups and files.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{
    Array, BinaryArray, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, TimestampType};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::{
    FooterTail, KeyValue, ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use sediment_protocol::batch::{BatchFields, RawRecord};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Version of the archive format, stored in every file's key-value metadata.
pub const FORMAT_VERSION: &str = "1";

/// Why a segment could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("record batch does not decode: {0}")]
    Batch(String),
    #[error("no records to write")]
    Empty,
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("segment is not in archive format {FORMAT_VERSION}: {0}")]
    Format(String),
}

/// Which partition a segment belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
}

/// What a written segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// Offset after the last record.
    pub end_offset: i64,
    pub records: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Rows per row group: small enough for a consumer's catch-up read to fetch little more than
    /// it needs, large enough for analytic scans.
    pub row_group_rows: usize,
    /// Payload bytes (keys, values, headers) per row group, the other bound; row groups end
    /// on batch boundaries once either is reached.
    pub row_group_bytes: usize,
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            row_group_rows: 32 * 1024,
            row_group_bytes: 4 * 1024 * 1024,
            zstd_level: 3,
        }
    }
}

/// `<prefix>/topics/<topic>/partition=<n>/<base offset>-<epoch>.parquet`.
pub fn object_path(
    prefix: &ObjectPath,
    topic: &str,
    partition: i32,
    base_offset: i64,
    leader_epoch: i32,
) -> ObjectPath {
    prefix
        .clone()
        .join("topics")
        .join(topic)
        .join(format!("partition={partition}"))
        .join(format!("{base_offset:020}-{leader_epoch}.parquet"))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The Arrow schema of archive format 1.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new(
            "headers",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(header_fields()),
                true,
            ))),
            false,
        ),
        Field::new("batch_offset", DataType::Int64, false),
        Field::new("batch_attributes", DataType::Int16, false),
        Field::new("producer_id", DataType::Int64, false),
        Field::new("producer_epoch", DataType::Int16, false),
        Field::new("sequence", DataType::Int32, false),
        Field::new("leader_epoch", DataType::Int32, false),
    ]))
}

fn compression_code(c: Compression) -> i16 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

struct Columns {
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
    batch_offset: Int64Builder,
    batch_attributes: Int16Builder,
    producer_id: Int64Builder,
    producer_epoch: Int16Builder,
    sequence: Int32Builder,
    leader_epoch: Int32Builder,
    rows: usize,
}

impl Columns {
    fn new() -> Self {
        let header = StructBuilder::from_fields(header_fields(), 0);
        Self {
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            headers: ListBuilder::new(header),
            batch_offset: Int64Builder::new(),
            batch_attributes: Int16Builder::new(),
            producer_id: Int64Builder::new(),
            producer_epoch: Int16Builder::new(),
            sequence: Int32Builder::new(),
            leader_epoch: Int32Builder::new(),
            rows: 0,
        }
    }

    /// Adds a record; `headers` is its header list when the batch was walked for one (a
    /// repeated key, which `r.headers` as a map would have merged).
    fn push(
        &mut self,
        r: &Record,
        headers: Option<&sediment_protocol::records::HeaderList>,
        batch_offset: i64,
        attributes: i16,
    ) {
        self.offset.append_value(r.offset);
        self.timestamp.append_value(r.timestamp);
        self.key.append_option(r.key.as_deref());
        self.value.append_option(r.value.as_deref());
        let entries = self.headers.values();
        let mut add = |k: &str, v: Option<&[u8]>| {
            if let Some(b) = entries.field_builder::<StringBuilder>(0) {
                b.append_value(k);
            }
            if let Some(b) = entries.field_builder::<BinaryBuilder>(1) {
                b.append_option(v);
            }
            entries.append(true);
        };
        match headers {
            Some(list) => list.iter().for_each(|(k, v)| add(k, v.as_deref())),
            None => r
                .headers
                .iter()
                .for_each(|(k, v)| add(k.as_str(), v.as_deref())),
        }
        self.headers.append(true);
        self.batch_offset.append_value(batch_offset);
        self.batch_attributes.append_value(attributes);
        self.producer_id.append_value(r.producer_id);
        self.producer_epoch.append_value(r.producer_epoch);
        self.sequence.append_value(r.sequence);
        self.leader_epoch.append_value(r.partition_leader_epoch);
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, SegmentError> {
        self.rows = 0;
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.offset.finish()),
                Arc::new(self.timestamp.finish()),
                Arc::new(self.key.finish()),
                Arc::new(self.value.finish()),
                Arc::new(self.headers.finish()),
                Arc::new(self.batch_offset.finish()),
                Arc::new(self.batch_attributes.finish()),
                Arc::new(self.producer_id.finish()),
                Arc::new(self.producer_epoch.finish()),
                Arc::new(self.sequence.finish()),
                Arc::new(self.leader_epoch.finish()),
            ],
        )?)
    }
}

/// Rows handed to the Parquet writer at a time (bounds the Arrow builders' memory).
const WRITE_ROWS: usize = 8 * 1024;

/// Builds one segment from a partition's consecutive record batches (as stored: base offsets
/// stamped), streaming it into `W` a row group at a time: only the current row group is held
/// in memory. Row groups end on batch boundaries, so every row group holds whole batches and a
/// reader rebuilding batches needs exactly the row groups its offsets fall in.
pub struct SegmentEncoder<W: Write + Send> {
    writer: ArrowWriter<Counting<W>>,
    cols: Columns,
    info: Option<SegmentInfo>,
    opts: WriteOptions,
    group_rows: usize,
    group_bytes: usize,
}

impl<W: Write + Send> SegmentEncoder<W> {
    pub fn new(out: W, meta: &SegmentMeta, opts: &WriteOptions) -> Result<Self, SegmentError> {
        let props = WriterProperties::builder()
            .set_compression(ParquetCompression::ZSTD(ZstdLevel::try_new(
                opts.zstd_level,
            )?))
            // Row groups are closed by `push`, on batch boundaries, never by the writer.
            .set_max_row_group_row_count(None)
            // Keys and values are mostly distinct: dictionaries would be built and thrown away.
            .set_dictionary_enabled(false)
            // Row-group statistics are what readers prune with (offset, timestamp); per-page ones
            // and min/max of payload bytes cost time on every value and help no query we know.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_column_statistics_enabled(ColumnPath::from("key"), EnabledStatistics::None)
            .set_column_statistics_enabled(ColumnPath::from("value"), EnabledStatistics::None)
            .set_key_value_metadata(Some(vec![
                kv("format_version", FORMAT_VERSION.into()),
                kv("topic", meta.topic.clone()),
                kv("topic_id", meta.topic_id.to_string()),
                kv("partition", meta.partition.to_string()),
                kv("leader_epoch", meta.leader_epoch.to_string()),
            ]))
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(
                Counting {
                    inner: out,
                    bytes: 0,
                },
                schema(),
                Some(props),
            )?,
            cols: Columns::new(),
            info: None,
            opts: opts.clone(),
            group_rows: 0,
            group_bytes: 0,
        })
    }

    /// Adds the next batch of the partition.
    pub fn push(&mut self, stored: &Bytes) -> Result<(), SegmentError> {
        let batch_offset = stored
            .get(0..8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or_else(|| SegmentError::Batch("shorter than a batch header".into()))?;
        // Capped: a compressed batch from a hostile producer must not expand without bound.
        let set = sediment_protocol::decompress::decode_batch(
            stored,
            sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
        )
        .map_err(|e| SegmentError::Batch(e.to_string()))?;
        // A LogAppendTime batch's records all carry the broker's append time, which only the
        // header's max timestamp holds (the decoder reports the producer's deltas): the archive
        // stores the time consumers see, and rebuilds the batch with it.
        let append_time = stored
            .get(35..43)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
        // Headers as lists (a key may repeat, which the decoder's map would merge); walked
        // only for batches that carry headers at all.
        let lists = if set.records.iter().any(|r| !r.headers.is_empty()) {
            let info = sediment_protocol::batch::validate(stored, usize::MAX)
                .map_err(|e| SegmentError::Batch(e.to_string()))?;
            let info = info
                .first()
                .ok_or_else(|| SegmentError::Batch("no batch".into()))?;
            Some(
                sediment_protocol::records::header_lists(
                    stored,
                    info,
                    sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
                )
                .map_err(|e| SegmentError::Batch(e.to_string()))?,
            )
        } else {
            None
        };
        for (n, mut r) in set.records.into_iter().enumerate() {
            if r.timestamp_type == TimestampType::LogAppend {
                if let Some(t) = append_time {
                    r.timestamp = t;
                }
            }
            let attributes = compression_code(set.compression)
                | if r.timestamp_type == TimestampType::LogAppend {
                    0x8
                } else {
                    0
                }
                | if r.transactional { 0x10 } else { 0 }
                | if r.control { 0x20 } else { 0 };
            let i = self.info.get_or_insert(SegmentInfo {
                base_offset: r.offset,
                end_offset: r.offset,
                records: 0,
                min_timestamp: r.timestamp,
                max_timestamp: r.timestamp,
                size_bytes: 0,
            });
            i.end_offset = r.offset + 1;
            i.records += 1;
            i.min_timestamp = i.min_timestamp.min(r.timestamp);
            i.max_timestamp = i.max_timestamp.max(r.timestamp);
            self.group_rows += 1;
            self.group_bytes += record_bytes(&r);
            let headers = lists.as_ref().and_then(|l| l.get(n));
            self.cols.push(&r, headers, batch_offset, attributes);
            if self.cols.rows >= WRITE_ROWS {
                self.writer.write(&self.cols.finish()?)?;
            }
        }
        if self.group_rows >= self.opts.row_group_rows.max(1)
            || self.group_bytes >= self.opts.row_group_bytes.max(1)
        {
            self.close_row_group()?;
        }
        Ok(())
    }

    fn close_row_group(&mut self) -> Result<(), SegmentError> {
        if self.cols.rows > 0 {
            self.writer.write(&self.cols.finish()?)?;
        }
        self.writer.flush()?;
        self.group_rows = 0;
        self.group_bytes = 0;
        Ok(())
    }

    /// Offsets and timestamps of what was pushed so far (`None` before the first record).
    pub fn info(&self) -> Option<&SegmentInfo> {
        self.info.as_ref()
    }

    /// Writes the last row group and the footer; returns the sink and what the file holds.
    pub fn finish(mut self) -> Result<(W, SegmentInfo), SegmentError> {
        let mut info = self.info.take().ok_or(SegmentError::Empty)?;
        self.close_row_group()?;
        self.writer
            .append_key_value_metadata(kv("base_offset", info.base_offset.to_string()));
        self.writer
            .append_key_value_metadata(kv("end_offset", info.end_offset.to_string()));
        let out = self.writer.into_inner()?;
        info.size_bytes = out.bytes;
        Ok((out.inner, info))
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue::new(format!("sediment.{k}"), v)
}

/// Bytes of a record's payload (key, value, headers): what row groups are sized by.
fn record_bytes(r: &Record) -> usize {
    r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
        + 32
}

/// Writes a partition's consecutive record batches as one segment held in memory.
pub fn encode_segment(
    batches: &[Bytes],
    meta: &SegmentMeta,
    opts: &WriteOptions,
) -> Result<(Bytes, SegmentInfo), SegmentError> {
    let mut enc = SegmentEncoder::new(Vec::new(), meta, opts)?;
    for b in batches {
        enc.push(b)?;
    }
    let (out, info) = enc.finish()?;
    Ok((Bytes::from(out), info))
}

/// A `std::io::Write` that streams a new object into the store from a blocking thread:
/// bytes are handed over in parts of `part_bytes`; an object smaller than that is one PUT, a
/// larger one a multipart upload (create, a PUT per part, complete). Nothing is visible under the path until [`ObjectWrite::finish`] completes.
pub struct ObjectWrite {
    /// `None` once finished or aborted; dropped with `Some`, the write is aborted.
    sink: Option<Sink>,
    pending: Vec<u8>,
    part_bytes: usize,
}

enum Sink {
    /// A network store: object_store's `BufWriter`, driven on the runtime (several parts in
    /// flight).
    Runtime {
        handle: tokio::runtime::Handle,
        inner: BufWriter,
    },
    /// A `file://` store: written by the calling thread itself, paced to the disk
    /// ([`crate::local`]).
    Local(crate::local::LocalFile),
}

/// Bytes gathered before one write to a local file.
const LOCAL_WRITE_BYTES: usize = 1024 * 1024;

impl ObjectWrite {
    /// `handle` drives the uploads; call this type's methods only off the runtime's threads
    /// (e.g. in `spawn_blocking`).
    pub fn new(
        handle: tokio::runtime::Handle,
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        part_bytes: usize,
    ) -> Self {
        let part_bytes = part_bytes.max(MIN_PART_BYTES);
        Self {
            sink: Some(Sink::Runtime {
                handle,
                // At most two parts in flight: with large parts, memory is what bounds them.
                inner: BufWriter::with_capacity(store, path, part_bytes).with_max_concurrency(2),
            }),
            pending: Vec::new(),
            part_bytes,
        }
    }

    /// Writes `path` of a `file://` store directly on the calling thread (not a runtime
    /// thread): see [`crate::local`].
    pub fn local(
        fs: &object_store::local::LocalFileSystem,
        path: &ObjectPath,
    ) -> std::io::Result<Self> {
        let dest = fs.path_to_filesystem(path).map_err(std::io::Error::other)?;
        Ok(Self {
            sink: Some(Sink::Local(crate::local::LocalFile::create(dest)?)),
            pending: Vec::with_capacity(LOCAL_WRITE_BYTES),
            part_bytes: LOCAL_WRITE_BYTES,
        })
    }

    fn hand_over(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match &mut self.sink {
            None => Err(std::io::Error::other("object write already ended")),
            Some(Sink::Runtime { handle, inner }) => {
                let part = Bytes::from(std::mem::take(&mut self.pending));
                handle
                    .block_on(inner.put(part))
                    .map_err(std::io::Error::other)
            }
            Some(Sink::Local(file)) => {
                file.write_all(&self.pending)?;
                self.pending.clear();
                Ok(())
            }
        }
    }

    /// Uploads what is left and completes the object.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.hand_over()?;
        match self.sink.take() {
            None => Err(std::io::Error::other("object write already ended")),
            // A multipart upload whose completion fails is aborted by object_store itself
            // (and `BufWriter::abort` must not be called after a shutdown: it panics).
            Some(Sink::Runtime { handle, mut inner }) => handle.block_on(inner.shutdown()),
            Some(Sink::Local(file)) => file.finish(),
        }
    }

    /// Gives up, removing any parts already uploaded.
    pub fn abort(mut self) {
        self.abort_now();
    }

    fn abort_now(&mut self) {
        match self.sink.take() {
            None => {}
            Some(Sink::Runtime { handle, mut inner }) => {
                if tokio::runtime::Handle::try_current().is_ok() {
                    // Dropped on a runtime thread, where blocking is not allowed.
                    handle.spawn(async move {
                        let _ = inner.abort().await;
                    });
                } else {
                    let _ = handle.block_on(inner.abort());
                }
            }
            // Dropping it removes the staged file.
            Some(Sink::Local(file)) => drop(file),
        }
    }
}

impl Drop for ObjectWrite {
    /// A write that was neither finished nor aborted (an error part way, a panic) is aborted,
    /// so no multipart upload is abandoned on the server, holding its parts (and their cost).
    fn drop(&mut self) {
        self.abort_now();
    }
}

/// S3's smallest part but the last.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

impl Write for ObjectWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= self.part_bytes {
            self.hand_over()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, SegmentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| SegmentError::Format(format!("column {name} missing or of another type")))
}

/// Checks a file's footer says archive format 1.
fn check_version(meta: &ParquetMetaData) -> Result<(), SegmentError> {
    let version = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == "sediment.format_version"))
        .and_then(|kv| kv.value.clone());
    if version.as_deref() != Some(FORMAT_VERSION) {
        return Err(SegmentError::Format(format!("format_version {version:?}")));
    }
    Ok(())
}

/// Bytes read from the end of a segment in the first request for its footer.
const FOOTER_GUESS: u64 = 64 * 1024;

/// Reads a segment's footer (one ranged GET, two if the footer is large) and checks its format.
pub async fn read_metadata(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    size: u64,
) -> Result<ParquetMetaData, SegmentError> {
    if size < 8 {
        return Err(SegmentError::Format(format!(
            "{size} bytes is no parquet file"
        )));
    }
    let start = size.saturating_sub(FOOTER_GUESS);
    let tail = store.get_range(path, start..size).await?;
    let footer: [u8; 8] = tail[tail.len() - 8..]
        .try_into()
        .map_err(|_| SegmentError::Format("short footer".into()))?;
    let len = FooterTail::try_new(&footer)?.metadata_length() as u64;
    if len + 8 > size {
        return Err(SegmentError::Format(format!(
            "footer of {len} bytes in a {size}-byte file"
        )));
    }
    let meta = if len + 8 <= tail.len() as u64 {
        let from = tail.len() - 8 - len as usize;
        ParquetMetaDataReader::decode_metadata(&tail[from..tail.len() - 8])?
    } else {
        let bytes = store.get_range(path, size - 8 - len..size - 8).await?;
        ParquetMetaDataReader::decode_metadata(&bytes)?
    };
    check_version(&meta)?;
    Ok(meta)
}

fn stat_i64(rg: &RowGroupMetaData, column: usize, max: bool) -> Option<i64> {
    match rg.column(column).statistics() {
        Some(Statistics::Int64(s)) if max => s.max_opt().copied(),
        Some(Statistics::Int64(s)) => s.min_opt().copied(),
        _ => None,
    }
}

fn column_index(meta: &ParquetMetaData, name: &str) -> Result<usize, SegmentError> {
    meta.file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == name)
        .ok_or_else(|| SegmentError::Format(format!("no {name} column")))
}

/// Offset range `[first, last]` of a row group, from its statistics.
pub fn row_group_offsets(meta: &ParquetMetaData, rg: usize) -> Result<(i64, i64), SegmentError> {
    let col = column_index(meta, "offset")?;
    let group = meta
        .row_groups()
        .get(rg)
        .ok_or_else(|| SegmentError::Format(format!("no row group {rg}")))?;
    match (stat_i64(group, col, false), stat_i64(group, col, true)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(SegmentError::Format(format!(
            "row group {rg} has no offset statistics"
        ))),
    }
}

/// Timestamp range (ms) of a row group, from its statistics.
pub fn row_group_max_timestamp(meta: &ParquetMetaData, rg: usize) -> Option<i64> {
    let col = column_index(meta, "timestamp").ok()?;
    stat_i64(meta.row_groups().get(rg)?, col, true)
}

/// The row group holding `offset`, or the first one after it; `None` past the end.
pub fn row_group_for(meta: &ParquetMetaData, offset: i64) -> Result<Option<usize>, SegmentError> {
    for rg in 0..meta.num_row_groups() {
        if row_group_offsets(meta, rg)?.1 >= offset {
            return Ok(Some(rg));
        }
    }
    Ok(None)
}

/// Row groups to read to rebuild the batches that start in row group `rg`: `rg` and any
/// following ones that continue its last batch (none for files this crate writes, whose row
/// groups end on batch boundaries; other writers may split batches).
fn chunk_groups(meta: &ParquetMetaData, rg: usize) -> Result<Vec<usize>, SegmentError> {
    let batch_col = column_index(meta, "batch_offset")?;
    let mut groups = vec![rg];
    let mut next = rg + 1;
    while let Some(group) = meta.row_groups().get(next) {
        let first_offset = row_group_offsets(meta, next)?.0;
        match stat_i64(group, batch_col, false) {
            Some(b) if b < first_offset => groups.push(next),
            _ => break,
        }
        next += 1;
    }
    Ok(groups)
}

/// Byte ranges to fetch to rebuild the batches that start in row group `rg`.
pub fn row_group_ranges(
    meta: &ParquetMetaData,
    rg: usize,
) -> Result<Vec<Range<u64>>, SegmentError> {
    let mut ranges = Vec::new();
    for g in chunk_groups(meta, rg)? {
        for c in meta.row_group(g).columns() {
            let (start, len) = c.byte_range();
            ranges.push(start..start + len);
        }
    }
    Ok(ranges)
}

/// Parts of a file fetched with ranged reads, readable as the whole file by the Parquet reader
/// as long as it asks only for what was fetched.
struct Fetched {
    parts: Vec<(u64, Bytes)>,
    len: u64,
}

impl Fetched {
    fn slice(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<Bytes> {
        let i = self.parts.partition_point(|(s, _)| *s <= start);
        let (s, b) = i
            .checked_sub(1)
            .and_then(|i| self.parts.get(i))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("{start} not fetched"))
            })?;
        let from = (start - s) as usize;
        let to = len.map_or(b.len(), |l| from + l);
        if to > b.len() {
            return Err(parquet::errors::ParquetError::General(format!(
                "{start}+{len:?} not fetched"
            )));
        }
        Ok(b.slice(from..to))
    }
}

impl Length for Fetched {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Fetched {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// Rebuilds the record batches that start in row group `rg` from the byte ranges
/// [`row_group_ranges`] named, fetched into `parts` (in the same order), and returns them back
/// to back in one buffer. CPU-bound: run it off the async runtime's threads.
pub fn decode_row_group(
    meta: Arc<ParquetMetaData>,
    rg: usize,
    ranges: &[Range<u64>],
    parts: Vec<Bytes>,
) -> Result<Bytes, SegmentError> {
    let groups = chunk_groups(&meta, rg)?;
    let (first_offset, last_offset) = row_group_offsets(&meta, rg)?;
    let mut fetched: Vec<(u64, Bytes)> = ranges.iter().map(|r| r.start).zip(parts).collect();
    fetched.sort_by_key(|(s, _)| *s);
    let len = fetched.last().map_or(0, |(s, b)| s + b.len() as u64);
    let input = Fetched {
        parts: fetched,
        len,
    };
    let reader_meta = ArrowReaderMetadata::try_new(meta, ArrowReaderOptions::new())?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(input, reader_meta)
        .with_row_groups(groups)
        .build()?;
    let mut rebuild = Rebuild::new(first_offset, first_offset, usize::MAX);
    rebuild.max_batch_offset = last_offset;
    for batch in reader {
        if !rebuild.add(&batch?)? {
            break;
        }
    }
    rebuild.finish()
}

/// Turns rows back into record batches.
struct Rebuild {
    /// Rows of batches that began before this offset are skipped (they belong to an earlier
    /// chunk).
    min_batch_offset: i64,
    /// Rows of batches that begin after this offset are not wanted (they start a later chunk).
    max_batch_offset: i64,
    /// Batches ending before this offset are dropped.
    from_offset: i64,
    max_bytes: usize,
    /// Rebuilt batches, back to back, and where each ends.
    buf: BytesMut,
    ends: Vec<usize>,
    pending: Vec<RawRecord>,
    /// The pending batch's offset and fields (from its first row).
    pending_batch: Option<(i64, BatchFields)>,
    full: bool,
}

impl Rebuild {
    fn new(min_batch_offset: i64, from_offset: i64, max_bytes: usize) -> Self {
        Self {
            min_batch_offset,
            max_batch_offset: i64::MAX,
            from_offset,
            max_bytes,
            buf: BytesMut::new(),
            ends: Vec::new(),
            pending: Vec::new(),
            pending_batch: None,
            full: false,
        }
    }

    /// Encodes the pending batch. False once `max_bytes` is reached.
    fn flush(&mut self) -> Result<bool, SegmentError> {
        let Some((_, fields)) = self.pending_batch else {
            return Ok(true);
        };
        if self.pending.is_empty() {
            return Ok(true);
        }
        let last = self.pending.last().map_or(i64::MIN, |r| r.offset);
        if last < self.from_offset {
            self.pending.clear();
            return Ok(true);
        }
        let start = self.buf.len();
        // Our own encoder: it writes headers as a list (kafka-protocol's takes a map, which
        // would merge a repeated key) and the batch's attributes as stored, timestamp type
        // included.
        sediment_protocol::batch::encode_batch(&mut self.buf, &fields, &self.pending)
            .map_err(SegmentError::Batch)?;
        self.pending.clear();
        if start > 0 && self.buf.len() > self.max_bytes {
            self.buf.truncate(start);
            self.full = true;
            return Ok(false);
        }
        self.ends.push(self.buf.len());
        Ok(true)
    }

    /// Adds rows; false once `max_bytes` is reached.
    fn add(&mut self, batch: &RecordBatch) -> Result<bool, SegmentError> {
        let offset = column::<Int64Array>(batch, "offset")?;
        let timestamp = column::<TimestampMillisecondArray>(batch, "timestamp")?;
        let key = column::<BinaryArray>(batch, "key")?;
        let value = column::<BinaryArray>(batch, "value")?;
        let headers = column::<ListArray>(batch, "headers")?;
        let batch_offset = column::<Int64Array>(batch, "batch_offset")?;
        let attributes = column::<Int16Array>(batch, "batch_attributes")?;
        let producer_id = column::<Int64Array>(batch, "producer_id")?;
        let producer_epoch = column::<Int16Array>(batch, "producer_epoch")?;
        let sequence = column::<Int32Array>(batch, "sequence")?;
        let leader_epoch = column::<Int32Array>(batch, "leader_epoch")?;
        // Keys and values become slices of the decoded column buffers: no copy, no allocation
        // per record.
        let (key_data, key_offsets) = (Bytes::from(key.values().clone()), key.value_offsets());
        let (value_data, value_offsets) =
            (Bytes::from(value.values().clone()), value.value_offsets());
        let header_offsets = headers.value_offsets();
        let header_entries = headers.values().as_any().downcast_ref::<StructArray>();
        let header_columns = header_entries.and_then(|e| {
            Some((
                e.column(0).as_any().downcast_ref::<StringArray>()?,
                e.column(1).as_any().downcast_ref::<BinaryArray>()?,
            ))
        });
        let slice = |data: &Bytes, offsets: &[i32], row: usize| {
            let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
            data.slice(a..b)
        };
        for row in 0..batch.num_rows() {
            let this_batch = batch_offset.value(row);
            if this_batch < self.min_batch_offset {
                continue;
            }
            if this_batch > self.max_batch_offset {
                return Ok(false);
            }
            if self.pending_batch.is_some_and(|b| b.0 != this_batch) && !self.flush()? {
                return Ok(false);
            }
            if self.pending.is_empty() {
                self.pending_batch = Some((
                    this_batch,
                    BatchFields {
                        partition_leader_epoch: leader_epoch.value(row),
                        attributes: attributes.value(row),
                        producer_id: producer_id.value(row),
                        producer_epoch: producer_epoch.value(row),
                        base_sequence: sequence.value(row),
                    },
                ));
            }
            let mut headers = Vec::new();
            if let Some((keys, values)) = header_columns {
                // Straight from the child arrays: no per-row array slice.
                let (from, to) = (
                    header_offsets[row] as usize,
                    header_offsets[row + 1] as usize,
                );
                for h in from..to {
                    let v = (!values.is_null(h)).then(|| Bytes::copy_from_slice(values.value(h)));
                    headers.push((keys.value(h).to_string(), v));
                }
            }
            self.pending.push(RawRecord {
                offset: offset.value(row),
                timestamp: timestamp.value(row),
                key: (!key.is_null(row)).then(|| slice(&key_data, key_offsets, row)),
                value: (!value.is_null(row)).then(|| slice(&value_data, value_offsets, row)),
                headers,
            });
        }
        Ok(true)
    }

    /// The rebuilt batches back to back.
    fn finish(mut self) -> Result<Bytes, SegmentError> {
        if !self.full {
            self.flush()?;
        }
        Ok(self.buf.freeze())
    }

    /// The rebuilt batches, one `Bytes` each (slices of one buffer).
    fn finish_batches(mut self) -> Result<Vec<Bytes>, SegmentError> {
        if !self.full {
            self.flush()?;
        }
        let all = std::mem::take(&mut self.buf).freeze();
        let mut start = 0;
        Ok(self
            .ends
            .iter()
            .map(|&end| {
                let b = all.slice(start..end);
                start = end;
                b
            })
            .collect())
    }
}

/// Rebuilds record batches from a whole segment in memory, starting with the batch that holds
/// `from_offset`, until `max_bytes` is reached (the first batch is always returned). Row groups
/// whose offset statistics end before `from_offset` are not read.
pub fn decode_segment(
    data: Bytes,
    from_offset: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, SegmentError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
    check_version(builder.metadata())?;
    let meta = builder.metadata().clone();
    let batch_col = column_index(&meta, "batch_offset")?;
    let Some(first) = row_group_for(&meta, from_offset)? else {
        return Ok(Vec::new());
    };
    // The batch holding the first wanted row may begin in earlier row groups (files from
    // writers that split batches): read those too so batches come back whole.
    let batch_start = stat_i64(meta.row_group(first), batch_col, false).unwrap_or(i64::MIN);
    let mut start = first;
    while start > 0 && row_group_offsets(&meta, start - 1)?.1 >= batch_start {
        start -= 1;
    }
    let groups: Vec<usize> = (start..meta.num_row_groups()).collect();
    let reader = builder.with_row_groups(groups).build()?;
    let mut rebuild = Rebuild::new(i64::MIN, from_offset, max_bytes);
    for batch in reader {
        if !rebuild.add(&batch?)? {
            break;
        }
    }
    rebuild.finish_batches()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    /// One stored batch: `n` records from `base`, as a producer would send it, base offset
    /// stamped (so a segment's batches are consecutive).
    fn stored_batch(
        base: i64,
        n: usize,
        compression: Compression,
        producer: (i64, i16, i32),
    ) -> Bytes {
        use sediment_protocol::batch::{encode, stamp, NewRecord, Producer};
        let records: Vec<NewRecord> = (0..n)
            .map(|i| {
                let offset = base + i as i64;
                NewRecord {
                    key: (i % 3 != 0).then(|| Bytes::from(format!("key-{offset}"))),
                    value: (i % 5 != 4).then(|| Bytes::from(format!("{{\"n\":{offset}}}"))),
                    timestamp: 1_700_000_000_000 + offset,
                    headers: if i % 2 == 0 {
                        vec![
                            (format!("h{i}"), Some(Bytes::from("hv"))),
                            ("null".into(), None),
                        ]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        let producer = Producer {
            id: producer.0,
            epoch: producer.1,
            first_sequence: producer.2,
        };
        // As the broker stores it: base offset and leader epoch stamped in.
        stamp(&encode(&records, producer, compression).unwrap(), base, 3)
    }

    fn meta() -> SegmentMeta {
        SegmentMeta {
            topic: "orders".into(),
            topic_id: Uuid::from_u128(7),
            partition: 2,
            leader_epoch: 3,
        }
    }

    fn records_of(batches: &[Bytes]) -> Vec<(Compression, Record)> {
        let mut out = Vec::new();
        for b in batches {
            let mut buf = b.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert!(buf.is_empty(), "exactly one batch per Bytes");
            out.extend(set.records.into_iter().map(|r| (set.compression, r)));
        }
        out
    }

    fn sample() -> Vec<Bytes> {
        vec![
            stored_batch(100, 10, Compression::None, (-1, -1, -1)),
            stored_batch(110, 7, Compression::Gzip, (42, 1, 0)),
            stored_batch(117, 5, Compression::Snappy, (42, 1, 7)),
            stored_batch(122, 9, Compression::Lz4, (-1, -1, -1)),
            stored_batch(131, 4, Compression::Zstd, (43, 0, 0)),
        ]
    }

    #[test]
    fn batches_round_trip_with_every_field() {
        let input = sample();
        let (data, info) = encode_segment(&input, &meta(), &WriteOptions::default()).unwrap();
        assert_eq!(
            (info.base_offset, info.end_offset, info.records),
            (100, 135, 35)
        );
        assert_eq!(
            (info.min_timestamp, info.max_timestamp),
            (1_700_000_000_100, 1_700_000_000_134)
        );
        assert_eq!(info.size_bytes, data.len() as u64);
        let output = decode_segment(data, 0, usize::MAX).unwrap();
        assert_eq!(output.len(), input.len(), "batch boundaries are kept");
        assert_eq!(records_of(&output), records_of(&input));
    }

    #[test]
    fn repeated_header_keys_survive_the_archive_in_order() {
        use sediment_protocol::batch::{encode_batch, validate};
        use sediment_protocol::records::header_lists;
        let mut input = Vec::new();
        for (base, codec) in [(0i64, 0i16), (3, 4)] {
            let records: Vec<RawRecord> = (0..3)
                .map(|i| RawRecord {
                    offset: base + i,
                    timestamp: 1_700_000_000_000 + i,
                    key: None,
                    value: Some(Bytes::from(format!("v{i}"))),
                    headers: vec![
                        ("dup_key".into(), Some(Bytes::from(format!("a{i}")))),
                        ("other".into(), None),
                        ("dup_key".into(), Some(Bytes::from(format!("b{i}")))),
                    ],
                })
                .collect();
            let fields = BatchFields {
                partition_leader_epoch: 3,
                attributes: codec,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            };
            let mut buf = BytesMut::new();
            encode_batch(&mut buf, &fields, &records).unwrap();
            input.push((buf.freeze(), records));
        }
        let stored: Vec<Bytes> = input.iter().map(|(b, _)| b.clone()).collect();
        let (data, _) = encode_segment(&stored, &meta(), &WriteOptions::default()).unwrap();
        let output = decode_segment(data, 0, usize::MAX).unwrap();
        assert_eq!(output.len(), 2);
        for (got, (_, want)) in output.iter().zip(&input) {
            let info = validate(got, usize::MAX).unwrap()[0];
            let lists = header_lists(got, &info, 1 << 20).unwrap();
            let wanted: Vec<_> = want.iter().map(|r| r.headers.clone()).collect();
            assert_eq!(
                lists, wanted,
                "every header, repeated keys included, in order"
            );
        }
    }

    #[test]
    fn log_append_time_batches_keep_the_append_time_through_the_archive() {
        use sediment_protocol::batch::{validate, with_timestamp, TimestampType as Ts};
        const APPENDED: i64 = 1_800_000_000_000;
        let input: Vec<Bytes> = [Compression::None, Compression::Zstd]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let b = stored_batch(100 + 10 * i as i64, 10, *c, (-1, -1, -1));
                with_timestamp(&b, Ts::LogAppendTime, APPENDED)
            })
            .collect();
        let (data, info) = encode_segment(&input, &meta(), &WriteOptions::default()).unwrap();
        assert_eq!(
            (info.min_timestamp, info.max_timestamp),
            (APPENDED, APPENDED)
        );
        let output = decode_segment(data, 0, usize::MAX).unwrap();
        assert_eq!(output.len(), 2);
        for b in &output {
            let h = validate(b, usize::MAX).unwrap()[0];
            assert!(h.log_append_time());
            assert_eq!(h.max_timestamp, APPENDED);
            let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
            assert!(set.records.iter().all(|r| r.timestamp == APPENDED));
        }
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_honour_max_bytes() {
        let input = sample();
        let opts = WriteOptions {
            row_group_rows: 4,
            zstd_level: 1,
            ..Default::default()
        };
        let (data, _) = encode_segment(&input, &meta(), &opts).unwrap();
        // 119 is inside the third batch (117..122).
        let from = decode_segment(data.clone(), 119, usize::MAX).unwrap();
        assert_eq!(records_of(&from)[0].1.offset, 117);
        assert_eq!(from.len(), 3);
        // A tiny limit still returns one whole batch.
        let one = decode_segment(data.clone(), 100, 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(records_of(&one).len(), 10);
        // 108 is in the third row group, inside the first batch (100..110) that began two row
        // groups earlier: the batch still comes back whole.
        let whole = decode_segment(data.clone(), 108, usize::MAX).unwrap();
        assert_eq!(records_of(&whole)[0].1.offset, 100);
        assert_eq!(records_of(&whole).len(), 35);
        // Past the end: nothing.
        assert!(decode_segment(data, 500, usize::MAX).unwrap().is_empty());
    }

    /// Every row group's batches, read the way the broker does: footer, then ranged reads of
    /// one row group's column chunks.
    async fn read_by_row_group(
        store: Arc<dyn ObjectStore>,
        path: &ObjectPath,
        size: u64,
    ) -> Vec<Vec<Bytes>> {
        let meta = Arc::new(read_metadata(store.as_ref(), path, size).await.unwrap());
        let mut out = Vec::new();
        for rg in 0..meta.num_row_groups() {
            let ranges = row_group_ranges(&meta, rg).unwrap();
            let parts = store.get_ranges(path, &ranges).await.unwrap();
            let all = decode_row_group(meta.clone(), rg, &ranges, parts).unwrap();
            // Split back into batches by their length fields.
            let mut batches = Vec::new();
            let mut at = 0;
            while at < all.len() {
                let len = i32::from_be_bytes(all[at + 8..at + 12].try_into().unwrap()) as usize;
                batches.push(all.slice(at..at + 12 + len));
                at += 12 + len;
            }
            out.push(batches);
        }
        out
    }

    #[tokio::test]
    async fn row_groups_hold_whole_batches_and_are_read_by_range() {
        let input = sample();
        let opts = WriteOptions {
            row_group_rows: 4,
            ..Default::default()
        };
        let (data, info) = encode_segment(&input, &meta(), &opts).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = ObjectPath::from("seg.parquet");
        store.put(&path, data.into()).await.unwrap();
        let groups = read_by_row_group(store, &path, info.size_bytes).await;
        // Each batch is at least 4 records, so each closes a row group of its own.
        assert_eq!(groups.len(), input.len());
        for (g, batch) in groups.iter().zip(&input) {
            assert_eq!(records_of(g), records_of(std::slice::from_ref(batch)));
        }
    }

    #[tokio::test]
    async fn files_that_split_batches_across_row_groups_still_read_whole_batches() {
        // Another writer may cut row groups mid-batch: here every 4 rows.
        let input = sample();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(4))
            .set_key_value_metadata(Some(vec![kv("format_version", FORMAT_VERSION.into())]))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema(), Some(props)).unwrap();
        let mut cols = Columns::new();
        for stored in &input {
            let set = sediment_protocol::decompress::decode_batch(stored, 1 << 20).unwrap();
            let base = i64::from_be_bytes(stored[0..8].try_into().unwrap());
            for r in &set.records {
                let ts = if r.timestamp_type == TimestampType::LogAppend {
                    8
                } else {
                    0
                };
                cols.push(r, None, base, compression_code(set.compression) | ts);
            }
        }
        writer.write(&cols.finish().unwrap()).unwrap();
        let data = Bytes::from(writer.into_inner().unwrap());
        let size = data.len() as u64;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = ObjectPath::from("foreign.parquet");
        store.put(&path, data.into()).await.unwrap();
        let groups = read_by_row_group(store, &path, size).await;
        assert_eq!(groups.len(), 9, "35 rows in groups of 4");
        // Every batch comes back exactly once, whole, from the row group it starts in.
        let all: Vec<Bytes> = groups.concat();
        assert_eq!(all.len(), input.len());
        assert_eq!(records_of(&all), records_of(&input));
        // Rows 100..104 start the first batch; the second group (104..108) only continues it.
        assert!(groups[1].is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn object_write_streams_large_objects_as_multipart_uploads() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = ObjectPath::from("big");
        let body: Vec<u8> = (0..12 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (s, p, b) = (store.clone(), path.clone(), body.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut w = ObjectWrite::new(handle, s, p, MIN_PART_BYTES);
            for chunk in b.chunks(100_000) {
                w.write_all(chunk).unwrap();
            }
            w.finish().unwrap();
        })
        .await
        .unwrap();
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), body.len());
        assert!(got == body);
    }

    #[test]
    fn files_carry_the_format_version_and_refuse_foreign_ones() {
        let (data, _) = encode_segment(&sample(), &meta(), &WriteOptions::default()).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(data).unwrap();
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .clone();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get("sediment.format_version").as_deref(), Some("1"));
        assert_eq!(get("sediment.topic").as_deref(), Some("orders"));
        assert_eq!(get("sediment.partition").as_deref(), Some("2"));
        assert!(matches!(
            decode_segment(Bytes::from_static(b"not parquet"), 0, 10),
            Err(SegmentError::Parquet(_))
        ));
        assert!(matches!(
            encode_segment(&[], &meta(), &WriteOptions::default()),
            Err(SegmentError::Empty)
        ));
    }

    #[test]
    fn paths_are_hive_style_and_sort_by_offset() {
        let p = object_path(&ObjectPath::from("archive"), "orders", 2, 100, 3);
        assert_eq!(
            p.as_ref(),
            "archive/topics/orders/partition=2/00000000000000000100-3.parquet"
        );
        let a = object_path(&ObjectPath::from("x"), "t", 0, 9, 0);
        let b = object_path(&ObjectPath::from("x"), "t", 0, 10, 0);
        assert!(a.as_ref() < b.as_ref());
    }
}

#[cfg(test)]
mod abort_tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutPayload, PutResult, UploadPart,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory store that counts multipart uploads begun, completed and aborted.
    #[derive(Debug, Default)]
    struct Counting {
        inner: object_store::memory::InMemory,
        counts: Arc<[AtomicUsize; 3]>,
    }

    impl std::fmt::Display for Counting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "counting")
        }
    }

    #[derive(Debug)]
    struct Upload {
        inner: Box<dyn MultipartUpload>,
        counts: Arc<[AtomicUsize; 3]>,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for Upload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            self.inner.put_part(data)
        }
        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.counts[1].fetch_add(1, Ordering::SeqCst);
            self.inner.complete().await
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            self.counts[2].fetch_add(1, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.counts[0].fetch_add(1, Ordering::SeqCst);
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(Upload {
                inner,
                counts: self.counts.clone(),
            }))
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn write_parts(store: Arc<Counting>, finish: bool) {
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let mut w = ObjectWrite::new(
                handle,
                store as Arc<dyn ObjectStore>,
                ObjectPath::from("seg.parquet"),
                MIN_PART_BYTES,
            );
            // Two parts' worth: the upload is multipart by now.
            w.write_all(&vec![7u8; 2 * MIN_PART_BYTES + 1]).unwrap();
            if finish {
                w.finish().unwrap();
            }
            // Otherwise dropped part way, as an encoder error would leave it.
        })
        .join()
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_part_way_aborts_its_multipart_upload() {
        let store = Arc::new(Counting::default());
        write_parts(store.clone(), false);
        let c = |i: usize| store.counts[i].load(Ordering::SeqCst);
        assert_eq!(
            (c(0), c(1), c(2)),
            (1, 0, 1),
            "begun, not completed, aborted"
        );
        assert!(store
            .inner
            .head(&ObjectPath::from("seg.parquet"))
            .await
            .is_err());

        let store = Arc::new(Counting::default());
        write_parts(store.clone(), true);
        let c = |i: usize| store.counts[i].load(Ordering::SeqCst);
        assert_eq!(
            (c(0), c(1), c(2)),
            (1, 1, 0),
            "a finished write is not aborted"
        );
        assert!(store
            .inner
            .head(&ObjectPath::from("seg.parquet"))
            .await
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_smaller_than_a_part_is_one_put_and_a_larger_one_multipart() {
        for (size, multipart) in [(3 * MIN_PART_BYTES - 1, 0), (3 * MIN_PART_BYTES, 1)] {
            let store = Arc::new(Counting::default());
            let (s, handle) = (store.clone(), tokio::runtime::Handle::current());
            std::thread::spawn(move || {
                let mut w = ObjectWrite::new(
                    handle,
                    s as Arc<dyn ObjectStore>,
                    ObjectPath::from("seg.parquet"),
                    3 * MIN_PART_BYTES,
                );
                for chunk in vec![1u8; size].chunks(1 << 20) {
                    w.write_all(chunk).unwrap();
                }
                w.finish().unwrap();
            })
            .join()
            .unwrap();
            assert_eq!(
                store.counts[0].load(Ordering::SeqCst),
                multipart,
                "{size} bytes"
            );
            let got = store
                .inner
                .head(&ObjectPath::from("seg.parquet"))
                .await
                .unwrap();
            assert_eq!(got.size as usize, size);
        }
    }
}
