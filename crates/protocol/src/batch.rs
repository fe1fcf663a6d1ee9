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

use bytes::{Bytes, BytesMut};

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
