use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;

use super::*;

#[derive(Default)]
struct Recorder {
    written: Mutex<Vec<EntryMeta>>,
    synced_groups: AtomicUsize,
    synced: Mutex<Vec<EntryMeta>>,
}

impl Sink for Recorder {
    fn written(&self, entries: &[(EntryMeta, Position)]) {
        self.written
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| e.0));
    }
    fn synced(&self, entries: &[(EntryMeta, Position)]) {
        self.synced_groups.fetch_add(1, Ordering::SeqCst);
        self.synced
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| e.0));
    }
}

fn meta(i: usize) -> EntryMeta {
    EntryMeta {
        topic_id: Uuid::from_u128(42),
        partition: (i % 3) as i32,
        leader_epoch: 0,
        base_offset: i as i64,
        record_count: 1,
        max_timestamp: 1000 + i as i64,
    }
}

fn payload(i: usize, len: usize) -> Bytes {
    Bytes::from((0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<_>>())
}

fn append_all(wal: &Wal, sizes: &[usize], durability: Durability) -> Vec<Position> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rxs: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let (tx, rx) = oneshot::channel();
            wal.submit(Append {
                meta: meta(i),
                data: {
                    // Odd entries arrive in two pieces; they must read back as one.
                    let p = payload(i, len);
                    if i % 2 == 1 && len > 1 {
                        vec![p.slice(..len / 2), p.slice(len / 2..)]
                    } else {
                        vec![p]
                    }
                },
                durability,
                done: Some(tx),
                guard: None,
            })
            .unwrap();
            rx
        })
        .collect();
    rt.block_on(async {
        let mut out = Vec::new();
        for rx in rxs {
            out.push(rx.await.unwrap().unwrap());
        }
        out
    })
}

fn config(dir: &Path) -> WalConfig {
    let mut c = WalConfig::new(dir);
    c.segment_bytes = 4096;
    c.max_group_bytes = 1024;
    c
}

#[test]
fn appends_survive_reopen_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = (0..200).map(|i| 1 + (i * 37) % 700).collect();
    let sink = Arc::new(Recorder::default());
    let (wal, rec) = Wal::open(config(dir.path()), sink.clone()).unwrap();
    assert!(rec.entries.is_empty());
    let positions = append_all(&wal, &sizes, Durability::Synced);
    for (i, pos) in positions.iter().enumerate() {
        assert_eq!(wal.segments().read(pos).unwrap(), payload(i, sizes[i]));
    }
    assert_eq!(sink.synced.lock().unwrap().len(), sizes.len());
    drop(wal);

    let (wal, rec) = Wal::open(config(dir.path()), Arc::new(Recorder::default())).unwrap();
    assert_eq!(rec.entries.len(), sizes.len());
    assert_eq!(rec.truncated_bytes, 0);
    for (i, (m, pos)) in rec.entries.iter().enumerate() {
        assert_eq!(*m, meta(i));
        assert_eq!(*pos, positions[i]);
        assert_eq!(wal.segments().read(pos).unwrap(), payload(i, sizes[i]));
    }
    // Several segments were used (4 KiB segments, ~70 KiB written).
    assert!(rec.next_segment > 5, "next segment {}", rec.next_segment);
}

#[test]
fn group_commit_covers_many_appends_per_sync() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let mut c = config(dir.path());
    c.segment_bytes = 1 << 30;
    let (wal, _) = Wal::open(c, sink.clone()).unwrap();
    let sizes = vec![100; 2000];
    append_all(&wal, &sizes, Durability::Synced);
    let groups = sink.synced_groups.load(Ordering::SeqCst);
    assert!(groups < 1000, "2000 appends took {groups} syncs");
    assert_eq!(sink.written.lock().unwrap().len(), 2000);
}

#[test]
fn corruption_before_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(config(dir.path()), Arc::new(Recorder::default())).unwrap();
    append_all(&wal, &vec![500; 40], Durability::Synced);
    drop(wal);
    let first = segment_path(dir.path(), 0);
    let mut data = std::fs::read(&first).unwrap();
    data[SEGMENT_MAGIC.len() + ENTRY_HEADER_LEN + 3] ^= 0xff;
    std::fs::write(&first, data).unwrap();
    match Wal::open(config(dir.path()), Arc::new(Recorder::default())) {
        Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, SEGMENT_MAGIC.len() as u64),
        other => panic!("expected corruption error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn failed_sink_order_is_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let (wal, _) = Wal::open(config(dir.path()), sink.clone()).unwrap();
    append_all(&wal, &vec![10; 300], Durability::Written);
    drop(wal);
    let synced = sink.synced.lock().unwrap();
    let offsets: Vec<i64> = synced.iter().map(|m| m.base_offset).collect();
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever happens to the tail of the last segment (cut anywhere, or garbage appended),
    /// recovery keeps exactly the entries that are whole, and the log accepts appends after it.
    #[test]
    fn torn_tail_keeps_every_whole_entry(
        sizes in proptest::collection::vec(1usize..300, 1..40),
        cut in 0usize..2000,
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.segment_bytes = 1 << 30;
        c.sync = false;
        let (wal, _) = Wal::open(c.clone(), Arc::new(Recorder::default())).unwrap();
        let positions = append_all(&wal, &sizes, Durability::Written);
        drop(wal);
        let path = segment_path(dir.path(), 0);
        let mut data = std::fs::read(&path).unwrap();
        let new_len = data.len().saturating_sub(cut).max(SEGMENT_MAGIC.len());
        data.truncate(new_len);
        data.extend_from_slice(&garbage);
        std::fs::write(&path, &data).unwrap();

        let whole = positions
            .iter()
            .take_while(|p| (p.offset + u64::from(p.len)) as usize <= new_len)
            .count();
        let (wal, rec) = Wal::open(c, Arc::new(Recorder::default())).unwrap();
        // Garbage can never pass as an entry (its CRC would have to match by chance).
        prop_assert_eq!(rec.entries.len(), whole);
        for (i, (m, pos)) in rec.entries.iter().enumerate() {
            prop_assert_eq!(*m, meta(i));
            prop_assert_eq!(wal.segments().read(pos).unwrap(), payload(i, sizes[i]));
        }
        let more = append_all(&wal, &[5, 6], Durability::Written);
        prop_assert_eq!(more[0].segment, 1);
    }
}

#[test]
fn released_segments_are_deleted_and_stay_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = (0..200).map(|i| 1 + (i * 37) % 700).collect();
    let (wal, _) = Wal::open(config(dir.path()), Arc::new(Recorder::default())).unwrap();
    let positions = append_all(&wal, &sizes, Durability::Synced);
    let segs = wal.segments();
    let files = |d: &Path| std::fs::read_dir(d).unwrap().count() as u64;
    let before = segs.disk_bytes();
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(before, on_disk, "disk_bytes tracks the files");
    let active = segs.active_segment();
    assert_eq!(active, positions.last().unwrap().segment);
    // Asking for more than exists never deletes the active segment.
    let keep_from = positions[150].segment;
    let (n, freed) = segs.release_below(keep_from).unwrap();
    assert_eq!(n as u64, keep_from, "segments 0..{keep_from} deleted");
    assert!(freed > 0 && segs.disk_bytes() == before - freed);
    assert!(
        segs.read(&positions[0]).is_err(),
        "released entries are gone"
    );
    assert_eq!(
        segs.read(&positions[150]).unwrap(),
        payload(150, sizes[150])
    );
    segs.release_below(u64::MAX).unwrap();
    assert_eq!(files(dir.path()), 1, "only the active segment is left");
    assert_eq!(
        segs.read(&positions[199]).unwrap(),
        payload(199, sizes[199])
    );
    drop(wal);

    // A release cut short by a crash leaves a renamed file behind; recovery removes it and
    // never reads it.
    let leftover = dir.path().join(format!("{:020}{RELEASED_SUFFIX}", 0));
    std::fs::write(&leftover, b"garbage that is no segment").unwrap();
    // Recovery starts from what is left.
    let (wal, rec) = Wal::open(config(dir.path()), Arc::new(Recorder::default())).unwrap();
    assert!(!leftover.exists(), "interrupted release finished at open");
    assert!(rec.entries.iter().all(|(_, p)| p.segment == active));
    assert_eq!(rec.entries.last().map(|e| e.0), Some(meta(199)));
    assert!(rec.next_segment > active);
    drop(wal);
}

#[test]
fn segments_stay_near_their_size_even_when_groups_are_large() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = WalConfig::new(dir.path());
    c.segment_bytes = 4096;
    c.max_group_bytes = 1 << 20;
    let (wal, _) = Wal::open(c, Arc::new(Recorder::default())).unwrap();
    let sizes: Vec<usize> = (0..300).map(|i| 100 + (i * 13) % 300).collect();
    // Queued all at once, so the writer could take them as one large group.
    append_all(&wal, &sizes, Durability::Synced);
    drop(wal);
    let largest = sizes.iter().max().unwrap() + ENTRY_HEADER_LEN;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let len = e.unwrap().metadata().unwrap().len();
        assert!(
            len <= 4096 + largest as u64,
            "a segment of {len} bytes for a 4096-byte setting"
        );
    }
}

#[test]
fn a_segment_larger_than_a_release_step_is_removed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 3 * RELEASE_STEP_BYTES;
    let (wal, _) = Wal::open(cfg, Arc::new(Recorder::default())).unwrap();
    let sizes = vec![1 << 20; 40];
    let positions = append_all(&wal, &sizes, Durability::Synced);
    let segs = wal.segments();
    assert!(
        positions.last().unwrap().segment >= 1,
        "rolled at least once"
    );
    let first_len = std::fs::metadata(segment_path(dir.path(), 0))
        .unwrap()
        .len();
    assert!(first_len > 2 * RELEASE_STEP_BYTES);
    let (n, freed) = segs.release_below(1).unwrap();
    assert_eq!((n, freed), (1, first_len));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| n.ends_with(".wal"))
            && !names.contains(&"00000000000000000000.wal".into()),
        "{names:?}"
    );
    assert_eq!(segs.read(&positions[39]).unwrap(), payload(39, sizes[39]));
}
