//! One segmented write-ahead log per broker, shared by all its partitions.
//!
//! Every acknowledged batch is in here before the producer hears about it. The log is owned by
//! one dedicated OS thread (file I/O is blocking, and a single writer needs no locks): producers
//! hand it [`Append`]s over a channel and learn the outcome on a oneshot. The thread drains
//! whatever is queued and writes it with one vectored `write` (no copy of batch bytes); a second
//! thread covers everything written so far with one `fdatasync` (group commit), so the cost of a
//! sync is shared by every batch that arrived while the previous one ran, and writing goes on
//! while a sync is in progress.
//!
//! On-disk layout: files `NNNNNNNNNNNNNNNNNNNN.wal` (segment id, zero-padded), each starting with
//! an 8-byte magic, then entries:
//!
//! ```text
//! len u32 | crc32c u32 | version u8 | topic_id [16] | partition i32 | leader_epoch i32
//!         | base_offset i64 | record_count i32 | max_timestamp i64 | batch bytes ...
//! ```
//! `len` counts the bytes after the CRC; the CRC covers exactly those bytes. Recovery reads
//! every segment in order and truncates the last one at the first entry that is short or fails
//! its CRC (a torn tail). A bad entry in an older segment is real corruption: opening fails
//! rather than silently dropping acknowledged data that follows it.

mod recovery;
mod writer;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use recovery::Recovered;

/// Magic at the start of every segment file: "SDWAL", two zero bytes, format version 1.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SDWAL\0\0\x01";
/// Bytes of entry header before the batch bytes.
pub const ENTRY_HEADER_LEN: usize = 53;
const ENTRY_VERSION: u8 = 1;

/// Errors of the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("wal i/o on {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("wal is failed after an earlier sync error; restart to recover")]
    Failed,
    /// A write failed (most often: the disk is full) and was rolled back; writes are refused
    /// until the owner calls [`Wal::resume`], e.g. once space is free again.
    #[error("wal writes are suspended after a failed write (disk full?); retry later")]
    Suspended,
    #[error("wal is closed")]
    Closed,
    #[error("corrupt entry in {path} at byte {offset} (not the log tail): {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl WalError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// What an entry says about the batch it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub base_offset: i64,
    pub record_count: i32,
    pub max_timestamp: i64,
}

/// Where an entry's batch bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    /// File offset of the batch bytes (after the entry header).
    pub offset: u64,
    pub len: u32,
}

/// How far an append must get before its `done` fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the file (survives a crash of the process, not of the machine).
    Written,
    /// Covered by `fdatasync`.
    Synced,
}

/// One batch to append.
pub struct Append {
    pub meta: EntryMeta,
    /// The batch bytes, possibly in pieces (written back to back, read back as one): lets a
    /// caller patch a header without copying the body.
    pub data: Vec<Bytes>,
    pub durability: Durability,
    pub done: Option<oneshot::Sender<Result<Position, WalError>>>,
    /// Dropped once the entry is synced: lets callers bound the bytes waiting on the log.
    pub guard: Option<Box<dyn Send>>,
}

impl Append {
    /// Total bytes of `data`.
    pub fn data_len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }
}

/// Told, on the log's thread and in log order, what became written and then durable.
/// Implementations must be quick: the log waits for them.
pub trait Sink: Send + Sync + 'static {
    fn written(&self, entries: &[(EntryMeta, Position)]);
    fn synced(&self, entries: &[(EntryMeta, Position)]);
    /// One fdatasync took `took` and made `entries` entries durable (for metrics).
    fn sync_took(&self, _took: std::time::Duration, _entries: usize) {}
}

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Most bytes one group commit writes before syncing.
    pub max_group_bytes: usize,
    /// Skip fdatasync entirely (tests and benchmarks of the CPU path only).
    pub sync: bool,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            max_group_bytes: 8 * 1024 * 1024,
            sync: true,
        }
    }
}

/// Shared, read-only handles to segment files, for readers on any thread.
#[derive(Clone, Default)]
pub struct Segments {
    files: Arc<RwLock<BTreeMap<u64, Arc<File>>>>,
    dir: PathBuf,
    /// Id of the segment the writer appends to (or will start next); never released.
    active: Arc<AtomicU64>,
    /// Bytes of all segment files.
    disk_bytes: Arc<AtomicU64>,
}

impl Segments {
    /// Id of the segment being written. Every entry not yet reported `written` lands in this
    /// segment or a later one, so a caller that reads this *before* looking at what it has
    /// indexed can never release an entry it has not seen.
    pub fn active_segment(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }

    /// Bytes the log's segment files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::SeqCst)
    }

    /// Deletes every segment file with an id below `bound` (never the active one): their
    /// entries are no longer needed. Returns how many files and bytes were freed.
    ///
    /// Each file is renamed out of the log first, then shrunk [`RELEASE_STEP_BYTES`] at a time
    /// with a short pause between steps, then unlinked: freeing a whole file in one go makes the
    /// filesystem release (and, mounted with `discard`, trim) all its blocks in one journal
    /// commit, which every concurrent `fdatasync` of the writer waits for (~20 ms for 512 MiB
    /// on ext4 here; under 2 ms in steps). Takes a few milliseconds per step: call it off the
    /// async runtime.
    pub fn release_below(&self, bound: u64) -> Result<(usize, u64), WalError> {
        let bound = bound.min(self.active_segment());
        let gone: Vec<(u64, Arc<File>)> = {
            let mut files = self.files.write().map_err(|_| WalError::Failed)?;
            let keep = files.split_off(&bound);
            std::mem::replace(&mut *files, keep).into_iter().collect()
        };
        let mut freed = 0u64;
        for (id, file) in gone.iter() {
            let path = segment_path(&self.dir, *id);
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let doomed = released_path(&self.dir, *id);
            match std::fs::rename(&path, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(WalError::io(&path, e)),
            }
            remove_in_steps(&doomed).map_err(|e| WalError::io(&doomed, e))?;
            freed += len;
            self.disk_bytes
                .fetch_sub(len.min(self.disk_bytes()), Ordering::SeqCst);
        }
        // No directory fsync: a crash that brings a released segment back only makes recovery
        // read entries its caller already holds elsewhere, and an fsync here would force a
        // journal commit that stalls the writer's fdatasyncs on ext4.
        Ok((gone.len(), freed))
    }

    /// Every segment file's id and size, oldest first.
    pub fn sizes(&self) -> Vec<(u64, u64)> {
        self.files
            .read()
            .map(|m| {
                m.iter()
                    .map(|(id, f)| (*id, f.metadata().map(|m| m.len()).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Id of the oldest segment file still present.
    pub fn oldest_segment(&self) -> Option<u64> {
        self.files.read().ok()?.keys().next().copied()
    }

    pub(crate) fn set_active(&self, id: u64) {
        self.active.store(id, Ordering::SeqCst);
    }

    pub(crate) fn add_disk_bytes(&self, n: u64) {
        self.disk_bytes.fetch_add(n, Ordering::SeqCst);
    }

    fn insert(&self, id: u64, file: Arc<File>) {
        if let Ok(mut m) = self.files.write() {
            m.insert(id, file);
        }
    }

    /// Reads the first `len` bytes (at most) of the batch at `pos`.
    pub fn read_prefix(&self, pos: &Position, len: usize) -> Result<Bytes, WalError> {
        let short = Position {
            len: pos.len.min(len as u32),
            ..*pos
        };
        self.read(&short)
    }

    /// Reads the batch bytes at `pos`. Blocking (a `pread`), normally served from page cache.
    pub fn read(&self, pos: &Position) -> Result<Bytes, WalError> {
        let file = self
            .files
            .read()
            .map_err(|_| WalError::Failed)?
            .get(&pos.segment)
            .cloned();
        let path = segment_path(&self.dir, pos.segment);
        let file = file.ok_or_else(|| WalError::Io {
            path: path.clone(),
            message: "segment is not open".into(),
        })?;
        let mut buf = vec![0u8; pos.len as usize];
        file.read_exact_at(&mut buf, pos.offset)
            .map_err(|e| WalError::io(&path, e))?;
        Ok(Bytes::from(buf))
    }
}

/// Path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Name a released segment has while it is being removed; recovery deletes any it finds.
fn released_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{RELEASED_SUFFIX}"))
}

const RELEASED_SUFFIX: &str = ".wal.released";

/// Bytes a released file shrinks by in one step.
pub const RELEASE_STEP_BYTES: u64 = 8 * 1024 * 1024;

/// Pause between two steps, long enough for a journal commit to come between them.
const RELEASE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Truncates `path` from its end in steps of [`RELEASE_STEP_BYTES`], pausing between them,
/// then unlinks it: removing a large file this way keeps the journal commits it causes small
/// (see [`Segments::release_below`]). Blocks for about a millisecond per step.
pub fn remove_in_steps(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > RELEASE_STEP_BYTES {
        len -= RELEASE_STEP_BYTES;
        file.set_len(len)?;
        std::thread::sleep(RELEASE_STEP_PAUSE);
    }
    drop(file);
    std::fs::remove_file(path)
}

/// A handle to the running log. Dropping every clone of the sender stops the thread after it
/// has written and synced everything queued; [`Wal::close`] waits for that.
pub struct Wal {
    tx: Option<std::sync::mpsc::Sender<writer::Msg>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    segments: Segments,
    failed: Arc<std::sync::atomic::AtomicBool>,
    suspended: Arc<std::sync::atomic::AtomicBool>,
}

impl Wal {
    /// Opens (creating if needed) the log in `config.dir`, recovers it, and starts the writer
    /// thread. Every recovered entry is returned in log order so the caller can rebuild its
    /// state; they are all durable.
    pub fn open(config: WalConfig, sink: Arc<dyn Sink>) -> Result<(Self, Recovered), WalError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| WalError::io(&config.dir, e))?;
        let segments = Segments {
            files: Arc::default(),
            dir: config.dir.clone(),
            active: Arc::default(),
            disk_bytes: Arc::default(),
        };
        let recovered = recovery::recover(&config.dir, &segments)?;
        segments.set_active(recovered.next_segment);
        let on_disk: u64 = segments
            .files
            .read()
            .map(|m| {
                m.values()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        segments.add_disk_bytes(on_disk);
        let (tx, rx) = std::sync::mpsc::channel();
        let (sync_tx, sync_rx) = std::sync::mpsc::channel();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let suspended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spawn_error = |e: std::io::Error| WalError::Io {
            path: PathBuf::new(),
            message: format!("spawning a wal thread: {e}"),
        };
        let (syncer_sink, syncer_failed, sync) = (sink.clone(), failed.clone(), config.sync);
        let syncer = std::thread::Builder::new()
            .name("sediment-wal-sync".into())
            .spawn(move || writer::sync_loop(sync_rx, syncer_sink, syncer_failed, sync))
            .map_err(spawn_error)?;
        let mut w = writer::Writer::new(
            config,
            segments.clone(),
            sink,
            recovered.next_segment,
            failed.clone(),
            suspended.clone(),
            sync_tx,
        )?;
        let writer = std::thread::Builder::new()
            .name("sediment-wal".into())
            .spawn(move || w.run(rx))
            .map_err(spawn_error)?;
        Ok((
            Self {
                tx: Some(tx),
                // Joined in this order: the writer first, whose end lets the syncer end.
                threads: vec![writer, syncer],
                segments,
                failed,
                suspended,
            },
            recovered,
        ))
    }

    /// Queues an append. Never blocks; the outcome arrives on `append.done`.
    pub fn submit(&self, append: Append) -> Result<(), WalError> {
        match &self.tx {
            Some(tx) => tx
                .send(writer::Msg::Append(append))
                .map_err(|_| WalError::Closed),
            None => Err(WalError::Closed),
        }
    }

    /// True after a write failed and was rolled back: every append fails with
    /// [`WalError::Suspended`] until [`Wal::resume`].
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes writes again after a suspension. The resume travels the append queue: appends
    /// submitted before this call still fail (their offsets were given out before the owner
    /// rolled its state back), appends submitted after it are written.
    pub fn resume(&self) -> Result<(), WalError> {
        match &self.tx {
            Some(tx) => tx.send(writer::Msg::Resume).map_err(|_| WalError::Closed),
            None => Err(WalError::Closed),
        }
    }

    /// What is wrong with the log, if anything: a failed write or sync (nothing more is
    /// acknowledged until a restart), or a writer or syncer thread that is gone while the log
    /// is open.
    pub fn problem(&self) -> Option<String> {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("failed after a write or sync error; restart to recover".into());
        }
        if self.tx.is_some() && self.threads.iter().any(|t| t.is_finished()) {
            return Some("a wal thread stopped".into());
        }
        None
    }

    /// Readers of segment files.
    pub fn segments(&self) -> Segments {
        self.segments.clone()
    }

    /// Stops accepting appends, lets the writer flush and sync what is queued, and waits.
    pub fn close(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn encode_header(buf: &mut Vec<u8>, meta: &EntryMeta, data: &[Bytes]) {
    let data_len: usize = data.iter().map(Bytes::len).sum();
    let len = (ENTRY_HEADER_LEN - 8 + data_len) as u32;
    let start = buf.len();
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&[0; 4]); // CRC, filled below
    buf.push(ENTRY_VERSION);
    buf.extend_from_slice(meta.topic_id.as_bytes());
    buf.extend_from_slice(&meta.partition.to_be_bytes());
    buf.extend_from_slice(&meta.leader_epoch.to_be_bytes());
    buf.extend_from_slice(&meta.base_offset.to_be_bytes());
    buf.extend_from_slice(&meta.record_count.to_be_bytes());
    buf.extend_from_slice(&meta.max_timestamp.to_be_bytes());
    let crc = data
        .iter()
        .fold(crc32c::crc32c(&buf[start + 8..]), |crc, d| {
            crc32c::crc32c_append(crc, d)
        });
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests;
