//! The log's single writer and its syncer: group commit on two dedicated threads.
//!
//! The writer thread writes each group and reports it *written*; the syncer thread then covers
//! every group written so far with one `fdatasync` and reports them *synced*. Splitting the two
//! lets the next group be written while the previous sync runs, so the disk is kept busy with
//! both; an fdatasync covers everything written before it started, so acknowledging every
//! group queued before the sync call is sound.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use tracing::{debug, error};

use crate::{
    encode_header, segment_path, Append, Durability, EntryMeta, Position, Segments, Sink,
    WalConfig, WalError, ENTRY_HEADER_LEN, SEGMENT_MAGIC,
};

struct Open {
    id: u64,
    file: Arc<File>,
    size: u64,
}

pub(crate) struct Writer {
    config: WalConfig,
    segments: Segments,
    sink: Arc<dyn Sink>,
    current: Option<Open>,
    next_id: u64,
    /// Set after a failed sync (or a write that could not be rolled back): the state of the
    /// file is unknown (a failed fsync may have dropped dirty pages, and Linux reports it only
    /// once), so nothing more is acknowledged until a restart re-reads it.
    failed: Arc<AtomicBool>,
    /// Set after a write that failed and was cut off again (the file ends where the last good
    /// group ended): appends fail until a [`Msg::Resume`] comes through the queue.
    suspended: Arc<AtomicBool>,
    buf: Vec<u8>,
    to_syncer: Option<Sender<Written>>,
}

/// What the queue carries.
pub(crate) enum Msg {
    Append(Append),
    /// Clear a suspension: everything queued before it has been failed.
    Resume,
}

/// Why a segment could not be started.
enum RollError {
    /// Finishing the old segment failed: the log's state is unknown.
    Fatal(WalError),
    /// The new file could not be made (no space, ...): it was removed; nothing is lost.
    Retriable(WalError),
}

/// A group that is written and waits for its sync.
pub(crate) struct Written {
    file: Arc<File>,
    path: PathBuf,
    entries: Vec<(EntryMeta, Position)>,
    group: Vec<Append>,
}

impl Writer {
    pub(crate) fn new(
        config: WalConfig,
        segments: Segments,
        sink: Arc<dyn Sink>,
        next_id: u64,
        failed: Arc<AtomicBool>,
        suspended: Arc<AtomicBool>,
        to_syncer: Sender<Written>,
    ) -> Result<Self, WalError> {
        Ok(Self {
            config,
            segments,
            sink,
            current: None,
            next_id,
            failed,
            suspended,
            buf: Vec::with_capacity(1 << 20),
            to_syncer: Some(to_syncer),
        })
    }

    pub(crate) fn run(&mut self, rx: Receiver<Msg>) {
        // An append taken from the queue that did not fit the previous group.
        let mut carry: Option<Append> = None;
        // A resume taken from the queue while a group was being gathered: it applies after
        // that group, in queue order.
        let mut resume = false;
        loop {
            if std::mem::take(&mut resume) {
                self.resume();
            }
            let first = match carry.take() {
                Some(a) => a,
                None => match rx.recv() {
                    Ok(Msg::Append(a)) => a,
                    Ok(Msg::Resume) => {
                        self.resume();
                        continue;
                    }
                    Err(_) => break,
                },
            };
            let entry_len = |a: &Append| ENTRY_HEADER_LEN + a.data_len();
            let mut bytes = entry_len(&first);
            let mut group = vec![first];
            // A group stops at the room left in the current segment (or a fresh segment's
            // size), so segments exceed their size only by an entry that alone is larger.
            let room = match &self.current {
                Some(o) if o.size < self.config.segment_bytes => {
                    (self.config.segment_bytes - o.size) as usize
                }
                _ => self.config.segment_bytes as usize,
            };
            let limit = self.config.max_group_bytes.min(room);
            while bytes < limit {
                match rx.try_recv() {
                    Ok(Msg::Append(a)) if bytes + entry_len(&a) > limit => {
                        carry = Some(a);
                        break;
                    }
                    Ok(Msg::Append(a)) => {
                        bytes += entry_len(&a);
                        group.push(a);
                    }
                    Ok(Msg::Resume) => {
                        resume = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        // Dropping the sender lets the syncer finish what is queued and stop.
        self.to_syncer.take();
        debug!("wal writer stopped");
    }

    fn resume(&mut self) {
        if self.suspended.swap(false, Ordering::SeqCst) {
            tracing::info!("wal writes resumed");
        }
    }

    fn roll(&mut self) -> Result<(), RollError> {
        // The syncer syncs only the newest segment; the old one is finished here.
        if let (Some(old), true) = (&self.current, self.config.sync) {
            old.file.sync_data().map_err(|e| {
                RollError::Fatal(WalError::io(&segment_path(&self.config.dir, old.id), e))
            })?;
        }
        let id = self.next_id;
        let path = segment_path(&self.config.dir, id);
        self.start_segment(id, &path).map_err(RollError::Retriable)
    }

    fn start_segment(&mut self, id: u64, path: &std::path::Path) -> Result<(), WalError> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        let prepare = || -> std::io::Result<()> {
            file.write_all_at(&SEGMENT_MAGIC, 0)?;
            if self.config.sync {
                file.sync_all()?;
                // The new name must be durable too, or a crash could lose the whole segment.
                File::open(&self.config.dir).and_then(|d| d.sync_all())?;
            }
            Ok(())
        };
        if let Err(e) = prepare() {
            // Nothing was written to the new file yet: remove it, so a retry starts afresh.
            let _ = std::fs::remove_file(&path);
            return Err(WalError::io(&path, e));
        }
        (&file)
            .seek(SeekFrom::Start(SEGMENT_MAGIC.len() as u64))
            .map_err(|e| WalError::io(&path, e))?;
        let file = Arc::new(file);
        self.segments.insert(id, file.clone());
        self.segments.set_active(id);
        self.segments.add_disk_bytes(SEGMENT_MAGIC.len() as u64);
        self.next_id += 1;
        self.current = Some(Open {
            id,
            file,
            size: SEGMENT_MAGIC.len() as u64,
        });
        debug!(segment = id, "wal segment started");
        Ok(())
    }

    fn fail(group: Vec<Append>, err: WalError) {
        for a in group {
            if let Some(done) = a.done {
                let _ = done.send(Err(err.clone()));
            }
        }
    }

    fn commit(&mut self, mut group: Vec<Append>) {
        if self.failed.load(Ordering::SeqCst) {
            return Self::fail(group, WalError::Failed);
        }
        if self.suspended.load(Ordering::SeqCst) {
            return Self::fail(group, WalError::Suspended);
        }
        let group_bytes: u64 = group
            .iter()
            .map(|a| (ENTRY_HEADER_LEN + a.data_len()) as u64)
            .sum();
        // Roll when full, or when this group would overflow a segment that holds entries
        // already: a segment exceeds its size by at most one group that alone is larger.
        let needs_roll = match &self.current {
            None => true,
            Some(o) => {
                o.size >= self.config.segment_bytes
                    || (o.size > SEGMENT_MAGIC.len() as u64
                        && o.size + group_bytes > self.config.segment_bytes)
            }
        };
        if needs_roll {
            match self.roll() {
                Ok(()) => {}
                Err(RollError::Fatal(e)) => {
                    error!(error = %e, "wal segment roll failed");
                    self.failed.store(true, Ordering::SeqCst);
                    return Self::fail(group, e);
                }
                Err(RollError::Retriable(e)) => {
                    error!(error = %e, "starting a wal segment failed; writes suspended");
                    self.suspended.store(true, Ordering::SeqCst);
                    return Self::fail(group, e);
                }
            }
        }
        let Some(open) = self.current.as_mut() else {
            return Self::fail(group, WalError::Failed);
        };
        // Entry headers go into one buffer; batch bytes are written straight from the
        // producers' buffers with vectored writes.
        self.buf.clear();
        let mut entries: Vec<(EntryMeta, Position)> = Vec::with_capacity(group.len());
        let mut header_at = Vec::with_capacity(group.len());
        let mut offset = open.size;
        for a in &group {
            header_at.push(self.buf.len());
            encode_header(&mut self.buf, &a.meta, &a.data);
            let len = a.data_len();
            entries.push((
                a.meta,
                Position {
                    segment: open.id,
                    offset: offset + ENTRY_HEADER_LEN as u64,
                    len: len as u32,
                },
            ));
            offset += (ENTRY_HEADER_LEN + len) as u64;
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(group.len() * 3);
        for (a, &h) in group.iter().zip(&header_at) {
            slices.push(IoSlice::new(&self.buf[h..h + ENTRY_HEADER_LEN]));
            slices.extend(
                a.data
                    .iter()
                    .filter(|d| !d.is_empty())
                    .map(|d| IoSlice::new(d)),
            );
        }
        let path = segment_path(&self.config.dir, open.id);
        if let Err(e) = write_all_vectored(&open.file, &mut slices) {
            // Part of the group may be in the file: cut it back to where the last good group
            // ended, so the file holds only what was reported written. Then the failure is
            // one of space or a passing error, and writes can resume; if the cut fails, the
            // file's end is unknown and the log stays failed until a restart recovers it.
            let cut = open.file.set_len(open.size).and_then(|()| {
                let mut f: &File = &open.file;
                f.seek(SeekFrom::Start(open.size)).map(|_| ())
            });
            match cut {
                Ok(()) => {
                    error!(error = %e, "wal write failed and was rolled back; writes suspended");
                    self.suspended.store(true, Ordering::SeqCst);
                }
                Err(cut) => {
                    error!(error = %e, cut = %cut, "wal write failed and could not be rolled back");
                    self.failed.store(true, Ordering::SeqCst);
                }
            }
            return Self::fail(group, WalError::io(&path, e));
        }
        drop(slices);
        self.segments.add_disk_bytes(offset - open.size);
        open.size = offset;
        self.sink.written(&entries);
        for (a, (_, pos)) in group.iter_mut().zip(&entries) {
            if a.durability == Durability::Written {
                if let Some(done) = a.done.take() {
                    let _ = done.send(Ok(*pos));
                }
            }
        }
        let written = Written {
            file: open.file.clone(),
            path,
            entries,
            group,
        };
        if let Some(tx) = &self.to_syncer {
            if let Err(unsent) = tx.send(written) {
                // The syncer is gone (it only stops after this thread): fail, never hang.
                self.failed.store(true, Ordering::SeqCst);
                Self::fail(unsent.0.group, WalError::Failed);
            }
        }
    }
}

/// The syncer thread: one fdatasync for every group written since the last one.
pub(crate) fn sync_loop(
    rx: Receiver<Written>,
    sink: Arc<dyn Sink>,
    failed: Arc<AtomicBool>,
    sync: bool,
) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        groups.extend(rx.try_iter());
        let Some(last) = groups.last() else { continue };
        let began = std::time::Instant::now();
        let result = if failed.load(Ordering::SeqCst) {
            Err(WalError::Failed)
        } else if sync {
            last.file
                .sync_data()
                .map_err(|e| WalError::io(&last.path, e))
        } else {
            Ok(())
        };
        if let Err(e) = result {
            error!(error = %e, "wal fdatasync failed");
            failed.store(true, Ordering::SeqCst);
            for g in groups {
                Writer::fail(g.group, e.clone());
            }
            continue;
        }
        let entries: Vec<(EntryMeta, Position)> = groups
            .iter()
            .flat_map(|g| g.entries.iter().copied())
            .collect();
        sink.sync_took(began.elapsed(), entries.len());
        sink.synced(&entries);
        for g in groups {
            for (a, (_, pos)) in g.group.into_iter().zip(&g.entries) {
                if let Some(done) = a.done {
                    let _ = done.send(Ok(*pos));
                }
                drop(a.guard);
            }
        }
    }
    debug!("wal syncer stopped");
}

/// Most iovecs passed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes every slice at the file's cursor (this thread is the file's only writer).
fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut f = file;
    while !slices.is_empty() {
        let n = slices.len().min(MAX_IOVECS);
        match f.write_vectored(&slices[..n]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
