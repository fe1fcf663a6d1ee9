//! Committed offsets of the embedded store: an append-only log of JSON lines.
//!
//! A commit appends one line per partition and one `fdatasync` covers them, so committing is
//! one sequential write however many offsets the store holds. On open the log is replayed
//! into memory (a torn last line from a crash is cut off) and rewritten compactly when most
//! of it is superseded.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{CommittedOffset, MetaError, OffsetEntry, Result};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        #[serde(flatten)]
        committed: CommittedOffset,
    },
    Delete {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
}

type Groups = BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>;

pub(crate) struct OffsetsLog {
    path: PathBuf,
    file: File,
    pub(crate) groups: Groups,
    /// Lines in the file, live or superseded.
    lines: usize,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(format!("{what}: {e}"))
}

fn apply(groups: &mut Groups, line: Line) {
    match line {
        Line::Commit {
            group,
            topic,
            partition,
            committed,
        } => {
            groups
                .entry(group)
                .or_default()
                .insert((topic, partition), committed);
        }
        Line::Delete {
            group,
            topic,
            partition,
        } => {
            if let Some(g) = groups.get_mut(&group) {
                g.remove(&(topic, partition));
                if g.is_empty() {
                    groups.remove(&group);
                }
            }
        }
        Line::DeleteGroup { group } => {
            groups.remove(&group);
        }
    }
}

impl OffsetsLog {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("offsets.log");
        let mut groups = Groups::new();
        let mut lines = 0usize;
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(unavailable("reading offsets log", e)),
        };
        let mut good = 0usize;
        for raw in data.split_inclusive(|b| *b == b'\n') {
            let complete = raw.last() == Some(&b'\n');
            match serde_json::from_slice::<Line>(raw) {
                Ok(line) if complete => {
                    apply(&mut groups, line);
                    good += raw.len();
                    lines += 1;
                }
                // A torn or unreadable tail: everything before it stands.
                _ => break,
            }
        }
        if good < data.len() {
            tracing::warn!(path = %path.display(), cut = data.len() - good, "truncating torn offsets log tail");
        }
        let live: usize = groups.values().map(BTreeMap::len).sum();
        let mut log = Self {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| unavailable("opening offsets log", e))?,
            path,
            groups,
            lines,
        };
        if good < data.len() || lines > 2 * live + 1000 {
            log.rewrite()?;
        }
        Ok(log)
    }

    /// Replaces the log with one line per live offset.
    fn rewrite(&mut self) -> Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        let mut buf = Vec::new();
        for (group, offsets) in &self.groups {
            for ((topic, partition), committed) in offsets {
                let line = Line::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: committed.clone(),
                };
                serde_json::to_writer(&mut buf, &line).map_err(|e| unavailable("encoding", e))?;
                buf.push(b'\n');
            }
        }
        let mut f = File::create(&tmp).map_err(|e| unavailable("rewriting offsets log", e))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_all())
            .map_err(|e| unavailable("rewriting offsets log", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| unavailable("rewriting offsets log", e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| unavailable("syncing metadata dir", e))?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| unavailable("opening offsets log", e))?;
        self.lines = self.live();
        Ok(())
    }

    fn live(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    fn append(&mut self, lines: Vec<Line>) -> Result<()> {
        let mut buf = Vec::with_capacity(lines.len() * 128);
        for line in &lines {
            serde_json::to_writer(&mut buf, line).map_err(|e| unavailable("encoding", e))?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| unavailable("writing offsets log", e))?;
        self.lines += lines.len();
        for line in lines {
            apply(&mut self.groups, line);
        }
        // Mostly superseded lines: rewrite compactly so the file and replay stay small.
        if self.lines > 2 * self.live() + 100_000 {
            self.rewrite()?;
        }
        Ok(())
    }

    pub(crate) fn commit(&mut self, group: &str, offsets: Vec<OffsetEntry>) -> Result<()> {
        self.append(
            offsets
                .into_iter()
                .map(|e| Line::Commit {
                    group: group.to_string(),
                    topic: e.topic,
                    partition: e.partition,
                    committed: e.committed,
                })
                .collect(),
        )
    }

    pub(crate) fn delete(&mut self, group: &str, partitions: Vec<(String, i32)>) -> Result<()> {
        self.append(
            partitions
                .into_iter()
                .map(|(topic, partition)| Line::Delete {
                    group: group.to_string(),
                    topic,
                    partition,
                })
                .collect(),
        )
    }

    pub(crate) fn delete_group(&mut self, group: &str) -> Result<()> {
        self.append(vec![Line::DeleteGroup {
            group: group.to_string(),
        }])
    }
}
