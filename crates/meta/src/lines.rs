//! Line framing shared by the embedded store's append-only logs, and the torn-tail rule.
//!
//! A line is `<crc32c of the JSON, 8 lowercase hex digits> <JSON>\n`. serde_json escapes
//! newlines inside strings, so a record never spans lines. Lines that start with `{` are the
//! older, unchecksummed form (`offsets.log` before checksums); a log that accepts them says so.
//!
//! Replay reads every line. A crash can tear at most the last line, because every append is
//! one line and the next append starts only after the previous one's fsync returned. So the
//! last line may be cut if it is incomplete (no newline) or fails its checksum; a bad line
//! anywhere before the end is corruption, and the log refuses to open without touching the
//! file. A line whose checksum matches but whose content is not understood was written whole:
//! it is never cut, wherever it is.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{MetaError, Result};

/// How a line was framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `<crc> <json>`: the checksum matched.
    Checksummed,
    /// A bare JSON object, as written before checksums.
    Legacy,
}

/// Why a line could not be replayed.
pub(crate) enum Bad {
    /// What a torn write can leave: cut if it is the last line.
    Torn(String),
    /// Written whole but not understood: never cut.
    Invalid(String),
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(format!("{what}: {e}"))
}

/// Appends `value` to `buf` as one checksummed line.
pub(crate) fn encode<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    let json = serde_json::to_vec(value).map_err(|e| unavailable("encoding", e))?;
    let crc = crc32c::crc32c(&json);
    buf.extend_from_slice(format!("{crc:08x} ").as_bytes());
    buf.extend_from_slice(&json);
    buf.push(b'\n');
    Ok(())
}

/// Splits a line (without its newline) into its framing and JSON payload.
fn unframe(line: &[u8]) -> std::result::Result<(Framing, &[u8]), Bad> {
    if line.first() == Some(&b'{') {
        return Ok((Framing::Legacy, line));
    }
    let (Some(hex), Some(b' ')) = (line.get(..8), line.get(8)) else {
        return Err(Bad::Torn("no checksum".into()));
    };
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(Bad::Torn("no checksum".into()));
    }
    let expected = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| Bad::Torn("no checksum".into()))?;
    let payload = &line[9..];
    let actual = crc32c::crc32c(payload);
    if actual != expected {
        return Err(Bad::Torn(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x})"
        )));
    }
    Ok((Framing::Checksummed, payload))
}

/// What a replay found.
pub(crate) struct Replayed<T> {
    /// Decoded lines with their 1-based line numbers.
    pub(crate) items: Vec<(usize, T)>,
    /// Bytes of whole, valid lines; the file should be cut here if it is longer.
    pub(crate) good_len: u64,
}

/// Decodes every line of `data` (the contents of `path`) with `parse`, applying the torn-tail
/// rule. `parse` gets the framing and the JSON payload.
pub(crate) fn replay<T>(
    path: &Path,
    data: &[u8],
    mut parse: impl FnMut(Framing, &[u8]) -> std::result::Result<T, Bad>,
) -> Result<Replayed<T>> {
    let mut items = Vec::new();
    let mut pos = 0usize;
    let mut number = 0usize;
    while pos < data.len() {
        number += 1;
        let rest = &data[pos..];
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (Some(&rest[..i]), pos + i + 1),
            None => (None, data.len()),
        };
        let decoded = match line {
            None => Err(Bad::Torn("incomplete line (no newline)".into())),
            Some(line) => unframe(line).and_then(|(framing, json)| parse(framing, json)),
        };
        match decoded {
            Ok(item) => items.push((number, item)),
            Err(Bad::Torn(reason)) if next == data.len() => {
                tracing::warn!(
                    path = %path.display(),
                    line = number,
                    cut = data.len() - pos,
                    %reason,
                    "cutting a torn last line"
                );
                return Ok(Replayed {
                    items,
                    good_len: pos as u64,
                });
            }
            Err(Bad::Torn(reason)) | Err(Bad::Invalid(reason)) => {
                return Err(corrupt(path, number, reason));
            }
        }
        pos = next;
    }
    Ok(Replayed {
        items,
        good_len: data.len() as u64,
    })
}

pub(crate) fn corrupt(path: &Path, line: usize, reason: impl Into<String>) -> MetaError {
    MetaError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Parses a JSON payload, calling a failure `Invalid` (the line was checksummed, so it was
/// written whole) or `Torn` (a legacy line carries no checksum to tell).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    framing: Framing,
    json: &[u8],
) -> std::result::Result<T, Bad> {
    serde_json::from_slice(json).map_err(|e| match framing {
        Framing::Checksummed => Bad::Invalid(format!("unreadable record: {e}")),
        Framing::Legacy => Bad::Torn(format!("unreadable record: {e}")),
    })
}

/// Cuts `path` to `len` bytes and makes that durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| unavailable(&format!("opening {}", path.display()), e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| unavailable(&format!("truncating {}", path.display()), e))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| unavailable("syncing metadata dir", e))
}

/// Writes `bytes` to `<path>.tmp` and fsyncs it: the first half of an atomic replace. Nothing
/// visible has changed if this fails.
pub(crate) fn write_tmp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    let mut f =
        File::create(&tmp).map_err(|e| unavailable(&format!("writing {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| unavailable(&format!("writing {}", tmp.display()), e))?;
    Ok(tmp)
}

/// Renames a file written by [`write_tmp`] over `path` and fsyncs the directory. If the rename
/// fails nothing changed; if the directory sync fails the new file may or may not survive a
/// crash.
pub(crate) fn install(tmp: &Path, path: &Path) -> std::result::Result<(), (bool, MetaError)> {
    std::fs::rename(tmp, path).map_err(|e| {
        (
            false,
            unavailable(&format!("renaming {}", tmp.display()), e),
        )
    })?;
    match path.parent() {
        Some(dir) => sync_dir(dir).map_err(|e| (true, e)),
        None => Ok(()),
    }
}

/// Replaces `path` with `bytes` atomically (write, fsync, rename, fsync the directory).
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_tmp(path, bytes)?;
    install(&tmp, path).map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: &serde_json::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(value, &mut buf).unwrap();
        buf
    }

    fn numbers(data: &[u8]) -> Result<(Vec<i64>, u64)> {
        let r = replay(Path::new("test.log"), data, |framing, json| {
            parse_json::<serde_json::Value>(framing, json)
                .and_then(|v| v["n"].as_i64().ok_or_else(|| Bad::Invalid("no n".into())))
        })?;
        Ok((r.items.into_iter().map(|(_, n)| n).collect(), r.good_len))
    }

    fn three() -> (Vec<u8>, [usize; 3]) {
        let mut data = Vec::new();
        let mut ends = [0; 3];
        for (i, end) in ends.iter_mut().enumerate() {
            data.extend(line(&serde_json::json!({ "n": i })));
            *end = data.len();
        }
        (data, ends)
    }

    #[test]
    fn whole_lines_replay_in_order() {
        let (data, ends) = three();
        assert_eq!(numbers(&data).unwrap(), (vec![0, 1, 2], ends[2] as u64));
        assert_eq!(numbers(b"").unwrap(), (vec![], 0));
        assert!(data.starts_with(format!("{:08x} {{", crc32c::crc32c(br#"{"n":0}"#)).as_bytes()));
    }

    #[test]
    fn only_the_last_line_may_be_torn() {
        let (data, ends) = three();
        // Incomplete: no newline.
        let cut = &data[..data.len() - 3];
        assert_eq!(numbers(cut).unwrap(), (vec![0, 1], ends[1] as u64));
        // Complete but failing its checksum (a sector that never reached the disk).
        let mut zeroed = data.clone();
        zeroed[ends[1] + 12] = 0;
        assert_eq!(numbers(&zeroed).unwrap(), (vec![0, 1], ends[1] as u64));
        // The same damage one line earlier is corruption, whatever follows.
        let mut middle = data.clone();
        middle[ends[0] + 12] = 0;
        match numbers(&middle) {
            Err(MetaError::Corrupt { path, line, reason }) => {
                assert_eq!((path.as_path(), line), (Path::new("test.log"), 2));
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // Two bad lines at the end: the first is not the last.
        let mut two = data[..ends[1]].to_vec();
        two.extend_from_slice(b"garbage\nmore");
        assert!(matches!(
            numbers(&two),
            Err(MetaError::Corrupt { line: 3, .. })
        ));
    }

    #[test]
    fn a_checksummed_line_is_never_cut() {
        // Written whole (its checksum matches) but not understood: not a torn write.
        let (mut data, _) = three();
        data.extend(line(&serde_json::json!({ "m": 3 })));
        assert!(matches!(
            numbers(&data),
            Err(MetaError::Corrupt { line: 4, .. })
        ));
    }

    #[test]
    fn legacy_lines_are_read_without_a_checksum() {
        let mut data = b"{\"n\":7}\n".to_vec();
        data.extend(line(&serde_json::json!({ "n": 8 })));
        let len = data.len() as u64;
        assert_eq!(numbers(&data).unwrap(), (vec![7, 8], len));
        // A legacy line that does not parse: torn at the end, corrupt before it.
        assert_eq!(numbers(b"{\"n\":7}\n{\"n\":").unwrap(), (vec![7], 8));
        assert_eq!(numbers(b"{\"n\":7}\n{\"n\":}\n").unwrap(), (vec![7], 8));
        assert!(matches!(
            numbers(b"{\"n\":}\n{\"n\":7}\n"),
            Err(MetaError::Corrupt { line: 1, .. })
        ));
    }
}
