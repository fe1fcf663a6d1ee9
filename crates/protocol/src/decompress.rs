//! Decoding stored record batches with a cap on how much a compressed batch may expand to.
//!
//! The broker stores compressed batches as sent, but decodes them to find an offset by
//! timestamp and to build archive segments. `kafka-protocol`'s own decompressors expand a batch
//! fully, however large, so a few kilobytes of zstd from a hostile producer could ask for
//! gigabytes. These decompressors stop at a limit and fail the batch instead.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder, RecordSet};

/// Default cap on a batch's decompressed size: far above what real producers send (their
/// batches are limited to about 1 MiB compressed), far below what would hurt the broker.
pub const MAX_DECOMPRESSED_BATCH: usize = 256 * 1024 * 1024;

/// Why a batch could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("batch decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("batch does not decode: {0}")]
    Invalid(String),
}

/// Reads everything from `r` onto `out`, failing once more than `limit` bytes came out.
fn read_capped_into(
    r: impl Read,
    limit: usize,
    out: &mut Vec<u8>,
    hint: usize,
) -> Result<(), DecodeError> {
    let start = out.len();
    // Room for a typical expansion up front, so the stream is not copied as the buffer grows.
    out.reserve(hint.min(limit));
    r.take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if out.len() - start > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(())
}

/// Snappy as Kafka clients write it: xerial framing (magic, version, compatible version, then
/// length-prefixed raw blocks) or, as the Java client accepts too, one raw snappy block.
fn snappy_into(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let invalid = |e: snap::Error| DecodeError::Invalid(e.to_string());
    let mut raw = snap::raw::Decoder::new();
    let base = out.len();
    let mut block = |b: &[u8], out: &mut Vec<u8>| -> Result<(), DecodeError> {
        let len = snap::raw::decompress_len(b).map_err(invalid)?;
        if out.len() - base + len > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        raw.decompress(b, &mut out[start..]).map_err(invalid)?;
        Ok(())
    };
    if !data.starts_with(MAGIC) {
        return block(data, out);
    }
    let mut rest = data
        .get(16..)
        .ok_or_else(|| DecodeError::Invalid("short xerial snappy header".into()))?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .ok_or_else(|| DecodeError::Invalid("short snappy block length".into()))?;
        let body = rest
            .get(4..4 + len)
            .ok_or_else(|| DecodeError::Invalid("snappy block runs past the end".into()))?;
        block(body, out)?;
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// Expands `data`, compressed with Kafka codec `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd),
/// onto `out`, failing once more than `limit` bytes came out. Codec 0 copies.
pub fn decompress_into(
    data: &[u8],
    codec: i16,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let invalid = |e: std::io::Error| DecodeError::Invalid(e.to_string());
    let hint = data.len().saturating_mul(4);
    match codec {
        0 if data.len() > limit => Err(DecodeError::TooLarge { limit }),
        0 => {
            out.extend_from_slice(data);
            Ok(())
        }
        1 => read_capped_into(flate2::read::GzDecoder::new(data), limit, out, hint),
        2 => snappy_into(data, limit, out),
        3 => read_capped_into(lz4::Decoder::new(data).map_err(invalid)?, limit, out, hint),
        4 => read_capped_into(
            zstd::stream::read::Decoder::new(data).map_err(invalid)?,
            limit,
            out,
            hint,
        ),
        c => Err(DecodeError::Invalid(format!(
            "unknown compression codec {c}"
        ))),
    }
}

fn decompress(data: &Bytes, compression: Compression, limit: usize) -> Result<Bytes, DecodeError> {
    let codec = match compression {
        Compression::None => return Ok(data.clone()),
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let mut out = Vec::new();
    decompress_into(data, codec, limit, &mut out)?;
    Ok(Bytes::from(out))
}

/// Decodes one stored batch, refusing one whose records expand beyond `limit` bytes.
pub fn decode_batch(batch: &Bytes, limit: usize) -> Result<RecordSet, DecodeError> {
    let mut buf = batch.clone();
    let too_large = std::cell::Cell::new(false);
    let result = RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(|data: &mut Bytes, c: Compression| {
            decompress(data, c, limit).map_err(|e| {
                if matches!(e, DecodeError::TooLarge { .. }) {
                    too_large.set(true);
                }
                anyhow::anyhow!(e)
            })
        }),
    );
    match result {
        Ok(set) => Ok(set),
        Err(_) if too_large.get() => Err(DecodeError::TooLarge { limit }),
        Err(e) => Err(DecodeError::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode, NewRecord, Producer};

    fn batch_of(value_len: usize, n: usize, c: Compression) -> Bytes {
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                value: Some(Bytes::from(vec![b'a' + (i % 3) as u8; value_len])),
                timestamp: i as i64,
                ..Default::default()
            })
            .collect();
        encode(&records, Producer::NONE, c).unwrap()
    }

    #[test]
    fn decodes_every_codec_like_the_library_does() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch_of(100, 20, c);
            let ours = decode_batch(&b, MAX_DECOMPRESSED_BATCH).unwrap();
            let theirs = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
            assert_eq!(ours, theirs, "{c:?}");
        }
    }

    #[test]
    fn refuses_batches_that_expand_past_the_limit() {
        // 4 MiB of repeated bytes compress to a few kilobytes with every codec.
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch_of(1 << 20, 4, c);
            assert!(b.len() < 1 << 20, "{c:?} compressed to {}", b.len());
            assert!(
                matches!(decode_batch(&b, 1 << 20), Err(DecodeError::TooLarge { .. })),
                "{c:?}"
            );
            assert!(decode_batch(&b, 8 << 20).is_ok(), "{c:?}");
        }
    }
}
