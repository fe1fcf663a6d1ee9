//! Record-level validation of a v2 batch before the broker acknowledges it.
//!
//! [`crate::batch::validate`] checks what the header and CRC can tell. A batch can pass those
//! and still hold records no consumer or archive writer can decode: a CRC computed over a
//! garbage gzip stream, a record count that disagrees with the records, a length that runs
//! past its record. Kafka's log validator decompresses and walks every batch for that reason;
//! so does this module. It allocates nothing per record: compressed records are expanded into
//! a caller's reusable buffer (capped, so a decompression bomb fails instead of taking memory),
//! and the walk only reads varints and skips bytes.
//!
//! What a record must be (Kafka's DefaultRecord layout): a varint length, then exactly that
//! many bytes holding attributes (i8), timestamp delta (varlong), offset delta (varint, equal
//! to the record's index in the batch), key and value (varint length, -1 for null, then the
//! bytes) and headers (varint count, each a non-null UTF-8 key and a nullable value). Beyond
//! Kafka, a header key must be valid UTF-8: the archive stores header keys as UTF-8 strings.
//! A key may repeat within a record, as in Kafka; [`header_lists`] gives the headers as the
//! list they are (the archive keeps that list and rebuilds batches from it).

use bytes::Bytes;

use crate::batch::{BatchInfo, HEADER_LEN};
use crate::decompress::{self, DecodeError};

/// Why a batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The compressed records do not decompress (Kafka: CORRUPT_MESSAGE).
    #[error("compressed records do not decode: {0}")]
    Corrupt(String),
    /// They decompress to more than the broker's cap (INVALID_RECORD).
    #[error(
        "records decompress to more than {limit} bytes, the broker's cap on a batch's \
         decompressed size (--max-decompressed-batch-bytes)"
    )]
    TooLarge { limit: usize },
    /// A record is malformed; `index` is its position in the batch (INVALID_RECORD, with the
    /// index in Produce v8+'s record errors).
    #[error("record {index}: {reason}")]
    Record { index: i32, reason: &'static str },
    /// The batch as a whole disagrees with its records (INVALID_RECORD).
    #[error("{0}")]
    Batch(&'static str),
    /// The compression codec field holds a value no codec has (CORRUPT_MESSAGE).
    #[error("unknown compression codec {0}")]
    Codec(i16),
}

/// What the walk learnt about a batch's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    /// The largest record timestamp (base timestamp plus the largest delta).
    pub max_timestamp: i64,
    /// The smallest record timestamp.
    pub min_timestamp: i64,
    /// Indexes of the first record holding the smallest and the largest timestamp.
    pub min_index: i32,
    pub max_index: i32,
}

/// Reads a zigzag varint of at most `max_bytes` bytes.
fn varint(data: &[u8], pos: &mut usize, max_bytes: usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = *data.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

fn int(data: &[u8], pos: &mut usize) -> Option<i32> {
    varint(data, pos, 5).and_then(|v| i32::try_from(v).ok())
}

/// Skips a varint-length-prefixed byte string; `Ok(None)` for a null (-1) one.
fn bytes<'a>(data: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, &'static str> {
    let len = int(data, pos).ok_or("malformed length varint")?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "negative length other than -1")?;
    let end = pos.checked_add(len).ok_or("length overflows")?;
    let b = data
        .get(*pos..end)
        .ok_or("key, value or header runs past its record")?;
    *pos = end;
    Ok(Some(b))
}

/// Walks uncompressed records: exactly `count` of them, tiling `data`.
fn walk(
    data: &[u8],
    count: i32,
    base_timestamp: i64,
    mut on_header: impl FnMut(i32, &[u8], Option<&[u8]>),
) -> Result<RecordsSummary, RecordError> {
    let mut pos = 0usize;
    let mut max_timestamp = i64::MIN;
    let mut min_timestamp = i64::MAX;
    let (mut min_index, mut max_index) = (0, 0);
    for index in 0..count {
        let bad = |reason| RecordError::Record { index, reason };
        if pos >= data.len() {
            return Err(RecordError::Batch(
                "the batch holds fewer records than its header's record count",
            ));
        }
        let len = int(data, &mut pos).ok_or(bad("malformed record length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or(bad("record length runs past the end of the batch"))?;
        let rec = &data[pos..end];
        let mut p = 0usize;
        // Attributes: unused by v2 records, any value is kept as sent.
        p += 1;
        if p > rec.len() {
            return Err(bad("record shorter than its attributes"));
        }
        let delta = varint(rec, &mut p, 10).ok_or(bad("malformed timestamp delta"))?;
        let ts = base_timestamp
            .checked_add(delta)
            .ok_or(bad("timestamp overflows"))?;
        if ts > max_timestamp {
            max_timestamp = ts;
            max_index = index;
        }
        if ts < min_timestamp {
            min_timestamp = ts;
            min_index = index;
        }
        let offset_delta = int(rec, &mut p).ok_or(bad("malformed offset delta"))?;
        if offset_delta != index {
            return Err(bad("offset delta does not match the record's position"));
        }
        bytes(rec, &mut p).map_err(bad)?; // key
        bytes(rec, &mut p).map_err(bad)?; // value
        let headers = int(rec, &mut p).ok_or(bad("malformed header count"))?;
        if headers < 0 {
            return Err(bad("negative header count"));
        }
        for _ in 0..headers {
            let key = bytes(rec, &mut p)
                .map_err(bad)?
                .ok_or(bad("null header key"))?;
            if std::str::from_utf8(key).is_err() {
                return Err(bad("header key is not valid UTF-8"));
            }
            // A key may repeat within a record, as in Kafka: headers are a list.
            let value = bytes(rec, &mut p).map_err(bad)?;
            on_header(index, key, value);
        }
        if p != rec.len() {
            return Err(bad("record length does not match its contents"));
        }
        pos = end;
    }
    if pos != data.len() {
        return Err(RecordError::Batch(
            "bytes follow the last record the header counts",
        ));
    }
    Ok(RecordsSummary {
        max_timestamp,
        min_timestamp,
        min_index,
        max_index,
    })
}

/// Checks every record of `batch` (one whole batch, header included, already through
/// [`crate::batch::validate`]). Compressed records are expanded into `scratch` (reused between
/// calls), at most `limit` bytes.
pub fn check(
    batch: &[u8],
    info: &BatchInfo,
    limit: usize,
    scratch: &mut Vec<u8>,
) -> Result<RecordsSummary, RecordError> {
    walk_batch(batch, info, limit, scratch, |_, _, _| {})
}

fn walk_batch(
    batch: &[u8],
    info: &BatchInfo,
    limit: usize,
    scratch: &mut Vec<u8>,
    on_header: impl FnMut(i32, &[u8], Option<&[u8]>),
) -> Result<RecordsSummary, RecordError> {
    let body = batch
        .get(HEADER_LEN..)
        .ok_or(RecordError::Batch("batch shorter than its header"))?;
    let codec = info.compression();
    if codec == 0 {
        return walk(body, info.record_count, info.base_timestamp, on_header);
    }
    if codec > 4 {
        return Err(RecordError::Codec(codec));
    }
    scratch.clear();
    decompress::decompress_into(body, codec, limit, scratch).map_err(|e| match e {
        DecodeError::TooLarge { limit } => RecordError::TooLarge { limit },
        DecodeError::Invalid(m) => RecordError::Corrupt(m),
    })?;
    walk(scratch, info.record_count, info.base_timestamp, on_header)
}

/// A record's headers in order, repeated keys included.
pub type HeaderList = Vec<(String, Option<Bytes>)>;

/// Every record's headers as the producer sent them: a list per record, in order, a key as
/// often as it was given (a map, such as kafka-protocol's decoder builds, keeps one value per
/// key). `batch` is one whole batch, as for [`check`].
pub fn header_lists(
    batch: &[u8],
    info: &BatchInfo,
    limit: usize,
) -> Result<Vec<HeaderList>, RecordError> {
    let mut out: Vec<HeaderList> = (0..info.record_count.max(0)).map(|_| Vec::new()).collect();
    let mut scratch = Vec::new();
    walk_batch(batch, info, limit, &mut scratch, |i, k, v| {
        if let Some(list) = out.get_mut(i as usize) {
            list.push((
                String::from_utf8_lossy(k).into_owned(),
                v.map(Bytes::copy_from_slice),
            ));
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode, validate, NewRecord, Producer};
    use bytes::Bytes;
    use kafka_protocol::records::Compression;
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn records(n: usize) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; i * 7])),
                timestamp: 1_700_000_000_000 + (i as i64 * 13) % 50,
                headers: vec![
                    ("a".into(), Some(Bytes::from_static(b"1"))),
                    ("b".into(), None),
                ],
            })
            .collect()
    }

    fn check_all(b: &[u8]) -> Result<RecordsSummary, RecordError> {
        let infos = validate(b, usize::MAX).expect("header valid");
        check(b, &infos[0], 64 << 20, &mut Vec::new())
    }

    #[test]
    fn accepts_what_clients_encode_with_every_codec() {
        for c in CODECS {
            let rs = records(50);
            let b = encode(&rs, Producer::NONE, c).unwrap();
            let got = check_all(&b).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            let want = rs.iter().map(|r| r.timestamp).max().unwrap();
            assert_eq!(got.max_timestamp, want, "{c:?}");
            let least = rs.iter().map(|r| r.timestamp).min().unwrap();
            assert_eq!(got.min_timestamp, least, "{c:?}");
            let first = |t| rs.iter().position(|r| r.timestamp == t).unwrap() as i32;
            assert_eq!(got.min_index, first(least), "{c:?}");
            assert_eq!(got.max_index, first(want), "{c:?}");
        }
    }

    /// Rewrites a batch's records section (uncompressed) and fixes the length and CRC, so only
    /// the record-level walk can find what is wrong.
    fn with_body(batch: &[u8], body: &[u8], count: i32, codec: i16) -> Vec<u8> {
        let mut b = batch[..HEADER_LEN].to_vec();
        b.extend_from_slice(body);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let attrs = (i16::from_be_bytes([b[21], b[22]]) & !0x7) | codec;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn refuses_garbage_in_a_valid_crc_for_every_codec() {
        let plain = encode(&records(3), Producer::NONE, Compression::None).unwrap();
        for codec in 1..=4i16 {
            let b = with_body(&plain, b"this is not a compressed stream at all", 3, codec);
            validate(&b, usize::MAX).expect("header and CRC are fine");
            assert!(
                matches!(check_all(&b), Err(RecordError::Corrupt(_))),
                "codec {codec}: {:?}",
                check_all(&b)
            );
        }
        let b = with_body(&plain, &plain[HEADER_LEN..], 3, 5);
        assert_eq!(check_all(&b), Err(RecordError::Codec(5)));
    }

    #[test]
    fn refuses_a_record_count_that_disagrees() {
        let plain = encode(&records(3), Producer::NONE, Compression::None).unwrap();
        let body = &plain[HEADER_LEN..];
        let more = with_body(&plain, body, 4, 0);
        assert!(matches!(check_all(&more), Err(RecordError::Batch(_))));
        let fewer = with_body(&plain, body, 2, 0);
        assert!(matches!(check_all(&fewer), Err(RecordError::Batch(_))));
        // The same disagreement inside a compressed batch.
        let mut z = Vec::new();
        zstd::stream::copy_encode(body, &mut z, 1).unwrap();
        let zb = with_body(&plain, &z, 4, 4);
        assert!(matches!(check_all(&zb), Err(RecordError::Batch(_))));
        assert!(check_all(&with_body(&plain, &z, 3, 4)).is_ok());
    }

    #[test]
    fn refuses_malformed_records_naming_the_record() {
        // Record 0 is hand-made: length, attributes, ts delta, offset delta, key, value, headers.
        let rec = |offset_delta: u8, header_key: &[u8]| {
            let mut r = vec![0u8, 0, offset_delta * 2, 0x01, 0x01];
            r.push(2); // one header
            r.push((header_key.len() * 2) as u8);
            r.extend_from_slice(header_key);
            r.push(0x01); // null value
            let mut out = vec![(r.len() * 2) as u8];
            out.extend(r);
            out
        };
        let plain = encode(&records(1), Producer::NONE, Compression::None).unwrap();
        assert!(check_all(&with_body(&plain, &rec(0, b"ok"), 1, 0)).is_ok());
        let cases: [(Vec<u8>, i32); 4] = [
            (rec(1, b"ok"), 0),                         // offset delta 1 at index 0
            (rec(0, b"\xff\xfe"), 0),                   // header key not UTF-8
            ([rec(0, b"k"), rec(3, b"k")].concat(), 1), // second record's delta wrong
            ([rec(0, b"k"), vec![0x7f]].concat(), 1),   // length runs past the end
        ];
        for (body, index) in cases {
            let n = index + 1;
            let got = check_all(&with_body(&plain, &body, n, 0));
            assert!(
                matches!(got, Err(RecordError::Record { index: i, .. }) if i == index),
                "{body:?}: {got:?}"
            );
        }
        // A header key twice in one record: kept, both of them.
        let mut r = vec![0u8, 0, 0, 0x01, 0x01, 4];
        for _ in 0..2 {
            r.extend_from_slice(&[2, b'h', 0x01]);
        }
        let mut dup = vec![(r.len() * 2) as u8];
        dup.extend(r);
        let dup = with_body(&plain, &dup, 1, 0);
        assert!(check_all(&dup).is_ok(), "Kafka allows a header key twice");
        let info = validate(&dup, usize::MAX).unwrap()[0];
        assert_eq!(
            header_lists(&dup, &info, 1 << 20).unwrap(),
            vec![vec![("h".to_string(), None), ("h".to_string(), None)]]
        );
    }

    #[test]
    fn refuses_a_decompression_bomb_past_the_cap() {
        for c in &CODECS[1..] {
            let big = vec![NewRecord {
                value: Some(Bytes::from(vec![0u8; 4 << 20])),
                ..Default::default()
            }];
            let b = encode(&big, Producer::NONE, *c).unwrap();
            assert!(b.len() < 1 << 20);
            let info = validate(&b, usize::MAX).unwrap()[0];
            assert_eq!(
                check(&b, &info, 1 << 20, &mut Vec::new()),
                Err(RecordError::TooLarge { limit: 1 << 20 }),
                "{c:?}"
            );
            assert!(check(&b, &info, 8 << 20, &mut Vec::new()).is_ok());
        }
    }

    proptest! {
        /// Any records section, under any codec bits, is accepted or refused without a panic.
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200),
                        count in 1i32..6, codec in 0i16..8) {
            let plain = encode(&records(1), Producer::NONE, Compression::None).unwrap();
            let b = with_body(&plain, &body, count, codec);
            if let Ok(infos) = validate(&b, usize::MAX) {
                let _ = check(&b, &infos[0], 1 << 16, &mut Vec::new());
            }
        }
    }
}
