//! Committed offsets of the embedded store: an append-only log of checksummed JSON lines.
//!
//! A commit appends one line holding every partition it commits, and one `fdatasync` covers
//! it, so committing is one sequential write however many offsets the store holds, and a crash
//! keeps a commit whole or drops it whole. On open the log is replayed into memory under the
//! torn-tail rule of [`crate::lines`] (only the last line may be cut; a bad line before it
//! refuses to open), and rewritten compactly when most of it is superseded.
//!
//! Lines written before checksums (one bare JSON object per partition) are still read.
//!
//! The offsets themselves live in a [`Groups`] map behind its own lock, which readers take
//! briefly; [`OffsetsLog`] is behind the writers' lock, held across the file I/O, and only
//! touches the map to apply a change once it is durable.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::lines::{self, unavailable, Framing};
use crate::{CommittedOffset, MetaError, OffsetEntry, Result};

pub(crate) const FILE: &str = "offsets.log";

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

pub(crate) type Groups = BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>;

/// Rewrite while running once superseded records outnumber live ones by this much (and two to
/// one), so a rewrite's cost, proportional to the live offsets, is spread over many commits.
const COMPACT_SLACK: usize = 100_000;
/// The same on open, where a rewrite costs no commit anything.
const COMPACT_SLACK_ON_OPEN: usize = 1000;

pub(crate) struct OffsetsLog {
    path: PathBuf,
    file: File,
    /// Bytes of whole lines in the file.
    len: u64,
    /// Records in the file, live or superseded.
    pub(crate) records: usize,
    /// Set when the file's state is unknown (a failed sync, a rewrite half installed): no
    /// more writes until the store is reopened.
    failed: Option<String>,
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

fn live(groups: &Groups) -> usize {
    groups.values().map(BTreeMap::len).sum()
}

fn poisoned() -> MetaError {
    unavailable("offsets", "lock poisoned")
}

impl OffsetsLog {
    /// Replays `<dir>/offsets.log`, cutting a torn last line. Refuses (leaving the file as it
    /// is) if any earlier line is bad.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Groups)> {
        let path = dir.join(FILE);
        let (data, existed) = match std::fs::read(&path) {
            Ok(d) => (d, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(unavailable("reading offsets log", e)),
        };
        let replayed = lines::replay(&path, &data, |framing, json| match framing {
            Framing::Legacy => lines::parse_json::<Line>(framing, json).map(|l| vec![l]),
            Framing::Checksummed => lines::parse_json::<Vec<Line>>(framing, json),
        })?;
        let mut groups = Groups::new();
        let mut records = 0usize;
        for (_, batch) in replayed.items {
            records += batch.len();
            for line in batch {
                apply(&mut groups, line);
            }
        }
        if replayed.good_len < data.len() as u64 {
            // Cut before anything is appended: a new line after a torn one would be corruption.
            lines::truncate(&path, replayed.good_len)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| unavailable("opening offsets log", e))?;
        if !existed {
            lines::sync_dir(dir)?;
        }
        let mut log = Self {
            path,
            file,
            len: replayed.good_len,
            records,
            failed: None,
        };
        if records > 2 * live(&groups) + COMPACT_SLACK_ON_OPEN {
            let lock = RwLock::new(groups);
            log.rewrite(&lock)?;
            groups = lock.into_inner().map_err(|_| poisoned())?;
        }
        Ok((log, groups))
    }

    /// Replaces the log with one line per live offset.
    fn rewrite(&mut self, groups: &RwLock<Groups>) -> Result<()> {
        let mut buf = Vec::new();
        let mut count = 0usize;
        {
            let groups = groups.read().map_err(|_| poisoned())?;
            for (group, offsets) in groups.iter() {
                for ((topic, partition), committed) in offsets {
                    let line = [Line::Commit {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        committed: committed.clone(),
                    }];
                    lines::encode(&line, &mut buf)?;
                    count += 1;
                }
            }
        }
        let tmp = lines::write_tmp(&self.path, &buf)?;
        if let Err((renamed, e)) = lines::install(&tmp, &self.path) {
            if renamed {
                self.failed = Some(format!("rewriting the offsets log: {e}"));
            }
            return Err(e);
        }
        match OpenOptions::new().append(true).open(&self.path) {
            Ok(f) => self.file = f,
            Err(e) => {
                let e = unavailable("reopening offsets log", e);
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.len = buf.len() as u64;
        self.records = count;
        Ok(())
    }

    /// Makes `batch` durable as one line, then applies it to `groups`.
    fn append(&mut self, groups: &RwLock<Groups>, batch: Vec<Line>) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(MetaError::Unavailable(format!(
                "offsets log is failed after an earlier error ({why}); reopen the store"
            )));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(batch.len() * 128);
        lines::encode(&batch, &mut buf)?;
        if let Err(e) = self.file.write_all(&buf) {
            // Nothing of it was synced: cut what reached the file so the log ends on a whole
            // line again. If even that fails the file's end is unknown.
            if let Err(cut) = self.file.set_len(self.len) {
                self.failed = Some(format!(
                    "write failed ({e}) and could not be undone ({cut})"
                ));
            }
            return Err(unavailable("writing offsets log", e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the line may or may not be on disk.
            self.failed = Some(format!("fsync failed: {e}"));
            return Err(unavailable("syncing offsets log", e));
        }
        self.len += buf.len() as u64;
        self.records += batch.len();
        let live = {
            let mut groups = groups.write().map_err(|_| poisoned())?;
            for line in batch {
                apply(&mut groups, line);
            }
            live(&groups)
        };
        // Mostly superseded records: rewrite compactly so the file and replay stay small. The
        // commit is durable already, so a failed rewrite is not its failure.
        if self.records > 2 * live + COMPACT_SLACK {
            if let Err(e) = self.rewrite(groups) {
                tracing::warn!(path = %self.path.display(), error = %e, "offsets log rewrite failed");
            }
        }
        Ok(())
    }

    pub(crate) fn commit(
        &mut self,
        groups: &RwLock<Groups>,
        group: &str,
        offsets: Vec<OffsetEntry>,
    ) -> Result<()> {
        self.append(
            groups,
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

    pub(crate) fn delete(
        &mut self,
        groups: &RwLock<Groups>,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<()> {
        self.append(
            groups,
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

    pub(crate) fn delete_group(&mut self, groups: &RwLock<Groups>, group: &str) -> Result<()> {
        self.append(
            groups,
            vec![Line::DeleteGroup {
                group: group.to_string(),
            }],
        )
    }
}
