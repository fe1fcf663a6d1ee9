//! Validation of v2 record batches as producers send them.
//!
//! The broker stores batches exactly as received (compressed ones too), so it only needs the
//! fixed 61-byte v2 header: it checks the framing, the magic byte, the CRC32C (which covers
//! everything from the attributes field to the end), and that the record count agrees with the
//! offset delta. The base offset and partition leader epoch are outside the CRC, which is what
//! lets the broker stamp them in place without re-checksumming.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57, records @61.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the v2 batch header that precedes the records.
pub const HEADER_LEN: usize = 61;
/// Bytes before (and not counted by) `batchLength`: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD: usize = 12;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Why a batch was refused. Each maps to the error code a Kafka broker returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes do not frame as record batches (Kafka: CORRUPT_MESSAGE).
    #[error("malformed record batch: {0}")]
    Corrupt(&'static str),
    /// CRC32C mismatch (Kafka: CORRUPT_MESSAGE).
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// Magic byte other than 2 (Kafka 4 answers UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("record batch magic {0} is not supported; only v2 batches are accepted")]
    Magic(i8),
    /// The batch is larger than the topic's `max.message.bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// Offset delta and record count disagree, or the batch is empty (INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
}

/// The header fields of one validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Byte range of this batch within the produce payload.
    pub start: usize,
    pub len: usize,
    pub attributes: i16,
    pub record_count: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchInfo {
    /// Bits 0-2 of the attributes: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
    /// Bit 3: timestamps are LogAppendTime.
    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Where one batch sits in a run of concatenated, already validated batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    pub start: usize,
    pub len: usize,
    pub base_offset: i64,
    /// Offset after the batch's last record.
    pub end_offset: i64,
    pub record_count: i32,
}

/// Walks the headers of concatenated batches (no CRC check: for bytes this broker produced or
/// stored). Stops at anything that does not parse, so a damaged buffer yields a shorter list,
/// never a panic.
pub fn spans(data: &[u8]) -> Vec<BatchSpan> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = data.get(at..at + HEADER_LEN) {
        let int = |r: std::ops::Range<usize>| {
            i32::from_be_bytes([h[r.start], h[r.start + 1], h[r.start + 2], h[r.start + 3]])
        };
        let base_offset = i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let len = int(8..12);
        let total = LOG_OVERHEAD + len.max(0) as usize;
        if (len as usize) < HEADER_LEN - LOG_OVERHEAD || at + total > data.len() {
            break;
        }
        out.push(BatchSpan {
            start: at,
            len: total,
            base_offset,
            end_offset: base_offset + i64::from(int(23..27)) + 1,
            record_count: int(57..61),
        });
        at += total;
    }
    out
}

/// Validates every batch in a produce payload. `max_batch_bytes` is the topic's
/// `max.message.bytes`, compared with each batch's full size as Kafka does.
pub fn validate(payload: &[u8], max_batch_bytes: usize) -> Result<Vec<BatchInfo>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    if payload.is_empty() {
        return Err(BatchError::Invalid("empty record set"));
    }
    while pos < payload.len() {
        let rest = &payload[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Corrupt("truncated batch header"));
        }
        let batch_len = i32_at(rest, 8);
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        if batch_len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(
                "batch length smaller than the v2 header",
            ));
        }
        let size = batch_len as usize + LOG_OVERHEAD;
        if size > rest.len() {
            return Err(BatchError::Corrupt(
                "batch length runs past the end of the record set",
            ));
        }
        if size > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size,
                max: max_batch_bytes,
            });
        }
        let b = &rest[..size];
        let stored = u32::from_be_bytes([
            b[CRC_OFFSET],
            b[CRC_OFFSET + 1],
            b[CRC_OFFSET + 2],
            b[CRC_OFFSET + 3],
        ]);
        let computed = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        let last_offset_delta = i32_at(b, 23);
        let record_count = i32_at(b, 57);
        if record_count <= 0 {
            return Err(BatchError::Invalid("batch holds no records"));
        }
        if last_offset_delta != record_count - 1 {
            return Err(BatchError::Invalid(
                "lastOffsetDelta does not match the record count",
            ));
        }
        out.push(BatchInfo {
            start: pos,
            len: size,
            attributes: i16_at(b, 21),
            record_count,
            base_timestamp: i64_at(b, 27),
            max_timestamp: i64_at(b, 35),
            producer_id: i64_at(b, 43),
            producer_epoch: i16_at(b, 51),
            base_sequence: i32_at(b, 53),
        });
        pos += size;
    }
    Ok(out)
}

/// Copies one batch out of a payload with its base offset and partition leader epoch stamped
/// in. Neither field is covered by the CRC, so the batch stays valid.
pub fn stamp(batch: &[u8], base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut b = BytesMut::from(batch);
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    b.freeze()
}

/// The first 16 bytes of `batch` (base offset, batch length, partition leader epoch) with the
/// base offset and epoch stamped in: written in front of `batch[PREFIX_LEN..]` it forms the
/// stamped batch without copying the body.
pub fn stamped_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut p = BytesMut::from(&batch[..PREFIX_LEN]);
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    p.freeze()
}

/// Length of the prefix [`stamped_prefix`] rewrites.
pub const PREFIX_LEN: usize = 16;

/// A record to encode with [`encode`].
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The producer identity a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
}

impl Producer {
    /// A producer without idempotence.
    pub const NONE: Producer = Producer {
        id: -1,
        epoch: -1,
        first_sequence: -1,
    };
}

/// Encodes `records` as exactly one v2 record batch with base offset 0, as a client would
/// send it (used by the CLI's benchmark and by tests).
pub fn encode(
    records: &[NewRecord],
    producer: Producer,
    compression: kafka_protocol::records::Compression,
) -> Result<Bytes, String> {
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol's encoder starts a new batch wherever offset minus sequence
            // changes; consecutive sequences keep the records in one batch (and a plain
            // producer's batch still gets base sequence -1).
            sequence: producer.first_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Timestamp type of a batch, as attribute bit 3 records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A copy of one batch with its timestamp type bit and max timestamp set and the CRC
/// recomputed, as Kafka's log validator rewrites a batch in place: for LogAppendTime the
/// broker's clock replaces the producer's timestamps (consumers then see `max_timestamp` for
/// every record), for CreateTime a max timestamp that disagrees with the records is corrected.
pub fn with_timestamp(batch: &[u8], kind: TimestampType, max_timestamp: i64) -> Bytes {
    let mut b = BytesMut::from(batch);
    let attrs = i16_at(&b, ATTRIBUTES_OFFSET);
    let attrs = match kind {
        TimestampType::CreateTime => attrs & !0x8,
        TimestampType::LogAppendTime => attrs | 0x8,
    };
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    b[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Reads the base offset of a stored batch.
pub fn base_offset(batch: &[u8]) -> i64 {
    i64_at(batch, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::records::{Compression, RecordBatchDecoder};
    use proptest::prelude::*;

    #[test]
    fn spans_walk_concatenated_batches_and_stop_at_garbage() {
        let batch = |base: i64, n: usize| {
            let records: Vec<NewRecord> = (0..n)
                .map(|i| NewRecord {
                    value: Some(Bytes::from(format!("v{i}"))),
                    timestamp: 1,
                    ..Default::default()
                })
                .collect();
            stamp(
                &encode(&records, Producer::NONE, Compression::None).unwrap(),
                base,
                0,
            )
        };
        let (a, b) = (batch(10, 3), batch(13, 2));
        let mut data = Vec::new();
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        data.extend_from_slice(
            b"garbage that is long enough to look like a batch header, or is it?",
        );
        let got = spans(&data);
        assert_eq!(
            got.iter()
                .map(|s| (s.start, s.len, s.base_offset, s.end_offset, s.record_count))
                .collect::<Vec<_>>(),
            vec![(0, a.len(), 10, 13, 3), (a.len(), b.len(), 13, 15, 2)]
        );
        assert!(
            spans(&data[..a.len() - 1]).is_empty(),
            "a cut batch is not listed"
        );
    }

    fn encode_values(values: &[Vec<u8>], compression: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| NewRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(v.clone())),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            })
            .collect();
        encode(&records, Producer::NONE, compression)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn accepts_valid_batches_of_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encode_values(&[b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()], c);
            let infos = validate(&b, 1 << 20).unwrap();
            assert_eq!(infos.len(), 1);
            assert_eq!(infos[0].record_count, 3);
            assert_eq!(infos[0].len, b.len());
            assert_eq!(infos[0].max_timestamp, 1_700_000_000_002);
        }
    }

    #[test]
    fn stamping_keeps_crc_valid_and_decodes() {
        let b = encode_values(&vec![b"v".to_vec(); 4], Compression::None);
        let s = stamp(&b, 1234, 7);
        validate(&s, 1 << 20).unwrap();
        assert_eq!(base_offset(&s), 1234);
        let mut joined = stamped_prefix(&b, 1234, 7).to_vec();
        joined.extend_from_slice(&b[PREFIX_LEN..]);
        assert_eq!(&joined[..], &s[..]);
        let mut bytes = s.clone();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records[3].offset, 1237);
    }

    #[test]
    fn setting_the_timestamp_keeps_the_crc_valid() {
        let b = encode_values(&[b"a".to_vec(), b"b".to_vec()], Compression::Lz4);
        let s = with_timestamp(&b, TimestampType::LogAppendTime, 42);
        let info = validate(&s, 1 << 20).unwrap()[0];
        assert!(info.log_append_time());
        assert_eq!(info.max_timestamp, 42);
        let set = RecordBatchDecoder::decode(&mut s.clone()).unwrap();
        // (The decoder reports base + delta per record; Kafka consumers use the max timestamp.)
        assert!(set
            .records
            .iter()
            .all(|r| r.timestamp_type == kafka_protocol::records::TimestampType::LogAppend));
        let back = with_timestamp(&s, TimestampType::CreateTime, 1_700_000_000_001);
        let info = validate(&back, 1 << 20).unwrap()[0];
        assert!(!info.log_append_time());
        assert_eq!(info.max_timestamp, 1_700_000_000_001);
    }

    #[test]
    fn rejects_bad_input_with_the_right_error() {
        let b = encode_values(&[b"hello".to_vec()], Compression::None);
        let mut crc = b.clone();
        let last = crc.len() - 1;
        crc[last] ^= 0xff;
        assert!(matches!(
            validate(&crc, 1 << 20),
            Err(BatchError::Crc { .. })
        ));
        let mut magic = b.clone();
        magic[16] = 1;
        assert_eq!(validate(&magic, 1 << 20), Err(BatchError::Magic(1)));
        assert!(matches!(validate(&b, 10), Err(BatchError::TooLarge { .. })));
        assert!(matches!(
            validate(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate(&b[..20], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate(&[], 1 << 20),
            Err(BatchError::Invalid(_))
        ));
    }

    proptest! {
        /// Any byte string either validates or is refused; validation never panics, and a
        /// validated payload's batches tile it exactly.
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(infos) = validate(&data, 1 << 20) {
                let total: usize = infos.iter().map(|i| i.len).sum();
                prop_assert_eq!(total, data.len());
            }
        }

        /// Flipping any single byte covered by the CRC is detected.
        #[test]
        fn detects_any_single_byte_corruption(idx in 21usize..80, flip in 1u8..=255) {
            let b = encode_values(&[b"some value bytes".to_vec(), b"more".to_vec()], Compression::None);
            let idx = idx.min(b.len() - 1);
            let mut c = b.clone();
            c[idx] ^= flip;
            prop_assert!(validate(&c, 1 << 20).is_err());
        }
    }
}

/// A record to write into a rebuilt batch: its absolute offset and timestamp, and its headers
/// as a list (a key may repeat, as in Kafka).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The batch-level fields of a rebuilt batch, as the original carried them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFields {
    pub partition_leader_epoch: i32,
    /// Codec (bits 0-2), timestamp type (bit 3), transactional (bit 4), control (bit 5).
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the first record (-1 for a producer without idempotence).
    pub base_sequence: i32,
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            buf.put_u8(b);
            return;
        }
        buf.put_u8(b | 0x80);
    }
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

fn put_records(buf: &mut BytesMut, records: &[RawRecord], base_offset: i64, base_ts: i64) {
    let mut rec = BytesMut::new();
    for r in records {
        rec.clear();
        rec.put_u8(0); // attributes
        put_varint(&mut rec, r.timestamp.wrapping_sub(base_ts));
        put_varint(&mut rec, r.offset - base_offset);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varint(buf, rec.len() as i64);
        buf.put_slice(&rec);
    }
}

/// Appends one v2 record batch holding `records` (consecutive offsets, at least one) to `buf`,
/// compressed with the codec `fields.attributes` names. Headers are written as listed, so a
/// repeated key survives (kafka-protocol's encoder takes a map). The max timestamp is the
/// largest record timestamp (for a LogAppendTime batch, the append time every record carries).
pub fn encode_batch(
    buf: &mut BytesMut,
    fields: &BatchFields,
    records: &[RawRecord],
) -> Result<(), String> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err("a batch needs at least one record".into());
    };
    let base_offset = first.offset;
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let count = i32::try_from(records.len()).map_err(|_| "too many records")?;
    let last_delta =
        i32::try_from(last.offset - base_offset).map_err(|_| "offsets too far apart")?;
    let start = buf.len();
    buf.put_i64(base_offset);
    buf.put_i32(0); // length, set below
    buf.put_i32(fields.partition_leader_epoch);
    buf.put_i8(2);
    buf.put_u32(0); // crc, set below
    let crc_from = buf.len();
    buf.put_i16(fields.attributes);
    buf.put_i32(last_delta);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(fields.producer_id);
    buf.put_i16(fields.producer_epoch);
    buf.put_i32(fields.base_sequence);
    buf.put_i32(count);
    let encode = |b: &mut BytesMut| -> anyhow::Result<()> {
        put_records(b, records, base_offset, base_ts);
        Ok(())
    };
    let done = match fields.attributes & 0x7 {
        0 => encode(buf),
        1 => Gzip::compress(buf, encode),
        2 => Snappy::compress(buf, encode),
        3 => Lz4::compress(buf, encode),
        4 => Zstd::compress(buf, encode),
        c => return Err(format!("unknown compression codec {c}")),
    };
    done.map_err(|e| e.to_string())?;
    let len = i32::try_from(buf.len() - start - 12).map_err(|_| "batch too large")?;
    buf[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[crc_from..]);
    buf[crc_from - 4..crc_from].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod encode_batch_tests {
    use super::*;
    use crate::records::{check, header_lists};
    use kafka_protocol::records::RecordBatchDecoder;

    fn records() -> Vec<RawRecord> {
        (0..20)
            .map(|i| RawRecord {
                offset: 100 + i,
                timestamp: 1_700_000_000_000 + (i * 7) % 5,
                key: (i % 3 != 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; i as usize * 11])),
                headers: vec![
                    ("dup".into(), Some(Bytes::from_static(b"1"))),
                    ("dup".into(), Some(Bytes::from_static(b"2"))),
                    ("n".into(), None),
                ],
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_with_repeated_header_keys() {
        for codec in 0..=4i16 {
            let fields = BatchFields {
                partition_leader_epoch: 7,
                attributes: codec | 0x8,
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 10,
            };
            let rs = records();
            let mut buf = BytesMut::new();
            encode_batch(&mut buf, &fields, &rs).unwrap();
            let b = buf.freeze();
            // Valid for the broker's own checks (CRC, lengths, every record)...
            let info = validate(&b, usize::MAX).unwrap()[0];
            assert_eq!(info.compression(), codec);
            assert!(info.log_append_time());
            assert_eq!(info.record_count, 20);
            check(&b, &info, 1 << 20, &mut Vec::new()).unwrap();
            let lists = header_lists(&b, &info, 1 << 20).unwrap();
            assert!(
                lists.iter().zip(&rs).all(|(l, r)| *l == r.headers),
                "codec {codec}"
            );
            // ...and for kafka-protocol's decoder, field by field.
            let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
            assert_eq!(set.records.len(), 20);
            for (got, want) in set.records.iter().zip(&rs) {
                assert_eq!(got.offset, want.offset);
                assert_eq!(got.key, want.key);
                assert_eq!(got.value, want.value);
                assert_eq!(got.producer_id, 42);
                assert_eq!(got.producer_epoch, 3);
                assert_eq!(got.partition_leader_epoch, 7);
                assert_eq!(got.sequence as i64, 10 + want.offset - 100);
            }
        }
    }

    #[test]
    fn an_empty_batch_or_unknown_codec_is_an_error() {
        let fields = BatchFields {
            partition_leader_epoch: 0,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        assert!(encode_batch(&mut BytesMut::new(), &fields, &[]).is_err());
        let bad = BatchFields {
            attributes: 6,
            ..fields
        };
        assert!(encode_batch(&mut BytesMut::new(), &bad, &records()).is_err());
    }
}
