//! Reading the log back on start: verify every entry, truncate a torn tail.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    segment_path, EntryMeta, Position, Segments, WalError, ENTRY_HEADER_LEN, RELEASED_SUFFIX,
    SEGMENT_MAGIC,
};

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every valid entry, in log order.
    pub entries: Vec<(EntryMeta, Position)>,
    /// Id the next segment will get.
    pub next_segment: u64,
    /// Bytes cut off the tail of the last segment.
    pub truncated_bytes: u64,
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Parses the entries of one segment image. Returns the entries and, if the image does not end
/// cleanly, the byte offset of the first bad entry with the reason.
/// Byte offset of the first bad entry, and why it is bad.
type BadEntry = Option<(u64, String)>;

fn scan(id: u64, data: &[u8]) -> (Vec<(EntryMeta, Position)>, BadEntry) {
    let mut out = Vec::new();
    let mut pos = SEGMENT_MAGIC.len();
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < ENTRY_HEADER_LEN {
            return (out, Some((pos as u64, "short entry header".into())));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < ENTRY_HEADER_LEN - 8 || len > rest.len() - 8 {
            return (
                out,
                Some((pos as u64, format!("entry length {len} out of range"))),
            );
        }
        let stored = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let body = &rest[8..8 + len];
        if crc32c::crc32c(body) != stored {
            return (out, Some((pos as u64, "checksum mismatch".into())));
        }
        if body[0] != 1 {
            return (
                out,
                Some((pos as u64, format!("unknown entry version {}", body[0]))),
            );
        }
        let mut id_bytes = [0u8; 16];
        id_bytes.copy_from_slice(&body[1..17]);
        let meta = EntryMeta {
            topic_id: Uuid::from_bytes(id_bytes),
            partition: be_i32(&body[17..]),
            leader_epoch: be_i32(&body[21..]),
            base_offset: be_i64(&body[25..]),
            record_count: be_i32(&body[33..]),
            max_timestamp: be_i64(&body[37..]),
        };
        out.push((
            meta,
            Position {
                segment: id,
                offset: (pos + ENTRY_HEADER_LEN) as u64,
                len: (len + 8 - ENTRY_HEADER_LEN) as u32,
            },
        ));
        pos += 8 + len;
    }
    (out, None)
}

pub(crate) fn recover(dir: &Path, segments: &Segments) -> Result<Recovered, WalError> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| WalError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // A release interrupted by a crash: those entries were archived already.
    for name in names.iter().filter(|n| n.ends_with(RELEASED_SUFFIX)) {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
    }
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|name| name.strip_suffix(".wal")?.parse::<u64>().ok())
        .collect();
    ids.sort_unstable();
    let mut rec = Recovered::default();
    for (i, &id) in ids.iter().enumerate() {
        let last = i + 1 == ids.len();
        let path = segment_path(dir, id);
        let data = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        if data.len() < SEGMENT_MAGIC.len() || data[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
            if last && data.len() < SEGMENT_MAGIC.len() {
                // Created but never written: a crash right after the roll.
                warn!(path = %path.display(), "removing empty wal segment");
                std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
                continue;
            }
            return Err(WalError::Corrupt {
                path,
                offset: 0,
                reason: "bad segment magic".into(),
            });
        }
        let (entries, bad) = scan(id, &data);
        if let Some((offset, reason)) = bad {
            if !last {
                return Err(WalError::Corrupt {
                    path,
                    offset,
                    reason,
                });
            }
            warn!(path = %path.display(), offset, %reason, "truncating torn wal tail");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            f.set_len(offset).map_err(|e| WalError::io(&path, e))?;
            f.sync_all().map_err(|e| WalError::io(&path, e))?;
            rec.truncated_bytes = data.len() as u64 - offset;
        }
        rec.entries.extend(entries);
        let file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        segments.insert(id, Arc::new(file));
        rec.next_segment = id + 1;
    }
    if !ids.is_empty() {
        info!(
            segments = ids.len(),
            entries = rec.entries.len(),
            truncated_bytes = rec.truncated_bytes,
            "wal recovered"
        );
    }
    Ok(rec)
}
