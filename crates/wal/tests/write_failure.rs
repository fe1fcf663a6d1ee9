//! A write that fails (the disk is full) is rolled back and suspends the log instead of
//! failing it for good; once resumed, writes go on, and recovery finds exactly what was
//! reported written, with no torn entry in between.
//!
//! The failure is real: RLIMIT_FSIZE makes the kernel refuse writes past a file size (EFBIG),
//! as a full disk refuses them (ENOSPC). This file holds one test because the limit is
//! per process.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sediment_wal::{Append, Durability, EntryMeta, Position, Sink, Wal, WalConfig, WalError};
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Default)]
struct Recorder {
    written: Mutex<Vec<i64>>,
}

impl Sink for Recorder {
    fn written(&self, entries: &[(EntryMeta, Position)]) {
        self.written
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| e.0.base_offset));
    }
    fn synced(&self, _: &[(EntryMeta, Position)]) {}
}

fn append(wal: &Wal, offset: i64, len: usize) -> oneshot::Receiver<Result<Position, WalError>> {
    let (tx, rx) = oneshot::channel();
    wal.submit(Append {
        meta: EntryMeta {
            topic_id: Uuid::from_u128(7),
            partition: 0,
            leader_epoch: 0,
            base_offset: offset,
            record_count: 1,
            max_timestamp: 0,
        },
        data: vec![Bytes::from(vec![offset as u8; len])],
        durability: Durability::Synced,
        done: Some(tx),
        guard: None,
    })
    .unwrap();
    rx
}

fn set_file_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; signal() installs the ignore disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn a_failed_write_suspends_rolls_back_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path().join("wal"));
    config.segment_bytes = 1 << 30;
    let sink = Arc::new(Recorder::default());
    let (wal, _) = Wal::open(config.clone(), sink.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // 64 KiB files only: the first entries fit, a later one is cut short by the kernel.
    set_file_limit(64 * 1024);
    let mut acked = Vec::new();
    let mut offset = 0i64;
    let mut failure = None;
    while offset < 100 {
        match rt.block_on(append(&wal, offset, 10_000)).unwrap() {
            Ok(_) => acked.push(offset),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        offset += 1;
    }
    assert!(matches!(failure, Some(WalError::Io { .. })), "{failure:?}");
    assert!(acked.len() >= 3, "some entries fit before the limit");
    assert!(wal.is_suspended());
    assert!(wal.problem().is_none(), "suspended is not failed");
    // While suspended every append fails, even one that would fit.
    let e = rt.block_on(append(&wal, offset, 10)).unwrap();
    assert!(matches!(e, Err(WalError::Suspended)), "{e:?}");

    // Space is back: the owner resumes, and the next appends are written after the last good
    // entry (the failed one is gone from the file).
    set_file_limit(libc::RLIM_INFINITY);
    wal.resume().unwrap();
    let mut after = Vec::new();
    for o in offset..offset + 5 {
        rt.block_on(append(&wal, o, 10_000)).unwrap().unwrap();
        after.push(o);
    }
    assert!(!wal.is_suspended());
    let mut wal = wal;
    wal.close();

    let (_, recovered) = Wal::open(config, Arc::new(Recorder::default())).unwrap();
    let got: Vec<i64> = recovered.entries.iter().map(|e| e.0.base_offset).collect();
    let want: Vec<i64> = acked.iter().chain(&after).copied().collect();
    assert_eq!(got, want, "exactly what was acknowledged, in order");
    assert_eq!(
        recovered.truncated_bytes, 0,
        "no torn entry was left in the file"
    );
    assert_eq!(*sink.written.lock().unwrap(), want);
}
