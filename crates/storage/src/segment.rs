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
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
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
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            row_group_rows: 32 * 1024,
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

fn compression_of(attributes: i16) -> Result<Compression, SegmentError> {
    Ok(match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(SegmentError::Format(format!("compression code {other}"))),
    })
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

    fn push(&mut self, r: &Record, batch_offset: i64, attributes: i16) {
        self.offset.append_value(r.offset);
        self.timestamp.append_value(r.timestamp);
        self.key.append_option(r.key.as_deref());
        self.value.append_option(r.value.as_deref());
        let entries = self.headers.values();
        for (k, v) in &r.headers {
            if let Some(b) = entries.field_builder::<StringBuilder>(0) {
                b.append_value(k.as_str());
            }
            if let Some(b) = entries.field_builder::<BinaryBuilder>(1) {
                b.append_option(v.as_deref());
            }
            entries.append(true);
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

/// Writes a partition's consecutive record batches (as stored: base offsets stamped) as one
/// Parquet segment.
pub fn encode_segment(
    batches: &[Bytes],
    meta: &SegmentMeta,
    opts: &WriteOptions,
) -> Result<(Bytes, SegmentInfo), SegmentError> {
    let mut info: Option<SegmentInfo> = None;
    let mut rows = Vec::new();
    for stored in batches {
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
        for r in set.records {
            let attributes = compression_code(set.compression)
                | if r.timestamp_type == TimestampType::LogAppend {
                    0x8
                } else {
                    0
                }
                | if r.transactional { 0x10 } else { 0 }
                | if r.control { 0x20 } else { 0 };
            let i = info.get_or_insert(SegmentInfo {
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
            rows.push((r, batch_offset, attributes));
        }
    }
    let mut info = info.ok_or(SegmentError::Empty)?;
    let kv = |k: &str, v: String| KeyValue::new(format!("sediment.{k}"), v);
    let props = WriterProperties::builder()
        .set_compression(ParquetCompression::ZSTD(ZstdLevel::try_new(
            opts.zstd_level,
        )?))
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_key_value_metadata(Some(vec![
            kv("format_version", FORMAT_VERSION.into()),
            kv("topic", meta.topic.clone()),
            kv("topic_id", meta.topic_id.to_string()),
            kv("partition", meta.partition.to_string()),
            kv("leader_epoch", meta.leader_epoch.to_string()),
            kv("base_offset", info.base_offset.to_string()),
            kv("end_offset", info.end_offset.to_string()),
        ]))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema(), Some(props))?;
    let mut cols = Columns::new();
    for (r, batch_offset, attributes) in &rows {
        cols.push(r, *batch_offset, *attributes);
        if cols.rows >= opts.row_group_rows.max(1) {
            writer.write(&cols.finish()?)?;
        }
    }
    if cols.rows > 0 {
        writer.write(&cols.finish()?)?;
    }
    let out = Bytes::from(writer.into_inner()?);
    info.size_bytes = out.len() as u64;
    Ok((out, info))
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, SegmentError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| SegmentError::Format(format!("column {name} missing or of another type")))
}

/// Rebuilds record batches from a segment, starting with the batch that holds `from_offset`,
/// until `max_bytes` is reached (the first batch is always returned). Row groups whose offset
/// statistics end before `from_offset` are not read.
pub fn decode_segment(
    data: Bytes,
    from_offset: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, SegmentError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == "sediment.format_version"))
        .and_then(|kv| kv.value.clone());
    if version.as_deref() != Some(FORMAT_VERSION) {
        return Err(SegmentError::Format(format!("format_version {version:?}")));
    }
    let col = |name: &str| {
        builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| SegmentError::Format(format!("no {name} column")))
    };
    let (offset_col, batch_col) = (col("offset")?, col("batch_offset")?);
    let stat = |rg: &parquet::file::metadata::RowGroupMetaData, c: usize, max: bool| match rg
        .column(c)
        .statistics()
    {
        Some(Statistics::Int64(s)) => {
            if max {
                s.max_opt().copied()
            } else {
                s.min_opt().copied()
            }
        }
        _ => None,
    };
    let row_groups = builder.metadata().row_groups();
    // The first row group holding offsets at or after `from_offset`; the batch its first row
    // belongs to may begin in earlier row groups, which are read too so batches come back whole.
    let Some(first) = row_groups
        .iter()
        .position(|rg| stat(rg, offset_col, true).is_none_or(|m| m >= from_offset))
    else {
        return Ok(Vec::new());
    };
    let batch_start = stat(&row_groups[first], batch_col, false).unwrap_or(i64::MIN);
    let mut start = first;
    while start > 0
        && stat(&row_groups[start - 1], offset_col, true).is_none_or(|m| m >= batch_start)
    {
        start -= 1;
    }
    let groups: Vec<usize> = (start..row_groups.len()).collect();
    let reader = builder.with_row_groups(groups).build()?;

    let mut out = Vec::new();
    let mut total = 0usize;
    let mut pending: Vec<Record> = Vec::new();
    let mut pending_batch: Option<(i64, i16)> = None;
    let flush = |records: &mut Vec<Record>,
                 attributes: i16,
                 out: &mut Vec<Bytes>,
                 total: &mut usize|
     -> Result<bool, SegmentError> {
        if records.is_empty() {
            return Ok(true);
        }
        let last = records.last().map(|r| r.offset).unwrap_or(i64::MIN);
        if last < from_offset {
            records.clear();
            return Ok(true);
        }
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: compression_of(attributes)?,
            },
        )
        .map_err(|e| SegmentError::Batch(e.to_string()))?;
        records.clear();
        if !out.is_empty() && *total + buf.len() > max_bytes {
            return Ok(false);
        }
        *total += buf.len();
        out.push(buf.freeze());
        Ok(true)
    };
    for batch in reader {
        let batch = batch?;
        let offset = column::<Int64Array>(&batch, "offset")?;
        let timestamp = column::<TimestampMillisecondArray>(&batch, "timestamp")?;
        let key = column::<BinaryArray>(&batch, "key")?;
        let value = column::<BinaryArray>(&batch, "value")?;
        let headers = column::<ListArray>(&batch, "headers")?;
        let batch_offset = column::<Int64Array>(&batch, "batch_offset")?;
        let attributes = column::<Int16Array>(&batch, "batch_attributes")?;
        let producer_id = column::<Int64Array>(&batch, "producer_id")?;
        let producer_epoch = column::<Int16Array>(&batch, "producer_epoch")?;
        let sequence = column::<Int32Array>(&batch, "sequence")?;
        let leader_epoch = column::<Int32Array>(&batch, "leader_epoch")?;
        for row in 0..batch.num_rows() {
            let this_batch = (batch_offset.value(row), attributes.value(row));
            if pending_batch.is_some_and(|b| b.0 != this_batch.0) {
                let attrs = pending_batch.map(|b| b.1).unwrap_or(0);
                if !flush(&mut pending, attrs, &mut out, &mut total)? {
                    return Ok(out);
                }
            }
            pending_batch = Some(this_batch);
            let mut header_map = kafka_protocol::indexmap::IndexMap::new();
            let list = headers.value(row);
            if let Some(entries) = list.as_any().downcast_ref::<StructArray>() {
                let keys = entries.column(0).as_any().downcast_ref::<StringArray>();
                let values = entries.column(1).as_any().downcast_ref::<BinaryArray>();
                if let (Some(keys), Some(values)) = (keys, values) {
                    for h in 0..entries.len() {
                        let v =
                            (!values.is_null(h)).then(|| Bytes::copy_from_slice(values.value(h)));
                        header_map.insert(StrBytes::from_string(keys.value(h).to_string()), v);
                    }
                }
            }
            let attrs = this_batch.1;
            pending.push(Record {
                transactional: attrs & 0x10 != 0,
                control: attrs & 0x20 != 0,
                delete_horizon: false,
                partition_leader_epoch: leader_epoch.value(row),
                producer_id: producer_id.value(row),
                producer_epoch: producer_epoch.value(row),
                timestamp_type: if attrs & 0x8 != 0 {
                    TimestampType::LogAppend
                } else {
                    TimestampType::Creation
                },
                offset: offset.value(row),
                sequence: sequence.value(row),
                timestamp: timestamp.value(row),
                key: (!key.is_null(row)).then(|| Bytes::copy_from_slice(key.value(row))),
                value: (!value.is_null(row)).then(|| Bytes::copy_from_slice(value.value(row))),
                headers: header_map,
            });
        }
    }
    let attrs = pending_batch.map(|b| b.1).unwrap_or(0);
    flush(&mut pending, attrs, &mut out, &mut total)?;
    Ok(out)
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
    fn reads_start_at_the_batch_holding_the_offset_and_honour_max_bytes() {
        let input = sample();
        let opts = WriteOptions {
            row_group_rows: 4,
            zstd_level: 1,
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
